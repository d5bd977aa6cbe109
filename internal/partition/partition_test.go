package partition

import (
	"errors"
	"strconv"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

var usersColumns = []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true},
	{Name: "email", Type: "text", OID: 25},
}

// raw encodes ev as the replicator does and reads it back as the output
// routes it.
func raw(t *testing.T, ev event.Event) *event.RawEvent {
	t.Helper()
	ev.V = event.Version
	var dec event.Decoder
	var out event.RawEvent
	if err := dec.DecodeRaw(ev.AppendJSON(nil), &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func row(id string) event.Row {
	return event.Row{{Name: "id", Text: id}, {Name: "email", Text: id + "@example.com"}}
}

func key(id string) event.Row { return event.Row{{Name: "id", Text: id}} }

// keysIn returns two ids of users whose rows are in different partitions
// (differ true) or the same one (differ false) among n.
func keysIn(t *testing.T, n int, differ bool) (string, string) {
	t.Helper()
	part := func(id string) int {
		r, err := Route(raw(t, event.Event{Op: event.Insert, Schema: "public", Table: "users", Columns: usersColumns, New: row(id)}), n)
		if err != nil {
			t.Fatal(err)
		}
		return r.Partition
	}
	first := part("1")
	for i := 2; i < 1000; i++ {
		id := strconv.Itoa(i)
		if (part(id) != first) == differ {
			return "1", id
		}
	}
	t.Fatal("no such keys")
	return "", ""
}

// The changes of one row go to one partition; only what concerns several
// partitions is a barrier.
func TestRoute(t *testing.T) {
	const n = 4
	a, sameAsA := keysIn(t, n, false)
	_, otherThanA := keysIn(t, n, true)
	insertA, err := Route(raw(t, event.Event{Op: event.Insert, Schema: "public", Table: "users", Columns: usersColumns, New: row(a)}), n)
	if err != nil {
		t.Fatal(err)
	}
	fullColumns := []event.Column{{Name: "a", Type: "int4", OID: 23, Key: true}, {Name: "b", Type: "text", OID: 25, Key: true}}
	tablePart := Of(NewHasher("public", "nokey").Sum(), n)
	for _, tc := range []struct {
		name    string
		ev      event.Event
		want    Routing
		wantErr error
	}{
		{"update of the row", event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: usersColumns, New: row(a), Old: key(a)}, insertA, nil},
		{"delete of the row", event.Event{Op: event.Delete, Schema: "public", Table: "users", Columns: usersColumns, Old: key(a)}, insertA, nil},
		{"key changed within the partition", event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: usersColumns, New: row(sameAsA), Old: key(a)}, insertA, nil},
		{"key changed to another partition", event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: usersColumns, New: row(otherThanA), Old: key(a)}, Routing{Barrier: true}, nil},
		{"unchanged TOASTed key", event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: usersColumns,
			New: event.Row{{Name: "email", Text: "x"}}, Old: key(a), UnchangedToast: []string{"id"}}, insertA, nil},
		{"truncate", event.Event{Op: event.Truncate, Schema: "public", Table: "users", Columns: usersColumns}, Routing{Barrier: true}, nil},
		{"ddl", event.Event{Op: event.DDL, Schema: "public", Table: "users", Columns: []event.Column{{Name: "ddl_command", Type: "text", OID: 25}},
			New: event.Row{{Name: "ddl_command", Text: "ALTER TABLE users ADD x int"}}}, Routing{Barrier: true}, nil},
		{"replica identity full: the table's partition", event.Event{Op: event.Update, Schema: "public", Table: "nokey", Columns: fullColumns,
			New: event.Row{{Name: "a", Text: "1"}, {Name: "b", Text: "new"}}, Old: event.Row{{Name: "a", Text: "1"}, {Name: "b", Text: "old"}}}, Routing{Partition: tablePart}, nil},
		{"no key: the table's partition", event.Event{Op: event.Insert, Schema: "public", Table: "nokey",
			Columns: []event.Column{{Name: "a", Type: "int4", OID: 23}}, New: event.Row{{Name: "a", Text: "1"}}}, Routing{Partition: tablePart}, nil},
		{"key column missing", event.Event{Op: event.Delete, Schema: "public", Table: "users", Columns: usersColumns,
			Old: event.Row{{Name: "email", Text: "x"}}}, Routing{}, ErrNoKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Route(raw(t, tc.ev), n)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("routed to %+v, want %+v", got, tc.want)
			}
		})
	}
	// One partition: nothing is routed, TRUNCATE stays a barrier by kind.
	if r, _ := Route(raw(t, event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: usersColumns, New: row(otherThanA), Old: key(a)}), 1); r != (Routing{}) {
		t.Fatalf("one partition: %+v", r)
	}
}

// The hash is part of the stream's layout: a change resent after an upgrade
// must land where its first copy did.
func TestHashIsStable(t *testing.T) {
	h := NewHasher("public", "users")
	h.Add("42")
	// FNV-1a of public, 0xff, users, 0xff, 42, 0xff.
	if got, want := h.Sum(), uint64(0xc1c61662489cfa33); got != want {
		t.Fatalf("hash %#x, want %#x: the partitioning hash changed", got, want)
	}
	if PackPartition("snapshot.abc.3", 1024, 8) != PackPartition("snapshot.abc.3", 1024, 8) {
		t.Fatal("pack partition not deterministic")
	}
	// Values are delimited: ("ab", "c") and ("a", "bc") differ.
	x, y := NewHasher("ab", "c"), NewHasher("a", "bc")
	if x.Sum() == y.Sum() {
		t.Fatal("names not delimited")
	}
}

func TestBarrierIDs(t *testing.T) {
	ids := []BarrierID{
		{CommitLSN: 0x100, Pos: 3, Sync: true},
		{CommitLSN: 0x100, Pos: 3},
		{CommitLSN: 0x100, Pos: 4},
		{CommitLSN: 0x1_0000_0000, Pos: 0},
	}
	for i, id := range ids {
		back, err := ParseBarrierID(id.String())
		if err != nil || back != id {
			t.Fatalf("%s read back as %v, %v", id, back, err)
		}
		if i > 0 && !ids[i-1].Less(id) {
			t.Fatalf("%s not before %s", ids[i-1], id)
		}
		if id.Less(id) {
			t.Fatalf("%s before itself", id)
		}
	}
	if (BarrierID{}).Less(BarrierID{}) || !(BarrierID{}).Less(ids[0]) {
		t.Fatal("zero id not first")
	}
	for _, bad := range []string{"", "0/100", "x:1", "0/100:y", "0/100:1:other"} {
		if _, err := ParseBarrierID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The hashes the replicator computes from the decoded row (EventHashes)
// route every change where Route, reading its JSON, does: the metadata and
// the body never disagree.
func TestEventHashesAgreeWithRoute(t *testing.T) {
	cols := []event.Column{
		{Name: "tenant", Type: "text", OID: 25, Key: true},
		{Name: "id", Type: "int8", OID: 20, Key: true},
		{Name: "v", Type: "text", OID: 25},
	}
	values := []string{"a", `quote " and \ back`, "<tag> & amp", "ünïcode ☃", "tab\tnew\nline", "", "1", "2", "3"}
	keyRow := func(tenant, id string) event.Row {
		return event.Row{{Name: "tenant", Text: tenant}, {Name: "id", Text: id}}
	}
	fullRow := func(tenant, id string) event.Row {
		return append(keyRow(tenant, id), event.Value{Name: "v", Null: true})
	}
	var evs []event.Event
	for i, a := range values {
		b := values[(i+3)%len(values)]
		evs = append(evs,
			event.Event{Op: event.Insert, Schema: "s", Table: "t", Columns: cols, New: fullRow(a, b)},
			event.Event{Op: event.Delete, Schema: "s", Table: "t", Columns: cols, Old: keyRow(a, b)},
			event.Event{Op: event.Update, Schema: "s", Table: "t", Columns: cols, New: fullRow(a, b), Old: keyRow(a, b)},
			event.Event{Op: event.Update, Schema: "s", Table: "t", Columns: cols, New: fullRow(b, a), Old: keyRow(a, b)},
			event.Event{Op: event.Update, Schema: "s", Table: "t", Columns: cols, New: event.Row{{Name: "id", Text: a}}, Old: keyRow(b, b), UnchangedToast: []string{"tenant"}},
			event.Event{Op: event.Insert, Schema: "s", Table: "t", Columns: cols, New: event.Row{{Name: "tenant", Null: true}, {Name: "id", Text: a}}},
		)
	}
	for n := 2; n <= 8; n++ {
		for i := range evs {
			ev := &evs[i]
			want, err := Route(raw(t, *ev), n)
			if err != nil {
				t.Fatal(err)
			}
			hash, newHash, moved, ok := EventHashes(ev)
			if !ok {
				t.Fatalf("event %d: no hashes", i)
			}
			if got := RouteHashes(hash, newHash, moved, n); got != want {
				t.Fatalf("event %d (%s), %d partitions: from the row %+v, from the JSON %+v", i, ev.Op, n, got, want)
			}
		}
	}
	if _, _, _, ok := EventHashes(&event.Event{Op: event.Truncate, Schema: "s", Table: "t", Columns: cols}); ok {
		t.Fatal("a TRUNCATE has hashes")
	}
}
