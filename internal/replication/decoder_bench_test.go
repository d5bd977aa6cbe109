package replication

import (
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/feed"
)

// BenchmarkDecodeEncodeUpdate measures the replicator's per-change CPU: one
// pgoutput UPDATE decoded into an event and encoded as JSON, as the stream
// does (reusing the decoder's scratch event).
func BenchmarkDecodeEncodeUpdate(b *testing.B) {
	d := NewDecoder(map[uint32]string{20: "int8", 23: "int4", 25: "text"})
	d.Scratch()
	steps := []frame{
		frame{'B'}.u64(0x500).u64(pgTime(time.Now())).u32(757),
		frame{'R'}.u32(16384).str("public").str("t").u8('d').u16(3).
			u8(1).str("id").u32(20).u32(0xFFFFFFFF).
			u8(0).str("n").u32(23).u32(0xFFFFFFFF).
			u8(0).str("s").u32(25).u32(0xFFFFFFFF),
	}
	for _, f := range steps {
		if _, err := d.Decode(1, f); err != nil {
			b.Fatal(err)
		}
	}
	update := frame{'U'}.u32(16384).u8('N').tuple(s("4242"), s("17"), s("c4ca4238a0b923820dcc509a6f75849b"))
	var a feed.Arena
	b.ReportAllocs()
	for b.Loop() {
		res, err := d.Decode(0x16B3748, update)
		if err != nil {
			b.Fatal(err)
		}
		_ = a.Encode(res.Events[0])
	}
}
