package event

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// commitTime is a commit timestamp with nanoseconds in a non-UTC zone: the
// wire form must be UTC, truncated to PostgreSQL's microseconds.
var commitTime = time.Date(2026, 11, 26, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))

var usersColumns = []Column{
	{Name: "id", Type: "int8", OID: 20, Key: true},
	{Name: "email", Type: "text", OID: 25},
	{Name: "bio", Type: "text", OID: 25},
	{Name: "tags", Type: "_text", OID: 1009},
}

func text(name, value string) Value { return Value{Name: name, Text: value} }
func null(name string) Value        { return Value{Name: name, Null: true} }

// sampleEvents are the shapes the replicator produces, one per operation,
// named for what they exercise.
func sampleEvents() []struct {
	name string
	ev   Event
} {
	return []struct {
		name string
		ev   Event
	}{
		{"insert", Event{
			V: Version, Op: Insert, Schema: "public", Table: "users",
			LSN: 0x16B3748, CommitLSN: 0x16B37A0, Xid: 757, CommitTime: commitTime,
			Columns: usersColumns,
			New:     Row{text("id", "42"), text("email", "a@b.c"), null("bio"), text("tags", `{a,"b c",NULL}`)},
			// The replicator always sets UnchangedToast; nil must still
			// encode as [] (never null).
		}},
		{"insert with empty string and NULL", Event{
			V: Version, Op: Insert, Schema: "public", Table: "users",
			LSN: 1, CommitLSN: 2, Xid: 1, CommitTime: commitTime,
			Columns: usersColumns,
			New:     Row{text("id", "1"), text("email", ""), null("bio"), null("tags")},
		}},
		{"update with unchanged toast, key unchanged", Event{
			V: Version, Op: Update, Schema: "public", Table: "users",
			LSN: 0x1_0000_0010, CommitLSN: 0x1_0000_0100, Xid: 4294967295, CommitTime: commitTime,
			Columns:        usersColumns,
			New:            Row{text("id", "42"), text("email", "new@b.c"), null("tags")},
			Old:            Row{text("id", "42")},
			UnchangedToast: []string{"bio"},
		}},
		{"delete with replica identity full", Event{
			V: Version, Op: Delete, Schema: "sales", Table: "orders",
			LSN: 0xFFFFFFFF_FFFFFFFF, CommitLSN: 0xFFFFFFFF_FFFFFFFF, Xid: 9, CommitTime: commitTime,
			Columns: []Column{{Name: "id", Type: "uuid", OID: 2950, Key: true}, {Name: "total", Type: "numeric", OID: 1700, Key: true}},
			Old:     Row{text("id", "5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10"), text("total", "12345678901234567890.000000001")},
		}},
		{"truncate", Event{
			V: Version, Op: Truncate, Schema: "public", Table: "users",
			LSN: 0x20, CommitLSN: 0x30, Xid: 10, CommitTime: commitTime,
			Columns: usersColumns, UnchangedToast: []string{},
		}},
		{"snapshot row without commit time", Event{
			V: Version, Op: Insert, Schema: "public", Table: "users", Snapshot: true,
			LSN: 0x40, CommitLSN: 0x40,
			Columns: usersColumns,
			New:     Row{text("id", "7"), text("email", "x@y.z"), text("bio", "line1\nline2\t\"quoted\" \\ <b>&</b> \u2028"), text("tags", "{}")},
		}},
		{"identifiers needing escapes", Event{
			V: Version, Op: Insert, Schema: `we"ird\schema`, Table: "tâble\x01<>&",
			LSN: 0x50, CommitLSN: 0x60, Xid: 3, CommitTime: commitTime,
			Columns: []Column{{Name: "ключ", Type: "int4", OID: 23, Key: true}, {Name: "col\"umn", Type: "my enum", OID: 16385}},
			New:     Row{text("ключ", "1"), text("col\"umn", "🎉")},
		}},
	}
}

var (
	lsnPattern        = regexp.MustCompile(`^[0-9A-F]{1,8}/[0-9A-F]{1,8}$`)
	commitTimePattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`)
)

// TestAppendJSONContract checks the wire form against the documented v1
// contract (docs/event.md) through encoding/json, not through our decoder.
func TestAppendJSONContract(t *testing.T) {
	wantFields := []string{"v", "op", "schema", "table", "columns", "new", "old", "unchanged_toast",
		"lsn", "commit_lsn", "xid", "commit_time", "snapshot"}
	sort.Strings(wantFields)

	for _, tc := range sampleEvents() {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			data := ev.AppendJSON(nil)
			if !json.Valid(data) {
				t.Fatalf("AppendJSON wrote invalid JSON: %s", data)
			}
			var doc map[string]any
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}

			var fields []string
			for k := range doc {
				fields = append(fields, k)
			}
			sort.Strings(fields)
			if !slices.Equal(fields, wantFields) {
				t.Fatalf("fields = %v, want exactly %v", fields, wantFields)
			}

			if doc["v"] != float64(1) {
				t.Errorf("v = %v, want 1", doc["v"])
			}
			if doc["op"] != string(ev.Op) || doc["schema"] != ev.Schema || doc["table"] != ev.Table {
				t.Errorf("op/schema/table = %v/%v/%v, want %s/%s/%s", doc["op"], doc["schema"], doc["table"], ev.Op, ev.Schema, ev.Table)
			}
			for field, want := range map[string]pglogrepl.LSN{"lsn": ev.LSN, "commit_lsn": ev.CommitLSN} {
				s, ok := doc[field].(string)
				if !ok || !lsnPattern.MatchString(s) {
					t.Errorf("%s = %#v, want X/Y hex text", field, doc[field])
					continue
				}
				if got, err := pglogrepl.ParseLSN(s); err != nil || got != want {
					t.Errorf("%s = %q (%v), want %s", field, s, err, want)
				}
			}
			if doc["xid"] != float64(ev.Xid) {
				t.Errorf("xid = %v, want %d", doc["xid"], ev.Xid)
			}
			if doc["snapshot"] != ev.Snapshot {
				t.Errorf("snapshot = %v, want %v", doc["snapshot"], ev.Snapshot)
			}

			if ev.CommitTime.IsZero() {
				if doc["commit_time"] != nil {
					t.Errorf("commit_time = %v, want null for a zero time", doc["commit_time"])
				}
			} else {
				s, ok := doc["commit_time"].(string)
				if !ok || !commitTimePattern.MatchString(s) {
					t.Errorf("commit_time = %#v, want RFC 3339 UTC with microseconds", doc["commit_time"])
				} else if want := ev.CommitTime.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z"); s != want {
					t.Errorf("commit_time = %q, want %q", s, want)
				}
			}

			columns, ok := doc["columns"].([]any)
			if !ok || len(columns) != len(ev.Columns) {
				t.Fatalf("columns = %#v, want an array of %d", doc["columns"], len(ev.Columns))
			}
			for i, raw := range columns {
				col, ok := raw.(map[string]any)
				if !ok {
					t.Fatalf("columns[%d] = %#v, want an object", i, raw)
				}
				want := ev.Columns[i]
				if col["name"] != want.Name || col["type"] != want.Type || col["oid"] != float64(want.OID) {
					t.Errorf("columns[%d] = %v, want %+v", i, col, want)
				}
				key, hasKey := col["key"]
				switch {
				case want.Key && key != true:
					t.Errorf("columns[%d].key = %v, want true", i, key)
				case !want.Key && hasKey:
					t.Errorf("columns[%d] has key %v, want it absent for a non-key column", i, key)
				}
				for k := range col {
					if k != "name" && k != "type" && k != "oid" && k != "key" {
						t.Errorf("columns[%d] has unexpected field %q", i, k)
					}
				}
			}

			checkRow(t, "new", doc["new"], ev.New)
			checkRow(t, "old", doc["old"], ev.Old)

			toast, ok := doc["unchanged_toast"].([]any)
			if !ok {
				t.Fatalf("unchanged_toast = %#v, want an array (never null)", doc["unchanged_toast"])
			}
			if len(toast) != len(ev.UnchangedToast) {
				t.Fatalf("unchanged_toast = %v, want %v", toast, ev.UnchangedToast)
			}
			for i, name := range toast {
				if name != ev.UnchangedToast[i] {
					t.Errorf("unchanged_toast[%d] = %v, want %q", i, name, ev.UnchangedToast[i])
				}
			}
		})
	}
}

// checkRow checks a decoded new/old member: null for a nil row, otherwise an
// object of strings (text form) and nulls (SQL NULL).
func checkRow(t *testing.T, field string, got any, want Row) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s = %#v, want null", field, got)
		}
		return
	}
	obj, ok := got.(map[string]any)
	if !ok {
		t.Errorf("%s = %#v, want an object", field, got)
		return
	}
	if len(obj) != len(want) {
		t.Errorf("%s has %d members, want %d: %v", field, len(obj), len(want), obj)
	}
	for _, v := range want {
		value, present := obj[v.Name]
		switch {
		case !present:
			t.Errorf("%s lacks column %q", field, v.Name)
		case v.Null && value != nil:
			t.Errorf("%s.%s = %#v, want null", field, v.Name, value)
		case !v.Null && value != v.Text:
			t.Errorf("%s.%s = %#v, want the string %q", field, v.Name, value, v.Text)
		}
	}
}

// TestMarshalJSONMatchesAppendJSON checks that encoding/json, which validates
// and compacts what a Marshaler returns, accepts the wire form unchanged.
func TestMarshalJSONMatchesAppendJSON(t *testing.T) {
	for _, tc := range sampleEvents() {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			viaJSON, err := json.Marshal(&ev)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			prefix := []byte("prefix")
			appended := ev.AppendJSON(prefix)
			if string(appended[:len(prefix)]) != "prefix" {
				t.Fatalf("AppendJSON clobbered the buffer it appends to: %q", appended)
			}
			if string(viaJSON) != string(appended[len(prefix):]) {
				t.Errorf("json.Marshal = %s\nAppendJSON   = %s", viaJSON, appended[len(prefix):])
			}
			// An Event held by value (in a slice, a struct field, an
			// interface) must marshal to the wire form too, not to the
			// struct's default encoding with a numeric lsn.
			byValue, err := json.Marshal(struct{ Event Event }{ev})
			if err != nil {
				t.Fatalf("json.Marshal by value: %v", err)
			}
			if want := `{"Event":` + string(viaJSON) + `}`; string(byValue) != want {
				t.Errorf("json.Marshal of an Event value = %s\nwant                          %s", byValue, want)
			}
		})
	}
}

func TestAppendJSONKeepsRowOrder(t *testing.T) {
	ev := Event{Op: Insert, New: Row{text("z", "1"), text("a", "2"), null("m")}}
	data := string(ev.AppendJSON(nil))
	if want := `"new":{"z":"1","a":"2","m":null}`; !strings.Contains(data, want) {
		t.Errorf("AppendJSON = %s, want it to contain %s", data, want)
	}
}

// decode reads data with a fresh Decoder.
func decode(data []byte) (*Event, error) {
	var ev Event
	if err := new(Decoder).DecodeEvent(data, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// normalized is what a decoded event must equal: the wire form writes the
// current Version, nil slices as [], and commit_time in UTC to the
// microsecond.
func normalized(ev Event) Event {
	ev.V = Version
	if ev.Columns == nil {
		ev.Columns = []Column{}
	}
	if ev.UnchangedToast == nil {
		ev.UnchangedToast = []string{}
	}
	if !ev.CommitTime.IsZero() {
		ev.CommitTime = ev.CommitTime.UTC().Truncate(time.Microsecond)
	}
	return ev
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, tc := range sampleEvents() {
		t.Run(tc.name, func(t *testing.T) {
			want := normalized(tc.ev)
			data := tc.ev.AppendJSON(nil)
			got, err := decode(data)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			if !got.CommitTime.Equal(want.CommitTime) {
				t.Errorf("commit_time = %v, want %v", got.CommitTime, want.CommitTime)
			}
			gotCmp, wantCmp := *got, want
			gotCmp.CommitTime, wantCmp.CommitTime = time.Time{}, time.Time{}
			if !reflect.DeepEqual(gotCmp, wantCmp) {
				t.Errorf("round trip changed the event\n got: %+v\nwant: %+v", gotCmp, wantCmp)
			}
			if again := got.AppendJSON(nil); string(again) != string(data) {
				t.Errorf("re-encoding differs\nfirst:  %s\nsecond: %s", data, again)
			}
		})
	}
}

func TestDecodeRowDetails(t *testing.T) {
	ev := Event{
		Op: Update, Schema: "public", Table: "t",
		New:            Row{text("c", "3"), text("b", ""), null("a")},
		Old:            Row{text("c", "3")},
		UnchangedToast: []string{"big", "bigger"},
	}
	got, err := decode(ev.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, v := range got.New {
		order = append(order, v.Name)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(order, want) {
		t.Errorf("new column order = %v, want %v", order, want)
	}
	if b, _ := got.New.Get("b"); b.Null || b.Text != "" {
		t.Errorf("empty string decoded as %+v, want a non-NULL empty text", b)
	}
	if a, _ := got.New.Get("a"); !a.Null {
		t.Errorf("NULL decoded as %+v, want Null", a)
	}
	if _, ok := got.New.Get("big"); ok {
		t.Errorf("unchanged TOAST column appeared in new: %+v", got.New)
	}
	if !slices.Equal(got.UnchangedToast, []string{"big", "bigger"}) {
		t.Errorf("unchanged_toast = %v, want [big bigger]", got.UnchangedToast)
	}
}

// TestDecodeOtherProducers reads events written by hand: fields in another
// order, whitespace, lower-case LSN hex, an offset in commit_time.
func TestDecodeOtherProducers(t *testing.T) {
	data := `{
	  "snapshot": false, "xid": 12, "unchanged_toast": [], "old": null,
	  "new": {"b": "x", "a": null},
	  "columns": [{"name": "b", "type": "text", "oid": 25}, {"name": "a", "type": "int4", "oid": 23, "key": true}],
	  "commit_time": "2026-01-02T03:04:05.5+02:00", "commit_lsn": "0/1a", "lsn": "0/1b",
	  "table": "t", "schema": "s", "op": "INSERT", "v": 1, "future_field": "ignored"
	}`
	got, err := decode([]byte(data))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Op != Insert || got.Schema != "s" || got.Table != "t" || got.LSN != 0x1b || got.CommitLSN != 0x1a || got.Xid != 12 {
		t.Errorf("decoded %+v", got)
	}
	if want := time.Date(2026, 1, 2, 1, 4, 5, 500_000_000, time.UTC); !got.CommitTime.Equal(want) {
		t.Errorf("commit_time = %v, want %v", got.CommitTime, want)
	}
	if want := (Row{text("b", "x"), null("a")}); !reflect.DeepEqual(got.New, want) {
		t.Errorf("new = %+v, want %+v", got.New, want)
	}
	if !got.Columns[1].Key || got.Columns[0].Key {
		t.Errorf("columns = %+v, want only a marked as key", got.Columns)
	}
}

func TestOpValid(t *testing.T) {
	for _, op := range []Op{Insert, Update, Delete, Truncate, DDL} {
		if !op.Valid() {
			t.Errorf("%q.Valid() = false", op)
		}
	}
	for _, op := range []Op{"", "insert", "MERGE", "UPSERT", "INSERT "} {
		if op.Valid() {
			t.Errorf("%q.Valid() = true", op)
		}
	}
}

func TestRowGet(t *testing.T) {
	row := Row{text("a", "1"), null("b")}
	if v, ok := row.Get("b"); !ok || !v.Null {
		t.Errorf(`Get("b") = %+v, %v; want the NULL value`, v, ok)
	}
	if _, ok := row.Get("c"); ok {
		t.Error(`Get("c") found a column the row does not have`)
	}
	if _, ok := Row(nil).Get("a"); ok {
		t.Error("Get on a nil row found a column")
	}
}

func TestRowJSON(t *testing.T) {
	cases := []struct {
		row  Row
		want string
	}{
		{nil, `null`},
		{Row{}, `{}`},
		{Row{text("a", ""), null("b"), text("c", "null")}, `{"a":"","b":null,"c":"null"}`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(tc.row)
		if err != nil || string(got) != tc.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tc.row, got, err, tc.want)
		}
		doc, err := decode([]byte(`{"v":1,"op":"INSERT","table":"t","columns":[],"new":` + string(got) + `}`))
		if err != nil {
			t.Fatalf("decode a row %s: %v", got, err)
		}
		back := doc.New
		if (back == nil) != (tc.row == nil) || len(back) != len(tc.row) || (len(back) > 0 && !reflect.DeepEqual(back, tc.row)) {
			t.Errorf("round trip of %s = %#v, want %#v", got, back, tc.row)
		}
	}
}

// TestEncodedColumns: pre-encoded columns give the same JSON, and are
// ignored once the event's column list is replaced.
func TestEncodedColumns(t *testing.T) {
	cols := []Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "na<me>", Type: "text", OID: 25}}
	ev := Event{V: Version, Op: Insert, Schema: "public", Table: "t", Columns: cols,
		New: Row{{Name: "id", Text: "1"}, {Name: "na<me>", Text: "x"}}}
	plain := string(ev.AppendJSON(nil))
	ev.Encoded = EncodeColumns(cols)
	if got := string(ev.AppendJSON(nil)); got != plain {
		t.Fatalf("with encoded columns:\n%s\nwant:\n%s", got, plain)
	}
	ev.Columns = []Column{{Name: "other", Type: "text", OID: 25}}
	if got := string(ev.AppendJSON(nil)); !strings.Contains(got, `"columns":[{"name":"other"`) {
		t.Fatalf("replaced columns not written: %s", got)
	}
}

// TestEncodedCommitTime: a pre-encoded commit time gives the same JSON, in
// any time zone, and is ignored once the event's commit time is another.
func TestEncodedCommitTime(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.FixedZone("x", 3600))
	ev := Event{V: Version, Op: Insert, Schema: "public", Table: "t", CommitTime: at,
		New: Row{{Name: "id", Text: "1"}}}
	plain := string(ev.AppendJSON(nil))
	if !strings.Contains(plain, `"commit_time":"2026-11-27T11:00:00.123456Z"`) {
		t.Fatalf("commit time not in UTC with microseconds: %s", plain)
	}
	ev.EncodedCommitTime = EncodeTime(at.UTC())
	if got := string(ev.AppendJSON(nil)); got != plain {
		t.Fatalf("with the encoded commit time:\n%s\nwant:\n%s", got, plain)
	}
	ev.CommitTime = at.Add(time.Second)
	if got := string(ev.AppendJSON(nil)); !strings.Contains(got, `"commit_time":"2026-11-27T11:00:01.123456Z"`) {
		t.Fatalf("another commit time not written: %s", got)
	}
}
