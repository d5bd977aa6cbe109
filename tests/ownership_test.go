package tests

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
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
}

func startOwnershipGroup(t *testing.T, group, lease string) *ownershipGroup {
	t.Helper()
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, accountsSQL)
	testenv.Exec(t, source, fmt.Sprintf("INSERT INTO accounts (id, balance, note) SELECT g, g, md5(g::text) || md5((g + 1)::text) || md5((g * 7)::text) FROM generate_series(1, %d) g", ownershipRows))
	testenv.Exec(t, target, accountsSQL)
	p := newPipeline(t, source, group)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [accounts]\n%s", p.nats.URL(), lease)
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

// pacedWriter writes to the source the whole time, as applications do:
// about rate transactions a second, the n-th (from 1) made by write.
type pacedWriter struct {
	stop atomic.Bool
	txs  atomic.Int64
	wg   sync.WaitGroup
}

func startPacedWriter(t *testing.T, dsn string, rate int, write func(ctx context.Context, conn *pgx.Conn, n int) error) *pacedWriter {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	w := &pacedWriter{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer conn.Close(context.Background())
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		ctx := context.Background()
		for n := 1; !w.stop.Load(); n++ {
			<-tick.C
			if err := write(ctx, conn, n); err != nil {
				t.Errorf("writer: transaction %d: %v", n, err)
				return
			}
			w.txs.Add(1)
		}
	}()
	return w
}

// finish stops the writer and returns how many transactions it committed.
func (w *pacedWriter) finish() int64 {
	w.stop.Store(true)
	w.wg.Wait()
	return w.txs.Load()
}

// startChurn writes accounts: each transaction upserts one random key and
// deletes another. Keys are drawn from 1..keys (upserts a twentieth beyond,
// so new rows keep coming): over a full table, as in the ownership tests,
// most upserts update; over a table growing from empty, the workload turns
// from inserts to updates and deletes.
func startChurn(t *testing.T, dsn string, rate int, keys int64) *pacedWriter {
	t.Helper()
	rng := rand.New(rand.NewSource(int64(rate)))
	return startPacedWriter(t, dsn, rate, func(ctx context.Context, conn *pgx.Conn, _ int) error {
		upsert, gone := 1+rng.Int63n(keys*21/20), 1+rng.Int63n(keys)
		batch := &pgx.Batch{}
		batch.Queue("BEGIN")
		batch.Queue("INSERT INTO accounts (id, balance, note) VALUES ($1, 0, 'new') ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1, note = 'changed', at = now()", upsert)
		batch.Queue("DELETE FROM accounts WHERE id = $1", gone)
		batch.Queue("COMMIT")
		return conn.SendBatch(ctx, batch).Close()
	})
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
// and a delete); B, same config, starts 1 or 2 seconds later (the copy
// takes a few seconds: the worker paces it through a stream of 20 MB); A is stopped
// 15 seconds after B started, the writer 10 seconds after that. B stands by
// and copies nothing while A runs, then takes over and resumes; the target
// ends equal to the source — no deleted row comes back, no newer change is
// overwritten by a late snapshot row.
func TestSecondReplicatorStandsByDuringTheCopy(t *testing.T) {
	for _, delay := range []time.Duration{time.Second, 2 * time.Second} {
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
	// Standing by, B has not even a session on the source: it cannot
	// compete for the transaction A's snapshot was exported from.
	if n := sessionsOf(t, g.source, b.Pid()); n != 0 {
		t.Fatalf("the standby holds %d sessions on the source while the owner copies", n)
	}
	if sessionsOf(t, g.source, g.replicator.Pid()) == 0 {
		t.Fatal("no session of the copying owner found: sessionsOf cannot see sessions")
	}
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

// txSpan brackets a writer transaction's commit record in the WAL: lo is
// the insert position read in the transaction just before its COMMIT, hi the
// one read just after, so the commit record starts at or after lo and ends
// at or before hi.
type txSpan struct{ lo, hi pglogrepl.LSN }

// lsnWriter writes items: each transaction a new row (ids 1, 2, …) and an
// update of an earlier one; it notes every commit's txSpan.
type lsnWriter struct {
	*pacedWriter
	mu  sync.Mutex
	txs []txSpan
}

func startLSNWriter(t *testing.T, dsn string, rate int) *lsnWriter {
	t.Helper()
	w := &lsnWriter{}
	rng := rand.New(rand.NewSource(int64(rate)))
	w.pacedWriter = startPacedWriter(t, dsn, rate, func(ctx context.Context, conn *pgx.Conn, id int) error {
		span, err := w.commit(ctx, conn, id, 1+rng.Intn(id))
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.txs = append(w.txs, span)
		w.mu.Unlock()
		return nil
	})
	return w
}

func (w *lsnWriter) commit(ctx context.Context, conn *pgx.Conn, id, earlier int) (txSpan, error) {
	var lo, hi string
	tx, err := conn.Begin(ctx)
	if err != nil {
		return txSpan{}, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO items VALUES ($1, 'new')", id); err != nil {
		return txSpan{}, err
	}
	if _, err := tx.Exec(ctx, "UPDATE items SET v = v || '+' WHERE id = $1", earlier); err != nil {
		return txSpan{}, err
	}
	if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lo); err != nil {
		return txSpan{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return txSpan{}, err
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&hi); err != nil {
		return txSpan{}, err
	}
	var span txSpan
	if span.lo, err = pglogrepl.ParseLSN(lo); err != nil {
		return txSpan{}, err
	}
	span.hi, err = pglogrepl.ParseLSN(hi)
	return span, err
}

// spans returns the spans of the transactions committed so far, in commit
// order.
func (w *lsnWriter) spans() []txSpan {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.txs)
}

// ackWatch checks, the whole time the group runs, that its slot is never
// confirmed past a change the group's stream does not hold. Each round reads
// the slot's confirmed_flush_lsn first and the stream second. A writer
// transaction whose span ends at or before the confirmed position has its
// commit record before it: PostgreSQL was told it is delivered and would not
// send it again, so a message of it must be in the stream read after — a
// pgflo message's id names its transaction's commit LSN, which lies in the
// span (no other transaction writes to that database). The stream keeps every
// message (limits retention), so reading it second sees all that was stored
// before the slot was read; a confirmation that ran ahead of the stored
// messages, even for a moment, fails the round that saw it.
type ackWatch struct {
	dsn, slot string
	stream    jetstream.Stream
	writer    *lsnWriter

	next      uint64          // the next stream sequence to read
	stored    []pglogrepl.LSN // commit LSNs of the transactions in the stream, sorted
	checked   int             // writer transactions found confirmed and stored
	confirmed pglogrepl.LSN
	rounds    int
	skipped   int // rounds that could not read the stream

	stop, done chan struct{}
	err        error
}

func startAckWatch(t *testing.T, p *pipeline, w *lsnWriter) *ackWatch {
	t.Helper()
	stream, err := p.nats.JetStream(t).Stream(context.Background(), jsproto.StreamName(p.group))
	if err != nil {
		t.Fatalf("the group's stream: %v", err)
	}
	a := &ackWatch{dsn: p.dsn, slot: p.slot(), stream: stream, writer: w, next: 1, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			if a.err = a.round(); a.err != nil {
				return
			}
			select {
			case <-a.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return a
}

func (a *ackWatch) round() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, a.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var text string
	if err := conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", a.slot).Scan(&text); err != nil {
		return fmt.Errorf("read slot %s: %w", a.slot, err)
	}
	confirmed, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return err
	}
	// While NATS is down the stream cannot be read: the round checks
	// nothing, the next one reads the slot again.
	info, err := a.stream.Info(ctx)
	if err != nil {
		a.skipped++
		return nil
	}
	for ; a.next <= info.State.LastSeq; a.next++ {
		m, err := a.stream.GetMsg(ctx, a.next)
		if err != nil {
			a.skipped++
			return nil
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		tx, _, _, ok := jsproto.ParseMsgID(id)
		if !ok {
			return fmt.Errorf("stream message %d has no pgflo message id: %q", a.next, id)
		}
		lsn, err := pglogrepl.ParseLSN(tx)
		if err != nil {
			return fmt.Errorf("stream message %d: id %q: %w", a.next, id, err)
		}
		if i, found := slices.BinarySearch(a.stored, lsn); !found {
			a.stored = slices.Insert(a.stored, i, lsn)
		}
	}
	spans := a.writer.spans()
	for ; a.checked < len(spans) && spans[a.checked].hi <= confirmed; a.checked++ {
		s := spans[a.checked]
		if i, _ := slices.BinarySearch(a.stored, s.lo); i == len(a.stored) || a.stored[i] > s.hi {
			return fmt.Errorf("slot %s confirmed up to %s, past writer transaction %d (commit record within %s..%s), which the stream did not hold",
				a.slot, confirmed, a.checked+1, s.lo, s.hi)
		}
	}
	a.confirmed = confirmed
	a.rounds++
	return nil
}

// finish stops the rounds, fails the test if one found the slot ahead of the
// stream, then (the writer finished) waits until the slot is confirmed past
// every writer transaction and checks each was stored.
func (a *ackWatch) finish(t *testing.T) {
	t.Helper()
	close(a.stop)
	<-a.done
	if a.err != nil {
		t.Fatalf("after %d rounds: %v", a.rounds, a.err)
	}
	testenv.Eventually(t, 60*time.Second, "the slot confirmed past every writer transaction", func() bool {
		if err := a.round(); err != nil {
			t.Fatal(err)
		}
		return a.checked == len(a.writer.spans())
	})
	t.Logf("%d rounds (%d more could not read the stream): the slot (confirmed up to %s at the end) was never ahead of the stream's %d transactions", a.rounds, a.skipped, a.confirmed, len(a.stored))
}

// kill -9 of the owner while it streams, a standby of the same config
// running: the standby says once, at INFO, that it stands by, is not ready
// and reports pg_flo_replicator_owner 0; it takes over (with nats.url once
// the owner's lease goes unrenewed, without it once the slot is free), turns
// ready and owner; the target ends equal to the source, and the slot is
// never confirmed past a change the stream does not hold. Once more with
// NATS down for the last two seconds before the kill (started again right
// after it): the owner, unable to store what it reads, must not confirm it,
// or the changes it read then are lost with it.
func TestStandbyTakesOverAKilledOwnersStream(t *testing.T) {
	for _, lease := range []bool{true, false} {
		for _, natsDown := range []bool{false, true} {
			name := map[bool]string{true: "lease", false: "slot only"}[lease]
			if natsDown {
				name += ", NATS down at the kill"
			}
			t.Run(name, func(t *testing.T) { standbyTakesOverStream(t, lease, natsDown) })
		}
	}
}

func standbyTakesOverStream(t *testing.T, lease, natsDown bool) {
	p := itemsPipeline(t, "killstream", lease)
	if lease {
		p.replicatorExtra += "\n    owner_lease: 3s"
	}
	target := pg.NewDatabase(t)
	testenv.Exec(t, target, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	var bases [2]string
	for i := range bases {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		bases[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	p.replicatorHTTP = bases[0]
	p.startReplicator()
	p.startWorker(postgresOutput(target, p.group, ""))
	writer := startLSNWriter(t, p.dsn, 100)
	testenv.Eventually(t, 30*time.Second, "the owner's output creating the stream", func() bool {
		_, err := p.nats.JetStream(t).Stream(context.Background(), jsproto.StreamName(p.group))
		return err == nil
	})
	acks := startAckWatch(t, p, writer)
	p.replicatorHTTP = bases[1]
	b := testenv.StartProcess(t, "replicator-b", p.bin, "run", p.replicatorConfig())
	defer func() {
		if t.Failed() {
			t.Logf("A logged:\n%s\nB logged:\n%s", infoLines(p.replicator.Log()), infoLines(b.Log()))
		}
	}()
	standby, owner := "http://"+bases[1], "http://"+bases[0]
	testenv.Eventually(t, 60*time.Second, "B standing by", func() bool {
		return strings.Contains(b.Log(), "Standing by") && ownerGauge(t, standby) == 0
	})
	if code := readyStatus(standby); code != http.StatusServiceUnavailable {
		t.Fatalf("the standby's /ready answered %d, want 503", code)
	}
	if code, v := readyStatus(owner), ownerGauge(t, owner); code != http.StatusOK || v != 1 {
		t.Fatalf("the owner's /ready answered %d and pg_flo_replicator_owner is %v, want 200 and 1", code, v)
	}
	// Some seconds of streaming under the owner with the standby waiting.
	from := len(writer.spans())
	testenv.Eventually(t, 60*time.Second, "the owner streaming 300 more transactions", func() bool { return len(writer.spans()) >= from+300 })
	if natsDown {
		p.nats.Shutdown()
		from = len(writer.spans())
		testenv.Eventually(t, 60*time.Second, "200 transactions committed with NATS down", func() bool { return len(writer.spans()) >= from+200 })
	}
	p.replicator.Kill()
	killedAt := len(writer.spans())
	if natsDown {
		p.nats.Start(t)
	}
	testenv.Eventually(t, 60*time.Second, "B taking over", func() bool {
		return readyStatus(standby) == http.StatusOK && ownerGauge(t, standby) == 1
	})
	from = len(writer.spans())
	testenv.Eventually(t, 60*time.Second, "B streaming 300 more transactions", func() bool { return len(writer.spans()) >= from+300 })
	txs := writer.finish()
	acks.finish(t)
	waitDigestsEqual(t, p.dsn, target, []string{"items"}, 120*time.Second)
	assertStandbyLog(t, b.Log(), lease)
	t.Logf("target equals source after %d writer transactions, %d of them after the kill", txs, int(txs)-killedAt)
}

// assertStandbyLog checks what a standby that took over logged: once, at
// INFO, that it stands by (for which holder: the lease's owner, or the slot
// in use), no error while it stood by (not one a second while it waited),
// then the take-over. (Once it streams, its output may report a NATS outage
// it meets.)
func assertStandbyLog(t *testing.T, log string, lease bool) {
	t.Helper()
	holder, took := "is owned by replicator", "Took over replication group"
	if !lease {
		holder, took = "is active for PID", "Took over replication slot"
	}
	waiting, _, found := strings.Cut(log, took)
	if !found {
		t.Fatalf("the standby did not log %q:\n%s", took, infoLines(log))
	}
	var standing []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Standing by") {
			standing = append(standing, l)
		}
	}
	if len(standing) != 1 || !strings.Contains(standing[0], "level=info") || !strings.Contains(standing[0], holder) {
		t.Fatalf("the standby said %d times that it stands by, want once at INFO naming the holder (%q):\n%s", len(standing), holder, infoLines(log))
	}
	if strings.Contains(waiting, "level=error") {
		t.Fatalf("the standby logged errors while it stood by:\n%s", infoLines(waiting))
	}
	if strings.Contains(log, "Stopped producing") {
		t.Fatalf("the standby lost the group it took over, with no other replicator left:\n%s", infoLines(log))
	}
}

// sessionsOf counts the sessions a local process holds on the PostgreSQL
// cluster of dsn: the backends whose client port is the local port of one
// of the process's TCP sockets.
func sessionsOf(t *testing.T, dsn string, pid int) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || !inodes[f[9]] {
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		ports[strconv.FormatUint(port, 10)] = true
	}
	n := 0
	for _, row := range testenv.QueryRows(t, dsn, "SELECT client_port::text FROM pg_stat_activity WHERE client_port > 0") {
		if ports[row[0]] {
			n++
		}
	}
	return n
}
