package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// A batch's third step: the executor runs the steps the planner hands
// over, in the batch's transaction (set statements in pipelines, COPY), the
// large ones split over side connections.

// applyRest executes in b what the planner hands over, chunk after chunk in
// order, while it plans the next as it is decoded. It returns how many
// changes were applied and how many skipped as already applied.
func (a *Applier) applyRest(ctx context.Context, b *batchTx, pl *planning) (applied, skipped int, err error) {
	defer pl.end()
	for it := range pl.items {
		if pl.at == nil && (a.anyApplied(it.changes, b.at) || (it.ddl != nil && a.applied(it.ddl, b.at))) {
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
				a.log.Warnf("Skipped %d snapshot rows taken before changes group %s already applied (it is at %s): rows of an older copy, such as one by a replicator that no longer owns the group; the newer changes stay", it.late, a.progressRow(), b.at)
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
		sql, args := statement(s, !a.cfg.TextParameters)
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
	case stepFreeNewKey:
		// The old keys, then the new ones (the key columns' values).
		p := newSetParams(2*len(t.Key), binary)
		for j, k := range t.Key {
			p.addKey(&t.Columns[k], j)
		}
		for _, k := range t.Key {
			p.addValue(&t.Columns[k], k)
		}
		args, typed := p.build(s.rows)
		return t.sql(typedKind("f", typed), nil, func() string { return freeNewKeySQL(t, typed) }), args
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

// copyStatement returns the COPY statement loading rows of cols of t, in
// text or binary format.
func copyStatement(t *Table, cols []int, binary bool) string {
	if binary {
		return t.sql("cb", cols, func() string { return copySQL(t, cols) + " WITH (FORMAT binary)" })
	}
	return t.sql("c", cols, func() string { return copySQL(t, cols) })
}

// Large set statements of the stream are split over side connections as
// copy packs are (see copyShares; Config.ApplyConnections): the target's session applying a batch is what
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
			sql, args := statement(split[i], !a.cfg.TextParameters)
			batch := &pgx.Batch{}
			batch.Queue(sql, args...)
			br := conns[i].SendBatch(ctx, batch)
			var err error
			tags[i], err = br.Exec()
			errs[i] = errors.Join(err, br.Close())
		}()
	}
	if len(split[0].rows) > 0 {
		sql, args := statement(split[0], !a.cfg.TextParameters)
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
