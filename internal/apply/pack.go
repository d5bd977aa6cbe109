package apply

import (
	"context"
	"fmt"
	"slices"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

// Copy packs (internal/copypack) carry snapshot rows as the source's
// COPY ... TO STDOUT wrote them, in the text form both sessions share
// (event.TextFormSettings). A leading run of packs of one table goes to the
// target's COPY FROM STDIN as it is: no row is parsed or encoded again. Where
// that cannot be done (serial mode, a COPY conflict, packs after other
// changes, a column the target lacks), a pack is expanded into the INSERTs
// of its rows, and the planner applies them as any others.

// maxParallelPacks bounds the run of packs written in shares at once.
const maxParallelPacks = 64

// DecodePack reads the body of a pack message into ch: one change standing
// for the INSERTs (snapshot rows) of all the pack's rows, with New nil. The
// pack shares body's memory. The caller sets Index, Pos (the first row's
// position) and Target, as for an event.
func DecodePack(body []byte, ch *Change) error {
	p, err := copypack.Parse(body)
	if err != nil {
		return err
	}
	ch.Event = p.Template()
	ch.Pack = p
	return nil
}

// Rows returns how many rows the change writes: a pack's rows, else 1.
func (ch *Change) Rows() int {
	if ch.Pack != nil {
		return ch.Pack.N
	}
	return 1
}

// rowsOf returns how many rows changes write.
func rowsOf(changes []*Change) int {
	n := 0
	for _, ch := range changes {
		n += ch.Rows()
	}
	return n
}

// packRowsOf returns how many rows of changes are rows of packs.
func packRowsOf(changes []*Change) int {
	n := 0
	for _, ch := range changes {
		if ch.Pack != nil {
			n += ch.Pack.N
		}
	}
	return n
}

// expand returns the INSERTs of a pack's rows: the change's event with the
// row as New, the same Index, target and source, Pos the first row's plus
// the row's number (-1 when unknown).
func (ch *Change) expand() ([]*Change, error) {
	p := ch.Pack
	out := make([]Change, 0, p.N)
	vals := make([]event.Value, 0, p.N*len(p.Columns))
	err := p.Values(func(i int, row event.Row) error {
		start := len(vals)
		vals = append(vals, row...)
		c := Change{Event: ch.Event, Pos: -1, Index: ch.Index, Target: ch.Target, Source: ch.Source}
		c.New = vals[start:len(vals):len(vals)]
		if ch.Pos >= 0 {
			c.Pos = ch.Pos + int64(i)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, changeError(ch, nil, err)
	}
	changes := make([]*Change, len(out))
	for i := range out {
		changes[i] = &out[i]
	}
	return changes, nil
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

// streamPacks writes the run of packs of table t starting at the feed's
// index from (first) with one COPY of their rows as they are, as they are
// decoded, and returns how many changes of the feed it took and the changes
// it wrote. When the run is not for COPY (its columns do not map onto t's,
// it holds fewer than copy_min_rows rows, COPY into t is off after a
// conflict) or COPY hit an existing row (and was rolled back), it upserts
// the first pack's rows instead and takes that pack only: the next call goes
// on with the next one.
func (a *Applier) streamPacks(ctx context.Context, b *batchTx, f *Feed, from int, first *Change, t *Table) (int, []*Change, error) {
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
		ch := f.wait(i)
		if !same(ch) {
			return a.upsertPack(ctx, b, first)
		}
		rows += ch.Pack.N
	}
	how := a.packCopyOf(t, cols, first.Pack)
	if a.cfg.CopyConnections > 1 {
		// Writing in shares needs the run whole; decoding packs is quick.
		if run := collectRun(f, from, maxParallelPacks, same); len(run) > 1 {
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
	r := &packStream{next: feedPacks(f, from, same), how: how}
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
			return a.streamPacks(ctx, b, f, from, first, t) // as text now
		}
	}
	setTarget(run, first.Target)
	a.log.Debugf("Wrote %d snapshot rows of %d packs into %s with COPY (%s)", rowsOf(run), len(run), t.Name, how.format())
	return len(run), run, nil
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
		return 0, nil, &feedError{err}
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
