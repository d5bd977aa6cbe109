package apply

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/testenv"
)

// benchTable is the mixed-type table of bench/apply.
const benchTable = `CREATE TABLE big (id bigint PRIMARY KEY, n int NOT NULL, s text, amount numeric(16,4),
	ts timestamptz NOT NULL, flag bool, doc jsonb, uid uuid, blob bytea, tags text[])`

var benchColumns = []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "n", Type: "int4", OID: 23}, {Name: "s", Type: "text", OID: 25},
	{Name: "amount", Type: "numeric", OID: 1700}, {Name: "ts", Type: "timestamptz", OID: 1184}, {Name: "flag", Type: "bool", OID: 16},
	{Name: "doc", Type: "jsonb", OID: 3802}, {Name: "uid", Type: "uuid", OID: 2950}, {Name: "blob", Type: "bytea", OID: 17},
	{Name: "tags", Type: "_text", OID: 1009},
}

func benchRow(id int) event.Row {
	return event.Row{
		{Name: "id", Text: strconv.Itoa(id)}, {Name: "n", Text: strconv.Itoa(id % 1000)}, {Name: "s", Text: "row " + strconv.Itoa(id) + " c4ca4238a0b923820dcc509a6f75849b"},
		{Name: "amount", Text: "1234.5678"}, {Name: "ts", Text: "2026-11-26 12:00:00.123456+00"}, {Name: "flag", Text: "t"},
		{Name: "doc", Text: `{"id": 1, "ok": true, "name": "item 1", "tags": ["a", 1]}`}, {Name: "uid", Text: "5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10"},
		{Name: "blob", Text: `\x0102ff0102ff0102ff0102ff0102ff01`}, {Name: "tags", Text: `{t1,"q\"1","x,y"}`},
	}
}

// BenchmarkApply applies batches of 2,000 changes to a table of 100,000
// rows: snapshot inserts (COPY), the same rows in copy packs of 250 (COPY
// of the packs' rows) and single-row updates (upserts). Packs go to COPY in
// binary (the default), and as text for "pack-text". (Batches
// of exactly 1,000 rows hit a quirk of PostgreSQL 15: binary COPYs of 1,000
// rows cost the server more than text ones, those of 500 or 2,000 less.)
func BenchmarkApply(b *testing.B) {
	for _, name := range []string{"insert", "pack", "pack-text", "update"} {
		b.Run(name, func(b *testing.B) {
			kind, text := strings.CutSuffix(name, "-text")
			dsn := pg.NewDatabase(b)
			testenv.Exec(b, dsn, benchTable)
			a, err := Connect(context.Background(), Config{DSN: dsn, Group: "b", Progress: TableName{Schema: "pgflo", Name: "progress"}, CopyMinRows: 64, TextCopy: text})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close(context.Background())
			const rows, batch = 100000, 2000
			mk := func(i int) *Change {
				return &Change{Event: event.Event{V: 1, Op: event.Insert, Schema: "public", Table: "big", Columns: benchColumns, New: benchRow(i % rows)}, Pos: -1}
			}
			if kind == "update" {
				var all []*Change
				for i := 0; i < rows; i++ {
					c := mk(i)
					c.Snapshot = true
					all = append(all, c)
				}
				if _, err := a.Apply(context.Background(), all); err != nil {
					b.Fatal(err)
				}
			}
			header := copypack.AppendHeader(nil, copypack.NewHeader("public", "big", benchColumns, 0x1000))
			at := make([]int, len(benchColumns))
			for i := range at {
				at[i] = i
			}
			// pack returns the packs of rows from..from+batch (made before
			// the timer runs: the source's COPY writes them).
			packs := func(from int) []*Change {
				var out []*Change
				for p := 0; p < batch; p += 250 {
					body := append([]byte(nil), header...)
					for j := p; j < p+250; j++ {
						body = appendCopyRow(body, benchRow(from+j), at)
					}
					ch := &Change{Index: len(out), Pos: int64(from + p)}
					if err := DecodePack(body, ch); err != nil {
						b.Fatal(err)
					}
					out = append(out, ch)
				}
				return out
			}
			var packed [][]*Change
			if kind == "pack" {
				for i := 0; i < b.N; i++ {
					packed = append(packed, packs((i*batch)%rows))
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if kind == "pack" {
					if _, err := a.Apply(context.Background(), packed[i]); err != nil {
						b.Fatal(err)
					}
					continue
				}
				changes := make([]*Change, batch)
				for j := range changes {
					c := mk(i*batch + j)
					if kind == "update" {
						c.Op, c.Old = event.Update, c.New[:1]
					} else {
						c.Snapshot = true
					}
					changes[j] = c
				}
				if _, err := a.Apply(context.Background(), changes); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkPlanUpdates plans a catch-up batch: 16,000 UPDATEs of distinct
// rows of the mixed table (old row: the key), as one set statement.
func BenchmarkPlanUpdates(b *testing.B) {
	names := []string{"id", "n", "s", "amount", "ts", "flag", "doc", "uid", "blob", "tags"}
	oids := []uint32{pgvalue.Int8OID, pgvalue.Int4OID, pgvalue.TextOID, pgvalue.NumericOID, pgvalue.TimestamptzOID, pgvalue.BoolOID, pgvalue.JSONBOID, pgvalue.UUIDOID, pgvalue.ByteaOID, 1009}
	t := &Table{byName: map[string]int{}, Key: []int{0}}
	for i, n := range names {
		t.Columns = append(t.Columns, Column{Name: n, TypeOID: oids[i], CastType: "x"})
		t.byName[n] = i
	}
	var changes []*Change
	for k := 0; k < 16000; k++ {
		id := strconv.Itoa(k*7919%1000000 + 1)
		var row event.Row
		for _, n := range names {
			row = append(row, event.Value{Name: n, Text: n + id})
		}
		row[0].Text = id
		changes = append(changes, &Change{Event: event.Event{Op: event.Update, New: row, Old: event.Row{{Name: "id", Text: id}}}})
	}
	b.ReportAllocs()
	for b.Loop() {
		p := &planner{lookup: func(*Change) (*Table, error) { return t, nil }}
		if _, err := p.plan(changes); err != nil {
			b.Fatal(err)
		}
	}
}
