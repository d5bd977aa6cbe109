package jsproto

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

// ev builds an item whose body names it, so packs are easy to read.
func ev(tx string, pos uint64, subject string) Item {
	return Item{Tx: tx, Pos: pos, Subject: subject, Body: []byte(`{"e":"` + tx + "/" + strconv.FormatUint(pos, 10) + `"}`)}
}

// want describes an expected pack by its subject, id and the item
// positions (as "tx/pos" names) it holds.
type want struct {
	subject, id string
	events      []string
}

func describe(packs []Pack) []want {
	var out []want
	for _, p := range packs {
		w := want{subject: p.Subject, id: p.MsgID}
		for _, e := range p.Events {
			s := string(e)
			if i := strings.Index(s, `"e":"`); i >= 0 {
				s = s[i+5 : len(s)-2]
			}
			w.events = append(w.events, s)
		}
		out = append(out, w)
	}
	return out
}

func TestBuild(t *testing.T) {
	const a, b = "s.public.a", "s.public.b"
	noTx := Item{Subject: a, Body: []byte(`{"e":"none"}`)}
	multiLine := Item{Tx: "T", Pos: 1, Subject: a, Body: []byte("{\n\"e\":\"T/1\"}")}
	big := Item{Tx: "T", Pos: 2, Subject: a, Body: bytes.Repeat([]byte("x"), 100)}
	lim := Limits{MaxBytes: 1 << 20, MaxEvents: 1024}

	tests := []struct {
		name  string
		items []Item
		lim   Limits
		want  []want
	}{
		{
			name: "empty",
			lim:  lim,
		},
		{
			name:  "single event is plain with a position id",
			items: []Item{ev("0/1", 0, a)},
			lim:   lim,
			want:  []want{{a, "0/1:0", []string{"0/1/0"}}},
		},
		{
			name:  "one tx one table packs",
			items: []Item{ev("T", 0, a), ev("T", 1, a), ev("T", 2, a)},
			lim:   lim,
			want:  []want{{a, "T:0-2", []string{"T/0", "T/1", "T/2"}}},
		},
		{
			name:  "two tables and two txs keep order",
			items: []Item{ev("T1", 0, a), ev("T1", 1, a), ev("T1", 2, b), ev("T1", 3, a), ev("T2", 0, a), ev("T2", 1, a)},
			lim:   lim,
			want: []want{
				{a, "T1:0-1", []string{"T1/0", "T1/1"}},
				{b, "T1:2", []string{"T1/2"}},
				{a, "T1:3", []string{"T1/3"}},
				{a, "T2:0-1", []string{"T2/0", "T2/1"}},
			},
		},
		{
			name:  "window boundary splits",
			items: []Item{ev("T", 1022, a), ev("T", 1023, a), ev("T", 1024, a), ev("T", 1025, a)},
			lim:   lim,
			want: []want{
				{a, "T:1022-1023", []string{"T/1022", "T/1023"}},
				{a, "T:1024-1025", []string{"T/1024", "T/1025"}},
			},
		},
		{
			name:  "max events splits",
			items: []Item{ev("T", 0, a), ev("T", 1, a), ev("T", 2, a), ev("T", 3, a), ev("T", 4, a)},
			lim:   Limits{MaxEvents: 2},
			want: []want{
				{a, "T:0-1", []string{"T/0", "T/1"}},
				{a, "T:2-3", []string{"T/2", "T/3"}},
				{a, "T:4", []string{"T/4"}},
			},
		},
		{
			// Each body is 13 bytes; two plus a newline is 27.
			name:  "max bytes splits",
			items: []Item{ev("T", 0, a), ev("T", 1, a), ev("T", 2, a)},
			lim:   Limits{MaxBytes: 27, MaxEvents: 10},
			want: []want{
				{a, "T:0-1", []string{"T/0", "T/1"}},
				{a, "T:2", []string{"T/2"}},
			},
		},
		{
			name:  "oversized event goes alone",
			items: []Item{ev("T", 0, a), ev("T", 1, a), big, ev("T", 3, a)},
			lim:   Limits{MaxBytes: 50, MaxEvents: 10},
			want: []want{
				{a, "T:0-1", []string{"T/0", "T/1"}},
				{a, "T:2", []string{string(big.Body)}},
				{a, "T:3", []string{"T/3"}},
			},
		},
		{
			name:  "packing off",
			items: []Item{ev("T", 0, a), ev("T", 1, a)},
			lim:   Limits{MaxEvents: 1},
			want: []want{
				{a, "T:0", []string{"T/0"}},
				{a, "T:1", []string{"T/1"}},
			},
		},
		{
			name:  "events without tx are alone and without id",
			items: []Item{ev("T", 0, a), noTx, noTx, ev("T", 1, a)},
			lim:   lim,
			want: []want{
				{a, "T:0", []string{"T/0"}},
				{a, "", []string{"none"}},
				{a, "", []string{"none"}},
				{a, "T:1", []string{"T/1"}},
			},
		},
		{
			name:  "a body with a newline is not packed",
			items: []Item{ev("T", 0, a), multiLine, ev("T", 2, a), ev("T", 3, a)},
			lim:   lim,
			want: []want{
				{a, "T:0", []string{"T/0"}},
				{a, "T:1", []string{"T/1"}},
				{a, "T:2-3", []string{"T/2", "T/3"}},
			},
		},
		{
			name:  "positions going backwards start a new pack",
			items: []Item{ev("T", 5, a), ev("T", 6, a), ev("T", 2, a), ev("T", 3, a)},
			lim:   lim,
			want: []want{
				{a, "T:5-6", []string{"T/5", "T/6"}},
				{a, "T:2-3", []string{"T/2", "T/3"}},
			},
		},
		{
			name:  "gaps in positions (filtered events) still pack",
			items: []Item{ev("T", 0, a), ev("T", 4, a), ev("T", 9, a)},
			lim:   lim,
			want:  []want{{a, "T:0-9", []string{"T/0", "T/4", "T/9"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describe(Build(tt.items, tt.lim))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Build =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

// TestBuildReplayStable shows why PackWindow exists: a transaction published
// in batches cut at window multiples gets the same ids however the batches
// are grouped.
func TestBuildReplayStable(t *testing.T) {
	var items []Item
	for pos := range uint64(3000) {
		items = append(items, ev("T", pos, "s.public.a"))
	}
	lim := Limits{MaxBytes: 1 << 20, MaxEvents: 1024}
	ids := func(batches ...[]Item) []string {
		var out []string
		for _, b := range batches {
			for _, p := range Build(b, lim) {
				out = append(out, p.MsgID)
			}
		}
		return out
	}
	whole := ids(items)
	cut := ids(items[:1024], items[1024:2048], items[2048:])
	if !reflect.DeepEqual(whole, cut) {
		t.Fatalf("ids differ:\n%v\n%v", whole, cut)
	}
	if want := []string{"T:0-1023", "T:1024-2047", "T:2048-2999"}; !reflect.DeepEqual(whole, want) {
		t.Fatalf("ids = %v, want %v", whole, want)
	}
}

func TestPackMsgAndUnpack(t *testing.T) {
	items := []Item{ev("T", 0, "s.a"), ev("T", 1, "s.a"), ev("T", 2, "s.a")}
	packs := Build(items, Limits{MaxEvents: 10})
	if len(packs) != 1 {
		t.Fatalf("got %d packs", len(packs))
	}
	m := packs[0].Msg()
	if m.Subject != "s.a" || m.Header.Get(HeaderEvents) != "3" {
		t.Fatalf("msg subject %q header %q", m.Subject, m.Header.Get(HeaderEvents))
	}
	if packs[0].Size() != len(packs[0].Body()) {
		t.Errorf("Size = %d, body is %d bytes", packs[0].Size(), len(packs[0].Body()))
	}
	if m.Header.Get(HeaderEncoding) != EncodingS2 {
		t.Errorf("packed body not marked %s: %v", EncodingS2, m.Header)
	}
	events, err := Unpack(m.Data, m.Header)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if !bytes.Equal(e, items[i].Body) {
			t.Errorf("event %d = %s, want %s", i, e, items[i].Body)
		}
	}

	plain := Build(items[:1], Limits{MaxEvents: 10})[0].Msg()
	if _, ok := plain.Header[HeaderEvents]; ok {
		t.Errorf("a single event must be a plain message, got header %v", plain.Header)
	}
	events, err = Unpack(plain.Data, plain.Header)
	if err != nil || len(events) != 1 || !bytes.Equal(events[0], items[0].Body) {
		t.Errorf("Unpack(plain) = %q, %v", events, err)
	}
	bad := nats.Header{HeaderEvents: {"2"}, HeaderEncoding: {"zstd"}}
	if _, err := Unpack([]byte("x\ny"), bad); !errors.Is(err, ErrMalformedPack) {
		t.Errorf("Unpack with an unknown encoding = %v, want ErrMalformedPack", err)
	}
	if events, err := Unpack([]byte("x\ny"), nil); err != nil || len(events) != 1 {
		t.Errorf("Unpack without header = %q, %v; want the whole body as one event", events, err)
	}
}

func TestUnpackMalformed(t *testing.T) {
	hdr := func(v string) nats.Header { return nats.Header{HeaderEvents: []string{v}} }
	tests := []struct {
		name string
		body string
		hdr  nats.Header
		msg  string
	}{
		{"count not a number", "{}", hdr("x"), "not a positive count"},
		{"zero count", "{}", hdr("0"), "not a positive count"},
		{"too few lines", "{}\n{}", hdr("3"), "declares 3 events, body holds 2"},
		{"too many lines", "{}\n{}\n{}", hdr("2"), "declares 2 events, body holds 3"},
		{"trailing newline", "{}\n{}\n", hdr("2"), "declares 2 events, body holds 3"},
		{"empty event", "{}\n\n{}", hdr("3"), "event 1 of 3 is empty"},
	}
	for _, tt := range tests {
		_, err := Unpack([]byte(tt.body), tt.hdr)
		if !errors.Is(err, ErrMalformedPack) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Unpack = %v, want ErrMalformedPack containing %q", tt.name, err, tt.msg)
		}
	}
}

func TestMsgID(t *testing.T) {
	tests := []struct {
		id          string
		tx          string
		first, last uint64
		ok          bool
	}{
		{MsgID("0/16B37A0", 3, 3), "0/16B37A0", 3, 3, true},
		{MsgID("0/16B37A0", 0, 1023), "0/16B37A0", 0, 1023, true},
		{MsgID("snap:users:7", 1, 5), "snap:users:7", 1, 5, true},
		{"0/1:5-3", "", 0, 0, false},
		{"nocolon", "", 0, 0, false},
		{":5", "", 0, 0, false},
		{"t:x", "", 0, 0, false},
		{"t:1-", "", 0, 0, false},
		// A barrier copy's partition suffix is not part of its position.
		{MsgID("0/16B37A0", 3, 3) + PartitionIDSuffix(2), "0/16B37A0", 3, 3, true},
		{MsgID("0/16B37A0", 3, 3) + "/sync" + PartitionIDSuffix(12), "", 0, 0, false},
		{"0/1:3/p", "", 0, 0, false},
	}
	for _, tt := range tests {
		tx, first, last, ok := ParseMsgID(tt.id)
		if tx != tt.tx || first != tt.first || last != tt.last || ok != tt.ok {
			t.Errorf("ParseMsgID(%q) = %q, %d, %d, %v; want %q, %d, %d, %v", tt.id, tx, first, last, ok, tt.tx, tt.first, tt.last, tt.ok)
		}
	}
	if got := MsgID("0/1", 2, 2); got != "0/1:2" {
		t.Errorf("MsgID single = %q", got)
	}
	if got := MsgID("0/1", 2, 9); got != "0/1:2-9" {
		t.Errorf("MsgID range = %q", got)
	}
}

func TestEventCount(t *testing.T) {
	tests := []struct {
		hdr  nats.Header
		want int
	}{
		{nil, 1},
		{nats.Header{HeaderEvents: []string{"7"}}, 7},
		{nats.Header{HeaderEvents: []string{"x"}}, 1},
		{nats.Header{HeaderEvents: []string{"0"}}, 1},
	}
	for _, tt := range tests {
		if got := EventCount(tt.hdr); got != tt.want {
			t.Errorf("EventCount(%v) = %d, want %d", tt.hdr, got, tt.want)
		}
	}
}

// A message made in pooled memory is the message Msg makes, also when the
// memory is reused.
func TestMsgFromPoolEqualsMsg(t *testing.T) {
	var pool BodyPool
	for round := range 3 {
		for _, p := range []Pack{
			{Subject: "s", Events: [][]byte{[]byte(`{"a":1}`)}},
			{Subject: "s", Events: [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`), []byte(strings.Repeat(`{"c":3}`, 100*round))}},
			{Subject: "s", Events: [][]byte{[]byte("public\tt\t0/1\nx\n")}, Rows: 1},
		} {
			want, got := p.Msg(), p.MsgFrom(&pool)
			if !bytes.Equal(got.Data, want.Data) || fmt.Sprint(got.Header) != fmt.Sprint(want.Header) || got.Subject != want.Subject {
				t.Fatalf("round %d: pooled message %q %v differs from %q %v", round, got.Data, got.Header, want.Data, want.Header)
			}
			pool.Put(got)
		}
	}
}

// Barrier copies are published alone, each with its header and an id of its
// own, between the packs of the events around them.
func TestBuildBarriers(t *testing.T) {
	items := []Item{ev("0/1", 0, "s.a.0"), ev("0/1", 1, "s.a.0")}
	for k := 0; k < 2; k++ {
		c := ev("0/1", 2, "s.a."+strconv.Itoa(k))
		c.Barrier, c.IDSuffix = "0/1:2", PartitionIDSuffix(k)
		items = append(items, c)
	}
	items = append(items, ev("0/1", 3, "s.a.0"), Item{Tx: "0/1", Pos: 4, Subject: "s.a.1", Barrier: "0/1:4:sync", IDSuffix: "/sync/p1"})
	packs := Build(items, Limits{MaxEvents: PackWindow})
	got := describe(packs)
	wantPacks := []want{
		{"s.a.0", "0/1:0-1", []string{"0/1/0", "0/1/1"}},
		{"s.a.0", "0/1:2/p0", []string{"0/1/2"}},
		{"s.a.1", "0/1:2/p1", []string{"0/1/2"}},
		{"s.a.0", "0/1:3", []string{"0/1/3"}},
		{"s.a.1", "0/1:4/sync/p1", nil},
	}
	if !reflect.DeepEqual(got, wantPacks) {
		t.Fatalf("packs\n%v\nwant\n%v", got, wantPacks)
	}
	for i, p := range packs {
		m := p.Msg()
		if h, want := m.Header.Get(HeaderBarrier), items[i+1].Barrier; i >= 1 && i <= 2 && h != want {
			t.Errorf("pack %d: header %s=%q, want %q", i, HeaderBarrier, h, want)
		}
		if i == 4 && (m.Header.Get(HeaderBarrier) != "0/1:4:sync" || len(m.Data) != 0) {
			t.Errorf("sync barrier: header %q, body %q", m.Header.Get(HeaderBarrier), m.Data)
		}
		if i == 0 && m.Header.Get(HeaderBarrier) != "" {
			t.Error("an event pack is marked as a barrier")
		}
	}
}

// A pack whose positions have gaps lists them in its header, and the list
// reads back only for the id's range and count.
func TestPackPositions(t *testing.T) {
	items := []Item{ev("0/1", 0, "s.a.0"), ev("0/1", 2, "s.a.0"), ev("0/1", 3, "s.a.0"), ev("0/1", 1023, "s.a.0")}
	packs := Build(items, Limits{MaxEvents: PackWindow})
	if len(packs) != 1 || packs[0].MsgID != "0/1:0-1023" {
		t.Fatalf("packs %v", describe(packs))
	}
	header := packs[0].Msg().Header.Get(HeaderPositions)
	got, ok := DecodePositions(header, 0, 1023, 4)
	if !ok || !reflect.DeepEqual(got, []uint64{0, 2, 3, 1023}) {
		t.Fatalf("positions %q read back as %v, %v", header, got, ok)
	}
	if len(header) > 172 {
		t.Fatalf("header of %d characters", len(header))
	}
	for _, bad := range []struct {
		first, last uint64
		n           int
	}{{0, 1023, 3}, {1, 1023, 4}, {0, 1022, 4}, {0, 1023, 0}} {
		if _, ok := DecodePositions(header, bad.first, bad.last, bad.n); ok {
			t.Errorf("positions read for range %d-%d of %d events", bad.first, bad.last, bad.n)
		}
	}
	// Dense packs need no list.
	dense := Build([]Item{ev("0/1", 4, "s.a.0"), ev("0/1", 5, "s.a.0")}, Limits{MaxEvents: PackWindow})
	if h := dense[0].Msg().Header.Get(HeaderPositions); h != "" || dense[0].Positions != nil {
		t.Fatalf("dense pack lists positions %q", h)
	}
}

// A copy pack larger than MaxBytes is published as copy packs of whole rows
// within it, at consecutive positions with ids of their own; one within it
// is published as it is.
func TestBuildSplitsCopyPacks(t *testing.T) {
	cols := []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "v", Type: "text", OID: 25}}
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "t", cols, 0x10))
	header := len(body)
	for i := range 10 {
		body = append(body, fmt.Sprintf("%d\t%s\n", i, strings.Repeat("v", 40))...)
	}
	pack := Item{Tx: "snap:1", Pos: 100, Subject: "s.t", Body: body, Rows: 10}
	limit := header + 3*44 // three rows of 44 bytes
	packs := Build([]Item{ev("0/1", 0, "s.t"), pack}, Limits{MaxBytes: limit, MaxEvents: PackWindow})
	var ids []string
	rows := 0
	for _, p := range packs[1:] {
		if p.Size() > limit {
			t.Fatalf("pack %s of %d bytes, over %d", p.MsgID, p.Size(), limit)
		}
		parsed, err := copypack.Parse(p.Events[0])
		if err != nil || parsed.N != p.Rows {
			t.Fatalf("pack %s: %d rows parsed, %d declared, %v", p.MsgID, parsed.N, p.Rows, err)
		}
		ids = append(ids, p.MsgID)
		rows += p.Rows
	}
	if want := []string{"snap:1:100-102", "snap:1:103-105", "snap:1:106-108", "snap:1:109"}; !reflect.DeepEqual(ids, want) || rows != 10 {
		t.Fatalf("ids %v (%d rows), want %v", ids, rows, want)
	}
	whole := Build([]Item{pack}, Limits{MaxBytes: len(body), MaxEvents: PackWindow})
	if len(whole) != 1 || !bytes.Equal(whole[0].Events[0], body) || whole[0].MsgID != "snap:1:100-109" {
		t.Fatalf("a copy pack within the bound became %d packs", len(whole))
	}
}
