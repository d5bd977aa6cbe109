package consumer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// testConfig is the configuration pg_flo_worker gives the consumer of group
// g1 at url with batch_size n and otherwise its defaults.
func testConfig(url string, n int) Config {
	return Config{
		Conn:  jsproto.ConnConfig{URL: url, Name: "consumer test"},
		Group: "g1", Stream: jsproto.StreamName("g1"), Durable: jsproto.ConsumerName("g1"),
		FilterSubjects: []string{jsproto.GroupSubjects("g1")},
		BatchSize:      n, SnapshotBatch: n, MaxAckPending: 2 * n,
		FetchWait: 50 * time.Millisecond, AckWait: 10 * time.Minute,
	}
}

// startStream starts NATS with group g1's stream as pg_flo_jetstream
// creates it.
func startStream(t *testing.T) *testenv.NATS {
	t.Helper()
	ns := testenv.StartNATS(t)
	if _, err := ns.JetStream(t).CreateStream(context.Background(), jetstream.StreamConfig{
		Name: jsproto.StreamName("g1"), Subjects: []string{jsproto.GroupSubjects("g1")}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// publish stores items in group g1's stream packed as pg_flo_jetstream packs
// them within lim (without its de-duplication ids: the consumer does not
// read them).
func publish(t *testing.T, js jetstream.JetStream, lim jsproto.Limits, items ...jsproto.Item) {
	t.Helper()
	for _, p := range jsproto.Build(items, lim) {
		if _, err := js.PublishMsg(context.Background(), p.Msg()); err != nil {
			t.Fatal(err)
		}
	}
}

// testEvents returns n single-statement transactions on table users, each
// an event whose body is its id, with ids from..from+n-1.
func testEvents(from, n int) []jsproto.Item {
	var items []jsproto.Item
	for id := from; id < from+n; id++ {
		items = append(items, jsproto.Item{Tx: fmt.Sprintf("0/%X", 0x1000+id), Subject: "pgflo.g1.public.users", Body: []byte(strconv.Itoa(id))})
	}
	return items
}

// open creates a consumer of conf and connects it; it is closed when the
// test ends.
func open(t *testing.T, conf Config) *Consumer {
	t.Helper()
	c := New(conf)
	if err := c.Connect(context.Background()); err != nil { // JetStream's API calls time out
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// ids returns the ids of a batch's events (see testEvents).
func ids(t *testing.T, b *Batch) []int {
	t.Helper()
	var ids []int
	for _, m := range b.Msgs {
		events, err := jsproto.Unpack(m.Data(), m.Headers())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			id, err := strconv.Atoi(string(e))
			if err != nil {
				t.Fatalf("event %q: %v", e, err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// read reads one batch, failing the test when none comes in time.
func read(t *testing.T, c *Consumer) *Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// readNothing checks that no batch comes within d.
func readNothing(t *testing.T, c *Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if b, err := c.Next(ctx); err == nil {
		t.Fatalf("read a batch %v, want none", ids(t, b))
	}
}

// expect reads one batch and fails the test unless its events have the ids
// want, in order; what names the batch in the failure message.
func expect(t *testing.T, c *Consumer, what string, want ...int) *Batch {
	t.Helper()
	b := read(t, c)
	if got := ids(t, b); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: read %v, want %v", what, got, want)
	}
	return b
}

// ack acknowledges a batch as delivered.
func ack(t *testing.T, b *Batch) {
	t.Helper()
	if err := b.Done(nil); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

// firstBatch stores the ids 1..n in group g1, one event per message, opens
// a consumer reading batches of two (conf changed by with, when set) and
// reads the first batch, [1 2], without acknowledging it.
func firstBatch(t *testing.T, n int, with func(*Config)) (ns *testenv.NATS, c *Consumer, b *Batch) {
	t.Helper()
	ns = startStream(t)
	publish(t, ns.JetStream(t), jsproto.Limits{}, testEvents(1, n)...)
	conf := testConfig(ns.URL(), 2)
	if with != nil {
		with(&conf)
	}
	c = open(t, conf)
	return ns, c, expect(t, c, "first batch", 1, 2)
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestNackRedeliversSameBatchFirst(t *testing.T) {
	_, c, b := firstBatch(t, 6, nil)
	// While a batch is pending nothing newer is read.
	readNothing(t, c, 300*time.Millisecond)

	// The output fails: the same events come again, in order, before 3.
	for range 3 {
		if err := b.Done(errors.New("target down")); err != nil {
			t.Fatalf("nack: %v", err)
		}
		b = expect(t, c, "after a nack, the same batch again", 1, 2)
	}
	ack(t, b)
	ack(t, expect(t, c, "after the ack", 3, 4))
}

func TestDurableAcrossReopen(t *testing.T) {
	// Read without acking, then close: the batch comes again.
	ns, c, _ := firstBatch(t, 6, nil)
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}

	c = open(t, testConfig(ns.URL(), 2))
	ack(t, expect(t, c, "after reopening, the unacked batch", 1, 2))
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Acked messages are not delivered again.
	c = open(t, testConfig(ns.URL(), 2))
	ack(t, expect(t, c, "after acking and reopening", 3, 4))
}

// TestCloseEndsReadsAndBatches: Close ends a read waiting for messages, and
// a batch it handed back cannot be acknowledged any more.
func TestCloseEndsReadsAndBatches(t *testing.T) {
	_, c, b := firstBatch(t, 2, nil)
	read := make(chan error, 1)
	go func() {
		_, err := c.Next(context.Background()) // waits for b to end
		read <- err
	}()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, ErrClosed) {
		t.Fatalf("read during close = %v, want ErrClosed", err)
	}
	if err := b.Done(nil); !errors.Is(err, ErrBatchEnded) {
		t.Fatalf("ack after close = %v, want ErrBatchEnded", err)
	}
	if err := c.Connect(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("connect after close = %v, want ErrClosed", err)
	}
}

// TestBatchSizeCountsEvents: BatchSize bounds events, as pg_flo's
// --batch-size did; packed messages are not split.
func TestBatchSizeCountsEvents(t *testing.T) {
	ns := startStream(t)
	js := ns.JetStream(t)
	var tx []jsproto.Item
	for i := range 15 {
		tx = append(tx, jsproto.Item{Tx: "0/100", Pos: uint64(i), Subject: "pgflo.g1.public.users", Body: []byte(strconv.Itoa(i + 1))})
	}
	publish(t, js, jsproto.Limits{MaxEvents: 5}, tx...) // three packs of five
	publish(t, js, jsproto.Limits{MaxEvents: 5}, testEvents(16, 3)...)

	for _, tt := range []struct {
		durable   string
		batchSize int
		want      [][]int
	}{
		{"a", 7, [][]int{seq(1, 5), seq(6, 10), seq(11, 17), seq(18, 18)}},
		{"b", 10, [][]int{seq(1, 10), seq(11, 18)}},
		{"c", 3, [][]int{seq(1, 5), seq(6, 10), seq(11, 15), seq(16, 18)}},
	} {
		conf := testConfig(ns.URL(), tt.batchSize)
		conf.Durable = tt.durable
		c := open(t, conf)
		var got [][]int
		for range tt.want {
			b := read(t, c)
			got = append(got, ids(t, b))
			ack(t, b)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("batch_size %d: batches %v, want %v", tt.batchSize, got, tt.want)
		}
	}
}

// TestSnapshotBatchRows: a batch holds up to SnapshotBatch rows of copy
// packs, change events counting against BatchSize in proportion.
func TestSnapshotBatchRows(t *testing.T) {
	ns := startStream(t)
	publish(t, ns.JetStream(t), jsproto.Limits{},
		testEvents(1, 1)[0],
		jsproto.Item{Tx: "snap", Pos: 0, Subject: "pgflo.g1.public.users", Body: []byte("pack A"), Rows: 3},
		jsproto.Item{Tx: "snap", Pos: 1024, Subject: "pgflo.g1.public.users", Body: []byte("pack B"), Rows: 2},
	)
	// The event takes half the batch (1 of 2 events), packs A and B 5 of
	// 16 rows: all three fit.
	conf := testConfig(ns.URL(), 2)
	conf.SnapshotBatch = 16
	b := read(t, open(t, conf))
	rows := 0
	for _, m := range b.Msgs {
		rows += jsproto.EventCount(m.Headers())
	}
	if len(b.Msgs) != 3 || rows != 6 {
		t.Fatalf("%d messages holding %d rows, want the event and both packs (3 holding 6)", len(b.Msgs), rows)
	}
	ack(t, b)
}

// TestCrashKeepsOrder: a worker dies with a batch unacknowledged and without
// handing it back. JetStream alone would deliver newer messages to the next
// worker and the old batch only after ack_wait (10m); the consumer reset
// brings it first, at once.
func TestCrashKeepsOrder(t *testing.T) {
	ns, crashed, _ := firstBatch(t, 6, nil)
	crashed.mu.Lock()
	crashed.nc.Close() // the process dies: no Nak, no drain
	crashed.mu.Unlock()

	c := open(t, testConfig(ns.URL(), 2))
	start := time.Now()
	b := expect(t, c, "after the crash, first", 1, 2)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("redelivery took %v", d)
	}
	ack(t, b)
	ack(t, expect(t, c, "then", 3, 4))
}

// TestKeepsPendingBatchInProgress: a batch pending longer than ack_wait (the
// output retrying) is not redelivered by JetStream, nor is the next batch,
// fetched meanwhile.
func TestKeepsPendingBatchInProgress(t *testing.T) {
	_, c, b := firstBatch(t, 4, func(c *Config) { c.AckWait = time.Second })
	time.Sleep(2500 * time.Millisecond)
	c.mu.Lock()
	cons := c.cons
	c.mu.Unlock()
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 4 {
		t.Fatalf("after 2.5 ack waits: %d redelivered, %d pending; want 0 and 4 (the batch and the next)", info.NumRedelivered, info.NumAckPending)
	}
	ack(t, b)
	ack(t, expect(t, c, "then", 3, 4))
}

func TestUpdatesPgFloConsumer(t *testing.T) {
	ns := testenv.StartNATS(t)
	ctx := context.Background()
	s, err := ns.JetStream(t).CreateStream(ctx, jetstream.StreamConfig{Name: "pgflo_g1_stream", Subjects: []string{"pgflo.g1", "pgflo.g1.>"}})
	if err != nil {
		t.Fatal(err)
	}
	// The consumer as pg_flo creates it.
	if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "pgflo_g1_consumer", FilterSubject: "pgflo.g1", AckPolicy: jetstream.AckExplicitPolicy,
		MaxDeliver: 1, AckWait: 25 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	open(t, testConfig(ns.URL(), 1000))
	c, err := s.Consumer(ctx, "pgflo_g1_consumer")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	if cfg.MaxDeliver != -1 || cfg.FilterSubject != "pgflo.g1.>" || cfg.AckWait != 10*time.Minute || cfg.MaxAckPending != 2*1000 {
		t.Fatalf("consumer after connect: %+v", cfg)
	}
}

func TestDeliverNew(t *testing.T) {
	ns := startStream(t)
	js := ns.JetStream(t)
	publish(t, js, jsproto.Limits{}, testEvents(1, 3)...)
	conf := testConfig(ns.URL(), 1000)
	conf.DeliverNew = true
	c := open(t, conf)
	publish(t, js, jsproto.Limits{}, testEvents(4, 2)...)
	ack(t, expect(t, c, "only what came after the consumer", 4, 5))
}

func TestMissingStream(t *testing.T) {
	c := New(testConfig(testenv.StartNATS(t).URL(), 1000))
	defer c.Close(context.Background())
	err := c.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stream pgflo_g1_stream not found") {
		t.Fatalf("connect = %v, want a stream not found error", err)
	}
}

// A barrier copy of a partitioned group is a batch of its own: the batch
// before it ends before it, and what follows it waits for the next batch.
func TestBarrierIsABatchOfItsOwn(t *testing.T) {
	ns := startStream(t)
	js := ns.JetStream(t)
	items := testEvents(1, 3)
	barrier := testEvents(4, 1)[0]
	barrier.Barrier = "0/1004:0"
	items = append(items, barrier)
	items = append(items, testEvents(5, 3)...)
	publish(t, js, jsproto.Limits{}, items...)
	c := open(t, testConfig(ns.URL(), 100))
	ctx := context.Background()
	for _, want := range [][]int{{1, 2, 3}, {4}, {5, 6, 7}} {
		b, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(t, b); !reflect.DeepEqual(got, want) {
			t.Fatalf("batch %v, want %v", got, want)
		}
		isBarrier := b.Msgs[0].Headers().Get(jsproto.HeaderBarrier) != ""
		if isBarrier != (want[0] == 4) {
			t.Fatalf("batch %v: barrier %v", want, isBarrier)
		}
		if err := b.Done(nil); err != nil {
			t.Fatal(err)
		}
	}
}

// The stream check sees the stream before the consumer is created and can
// refuse it.
func TestCheckStream(t *testing.T) {
	ns := startStream(t)
	conf := testConfig(ns.URL(), 10)
	conf.CheckStream = func(s jetstream.StreamConfig) error {
		return fmt.Errorf("refused %s", s.Name)
	}
	c := New(conf)
	defer c.Close(context.Background())
	if err := c.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "refused "+jsproto.StreamName("g1")) {
		t.Fatalf("connect: %v", err)
	}
}
