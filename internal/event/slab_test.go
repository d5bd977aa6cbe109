package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeEventRejectsTypedEvents(t *testing.T) {
	var ev Event
	var dec Decoder
	err := dec.DecodeEvent([]byte(`{"v":1,"op":"INSERT","schema":"s","table":"t","columns":[],"typed":true,"new":{"a":"x"}}`), &ev)
	if !errors.Is(err, ErrTypedValues) {
		t.Fatalf("error %v, want ErrTypedValues", err)
	}
	err = dec.DecodeEvent([]byte(`{"v":1,"op":"INSERT","schema":"s","table":"t","columns":[],"new":{"a":12}}`), &ev)
	if !errors.Is(err, ErrTypedValues) {
		t.Fatalf("error %v, want ErrTypedValues", err)
	}
}
func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(`{"v":1,"op":"UPDATE","schema":"public","table":"mixed","lsn":"0/16B3900","commit_lsn":"0/16B3A10","xid":758,"commit_time":"2026-11-26T12:00:02.123456Z","snapshot":false,"columns":[{"name":"id","type":"int8","oid":20,"key":true},{"name":"n","type":"int4","oid":23},{"name":"s","type":"text","oid":25},{"name":"amount","type":"numeric","oid":1700},{"name":"ts","type":"timestamptz","oid":1184},{"name":"flag","type":"bool","oid":16},{"name":"doc","type":"jsonb","oid":3802},{"name":"u","type":"uuid","oid":2950},{"name":"b","type":"bytea","oid":17},{"name":"tags","type":"_text","oid":1009}],"new":{"id":"42","n":"7","s":"c4ca4238a0b923820dcc509a6f75849b","amount":"1234.5600","ts":"2026-11-26 12:00:00.123456+00","flag":"t","doc":"{\"a\": 1, \"b\": [1, 2]}","u":"5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10","b":"\\x0102ff","tags":"{a,b,\"c d\"}"},"old":{"id":"42"},"unchanged_toast":[]}`)
	b.ReportAllocs()
	var ev Event
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
	got := make([]Event, len(inputs))
	for i, in := range inputs {
		if err := dec.DecodeEvent([]byte(in), &got[i]); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	// Appending to a row (into its spare capacity, if it had any) must not
	// write over the next one either.
	for i := range got {
		_ = append(got[i].New, Value{Name: "appended", Text: "x"})
		_ = append(got[i].Old, Value{Name: "appended", Text: "x"})
	}
	for i, in := range inputs {
		want, err := decode([]byte(in)) // a decoder of its own
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*want, got[i]) {
			t.Fatalf("event %d changed after later events were decoded:\n want %+v\n got  %+v", i, want.New, got[i].New)
		}
	}
}
