package packmsg

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

var testColumns = []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "note", Type: "text", OID: 25}}

// testPack returns a pack body of the rows (COPY text lines).
func testPack(rows ...string) []byte {
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "users", testColumns, 0x16B3748))
	for _, r := range rows {
		body = append(body, r...)
		body = append(body, '\n')
	}
	return body
}

// testPackMsg returns a pack message as pg_flo_replicator emits it; pos < 0
// leaves pg_flo_tx_pos out.
func testPackMsg(body []byte, rows, pos int) *service.Message {
	m := service.NewMessage(body)
	m.MetaSetMut(event.MetaOp, "INSERT")
	m.MetaSetMut(event.MetaSchema, "public")
	m.MetaSetMut(event.MetaTable, "users")
	m.MetaSetMut(event.MetaLSN, "0/16B3748")
	m.MetaSetMut(event.MetaTx, "0/16B3748")
	if pos >= 0 {
		m.MetaSetMut(event.MetaTxPos, strconv.Itoa(pos))
	}
	m.MetaSetMut(event.MetaPackRows, strconv.Itoa(rows))
	return m
}

func meta(m *service.Message) map[string]string {
	out := map[string]string{}
	_ = m.MetaWalk(func(k, v string) error { out[k] = v; return nil })
	return out
}

func TestExpand(t *testing.T) {
	rows := []string{"1\tplain", "2\t\\N", "3\ttab\\there \"q\""}
	body := testPack(rows...)
	p, err := copypack.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents, err := p.Events()
	if err != nil {
		t.Fatal(err)
	}
	before := service.NewMessage([]byte(`{"before":1}`))
	after := service.NewMessage([]byte(`{"after":1}`))
	pack := testPackMsg(body, 3, 1022)
	noPos := testPackMsg(testPack("9\tx"), 1, -1)
	miscounted := testPackMsg(body, 4, 0)
	badRow := testPackMsg(testPack("1\ttoo\tmany"), 1, 0)

	out := Expand(service.MessageBatch{before, pack, after, noPos, miscounted, badRow})
	if len(out) != 1+3+1+1+2 {
		t.Fatalf("expanded into %d messages, want 8", len(out))
	}
	if out[0] != before || out[4] != after {
		t.Error("messages without a pack were not passed on as they are")
	}
	for i := range rows {
		m := out[1+i]
		got, _ := m.AsBytes()
		if !bytes.Equal(got, wantEvents[i]) {
			t.Errorf("row %d:\n got %s\nwant %s", i, got, wantEvents[i])
		}
		want := map[string]string{
			event.MetaOp: "INSERT", event.MetaSchema: "public", event.MetaTable: "users", event.MetaLSN: "0/16B3748",
			event.MetaTx: "0/16B3748", event.MetaTxPos: strconv.Itoa(1022 + i),
		}
		if got := meta(m); !reflect.DeepEqual(got, want) {
			t.Errorf("row %d metadata %v, want %v", i, got, want)
		}
		if m.GetError() != nil {
			t.Errorf("row %d flagged: %v", i, m.GetError())
		}
	}
	if got := meta(pack); got[event.MetaPackRows] != "3" || got[event.MetaTxPos] != "1022" {
		t.Errorf("the pack message itself changed: %v", got)
	}
	if got := meta(out[5]); got[event.MetaTxPos] != "" || got[event.MetaPackRows] != "" || got[event.MetaTx] != "0/16B3748" {
		t.Errorf("row of a pack without position: metadata %v", got)
	}
	for i, m := range []*service.Message{out[6], out[7]} {
		if !errors.Is(m.GetError(), copypack.ErrMalformed) {
			t.Errorf("malformed pack %d: error %v, want a copypack.ErrMalformed", i, m.GetError())
		}
		if Rows(m) != []int{4, 1}[i] {
			t.Errorf("malformed pack %d was changed: metadata %v", i, meta(m))
		}
	}

	plain := service.MessageBatch{before, after}
	if got := Expand(plain); &got[0] != &plain[0] || len(got) != 2 {
		t.Error("a batch without packs was not returned as it is")
	}
	if Has(plain) || !Has(service.MessageBatch{before, pack}) {
		t.Error("Has is wrong")
	}
	if Rows(before) != 0 || Rows(pack) != 3 {
		t.Error("Rows is wrong")
	}
}

func TestPositions(t *testing.T) {
	if got, want := Positions(998, 4), []string{"998", "999", "1000", "1001"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Positions(998, 4) = %v, want %v", got, want)
	}
	if got := Positions(0, 1); !reflect.DeepEqual(got, []string{"0"}) {
		t.Errorf("Positions(0, 1) = %v", got)
	}
	if got := Positions(5, 0); got != nil {
		t.Errorf("Positions(5, 0) = %v", got)
	}
}

// BenchmarkExpandPack measures expanding a full pack (1024 rows); allocs/op
// divided by 1024 is the cost per row.
func BenchmarkExpandPack(b *testing.B) {
	rows := make([]string, 1024)
	for i := range rows {
		rows[i] = strconv.Itoa(i) + "\tuser" + strconv.Itoa(i) + "@example.com"
	}
	body := testPack(rows...)
	m := testPackMsg(body, len(rows), 0)
	p, err := copypack.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ExpandPack(m, p); err != nil {
			b.Fatal(err)
		}
	}
}

// Run finds an expanded pack only where every row's message is there, in
// order, with the body the expansion gave it and no error.
func TestRun(t *testing.T) {
	body := testPack("1\ta", "2\tb", "3\tc")
	pack := testPackMsg(body, 3, 10)
	other := service.NewMessage([]byte(`{"op":"DELETE"}`))
	expanded := func() service.MessageBatch {
		rows, err := ExpandOne(pack)
		if err != nil {
			t.Fatal(err)
		}
		return append(append(service.MessageBatch{other}, rows...), other)
	}
	batch := expanded()
	p, n := Run(batch, 1)
	if p == nil || n != 3 || p.N != 3 || p.Table != "users" {
		t.Fatalf("Run of a whole expanded pack: %v, %d", p, n)
	}
	if p, _ := Run(batch, 0); p != nil {
		t.Error("Run found a pack at a message that is not a row")
	}
	if p, _ := Run(batch, 2); p != nil {
		t.Error("Run found a pack from its second row")
	}
	if p, _ := Run(batch[:3], 1); p != nil {
		t.Error("Run found a pack cut short by the batch's end")
	}

	changes := map[string]func(b service.MessageBatch) service.MessageBatch{
		"a row rewritten to the same bytes": func(b service.MessageBatch) service.MessageBatch {
			body, _ := b[2].AsBytes()
			b[2].SetBytes(bytes.Clone(body))
			return b
		},
		"a row dropped": func(b service.MessageBatch) service.MessageBatch {
			return append(b[:2:2], b[3:]...)
		},
		"two rows swapped": func(b service.MessageBatch) service.MessageBatch {
			b[2], b[3] = b[3], b[2]
			return b
		},
		"a row flagged": func(b service.MessageBatch) service.MessageBatch {
			b[3].SetError(errors.New("failed"))
			return b
		},
	}
	for name, change := range changes {
		if p, _ := Run(change(expanded()), 1); p != nil {
			t.Errorf("%s: Run still found the pack", name)
		}
	}
	// Copies (a fan-out) share the bodies: still the pack.
	b := expanded()
	for i := range b {
		b[i] = b[i].Copy()
	}
	if p, n := Run(b, 1); p == nil || n != 3 {
		t.Error("Run did not find the pack in copies of its rows")
	}
}
