// Package apply writes pgflo change events to a target PostgreSQL: the
// engine of the pg_flo_postgres output. A batch of changes becomes one
// target transaction in which consecutive changes are merged per table and
// key into set statements (INSERT … SELECT FROM unnest … ON CONFLICT, UPDATE
// … FROM unnest, DELETE … USING unnest, COPY for runs of inserts, and for
// copy packs of snapshot rows the packs' COPY text as it is); values are
// sent as text and cast by the server to each column's type, so every type
// round-trips exactly. A progress table on the target, written in the same
// transaction, records the last applied position of the group, so a batch
// delivered again is not applied twice.
//
// It does not import Benthos: outputs/postgres.go adapts it.
package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/pgdsn"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// TableCreator creates a missing target table for a change (schema sync):
// on the applier's connection, inside the batch's transaction.
type TableCreator func(ctx context.Context, conn *pgx.Conn, ch *Change) error

// Config configures an Applier.
type Config struct {
	// DSN is the target's connection string.
	DSN string
	// Group names the row of the progress table.
	Group string
	// Progress is the progress table; a zero name disables it.
	Progress TableName
	// SchemaMapping maps a source schema to the target schema.
	SchemaMapping map[string]string
	// KeyColumns overrides the key of tables ("schema.table" of the target).
	KeyColumns map[string][]string
	// DisableForeignKeys runs the session with session_replication_role =
	// replica: foreign keys and ordinary triggers do not fire, as in
	// PostgreSQL's own logical replication.
	DisableForeignKeys bool
	// CopyMinRows is the least number of inserted rows of a table written
	// with COPY; 0 never uses COPY.
	CopyMinRows int
	// CopyConnections is how many connections write a batch's leading run
	// of copy packs at once (see parallel.go); 1 or less writes them in the
	// batch's transaction only.
	CopyConnections int
	// CopyBinary writes snapshot rows to COPY in binary format where every
	// column's type has a conversion (see packstream.go).
	CopyBinary bool
	// BinaryParameters sends the values of set statements' columns of the
	// types in typedParams as arrays of their type (see column.go).
	BinaryParameters bool
	// ApplyConnections is how many connections apply a large set statement
	// at once, its rows split by key (see parallel.go); 1 or less applies
	// everything in the batch's transaction only.
	ApplyConnections int
	// Retries is how often a batch is retried after a serialization
	// failure, deadlock or lock timeout before Apply gives up.
	Retries int
	// CreateTable, when set, creates missing target tables.
	CreateTable TableCreator
	// ApplicationName is the session's application_name.
	ApplicationName string
	Logger          logging.Logger
}

// Applier applies batches of changes to the target over one connection. It
// is not safe for concurrent use.
type Applier struct {
	cfg  Config
	pcfg *pgx.ConnConfig // the session's settings, for side connections
	conn *pgx.Conn
	side []*pgx.Conn // copy connections beside conn, opened when needed
	// tables caches the target tables' definitions; the planning goroutine
	// reads it while the executor loads tables into it.
	tablesMu sync.Mutex
	tables   map[TableName]*Table
	// noCopyBatches counts, per table, batches left in which COPY is not
	// tried after one hit a conflict.
	noCopyBatches map[TableName]int
	searchPath    string
	progressIdent string
	// splitSeed hashes keys to the connections of a split step.
	splitSeed maphash.Seed
	// created counts the tables schema sync created.
	created int
	log     logging.Logger
}

// Result tells what a batch did.
type Result struct {
	// Applied is the number of changes written, Skipped the number already
	// applied before (by the progress table). A copy pack counts as its
	// rows.
	Applied, Skipped int
	// PackRows is how many of the Applied are rows of copy packs written
	// with COPY as they came (the fast path for snapshots).
	PackRows int
	// SideRows is how many of the Applied were applied on side connections
	// (see ApplyConnections).
	SideRows int
	// Serial is set when the batch had to be applied change by change after
	// the set statements failed.
	Serial bool
}

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

// Connect opens the applier's connection, sets the session up and makes
// sure the progress table and the group's row exist.
func Connect(ctx context.Context, cfg Config) (*Applier, error) {
	pcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse target dsn %s: %s", pgdsn.Redact(cfg.DSN), redactErr(err, ""))
	}
	for k, v := range event.TextFormSettings() {
		pcfg.RuntimeParams[k] = v
	}
	if cfg.ApplicationName != "" {
		pcfg.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %s: %w", pgdsn.Redact(cfg.DSN), redactErr(err, pcfg.Password), ErrConnection)
	}
	useColumnCodec(conn.TypeMap())
	a := &Applier{
		cfg: cfg, pcfg: pcfg, conn: conn, log: cfg.Logger,
		tables: map[TableName]*Table{}, noCopyBatches: map[TableName]int{},
		splitSeed: maphash.MakeSeed(),
	}
	if a.log == nil {
		a.log = logging.Nop{}
	}
	if err := a.setup(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return a, nil
}

func redactErr(err error, password string) string {
	return pgdsn.RedactIn(err.Error(), password)
}

func (a *Applier) setup(ctx context.Context) error {
	if a.cfg.DisableForeignKeys {
		if _, err := a.conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			return fmt.Errorf("disable_foreign_keys: set session_replication_role = replica on the target (needs superuser, or GRANT SET ON PARAMETER session_replication_role): %w", err)
		}
	}
	if err := a.conn.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&a.searchPath); err != nil {
		return fmt.Errorf("read search_path of the target: %w", err)
	}
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
		a.cfg.Group).Scan(&lsn, &at.Pos, &pendingLSN, &pendingPos)
	if errors.Is(err, pgx.ErrNoRows) {
		// The row was deleted: start over, as for a new group.
		if _, err := a.conn.Exec(ctx, "INSERT INTO "+a.progressIdent+" (group_name, commit_lsn, tx_pos) VALUES ($1, '0/0', -1) ON CONFLICT (group_name) DO NOTHING", a.cfg.Group); err != nil {
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

// Close closes the connection.
func (a *Applier) Close(ctx context.Context) error {
	a.closeSide(ctx)
	if a.conn == nil {
		return nil
	}
	return a.conn.Close(ctx)
}

// Apply applies the changes in one target transaction (more than one when
// a DDL statement must run outside a transaction) and returns once it
// committed. A transient failure (serialization failure, deadlock, lock
// timeout) is retried; a lost connection returns an error wrapping
// ErrConnection; a change the target refuses returns a *ChangeError naming
// it. When the set statements fail, the batch is applied again change by
// change, which both finds the change at fault and gets past constraints
// that only hold in the source's order (a unique column two rows swap).
func (a *Applier) Apply(ctx context.Context, changes []*Change) (Result, error) {
	return a.ApplyFeed(ctx, FeedOf(changes))
}

// ApplyFeed is Apply for a batch still being decoded (see Feed). A decoding
// failure is returned as it is, once nothing of the batch was committed.
func (a *Applier) ApplyFeed(ctx context.Context, f *Feed) (Result, error) {
	serial, parallel, early := false, a.cfg.ApplyConnections > 1, true
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := a.applyOnce(ctx, f, serial, parallel, early)
		if err == nil {
			res.Serial = serial
			return res, nil
		}
		if errors.Is(err, errReplan) {
			early = false
			continue
		}
		a.invalidate()
		var decodeErr *feedError
		var sideErr *sideError
		switch {
		case errors.As(err, &decodeErr):
			return res, decodeErr.err
		case errors.As(err, &sideErr) && parallel && ctx.Err() == nil:
			// Whatever went wrong beside the batch's transaction, the batch
			// is applied again on its connection alone.
			a.log.Debugf("Applying a batch of %d changes over %d connections failed (%v); applying it on one", f.total, a.cfg.ApplyConnections, err)
			parallel = false
		case a.conn.IsClosed() || connectionLost(err):
			_ = a.conn.Close(context.Background())
			if errors.Is(err, ErrConnection) {
				return res, err
			}
			return res, fmt.Errorf("%w: %w", ErrConnection, err)
		case ctx.Err() != nil:
			return res, err
		case retryable(err) && attempt < a.cfg.Retries:
			a.log.Warnf("Applying a batch of %d changes failed transiently, retrying in %v: %v", f.total, backoff, err)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(backoff + rand.N(backoff/2)):
			}
			backoff = min(backoff*2, 5*time.Second)
		case !serial && !retryable(err):
			a.log.Debugf("Set-based apply of %d changes failed (%v); applying them one by one", f.total, err)
			serial = true
		default:
			return res, err
		}
	}
}

// Target returns the target table of a source schema and table: the
// schema through the schema mapping.
func (a *Applier) Target(schema, table string) TableName {
	return TableName{Schema: a.cfg.TargetSchema(schema), Name: table}
}

// TargetSchema maps a source schema through the schema mapping.
func (c *Config) TargetSchema(schema string) string {
	if to, ok := c.SchemaMapping[schema]; ok {
		return to
	}
	return schema
}

// invalidate forgets the target's table definitions: after a failure (a
// rolled-back DDL, a table changed behind our back) they are read again.
func (a *Applier) invalidate() {
	a.tablesMu.Lock()
	defer a.tablesMu.Unlock()
	clear(a.tables)
}

// cachedTable returns the target table's definition if it was read.
func (a *Applier) cachedTable(name TableName) (*Table, bool) {
	a.tablesMu.Lock()
	defer a.tablesMu.Unlock()
	t, ok := a.tables[name]
	return t, ok
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

// applyOnce applies the feed in one transaction. With early, a batch that
// does not start with inserts is planned while the transaction begins (two
// round trips, each a wait for the server when the cores are busy): the
// planner cannot know yet what the progress table says is applied, so the
// executor checks it, and a batch delivered again (errReplan) is planned
// again once the position is known.
func (a *Applier) applyOnce(ctx context.Context, f *Feed, serial, parallel, early bool) (res Result, err error) {
	var pl *planning
	if first := f.wait(0); early && (serial || a.cfg.CopyMinRows == 0 || first == nil || first.Op != event.Insert) {
		pl = a.startPlanning(f, 0, serial, nil)
	}
	b, err := a.begin(ctx)
	if err != nil {
		if pl != nil {
			pl.end()
		}
		return res, err
	}
	b.parallel = parallel && !serial
	defer func() { b.rollback() }()
	var copied []*Change
	if pl == nil {
		// Leading runs of inserts (a snapshot: packs, or events) are
		// written with COPY as they are decoded, run after run, until a
		// change that is not for COPY; the planner applies the rest.
		streamed := 0
		for !serial && a.cfg.CopyMinRows > 0 {
			n, done, skipped, err := a.streamInserts(ctx, b, f, streamed)
			if err != nil {
				return res, err
			}
			if n == 0 {
				break
			}
			streamed += n
			res.Skipped += skipped
			copied = append(copied, done...)
		}
		pl = a.startPlanning(f, streamed, serial, &b.at)
	}
	b.done = copied
	applied, skipped, err := a.applyRest(ctx, b, pl)
	if err != nil {
		return res, err
	}
	changes, err := f.all()
	if err != nil {
		return res, err
	}
	res.Skipped += skipped
	if res.Skipped > 0 {
		a.log.Infof("Skipped %d of %d changes already applied (group %s is at %s)", res.Skipped, rowsOf(changes), a.cfg.Group, b.at)
	}
	for name := range a.noCopyBatches {
		if a.noCopyBatches[name]--; a.noCopyBatches[name] <= 0 {
			delete(a.noCopyBatches, name)
		}
	}
	if err := a.commit(ctx, b); err != nil {
		return res, err
	}
	res.Applied = rowsOf(copied) + applied
	res.PackRows = packRowsOf(copied)
	res.SideRows = b.splitRows
	return res, nil
}

// planChunk is how many changes are planned together: merging and key
// order happen within a chunk, and a larger statement, its rows in key
// order, costs the target less a row (16,384 against 1,024 changes a
// chunk: 10–20 % less of the target's CPU in the benchmarks' catch-up, its
// rows spread over a million-row table). A chunk is planned while it is
// decoded, and the next while the server executes it. (A variable for
// tests.)
var planChunk = 16384

// planItem is what the planning goroutine hands the executor: the steps of
// a chunk, or a DDL event to replay, or a change whose target table it
// needs (the catalog is read on the executor's connection).
type planItem struct {
	steps   []*step
	changes []*Change // what steps apply
	skipped int       // changes of the chunk already applied
	late    int       // of those, snapshot rows older than applied changes
	err     error
	ddl     *Change
	resolve *Change
	table   chan tableResult // answers resolve
	replay  chan error       // answers ddl
}

type tableResult struct {
	t   *Table
	err error
}

// errStopped ends the planning goroutine when the executor gave up.
var errStopped = errors.New("apply stopped")

// errReplan: a batch planned before the group's position was known holds
// changes the progress table says are applied (a batch delivered again).
var errReplan = errors.New("batch holds changes already applied: planned again")

// planning is a planning goroutine (planChunks) and what it hands over.
type planning struct {
	items chan planItem
	stop  chan struct{}
	// unchecked: the planner did not know the group's position; the
	// executor checks that no change is applied already.
	unchecked bool
}

// startPlanning starts planning the feed's changes from index from on,
// leaving out those the progress table says are applied (at); a nil at is
// not known yet (see applyOnce).
func (a *Applier) startPlanning(f *Feed, from int, serial bool, at *Position) *planning {
	pl := &planning{items: make(chan planItem, 1), stop: make(chan struct{}), unchecked: at == nil}
	noCopy := map[TableName]bool{}
	for name := range a.noCopyBatches {
		noCopy[name] = true
	}
	go a.planChunks(f, from, serial, at, noCopy, pl.items, pl.stop)
	return pl
}

// end stops the planner and waits for it: it may still be waiting for an
// answer.
func (pl *planning) end() {
	close(pl.stop)
	for it := range pl.items {
		if it.table != nil {
			it.table <- tableResult{err: errStopped}
		}
		if it.replay != nil {
			it.replay <- errStopped
		}
	}
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

// applyRest executes in b what the planner hands over, chunk after chunk in
// order, while it plans the next as it is decoded. It returns how many
// changes were applied and how many skipped as already applied.
func (a *Applier) applyRest(ctx context.Context, b *batchTx, pl *planning) (applied, skipped int, err error) {
	defer pl.end()
	for it := range pl.items {
		if pl.unchecked && (a.anyApplied(it.changes, b.at) || (it.ddl != nil && a.applied(it.ddl, b.at))) {
			if it.replay != nil {
				it.replay <- errReplan
			}
			return applied, skipped, errReplan
		}
		switch {
		case it.err != nil:
			return applied, skipped, it.err
		case it.resolve != nil:
			created := a.created
			t, err := a.table(ctx, it.resolve)
			if a.created != created {
				// Other sessions do not see the table before the batch commits.
				b.parallel = false
			}
			it.table <- tableResult{t, err}
		case it.ddl != nil:
			// The statement's locks are held until the batch commits: side
			// connections would wait for them.
			b.parallel = false
			err := a.applyDDL(ctx, b, it.ddl)
			it.replay <- err
			if err != nil {
				return applied, skipped, err
			}
			applied++
		default:
			skipped += it.skipped
			if it.late > 0 {
				a.log.Warnf("Skipped %d snapshot rows taken before changes group %s already applied (it is at %s): rows of an older copy, such as one by a replicator that no longer owns the group; the newer changes stay", it.late, a.cfg.Group, b.at)
			}
			if err := a.execSteps(ctx, b, it.steps); err != nil {
				return applied, skipped, err
			}
			b.done = append(b.done, it.changes...)
			applied += len(it.changes)
		}
	}
	return applied, skipped, nil
}

// planChunks plans the feed's changes from index from on, in chunks, and
// hands the steps to the executor; it stops at a DDL event until the
// executor replayed it (the next changes have the new table shape). It
// never uses the connection: tables are resolved by the executor.
func (a *Applier) planChunks(f *Feed, from int, serial bool, at *Position, noCopy map[TableName]bool, items chan<- planItem, stop <-chan struct{}) {
	defer close(items)
	send := func(it planItem) bool {
		select {
		case items <- it:
			return true
		case <-stop:
			return false
		}
	}
	tables := map[TableName]*Table{}
	p := &planner{
		lookup: func(ch *Change) (*Table, error) {
			if t, ok := tables[ch.Target]; ok {
				return t, nil
			}
			if t, ok := a.cachedTable(ch.Target); ok {
				tables[ch.Target] = t
				return t, nil
			}
			answer := make(chan tableResult, 1)
			if !send(planItem{resolve: ch, table: answer}) {
				return nil, errStopped
			}
			r := <-answer
			if r.err == nil {
				tables[ch.Target] = r.t
			}
			return r.t, r.err
		},
		serial:  serial,
		reorder: a.cfg.DisableForeignKeys,
		copyMin: a.cfg.CopyMinRows,
		noCopy:  func(t *Table) bool { return noCopy[t.Name] },
	}
	// streamed is the position after the streamed changes planned so far:
	// a snapshot row after one of them in the batch is late as well.
	var streamed Position
	if at != nil {
		streamed = *at
	}
	for i := from; ; {
		var chunk []*Change
		var ddlChange *Change
		skipped, late := 0, 0
		// Each change is planned as soon as it is decoded: the decoder and
		// the planner work on the batch together.
		p.begin()
		var err error
		for len(chunk) < planChunk && err == nil {
			ch := f.wait(i)
			if ch == nil {
				break
			}
			i++
			if ch.Target.Name == "" {
				ch.Target = a.Target(ch.Schema, ch.Table)
			}
			if ch.Snapshot && a.applied(ch, streamed) {
				skipped += ch.Rows()
				late += ch.Rows()
				continue
			}
			if ch.Pack != nil {
				// A pack here is applied as the INSERTs of its rows.
				rows, expandErr := ch.expand()
				if expandErr != nil {
					send(planItem{err: &feedError{expandErr}})
					return
				}
				for _, row := range rows {
					if err = p.next(row); err != nil {
						break
					}
				}
				chunk = append(chunk, rows...)
				continue
			}
			if at != nil && a.applied(ch, *at) {
				skipped++
				continue
			}
			if !ch.Snapshot {
				streamed = advance(streamed, []*Change{ch})
			}
			if ch.Op == event.DDL {
				ddlChange = ch
				break
			}
			err = p.next(ch)
			chunk = append(chunk, ch)
		}
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			send(planItem{err: err})
			return
		}
		if len(chunk) > 0 || skipped > 0 {
			if !send(planItem{steps: p.end(), changes: chunk, skipped: skipped, late: late}) {
				return
			}
		}
		if ddlChange != nil {
			replayed := make(chan error, 1)
			if !send(planItem{ddl: ddlChange, replay: replayed}) || <-replayed != nil {
				return
			}
			clear(tables) // new table shapes
			continue
		}
		if f.wait(i) == nil {
			return
		}
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
		a.cfg.Group, event.FormatLSN(to.CommitLSN), to.Pos, events, snapshotRows)
	if err != nil {
		return fmt.Errorf("update progress table %s: %w", a.progressIdent, err)
	}
	b.at, b.done = to, nil
	return nil
}

// table returns the target table of a change, reading it from the catalog
// (and creating it, with schema sync) the first time.
func (a *Applier) table(ctx context.Context, ch *Change) (*Table, error) {
	if t, ok := a.cachedTable(ch.Target); ok {
		return t, nil
	}
	key := a.cfg.KeyColumns[ch.Target.Schema+"."+ch.Target.Name]
	t, err := loadTable(ctx, a.conn, ch.Target, key)
	if errors.Is(err, ErrTableNotFound) && a.cfg.CreateTable != nil {
		if err := a.cfg.CreateTable(ctx, a.conn, ch); err != nil {
			return nil, changeError(ch, nil, fmt.Errorf("sync_schema: %w", err))
		}
		a.created++
		t, err = loadTable(ctx, a.conn, ch.Target, key)
	}
	if errors.Is(err, ErrTableNotFound) {
		return nil, changeError(ch, nil, fmt.Errorf("%w: create it, or enable sync_schema", err))
	}
	if err != nil {
		return nil, changeError(ch, nil, err)
	}
	if !t.HasKey() {
		a.log.Warnf("Target table %s has no primary key or NOT NULL unique index: its INSERTs are applied as plain inserts, "+
			"and each UPDATE and DELETE changes one row found by the old values the event carries (REPLICA IDENTITY FULL on the source); "+
			"give it a key (or key_columns) for upserts and fast, set-based updates", t.Name)
	}
	a.tablesMu.Lock()
	a.tables[ch.Target] = t
	a.tablesMu.Unlock()
	return t, nil
}

// execSteps runs steps in the transaction: statements are sent in
// pipelines (one round trip for many), COPY on its own.
func (a *Applier) execSteps(ctx context.Context, b *batchTx, steps []*step) error {
	tx := b.tx
	batch := &pgx.Batch{}
	var queued []*step
	send := func() error {
		if len(queued) == 0 {
			return nil
		}
		br := tx.SendBatch(ctx, batch)
		var firstErr error
		for _, s := range queued {
			tag, err := br.Exec()
			if err != nil {
				if firstErr == nil {
					firstErr = stepError(s, err)
				}
				continue
			}
			a.checkRows(s, tag)
		}
		if err := br.Close(); err != nil && firstErr == nil {
			firstErr = err
		}
		batch = &pgx.Batch{}
		queued = queued[:0]
		return firstErr
	}
	for _, s := range steps {
		if s.kind == stepTruncate {
			b.parallel = false // its lock is held until the batch commits
		}
		if s.kind == stepCopy {
			if err := send(); err != nil {
				return err
			}
			done, err := a.copyRows(ctx, tx, s)
			if err != nil {
				return stepError(s, err)
			}
			if done {
				continue
			}
			s.kind = stepUpsert // COPY hit a conflict: upsert instead
		}
		if parts := a.parts(b, s); parts > 1 {
			if err := send(); err != nil {
				return err
			}
			if err := a.execSplit(ctx, b, s, parts); err != nil {
				return err
			}
			continue
		}
		sql, args := statement(s, a.cfg.BinaryParameters)
		batch.Queue(sql, args...)
		queued = append(queued, s)
	}
	return send()
}

// checkRows warns about changes that found no row on the target.
func (a *Applier) checkRows(s *step, tag pgconn.CommandTag) {
	n := int(tag.RowsAffected())
	switch s.kind {
	case stepUpdate:
		if n < len(s.rows) {
			a.log.Warnf("%d of %d UPDATEs of %s found no row on the target and were not applied: they carry unchanged TOASTed values that only the target row holds, so the row cannot be written whole (first: %s)",
				len(s.rows)-n, len(s.rows), s.table.Name, describeKey(s.changes[0], s.table))
		}
	case stepMatchUpdate, stepMatchDelete:
		if n == 0 {
			a.log.Warnf("%s of %s at LSN %s found no row equal to the event's old row on the target (table without key); nothing changed",
				s.changes[0].Op, s.table.Name, event.FormatLSN(s.changes[0].LSN))
		}
	}
}

// stepError attributes a failed statement to its change (serial mode: one)
// or to the set of changes it applied.
func stepError(s *step, err error) error {
	ch := s.changes[0]
	if len(s.changes) == 1 {
		return changeError(ch, s.table, err)
	}
	last := s.changes[len(s.changes)-1]
	return fmt.Errorf("%s of %d changes of %s (LSN %s to %s): %w", s.kind, len(s.changes), s.table.Name,
		event.FormatLSN(ch.LSN), event.FormatLSN(last.LSN), err)
}

// statement returns the SQL and arguments of a statement step; binary sends
// the columns of the types in typedParams as typed arrays.
func statement(s *step, binary bool) (string, []any) {
	t := s.table
	switch s.kind {
	case stepUpsert:
		p := newSetParams(len(s.cols), binary)
		for _, c := range s.cols {
			p.addValue(&t.Columns[c], c)
		}
		args, typed := p.build(s.rows)
		return t.sql(typedKind("u", typed), s.cols, func() string { return upsertSQL(t, s.cols, typed) }), args
	case stepUpdate:
		p := newSetParams(len(t.Key)+len(s.cols), binary)
		for j, k := range t.Key {
			p.addKey(&t.Columns[k], j)
		}
		for _, c := range s.cols {
			p.addValue(&t.Columns[c], c)
		}
		args, typed := p.build(s.rows)
		return t.sql(typedKind("p", typed), s.cols, func() string { return updateSQL(t, s.cols, typed) }), args
	case stepDelete:
		p := newSetParams(len(t.Key), binary)
		for j, k := range t.Key {
			p.addKey(&t.Columns[k], j)
		}
		args, typed := p.build(s.rows)
		return t.sql(typedKind("d", typed), nil, func() string { return deleteSQL(t, typed) }), args
	case stepMatchDelete, stepMatchUpdate:
		e := s.rows[0]
		args := make([]any, 0, len(s.match)+len(s.cols))
		for _, v := range e.key {
			args = append(args, text(v))
		}
		if s.kind == stepMatchDelete {
			return t.sql("md", s.match, func() string { return matchDeleteSQL(t, s.match) }), args
		}
		for _, c := range s.cols {
			args = append(args, text(e.vals[c]))
		}
		return matchUpdateSQL(t, s.match, s.cols), args
	case stepTruncate:
		return truncateSQL(s.tables), nil
	}
	panic(fmt.Sprintf("statement of a %s step", s.kind))
}

// typedKind names a statement kind with which of its parameters are typed,
// for the statement cache: the same rows' shape may go typed or, when a
// value was declined, as text.
func typedKind(kind string, typed []bool) string {
	b := []byte(kind)
	b = append(b, ':')
	for _, t := range typed {
		if t {
			b = append(b, 't')
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}

// sql returns the statement of a kind and column shape, built once per table
// definition (pgx then prepares it once per connection).
func (t *Table) sql(kind string, cols []int, build func() string) string {
	k := shapeKey(kind, cols)
	t.statementsMu.Lock()
	defer t.statementsMu.Unlock()
	if s, ok := t.statements[k]; ok {
		return s
	}
	if t.statements == nil {
		t.statements = map[string]string{}
	}
	s := build()
	t.statements[k] = s
	return s
}

// shapeKey names a kind of statement (or conversion) over columns cols, for
// the caches per table shape.
func shapeKey(kind string, cols []int) string {
	b := []byte(kind)
	for _, c := range cols {
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(c), 10)
	}
	return string(b)
}

// copyStatement returns the COPY statement loading rows of cols of t, in
// text or binary format.
func copyStatement(t *Table, cols []int, binary bool) string {
	if binary {
		return t.sql("cb", cols, func() string { return copySQL(t, cols) + " WITH (FORMAT binary)" })
	}
	return t.sql("c", cols, func() string { return copySQL(t, cols) })
}

// noCopyAfterConflict is how many batches do not try COPY into a table
// after COPY hit a key conflict there (the rows are probably being applied
// again, say after a snapshot chunk was redone).
const noCopyAfterConflict = 20

// copyRows loads the rows of a copy step with COPY (see copyFrom).
func (a *Applier) copyRows(ctx context.Context, tx pgx.Tx, s *step) (bool, error) {
	var buf []byte
	for _, e := range s.rows {
		buf = appendCopyRow(buf, e.vals, s.cols)
	}
	return a.copyFrom(ctx, tx, s.table, s.cols, false, bytes.NewReader(buf))
}

// appendCopyRow appends one line of COPY's text format: the values at
// positions at of vals.
func appendCopyRow(buf []byte, vals []event.Value, at []int) []byte {
	for j, i := range at {
		if j > 0 {
			buf = append(buf, '\t')
		}
		if v := vals[i]; v.Null {
			buf = append(buf, '\\', 'N')
		} else {
			buf = pgvalue.AppendCopyEscaped(buf, v.Text)
		}
	}
	return append(buf, '\n')
}

// copyFrom loads rows (COPY text, or binary) into cols of t. For a table
// with key it runs under a savepoint, and reports false when a row already
// existed: the COPY is rolled back, the caller upserts the rows instead, and
// COPY is not tried on the table for a while.
func (a *Applier) copyFrom(ctx context.Context, tx pgx.Tx, t *Table, cols []int, binary bool, rows io.Reader) (bool, error) {
	sql := copyStatement(t, cols, binary)
	if !t.HasKey() {
		_, err := a.conn.PgConn().CopyFrom(ctx, rows, sql)
		return err == nil, err
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT pgflo_copy"); err != nil {
		return false, err
	}
	_, err := a.conn.PgConn().CopyFrom(ctx, rows, sql)
	if err != nil {
		if sqlState(err) != "23505" {
			return false, err
		}
		if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pgflo_copy"); rbErr != nil {
			return false, rbErr
		}
		a.log.Debugf("COPY into %s hit an existing row (%v); upserting instead", t.Name, err)
		a.noCopyBatches[t.Name] = noCopyAfterConflict
		return false, nil
	}
	_, err = tx.Exec(ctx, "RELEASE SAVEPOINT pgflo_copy")
	return err == nil, err
}
