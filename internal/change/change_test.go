package change

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/event"
)

func sampleEvent() event.Event {
	return event.Event{
		V: event.Version, Op: event.Update, Schema: "public", Table: "users",
		LSN: 0x16B3748, CommitLSN: 0x16B37A0, Xid: 757, CommitTime: time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC),
		Columns: []event.Column{
			{Name: "id", Type: "int8", OID: 20, Key: true},
			{Name: "email", Type: "text", OID: 25},
			{Name: "tags", Type: "_text", OID: 1009},
			{Name: "bio", Type: "text", OID: 25},
			{Name: "ключ \"q\"", Type: "jsonb", OID: 3802},
		},
		New: event.Row{{Name: "id", Text: "9007199254740993"}, {Name: "email", Text: "a<b>@c.d\n"},
			{Name: "tags", Text: `{a,"b c",NULL}`}, {Name: "ключ \"q\"", Text: `{"a": [1, 2.50]}`}},
		Old:            event.Row{{Name: "id", Text: "9007199254740993"}},
		UnchangedToast: []string{"bio"},
	}
}

// TestRoundTrip: what internal/event writes, Parse then AppendJSON writes
// back byte for byte.
func TestRoundTrip(t *testing.T) {
	ev := sampleEvent()
	wire := ev.AppendJSON(nil)
	parsed, err := Parse(wire, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := parsed.AppendJSON(nil); string(got) != string(wire) {
		t.Fatalf("round trip differs\n got: %s\nwant: %s", got, wire)
	}
	for _, doc := range []string{
		`{"v":1,"op":"DELETE","schema":"s","table":"t","columns":[],"new":null,"old":{},"unchanged_toast":[]}`,
	} {
		parsed, err := Parse([]byte(doc), nil)
		if err != nil {
			t.Fatalf("Parse(%s): %v", doc, err)
		}
		if got := parsed.AppendJSON(nil); string(got) != doc {
			t.Errorf("round trip of %s = %s", doc, got)
		}
	}
}

// typedJSON parses ev's wire form, decodes it and writes it again.
func typedJSON(t *testing.T, ev event.Event) []byte {
	t.Helper()
	parsed, err := Parse(ev.AppendJSON(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Decode(); err != nil {
		t.Fatal(err)
	}
	return parsed.AppendJSON(nil)
}

func TestDecode(t *testing.T) {
	ev := sampleEvent()
	out := typedJSON(t, ev)
	var doc struct {
		New   map[string]any `json:"new"`
		Typed bool           `json:"typed"`
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("typed event is not JSON: %v\n%s", err, out)
	}
	if !doc.Typed || doc.New["id"] != json.Number("9007199254740993") || doc.New["email"] != "a<b>@c.d\n" {
		t.Errorf("typed event = %s", out)
	}
	if !strings.Contains(string(out), `"tags":["a","b c",null]`) || !strings.Contains(string(out), `{"a": [1, 2.50]}`) {
		t.Errorf("typed event = %s", out)
	}
	// A typed event reads back, and its values give the text forms again.
	again, err := Parse(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range ev.New {
		f := again.New[i]
		col, _ := again.Column(f.Name)
		text, ok, err := again.Text(f, col)
		if err != nil || !ok || text != want.Text {
			t.Errorf("Text(%s) = %q, %v, %v; want %q", f.Name, text, ok, err, want.Text)
		}
	}
}
