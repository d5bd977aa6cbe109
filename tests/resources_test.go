package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
