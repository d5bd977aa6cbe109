package apply

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A batch's leading run of copy packs can be written over several
// connections at once (Config.CopyConnections): the target's COPY FROM is
// what bounds an initial sync, and one server process parses and indexes
// rows on one core. The first share of the packs goes into the batch's own
// transaction; every other share is written and committed on a side
// connection of its own before the batch commits. Snapshot rows are
// idempotent (a pack written again hits its rows and is upserted instead)
// and are not tracked by the progress table, so committing them apart
// loses nothing: a batch that fails after a side connection committed is
// redelivered, and its packs are upserted over the rows already there.

// sideConn returns the i-th side connection (0-based), opening it with the
// main connection's settings the first time.
func (a *Applier) sideConn(ctx context.Context, i int) (*pgx.Conn, error) {
	for len(a.side) <= i {
		a.side = append(a.side, nil)
	}
	if c := a.side[i]; c != nil && !c.IsClosed() {
		return c, nil
	}
	conn, err := pgx.ConnectConfig(ctx, a.pcfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("open side connection %d to the target: %s", i+1, redactErr(err, a.pcfg.Password))
	}
	useColumnCodec(conn.TypeMap())
	setup := []string{"SET lock_timeout = '" + sideLockTimeout + "'"}
	if a.cfg.DisableForeignKeys {
		setup = append(setup, "SET session_replication_role = replica")
	}
	for _, sql := range setup {
		if _, err := conn.Exec(ctx, sql); err != nil {
			_ = conn.Close(context.Background())
			return nil, fmt.Errorf("side connection %d to the target: %s: %w", i+1, sql, err)
		}
	}
	a.side[i] = conn
	return conn, nil
}

// closeSide closes the side connections.
func (a *Applier) closeSide(ctx context.Context) {
	for i, c := range a.side {
		if c != nil {
			_ = c.Close(ctx)
		}
		a.side[i] = nil
	}
}

// collectRun waits for the run of packs that same accepts from the feed's
// index from on, up to max packs.
func collectRun(f *Feed, from, max int, same func(*Change) bool) []*Change {
	var run []*Change
	for i := from; len(run) < max; i++ {
		ch := f.wait(i)
		if !same(ch) {
			break
		}
		run = append(run, ch)
	}
	return run
}

// copyShares writes run (packs of t, columns cols) in shares: the first in
// b's transaction (under a savepoint), the others each on a side connection
// in a transaction of its own, all at once. It returns the packs whose COPY
// hit an existing row (rolled back): the caller upserts them.
func (a *Applier) copyShares(ctx context.Context, b *batchTx, t *Table, cols []int, how packCopy, run []*Change, shares int) ([]*Change, error) {
	groups := split(run, shares)
	sql := copyStatement(t, cols, how.binary)
	conns := make([]*pgx.Conn, len(groups))
	for i := 1; i < len(groups); i++ {
		c, err := a.sideConn(ctx, i-1)
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	type outcome struct {
		retry, conflict bool
		err             error
	}
	results := make([]outcome, len(groups))
	streams := make([]*packStream, len(groups))
	for i, g := range groups {
		streams[i] = &packStream{next: slicePacks(g), how: how}
	}
	var wg sync.WaitGroup
	for i := 1; i < len(groups); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry, conflict, err := copyCommitted(ctx, conns[i], sql, streams[i])
			results[i] = outcome{retry, conflict, err}
		}()
	}
	ok, err := a.copyFrom(ctx, b.tx, t, cols, how.binary, streams[0])
	results[0] = outcome{!ok && err == nil, !ok && err == nil, err}
	wg.Wait()
	var retry []*Change
	var errs []error
	var declined error
	conflict := false
	for i, r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.retry:
			retry = append(retry, groups[i]...)
			conflict = conflict || r.conflict
		default:
			// A pack the conversion declined ended its share's COPY: it and
			// the share's packs after it are upserted by the caller.
			if taken, err := streams[i].taken(); err != nil {
				retry = append(retry, groups[i][len(taken):]...)
				declined = err
			}
		}
	}
	if declined != nil {
		a.declinedBinary(t, cols, declined)
	}
	if len(errs) > 0 {
		// A side connection in an unknown state is not used again.
		a.closeSide(context.Background())
		return nil, fmt.Errorf("COPY of %d snapshot rows (%d packs) into %s over %d connections: %w", rowsOf(run), len(run), t.Name, len(groups), errors.Join(errs...))
	}
	if conflict {
		a.noCopyBatches[t.Name] = noCopyAfterConflict
	}
	return retry, nil
}

// copyCommitted runs COPY with rows in a transaction of its own on conn and
// commits it; conflict reports rows the caller must write itself (rolled
// back).
func copyCommitted(ctx context.Context, conn *pgx.Conn, sql string, rows io.Reader) (retry, conflict bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, false, err
	}
	if _, err := conn.PgConn().CopyFrom(ctx, rows, sql); err != nil {
		_ = tx.Rollback(context.Background())
		// A row already there (the pack is delivered again), a table the
		// batch's own transaction created (schema sync) that no other
		// session sees yet, or a lock waited for too long (perhaps held by
		// the batch's own transaction): the caller applies these rows in
		// that transaction instead.
		switch sqlState(err) {
		case "23505":
			return true, true, nil
		case "42P01", "55P03":
			return true, false, nil
		}
		return false, false, err
	}
	return false, false, tx.Commit(ctx)
}

// split cuts run into at most n contiguous shares of about equal rows.
func split(run []*Change, n int) [][]*Change {
	n = min(n, len(run))
	total := rowsOf(run)
	groups := make([][]*Change, 0, n)
	start, acc := 0, 0
	for i, ch := range run {
		acc += ch.Rows()
		// Close a share once it holds its part of the rows, or when the
		// packs left are just enough for one per share still to come.
		left, needed := len(run)-(i+1), n-1-len(groups)
		if needed > 0 && left >= needed && (acc*n >= total*(len(groups)+1) || left == needed) {
			groups = append(groups, run[start:i+1])
			start = i + 1
		}
	}
	return append(groups, run[start:])
}

// Large set statements of the stream are split the same way
// (Config.ApplyConnections): the target's session applying a batch is what
// bounds a catch-up, and it works on one core. A step's rows are split by a
// hash of their key, so every change of a key, in this batch and the next,
// goes through the same connection in order; the batch's transaction takes
// the first part, each side connection applies its part in a transaction of
// its own (one round trip) that commits before the next step starts. A
// batch that fails after a side part committed is delivered again, and every
// step is idempotent for the rows it touches (upserts of whole rows, updates
// of known columns, deletes by key), so it converges to the same rows; it is
// then applied on the batch's connection alone. Only tables whose rows cannot
// meet across keys are split: a key, no other unique index or exclusion
// constraint, and no foreign key (unless disable_foreign_keys).

// splitMinRows is the least number of rows a part of a split step gets (a
// variable for tests).
var splitMinRows = 256

// sideLockTimeout bounds how long a side connection waits for a lock: the
// lock's holder may be the batch's own transaction, which waits for the side
// connection in turn (a variable for tests).
var sideLockTimeout = "5s"

// sideError marks a failure on a side connection: the batch is applied
// again without them.
type sideError struct{ err error }

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

// parts returns how many connections apply step s: 1 unless it is a large
// set statement of a table whose rows only meet by key.
func (a *Applier) parts(b *batchTx, s *step) int {
	if !b.parallel || a.cfg.ApplyConnections < 2 {
		return 1
	}
	switch s.kind {
	case stepUpsert, stepUpdate, stepDelete:
	default:
		return 1
	}
	t := s.table
	if !t.HasKey() || t.OtherUnique || (t.ForeignKeys && !a.cfg.DisableForeignKeys) {
		return 1
	}
	return max(1, min(a.cfg.ApplyConnections, len(s.rows)/splitMinRows))
}

// execSplit applies step s over parts connections at once: the first part
// in tx, the others each committed on a side connection.
func (a *Applier) execSplit(ctx context.Context, b *batchTx, s *step, parts int) error {
	split := splitByKey(s, parts, a.splitSeed)
	conns := make([]*pgx.Conn, parts)
	for i := 1; i < parts; i++ {
		c, err := a.sideConn(ctx, i-1)
		if err != nil {
			return &sideError{err}
		}
		conns[i] = c
	}
	// Each part's statement is built on the goroutine that sends it, all at
	// once: converting the values of a catch-up's statement takes a few
	// milliseconds the target would otherwise wait.
	errs := make([]error, parts)
	tags := make([]pgconn.CommandTag, parts)
	var wg sync.WaitGroup
	for i := 1; i < parts; i++ {
		if len(split[i].rows) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A batch of one statement runs in an implicit transaction
			// that commits before the results are all read.
			sql, args := statement(split[i], a.cfg.BinaryParameters)
			batch := &pgx.Batch{}
			batch.Queue(sql, args...)
			br := conns[i].SendBatch(ctx, batch)
			var err error
			tags[i], err = br.Exec()
			errs[i] = errors.Join(err, br.Close())
		}()
	}
	if len(split[0].rows) > 0 {
		sql, args := statement(split[0], a.cfg.BinaryParameters)
		tags[0], errs[0] = b.tx.Exec(ctx, sql, args...)
	}
	wg.Wait()
	sideErr := errors.Join(errs[1:]...)
	if sideErr != nil {
		// A side connection in an unknown state is not used again.
		a.closeSide(context.Background())
	}
	if errs[0] != nil {
		return stepError(split[0], errs[0])
	}
	if sideErr != nil {
		return &sideError{fmt.Errorf("%s of %d rows of %s over %d connections: %w", s.kind, len(s.rows), s.table.Name, parts, sideErr)}
	}
	for i, part := range split {
		if len(part.rows) > 0 {
			a.checkRows(part, tags[i])
		}
	}
	b.splitRows += len(s.rows) - len(split[0].rows)
	return nil
}

// splitByKey cuts a step's rows into n steps by a hash of their keys; one
// seed for a whole batch keeps a key's changes on one connection.
func splitByKey(s *step, n int, seed maphash.Seed) []*step {
	out := make([]*step, n)
	for i := range out {
		out[i] = &step{kind: s.kind, table: s.table, cols: s.cols}
	}
	var h maphash.Hash
	for i, e := range s.rows {
		h.SetSeed(seed)
		for _, v := range e.key {
			h.WriteString(v.Text)
			h.WriteByte(0)
		}
		part := out[h.Sum64()%uint64(n)]
		part.rows = append(part.rows, e)
		part.changes = append(part.changes, s.changes[i])
	}
	return out
}
