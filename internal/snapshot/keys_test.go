package snapshot

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Rows a plan lists to read again are read by their composite key under the
// copy's snapshot, rendered as the stream renders them; keys no longer there
// give no row, and the rows end with the table's keys chunk.
func TestCopyReadsPlannedRowsByKey(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, `CREATE TABLE pairs (a int, b text, v text, at timestamptz, PRIMARY KEY (a, b));
		INSERT INTO pairs SELECT g, 'k''' || g, 'v' || g, '2026-01-01 00:00:00+00' FROM generate_series(1, 2000) g`)
	ctx := context.Background()
	exporter, err := replication.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer exporter.Close(ctx)
	var name string
	if _, err := exporter.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ"); err != nil {
		t.Fatal(err)
	}
	if err := exporter.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	// After the snapshot: not seen by the copy.
	testenv.Exec(t, dsn, "UPDATE pairs SET v = 'later' WHERE a = 7")

	infos, err := DescribeWith(ctx, dsn, []replication.Table{{Schema: "public", Name: "pairs"}})
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]string
	for a := 1; a <= 1500; a++ { // more than one query's worth
		keys = append(keys, []string{strconv.Itoa(a), "none"}) // absent
	}
	keys = append(keys, []string{"7", "k'7"}, []string{"1999", "k'1999"}, []string{"3000", "k'3000"})
	plan := &state.Snapshot{Tables: []*state.Table{{Schema: "public", Name: "pairs", Chunks: []state.Chunk{{ID: 0}}, Done: []int{0},
		Reread: keys, RereadKey: []string{"a", "b"}}}}
	out := feed.New(1 << 20)
	job := Job{Snapshot: name, LSN: 0x1234, RunID: "r", Tables: infos, Plan: plan}
	if err := Copy(ctx, Config{DSN: dsn, Workers: 2, PerTable: 1}, job, out); err != nil {
		t.Fatal(err)
	}
	b, err := out.Next(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Chunks, []feed.ChunkRef{{Schema: "public", Table: "pairs", ID: feed.KeysChunk}}) {
		t.Errorf("chunks %v, want the keys chunk", b.Chunks)
	}
	var got []string
	var dec event.Decoder
	for i, enc := range b.Events {
		var ev event.Event
		if err := dec.DecodeEvent(enc.JSON, &ev); err != nil {
			t.Fatal(err)
		}
		if !ev.Snapshot || ev.Op != event.Insert || ev.CommitLSN != 0x1234 || enc.Tx != KeysTx("r", 0) || enc.Pos != i || !enc.Hashed {
			t.Errorf("event %d: %+v (tx %s, pos %d, hashed %v)", i, ev, enc.Tx, enc.Pos, enc.Hashed)
		}
		var vals []string
		for _, v := range ev.New {
			vals = append(vals, v.Text)
		}
		got = append(got, strings.Join(vals, "|"))
	}
	slices.Sort(got)
	want := []string{"1999|k'1999|v1999|2026-01-01 00:00:00+00", "7|k'7|v7|2026-01-01 00:00:00+00"}
	if !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
}
