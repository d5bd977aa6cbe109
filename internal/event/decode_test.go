package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// The readers of the change event, which must accept and reject the same
// documents and read the same event from them:
//   - text: Decoder.DecodeEvent, pg_flo_postgres's reader of raw events;
//   - any: Decoder.Decode, the same for raw or typed events;
//   - raw: Decoder.DecodeRaw through change.Parse, the processors' reader;
//   - reference: eventtest.Decode, encoding/json member by member.
//
// A raw event is read by all four alike. A typed one ("typed": true) is
// read by any and raw, and refused by text and the reference with
// ErrTypedValues.

// outcome is what a case expects of the readers.
type outcome int

const (
	accepted outcome = iota
	typedOnly
	rejected
)

// base is a complete raw event; the cases are mostly edits of it.
const base = `{"v":1,"op":"INSERT","schema":"public","table":"users","lsn":"0/16B3748","commit_lsn":"0/16B37A0","xid":757,"commit_time":"2026-11-26T12:00:00.123456Z","snapshot":false,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"email","type":"text","oid":25}],"new":{"id":"42","email":"a@b.c"},"old":null,"unchanged_toast":[]}`

func with(old, new string) string {
	if !strings.Contains(base, old) {
		panic(fmt.Sprintf("base lacks %s", old))
	}
	return strings.Replace(base, old, new, 1)
}

var decodeCases = []struct {
	name string
	doc  string
	want outcome
	// err, if set, is part of the text and raw readers' error.
	err string
}{
	{"complete", base, accepted, ""},
	{"update, commit_time null, snapshot, max xid", `{"v":1,"op":"UPDATE","schema":"s","table":"Order Items","lsn":"1/0","commit_lsn":"1/10","xid":4294967295,"commit_time":null,"snapshot":true,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"bio","type":"text","oid":25}],"new":{"id":"1"},"old":{"id":"1"},"unchanged_toast":["bio"]}`, accepted, ""},
	{"escapes, unicode, surrogates, HTML escapes", `{"v":1,"op":"INSERT","schema":"p","table":"t","lsn":"0/1","commit_lsn":"0/2","xid":1,"commit_time":null,"snapshot":false,"columns":[],"new":{"a":"line 1\nline 2\t\"q\" \\ \/ \u003c\u003e\u0026 \u00e9 \ud83d\ude00 \ud800 x","b":null,"c":"","d":"\\x0102ff","é":"ü"},"old":null,"unchanged_toast":[]}`, accepted, ""},
	{"other order, whitespace, unknown members", " {\n \"table\" : \"t\", \"extra\": {\"a\":[1,2,{\"b\":null}],\"c\":-1.5e3}, \"op\":\"DELETE\",\"v\" : 1, \"schema\":\"public\",\"old\":{\"id\":\"7\"},\"new\":null,\"columns\":[],\"unchanged_toast\":[] } ", accepted, ""},
	{"other producers: lower-case hex, offset in commit_time", `{
	  "snapshot": false, "xid": 12, "unchanged_toast": [], "old": null,
	  "new": {"b": "x", "a": null},
	  "columns": [{"name": "b", "type": "text", "oid": 25}, {"name": "a", "type": "int4", "oid": 23, "key": true}],
	  "commit_time": "2026-01-02T03:04:05.5+02:00", "commit_lsn": "0/1a", "lsn": "0/1b",
	  "table": "t", "schema": "s", "op": "INSERT", "v": 1, "future_field": "ignored"
	}`, accepted, ""},
	{"truncate, commit_time without fraction", `{"v":1,"op":"TRUNCATE","schema":"public","table":"t","lsn":"0/1","commit_lsn":"0/1","xid":0,"commit_time":"2026-01-02T03:04:05Z","snapshot":false,"columns":[{"name":"x","type":"oid:99999","oid":99999}],"new":null,"old":null,"unchanged_toast":[]}`, accepted, ""},
	{"names with quotes and Cyrillic, big numbers, arrays", `{"v":1,"op":"UPDATE","schema":"public","table":"users","lsn":"0/16B3748","commit_lsn":"0/16B37A0","xid":757,"commit_time":"2026-11-26T12:00:00.123456Z","snapshot":false,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"email","type":"text","oid":25},{"name":"tags","type":"_text","oid":1009},{"name":"bio","type":"text","oid":25},{"name":"ключ \"q\"","type":"jsonb","oid":3802}],"new":{"id":"9007199254740993","email":"a\u003cb\u003e@c.d\n","tags":"{a,\"b c\",NULL}","ключ \"q\"":"{\"a\": [1, 2.50]}"},"old":{"id":"9007199254740993"},"unchanged_toast":["bio"]}`, accepted, ""},
	{"only the required members", `{"v":1,"op":"DELETE","table":"t","columns":[]}`, accepted, ""},
	{"empty rows", `{"v":1,"op":"DELETE","schema":"s","table":"t","columns":[],"new":null,"old":{},"unchanged_toast":[]}`, accepted, ""},
	{"unknown member of any JSON", `{"v":1,"op":"INSERT","table":"t","columns":[{"name":"a","type":"_int4","oid":1007}],"new":{"a":"{1,NULL}"},"x":[1,{"y":"\u00e9"}]}`, accepted, ""},
	{"duplicate members: the last wins", `{"v":2,"v":1,"op":"UPSERT","op":"INSERT","op":"DELETE","schema":"a","schema":"b","table":"t","columns":[]}`, accepted, ""},
	{"member names with escapes", `{"\u0076":1,"op":"INSERT","t\u0061ble":"t","columns":[],"new":{"\u0061":"1"}}`, accepted, ""},
	{"unknown column members, column names of other case", `{"v":1,"op":"INSERT","table":"y","columns":[{"Name":"a","TYPE":"int4","Oid":23,"KEY":true,"nullable":false}],"new":{"a":"1"}}`, accepted, ""},
	{"invalid UTF-8 in strings", "{\"v\":1,\"op\":\"INSERT\",\"schema\":\"a\xff\",\"table\":\"t\",\"columns\":[],\"new\":{\"x\":\"\xc3\x28\",\"\xff\":null}}", accepted, ""},
	{"rows with more values than columns, out of order", with(`"new":{"id":"42","email":"a@b.c"}`, `"new":{"email":"a@b.c","x":"1","id":"42","id":"43"}`), accepted, ""},

	{"typed", `{"v":1,"op":"INSERT","schema":"s","table":"t","columns":[{"name":"a","type":"text","oid":25},{"name":"n","type":"int4","oid":23},{"name":"b","type":"bool","oid":16},{"name":"j","type":"jsonb","oid":3802}],"new":{"a":"x","n":12,"b":true,"j":{"k":[1,2.50]}},"old":null,"typed":true}`, typedOnly, ""},
	{"typed, values all strings", with(`"unchanged_toast":[]`, `"unchanged_toast":[],"typed":true`), typedOnly, ""},
	{"typed false", with(`"unchanged_toast":[]`, `"unchanged_toast":[],"typed":false`), accepted, ""},

	{"version 2", with(`"v":1`, `"v":2`), rejected, "unsupported version v=2 (this build reads v=1)"},
	{"version 0", with(`"v":1`, `"v":0`), rejected, "unsupported version v=0"},
	{"version missing", with(`"v":1,`, ``), rejected, "unsupported version v=0"},
	{"version 1.5", with(`"v":1`, `"v":1.5`), rejected, "field v"},
	{"version 1.0", with(`"v":1`, `"v":1.0`), rejected, "field v"},
	{"version a string", with(`"v":1`, `"v":"1"`), rejected, "field v"},
	{"version upper-case", with(`"v":1`, `"V":1`), rejected, "unsupported version v=0"},
	{"unknown op", with(`"op":"INSERT"`, `"op":"MERGE"`), rejected, `unknown op "MERGE"`},
	{"lower-case op", with(`"op":"INSERT"`, `"op":"insert"`), rejected, `unknown op "insert"`},
	{"empty op", with(`"op":"INSERT"`, `"op":""`), rejected, `unknown op ""`},
	{"op missing", with(`"op":"INSERT",`, ``), rejected, `unknown op ""`},
	{"op null", with(`"op":"INSERT"`, `"op":null`), rejected, "field op"},
	{"table missing", with(`"table":"users",`, ``), rejected, "missing one of the members"},
	{"table upper-case", with(`"table"`, `"Table"`), rejected, "missing one of the members"},
	{"columns missing", with(`"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"email","type":"text","oid":25}],`, ``), rejected, "missing one of the members"},
	{"columns null", with(`"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"email","type":"text","oid":25}]`, `"columns":null`), rejected, "expected an array"},
	{"column null", with(`"columns":[`, `"columns":[null,`), rejected, "expected an object"},
	{"column oid negative", with(`"oid":20`, `"oid":-3`), rejected, "field columns.oid"},
	{"column oid -0", with(`"oid":20`, `"oid":-0`), rejected, "field columns.oid"},
	{"column oid too large", with(`"oid":20`, `"oid":4294967296`), rejected, "field columns.oid"},
	{"column key not a boolean", with(`"key":true`, `"key":"yes"`), rejected, "field columns.key"},
	{"column name null", with(`"name":"id"`, `"name":null`), rejected, "field columns.name"},
	{"schema null", with(`"schema":"public"`, `"schema":null`), rejected, "field schema"},
	{"bad lsn", with(`"lsn":"0/16B3748"`, `"lsn":"16B3748"`), rejected, "field lsn"},
	{"lsn not hex", with(`"lsn":"0/16B3748"`, `"lsn":"nope"`), rejected, "field lsn"},
	{"lsn empty", with(`"lsn":"0/16B3748"`, `"lsn":""`), rejected, "field lsn"},
	{"lsn null", with(`"lsn":"0/16B3748"`, `"lsn":null`), rejected, "field lsn"},
	{"lsn halves too long", with(`"lsn":"0/16B3748"`, `"lsn":"0/123456789"`), rejected, "field lsn"},
	{"bad commit_lsn", with(`"commit_lsn":"0/16B37A0"`, `"commit_lsn":"x/y"`), rejected, "field commit_lsn"},
	{"commit_lsn with three parts", with(`"commit_lsn":"0/16B37A0"`, `"commit_lsn":"1/2/3"`), rejected, "field commit_lsn"},
	{"bad commit_time", with(`"commit_time":"2026-11-26T12:00:00.123456Z"`, `"commit_time":"yesterday"`), rejected, "field commit_time"},
	{"bad commit_time, then a good one", with(`"commit_time":"2026-11-26T12:00:00.123456Z"`, `"commit_time":"yesterday","commit_time":null`), rejected, "field commit_time"},
	{"xid not a number", with(`"xid":757`, `"xid":"757"`), rejected, "field xid"},
	{"xid negative", with(`"xid":757`, `"xid":-1`), rejected, "field xid"},
	{"xid too large", with(`"xid":757`, `"xid":4294967296`), rejected, "field xid"},
	{"xid null", with(`"xid":757`, `"xid":null`), rejected, "field xid"},
	{"xid with a leading zero", with(`"xid":757`, `"xid":0757`), rejected, "malformed number"},
	{"snapshot not a boolean", with(`"snapshot":false`, `"snapshot":"yes"`), rejected, "field snapshot"},
	{"snapshot null", with(`"snapshot":false`, `"snapshot":null`), rejected, "field snapshot"},
	{"bad literal", with(`"snapshot":false`, `"snapshot":fals`), rejected, ""},
	{"typed not a boolean", with(`"unchanged_toast":[]`, `"unchanged_toast":[],"typed":"yes"`), rejected, "field typed"},
	{"numeric value", with(`"id":"42"`, `"id":42`), rejected, `column "id": value must be a string (PostgreSQL text form) or null`},
	{"boolean value", with(`"id":"42"`, `"id":true`), rejected, "value must be a string"},
	{"row not an object", with(`"new":{"id":"42","email":"a@b.c"}`, `"new":["42"]`), rejected, "expected an object"},
	{"unchanged_toast null", with(`"unchanged_toast":[]`, `"unchanged_toast":null`), rejected, "expected an array"},
	{"unchanged_toast with null", with(`"unchanged_toast":[]`, `"unchanged_toast":[null]`), rejected, "field unchanged_toast"},
	{"bad escape", with(`"id":"42"`, `"id":"\q"`), rejected, "malformed escape"},
	{"bad unicode escape", with(`"schema":"public"`, `"schema":"a\u00"`), rejected, "escape"},
	{"raw newline in a string", with(`"id":"42"`, "\"id\":\"4\n2\""), rejected, "control character"},
	{"trailing comma", with(`,"unchanged_toast":[]}`, `,"unchanged_toast":[],}`), rejected, ""},
	{"trailing data", base + "x", rejected, "unexpected data after the event"},
	{"truncated", base[:len(base)-1], rejected, ""},
	{"unterminated", base[:len(base)-3], rejected, ""},
	{"not JSON", `INSERT INTO t VALUES (1)`, rejected, "expected a JSON object"},
	{"unfinished", `{"v":1,`, rejected, ""},
	{"empty", ``, rejected, ""},
	{"array", `[]`, rejected, "expected a JSON object"},
	{"empty object", `{}`, rejected, "unsupported version v=0"},
}

func TestReadersAgree(t *testing.T) {
	// One decoder and one cache for all cases, each read twice: what they
	// keep from one event must never change the next one's result.
	r := newReaders()
	for _, tc := range append(decodeCases, decodeCases...) {
		t.Run(tc.name, func(t *testing.T) {
			got := r.read(t, []byte(tc.doc))
			if got != tc.want {
				t.Fatalf("%s\nreaders say %v, want %v", tc.doc, got, tc.want)
			}
			if got == typedOnly && r.anyErr != nil {
				t.Fatalf("%s\nany reader's error %v", tc.doc, r.anyErr)
			}
			if tc.err == "" {
				return
			}
			for name, err := range map[string]error{"text": r.textErr, "raw": r.rawErr} {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("%s reader's error = %v, want it to contain %q", name, err, tc.err)
				}
			}
		})
	}
}

func FuzzReadersAgree(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.doc))
	}
	r := newReaders() // shared across inputs, as in the output and the processors
	f.Fuzz(func(t *testing.T, doc []byte) {
		r.read(t, doc)
	})
}

// readers reads one document with every reader and holds them to agree.
type readers struct {
	dec                     event.Decoder
	cache                   *change.Cache
	textErr, rawErr, anyErr error
}

func newReaders() *readers { return &readers{cache: change.NewCache()} }

func (outcome outcome) String() string {
	return [...]string{"accepted", "typed only", "rejected"}[outcome]
}

func (r *readers) read(t *testing.T, doc []byte) outcome {
	t.Helper()
	ref, refErr := eventtest.Decode(doc)
	var text, anyEv event.Event
	r.textErr = r.dec.DecodeEvent(doc, &text)
	anyErr := r.dec.Decode(doc, &anyEv, pgvalue.EncodeJSON)
	r.anyErr = anyErr
	raw, rawErr := change.Parse(doc, r.cache)
	r.rawErr = rawErr

	if (refErr == nil) != (r.textErr == nil) {
		t.Fatalf("%q\nreference error %v, text error %v", doc, refErr, r.textErr)
	}
	if rawErr != nil && anyErr == nil || rawErr == nil && anyErr != nil && !typedValueFails(raw) {
		// Only a typed value that is not valid for its column's type may
		// fail the any reader alone: processors convert only the values
		// they touch, and convert that one no better (Text).
		t.Fatalf("%q\nraw error %v, any error %v", doc, rawErr, anyErr)
	}
	if rawErr == nil && !raw.Typed != (refErr == nil) {
		t.Fatalf("%q\nraw reader read typed=%v, the reference's error is %v", doc, raw.Typed, refErr)
	}
	if rawErr != nil {
		return rejected
	}
	checkRewrite(t, doc, raw)
	if raw.Typed && anyErr != nil {
		return typedOnly
	}
	if raw.Typed {
		if !errors.Is(r.textErr, event.ErrTypedValues) {
			t.Fatalf("%q\ntext reader's error for a typed event is %v, want ErrTypedValues", doc, r.textErr)
		}
		// Both read the typed values back to the same texts.
		for _, rows := range [][2]any{{raw.New, anyEv.New}, {raw.Old, anyEv.Old}} {
			typed, texts := rows[0].(event.RawRow), rows[1].(event.Row)
			for i, f := range typed {
				col, _ := raw.Column(f.Name)
				text, ok, err := raw.Text(f, col)
				if err != nil || ok == texts[i].Null || text != texts[i].Text {
					t.Fatalf("%q\ncolumn %s: raw reader's text %q (%v), any reader's %+v", doc, f.Name, text, err, texts[i])
				}
			}
		}
		return typedOnly
	}
	want := normalized(*ref)
	for name, got := range map[string]event.Event{"text": text, "any": anyEv} {
		if !reflect.DeepEqual(normalized(got), want) {
			t.Fatalf("%q\n%s reader: %+v\nreference:   %+v", doc, name, got, *ref)
		}
	}
	// The raw reader's rows hold the same texts; what it keeps as it came
	// (lsn, xid, commit_time…) is compared through what it writes back.
	gotRaw := event.Event{V: event.Version, Op: raw.Op, Schema: raw.Schema, Table: raw.Table, Columns: raw.Columns,
		New: texts(t, raw.New), Old: texts(t, raw.Old), UnchangedToast: raw.UnchangedToast,
		LSN: ref.LSN, CommitLSN: ref.CommitLSN, Xid: ref.Xid, CommitTime: ref.CommitTime, Snapshot: ref.Snapshot}
	if !reflect.DeepEqual(normalized(gotRaw), want) {
		t.Fatalf("%q\nraw reader: %+v\nreference:  %+v", doc, gotRaw, *ref)
	}
	// Peek reads the routing members alike, unless the document repeats
	// one (Peek stops at the first).
	head, err := event.Peek(doc)
	lsn, _ := pglogrepl.ParseLSN(head.LSN) // 0 when absent
	if err != nil || (head.Op != ref.Op || head.Schema != ref.Schema || head.Table != ref.Table || lsn != ref.LSN) && !repeatsRouting(doc) {
		t.Fatalf("%q\nPeek = %+v, %v; reference %+v", doc, head, err, *ref)
	}
	again, err := eventtest.Decode(raw.AppendJSON(nil))
	if err != nil || !reflect.DeepEqual(normalized(*again), want) {
		t.Fatalf("%q\nwritten back by the raw reader's event: %v\n%+v\nreference: %+v", doc, err, again, *ref)
	}
	return accepted
}

// typedValueFails reports whether a typed event has a value that Text
// cannot give the text form of.
func typedValueFails(ev *change.Event) bool {
	for _, row := range []event.RawRow{ev.New, ev.Old} {
		for _, f := range row {
			col, _ := ev.Column(f.Name)
			if _, _, err := ev.Text(f, col); err != nil && ev.Typed {
				return true
			}
		}
	}
	return false
}

// repeatsRouting reports whether the top-level object of an accepted
// document names one of Peek's members twice.
func repeatsRouting(doc []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	_, _ = dec.Token()
	seen := map[string]bool{}
	for dec.More() {
		tok, _ := dec.Token()
		name, _ := tok.(string)
		var skip json.RawMessage
		_ = dec.Decode(&skip)
		if seen[name] && strings.Contains(" v op schema table lsn ", " "+name+" ") {
			return true
		}
		seen[name] = true
	}
	return false
}

// checkRewrite: what the raw reader accepts, its event writes back as
// valid JSON that reads to the same event, decoded (typed) or not.
func checkRewrite(t *testing.T, doc []byte, ev *change.Event) {
	t.Helper()
	out := ev.AppendJSON(nil)
	if !json.Valid(out) {
		t.Fatalf("%q\nwritten back as invalid JSON %q", doc, out)
	}
	again, err := change.Parse(out, nil)
	if err != nil {
		t.Fatalf("%q\nwhat the event wrote does not read: %v\n%s", doc, err, out)
	}
	// Stable from the first rewrite on: invalid UTF-8 is written as the
	// escape \ufffd (as encoding/json does), which reads back as a valid
	// U+FFFD and is then written as it is.
	twice := again.AppendJSON(nil)
	third, err := change.Parse(twice, nil)
	if err != nil {
		t.Fatalf("%q\nwhat the event wrote does not read: %v\n%s", doc, err, twice)
	}
	if thrice := third.AppendJSON(nil); string(thrice) != string(twice) {
		t.Fatalf("%q\nwriting is not stable:\n%s\n%s", doc, twice, thrice)
	}
	if again.Decode() == nil {
		if typed := again.AppendJSON(nil); !json.Valid(typed) {
			t.Fatalf("%q\ndecoded event is invalid JSON: %s", doc, typed)
		}
	}
}

func texts(t *testing.T, raw event.RawRow) event.Row {
	if raw == nil {
		return nil
	}
	row := event.Row{}
	for _, f := range raw {
		v := event.Value{Name: f.Name, Null: f.Null()}
		if !v.Null {
			var err error
			if v.Text, err = f.Text(); err != nil {
				t.Fatalf("column %s: %v", f.Name, err)
			}
		}
		row = append(row, v)
	}
	return row
}

// normalized makes empty and nil lists compare equal (the readers allocate
// them differently).
func normalized(e event.Event) event.Event {
	if len(e.UnchangedToast) == 0 {
		e.UnchangedToast = nil
	}
	if len(e.Columns) == 0 {
		e.Columns = nil
	}
	if e.New != nil && len(e.New) == 0 {
		e.New = event.Row{}
	}
	if e.Old != nil && len(e.Old) == 0 {
		e.Old = event.Row{}
	}
	return e
}
