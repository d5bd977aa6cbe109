package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
)

// A batch's first step in its transaction: its leading runs of inserts
// (INSERT events, or copy packs of snapshot rows) are written with COPY as
// they are decoded, run after run (applyOnce calls streamInserts until a
// change is not for COPY); the planner takes the rest of the batch.
//
// Copy packs (internal/copypack) carry snapshot rows as the source's
// COPY ... TO STDOUT wrote them, in the text form both sessions share
// (event.TextFormSettings). A leading run of packs of one table goes to the
// target's COPY FROM STDIN as it is: no row is parsed or encoded again. Where
// that cannot be done (serial mode, a COPY conflict, packs after other
// changes, a column the target lacks), a pack is expanded into the INSERTs
// of its rows, and the planner applies them as any others.

// streamInserts writes the run of INSERTs of one table starting at the
// batch's index from, as they are decoded, and returns how many changes of
// the batch it took (n), the changes (rows) it wrote (done) and how many it
// left out as already applied by the progress table (skipped). A run of
// INSERT events (all with the same columns) is written with one COPY; for a
// table with a key the COPY runs under a savepoint, and when a row already
// exists it is rolled back and 0 returned: the changes then go through the
// planner (upserts). Copy packs are written by streamPacks.
func (a *Applier) streamInserts(ctx context.Context, b *batchTx, batch *Batch, from int) (n int, done []*Change, skipped int, err error) {
	first := batch.wait(from)
	if first == nil || first.Op != event.Insert {
		return 0, nil, 0, nil
	}
	if first.Snapshot && a.applied(first, b.at) {
		// Late snapshot rows: the planner leaves them out (see applied).
		return 0, nil, 0, nil
	}
	if first.Target.Name == "" {
		first.Target = a.Target(first.Schema, first.Table)
	}
	t, err := a.table(ctx, first)
	if err != nil {
		return 0, nil, 0, err
	}
	if first.Pack != nil {
		n, done, err := a.streamPacks(ctx, b, batch, from, first, t)
		return n, done, 0, err
	}
	if a.noCopyBatches[t.Name] > 0 {
		return 0, nil, 0, nil
	}
	_, has, err := rowValues(t, first.New)
	if err != nil {
		return 0, nil, 0, nil // the planner reports it
	}
	cols := presentColumns(has, t, false)
	// at[j] is the position in the event's row of cols[j].
	at := make([]int, len(cols))
	for j, c := range cols {
		for pos, v := range first.New {
			if v.Name == t.Columns[c].Name {
				at[j] = pos
			}
		}
	}
	same := func(ch *Change) bool {
		if ch == nil || ch.Op != event.Insert || ch.Pack != nil || ch.Schema != first.Schema || ch.Table != first.Table ||
			(ch.Target.Name != "" && ch.Target != first.Target) || len(ch.New) != len(first.New) {
			return false
		}
		for i := range ch.New {
			if ch.New[i].Name != first.New[i].Name {
				return false
			}
		}
		return true
	}
	// Worth a COPY only when the run is long (and a stray INSERT before
	// other changes stays with them).
	for i := 1; i < a.cfg.CopyMinRows; i++ {
		if !same(batch.wait(from + i)) {
			return 0, nil, 0, nil
		}
	}
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 0, 64<<10)
		for i := from; ; i++ {
			ch := batch.wait(i)
			if !same(ch) {
				break
			}
			if ch.Target.Name == "" {
				ch.Target = first.Target
			}
			if !a.applied(ch, b.at) {
				done = append(done, ch)
				buf = appendCopyRow(buf, ch.New, at)
			}
			n++
			if len(buf) >= 32<<10 {
				if _, err := pw.Write(buf); err != nil {
					return
				}
				buf = buf[:0]
			}
		}
		if len(buf) > 0 {
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	ok, err := a.copyFrom(ctx, b.tx, t, cols, false, pr)
	_ = pr.CloseWithError(errors.New("COPY ended"))
	<-finished
	if err != nil {
		return 0, nil, 0, fmt.Errorf("COPY of %d inserts into %s: %w", n, t.Name, err)
	}
	if !ok {
		return 0, nil, 0, nil
	}
	return n, done, n - len(done), nil
}

// streamPacks writes the run of packs of table t starting at the batch's
// index from (first) with one COPY of their rows as they are, as they are
// decoded, and returns how many changes of the batch it took and the changes
// it wrote. When the run is not for COPY (its columns do not map onto t's,
// it holds fewer than copy_min_rows rows, COPY into t is off after a
// conflict) or COPY hit an existing row (and was rolled back), it upserts
// the first pack's rows instead and takes that pack only: the next call goes
// on with the next one.
func (a *Applier) streamPacks(ctx context.Context, b *batchTx, batch *Batch, from int, first *Change, t *Table) (int, []*Change, error) {
	cols, ok := packColumns(t, first.Pack.Columns)
	if !ok || a.noCopyBatches[t.Name] > 0 {
		return a.upsertPack(ctx, b, first)
	}
	// same runs on COPY's goroutine too: it must not change the change.
	same := func(ch *Change) bool {
		if ch == nil || ch.Pack == nil || ch.Op != event.Insert {
			return false
		}
		target := ch.Target
		if target.Name == "" {
			target = a.Target(ch.Schema, ch.Table)
		}
		return target == first.Target && ch.Pack.Binary == first.Pack.Binary && sameColumns(ch.Pack.Columns, first.Pack.Columns) &&
			!a.applied(ch, b.at)
	}
	rows := 0
	for i := from; rows < a.cfg.CopyMinRows; i++ {
		ch := batch.wait(i)
		if !same(ch) {
			return a.upsertPack(ctx, b, first)
		}
		rows += ch.Pack.N
	}
	how := a.packCopyOf(t, cols, first.Pack)
	if a.cfg.CopyConnections > 1 {
		// Writing in shares needs the run whole; decoding packs is quick.
		if run := collectRun(batch, from, maxParallelPacks, same); len(run) > 1 {
			retry, err := a.copyShares(ctx, b, t, cols, how, run, a.cfg.CopyConnections)
			if err != nil {
				return 0, nil, err
			}
			setTarget(run, first.Target)
			done := make([]*Change, 0, len(run))
			for _, ch := range run {
				if !slices.Contains(retry, ch) {
					done = append(done, ch)
				}
			}
			for _, ch := range retry {
				_, rows, err := a.upsertPack(ctx, b, ch)
				if err != nil {
					return 0, nil, err
				}
				done = append(done, rows...)
			}
			a.log.Debugf("Wrote %d snapshot rows of %d packs into %s with COPY (%s) over %d connections (%d packs upserted)", rowsOf(run), len(run), t.Name, how.format(), min(len(run), a.cfg.CopyConnections), len(retry))
			return len(run), done, nil
		}
	}
	r := &packStream{next: batchPacks(batch, from, same), how: how}
	ok, err := a.copyFrom(ctx, b.tx, t, cols, how.binary, r)
	run, declined := r.taken()
	if err != nil {
		return 0, nil, fmt.Errorf("COPY of %d snapshot rows (%d packs) into %s: %w", rowsOf(run), len(run), t.Name, err)
	}
	if !ok {
		return a.upsertPack(ctx, b, first)
	}
	if declined != nil {
		a.declinedBinary(t, cols, declined)
		if len(run) == 0 {
			return a.streamPacks(ctx, b, batch, from, first, t) // as text now
		}
	}
	setTarget(run, first.Target)
	a.log.Debugf("Wrote %d snapshot rows of %d packs into %s with COPY (%s)", rowsOf(run), len(run), t.Name, how.format())
	return len(run), run, nil
}

// packColumns maps a pack's columns to the target table's; false when the
// rows cannot go to COPY as they are (a column the target lacks or cannot
// be written, a column named twice): the planner then applies (or refuses)
// the rows one by one, as INSERT events.
func packColumns(t *Table, columns []event.Column) ([]int, bool) {
	cols := make([]int, len(columns))
	seen := make(map[int]bool, len(columns))
	for j, c := range columns {
		i, ok := t.Column(c.Name)
		if !ok || t.Columns[i].Generated || seen[i] {
			return nil, false
		}
		seen[i] = true
		cols[j] = i
	}
	return cols, true
}

// sameColumns reports whether two packs' rows have the same columns (names
// and types).
func sameColumns(a, b []event.Column) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) > 0 && &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].OID != b[i].OID {
			return false
		}
	}
	return true
}

// setTarget gives the packs of a run without a target the run's.
func setTarget(run []*Change, target TableName) {
	for _, ch := range run {
		if ch.Target.Name == "" {
			ch.Target = target
		}
	}
}

// upsertPack applies the rows of a pack as the INSERT events they stand for
// (upserts by key; plain inserts into a table without key), and returns
// them.
func (a *Applier) upsertPack(ctx context.Context, b *batchTx, ch *Change) (int, []*Change, error) {
	rows, err := ch.expand()
	if err != nil {
		return 0, nil, &decodeError{err}
	}
	p := &planner{
		lookup:  func(c *Change) (*Table, error) { return a.table(ctx, c) },
		reorder: a.cfg.DisableForeignKeys,
	}
	steps, err := p.plan(rows)
	if err != nil {
		return 0, nil, err
	}
	if err := a.execSteps(ctx, b, steps); err != nil {
		return 0, nil, err
	}
	return 1, rows, nil
}

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

// maxParallelPacks bounds the run of packs written in shares at once.
const maxParallelPacks = 64

// collectRun waits for the run of packs that same accepts from the batch's
// index from on, up to max packs.
func collectRun(batch *Batch, from, max int, same func(*Change) bool) []*Change {
	var run []*Change
	for i := from; len(run) < max; i++ {
		ch := batch.wait(i)
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
