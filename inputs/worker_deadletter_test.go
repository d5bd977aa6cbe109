package inputs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// With on_error: dead_letter, malformed messages never reach the pipeline:
// they are stored in the group's dead-letter stream (reason decode), and a
// change the output rejects (a deadletter.Rejection in its batch error) is
// stored too (reason target), after which the batch comes again without it;
// acknowledging that batch acknowledges everything.
func TestWorkerDeadLetters(t *testing.T) {
	ns := testenv.StartNATS(t)
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(1, 3)) // sequences 1 to 3
	js := ns.JetStream(t)
	ctx := context.Background()
	broken := nats.NewMsg("pgflo.g1.public.users")
	broken.Header.Set(jsproto.HeaderEvents, "3")
	broken.Data = []byte(`{"v":1}`)
	for _, m := range []*nats.Msg{broken, {Subject: "pgflo.g1.public.users", Data: []byte("not an event")}} {
		if _, err := js.PublishMsg(ctx, m); err != nil { // sequences 4 and 5
			t.Fatal(err)
		}
	}
	workerStartWriter(t, ns.URL(), "")(workerTestEvents(6, 1)) // sequence 6

	in := workerTestInput(t, ns.URL(), "on_error: dead_letter")
	read := func() (service.MessageBatch, service.AckFunc) {
		t.Helper()
		readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		batch, ack, err := in.ReadBatch(readCtx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return batch, ack
	}
	seqs := func(batch service.MessageBatch) string {
		var s []string
		for _, m := range batch {
			v, _ := m.MetaGet(WorkerMetaStreamSeq)
			s = append(s, v)
		}
		return strings.Join(s, ",")
	}

	batch, ack := read()
	if got := seqs(batch); got != "1,2,3,6" {
		t.Fatalf("batch of stream sequences %s, want 1,2,3,6 (the malformed 4 and 5 set aside)", got)
	}
	// The output rejects the change of sequence 2, as pg_flo_postgres does.
	batchErr := service.NewBatchError(batch, errors.New("batch failed")).
		Failed(1, &deadletter.Rejection{Reason: deadletter.ReasonTarget, Table: `"public"."users"`, Key: "(id)=(2)", LSN: "0/1002", Err: errors.New("violates check constraint")})
	if err := ack(ctx, batchErr); err != nil {
		t.Fatalf("ack with the rejection: %v", err)
	}
	batch, ack = read()
	if got := seqs(batch); got != "1,3,6" {
		t.Fatalf("batch delivered again of stream sequences %s, want 1,3,6", got)
	}
	if err := ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	workerAckState(t, ns, 6)

	letters, err := deadletter.List(ctx, js, "g1")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		reason     deadletter.Reason
		seq        uint64
		event      int
		key, error string
	}{
		{deadletter.ReasonDecode, 4, -1, "", "sequence 4 (subject pgflo.g1.public.users): malformed packed message"},
		{deadletter.ReasonDecode, 5, 0, "", "sequence 5 (subject pgflo.g1.public.users), event 0 of 1: decode change event"},
		{deadletter.ReasonTarget, 2, 0, "(id)=(2)", "violates check constraint"},
	}
	if len(letters) != len(want) {
		t.Fatalf("%d dead letters, want %d: %+v", len(letters), len(want), letters)
	}
	for i, w := range want {
		l := letters[i]
		if l.Reason != w.reason || l.StreamSeq != w.seq || l.Event != w.event || l.Key != w.key ||
			l.Subject != "pgflo.g1.public.users" || !strings.Contains(l.Err, w.error) {
			t.Errorf("dead letter %d: %+v, want %+v", i, l, w)
		}
	}
	if letters[0].Header.Get(jsproto.HeaderEvents) != "3" || string(letters[0].Body) != `{"v":1}` {
		t.Errorf("the whole malformed message is not kept: headers %v, body %q", letters[0].Header, letters[0].Body)
	}
	if got := letters[2].Body; !strings.Contains(string(got), `"id":"2"`) {
		t.Errorf("the rejected event is not kept: %s", got)
	}

	// Replayed, the rejected change comes back marked, for the output to
	// apply it whatever its progress says.
	if _, err := deadletter.Replay(ctx, js, "g1", letters[2].Seq); err != nil {
		t.Fatal(err)
	}
	batch, ack = read()
	if len(batch) != 1 {
		t.Fatalf("%d messages replayed, want 1", len(batch))
	}
	if v, _ := batch[0].MetaGet(deadletter.MetaReplay); v != strconv.FormatUint(letters[2].Seq, 10) {
		t.Errorf("replayed message has %s=%q", deadletter.MetaReplay, v)
	}
	if table, _ := batch[0].MetaGet("pg_flo_table"); table != "users" {
		t.Errorf("replayed message of table %q", table)
	}
	if err := ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if left, err := deadletter.List(ctx, js, "g1"); err != nil || len(left) != 2 {
		t.Fatalf("after the replay %d dead letters (%v), want 2", len(left), err)
	}
}

func TestWorkerOnErrorConfig(t *testing.T) {
	conf, err := workerSpec().ParseYAML("group: g\non_error: ignore\n", nil)
	if err == nil {
		_, err = newWorkerInput(conf, service.MockResources())
	}
	if err == nil || !strings.Contains(err.Error(), "field on_error") {
		t.Fatalf("error %v, want one naming on_error", err)
	}
}
