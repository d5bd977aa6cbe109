package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/testenv"
)

// End-to-end tests of what happens when a resource runs out or refuses: a
// stream that drops what nobody consumes, a full stream, a source out of
// connections, a target that refuses a batch while the worker is stopped.

// shutdownBound is how long a process may take to exit after SIGTERM before
// the test fails: well past Benthos' shutdown timeout (20s), so only a
// process that does not end by itself hits it.
const shutdownBound = 60 * time.Second

// terminate sends SIGTERM and waits for the process to exit by itself,
// failing the test (and killing it) when it is still running after
// shutdownBound.
func terminate(t *testing.T, p *testenv.Process, name string) time.Duration {
	t.Helper()
	started := time.Now()
	if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownBound):
		p.Kill()
		t.Fatalf("%s still running %v after SIGTERM", name, shutdownBound)
	}
	took := time.Since(started)
	t.Logf("%s exited %v after SIGTERM", name, took.Round(time.Millisecond))
	if err := p.Wait(); err != nil {
		t.Errorf("%s did not exit cleanly after SIGTERM: %v", name, err)
	}
	return took
}

// A worker whose output keeps failing a batch — the target refuses a row,
// or cannot be reached at all — ends by itself on SIGTERM, within Benthos'
// shutdown timeout; started again once the cause is fixed, it applies
// everything: the target equals the source.
func TestWorkerStopsWhileBatchRefused(t *testing.T) {
	t.Run("target refuses the row", func(t *testing.T) { workerStopsWhileBatchRefused(t, "refused") })
	t.Run("target table locked", func(t *testing.T) { workerStopsWhileBatchRefused(t, "locked") })
	t.Run("target unreachable", func(t *testing.T) { workerStopsWhileBatchRefused(t, "cut") })
}

func workerStopsWhileBatchRefused(t *testing.T, cause string) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, "CREATE TABLE small (id int PRIMARY KEY, v text)")
	testenv.Exec(t, target, "CREATE TABLE small (id int PRIMARY KEY, v text CHECK (v <> 'forbidden'))")
	proxy, err := testenv.StartProxy(fmt.Sprintf("127.0.0.1:%d", pg.Port()), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	// The worker reaches the target through the proxy.
	viaProxy := replacePort(t, target, proxy.Port())
	group := "refusestop"
	p := newPipeline(t, source, group)
	p.startReplicator()
	p.startWorker(postgresOutput(viaProxy, group, ""))
	testenv.Exec(t, source, "INSERT INTO small SELECT g, 'ok' FROM generate_series(1, 100) g")
	waitDigestsEqual(t, source, target, []string{"small"}, 60*time.Second)

	var lock pgx.Tx
	switch cause {
	case "cut":
		proxy.Cut()
		testenv.Exec(t, source, "INSERT INTO small SELECT g, 'more' FROM generate_series(101, 200) g")
		testenv.Eventually(t, 60*time.Second, "the worker failing to reach the target", func() bool {
			return containsAny(p.worker.Log(), "Failed to connect to pg_flo_postgres")
		})
	case "locked":
		// Another session holds the table: the apply waits for the lock.
		conn, err := pgx.Connect(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		if lock, err = conn.Begin(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Exec(context.Background(), "LOCK TABLE small IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		testenv.Exec(t, source, "INSERT INTO small SELECT g, 'more' FROM generate_series(101, 200) g")
		testenv.Eventually(t, 60*time.Second, "the worker waiting for the lock", func() bool {
			return testenv.QueryInt(t, target, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'small'::regclass") > 0
		})
	default:
		testenv.Exec(t, source, "INSERT INTO small VALUES (101, 'forbidden')")
		testenv.Exec(t, source, "INSERT INTO small SELECT g, 'after' FROM generate_series(102, 200) g")
		testenv.Eventually(t, 60*time.Second, "the refusal in the worker's log", func() bool {
			return containsAny(p.worker.Log(), `apply INSERT to \"public\".\"small\" key (id)=(101)`)
		})
	}
	// Let it retry for a while: the backoff grows.
	time.Sleep(8 * time.Second)
	terminate(t, p.worker, "worker")

	switch cause {
	case "cut":
		proxy.Restore()
	case "locked":
		if err := lock.Rollback(context.Background()); err != nil {
			t.Fatal(err)
		}
	default:
		testenv.Exec(t, target, "ALTER TABLE small DROP CONSTRAINT small_v_check")
	}
	p.startWorker(postgresOutput(viaProxy, group, ""))
	waitDigestsEqual(t, source, target, []string{"small"}, 60*time.Second)
}

// replacePort is dsn with its port replaced: the same database through a
// proxy.
func replacePort(t *testing.T, dsn string, port int) string {
	t.Helper()
	old := ":" + strconv.Itoa(pg.Port()) + "/"
	if !strings.Contains(dsn, old) {
		t.Fatalf("DSN %s has no port %d", dsn, pg.Port())
	}
	return strings.Replace(dsn, old, ":"+strconv.Itoa(port)+"/", 1)
}

// containsAny reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// startPartitionWorker starts the worker of partition k (k < 0: a group of
// one partition) applying into target with snapshot packs kept.
func startPartitionWorker(t *testing.T, p *pipeline, target string, k int) *testenv.Process {
	t.Helper()
	name, partition := "worker", ""
	if k >= 0 {
		name, partition = fmt.Sprintf("worker-p%d", k), fmt.Sprintf("    partition: %d\n", k)
	}
	cfg := p.writeConfig(name+".yaml", fmt.Sprintf(`%s
input:
  pg_flo_worker:
    url: %s
    group: %s
%s    snapshot_packs: keep
output:
  %s
`, quietHTTP, p.nats.URL(), p.group, partition, postgresOutput(target, p.group, "")))
	return testenv.StartProcess(t, name, p.bin, "run", cfg)
}

// waitSlotConfirmed waits until the group's slot confirmed the source's
// current WAL position: everything written so far was published.
func waitSlotConfirmed(t *testing.T, p *pipeline, timeout time.Duration) {
	t.Helper()
	lsn := testenv.QueryRows(t, p.dsn, "SELECT pg_current_wal_lsn()::text")[0][0]
	testenv.Eventually(t, timeout, "the slot confirmed "+lsn, func() bool {
		return testenv.QueryInt(t, p.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn", p.slot(), lsn) == 1
	})
}

const itemsTableSQL = "CREATE TABLE items (id int PRIMARY KEY, v text, n int)"

// A stream that deletes what no consumer needs (interest or work-queue
// retention) loses nothing published before any worker ran: the
// replicator copies 100,000 rows and streams changes with no worker
// running, and the workers started afterwards make the target equal to the
// source — with one partition and with two; and so does a worker started
// before the stream exists.
func TestRetentionKeepsChangesPublishedBeforeTheWorker(t *testing.T) {
	t.Run("interest", func(t *testing.T) { retentionKeepsChanges(t, "interest", 1, false) })
	t.Run("workqueue, two partitions", func(t *testing.T) { retentionKeepsChanges(t, "workqueue", 2, false) })
	// The worker waits for the stream, then adopts the consumer the
	// replicator made, or makes it itself, whichever comes first.
	t.Run("interest, worker started first", func(t *testing.T) { retentionKeepsChanges(t, "interest", 1, true) })
}

func retentionKeepsChanges(t *testing.T, retention string, partitions int, workerFirst bool) {
	const rows = 100000
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, itemsTableSQL)
	testenv.Exec(t, source, fmt.Sprintf("INSERT INTO items SELECT g, md5(g::text), g FROM generate_series(1, %d) g", rows))
	testenv.Exec(t, target, itemsTableSQL)
	group := "ret" + retention
	p := newPipeline(t, source, group)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [items]", p.nats.URL())
	p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    stream_retention: %s\n    partitions: %d", p.nats.URL(), group, retention, partitions)
	if workerFirst {
		worker := startPartitionWorker(t, p, target, -1)
		testenv.Eventually(t, 30*time.Second, "the worker waiting for the stream", func() bool {
			return strings.Contains(worker.Log(), "start the replicator first")
		})
	}
	p.startReplicator()
	testenv.Eventually(t, 120*time.Second, "the snapshot complete", func() bool {
		return strings.Contains(p.replicator.Log(), "snapshot complete")
	})
	testenv.Exec(t, source, fmt.Sprintf("INSERT INTO items SELECT g, 'new', g FROM generate_series(%d, %d) g", rows+1, rows+500))
	testenv.Exec(t, source, "UPDATE items SET n = -n WHERE id % 100 = 0")
	testenv.Exec(t, source, "DELETE FROM items WHERE id % 777 = 0")
	waitSlotConfirmed(t, p, 60*time.Second)

	switch {
	case workerFirst:
	case partitions == 1:
		startPartitionWorker(t, p, target, -1)
	default:
		for k := 0; k < partitions; k++ {
			startPartitionWorker(t, p, target, k)
		}
	}
	waitDigestsEqual(t, source, target, []string{"items"}, 180*time.Second)
	// What the workers acknowledged is gone from the stream.
	testenv.Eventually(t, 30*time.Second, "the stream emptied by the acknowledgements", func() bool {
		info, err := p.nats.JetStream(t).Stream(context.Background(), "pgflo_"+group+"_stream")
		return err == nil && info.CachedInfo().State.Msgs == 0
	})
}

// A full stream (discard new) makes the replicator wait, not drop: with the
// worker stopped while changes flow, the replicator stops publishing, says
// why once, and the slot keeps the WAL; stopped (SIGTERM) while it waits, it
// ends by itself; once a worker runs again, the stream drains (interest
// retention frees what it acknowledged) and the target equals the source.
func TestFullStreamWaitsForTheWorker(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, itemsTableSQL)
	testenv.Exec(t, target, itemsTableSQL)
	group := "fullstream"
	p := newPipeline(t, source, group)
	p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    stream_retention: interest\n    stream_max_bytes: 262144", p.nats.URL(), group)
	p.startReplicator()
	worker := startPartitionWorker(t, p, target, -1)
	testenv.Exec(t, source, "INSERT INTO items SELECT g, md5(g::text), g FROM generate_series(1, 1000) g")
	waitDigestsEqual(t, source, target, []string{"items"}, 60*time.Second)
	terminate(t, worker, "worker")

	// Far more than the stream holds, in many transactions.
	for i := 0; i < 40; i++ {
		testenv.Exec(t, source, fmt.Sprintf("INSERT INTO items SELECT g, repeat(md5(g::text), 4), g FROM generate_series(%d, %d) g", 1001+i*500, 1000+(i+1)*500))
	}
	end := testenv.QueryRows(t, source, "SELECT pg_current_wal_lsn()::text")[0][0]
	testenv.Eventually(t, 60*time.Second, "the replicator saying the stream is full", func() bool {
		return strings.Contains(p.replicator.Log(), "Stream pgflo_fullstream_stream is full")
	})
	if n := strings.Count(p.replicator.Log(), "is full ("); n != 1 {
		t.Errorf("the stream-full warning was logged %d times, want once", n)
	}
	if n := testenv.QueryInt(t, source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn", p.slot(), end); n != 1 {
		t.Fatalf("the slot confirmed past %s while the stream was full", end)
	}

	// A replicator stopped while it waits ends by itself, and its
	// successor publishes what it had not.
	terminate(t, p.replicator, "replicator")
	p.startReplicator()

	startPartitionWorker(t, p, target, -1)
	waitDigestsEqual(t, source, target, []string{"items"}, 180*time.Second)
}

// smallSource starts a cluster of its own with few WAL senders and
// connection slots, for the tests that exhaust them.
func smallSource(t *testing.T, settings string) *testenv.Postgres {
	t.Helper()
	small, err := testenv.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = small.Stop() })
	f, err := os.OpenFile(filepath.Join(small.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(settings); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := small.Restart(); err != nil {
		t.Fatal(err)
	}
	return small
}

// A source out of WAL senders or of connection slots stops the replicator
// with an error naming the setting to raise.
func TestSourceExhaustionNamesTheSetting(t *testing.T) {
	small := smallSource(t, "\nmax_wal_senders = 1\nmax_connections = 6\nsuperuser_reserved_connections = 0\n")
	ctx := context.Background()
	source := small.NewDatabase(t)
	testenv.Exec(t, source, itemsTableSQL)

	t.Run("max_wal_senders", func(t *testing.T) {
		// Another client holds the only WAL sender.
		held, err := pgconn.Connect(ctx, source+"&replication=database")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close(ctx)
		p := newPipeline(t, source, "nosender")
		p.startReplicatorNoWait()
		testenv.Eventually(t, 60*time.Second, "the replicator naming max_wal_senders", func() bool {
			return strings.Contains(p.replicator.Log(), "raise max_wal_senders on the source")
		})
		t.Logf("%s", lineWith(p.replicator.Log(), "raise max_wal_senders"))
	})

	t.Run("max_connections", func(t *testing.T) {
		// Other clients hold every connection slot.
		var held []*pgconn.PgConn
		defer func() {
			for _, c := range held {
				c.Close(ctx)
			}
		}()
		for {
			c, err := pgconn.Connect(ctx, source)
			if err != nil {
				break
			}
			held = append(held, c)
			if len(held) > 10 {
				t.Fatal("max_connections = 6 took more than 10 connections")
			}
		}
		p := newPipeline(t, source, "noslot")
		p.startReplicatorNoWait()
		testenv.Eventually(t, 60*time.Second, "the replicator naming max_connections", func() bool {
			return strings.Contains(p.replicator.Log(), "raise max_connections on the source")
		})
		t.Logf("%s", lineWith(p.replicator.Log(), "raise max_connections"))
	})
}

// lineWith is the first line of log containing sub.
func lineWith(log, sub string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}
