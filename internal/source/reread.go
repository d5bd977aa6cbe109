package source

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/state"
)

// Rows a resumed copy must read again by key.
//
// A copy's chunks are page ranges, and an UPDATE can move a row from a page
// of a chunk not yet copied onto a page of a chunk copied before the copy
// was interrupted. The resumed copy, under a newer snapshot, then finds the
// row in neither chunk, and the streamed UPDATE is all the target gets of
// it. That is enough for a row the UPDATE carries whole; an UPDATE that left
// a TOASTed value out (it did not change) cannot be written without the row
// it changes, so the row would be missing. While the stream delivers the
// changes committed before the resumed copy's snapshot, the keys of such
// rows are gathered and recorded in the plan before the slot may be
// confirmed past them; the copy reads those rows again under its snapshot.
// A table with too many of them is copied again whole instead, which keeps
// the record small.

// Bounds on the keys a plan records: a table with more keys, or keys that
// would take the plan's keys past maxRereadBytes, is copied again whole.
const (
	maxRereadKeys  = 10000
	maxRereadBytes = 256 << 10
)

// rereads gathers the keys to read again while the stream is held (see
// above). It is safe for concurrent use.
type rereads struct {
	log logging.Logger

	mu     sync.Mutex
	tables map[string]*rereadTable // schema.name of tables with chunks left
	bytes  int
	// dirty is set when the plan lacks something gathered, changed once
	// anything was, recopied once a table is to be copied again whole.
	dirty, changed, recopied bool
}

type rereadTable struct {
	plan *state.Table
	seen map[string]bool // keys, joined by \x00
	// recopy is set once the table is to be copied again whole.
	recopy bool
}

// newRereads watches the tables of snap that have chunks left to copy,
// knowing the keys its plan already records.
func newRereads(snap *state.Snapshot, log logging.Logger) *rereads {
	r := &rereads{log: log, tables: map[string]*rereadTable{}}
	for _, t := range snap.Tables {
		if len(t.Done) == len(t.Chunks) {
			continue
		}
		rt := &rereadTable{plan: t, seen: map[string]bool{}}
		for _, key := range t.Reread {
			rt.seen[strings.Join(key, "\x00")] = true
			r.bytes += keyBytes(key)
		}
		r.tables[t.Schema+"."+t.Name] = rt
	}
	return r
}

func keyBytes(key []string) int {
	n := 0
	for _, v := range key {
		n += len(v) + 4
	}
	return n
}

// watch is the stream hold's Watch: it notes the row of an UPDATE that
// cannot be written without the target's row.
func (r *rereads) watch(ev *event.Event) {
	if ev.Op != event.Update || len(ev.UnchangedToast) == 0 || inOld(ev) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.tables[ev.Schema+"."+ev.Table]
	if rt == nil || rt.recopy {
		return
	}
	var names, key []string
	for _, c := range ev.Columns {
		if !c.Key {
			continue
		}
		v, ok := ev.New.Get(c.Name)
		if !ok {
			v, ok = ev.Old.Get(c.Name)
		}
		if !ok || v.Null {
			// A key value the event does not carry: the row cannot
			// be found by key.
			r.recopy(rt, "a changed row's key is not in the stream")
			return
		}
		names = append(names, c.Name)
		key = append(key, strings.Clone(v.Text))
	}
	if len(key) == 0 {
		r.recopy(rt, "it has no key")
		return
	}
	if !slices.Equal(rt.plan.RereadKey, names) {
		if len(rt.plan.Reread) > 0 {
			r.recopy(rt, "its key changed")
			return
		}
		rt.plan.RereadKey = names
	}
	joined := strings.Join(key, "\x00")
	if rt.seen[joined] {
		return
	}
	if len(rt.plan.Reread) >= maxRereadKeys || r.bytes+keyBytes(key) > maxRereadBytes {
		r.recopy(rt, "too many of its rows changed")
		return
	}
	rt.seen[joined] = true
	r.bytes += keyBytes(key)
	rt.plan.Reread = append(rt.plan.Reread, key)
	r.dirty, r.changed = true, true
}

// inOld reports whether the event's old row holds every unchanged TOASTed
// value (REPLICA IDENTITY FULL): the row can then be written whole.
func inOld(ev *event.Event) bool {
	for _, name := range ev.UnchangedToast {
		if _, ok := ev.Old.Get(name); !ok {
			return false
		}
	}
	return true
}

// recopy marks the table's chunks to be copied again, whole.
func (r *rereads) recopy(rt *rereadTable, why string) {
	rt.recopy = true
	for _, key := range rt.plan.Reread {
		r.bytes -= keyBytes(key)
	}
	rt.plan.Reread, rt.plan.RereadKey, rt.seen = nil, nil, nil
	rt.plan.Done = []int{}
	r.dirty, r.changed, r.recopied = true, true, true
	r.log.Warnf("the resumed snapshot copies table %s again from its first chunk: %s while the copy was interrupted, and rows may have moved into chunks copied before",
		pgx.Identifier{rt.plan.Schema, rt.plan.Name}.Sanitize(), why)
}

// changedPlan reports whether anything was gathered, and whether a table
// is to be copied again whole.
func (r *rereads) changedPlan() (changed, recopied bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed, r.recopied
}

// record writes the plan when it lacks gathered keys; the caller holds the
// source's lock, under which the plan is changed.
func (r *rereads) record(ctx context.Context, store *state.Store, snap *state.Snapshot) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dirty {
		return nil
	}
	if err := store.SaveSnapshot(ctx, snap); err != nil {
		return err
	}
	r.dirty = false
	return nil
}
