package source

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/snapshot"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

// startGroup starts a source of group "g" in mode over dsn's table items,
// in chunks of 10 pages.
func startGroup(t *testing.T, dsn, mode string, store *state.Store) (*Source, error) {
	t.Helper()
	log := testLogger{t}
	return Start(context.Background(), Config{
		Mode: mode,
		Source: replication.Source{DSN: dsn, Schema: "public", Tables: []string{"items"},
			Publication: "pub_g", Slot: "slot_g"},
		StatusInterval: time.Second, QueueEvents: 2048, ChunkPages: 10,
		Copy:  snapshot.Config{DSN: dsn, Workers: 1, PerTable: 1, ProgressInterval: time.Minute, Logger: log},
		State: store, Logger: log,
	})
}

func closeSource(t *testing.T, src *Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// firstBatch returns the source's first batch, unacknowledged.
func firstBatch(t *testing.T, src *Source) *feed.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := src.Next(ctx, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startsWithTruncate(b *feed.Batch) bool {
	return len(b.Events) > 0 && b.Events[0].Op == event.Truncate
}

// A resync's copy emits a TRUNCATE of the table before its rows, and
// again after a crash as long as no chunk was recorded (then every chunk is
// copied again, so emptying the table loses nothing); once a chunk is
// recorded, the TRUNCATE was delivered before it and is not sent again.
// The resync request is gone once the copy is planned. Mode stream copies
// too, and finishes an interrupted resync's copy. Finally, the group's slot
// dropped under it: the source refuses to start rather than create a new
// one.
func TestResyncTruncatesFirstUntilAChunkIsDone(t *testing.T) {
	ctx := context.Background()
	nats := testenv.StartNATS(t)
	store, err := state.Open(ctx, nats.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, repeat('v', 100) FROM generate_series(1, 5000) g")
	if err := store.SaveResync(ctx, &state.ResyncRequest{Slot: "slot_g", RequestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	src, err := startGroup(t, dsn, ModeStream, store)
	if err != nil {
		t.Fatal(err)
	}
	b := firstBatch(t, src)
	if !startsWithTruncate(b) || b.Events[0].Schema != "public" || b.Events[0].Table != "items" {
		t.Fatalf("the resync's first event is %s %s.%s, want a TRUNCATE of public.items", b.Events[0].Op, b.Events[0].Schema, b.Events[0].Table)
	}
	if req, err := store.LoadResync(ctx); err != nil || req != nil {
		t.Fatalf("resync request after the copy was planned: %+v, %v; want none", req, err)
	}
	closeSource(t, src) // a crash before anything was acknowledged

	src, err = startGroup(t, dsn, ModeStream, store)
	if err != nil {
		t.Fatal(err)
	}
	if b := firstBatch(t, src); !startsWithTruncate(b) {
		t.Fatalf("resumed with no chunk recorded: first event %s, want the TRUNCATE again", b.Events[0].Op)
	} else if err := src.Ack(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := src.Ack(ctx, nextWithChunks(t, src)); err != nil {
		t.Fatal(err)
	}
	closeSource(t, src)

	src, err = startGroup(t, dsn, ModeCopyAndStream, store)
	if err != nil {
		t.Fatal(err)
	}
	if b := firstBatch(t, src); startsWithTruncate(b) {
		t.Fatalf("resumed after a chunk was recorded: the TRUNCATE was sent again")
	}
	closeSource(t, src)

	testenv.Eventually(t, 30*time.Second, "the slot released", func() bool {
		return testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot_g' AND NOT active") == 1
	})
	testenv.Exec(t, dsn, "SELECT pg_drop_replication_slot('slot_g')")
	_, err = startGroup(t, dsn, ModeStream, store)
	var lost *replication.SlotLostError
	if !errors.As(err, &lost) || !lost.Dropped {
		t.Fatalf("start with the group's slot dropped: %v; want a dropped slot error", err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot_g'"); n != 0 {
		t.Fatalf("a new slot was created")
	}
}

type countingLogger struct{ warns, infos int }

func (l *countingLogger) Debugf(string, ...any) {}
func (l *countingLogger) Infof(string, ...any)  { l.infos++ }
func (l *countingLogger) Warnf(string, ...any)  { l.warns++ }

// The retained-WAL warning is logged once per crossing of the threshold,
// and its end once when the slot is back under it; 0 turns it off.
func TestRetainedWALWarnsOncePerCrossing(t *testing.T) {
	for _, c := range []struct {
		limit        int64
		readings     []int64
		warns, infos int
	}{
		{1000, []int64{10, 500, 999, 1000}, 0, 0},
		{1000, []int64{1001, 5000, 9000}, 1, 0},
		{1000, []int64{2000, 3000, 900, 800, 1500, 1600, 10}, 2, 2},
		{0, []int64{1 << 40}, 0, 0},
	} {
		log := &countingLogger{}
		s := &Source{cfg: Config{RetainedWALWarning: c.limit, Logger: log, Source: replication.Source{Slot: "s"}}}
		above := false
		for _, r := range c.readings {
			above = s.warnRetained(r, above)
		}
		if log.warns != c.warns || log.infos != c.infos {
			t.Errorf("limit %d, readings %v: %d warnings and %d all-clears, want %d and %d", c.limit, c.readings, log.warns, log.infos, c.warns, c.infos)
		}
	}
}
