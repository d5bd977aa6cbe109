package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// lossRun is a group replicating table items into a target PostgreSQL
// through JetStream, with its workers run as processes, for the tests of
// what a worker does when the stream lost changes it never delivered.
type lossRun struct {
	t              *testing.T
	group          string
	source, target string
	partitions     int
	p              *pipeline
	js             jetstream.JetStream
	workers        []*testenv.Process
	http           []string // each worker's HTTP server (metrics, /ready)
	// workerExtra is YAML added under pg_flo_worker (indented by 4).
	workerExtra string
	// stock makes the workers write to files (a stock output) instead of
	// the target PostgreSQL.
	stock bool
}

func newLossRun(t *testing.T, group string, partitions int) *lossRun {
	t.Helper()
	r := &lossRun{t: t, group: group, partitions: partitions, source: pg.NewDatabase(t), target: pg.NewDatabase(t)}
	for _, dsn := range []string{r.source, r.target} {
		testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	}
	r.p = newPipeline(t, r.source, group)
	r.p.replicatorExtra = fmt.Sprintf("    nats:\n      url: %s\n    tables: [items]", r.p.nats.URL())
	if partitions > 1 {
		r.p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    partitions: %d", r.p.nats.URL(), group, partitions)
	}
	r.js = r.p.nats.JetStream(t)
	r.workers = make([]*testenv.Process, max(partitions, 1))
	r.http = make([]string, len(r.workers))
	return r
}

// startWorker starts the worker of partition k (of the group, when it has
// one partition), applying with pg_flo_postgres, with its metrics served.
func (r *lossRun) startWorker(k int) {
	r.t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		r.t.Fatal(err)
	}
	partition := ""
	if r.partitions > 1 {
		partition = fmt.Sprintf("    partition: %d\n", k)
	}
	cfg := r.p.writeConfig(fmt.Sprintf("worker-%d.yaml", k), fmt.Sprintf(`http:
  address: 127.0.0.1:%d
metrics:
  prometheus: {}
logger:
  level: DEBUG
  format: logfmt
input:
  pg_flo_worker:
    url: %s
    group: %s
%s%soutput:
  %s
`, port, r.p.nats.URL(), r.group, partition, r.workerExtra, r.output(k)))
	r.workers[k] = testenv.StartProcess(r.t, fmt.Sprintf("worker-%d", k), r.p.bin, "run", cfg)
	r.http[k] = fmt.Sprintf("http://127.0.0.1:%d", port)
}

// output is worker k's output YAML.
func (r *lossRun) output(k int) string {
	if r.stock {
		return fmt.Sprintf("file:\n    path: %q\n    codec: lines", r.outputFile(k))
	}
	return postgresOutput(r.target, r.group, "")
}

func (r *lossRun) outputFile(k int) string {
	return filepath.Join(r.p.dir, fmt.Sprintf("changes-%d.jsonl", k))
}

// applied returns how many items the workers delivered, and the highest id.
func (r *lossRun) applied() (n, maxID int) {
	r.t.Helper()
	if !r.stock {
		got := testenv.QueryRows(r.t, r.target, "SELECT count(*)::text, coalesce(max(id), 0)::text FROM items")
		n, _ = strconv.Atoi(got[0][0])
		maxID, _ = strconv.Atoi(got[0][1])
		return n, maxID
	}
	ids := map[int]bool{}
	for k := range r.workers {
		for _, ev := range readEvents(r.t, r.outputFile(k)) {
			id, _ := strconv.Atoi(keyOf(ev))
			ids[id] = true
			maxID = max(maxID, id)
		}
	}
	return len(ids), maxID
}

func (r *lossRun) startWorkers() {
	for k := range r.workers {
		r.startWorker(k)
	}
}

// stopWorkers stops every worker once it acknowledged everything in the
// stream, and returns the stream's last sequence.
func (r *lossRun) stopWorkers() uint64 {
	r.t.Helper()
	last := r.streamInfo().State.LastSeq
	for k, w := range r.workers {
		r.waitAcked(k)
		if err := w.Stop(); err != nil {
			r.t.Fatal(err)
		}
	}
	return last
}

// waitAcked waits until worker k acknowledged everything in the stream.
func (r *lossRun) waitAcked(k int) {
	r.t.Helper()
	durable := jsproto.ConsumerName(r.group)
	if r.partitions > 1 {
		durable = jsproto.PartitionConsumerName(r.group, k)
	}
	testenv.Eventually(r.t, 60*time.Second, "worker "+durable+" acknowledged everything", func() bool {
		c, err := r.js.Consumer(context.Background(), jsproto.StreamName(r.group), durable)
		if err != nil {
			return false
		}
		ci := c.CachedInfo()
		return ci.NumAckPending == 0 && ci.NumPending == 0 && ci.Delivered.Stream > 0
	})
}

// insert commits rows from..to on the source, one transaction each.
func (r *lossRun) insert(from, to int) {
	r.t.Helper()
	for id := from; id <= to; id++ {
		testenv.Exec(r.t, r.source, "INSERT INTO items VALUES ($1::int, 'v' || $1::int)", id)
	}
}

func (r *lossRun) streamInfo() *jetstream.StreamInfo {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), jsproto.StreamName(r.group))
	if err != nil {
		r.t.Fatalf("stream %s: %v", jsproto.StreamName(r.group), err)
	}
	return s.CachedInfo()
}

// waitStreamLast waits until the stream's last sequence is at least seq.
func (r *lossRun) waitStreamLast(seq uint64) {
	r.t.Helper()
	testenv.Eventually(r.t, 60*time.Second, fmt.Sprintf("stream sequence %d stored", seq), func() bool {
		s, err := r.js.Stream(context.Background(), jsproto.StreamName(r.group))
		return err == nil && s.CachedInfo().State.LastSeq >= seq
	})
}

// waitTargetRows waits until the target holds n items.
func (r *lossRun) waitTargetRows(n int64) {
	r.t.Helper()
	testenv.Eventually(r.t, 60*time.Second, fmt.Sprintf("%d rows on the target", n), func() bool {
		got, _ := r.applied()
		return int64(got) == n
	})
}

// waitStopped waits until worker k refused, twice, to read past the hole,
// naming it with want, and returns its log.
func (r *lossRun) waitStopped(k int, want ...string) string {
	r.t.Helper()
	w := r.workers[k]
	testenv.Eventually(r.t, 60*time.Second, "worker refusing to read past the hole", func() bool {
		return strings.Count(w.Log(), "pgflo resync --group "+r.group) >= 2
	})
	log := w.Log()
	for _, s := range append(want, "pgflo resync --group "+r.group) {
		if !strings.Contains(log, s) {
			r.t.Fatalf("worker %d log lacks %q:\n%s", k, s, lastLines(log, 30))
		}
	}
	if v, _ := metricValue(scrape(r.t, r.http[k]+"/metrics"), `pg_flo_worker_stream_loss(\{.*\})?`); v != 1 {
		r.t.Errorf("worker %d: pg_flo_worker_stream_loss is %v, want 1", k, v)
	}
	testenv.Eventually(r.t, 30*time.Second, "worker not ready", func() bool { return readyStatus(r.http[k]) == 503 })
	return log
}

// assertTargetUpTo checks that the target holds exactly items 1..n: nothing
// after the hole was applied.
func (r *lossRun) assertTargetUpTo(n int) {
	r.t.Helper()
	if got, maxID := r.applied(); got != n || maxID != n {
		r.t.Fatalf("target holds %d rows up to id %d, want exactly 1..%d: a change after the hole was applied", got, maxID, n)
	}
}

// A stream with max_msgs 20 and discard old, the worker stopped while 50
// changes are published: the 30 oldest are gone before the worker reads
// them. The restarted worker stops naming the stream sequences removed and
// applies nothing after them.
func TestLossLimitsDiscardOld(t *testing.T) {
	r := newLossRun(t, "lossl", 1)
	if _, err := r.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: jsproto.StreamName(r.group), Subjects: []string{jsproto.GroupSubjects(r.group)},
		Storage: jetstream.FileStorage, MaxMsgs: 20, Discard: jetstream.DiscardOld, Duplicates: 10 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	r.p.startReplicator()
	r.startWorkers()
	r.insert(1, 10)
	r.waitTargetRows(10)
	applied := r.stopWorkers()

	r.insert(11, 60)
	r.waitStreamLast(applied + 50)
	first := r.streamInfo().State.FirstSeq
	if first != applied+31 {
		t.Fatalf("stream starts at %d after 50 more messages with max_msgs 20, want %d", first, applied+31)
	}
	r.startWorkers()
	log := r.waitStopped(0, fmt.Sprintf("missed stream sequences %d to %d", applied+1, first-1),
		"removed from the stream before this worker read them", "the stream goes on with message ")
	r.assertTargetUpTo(10)
	t.Logf("worker: %s", firstLineWith(log, "missed stream sequences"))
}

// The stream purged while the worker is stopped: the restarted worker
// stops naming the purged sequences, though JetStream moved its consumer
// past them — with two partitions, and with a stock output (file) too.
func TestLossPurge(t *testing.T) {
	for _, tc := range []struct {
		partitions int
		stock      bool
	}{{1, false}, {2, false}, {1, true}} {
		t.Run(fmt.Sprintf("partitions=%d,stock_output=%v", tc.partitions, tc.stock), func(t *testing.T) {
			partitions := tc.partitions
			r := newLossRun(t, fmt.Sprintf("lossp%d%v", partitions, tc.stock), partitions)
			r.stock = tc.stock
			r.p.startReplicator()
			r.startWorkers()
			r.insert(1, 10)
			r.waitTargetRows(10)
			applied := r.stopWorkers()

			r.insert(11, 30)
			r.waitStreamLast(applied + 20)
			stream, err := r.js.Stream(context.Background(), jsproto.StreamName(r.group))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Purge(context.Background()); err != nil {
				t.Fatal(err)
			}
			purgedTo := r.streamInfo().State.LastSeq
			r.insert(31, 35)
			r.waitStreamLast(purgedTo + 1)
			r.startWorkers()
			want := fmt.Sprintf("missed stream sequences %d to %d", applied+1, purgedTo)
			for k := range r.workers {
				if partitions > 1 {
					// Each partition's hole starts after its own last
					// message.
					want = fmt.Sprintf(" to %d (removed from the stream", purgedTo)
				}
				r.waitStopped(k, want)
			}
			r.assertTargetUpTo(10)
			if !tc.stock {
				r.resyncAndConverge()
			}
		})
	}
}

// resyncAndConverge is the way out of a hole: stop the replicator and the
// stopped workers, `pgflo resync --force --yes` (the slot is valid), start
// them again: the copy replaces what the stream lost and the target equals
// the source, through a change made after the resync too.
func (r *lossRun) resyncAndConverge() {
	r.t.Helper()
	for _, w := range r.workers {
		if err := w.Stop(); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.p.replicator.Stop(); err != nil {
		r.t.Fatal(err)
	}
	out, err := runPgflo(r.t, "resync", "--dsn", r.source, "--group", r.group, "--nats-url", r.p.nats.URL(), "--force", "--yes")
	if err != nil {
		r.t.Fatalf("pgflo resync --force --yes: %v\n%s", err, out)
	}
	assertContains(r.t, out, "done      move the workers' recorded positions past any hole")
	r.p.startReplicator()
	r.startWorkers()
	testenv.Exec(r.t, r.source, "UPDATE items SET v = 'after resync' WHERE id % 3 = 0")
	waitDigestsEqual(r.t, r.source, r.target, []string{"items"}, 90*time.Second)
}

// The stream purged while the worker runs, held up by a lock on the target
// with changes it has not fetched yet: it applies what it had fetched, then
// stops at the purged changes it never had.
func TestLossPurgeWhileRunning(t *testing.T) {
	r := newLossRun(t, "losspr", 1)
	r.workerExtra = "    batch_size: 5\n"
	r.p.startReplicator()
	r.startWorkers()
	r.insert(1, 10)
	r.waitTargetRows(10)
	r.waitAcked(0)
	base := r.streamInfo().State.LastSeq // the stream sequence of item 10

	ctx := context.Background()
	lock, err := pgx.Connect(ctx, r.target)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	if _, err := lock.Exec(ctx, "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	r.insert(11, 60)
	r.waitStreamLast(base + 50)
	c, err := r.js.Consumer(ctx, jsproto.StreamName(r.group), jsproto.ConsumerName(r.group))
	if err != nil {
		t.Fatal(err)
	}
	if ci := c.CachedInfo(); ci.NumPending == 0 {
		t.Fatalf("the worker fetched every change while its target was locked: %+v", ci)
	}
	stream, err := r.js.Stream(ctx, jsproto.StreamName(r.group))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	r.insert(61, 65)
	log := r.waitStopped(0, fmt.Sprintf(" to %d (removed from the stream before this worker read them", base+50))
	applied, _ := r.applied()
	r.assertTargetUpTo(applied)
	if want := fmt.Sprintf("missed stream sequences %d to %d", base+uint64(applied-10)+1, base+50); !strings.Contains(log, want) {
		t.Fatalf("worker log lacks %q (it applied items 1 to %d):\n%s", want, applied, lastLines(log, 20))
	}
	t.Logf("applied items 1 to %d, what it had fetched; stopped at: %s", applied, firstLineWith(log, "missed stream sequences"))
}

// The stream deleted while the worker is stopped, and created again by the
// replicator: the restarted worker stops, saying the stream is not the one
// it read.
func TestLossStreamRecreated(t *testing.T) {
	r := newLossRun(t, "lossr", 1)
	r.p.startReplicator()
	r.startWorkers()
	r.insert(1, 10)
	r.waitTargetRows(10)
	applied := r.stopWorkers()

	r.insert(11, 20)
	r.waitStreamLast(applied + 10)
	if err := r.p.replicator.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.js.DeleteStream(context.Background(), jsproto.StreamName(r.group)); err != nil {
		t.Fatal(err)
	}
	r.p.startReplicator()
	r.insert(21, 25)
	r.waitStreamLast(1)
	r.startWorkers()
	r.waitStopped(0, fmt.Sprintf("missed the messages from stream sequence %d on", applied+1), "the stream was deleted and created again")
	r.assertTargetUpTo(10)
}

// The NATS server comes back with an older copy of its store, as after a
// power loss before it synced: the stream's last sequence went back below
// what the running worker had applied. The worker stops instead of reading
// the new messages that take the lost sequences.
func TestLossStreamWentBack(t *testing.T) {
	r := newLossRun(t, "lossb", 1)
	r.p.startReplicator()
	r.startWorkers()
	r.insert(1, 10)
	r.waitTargetRows(10)
	r.waitAcked(0)
	synced := r.streamInfo().State.LastSeq

	// What the disk held "before the power loss".
	r.p.nats.Shutdown()
	backup := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(backup, os.DirFS(r.p.nats.StoreDir())); err != nil {
		t.Fatal(err)
	}
	r.p.nats.Start(t)
	r.insert(11, 20)
	r.waitTargetRows(20)
	r.waitAcked(0)

	r.p.nats.Shutdown()
	if err := os.RemoveAll(r.p.nats.StoreDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(r.p.nats.StoreDir(), os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	r.p.nats.Start(t)
	r.waitStopped(0, fmt.Sprintf("missed the messages from stream sequence %d on", synced+1), "a NATS server lost messages it had acknowledged")
	// New changes take the lost sequences; none is applied.
	r.insert(21, 25)
	r.waitStreamLast(synced + 5)
	r.waitStopped(0)
	r.assertTargetUpTo(20)
}

// No false alarm: with the replicator and the workers killed (SIGKILL) and
// restarted while changes flow, and a message published again with its
// de-duplication id, every worker goes on and the target equals the source
// — with one partition or two, and in a stream with interest retention,
// which deletes what every partition's worker acknowledged.
func TestLossNoFalseAlarm(t *testing.T) {
	for _, tc := range []struct {
		partitions int
		interest   bool
	}{{1, false}, {2, false}, {2, true}} {
		t.Run(fmt.Sprintf("partitions=%d,interest=%v", tc.partitions, tc.interest), func(t *testing.T) {
			partitions := tc.partitions
			r := newLossRun(t, fmt.Sprintf("lossn%d%v", partitions, tc.interest), partitions)
			if tc.interest {
				// Messages published before the consumers exist would be
				// dropped: the stream and the workers come first.
				ctx := context.Background()
				if _, err := r.js.CreateStream(ctx, jetstream.StreamConfig{
					Name: jsproto.StreamName(r.group), Subjects: []string{jsproto.GroupSubjects(r.group)}, Storage: jetstream.FileStorage,
					Retention: jetstream.InterestPolicy, Duplicates: 10 * time.Minute,
					Metadata: map[string]string{jsproto.StreamMetaPartitions: fmt.Sprint(partitions)},
				}); err != nil {
					t.Fatal(err)
				}
				r.startWorkers()
				for k := range r.workers {
					testenv.Eventually(t, 30*time.Second, "the worker's consumer", func() bool {
						_, err := r.js.Consumer(ctx, jsproto.StreamName(r.group), jsproto.PartitionConsumerName(r.group, k))
						return err == nil
					})
				}
				r.p.startReplicator()
			} else {
				r.p.startReplicator()
				r.startWorkers()
			}
			update := func(n int) {
				testenv.Exec(t, r.source, "UPDATE items SET v = v || '.' WHERE id % $1 = 0", n)
			}
			r.insert(1, 40)
			update(3)
			r.p.replicator.Kill()
			r.insert(41, 60)
			r.p.startReplicator()
			r.insert(61, 80)
			for k := range r.workers {
				r.workers[k].Kill()
				update(k + 2)
				r.startWorker(k)
			}
			if !tc.interest { // there the workers' acknowledgements deleted it
				r.publishLastAgain()
			}
			r.insert(81, 100)
			update(5)
			waitDigestsEqual(t, r.source, r.target, []string{"items"}, 120*time.Second)
			for k, w := range r.workers {
				if log := w.Log(); strings.Contains(log, "missed") || strings.Contains(log, "resync") {
					t.Fatalf("worker %d reported a loss:\n%s", k, lastLines(log, 30))
				}
				if v, _ := metricValue(scrape(t, r.http[k]+"/metrics"), `pg_flo_worker_stream_loss(\{.*\})?`); v != 0 {
					t.Errorf("worker %d: pg_flo_worker_stream_loss is %v, want 0", k, v)
				}
			}
		})
	}
}

// publishLastAgain publishes the stream's last message again, with its
// de-duplication id, as a replicator resending it would: JetStream stores it
// once.
func (r *lossRun) publishLastAgain() {
	r.t.Helper()
	ctx := context.Background()
	stream, err := r.js.Stream(ctx, jsproto.StreamName(r.group))
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := stream.GetMsg(ctx, stream.CachedInfo().State.LastSeq)
	if err != nil {
		r.t.Fatal(err)
	}
	ack, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	if err != nil || !ack.Duplicate {
		r.t.Fatalf("publish again: ack %+v, %v; want a duplicate", ack, err)
	}
}

// firstLineWith is the first line of log containing s.
func firstLineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
