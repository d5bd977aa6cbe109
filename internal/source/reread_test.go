package source

import (
	"slices"
	"strconv"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/state"
)

func toastUpdate(table string, id int, old event.Row) *event.Event {
	return &event.Event{
		Op: event.Update, Schema: "public", Table: table,
		Columns:        []event.Column{{Name: "id", Key: true}, {Name: "n"}, {Name: "big"}},
		New:            event.Row{{Name: "id", Text: strconv.Itoa(id)}, {Name: "n", Text: "1"}},
		Old:            old,
		UnchangedToast: []string{"big"},
	}
}

// The rows to read again are those of UPDATEs that left a TOASTed value out
// and do not carry it in their old row, of tables with chunks left, once
// each; a table with too many is copied again whole.
func TestRereadsGatherRowsThatCannotBeWrittenWhole(t *testing.T) {
	snap := &state.Snapshot{Tables: []*state.Table{
		{Schema: "public", Name: "open", Chunks: []state.Chunk{{ID: 0}, {ID: 1}}, Done: []int{0}, Reread: [][]string{{"5"}}, RereadKey: []string{"id"}},
		{Schema: "public", Name: "copied", Chunks: []state.Chunk{{ID: 2}}, Done: []int{2}},
		{Schema: "public", Name: "busy", Chunks: []state.Chunk{{ID: 3}, {ID: 4}}, Done: []int{3}},
	}}
	r := newRereads(snap, testLogger{t})
	r.watch(toastUpdate("open", 5, nil))                                                          // recorded already
	r.watch(toastUpdate("open", 6, nil))                                                          // new
	r.watch(toastUpdate("open", 6, nil))                                                          // again
	r.watch(toastUpdate("open", 7, event.Row{{Name: "id", Text: "7"}, {Name: "big", Text: "x"}})) // whole old row
	r.watch(toastUpdate("copied", 8, nil))                                                        // every chunk copied
	whole := toastUpdate("open", 9, nil)
	whole.UnchangedToast = nil
	r.watch(whole)
	// The key from the old row when the new one lacks it.
	oldKey := toastUpdate("open", 0, event.Row{{Name: "id", Text: "10"}})
	oldKey.New = event.Row{{Name: "n", Text: "1"}}
	r.watch(oldKey)
	if got, want := snap.Tables[0].Reread, [][]string{{"5"}, {"6"}, {"10"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("open: reread %v, want %v", got, want)
	}
	if len(snap.Tables[1].Reread) != 0 {
		t.Errorf("copied: reread %v", snap.Tables[1].Reread)
	}
	for i := 0; i <= maxRereadKeys; i++ {
		r.watch(toastUpdate("busy", i, nil))
	}
	busy := snap.Tables[2]
	if len(busy.Reread) != 0 || len(busy.Done) != 0 {
		t.Errorf("busy: %d keys, done %v: want the table copied again whole", len(busy.Reread), busy.Done)
	}
	r.watch(toastUpdate("busy", 1, nil))
	if len(busy.Reread) != 0 {
		t.Error("busy: keys gathered after the table is to be copied again")
	}
	if changed, recopied := r.changedPlan(); !changed || !recopied || snap.Remaining() != 1+1+2 {
		t.Errorf("changed %v, recopied %v, remaining %d", changed, recopied, snap.Remaining())
	}
}
