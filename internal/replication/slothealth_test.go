package replication

import (
	"strings"
	"testing"
)

// A slot is invalid by any of the signs the server versions give:
// wal_status lost, conflicting (16+), an invalidation_reason (17+).
func TestSlotHealthInvalid(t *testing.T) {
	for _, c := range []struct {
		h    SlotHealth
		want bool
	}{
		{SlotHealth{WALStatus: "reserved"}, false},
		{SlotHealth{WALStatus: "extended"}, false},
		{SlotHealth{WALStatus: "unreserved"}, false},
		{SlotHealth{}, false},
		{SlotHealth{WALStatus: "lost"}, true},
		{SlotHealth{WALStatus: "reserved", Conflicting: true}, true},
		{SlotHealth{WALStatus: "reserved", InvalidationReason: "rows_removed"}, true},
	} {
		if got := c.h.Invalid(); got != c.want {
			t.Errorf("%+v: Invalid() = %v, want %v", c.h, got, c.want)
		}
	}
}

// The error names the slot, the catalog's view and PostgreSQL's own words
// for an invalidated slot, and what is at stake for a dropped one.
func TestSlotLostErrorText(t *testing.T) {
	invalid := (&SlotLostError{Slot: "s", Health: SlotHealth{WALStatus: "lost"}, Server: "cannot read — because"}).Error()
	for _, want := range []string{`slot "s" was invalidated`, "(wal_status lost)", "cannot read — because", "changes since its last confirmed position are gone"} {
		if !strings.Contains(invalid, want) {
			t.Errorf("%q lacks %q", invalid, want)
		}
	}
	dropped := (&SlotLostError{Slot: "s", Dropped: true, Since: "created then"}).Error()
	for _, want := range []string{`slot "s" no longer exists`, "(created then)", "silently skip"} {
		if !strings.Contains(dropped, want) {
			t.Errorf("%q lacks %q", dropped, want)
		}
	}
}
