package change

import (
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/event"
)

func benchEvent() []byte {
	cols := []event.Column{
		{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "email", Type: "text", OID: 25},
		{Name: "phone", Type: "text", OID: 25}, {Name: "age", Type: "int4", OID: 23}, {Name: "ssn", Type: "text", OID: 25},
		{Name: "created_at", Type: "timestamptz", OID: 1184}, {Name: "note", Type: "text", OID: 25},
	}
	ev := event.Event{V: 1, Op: event.Update, Schema: "public", Table: "users", Columns: cols, LSN: 0x16B3748, CommitLSN: 0x16B37A0, Xid: 757,
		CommitTime: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		New: event.Row{{Name: "id", Text: "42"}, {Name: "email", Text: "user42@example.com"}, {Name: "phone", Text: "5551234567"},
			{Name: "age", Text: "31"}, {Name: "ssn", Text: "123-45-6789"}, {Name: "created_at", Text: "2026-11-26 12:00:00.123456+00"},
			{Name: "note", Text: "Customer since 2019; prefers email contact, weekly newsletter, no calls after 6pm."}},
		Old: event.Row{{Name: "id", Text: "42"}}}
	return ev.AppendJSON(nil)
}

func BenchmarkParse(b *testing.B) {
	data := benchEvent()
	cache := NewCache()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, cache); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAndWrite(b *testing.B) {
	data := benchEvent()
	cache := NewCache()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	buf := make([]byte, 0, 2048)
	for b.Loop() {
		ev, err := Parse(data, cache)
		if err != nil {
			b.Fatal(err)
		}
		if err := ev.Decode(); err != nil {
			b.Fatal(err)
		}
		buf = ev.AppendJSON(buf[:0])
	}
}
