package apply

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// The direct text[] encoding writes exactly what pgx's array codec writes.
func TestTextColumnEncodesAsPgxDoes(t *testing.T) {
	for _, c := range []textColumn{
		{},
		{{String: "a", Valid: true}},
		{{String: "", Valid: true}, {}, {String: "é\"{,}\\ NULL", Valid: true}},
		{{}, {}},
	} {
		plain := pgtype.NewMap()
		want, err := plain.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, []pgtype.Text(c), []byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		fast := pgtype.NewMap()
		useColumnCodec(fast)
		if _, ok := fast.PlanEncode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, c).(columnPlan); !ok {
			t.Fatal("the text[] codec does not plan textColumn directly")
		}
		got, err := fast.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, c, []byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v:\n got %x\nwant %x", c, got, want)
		}
	}
}

func BenchmarkTextColumn(b *testing.B) {
	c := make(textColumn, 16384)
	for i := range c {
		c[i] = pgtype.Text{String: "2026-11-27 02:30:00+00", Valid: i%7 != 0}
	}
	for _, m := range []struct {
		name  string
		value any
		setup func(*pgtype.Map)
	}{{"pgx", []pgtype.Text(c), func(*pgtype.Map) {}}, {"direct", c, useColumnCodec}} {
		b.Run(m.name, func(b *testing.B) {
			tm := pgtype.NewMap()
			m.setup(tm)
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = tm.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, m.value, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
