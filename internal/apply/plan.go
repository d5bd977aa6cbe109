package apply

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pgflo/pgflo/internal/event"
)

// A batch's second step: a planning goroutine turns the changes after the
// leading COPY runs into steps (set statements, COPY, truncates), chunk by
// chunk as they are decoded, and hands them to the executor (execute.go).

// planChunk is how many changes are planned together: merging and key
// order happen within a chunk, and a larger statement, its rows in key
// order, costs the target less a row (16,384 against 1,024 changes a
// chunk: 10–20 % less of the target's CPU in the benchmarks' catch-up, its
// rows spread over a million-row table). A chunk is planned while it is
// decoded, and the next while the server executes it. (A variable for
// tests.)
var planChunk = 16384

// planning is a planning goroutine (planChunks): what it plans, and the
// items it hands the executor (applyRest).
type planning struct {
	batch *Batch
	// from is the batch's index of the first change to plan (the ones
	// before went to COPY).
	from   int
	serial bool // see planner.serial
	// at is the group's recorded position: changes before it are left out.
	// nil when it is not known yet (see applyOnce): the executor then checks
	// that no change is applied already.
	at *Position
	// noCopy lists the tables COPY is not tried on in this batch (see
	// Applier.noCopyBatches).
	noCopy map[TableName]bool
	items  chan planItem
	stop   chan struct{}
}

// planItem is what the planning goroutine hands the executor: the steps of
// a chunk, or a DDL event to replay, or a change whose target table it
// needs.
//
// The last two are requests the planner waits on (table, replay): the
// target's table definitions are read, created by schema sync, and changed
// by DDL on the executor's connection, inside the batch's transaction, so
// only the executor can answer, and the planner cannot plan a change
// without its table's key and columns, nor the changes after a DDL event
// before it ran. Planning ahead without the answers would mean planning
// again, and planning on the executor's goroutine would lose the overlap of
// planning one chunk while the server executes the previous one.
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

// startPlanning starts planning the batch's changes from index from on,
// leaving out those the progress table says are applied (at); a nil at is
// not known yet (see applyOnce).
func (a *Applier) startPlanning(batch *Batch, from int, serial bool, at *Position) *planning {
	pl := &planning{batch: batch, from: from, serial: serial, at: at, noCopy: map[TableName]bool{},
		items: make(chan planItem, 1), stop: make(chan struct{})}
	for name := range a.noCopyBatches {
		pl.noCopy[name] = true
	}
	go a.planChunks(pl)
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

// planChunks plans the batch's changes from index from on, in chunks, and
// hands the steps to the executor; it stops at a DDL event until the
// executor replayed it (the next changes have the new table shape). It
// never uses the connection: tables are resolved by the executor.
func (a *Applier) planChunks(pl *planning) {
	defer close(pl.items)
	send := func(it planItem) bool {
		select {
		case pl.items <- it:
			return true
		case <-pl.stop:
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
		serial:  pl.serial,
		reorder: a.cfg.DisableForeignKeys,
		copyMin: a.cfg.CopyMinRows,
		noCopy:  func(t *Table) bool { return pl.noCopy[t.Name] },
	}
	// streamed is the position after the streamed changes planned so far:
	// a snapshot row after one of them in the batch is late as well.
	var streamed Position
	if pl.at != nil {
		streamed = *pl.at
	}
	for i := pl.from; ; {
		var chunk []*Change
		var ddlChange *Change
		skipped, late := 0, 0
		// Each change is planned as soon as it is decoded: the decoder and
		// the planner work on the batch together.
		p.begin()
		var err error
		for len(chunk) < planChunk && err == nil {
			ch := pl.batch.wait(i)
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
					send(planItem{err: &decodeError{expandErr}})
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
			if pl.at != nil && a.applied(ch, *pl.at) {
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
		if pl.batch.wait(i) == nil {
			return
		}
	}
}

// stepKind is what a step of a plan does.
type stepKind uint8

const (
	// stepUpsert writes whole rows: INSERT … ON CONFLICT (key) DO UPDATE,
	// a plain INSERT for a table without key.
	stepUpsert stepKind = iota
	// stepCopy writes the rows of INSERTs with COPY; on a key conflict it
	// is rolled back (savepoint) and done as stepUpsert.
	stepCopy
	// stepUpdate updates rows found by key: rows whose unchanged TOAST
	// values are not known, which must not be inserted.
	stepUpdate
	// stepDelete deletes rows by key.
	stepDelete
	// stepMatchUpdate and stepMatchDelete change one row of a table
	// without key, found by the old values the event carries.
	stepMatchUpdate
	stepMatchDelete
	// stepTruncate truncates tables.
	stepTruncate
	// stepFreeNewKey comes before a stepUpdate moving rows to new keys: it
	// deletes the row at a row's new key while the row at its old key is
	// still on the target, so that the move does not fail on the key. That
	// happens when changes are applied again (a snapshot resumed under a
	// newer snapshot, then the stream from the older consistent point): the
	// new key's row is then a newer version of the same row, copied by a
	// redone chunk, which the replayed stream brings forward again. The
	// event's row wins, as an upsert's does.
	stepFreeNewKey
)

func (k stepKind) String() string {
	return [...]string{"upsert", "copy", "update", "delete", "update", "delete", "truncate", "delete"}[k]
}

// step is one statement of a plan.
type step struct {
	kind  stepKind
	table *Table
	// cols are the target columns the rows carry values of: written
	// columns for upsert, copy and update (after the key, for update);
	// unused for delete, whose rows hold the key.
	cols []int
	rows []*entry
	// match are the columns a match step finds its row by (values in
	// rows[0].old), and tables the tables of a truncate.
	match  []int
	tables []*Table
	// changes are the events the step applies, for messages.
	changes []*Change
}

// entry is one row of a step: the net effect of a run of changes to one
// key.
type entry struct {
	del  bool
	vals []event.Value // by target column index; upsert and update
	has  []bool        // which of vals are known
	// key holds the key values the row is found by (the old key for an
	// update), in key column order.
	key []event.Value
	// inserts is set while every change of the entry is an INSERT.
	inserts bool
	// rekey is set on an update that moves a row to a new key.
	rekey  bool
	change *Change // the last change, for messages
}

// tableRun gathers the changes of one table within a segment of a plan.
type tableRun struct {
	table   *Table
	entries map[string]*entry
	order   []string // keys in first-appearance order
	// ops is used instead for tables without key: their changes are not
	// merged.
	ops []*step
	// inserts is set while the run holds INSERTs only.
	inserts bool
}

// planner turns a batch of changes into steps: consecutive changes are
// merged per table and key into set operations (a later change of a key
// wins), and the order of the source is kept wherever it matters.
type planner struct {
	// lookup returns the target table of a change.
	lookup func(*Change) (*Table, error)
	// serial makes every change its own step(s), in order: no merging.
	serial bool
	// reorder allows changes of different tables to be grouped by table
	// even when the tables have foreign keys (they are not checked).
	reorder bool
	// copyMin is the least number of INSERT rows written with COPY instead
	// of INSERT … ON CONFLICT; 0 disables COPY.
	copyMin int
	// noCopy lists tables not to COPY into for now.
	noCopy func(*Table) bool

	steps []*step
	runs  []*tableRun // the current segment, in first-appearance order
	slab  planSlab
	multi bool // the segment may hold several tables
}

// plan returns the steps applying changes in order.
func (p *planner) plan(changes []*Change) ([]*step, error) {
	p.begin()
	for _, ch := range changes {
		if err := p.next(ch); err != nil {
			return nil, err
		}
	}
	return p.end(), nil
}

// begin starts a plan; next adds its changes one by one, in order, as they
// are decoded (planning the batch while the rest of it is decoded), and end
// returns its steps.
func (p *planner) begin() {
	p.steps = nil
	p.runs = nil
}

func (p *planner) next(ch *Change) error {
	if ch.Op == event.Truncate {
		// One TRUNCATE statement on the source gives an event per table,
		// all with the same LSN: truncate them together, as foreign keys
		// between them require.
		if last := p.lastTruncate(); last != nil && !p.serial && last.changes[0].LSN == ch.LSN {
			return p.addTruncate(last, ch)
		}
		p.flush()
		s := &step{kind: stepTruncate}
		if err := p.addTruncate(s, ch); err != nil {
			return err
		}
		p.steps = append(p.steps, s)
		return nil
	}
	if ch.Op == event.DDL {
		return fmt.Errorf("internal error: DDL event %d reached the planner", ch.Index)
	}
	t, err := p.lookup(ch)
	if err != nil {
		return err
	}
	run := p.runFor(t)
	if err := p.add(run, ch); err != nil {
		return changeError(ch, t, err)
	}
	if p.serial {
		p.flush()
	}
	return nil
}

// lastTruncate returns the plan's last step when it is a truncate and no
// change came after it.
func (p *planner) lastTruncate() *step {
	if len(p.runs) > 0 || len(p.steps) == 0 {
		return nil
	}
	if last := p.steps[len(p.steps)-1]; last.kind == stepTruncate {
		return last
	}
	return nil
}

func (p *planner) end() []*step {
	p.flush()
	return p.steps
}

func (p *planner) addTruncate(s *step, ch *Change) error {
	t, err := p.lookup(ch)
	if err != nil {
		return err
	}
	for _, have := range s.tables {
		if have == t {
			return nil
		}
	}
	s.tables = append(s.tables, t)
	s.changes = append(s.changes, ch)
	return nil
}

// runFor returns the run of table t in the segment, cutting the segment
// first when t's changes must not be reordered with the others'.
func (p *planner) runFor(t *Table) *tableRun {
	for _, r := range p.runs {
		if r.table == t {
			if r == p.runs[len(p.runs)-1] || p.multi {
				return r
			}
			p.flush()
			break
		}
	}
	independent := p.reorder || !t.ForeignKeys
	if len(p.runs) > 0 && !(p.multi && independent) {
		p.flush()
	}
	if len(p.runs) == 0 {
		p.multi = independent
	}
	r := &tableRun{table: t, entries: map[string]*entry{}, inserts: true}
	p.runs = append(p.runs, r)
	return r
}

// flush ends the segment: its runs become steps, table by table.
func (p *planner) flush() {
	for _, r := range p.runs {
		if !r.table.HasKey() {
			for _, s := range r.ops {
				if s.kind == stepUpsert && p.copyMin > 0 && len(s.rows) >= p.copyMin && !p.serial {
					s.kind = stepCopy
				}
			}
			p.steps = append(p.steps, r.ops...)
			continue
		}
		p.steps = append(p.steps, p.runSteps(r)...)
	}
	p.runs = p.runs[:0]
	p.multi = false
}

// runSteps turns a keyed run's entries into steps: deletes first (they
// free key and unique values), then whole rows by shape, then updates of
// rows missing unchanged TOAST values. Entries of different steps have
// different keys, so their order does not change the result.
func (p *planner) runSteps(r *tableRun) []*step {
	t := r.table
	var del *step
	full := map[string]*step{}
	partial := map[string]*step{}
	var out []*step
	copyOK := r.inserts && p.copyMin > 0 && len(r.order) >= p.copyMin && !p.serial && (p.noCopy == nil || !p.noCopy(t))
	var fullOrder, partialOrder []*step
	var last *step // the step of the entry before, and its entry's shape
	var lastHas []bool
	for _, k := range r.order {
		e := r.entries[k]
		switch {
		case e == nil:
			continue
		case e.del:
			if del == nil {
				del = &step{kind: stepDelete, table: t}
			}
			del.rows = append(del.rows, e)
			del.changes = append(del.changes, e.change)
		default:
			complete := e.inserts || !missing(e, t)
			groups, order := full, &fullOrder
			kind := stepUpsert
			if copyOK {
				kind = stepCopy
			}
			if !complete {
				groups, order, kind = partial, &partialOrder, stepUpdate
			}
			if last != nil && last.kind == kind && slices.Equal(lastHas, e.has) {
				// The shape of the entry before, as most are: no lookup.
				last.rows = append(last.rows, e)
				last.changes = append(last.changes, e.change)
				continue
			}
			shape := shapeOf(e.has)
			s := groups[shape]
			last, lastHas = s, e.has
			if s == nil {
				s = &step{kind: kind, table: t, cols: presentColumns(e.has, t, kind == stepUpdate)}
				groups[shape] = s
				last = s
				*order = append(*order, s)
			}
			s.rows = append(s.rows, e)
			s.changes = append(s.changes, e.change)
		}
	}
	if del != nil {
		out = append(out, del)
	}
	out = append(out, fullOrder...)
	out = append(out, partialOrder...)
	for _, s := range out {
		if s.kind != stepCopy {
			sortByKey(s)
		}
	}
	return out
}

// missing reports whether the entry lacks a value the events of its table
// carry (an unchanged TOAST value that is not known).
func missing(e *entry, t *Table) bool {
	return e.change != nil && len(e.change.UnchangedToast) > 0 && !hasAll(e, e.change.UnchangedToast, t)
}

func hasAll(e *entry, names []string, t *Table) bool {
	for _, n := range names {
		if i, ok := t.Column(n); ok && !e.has[i] {
			return false
		}
	}
	return true
}

func shapeOf(has []bool) string {
	b := make([]byte, len(has))
	for i, h := range has {
		if h {
			b[i] = 1
		}
	}
	return string(b)
}

// presentColumns lists the known columns; for an update, without the key
// (it is matched, not set).
func presentColumns(has []bool, t *Table, update bool) []int {
	var cols []int
	for i, h := range has {
		if h && !(update && isKey(t, i)) {
			cols = append(cols, i)
		}
	}
	return cols
}

// add merges one change into its table's run.
func (p *planner) add(r *tableRun, ch *Change) error {
	t := r.table
	if ch.Op != event.Insert {
		r.inserts = false
	}
	if !t.HasKey() {
		return p.addKeyless(r, ch)
	}
	switch ch.Op {
	case event.Insert:
		vals, has, err := p.slab.rowValues(t, ch.New)
		if err != nil {
			return err
		}
		key, err := p.slab.keyOf(t, vals, has, "new")
		if err != nil {
			return err
		}
		e := p.slab.entry(entry{vals: vals, has: has, key: key, inserts: true, change: ch})
		if prev := r.get(key); prev != nil && !prev.del {
			e.inserts = prev.inserts
		}
		r.put(key, e)
	case event.Update:
		vals, has, err := p.slab.rowValues(t, ch.New)
		if err != nil {
			return err
		}
		newKey, err := p.slab.keyOf(t, vals, has, "new")
		if err != nil {
			return err
		}
		oldKey := newKey
		var oldVals []event.Value
		var oldHas []bool
		switch {
		case ch.Old == nil:
		case len(ch.UnchangedToast) == 0:
			// Only the old key is needed.
			if oldKey, err = p.slab.keyOfRow(t, ch.Old, "old"); err != nil {
				return err
			}
		default:
			if oldVals, oldHas, err = p.slab.rowValues(t, ch.Old); err != nil {
				return err
			}
			if oldKey, err = p.slab.keyOf(t, oldVals, oldHas, "old"); err != nil {
				return err
			}
		}
		// Unchanged TOAST values: take them from the whole old row (REPLICA
		// IDENTITY FULL), or from an earlier change of this batch.
		for _, name := range ch.UnchangedToast {
			i, ok := t.Column(name)
			if !ok {
				return &unknownColumnError{fmt.Sprintf("column %q of the event does not exist in target table %s", name, t.Name)}
			}
			if oldHas != nil && oldHas[i] {
				vals[i], has[i] = oldVals[i], true
			}
		}
		prev := r.get(oldKey)
		if prev != nil && !prev.del && !prev.rekey {
			for i := range vals {
				if !has[i] && prev.has[i] {
					vals[i], has[i] = prev.vals[i], true
				}
			}
		}
		e := p.slab.entry(entry{vals: vals, has: has, key: newKey, change: ch})
		rekey := !sameKey(oldKey, newKey)
		if rekey {
			if missing(e, t) {
				// The row moves to a new key and some of its values are
				// only on the target: update it in place, on its own.
				p.flush()
				e.key, e.rekey = oldKey, true
				p.steps = append(p.steps,
					&step{kind: stepFreeNewKey, table: t, rows: []*entry{e}, changes: []*Change{ch}},
					&step{kind: stepUpdate, table: t, cols: presentColumns(has, t, false), rows: []*entry{e}, changes: []*Change{ch}})
				return nil
			}
			r.put(oldKey, p.slab.entry(entry{del: true, key: oldKey, change: ch}))
		}
		r.put(newKey, e)
	case event.Delete:
		if ch.Old == nil {
			return fmt.Errorf("DELETE without old row")
		}
		key, err := p.slab.keyOfRow(t, ch.Old, "old")
		if err != nil {
			return err
		}
		r.put(key, p.slab.entry(entry{del: true, key: key, change: ch}))
	default:
		return fmt.Errorf("unexpected operation %s", ch.Op)
	}
	return nil
}

// addKeyless adds a change of a table without key: INSERTs in a row are
// one insert; each UPDATE and DELETE changes one row found by its old
// values, as the source did.
func (p *planner) addKeyless(r *tableRun, ch *Change) error {
	t := r.table
	switch ch.Op {
	case event.Insert:
		vals, has, err := p.slab.rowValues(t, ch.New)
		if err != nil {
			return err
		}
		e := &entry{vals: vals, has: has, inserts: true, change: ch}
		if n := len(r.ops); n > 0 && r.ops[n-1].kind == stepUpsert && shapeOf(r.ops[n-1].rows[0].has) == shapeOf(has) {
			last := r.ops[n-1]
			last.rows = append(last.rows, e)
			last.changes = append(last.changes, ch)
			return nil
		}
		r.ops = append(r.ops, &step{kind: stepUpsert, table: t, cols: presentColumns(has, t, false), rows: []*entry{e}, changes: []*Change{ch}})
	case event.Update, event.Delete:
		if len(ch.Old) == 0 {
			return fmt.Errorf("%s of a table without key needs the old row (REPLICA IDENTITY FULL on the source), and the event has none", ch.Op)
		}
		oldVals, oldHas, err := p.slab.rowValues(t, ch.Old)
		if err != nil {
			return err
		}
		match := presentColumns(oldHas, t, false)
		e := &entry{key: pick(oldVals, match), change: ch}
		s := &step{kind: stepMatchDelete, table: t, match: match, rows: []*entry{e}, changes: []*Change{ch}}
		if ch.Op == event.Update {
			vals, has, err := p.slab.rowValues(t, ch.New)
			if err != nil {
				return err
			}
			e.vals, e.has = vals, has
			s.kind, s.cols = stepMatchUpdate, presentColumns(has, t, false)
		}
		r.ops = append(r.ops, s)
	default:
		return fmt.Errorf("unexpected operation %s", ch.Op)
	}
	return nil
}

func pick(vals []event.Value, cols []int) []event.Value {
	out := make([]event.Value, len(cols))
	for i, c := range cols {
		out[i] = vals[c]
	}
	return out
}

func (r *tableRun) get(key []event.Value) *entry { return r.entries[keyString(key)] }

func (r *tableRun) put(key []event.Value, e *entry) {
	k := keyString(key)
	if _, ok := r.entries[k]; !ok {
		r.order = append(r.order, k)
	}
	r.entries[k] = e
}

// keyString makes a map key of key values (NULL and "" distinct).
func keyString(key []event.Value) string {
	if len(key) == 1 && !key[0].Null {
		return key[0].Text
	}
	var b strings.Builder
	for _, v := range key {
		if v.Null {
			b.WriteString("\x00N")
		} else {
			b.WriteString("\x00V")
			b.WriteString(v.Text)
		}
	}
	return b.String()
}

func sameKey(a, b []event.Value) bool {
	for i := range a {
		if a[i].Null != b[i].Null || a[i].Text != b[i].Text {
			return false
		}
	}
	return true
}

// planSlab allocates the planner's per-change values in chunks: a
// catch-up plans hundreds of thousands of changes, and one allocation per
// few thousand values instead of five per change is a tenth of the
// planner's time. Chunks are never reused, so steps still being executed
// while the next chunk of changes is planned keep their values; a chunk
// lives as long as anything points into it. The zero value is ready.
type planSlab struct {
	vals    []event.Value
	has     []bool
	entries []entry
}

const planSlabLen = 4096

// values returns n zeroed values and presence flags.
func (s *planSlab) values(n int) ([]event.Value, []bool) {
	vals := s.valuesOnly(n)
	if cap(s.has)-len(s.has) < n {
		s.has = make([]bool, 0, max(planSlabLen, n))
	}
	m := len(s.has)
	s.has = s.has[:m+n]
	return vals, s.has[m : m+n : m+n]
}

// valuesOnly returns n zeroed values.
func (s *planSlab) valuesOnly(n int) []event.Value {
	if cap(s.vals)-len(s.vals) < n {
		s.vals = make([]event.Value, 0, max(planSlabLen, n))
	}
	l := len(s.vals)
	s.vals = s.vals[:l+n]
	return s.vals[l : l+n : l+n]
}

// entry returns a pointer to a copy of e.
func (s *planSlab) entry(e entry) *entry {
	if len(s.entries) == cap(s.entries) {
		s.entries = make([]entry, 0, planSlabLen/4)
	}
	s.entries = append(s.entries, e)
	return &s.entries[len(s.entries)-1]
}

// rowValues places a row's values at their target columns.
func rowValues(t *Table, row event.Row) ([]event.Value, []bool, error) {
	// A slab of exactly one row: a zero one would allocate a whole chunk.
	n := len(t.Columns)
	s := planSlab{vals: make([]event.Value, 0, n), has: make([]bool, 0, n)}
	return s.rowValues(t, row)
}

// rowValues places a row's values at their target columns.
func (s *planSlab) rowValues(t *Table, row event.Row) ([]event.Value, []bool, error) {
	vals, has := s.values(len(t.Columns))
	for pos, v := range row {
		i, err := writableColumn(t, pos, v.Name)
		if err != nil {
			return nil, nil, err
		}
		vals[i], has[i] = v, true
	}
	return vals, has, nil
}

// writableColumn returns the target column of the pos-th value of an
// event's row, named name.
func writableColumn(t *Table, pos int, name string) (int, error) {
	// Events usually list the columns in the table's order.
	i, ok := pos, pos < len(t.Columns) && t.Columns[pos].Name == name
	if !ok {
		i, ok = t.Column(name)
	}
	if !ok {
		return 0, &unknownColumnError{fmt.Sprintf("column %q of the event does not exist in target table %s (add it on the target, or rename or drop it with pg_flo_route)", name, t.Name)}
	}
	if t.Columns[i].Generated {
		return 0, fmt.Errorf("column %q of target table %s is a generated column and cannot be written", name, t.Name)
	}
	return i, nil
}

// keyOfRow returns the key values of an event's row, checked as rowValues
// and keyOf check it, without placing the other values: an old row is
// usually read for its key alone.
func (s *planSlab) keyOfRow(t *Table, row event.Row, which string) ([]event.Value, error) {
	var found [8]bool // which key columns the row has; wider keys take the general path
	if len(t.Key) > len(found) {
		vals, has, err := s.rowValues(t, row)
		if err != nil {
			return nil, err
		}
		return s.keyOf(t, vals, has, which)
	}
	key := s.valuesOnly(len(t.Key))
	for pos, v := range row {
		i, err := writableColumn(t, pos, v.Name)
		if err != nil {
			return nil, err
		}
		for j, k := range t.Key {
			if k == i {
				key[j], found[j] = v, true
			}
		}
	}
	for j := range t.Key {
		if err := checkKeyValue(t, j, found[j], key[j], which); err != nil {
			return nil, err
		}
	}
	return key, nil
}

// checkKeyValue checks the j-th key value of a row: present (has), not NULL.
func checkKeyValue(t *Table, j int, has bool, v event.Value, which string) error {
	k := t.Key[j]
	if !has {
		return fmt.Errorf("the event's %s row lacks column %q of the target's %s (%s), so the row cannot be identified", which, t.Columns[k].Name, t.KeyName, t.keyColumnNames())
	}
	if v.Null {
		return fmt.Errorf("the event's %s row has NULL in column %q of the target's %s", which, t.Columns[k].Name, t.KeyName)
	}
	return nil
}

// keyOf returns the key values of a row.
func (s *planSlab) keyOf(t *Table, vals []event.Value, has []bool, which string) ([]event.Value, error) {
	key := s.valuesOnly(len(t.Key))
	for i, k := range t.Key {
		if err := checkKeyValue(t, i, has[k], vals[k], which); err != nil {
			return nil, err
		}
		key[i] = vals[k]
	}
	return key, nil
}
