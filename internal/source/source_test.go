package source

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/snapshot"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }

type testLogger struct{ t *testing.T }

func (l testLogger) Infof(f string, a ...any)  { l.t.Logf("INFO "+f, a...) }
func (l testLogger) Warnf(f string, a ...any)  { l.t.Logf("WARN "+f, a...) }
func (l testLogger) Debugf(f string, a ...any) {}

// startCopy starts a copy_and_stream source over a table of many small
// chunks, its queue smaller than the table, so the copy is still running
// when the test acts.
func startCopy(t *testing.T, store *state.Store, owner *state.Lease) *Source {
	t.Helper()
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, repeat('v', 100) FROM generate_series(1, 50000) g")
	log := testLogger{t}
	src, err := Start(context.Background(), Config{
		Mode: ModeCopyAndStream,
		Source: replication.Source{DSN: dsn, Schema: "public", Tables: []string{"items"},
			Publication: "pub_g", Slot: "slot_g"},
		StatusInterval: time.Second, QueueEvents: 2048, ChunkPages: 10,
		Copy:  snapshot.Config{DSN: dsn, Workers: 2, PerTable: 2, ProgressInterval: time.Minute, Logger: log},
		State: store, Owner: owner, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := src.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return src
}

// nextWithChunks reads batches (acknowledging them) until one ends a chunk,
// and returns it unacknowledged.
func nextWithChunks(t *testing.T, src *Source) *feed.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		b, err := src.Next(ctx, 1024)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Chunks) > 0 {
			return b
		}
		if err := src.Ack(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// assertStopped checks that the source hands out nothing more, though its
// queue held rows when it stopped, and keeps saying why.
func assertStopped(t *testing.T, src *Source, want error) {
	t.Helper()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := src.Next(ctx, 1024)
		cancel()
		if !errors.Is(err, want) {
			t.Fatalf("Next after the source stopped: batch of %d events, error %v; want %v", eventsOf(b), err, want)
		}
	}
}

func eventsOf(b *feed.Batch) int {
	if b == nil {
		return 0
	}
	return len(b.Events)
}

// A replicator whose chunk record was written by another since it read it
// stops copying at once: the acknowledgement reports the conflict, and not
// one more row is handed out, though the copy had rows queued.
func TestChunkRecordConflictStopsTheCopy(t *testing.T) {
	nats := testenv.StartNATS(t)
	store, err := state.Open(context.Background(), nats.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	src := startCopy(t, store, nil)
	b := nextWithChunks(t, src)
	testenv.Eventually(t, 30*time.Second, "rows queued by the copy", func() bool { return !src.feed.Empty() })

	// Another replicator of the group records its own progress.
	other, err := state.Open(context.Background(), nats.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := other.LoadSnapshot(context.Background())
	if err != nil || snap == nil {
		t.Fatalf("snapshot record: %v %v", snap, err)
	}
	if err := other.SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	err = src.Ack(context.Background(), b)
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("Ack: %v, want a conflict", err)
	}
	assertStopped(t, src, state.ErrConflict)
	// The other replicator's record stands.
	after, err := other.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := countDone(after), countDone(snap); got != want {
		t.Fatalf("record has %d chunks done, the other replicator wrote %d", got, want)
	}
}

// An owner whose lease is taken over stops at once too, before it reads
// another batch.
func TestLostLeaseStopsTheCopy(t *testing.T) {
	nats := testenv.StartNATS(t)
	store, err := state.Open(context.Background(), nats.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := store.AcquireLease(context.Background(), state.LeaseConfig{TTL: 3 * time.Second, Holder: state.NewHolder()})
	if err != nil {
		t.Fatal(err)
	}
	src := startCopy(t, store, lease)
	b := nextWithChunks(t, src)
	if err := src.Ack(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "rows queued by the copy", func() bool { return !src.feed.Empty() })
	// Someone else writes the lease (an operator, a replicator that judged
	// it expired): the owner finds out at its next renewal.
	kv, err := nats.JetStream(t).KeyValue(context.Background(), "pg_flo_state_g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), state.LeaseKey, []byte(`{"id":"other"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lease.Lost():
	case <-time.After(60 * time.Second):
		t.Fatal("the lease was not found lost")
	}
	assertStopped(t, src, state.ErrLeaseLost)
}
