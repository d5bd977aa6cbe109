package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// A backlog is applied in large batches, and the single changes of a quiet
// source go alone: pg_flo_worker, with its defaults in front of
// pg_flo_postgres, fills a batch from a backlog and sends a lone change
// once fetch_wait passed without more. The batches are counted in the
// target's progress table.
func TestBatchesFollowTheBacklog(t *testing.T) {
	const (
		group   = "batching"
		backlog = 200000
		perTx   = 1000
		// The worker's default batch_size is 16,384 events; transactions
		// of 1,000 go 16 to a batch, 13 batches. Twice that allows for a
		// batch cut early.
		maxBatches = 2 * (backlog/16000 + 1)
		quiet      = 5
	)
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	testenv.Exec(t, target, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	p := newPipeline(t, source, group)
	p.startReplicator()

	// The whole backlog is in the stream before the worker starts.
	writeRange(t, source, 1, backlog, perTx)
	end := testenv.QueryRows(t, source, "SELECT pg_current_wal_lsn()::text")[0][0]
	testenv.Eventually(t, 120*time.Second, "the replicator confirming the backlog stored", func() bool {
		return testenv.QueryInt(t, source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn", p.slot(), end) == 1
	})
	p.startWorker(postgresOutput(target, group, ""))
	progress := func() (events, batches int64) {
		// The output creates the table when it connects.
		if testenv.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgflo' AND tablename = 'progress'") == 0 {
			return 0, 0
		}
		rows := testenv.QueryRows(t, target, "SELECT events::text, batches::text FROM pgflo.progress WHERE group_name = $1", group)
		if len(rows) != 1 {
			return 0, 0
		}
		fmt.Sscan(rows[0][0], &events)
		fmt.Sscan(rows[0][1], &batches)
		return events, batches
	}
	testenv.Eventually(t, 180*time.Second, "the backlog applied", func() bool {
		events, _ := progress()
		return events >= backlog
	})
	events, batches := progress()
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM items"); events != backlog || n != backlog {
		t.Fatalf("backlog: the target holds %d rows after %d events, want %d", n, events, backlog)
	}
	if batches > maxBatches {
		t.Fatalf("backlog of %d changes applied in %d batches (%d changes each), want at most %d", backlog, batches, backlog/batches, maxBatches)
	}
	t.Logf("backlog of %d changes applied in %d batches", backlog, batches)

	// A quiet source: one change at a time, each applied in a batch of its
	// own.
	for i := 1; i <= quiet; i++ {
		id := backlog + i
		testenv.Exec(t, source, "INSERT INTO items VALUES ($1, 'quiet')", id)
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("quiet change %d applied", i), func() bool {
			return testenv.QueryInt(t, target, "SELECT count(*) FROM items WHERE id = $1", id) == 1
		})
		if e, b := progress(); e != events+1 || b != batches+1 {
			t.Fatalf("quiet change %d: %d events in %d batches since the last, want 1 in 1", i, e-events, b-batches)
		}
		events, batches = events+1, batches+1
	}
}
