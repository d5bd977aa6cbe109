package tests

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// ownershipRows is the size of the table the two replicators of a group
// compete for: large enough that its copy, paced by a bounded stream, is still
// running when the second replicator starts.
const ownershipRows = 1_000_000

const accountsSQL = `CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL, note text, at timestamptz NOT NULL DEFAULT now())`

// ownershipGroup is a group being copied and streamed into a target
// PostgreSQL through a bounded JetStream stream, as docs/operations.md
// recommends bounding it (20 MB, discard new, interest retention): the copy
// is paced by the worker, as any large table's is.
type ownershipGroup struct {
	*pipeline
	source, target string
	churn          *churn
}

func startOwnershipGroup(t *testing.T, group, lease string) *ownershipGroup {
	t.Helper()
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, accountsSQL)
	testenv.Exec(t, source, fmt.Sprintf("INSERT INTO accounts (id, balance, note) SELECT g, g, md5(g::text) || md5((g + 1)::text) || md5((g * 7)::text) FROM generate_series(1, %d) g", ownershipRows))
	testenv.Exec(t, target, accountsSQL)
	p := newPipeline(t, source, group)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats_url: %s\n    tables: [accounts]\n%s", p.nats.URL(), lease)
	p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    stream_max_bytes: 20000000\n    stream_discard: new\n    stream_retention: interest", p.nats.URL(), group)

	// With interest retention, messages published before the worker's
	// consumer exists are dropped: the stream and the consumer come first.
	js := p.nats.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: jsproto.StreamName(group), Subjects: []string{jsproto.GroupSubjects(group)}, Storage: jetstream.FileStorage,
		MaxBytes: 20_000_000, MaxMsgs: -1, Discard: jetstream.DiscardNew, Retention: jetstream.InterestPolicy, Duplicates: 10 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	p.startWorker(postgresOutput(target, group, ""))
	testenv.Eventually(t, 30*time.Second, "the worker's consumer", func() bool {
		s, err := js.Stream(ctx, jsproto.StreamName(group))
		if err != nil {
			return false
		}
		_, err = s.Consumer(ctx, jsproto.ConsumerName(group))
		return err == nil
	})
	return &ownershipGroup{pipeline: p, source: source, target: target}
}

// startReplicatorProcess starts one more replicator of the group, same
// config.
func (g *ownershipGroup) startReplicatorProcess(name string) *testenv.Process {
	return testenv.StartProcess(g.t, name, g.bin, "run", g.replicatorConfig())
}

// waitEqual waits until the target holds exactly the source's rows.
func (g *ownershipGroup) waitEqual(timeout time.Duration) {
	g.t.Helper()
	// A cheap fingerprint first, polled; the full digest once it matches.
	const fingerprint = "SELECT count(*)::text || ' ' || coalesce(sum(hashtext(a::text)::bigint), 0)::text FROM accounts a"
	var src, dst string
	deadline := time.Now().Add(timeout)
	for {
		src = testenv.QueryRows(g.t, g.source, fingerprint)[0][0]
		dst = testenv.QueryRows(g.t, g.target, fingerprint)[0][0]
		if src == dst {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("after %v the target differs from the source: source rows and hash %s, target %s", timeout, src, dst)
		}
		time.Sleep(time.Second)
	}
	if s, d := digest(g.t, g.source, "accounts"), digest(g.t, g.target, "accounts"); s != d {
		g.t.Fatalf("target differs from the source: %s against %s", d, s)
	}
}

// churn writes to the source the whole time, as applications do: each
// transaction upserts one random key of accounts and deletes another, about
// rate transactions a second. Keys are drawn from 1..keys (upserts a twentieth
// beyond, so new rows keep coming): over a full table, as in the ownership
// tests, most upserts update; over a table growing from empty, the workload
// turns from inserts to updates and deletes.
type churn struct {
	stop atomic.Bool
	txs  atomic.Int64
	wg   sync.WaitGroup
}

func startChurn(t *testing.T, dsn string, rate int, keys int64) *churn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	c := &churn{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer conn.Close(context.Background())
		rng := rand.New(rand.NewSource(int64(rate)))
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		ctx := context.Background()
		for !c.stop.Load() {
			<-tick.C
			upsert, gone := 1+rng.Int63n(keys*21/20), 1+rng.Int63n(keys)
			batch := &pgx.Batch{}
			batch.Queue("BEGIN")
			batch.Queue("INSERT INTO accounts (id, balance, note) VALUES ($1, 0, 'new') ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1, note = 'changed', at = now()", upsert)
			batch.Queue("DELETE FROM accounts WHERE id = $1", gone)
			batch.Queue("COMMIT")
			if err := conn.SendBatch(ctx, batch).Close(); err != nil {
				t.Errorf("churn: %v", err)
				return
			}
			c.txs.Add(1)
		}
	}()
	return c
}

func (c *churn) finish() int64 {
	c.stop.Store(true)
	c.wg.Wait()
	return c.txs.Load()
}

// assertNoLateRows checks that the target never had to leave out a late
// snapshot row: one owner at a time kept every copy ahead of the changes
// streamed after it, and the target's defence was not needed.
func (g *ownershipGroup) assertNoLateRows() {
	g.t.Helper()
	if log := g.worker.Log(); strings.Contains(log, "snapshot rows taken before") {
		g.t.Fatalf("the target skipped late snapshot rows:\n%s", infoLines(log))
	}
}

// copyLines are what a replicator logs when it copies or streams: a
// standby must log none of them while the owner runs.
var copyLines = []string{"snapshot plan", "resuming the snapshot", "created replication slot", "streaming from slot", "streaming without copying", "Took over"}

func assertStoodBy(t *testing.T, name, log string) {
	t.Helper()
	if n := strings.Count(log, "Standing by: replication group"); n != 1 {
		t.Fatalf("%s said %d times that it stands by, want once:\n%s", name, n, lastLines(log, 30))
	}
	for _, line := range copyLines {
		if strings.Contains(log, line) {
			t.Fatalf("%s logged %q while the owner ran:\n%s", name, line, lastLines(log, 30))
		}
	}
}

// infoLines are a process's log lines from its input and output (for a
// replicator: ownership, snapshot and streaming) at INFO and above.
func infoLines(log string) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "path=root.") && !strings.Contains(l, "level=debug") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// A rolling deploy: replicator A of a group starts copying a 1,000,000-row
// table while the source changes (200 transactions a second, each an upsert
// and a delete); B, same config, starts 1, 2 or 5 seconds later; A is stopped
// 15 seconds after B started, the writer 10 seconds after that. B stands by
// and copies nothing while A runs, then takes over and resumes; the target
// ends equal to the source — no deleted row comes back, no newer change is
// overwritten by a late snapshot row.
func TestSecondReplicatorStandsByDuringTheCopy(t *testing.T) {
	for _, delay := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second} {
		t.Run(fmt.Sprintf("second after %v", delay), func(t *testing.T) {
			g := startOwnershipGroup(t, fmt.Sprintf("roll%d", delay/time.Second), "")
			writer := startChurn(t, g.source, 200, ownershipRows)
			started := time.Now()
			g.startReplicatorNoWait()
			// (A process on a busy machine may take a while to get going.)
			testenv.Eventually(t, 60*time.Second, "A owning the group", func() bool { return strings.Contains(g.replicator.Log(), "owns replication group") })
			time.Sleep(delay - time.Since(started))
			b := g.startReplicatorProcess("replicator-b")
			// The point of the test: B comes while A is copying.
			if s := snapshotState(t, g.nats.URL(), g.group); s != nil && s.Complete {
				t.Fatalf("A's copy was finished when B started: make the table larger")
			}
			time.Sleep(15 * time.Second)
			testenv.Eventually(t, 30*time.Second, "B standing by", func() bool { return strings.Contains(b.Log(), "Standing by") })
			assertStoodBy(t, "replicator B", b.Log())
			if err := g.replicator.Stop(); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "B taking over", func() bool { return strings.Contains(b.Log(), "Took over") })
			time.Sleep(10 * time.Second)
			txs := writer.finish()
			defer func() {
				if t.Failed() {
					t.Logf("A logged:\n%s\nB logged:\n%s", infoLines(g.replicator.Log()), infoLines(b.Log()))
				}
			}()
			g.waitEqual(180 * time.Second)
			g.assertNoLateRows()
			t.Logf("target equals source after %d writer transactions; A logged:\n%s\nB logged:\n%s", txs, infoLines(g.replicator.Log()), infoLines(b.Log()))
		})
	}
}

// kill -9 of the owner halfway through its copy, a standby running: the
// standby takes over once the lease goes unrenewed, resumes the copy by
// chunk (the chunks the owner finished are not copied again) and the target
// ends equal to the source.
func TestStandbyTakesOverAKilledOwnersCopy(t *testing.T) {
	g := startOwnershipGroup(t, "killed", "    copy_chunk_pages: 200\n")
	writer := startChurn(t, g.source, 200, ownershipRows)
	g.startReplicatorNoWait()
	testenv.Eventually(t, 60*time.Second, "A owning the group", func() bool { return strings.Contains(g.replicator.Log(), "owns replication group") })
	b := g.startReplicatorProcess("replicator-b")
	testenv.Eventually(t, 60*time.Second, "B standing by", func() bool { return strings.Contains(b.Log(), "Standing by") })
	testenv.Eventually(t, 120*time.Second, "some chunks copied", func() bool {
		s := snapshotState(t, g.nats.URL(), g.group)
		return s != nil && len(s.Tables) == 1 && len(s.Tables[0].Done) >= 5
	})
	g.replicator.Kill()
	before := snapshotState(t, g.nats.URL(), g.group)
	if before.Complete {
		t.Fatal("the copy finished before the kill: make it slower")
	}
	assertStoodBy(t, "replicator B", b.Log())
	t.Logf("owner killed with %d of %d chunks done", len(before.Tables[0].Done), len(before.Tables[0].Chunks))
	testenv.Eventually(t, 60*time.Second, "B taking over", func() bool { return strings.Contains(b.Log(), "Took over") })
	testenv.Eventually(t, 180*time.Second, "the snapshot complete", func() bool {
		s := snapshotState(t, g.nats.URL(), g.group)
		return s != nil && s.Complete
	})
	if !strings.Contains(b.Log(), fmt.Sprintf("resuming the snapshot: %d chunks already copied", len(before.Tables[0].Done))) {
		t.Fatalf("B did not resume by chunk from the %d chunks done:\n%s", len(before.Tables[0].Done), lastLines(b.Log(), 30))
	}
	txs := writer.finish()
	g.waitEqual(180 * time.Second)
	g.assertNoLateRows()
	t.Logf("target equals source after %d writer transactions", txs)
}
