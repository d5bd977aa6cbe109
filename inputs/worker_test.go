package inputs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the stream builder's defaults
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/packmsg"
	"github.com/pgflo/pgflo/internal/testenv"
	_ "github.com/pgflo/pgflo/outputs" // pg_flo_jetstream writes what the worker reads
)

// workerTestEvent is a change event message as pg_flo_replicator emits it,
// with the row id as its payload.
func workerTestEvent(table, tx string, pos, id int) *service.Message {
	lsn, _ := pglogrepl.ParseLSN(tx)
	ev := &event.Event{
		Op: event.Update, Schema: "public", Table: table,
		LSN: lsn + pglogrepl.LSN(pos), CommitLSN: lsn,
		Columns: []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}},
		New:     event.Row{{Name: "id", Text: strconv.Itoa(id)}},
		Old:     event.Row{{Name: "id", Text: strconv.Itoa(id)}},
	}
	msg := service.NewMessage(ev.AppendJSON(nil))
	msg.MetaSet(event.MetaOp, string(ev.Op))
	msg.MetaSet(event.MetaSchema, ev.Schema)
	msg.MetaSet(event.MetaTable, ev.Table)
	msg.MetaSet(event.MetaLSN, ev.LSN.String())
	msg.MetaSet(event.MetaTx, tx)
	msg.MetaSet(event.MetaTxPos, strconv.Itoa(pos))
	return msg
}

// workerTestEvents returns n single-statement transactions on table users
// with ids from..from+n-1.
func workerTestEvents(from, n int) service.MessageBatch {
	var b service.MessageBatch
	for i := from; i < from+n; i++ {
		b = append(b, workerTestEvent("users", fmt.Sprintf("0/%X", 0x1000+i), 0, i))
	}
	return b
}

// workerYAML is the config of a component for group g1 at url, plus
// settings (YAML lines, possibly empty), indented by indent.
func workerYAML(indent, url, settings string) string {
	yaml := fmt.Sprintf("url: %s\ngroup: g1\n", url)
	if settings = strings.TrimSpace(settings); settings != "" {
		yaml += settings + "\n"
	}
	return indent + strings.ReplaceAll(strings.TrimSuffix(yaml, "\n"), "\n", "\n"+indent) + "\n"
}

// workerRunStream builds b with logging off and runs it. The stream stops when
// the test ends; the returned function stops it sooner and waits for it (later
// calls return the first result).
func workerRunStream(t *testing.T, b *service.StreamBuilder) (stop func() error) {
	t.Helper()
	if err := b.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(context.Background())
	}()
	stop = sync.OnceValue(func() error {
		err := s.StopWithin(5 * time.Second)
		<-done
		return err
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

// workerStartWriter runs a Benthos stream whose output is pg_flo_jetstream
// (group g1 at url, with settings) and returns a function that writes a batch
// through it, returning once JetStream stored it.
func workerStartWriter(t *testing.T, url, settings string) func(service.MessageBatch) {
	t.Helper()
	b := service.NewStreamBuilder()
	produce, err := b.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddOutputYAML("pg_flo_jetstream:\n" + workerYAML("  ", url, settings)); err != nil {
		t.Fatal(err)
	}
	workerRunStream(t, b)
	return func(batch service.MessageBatch) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := produce(ctx, batch); err != nil {
			t.Fatalf("write to jetstream: %v", err)
		}
	}
}

// workerRunPipeline runs a Benthos stream whose input is pg_flo_worker (group
// g1 at url, with settings) and hands the ids of every batch to consume.
func workerRunPipeline(t *testing.T, url, settings string, consume func(ids []int)) (stop func() error) {
	t.Helper()
	b := service.NewStreamBuilder()
	if err := b.AddInputYAML("pg_flo_worker:\n" + workerYAML("  ", url, settings)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		consume(workerIDs(t, batch))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return workerRunStream(t, b)
}

// workerTestInput builds a pg_flo_worker (group g1 at url, with settings) as
// Benthos does and connects it.
func workerTestInput(t *testing.T, url, settings string, adjust ...func(*workerConfig)) service.BatchInput {
	t.Helper()
	conf, err := workerSpec().ParseYAML(workerYAML("", url, settings), nil)
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	c, err := workerParseConfig(conf)
	if err != nil {
		t.Fatalf("new input: %v", err)
	}
	for _, f := range adjust {
		f(&c)
	}
	in := service.BatchInput(newWorker(c, service.MockResources().Logger())) // as Benthos sees it
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = in.Close(context.Background()) })
	return in
}

// workerAckState fails the test unless group g1's consumer has no pending
// deliveries and its ack floor is stream sequence floor.
func workerAckState(t *testing.T, ns *testenv.NATS, floor uint64) {
	t.Helper()
	ctx := context.Background()
	cons, err := ns.JetStream(t).Consumer(ctx, jsproto.StreamName("g1"), jsproto.ConsumerName("g1"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.AckFloor.Stream != floor {
		t.Fatalf("after the acks: %d pending, ack floor %d; want 0 and %d", info.NumAckPending, info.AckFloor.Stream, floor)
	}
}

// workerIDs returns the row ids of a batch's events.
func workerIDs(t *testing.T, batch service.MessageBatch) []int {
	t.Helper()
	var ids []int
	for _, m := range batch {
		body, err := m.AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := eventtest.Decode(body)
		if err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		v, _ := ev.New.Get("id")
		id, _ := strconv.Atoi(v.Text)
		ids = append(ids, id)
	}
	return ids
}

// workerRead reads one batch, failing the test when none comes in time.
func workerRead(t *testing.T, in service.BatchInput) ([]int, service.AckFunc, service.MessageBatch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch, ack, err := in.ReadBatch(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return workerIDs(t, batch), ack, batch
}

// workerReadNothing checks that no batch comes within d.
func workerReadNothing(t *testing.T, in service.BatchInput, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	batch, _, err := in.ReadBatch(ctx)
	if err == nil {
		t.Fatalf("read a batch %v, want none", workerIDs(t, batch))
	}
}

// workerAck acknowledges a batch as delivered.
func workerAck(t *testing.T, ack service.AckFunc) {
	t.Helper()
	if err := ack(context.Background(), nil); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func TestWorkerReadsWhatTheOutputWrote(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	write := workerStartWriter(t, url, "")
	write(service.MessageBatch{
		workerTestEvent("users", "0/100", 0, 1),
		workerTestEvent("users", "0/100", 1, 2),
		workerTestEvent("orders", "0/100", 2, 3),
		workerTestEvent("users", "0/200", 0, 4),
		workerTestEvent("users", "0/200", 1, 5),
	})

	in := workerTestInput(t, url, "")
	ids, ack, batch := workerRead(t, in)
	if want := []int{1, 2, 3, 4, 5}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("read ids %v, want %v", ids, want)
	}
	type meta struct{ op, schema, table, lsn, tx, pos, seq string }
	var got []meta
	for _, m := range batch {
		if err := m.GetError(); err != nil {
			t.Fatalf("message flagged: %v", err)
		}
		var mt meta
		mt.op, _ = m.MetaGet(event.MetaOp)
		mt.schema, _ = m.MetaGet(event.MetaSchema)
		mt.table, _ = m.MetaGet(event.MetaTable)
		mt.lsn, _ = m.MetaGet(event.MetaLSN)
		mt.tx, _ = m.MetaGet(event.MetaTx)
		mt.pos, _ = m.MetaGet(event.MetaTxPos)
		mt.seq, _ = m.MetaGet(WorkerMetaStreamSeq)
		got = append(got, mt)
	}
	// Packed as users 0-1, orders 2, users 0-1 of the second tx: three
	// JetStream messages.
	want := []meta{
		{"UPDATE", "public", "users", "0/100", "0/100", "0", "1"},
		{"UPDATE", "public", "users", "0/101", "0/100", "1", "1"},
		{"UPDATE", "public", "orders", "0/102", "0/100", "2", "2"},
		{"UPDATE", "public", "users", "0/200", "0/200", "0", "3"},
		{"UPDATE", "public", "users", "0/201", "0/200", "1", "3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("metadata\n%v\nwant\n%v", got, want)
	}
	workerAck(t, ack)
	workerReadNothing(t, in, 300*time.Millisecond)
}

func TestWorkerFlagsMalformedMessages(t *testing.T) {
	ns := testenv.StartNATS(t)
	// The stream as the output creates it, then messages no pgflo output writes.
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(1, 1))
	js := ns.JetStream(t)
	ctx := context.Background()
	good, _ := workerTestEvents(2, 1)[0].AsBytes()
	broken := nats.NewMsg("pgflo.g1.public.users")
	broken.Header.Set(jsproto.HeaderEvents, "3")
	broken.Data = append(append(append([]byte{}, good...), '\n'), good...)
	for _, m := range []*nats.Msg{
		broken,
		{Subject: "pgflo.g1.public.users", Data: []byte("not an event")},
		{Subject: "pgflo.g1.public.users", Data: good},
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	in := workerTestInput(t, ns.URL(), "")
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	batch, ack, err := in.ReadBatch(readCtx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(batch) != 4 {
		t.Fatalf("read %d messages, want 4 (nothing dropped)", len(batch))
	}
	wantErrs := []string{"", "sequence 2 (subject pgflo.g1.public.users): malformed packed message", "sequence 3 (subject pgflo.g1.public.users), event 0 of 1: decode change event", ""}
	for i, m := range batch {
		err := m.GetError()
		switch {
		case wantErrs[i] == "" && err != nil:
			t.Errorf("message %d flagged: %v", i, err)
		case wantErrs[i] != "" && (err == nil || !strings.Contains(err.Error(), wantErrs[i])):
			t.Errorf("message %d error = %v, want one containing %q", i, err, wantErrs[i])
		}
		if seq, _ := m.MetaGet(WorkerMetaStreamSeq); seq != strconv.Itoa(i+1) {
			t.Errorf("message %d has stream seq %q", i, seq)
		}
	}
	if table, _ := batch[3].MetaGet(event.MetaTable); table != "users" {
		t.Errorf("plain event from another producer has table %q", table)
	}
	_ = ack(ctx, nil)
}

// TestWorkerBenthosStream runs the worker from YAML in a Benthos stream,
// next to a stream writing through pg_flo_jetstream.
func TestWorkerBenthosStream(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	write := workerStartWriter(t, url, "")
	write(workerTestEvents(1, 50))

	var (
		mu   sync.Mutex
		got  []int
		full = make(chan struct{})
	)
	stop := workerRunPipeline(t, url, "batch_size: 7", func(ids []int) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ids...)
		if len(got) == 100 {
			close(full)
		}
	})

	write(workerTestEvents(51, 50)) // while the worker runs
	select {
	case <-full:
	case <-time.After(20 * time.Second):
		mu.Lock()
		n := len(got)
		mu.Unlock()
		t.Fatalf("received %d events, want 100", n)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	want := make([]int, 100)
	for i := range want {
		want[i] = i + 1
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("received %v, want 1..100 in order", got)
	}
}

// TestWorkerSurvivesNATSRestart: NATS restarts while the replicator's output
// writes and the worker reads. Nothing is lost, and the worker never skips
// ahead: after a redelivery it replays from an earlier change, in order.
func TestWorkerSurvivesNATSRestart(t *testing.T) {
	ns := testenv.StartNATS(t)
	write := workerStartWriter(t, ns.URL(), "")
	write(workerTestEvents(1, 40))

	var (
		mu   sync.Mutex
		got  []int
		seen = map[int]bool{}
	)
	workerRunPipeline(t, ns.URL(), "batch_size: 7", func(ids []int) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			got = append(got, id)
			seen[id] = true
		}
	})
	waitSeen := func(n int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d distinct events", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) >= n
		})
	}

	waitSeen(14)
	ns.Restart(t)
	write(workerTestEvents(41, 40))
	waitSeen(80)

	mu.Lock()
	defer mu.Unlock()
	highest := 0
	for i, id := range got {
		if id > highest+1 {
			t.Fatalf("event %d (id %d) skips ahead of %d: %v", i, id, highest, got)
		}
		highest = max(highest, id)
	}
}

func TestWorkerConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"missing group", "url: nats://x\n", "group"},
		{"bad group", "group: a b\n", "field group: invalid group name"},
		{"bad durable", "group: g\ndurable: a.b\n", "field durable"},
		{"bad filter", "group: g\nfilter_subjects: [ 'a.>.b' ]\n", "field filter_subjects"},
		{"batch size", "group: g\nbatch_size: 0\n", "field batch_size"},
		{"ack wait", "group: g\nack_wait: 10ms\n", "field ack_wait"},
		{"max ack pending", "group: g\nbatch_size: 100\nmax_ack_pending: 10\n", "field max_ack_pending"},
		{"deliver", "group: g\ndeliver: last\n", "deliver"},
		{"snapshot packs", "group: g\nsnapshot_packs: unpack\n", "snapshot_packs"},
		{"partition", "group: g\npartition: -1\n", "field partition: must be between 0 and 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := workerSpec().ParseYAML(tt.yaml, nil)
			if err == nil {
				_, err = newWorkerInput(conf, service.MockResources())
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	err := service.NewStreamBuilder().AddInputYAML("pg_flo_worker:\n  url: nats://x\n")
	if err == nil || !strings.Contains(err.Error(), "group") {
		t.Fatalf("lint of a worker without group: %v, want an error naming group", err)
	}
}

// workerPackColumns are the columns of the copy packs of the worker tests.
var workerPackColumns = []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "note", Type: "text", OID: 25}}

// workerPackLSN is the snapshot point of the copy packs of the worker tests.
const workerPackLSN = pglogrepl.LSN(0x16B3748)

// workerPackBody returns a copy pack body of table users holding the rows
// with ids from..from+n-1, with a tab, a quote and a NULL among the notes.
func workerPackBody(from, n int) []byte {
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "users", workerPackColumns, workerPackLSN))
	for id := from; id < from+n; id++ {
		note := fmt.Sprintf(`note\t"%d"`, id)
		if id%3 == 0 {
			note = `\N`
		}
		body = fmt.Appendf(body, "%d\t%s\n", id, note)
	}
	return body
}

// workerPackEvents returns the events a copy pack body stands for.
func workerPackEvents(t *testing.T, body []byte) [][]byte {
	t.Helper()
	p, err := copypack.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	events, err := p.Events()
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// workerPublish publishes items to group g1 as pg_flo_jetstream does
// (jsproto.Build, Pack.Msg, the de-duplication id), without limits.
func workerPublish(t *testing.T, js jetstream.JetStream, items ...jsproto.Item) {
	t.Helper()
	for _, p := range jsproto.Build(items, jsproto.Limits{}) {
		var opts []jetstream.PublishOpt
		if p.MsgID != "" {
			opts = append(opts, jetstream.WithMsgID(p.MsgID))
		}
		if _, err := js.PublishMsg(context.Background(), p.Msg(), opts...); err != nil {
			t.Fatal(err)
		}
	}
}

// workerPackStream stores, in group g1's stream: one plain event (id 1, stream
// sequence 1), a copy pack of rows 10..12 at positions 0..2 of snapshot
// unit "snap" (sequence 2) and one of rows 20..21 at positions 1024..1025
// (sequence 3). It returns the NATS server and the two pack bodies.
func workerPackStream(t *testing.T) (ns *testenv.NATS, packA, packB []byte) {
	t.Helper()
	ns = testenv.StartNATS(t)
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(1, 1)) // creates the stream
	packA, packB = workerPackBody(10, 3), workerPackBody(20, 2)
	workerPublish(t, ns.JetStream(t),
		jsproto.Item{Tx: "snap", Pos: 0, Subject: "pgflo.g1.public.users", Body: packA, Rows: 3},
		jsproto.Item{Tx: "snap", Pos: 1024, Subject: "pgflo.g1.public.users", Body: packB, Rows: 2},
	)
	return ns, packA, packB
}

// workerMeta is the metadata of a message that matters here.
type workerMeta struct{ seq, tx, pos, op, schema, table, lsn, rows string }

func workerMetaOf(m *service.Message) workerMeta {
	get := func(k string) string { v, _ := m.MetaGet(k); return v }
	return workerMeta{
		get(WorkerMetaStreamSeq), get(event.MetaTx), get(event.MetaTxPos), get(event.MetaOp),
		get(event.MetaSchema), get(event.MetaTable), get(event.MetaLSN), get(event.MetaPackRows),
	}
}

// TestWorkerExpandsCopyPacks: by default each row of a copy pack becomes one
// message holding its change event, with the metadata of an unpacked event.
func TestWorkerExpandsCopyPacks(t *testing.T) {
	ns, packA, packB := workerPackStream(t)
	in := workerTestInput(t, ns.URL(), "")
	ids, ack, batch := workerRead(t, in)
	if want := []int{1, 10, 11, 12, 20, 21}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("read ids %v, want %v", ids, want)
	}
	wantBodies := append(workerPackEvents(t, packA), workerPackEvents(t, packB)...)
	lsn := event.FormatLSN(workerPackLSN)
	for i, m := range batch[1:] {
		if err := m.GetError(); err != nil {
			t.Fatalf("row %d flagged: %v", i, err)
		}
		body, _ := m.AsBytes()
		if !bytes.Equal(body, wantBodies[i]) {
			t.Errorf("row %d:\n got %s\nwant %s", i, body, wantBodies[i])
		}
		seq, pos := "2", strconv.Itoa(i)
		if i >= 3 {
			seq, pos = "3", strconv.Itoa(1024+i-3)
		}
		want := workerMeta{seq: seq, tx: "snap", pos: pos, op: "INSERT", schema: "public", table: "users", lsn: lsn}
		if got := workerMetaOf(m); got != want {
			t.Errorf("row %d metadata %+v, want %+v", i, got, want)
		}
		ev, err := eventtest.Decode(body)
		if err != nil || !ev.Snapshot || ev.Op != event.Insert {
			t.Errorf("row %d: %+v, %v; want a snapshot INSERT", i, ev, err)
		}
	}
	workerAck(t, ack)
	workerReadNothing(t, in, 300*time.Millisecond)
	workerAckState(t, ns, 3)
}

// TestWorkerKeepsCopyPacks: with snapshot_packs: keep a copy pack is one
// message holding the pack as written, which packmsg expands into exactly
// what the worker's default mode reads.
func TestWorkerKeepsCopyPacks(t *testing.T) {
	ns, packA, packB := workerPackStream(t)
	in := workerTestInput(t, ns.URL(), "durable: keep\nsnapshot_packs: keep")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kept, ack, err := in.ReadBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 3 {
		t.Fatalf("read %d messages, want 3 (an event and two packs)", len(kept))
	}
	lsn := event.FormatLSN(workerPackLSN)
	for i, tt := range []struct {
		body []byte
		meta workerMeta
	}{
		{packA, workerMeta{"2", "snap", "0", "INSERT", "public", "users", lsn, "3"}},
		{packB, workerMeta{"3", "snap", "1024", "INSERT", "public", "users", lsn, "2"}},
	} {
		m := kept[1+i]
		if err := m.GetError(); err != nil {
			t.Fatalf("pack %d flagged: %v", i, err)
		}
		if body, _ := m.AsBytes(); !bytes.Equal(body, tt.body) {
			t.Errorf("pack %d body:\n%s\nwant\n%s", i, body, tt.body)
		}
		if got := workerMetaOf(m); got != tt.meta {
			t.Errorf("pack %d metadata %+v, want %+v", i, got, tt.meta)
		}
	}
	workerAck(t, ack)

	expanded := workerTestInput(t, ns.URL(), "durable: expand")
	_, ack, want := workerRead(t, expanded)
	workerAck(t, ack)
	got := packmsg.Expand(kept)
	if len(got) != len(want) {
		t.Fatalf("packmsg.Expand gives %d messages, the worker %d", len(got), len(want))
	}
	for i := range got {
		gb, _ := got[i].AsBytes()
		wb, _ := want[i].AsBytes()
		if !bytes.Equal(gb, wb) || workerMetaOf(got[i]) != workerMetaOf(want[i]) {
			t.Errorf("message %d: expanded %s %+v, worker %s %+v", i, gb, workerMetaOf(got[i]), wb, workerMetaOf(want[i]))
		}
	}
}

// TestWorkerCopyPackBatches: batch_size counts a pack's rows (with packs
// kept, the bound on snapshot rows does), a pack is never split, and a nacked
// pack comes again whole before anything newer.
func TestWorkerCopyPackBatches(t *testing.T) {
	for _, mode := range []string{packsExpand, packsKeep} {
		t.Run(mode, func(t *testing.T) {
			ns, _, _ := workerPackStream(t)
			in := workerTestInput(t, ns.URL(), "batch_size: 2\nsnapshot_packs: "+mode, func(c *workerConfig) {
				if c.keepPacks {
					c.SnapshotBatch = 2
				}
			})
			read := func(what string, wantMsgs, wantRows int) service.AckFunc {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				batch, ack, err := in.ReadBatch(ctx)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				rows := 0
				for _, m := range batch {
					rows += max(packmsg.Rows(m), 1)
				}
				if mode == "expand" {
					wantMsgs = wantRows
				}
				if len(batch) != wantMsgs || rows != wantRows {
					t.Fatalf("%s: %d messages holding %d rows, want %d holding %d", what, len(batch), rows, wantMsgs, wantRows)
				}
				return ack
			}
			workerAck(t, read("the event alone (the pack would exceed batch_size)", 1, 1))
			ack := read("pack A", 1, 3)
			if err := ack(context.Background(), errors.New("target down")); err != nil {
				t.Fatal(err)
			}
			workerAck(t, read("pack A again after the nack", 1, 3))
			workerAck(t, read("pack B", 1, 2))
			workerReadNothing(t, in, 300*time.Millisecond)
			workerAckState(t, ns, 3)
		})
	}
}

// TestWorkerFlagsMalformedCopyPacks: a copy pack that cannot be read is one
// message flagged with an error naming it, in either mode; nothing is
// dropped.
func TestWorkerFlagsMalformedCopyPacks(t *testing.T) {
	ns := testenv.StartNATS(t)
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(1, 1))
	js := ns.JetStream(t)
	copyMsg := func(body []byte, rows string, compress bool) *nats.Msg {
		m := nats.NewMsg("pgflo.g1.public.users")
		m.Header.Set(jsproto.HeaderFormat, copypack.Format)
		m.Header.Set(jsproto.HeaderEvents, rows)
		m.Data = body
		if compress {
			m.Header.Set(jsproto.HeaderEncoding, jsproto.EncodingS2)
			m.Data = s2.Encode(nil, body)
		}
		return m
	}
	badRow := copypack.AppendHeader(nil, copypack.NewHeader("public", "users", workerPackColumns, workerPackLSN))
	badRow = append(badRow, "1\ta\tthird field\n"...)
	msgs := []*nats.Msg{
		copyMsg(workerPackBody(10, 3), "5", true),  // miscounted
		copyMsg(workerPackBody(10, 3), "3", false), // declared s2 below, but not
		copyMsg(badRow, "1", true),                 // a row with a field too many
		copyMsg(workerPackBody(30, 2), "2", true),  // fine
	}
	msgs[1].Header.Set(jsproto.HeaderEncoding, jsproto.EncodingS2)
	for _, m := range msgs {
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		mode     string
		wantErrs []string // per message; "" for none
	}{
		{"expand", []string{"", "sequence 2 (subject pgflo.g1.public.users): malformed packed message: header Pgflo-Events=\"5\", the pack holds 3 rows",
			"sequence 3 (subject pgflo.g1.public.users): malformed packed message: body is not valid s2",
			"sequence 4 (subject pgflo.g1.public.users): malformed copy pack: row 0 of public.users", "", ""}},
		// The rows are not read: pg_flo_postgres reports a bad one.
		{"keep", []string{"", "sequence 2 (subject pgflo.g1.public.users): malformed packed message: header Pgflo-Events",
			"sequence 3 (subject pgflo.g1.public.users): malformed packed message: body is not valid s2", "", ""}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			in := workerTestInput(t, ns.URL(), "durable: "+tt.mode+"\nsnapshot_packs: "+tt.mode)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			batch, ack, err := in.ReadBatch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) != len(tt.wantErrs) {
				t.Fatalf("read %d messages, want %d", len(batch), len(tt.wantErrs))
			}
			for i, m := range batch {
				err := m.GetError()
				switch want := tt.wantErrs[i]; {
				case want == "" && err != nil:
					t.Errorf("message %d flagged: %v", i, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), "pg_flo_worker: stream pgflo_g1_stream "+want)):
					t.Errorf("message %d error = %v, want one containing %q", i, err, want)
				case want != "":
					if seq, _ := m.MetaGet(WorkerMetaStreamSeq); seq != strconv.Itoa(i+1) {
						t.Errorf("message %d has stream seq %q", i, seq)
					}
				}
			}
			workerAck(t, ack)
		})
	}
}

// batch_size defaults to 16384 whatever snapshot_packs is; expanded
// snapshot rows count as events, packed ones apart (131,072); max_ack_pending
// defaults to twice the batch.
func TestWorkerBatchSizeDefaults(t *testing.T) {
	for _, c := range []struct {
		settings                    string
		batch, ackPending, snapshot int
	}{
		{"", 16384, 32768, 16384},
		{"snapshot_packs: keep", 16384, 32768, 131072},
		{"snapshot_packs: keep\nbatch_size: 10", 10, 20, 131072},
		{"batch_size: 10", 10, 20, 10},
		{"batch_size: 5000\nmax_ack_pending: 6000", 5000, 6000, 5000},
	} {
		conf, err := workerSpec().ParseYAML(workerYAML("", "nats://127.0.0.1:4222", c.settings), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := workerParseConfig(conf)
		if err != nil {
			t.Fatalf("%q: %v", c.settings, err)
		}
		if got.BatchSize != c.batch || got.MaxAckPending != c.ackPending || got.SnapshotBatch != c.snapshot {
			t.Errorf("%q: batch_size %d, max_ack_pending %d, snapshot rows %d; want %d, %d, %d", c.settings,
				got.BatchSize, got.MaxAckPending, got.SnapshotBatch, c.batch, c.ackPending, c.snapshot)
		}
	}
}

// A worker of partition k has a consumer and a filter of its own; the
// stream decides whether partition must be set and which values it takes.
func TestWorkerPartitionConfig(t *testing.T) {
	conf, err := workerSpec().ParseYAML("url: nats://x\ngroup: g\npartition: 2\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := workerParseConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if c.Durable != "pgflo_g_consumer_p2" || !reflect.DeepEqual(c.FilterSubjects, []string{"pgflo.g.*.*.2"}) {
		t.Fatalf("durable %q, filters %v", c.Durable, c.FilterSubjects)
	}
	partitioned := func(n string) jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: "pgflo_g_stream", Metadata: map[string]string{jsproto.StreamMetaPartitions: n}}
	}
	for _, tc := range []struct {
		name      string
		stream    jetstream.StreamConfig
		partition int
		want      string // error, "" for none
	}{
		{"unpartitioned", jetstream.StreamConfig{Name: "pgflo_g_stream"}, -1, ""},
		{"partition of an unpartitioned stream", jetstream.StreamConfig{Name: "pgflo_g_stream"}, 0, "field partition: stream pgflo_g_stream is not partitioned"},
		{"partition missing", partitioned("4"), -1, "field partition: stream pgflo_g_stream has 4 partitions: set partition"},
		{"partition out of range", partitioned("4"), 4, "field partition: stream pgflo_g_stream has 4 partitions, 0 to 3; got 4"},
		{"partition", partitioned("4"), 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkPartitions(tc.stream, tc.partition)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// The events of a pack whose positions have gaps (a partition's share of a
// transaction) get their positions from the pack's Pgflo-Positions header.
func TestWorkerReadsPackPositions(t *testing.T) {
	ns := testenv.StartNATS(t)
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(1, 1)) // creates the stream
	var items []jsproto.Item
	for _, pos := range []int{0, 2, 5} {
		body, err := workerTestEvent("users", "0/2000", pos, 100+pos).AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, jsproto.Item{Tx: "0/2000", Pos: uint64(pos), Subject: "pgflo.g1.public.users", Body: body})
	}
	packs := jsproto.Build(items, jsproto.Limits{MaxEvents: jsproto.PackWindow})
	if len(packs) != 1 || packs[0].MsgID != "0/2000:0-5" {
		t.Fatalf("%d packs", len(packs))
	}
	if _, err := ns.JetStream(t).PublishMsg(context.Background(), packs[0].Msg(), jetstream.WithMsgID(packs[0].MsgID)); err != nil {
		t.Fatal(err)
	}
	in := workerTestInput(t, ns.URL(), "")
	var got []string
	for len(got) < 4 {
		_, ack, batch := workerRead(t, in)
		for _, m := range batch {
			meta := workerMetaOf(m)
			got = append(got, meta.tx+"#"+meta.pos)
		}
		workerAck(t, ack)
	}
	if want := []string{"0/1001#0", "0/2000#0", "0/2000#2", "0/2000#5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("positions %v, want %v", got, want)
	}
}
