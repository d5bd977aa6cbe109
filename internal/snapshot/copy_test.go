package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
)

var testTable = &TableInfo{Schema: "public", Name: "items", Columns: []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "note", Type: "text", OID: 25},
}}

// copyOutput returns what COPY ... TO STDOUT writes for rows (id, note):
// the text form, or the binary form with its header and trailer, and the
// rows as a pack holds them.
func copyOutput(rows int, binaryFormat bool) (stream, packed []byte) {
	var out bytes.Buffer
	if binaryFormat {
		out.WriteString(binarySignature + "\x00\x00\x00\x00\x00\x00\x00\x00")
	}
	start := out.Len()
	for i := range rows {
		note := fmt.Sprintf("row %d %s", i, bytes.Repeat([]byte{'x'}, i%300))
		if !binaryFormat {
			fmt.Fprintf(&out, "%d\t%s\n", i, note)
			continue
		}
		t := binary.BigEndian.AppendUint16(nil, 2)
		t = binary.BigEndian.AppendUint32(t, 8)
		t = binary.BigEndian.AppendUint64(t, uint64(i))
		t = binary.BigEndian.AppendUint32(t, uint32(len(note)))
		out.Write(append(t, note...))
	}
	packed = bytes.Clone(out.Bytes()[start:])
	if binaryFormat {
		out.Write([]byte{0xff, 0xff})
	}
	return out.Bytes(), packed
}

// COPY's output, text or binary, written whole or in pieces of any size
// (rows and the binary header split over writes), ends up in packs of at
// most PackRows rows and about PackBytes bytes, every row once, in order.
func TestRowWriterPacksRowsSplitOverWrites(t *testing.T) {
	for _, binaryFormat := range []bool{false, true} {
		for _, maxPiece := range []int{1, 7, 300, 1 << 30} {
			t.Run(fmt.Sprintf("binary_%v_pieces_%d", binaryFormat, maxPiece), func(t *testing.T) {
				stream, want := copyOutput(5000, binaryFormat)
				out := feed.New(1 << 30)
				w := &rowWriter{ctx: context.Background(), out: out, table: testTable, progress: newProgress(Config{}), unit: &feed.Unit{Snapshot: true}, split: wholeLines, binary: binaryFormat}
				header := copypack.NewHeader("public", "items", testTable.Columns, 0x10)
				if binaryFormat {
					header = copypack.NewBinaryHeader("public", "items", testTable.Columns, 0x10)
					w.split = wholeTuples(2)
				}
				w.header = copypack.AppendHeader(nil, header)
				w.progress.plan(testTable, 1, 0)
				rng := rand.New(rand.NewPCG(1, uint64(maxPiece)))
				for len(stream) > 0 {
					n := min(len(stream), 1+rng.IntN(min(maxPiece, len(stream))))
					if _, err := w.Write(stream[:n]); err != nil {
						t.Fatal(err)
					}
					stream = stream[n:]
				}
				if len(w.partial) > 0 || w.ended != binaryFormat {
					t.Fatalf("%d bytes left over, trailer seen %v", len(w.partial), w.ended)
				}
				w.cut()
				if err := out.Push(context.Background(), w.unit); err != nil {
					t.Fatal(err)
				}
				batch, err := out.Next(context.Background(), 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				rows := 0
				for _, e := range batch.Events {
					p, err := copypack.Parse(e.JSON)
					if err != nil {
						t.Fatal(err)
					}
					if p.Binary != binaryFormat || p.N != e.Rows || p.N > PackRows || (p.N > 1 && len(p.Rows) > PackBytes) {
						t.Fatalf("pack of %d rows (%d declared), %d bytes, binary %v", p.N, e.Rows, len(p.Rows), p.Binary)
					}
					got = append(got, p.Rows...)
					rows += p.N
				}
				if rows != 5000 || !bytes.Equal(got, want) {
					t.Fatalf("%d rows packed, rows equal: %v", rows, bytes.Equal(got, want))
				}
			})
		}
	}
}

// Binary output that goes on after its trailer, or does not start with the
// signature, is an error.
func TestRowWriterRejectsBrokenBinaryOutput(t *testing.T) {
	stream, _ := copyOutput(3, true)
	for name, bad := range map[string][]byte{
		"after trailer": append(bytes.Clone(stream), 0, 2),
		"no signature":  append([]byte("PGCOPY\n\xff\r\n\x01"), stream[11:]...),
		"field count":   append(bytes.Clone(stream[:19]), 0, 3, 0, 0, 0, 0),
	} {
		w := &rowWriter{ctx: context.Background(), out: feed.New(1 << 20), table: testTable, progress: newProgress(Config{}), unit: &feed.Unit{Snapshot: true}, split: wholeTuples(2), binary: true}
		w.progress.plan(testTable, 1, 0)
		if _, err := w.Write(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
