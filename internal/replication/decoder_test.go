package replication

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// frame builds pgoutput protocol v1 messages by hand, as PostgreSQL sends them.
type frame []byte

func (f frame) u8(v byte) frame    { return append(f, v) }
func (f frame) u16(v uint16) frame { return binary.BigEndian.AppendUint16(f, v) }
func (f frame) u32(v uint32) frame { return binary.BigEndian.AppendUint32(f, v) }
func (f frame) u64(v uint64) frame { return binary.BigEndian.AppendUint64(f, v) }
func (f frame) str(s string) frame { return append(append(f, s...), 0) }

// tuple: nil = NULL, "\x00u" = unchanged TOAST, anything else = text.
func (f frame) tuple(values ...*string) frame {
	f = f.u16(uint16(len(values)))
	for _, v := range values {
		switch {
		case v == nil:
			f = f.u8('n')
		case *v == "\x00u":
			f = f.u8('u')
		default:
			f = f.u8('t').u32(uint32(len(*v)))
			f = append(f, *v...)
		}
	}
	return f
}

func s(v string) *string { return &v }

var toast = s("\x00u")

func pgTime(t time.Time) uint64 {
	return uint64(t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds())
}

// TestDecoderTransaction decodes a transaction both ways: with fresh events
// and, as the stream does, with the scratch event reused for every change.
func TestDecoderTransaction(t *testing.T) {
	for _, scratch := range []bool{false, true} {
		t.Run(map[bool]string{false: "fresh", true: "scratch"}[scratch], func(t *testing.T) {
			testDecoderTransaction(t, scratch)
		})
	}
}

func testDecoderTransaction(t *testing.T, scratch bool) {
	commitTime := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)
	d := NewDecoder(map[uint32]string{20: "int8", 25: "text"})
	if scratch {
		d.Scratch()
	}
	steps := []struct {
		name string
		lsn  pglogrepl.LSN
		msg  frame
		want []event.Event
	}{
		{"begin", 100, frame{'B'}.u64(0x500).u64(pgTime(commitTime)).u32(757), nil},
		{"relation", 110, frame{'R'}.u32(16384).str("public").str("users").u8('d').u16(3).
			u8(1).str("id").u32(20).u32(0xFFFFFFFF).
			u8(0).str("email").u32(25).u32(0xFFFFFFFF).
			u8(0).str("bio").u32(25).u32(0xFFFFFFFF), nil},
		{"insert", 120, frame{'I'}.u32(16384).u8('N').tuple(s("42"), s("a@b.c"), nil), []event.Event{{
			Op: event.Insert, New: event.Row{{Name: "id", Text: "42"}, {Name: "email", Text: "a@b.c"}, {Name: "bio", Null: true}},
		}}},
		{"update keeps key, bio unchanged toast", 130, frame{'U'}.u32(16384).u8('N').tuple(s("42"), s("x@y.z"), toast), []event.Event{{
			Op: event.Update, New: event.Row{{Name: "id", Text: "42"}, {Name: "email", Text: "x@y.z"}},
			Old: event.Row{{Name: "id", Text: "42"}}, UnchangedToast: []string{"bio"},
		}}},
		{"update changes key", 140, frame{'U'}.u32(16384).u8('K').tuple(s("42"), nil, nil).u8('N').tuple(s("43"), s("x@y.z"), s("")), []event.Event{{
			Op: event.Update, New: event.Row{{Name: "id", Text: "43"}, {Name: "email", Text: "x@y.z"}, {Name: "bio", Text: ""}},
			Old: event.Row{{Name: "id", Text: "42"}},
		}}},
		{"delete", 150, frame{'D'}.u32(16384).u8('K').tuple(s("43"), nil, nil), []event.Event{{
			Op: event.Delete, Old: event.Row{{Name: "id", Text: "43"}},
		}}},
		{"truncate", 160, frame{'T'}.u32(1).u8(0).u32(16384), []event.Event{{Op: event.Truncate}}},
	}
	pos := 0
	for _, step := range steps {
		// A copy, as the connection's buffer: scratch values point into it.
		res, err := d.Decode(step.lsn, append([]byte(nil), step.msg...))
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if len(res.Events) != len(step.want) {
			t.Fatalf("%s: got %d events, want %d", step.name, len(res.Events), len(step.want))
		}
		for i, got := range res.Events {
			want := step.want[i]
			if got.Op != want.Op || got.Schema != "public" || got.Table != "users" || got.LSN != step.lsn ||
				got.CommitLSN != 0x500 || got.Xid != 757 || !got.CommitTime.Equal(commitTime) {
				t.Errorf("%s: header %+v", step.name, got)
			}
			if g, w := rowJSON(got.New), rowJSON(want.New); g != w {
				t.Errorf("%s: new = %s, want %s", step.name, g, w)
			}
			if g, w := rowJSON(got.Old), rowJSON(want.Old); g != w {
				t.Errorf("%s: old = %s, want %s", step.name, g, w)
			}
			if len(got.UnchangedToast) != len(want.UnchangedToast) || (len(want.UnchangedToast) > 0 && got.UnchangedToast[0] != want.UnchangedToast[0]) {
				t.Errorf("%s: unchanged_toast = %v, want %v", step.name, got.UnchangedToast, want.UnchangedToast)
			}
			if len(got.Columns) != 3 || !got.Columns[0].Key || got.Columns[1].Key || got.Columns[0].Type != "int8" || got.Columns[1].OID != 25 {
				t.Errorf("%s: columns = %+v", step.name, got.Columns)
			}
		}
		pos += len(res.Events)
		if tx := d.Tx(); !tx.InTx || tx.Pos != pos {
			t.Errorf("%s: tx state %+v, want in tx at position %d", step.name, tx, pos)
		}
	}
	res, err := d.Decode(170, frame{'C'}.u8(0).u64(0x500).u64(0x530).u64(pgTime(commitTime)))
	if err != nil || !res.Commit || res.EndLSN != 0x530 {
		t.Fatalf("commit: %+v, %v", res, err)
	}
	if d.Tx().InTx {
		t.Error("still in a transaction after commit")
	}
}

func TestDecoderUnknownRelation(t *testing.T) {
	d := NewDecoder(nil)
	_, err := d.Decode(1, frame{'I'}.u32(99).u8('N').tuple(s("1")))
	if err == nil || !strings.Contains(err.Error(), "relation 99") {
		t.Fatalf("want an error naming relation 99, got %v", err)
	}
}

func rowJSON(r event.Row) string {
	b, _ := r.MarshalJSON()
	return string(b)
}

// Malformed row-change messages must give an error, never a panic.
func FuzzDecodeChange(f *testing.F) {
	relation := frame{'R'}.u32(1).str("public").str("t").u8('d').u16(2).
		u8(1).str("id").u32(20).u32(0xFFFFFFFF).u8(0).str("v").u32(25).u32(0xFFFFFFFF)
	f.Add([]byte(frame{'I'}.u32(1).u8('N').tuple(s("1"), s("x"))))
	f.Add([]byte(frame{'U'}.u32(1).u8('K').tuple(s("1"), nil).u8('N').tuple(s("2"), toast)))
	f.Add([]byte(frame{'D'}.u32(1).u8('O').tuple(s("1"), s("x"))))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := NewDecoder(nil)
		if _, err := d.Decode(1, relation); err != nil {
			t.Fatal(err)
		}
		if len(msg) > 0 && (msg[0] == 'I' || msg[0] == 'U' || msg[0] == 'D') {
			_, _ = d.Decode(2, msg)
		}
	})
}
