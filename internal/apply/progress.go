package apply

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
)

// A batch's last step: its transaction records, in the progress table, the
// position its changes reached, and commits; the position read when the
// transaction began tells which changes of a batch delivered again are
// applied already.

// Position is a place in the change stream: a transaction's commit LSN
// and the position of a change in it (-1: none of it).
type Position struct {
	CommitLSN pglogrepl.LSN
	Pos       int64
}

func (p Position) String() string { return fmt.Sprintf("%s#%d", event.FormatLSN(p.CommitLSN), p.Pos) }

func (p Position) before(q Position) bool {
	return p.CommitLSN < q.CommitLSN || (p.CommitLSN == q.CommitLSN && p.Pos < q.Pos)
}

// batchTx is the state of applying a batch: the open transaction, the
// group's recorded position, and the changes applied since it was recorded.
type batchTx struct {
	tx pgx.Tx
	at Position
	// pending is the pending DDL mark as the batch found it.
	pending Position
	done    []*Change
	// parallel allows set statements to be split over side connections;
	// splitRows counts the rows they applied.
	parallel  bool
	splitRows int
}

// begin opens a transaction and locks the group's progress row, so two
// appliers of one group never interleave.
func (a *Applier) begin(ctx context.Context) (*batchTx, error) {
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	b := &batchTx{tx: tx}
	if b.at, b.pending, err = a.readProgress(ctx, " FOR UPDATE"); err != nil {
		_ = tx.Rollback(context.Background())
		return nil, err
	}
	return b, nil
}

// commit records the position of what the transaction applied, and commits.
func (a *Applier) commit(ctx context.Context, b *batchTx) error {
	if err := a.writeProgress(ctx, b); err != nil {
		return err
	}
	err := b.tx.Commit(ctx)
	b.tx = nil
	return err
}

func (b *batchTx) rollback() {
	if b != nil && b.tx != nil {
		_ = b.tx.Rollback(context.Background())
		b.tx = nil
	}
}

// applied reports whether the progress table says the change is applied:
// it comes before the recorded position. Changes without a stream position
// are never skipped: applying them again converges (upserts by key).
//
// A snapshot row (all of a copy's rows carry its snapshot's LSN) is skipped
// once the group applied a streamed change committed after that LSN. In a
// group's stream a copy's rows come before every change streamed after its
// snapshot, so such a row is late: a batch delivered again after the
// changes that followed it were applied, or the copy of a replicator that
// lost the group to another, whose own copy and stream carry the newer
// state. Applied, it would overwrite newer rows, or bring back deleted ones.
func (a *Applier) applied(ch *Change, at Position) bool {
	if ch.CommitLSN == 0 || a.progressIdent == "" {
		return false
	}
	if ch.Snapshot {
		return ch.CommitLSN < at.CommitLSN
	}
	if ch.CommitLSN < at.CommitLSN {
		return true
	}
	return ch.CommitLSN == at.CommitLSN && ch.Pos >= 0 && ch.Pos <= at.Pos
}

// anyApplied reports whether the progress table says one of changes is
// applied.
func (a *Applier) anyApplied(changes []*Change, at Position) bool {
	for _, ch := range changes {
		if a.applied(ch, at) {
			return true
		}
	}
	return false
}

// advance returns the position after changes: the last streamed change's,
// never behind from.
func advance(from Position, changes []*Change) Position {
	to := from
	for _, ch := range changes {
		if ch.Snapshot || ch.CommitLSN == 0 {
			continue
		}
		at := Position{CommitLSN: ch.CommitLSN, Pos: ch.Pos}
		if ch.Pos < 0 {
			at.Pos = -1
			if ch.CommitLSN == to.CommitLSN {
				continue
			}
		}
		if to.before(at) {
			to = at
		}
	}
	return to
}

// writeProgress records the position reached by the changes the
// transaction applied (and clears the pending DDL mark: the position is now
// past it).
func (a *Applier) writeProgress(ctx context.Context, b *batchTx) error {
	if a.progressIdent == "" {
		return nil
	}
	var events, snapshotRows int64
	for _, ch := range b.done {
		if ch.Snapshot {
			snapshotRows += int64(ch.Rows())
		} else {
			events++
		}
	}
	to := advance(b.at, b.done)
	_, err := b.tx.Exec(ctx, "UPDATE "+a.progressIdent+` SET commit_lsn = $2::text::pg_lsn, tx_pos = $3,
		events = events + $4, snapshot_rows = snapshot_rows + $5, batches = batches + 1,
		pending_commit_lsn = NULL, pending_tx_pos = NULL, updated_at = now() WHERE group_name = $1`,
		a.progressRow(), event.FormatLSN(to.CommitLSN), to.Pos, events, snapshotRows)
	if err != nil {
		return fmt.Errorf("update progress table %s: %w", a.progressIdent, err)
	}
	b.at, b.done = to, nil
	return nil
}

// setupProgress makes sure the progress table and the group's row exist,
// unless the progress table is disabled.
func (a *Applier) setupProgress(ctx context.Context) error {
	if a.cfg.Progress.Name == "" {
		return nil
	}
	a.progressIdent = a.cfg.Progress.String()
	create := []string{
		"CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{a.cfg.Progress.Schema}.Sanitize(),
		"CREATE TABLE IF NOT EXISTS " + a.progressIdent + ` (
			group_name text PRIMARY KEY,
			commit_lsn pg_lsn NOT NULL,
			tx_pos bigint NOT NULL,
			events bigint NOT NULL DEFAULT 0,
			snapshot_rows bigint NOT NULL DEFAULT 0,
			batches bigint NOT NULL DEFAULT 0,
			pending_commit_lsn pg_lsn,
			pending_tx_pos bigint,
			updated_at timestamptz NOT NULL DEFAULT now())`,
		"INSERT INTO " + a.progressIdent + " (group_name, commit_lsn, tx_pos) VALUES ($1, '0/0', -1) ON CONFLICT (group_name) DO NOTHING",
	}
	for attempt := 0; ; attempt++ {
		var err error
		for i, sql := range create {
			if i == 2 {
				_, err = a.conn.Exec(ctx, sql, a.cfg.Group)
			} else {
				_, err = a.conn.Exec(ctx, sql)
			}
			if err != nil {
				break
			}
		}
		// Two appliers creating the table at once: one loses with a
		// unique violation on the catalog; the second attempt sees the table.
		if err != nil && sqlState(err) == "23505" && attempt == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("create progress table %s on the target: %w", a.progressIdent, err)
		}
		break
	}
	pos, err := a.Progress(ctx)
	if err != nil {
		return err
	}
	if pos.CommitLSN != 0 {
		a.log.Infof("Group %s has applied the target up to commit %s (position %d in it); changes up to there are skipped", a.cfg.Group, event.FormatLSN(pos.CommitLSN), pos.Pos)
	}
	return nil
}

// ProgressRow is the progress row of partition k of a partitioned group,
// "<group>/p<k>": each partition is a stream of its own, applied in its own
// transactions, so each has its own position. A group of one partition
// keeps the row named after it.
func ProgressRow(group string, k string) string { return group + "/p" + k }

// UsePartition makes the batches that follow record their position in
// partition k's row (ProgressRow); "" is the group's own row. The row is
// created when the first batch reads it.
func (a *Applier) UsePartition(k string) {
	a.partition = k
}

// progressRow is the group_name of the row batches record their position
// in.
func (a *Applier) progressRow() string {
	if a.partition == "" {
		return a.cfg.Group
	}
	return ProgressRow(a.cfg.Group, a.partition)
}

// Progress reads the group's position in the progress table.
func (a *Applier) Progress(ctx context.Context) (Position, error) {
	at, _, err := a.readProgress(ctx, "")
	return at, err
}

// readProgress reads the group's position and its pending DDL mark (see
// markPending).
func (a *Applier) readProgress(ctx context.Context, lock string) (at, pending Position, err error) {
	at, pending = Position{Pos: -1}, Position{Pos: -1}
	if a.progressIdent == "" {
		return at, pending, nil
	}
	var lsn string
	var pendingLSN *string
	var pendingPos *int64
	err = a.conn.QueryRow(ctx, "SELECT commit_lsn::text, tx_pos, pending_commit_lsn::text, pending_tx_pos FROM "+a.progressIdent+" WHERE group_name = $1"+lock,
		a.progressRow()).Scan(&lsn, &at.Pos, &pendingLSN, &pendingPos)
	if errors.Is(err, pgx.ErrNoRows) {
		// The row was deleted: start over, as for a new group.
		if _, err := a.conn.Exec(ctx, "INSERT INTO "+a.progressIdent+" (group_name, commit_lsn, tx_pos) VALUES ($1, '0/0', -1) ON CONFLICT (group_name) DO NOTHING", a.progressRow()); err != nil {
			return at, pending, fmt.Errorf("progress table %s: %w", a.progressIdent, err)
		}
		return at, pending, nil
	}
	if err != nil {
		return at, pending, fmt.Errorf("progress table %s: %w", a.progressIdent, err)
	}
	if at.CommitLSN, err = pglogrepl.ParseLSN(lsn); err != nil {
		return at, pending, fmt.Errorf("progress table %s: commit_lsn %q: %w", a.progressIdent, lsn, err)
	}
	if pendingLSN != nil && pendingPos != nil {
		if pending.CommitLSN, err = pglogrepl.ParseLSN(*pendingLSN); err != nil {
			return at, pending, fmt.Errorf("progress table %s: pending_commit_lsn %q: %w", a.progressIdent, *pendingLSN, err)
		}
		pending.Pos = *pendingPos
	}
	return at, pending, nil
}

// markPending records in the progress row, in a transaction of its own,
// that the DDL at position at is about to run outside a transaction (a
// position with CommitLSN 0 clears the mark).
func (a *Applier) markPending(ctx context.Context, at Position) error {
	if a.progressIdent == "" {
		return nil
	}
	var lsn *string
	if at.CommitLSN != 0 {
		text := event.FormatLSN(at.CommitLSN)
		lsn = &text
	}
	_, err := a.conn.Exec(ctx, "UPDATE "+a.progressIdent+" SET pending_commit_lsn = $2::text::pg_lsn, pending_tx_pos = $3 WHERE group_name = $1",
		a.progressRow(), lsn, at.Pos)
	if err != nil {
		return fmt.Errorf("progress table %s: %w", a.progressIdent, err)
	}
	return nil
}
