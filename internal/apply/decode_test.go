package apply

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

// decodeCases are wire forms that DecodeEvent must read exactly as
// event.Decode does (or reject when it does).
var decodeCases = []string{
	`{"v":1,"op":"INSERT","schema":"public","table":"users","lsn":"0/16B3748","commit_lsn":"0/16B37A0","xid":757,"commit_time":"2026-11-26T12:00:00.123456Z","snapshot":false,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"email","type":"text","oid":25}],"new":{"id":"42","email":"a@b.c"},"old":null,"unchanged_toast":[]}`,
	`{"v":1,"op":"UPDATE","schema":"s","table":"Order Items","lsn":"1/0","commit_lsn":"1/10","xid":4294967295,"commit_time":null,"snapshot":true,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"bio","type":"text","oid":25}],"new":{"id":"1"},"old":{"id":"1"},"unchanged_toast":["bio"]}`,
	// escapes, unicode, surrogate pairs, invalid surrogates, HTML escapes
	`{"v":1,"op":"INSERT","schema":"p","table":"t","lsn":"0/1","commit_lsn":"0/2","xid":1,"commit_time":null,"snapshot":false,"columns":[],"new":{"a":"line 1\nline 2\t\"q\" \\ \/ \u003c\u003e\u0026 \u00e9 \ud83d\ude00 \ud800 x","b":null,"c":"","d":"\\x0102ff","é":"ü"},"old":null,"unchanged_toast":[]}`,
	// other member order, whitespace, unknown members, nulls for lists
	" {\n \"table\" : \"t\", \"extra\": {\"a\":[1,2,{\"b\":null}],\"c\":-1.5e3}, \"op\":\"DELETE\",\"v\" : 1, \"schema\":\"public\",\"old\":{\"id\":\"7\"},\"new\":null,\"columns\":null,\"unchanged_toast\":null } ",
	`{"v":1,"op":"TRUNCATE","schema":"public","table":"t","lsn":"0/1","commit_lsn":"0/1","xid":0,"commit_time":"2026-01-02T03:04:05Z","snapshot":false,"columns":[{"name":"x","type":"oid:99999","oid":99999}],"new":null,"old":null,"unchanged_toast":[]}`,
	`{"V":1,"Op":"INSERT","Schema":"x","TABLE":"y","columns":[{"Name":"a","TYPE":"int4","Oid":23,"KEY":true}],"new":{"a":"1"}}`,
	// duplicate members: the last wins
	`{"v":1,"op":"INSERT","op":"DELETE","schema":"a","schema":"b","table":"t"}`,
	// invalid UTF-8 in a string
	"{\"v\":1,\"op\":\"INSERT\",\"schema\":\"a\xff\",\"table\":\"t\",\"new\":{\"x\":\"\xc3\x28\"}}",
	// rejected
	`{"v":2,"op":"INSERT"}`,
	`{"v":1,"op":"UPSERT"}`,
	`{"v":1,"op":"INSERT","lsn":"nope"}`,
	`{"v":1,"op":"INSERT","commit_lsn":"1/2/3"}`,
	`{"v":1,"op":"INSERT","commit_time":"yesterday"}`,
	`{"v":1,"op":"INSERT","new":{"a":1}}`,
	`{"v":1,"op":"INSERT","new":{"a":true}}`,
	`{"v":1,"op":"INSERT","new":[]}`,
	`{"v":1,"op":"INSERT"`,
	`{"v":1,"op":"INSERT"} x`,
	`{"v":1,"op":"INSERT",}`,
	`{"v":1.5,"op":"INSERT"}`,
	`{"v":"1","op":"INSERT"}`,
	`{"v":1,"op":"INSERT","xid":-1}`,
	`{"v":1,"op":"INSERT","columns":[{"oid":-3}]}`,
	`{"v":1,"op":"INSERT","snapshot":"yes"}`,
	`[]`,
	`{}`,
	``,
	`{"v":1,"op":"INSERT","schema":"a\u00"}`,
}

func TestDecodeEventAgreesWithEventDecode(t *testing.T) {
	// One decoder for all cases, each decoded twice: its cache must never
	// change a result.
	var dec Decoder
	for _, in := range append(decodeCases, decodeCases...) {
		want, wantErr := event.Decode([]byte(in))
		var got event.Event
		gotErr := dec.DecodeEvent([]byte(in), &got)
		if (wantErr != nil) != (gotErr != nil) {
			t.Errorf("%s\n event.Decode error %v, DecodeEvent error %v", in, wantErr, gotErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		if !reflect.DeepEqual(normalizeEvent(*want), normalizeEvent(got)) {
			t.Errorf("%s\n event.Decode %+v\n DecodeEvent  %+v", in, *want, got)
		}
	}
}

// normalizeEvent makes empty and nil slices compare equal (encoding/json
// and DecodeEvent allocate them differently).
func normalizeEvent(e event.Event) event.Event {
	if len(e.UnchangedToast) == 0 {
		e.UnchangedToast = nil
	}
	if len(e.Columns) == 0 {
		e.Columns = nil
	}
	return e
}

func TestDecodeEventRejectsTypedEvents(t *testing.T) {
	var ev event.Event
	err := DecodeEvent([]byte(`{"v":1,"op":"INSERT","schema":"s","table":"t","typed":true,"new":{"a":"x"}}`), &ev)
	if !errors.Is(err, ErrTypedValues) {
		t.Fatalf("error %v, want ErrTypedValues", err)
	}
	err = DecodeEvent([]byte(`{"v":1,"op":"INSERT","schema":"s","table":"t","new":{"a":12}}`), &ev)
	if !errors.Is(err, ErrTypedValues) {
		t.Fatalf("error %v, want ErrTypedValues", err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	var dec Decoder // shared across inputs, as in the output
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := event.Decode(in)
		var got event.Event
		gotErr := dec.DecodeEvent(in, &got)
		if errors.Is(gotErr, ErrTypedValues) {
			return // event.Decode says the same in its own words
		}
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("%q\n event.Decode error %v, DecodeEvent error %v", in, wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(normalizeEvent(*want), normalizeEvent(got)) {
			t.Fatalf("%q\n event.Decode %+v\n DecodeEvent  %+v", in, *want, got)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(`{"v":1,"op":"UPDATE","schema":"public","table":"mixed","lsn":"0/16B3900","commit_lsn":"0/16B3A10","xid":758,"commit_time":"2026-11-26T12:00:02.123456Z","snapshot":false,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"n","type":"int4","oid":23},{"name":"s","type":"text","oid":25},{"name":"amount","type":"numeric","oid":1700},{"name":"ts","type":"timestamptz","oid":1184},{"name":"flag","type":"bool","oid":16},{"name":"doc","type":"jsonb","oid":3802},{"name":"u","type":"uuid","oid":2950},{"name":"b","type":"bytea","oid":17},{"name":"tags","type":"_text","oid":1009}],"new":{"id":"42","n":"7","s":"c4ca4238a0b923820dcc509a6f75849b","amount":"1234.5600","ts":"2026-11-26 12:00:00.123456+00","flag":"t","doc":"{\"a\": 1, \"b\": [1, 2]}","u":"5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10","b":"\\x0102ff","tags":"{a,b,\"c d\"}"},"old":{"id":"42"},"unchanged_toast":[]}`)
	b.ReportAllocs()
	var ev event.Event
	var dec Decoder
	for i := 0; i < b.N; i++ {
		if err := dec.DecodeEvent(in, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodedRowsOutliveLaterEvents keeps every event one Decoder returns
// and checks them all at the end: rows and their texts are carved from
// slabs shared by many events, and no later event may write over an
// earlier one's — rows with more values than columns, texts larger than a
// slab and slabs running out included.
func TestDecodedRowsOutliveLaterEvents(t *testing.T) {
	var inputs []string
	for i := range 3000 {
		text := strings.Repeat(fmt.Sprintf("v%d-", i), 1+i%7)
		if i%500 == 7 {
			text = strings.Repeat("x", slabText+i) // larger than a slab
		}
		cols := `[{"name":"id","type":"int8","oid":20,"key":true},{"name":"t","type":"text","oid":25}]`
		row := fmt.Sprintf(`{"id":"%d","t":%q}`, i, text)
		if i%3 == 0 { // more values than the columns listed
			row = fmt.Sprintf(`{"id":"%d","t":%q,"a":"%d","b":null,"c":"esc\t\"%d\""}`, i, text, i, i)
		}
		inputs = append(inputs, fmt.Sprintf(`{"v":1,"op":"UPDATE","schema":"s","table":"t","columns":%s,"new":%s,"old":{"id":"%d"}}`, cols, row, i+1))
	}
	var dec Decoder
	got := make([]event.Event, len(inputs))
	for i, in := range inputs {
		if err := dec.DecodeEvent([]byte(in), &got[i]); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	// Appending to a row (into its spare capacity, if it had any) must not
	// write over the next one either.
	for i := range got {
		_ = append(got[i].New, event.Value{Name: "appended", Text: "x"})
		_ = append(got[i].Old, event.Value{Name: "appended", Text: "x"})
	}
	for i, in := range inputs {
		want, err := event.Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalizeEvent(*want), normalizeEvent(got[i])) {
			t.Fatalf("event %d changed after later events were decoded:\n want %+v\n got  %+v", i, want.New, got[i].New)
		}
	}
}
