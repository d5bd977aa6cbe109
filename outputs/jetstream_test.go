package outputs

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/partition"
	"github.com/pgflo/pgflo/internal/testenv"
)

// jsTestOutput builds and connects a pg_flo_jetstream output from YAML.
func jsTestOutput(t *testing.T, yaml string) *jsOutput {
	t.Helper()
	conf, err := jsOutputSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	out, err := newJSOutput(conf, service.MockResources())
	if err != nil {
		t.Fatalf("new output: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = out.Close(context.Background()) })
	return out
}

// jsTestEvent is a change event message as pg_flo_replicator emits it.
func jsTestEvent(table, tx string, pos int, id int) *service.Message {
	lsn, _ := pglogrepl.ParseLSN(tx)
	ev := &event.Event{
		Op: event.Insert, Schema: "public", Table: table,
		LSN: lsn + pglogrepl.LSN(pos), CommitLSN: lsn,
		Columns: []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}},
		New:     event.Row{{Name: "id", Text: strconv.Itoa(id)}},
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

// jsTestPack is a pack message of snapshot rows as pg_flo_replicator emits
// it: ids first.. of table at positions pos.. of unit tx.
func jsTestPack(table, tx string, pos, first, rows int) *service.Message {
	cols := []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}}
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", table, cols, 0x100))
	for i := range rows {
		body = strconv.AppendInt(body, int64(first+i), 10)
		body = append(body, '\n')
	}
	msg := service.NewMessage(body)
	msg.MetaSet(event.MetaOp, string(event.Insert))
	msg.MetaSet(event.MetaSchema, "public")
	msg.MetaSet(event.MetaTable, table)
	msg.MetaSet(event.MetaLSN, "0/100")
	msg.MetaSet(event.MetaTx, tx)
	msg.MetaSet(event.MetaTxPos, strconv.Itoa(pos))
	msg.MetaSet(event.MetaPackRows, strconv.Itoa(rows))
	return msg
}

// jsStored is a stored JetStream message, reduced to what the tests check.
type jsStored struct {
	Subject string
	MsgID   string
	Events  string // the Pgflo-Events header, "" for a plain message
	IDs     []string
}

// jsReadStream returns every message of stream pgflo_g1_stream.
func jsReadStream(t *testing.T, js jetstream.JetStream) []jsStored {
	t.Helper()
	const stream = "pgflo_g1_stream"
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []jsStored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		st := jsStored{Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Events: m.Header.Get(jsproto.HeaderEvents)}
		var events [][]byte
		if jsproto.IsCopyPack(m.Header) {
			p, err := jsproto.UnpackCopy(m.Data, m.Header)
			if err == nil {
				events, err = p.Events()
			}
			if err != nil {
				t.Fatalf("unpack copy pack %d: %v", seq, err)
			}
		} else if events, err = jsproto.Unpack(m.Data, m.Header); err != nil {
			t.Fatalf("unpack message %d: %v", seq, err)
		}
		for _, e := range events {
			ev, err := eventtest.Decode(e)
			if err != nil {
				t.Fatalf("decode event of message %d: %v", seq, err)
			}
			id, _ := ev.New.Get("id")
			st.IDs = append(st.IDs, id.Text)
		}
		out = append(out, st)
	}
	return out
}

// jsTestBatch holds two transactions touching two tables.
func jsTestBatch() service.MessageBatch {
	return service.MessageBatch{
		jsTestEvent("users", "0/100", 0, 1),
		jsTestEvent("users", "0/100", 1, 2),
		jsTestEvent("orders", "0/100", 2, 3),
		jsTestEvent("orders", "0/100", 3, 4),
		jsTestEvent("users", "0/100", 4, 5),
		jsTestEvent("users", "0/200", 0, 6),
		jsTestEvent("users", "0/200", 1, 7),
		jsTestEvent("users", "0/200", 2, 8),
	}
}

// jsWithoutTxMetadata is the batch as a stock input would deliver it:
// bodies only.
func jsWithoutTxMetadata(batch service.MessageBatch) service.MessageBatch {
	var out service.MessageBatch
	for _, m := range batch {
		body, _ := m.AsBytes()
		out = append(out, service.NewMessage(body))
	}
	return out
}

// A batch is stored with one de-duplication id per message, so a resend (the
// batch nacked downstream of a successful publish, or a replay after a
// restart) stores nothing new; messages without tx metadata have no id.
func TestJetStreamOutputStoresBatches(t *testing.T) {
	packed := []jsStored{
		{Subject: "pgflo.g1.public.users", MsgID: "0/100:0-1", Events: "2", IDs: []string{"1", "2"}},
		{Subject: "pgflo.g1.public.orders", MsgID: "0/100:2-3", Events: "2", IDs: []string{"3", "4"}},
		{Subject: "pgflo.g1.public.users", MsgID: "0/100:4", IDs: []string{"5"}},
		{Subject: "pgflo.g1.public.users", MsgID: "0/200:0-2", Events: "3", IDs: []string{"6", "7", "8"}},
	}
	unpacked := []jsStored{
		{Subject: "pgflo.g1.public.users", MsgID: "0/100:0", IDs: []string{"1"}},
		{Subject: "pgflo.g1.public.users", MsgID: "0/100:1", IDs: []string{"2"}},
		{Subject: "pgflo.g1.public.orders", MsgID: "0/100:2", IDs: []string{"3"}},
	}
	copyPacks := []jsStored{
		{Subject: "pgflo.g1.public.users", MsgID: "snapshot.r.0:0-2", Events: "3", IDs: []string{"1", "2", "3"}},
		{Subject: "pgflo.g1.public.users", MsgID: "snapshot.r.0:3-4", Events: "2", IDs: []string{"4", "5"}},
		{Subject: "pgflo.g1.public.users", MsgID: "0/200:0-1", Events: "2", IDs: []string{"6", "7"}},
	}
	withoutIDs := []jsStored{
		{Subject: "pgflo.g1.public.users", IDs: []string{"1"}},
		{Subject: "pgflo.g1.public.users", IDs: []string{"2"}},
	}
	for _, tt := range []struct {
		name, config string
		batch        service.MessageBatch
		// want is the stream after the batch was written once, resent after
		// it was written twice.
		want, resent []jsStored
	}{
		{"packs per table with ids", "", jsTestBatch(), packed, packed},
		{"pack off", "pack: false\n", jsTestBatch()[:3], unpacked, unpacked},
		// Copy packs go as they are, one message each, never merged.
		{"copy packs", "", service.MessageBatch{
			jsTestPack("users", "snapshot.r.0", 0, 1, 3), jsTestPack("users", "snapshot.r.0", 3, 4, 2),
			jsTestEvent("users", "0/200", 0, 6), jsTestEvent("users", "0/200", 1, 7),
		}, copyPacks, copyPacks},
		// One message per event, no id; the resend is stored again (documented).
		{"without tx metadata", "", jsWithoutTxMetadata(jsTestBatch()[:2]), withoutIDs, append(withoutIDs, withoutIDs...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := testenv.StartNATS(t)
			out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\n%s", ns.URL(), tt.config))
			js := ns.JetStream(t)
			ctx := context.Background()
			if err := out.WriteBatch(ctx, tt.batch); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := jsReadStream(t, js); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("stream holds\n%+v\nwant\n%+v", got, tt.want)
			}
			if err := out.WriteBatch(ctx, tt.batch); err != nil {
				t.Fatalf("write again: %v", err)
			}
			if got := jsReadStream(t, js); !reflect.DeepEqual(got, tt.resent) {
				t.Fatalf("after resend the stream holds\n%+v\nwant\n%+v", got, tt.resent)
			}
		})
	}
}

func TestJetStreamOutputRejectsNonEvents(t *testing.T) {
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\n", testenv.StartNATS(t).URL()))
	bad := service.MessageBatch{service.NewMessage([]byte(`not an event`))}
	err := out.WriteBatch(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "message 0: not a pg_flo change event") {
		t.Fatalf("write of a non-event = %v, want an error naming the message", err)
	}
}

func TestJetStreamOutputClampsToMaxPayload(t *testing.T) {
	ns := testenv.StartNATS(t, testenv.WithMaxPayload(16<<10))
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\n", ns.URL()))
	js := ns.JetStream(t)
	if out.packMaxBytes != 12<<10 {
		t.Fatalf("pack max bytes = %d, want the max payload minus headroom (%d)", out.packMaxBytes, 12<<10)
	}
	var batch service.MessageBatch
	for i := range 300 {
		batch = append(batch, jsTestEvent("users", "0/100", i, i))
	}
	if err := out.WriteBatch(context.Background(), batch); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := jsReadStream(t, js)
	if len(got) < 2 {
		t.Fatalf("got %d messages, want the batch split into several packs", len(got))
	}
	n := 0
	for _, m := range got {
		for _, id := range m.IDs {
			if id != strconv.Itoa(n) {
				t.Fatalf("event %d has id %s: order lost", n, id)
			}
			n++
		}
	}
	if n != 300 {
		t.Fatalf("stored %d events, want 300", n)
	}

	// An event that cannot fit fails the whole batch before anything is sent.
	huge := jsTestEvent("users", "0/300", 0, 1)
	huge.SetBytes([]byte(strings.Replace(string(jsMustBytes(t, huge)), `"id":"1"`, `"id":"1","pad":"`+strings.Repeat("x", 20<<10)+`"`, 1)))
	before := len(jsReadStream(t, js))
	err := out.WriteBatch(context.Background(), service.MessageBatch{jsTestEvent("users", "0/300", 1, 2), huge})
	if err == nil || !strings.Contains(err.Error(), "max payload") {
		t.Fatalf("write of an oversized event = %v, want a max payload error", err)
	}
	if after := len(jsReadStream(t, js)); after != before {
		t.Fatalf("stream grew from %d to %d messages although the batch failed", before, after)
	}
}

func jsMustBytes(t *testing.T, m *service.Message) []byte {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJetStreamOutputStreamSettings(t *testing.T) {
	ns := testenv.StartNATS(t)
	jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\nstream_max_bytes: 1048576\nduplicate_window: 2m\n", ns.URL()))
	s, err := ns.JetStream(t).Stream(context.Background(), "pgflo_g1_stream")
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if !reflect.DeepEqual(c.Subjects, []string{"pgflo.g1.>"}) || c.Storage != jetstream.FileStorage ||
		c.MaxAge != 0 || c.MaxBytes != 1<<20 || c.Discard != jetstream.DiscardNew ||
		c.Retention != jetstream.LimitsPolicy || c.Duplicates != 2*time.Minute {
		t.Fatalf("stream config = %+v", c)
	}
}

func TestJetStreamOutputRejectsPgFloStream(t *testing.T) {
	ns := testenv.StartNATS(t)
	// The stream as pg_flo creates it.
	if _, err := ns.JetStream(t).CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "pgflo_g1_stream", Subjects: []string{"pgflo.g1"}, MaxAge: 24 * time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	conf, err := jsOutputSpec().ParseYAML(fmt.Sprintf("url: %s\ngroup: g1\n", ns.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newJSOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(context.Background())
	err = out.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "do not include pgflo.g1.>") {
		t.Fatalf("connect = %v, want an error about the stream's subjects", err)
	}
}

func TestJetStreamOutputNotConnected(t *testing.T) {
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\n", testenv.StartNATS(t).URL()))
	if err := out.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := out.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := out.WriteBatch(context.Background(), jsTestBatch()); err != service.ErrNotConnected {
		t.Fatalf("write after close = %v, want ErrNotConnected", err)
	}
}

func TestJetStreamOutputConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"missing group", "url: nats://x\n", "group"},
		{"bad group", "group: a.b\n", "field group: invalid group name"},
		{"bad stream", "group: g\nstream: a.b\n", "field stream"},
		{"bad prefix", "group: g\nsubject_prefix: a.*\n", "field subject_prefix"},
		{"stream max bytes", "group: g\nstream_max_bytes: 0\n", "field stream_max_bytes"},
		{"stream max msgs", "group: g\nstream_max_msgs: -2\n", "field stream_max_msgs"},
		{"retention", "group: g\nstream_retention: forever\n", "stream_retention"},
		{"window longer than age", "group: g\nstream_max_age: 1m\nduplicate_window: 2m\n", "field duplicate_window"},
		{"two auth methods", "group: g\nuser: u\ntoken: t\n", "mutually exclusive"},
		{"partitions", "group: g\npartitions: 0\n", "field partitions: must be between 1 and 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := jsOutputSpec().ParseYAML(tt.yaml, nil)
			if err == nil {
				_, err = newJSOutput(conf, service.MockResources())
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestJetStreamOutputConfigLints(t *testing.T) {
	env := service.NewEnvironment()
	b := env.NewStreamBuilder()
	err := b.AddOutputYAML(`
pg_flo_jetstream:
  url: nats://localhost:4222
`)
	if err == nil || !strings.Contains(err.Error(), "group") {
		t.Fatalf("output without group: %v, want an error naming group", err)
	}
}

// A bounded stream that refuses new messages when full (stream_discard:
// new) never stores part of a batch: the output waits until the whole batch
// fits, so the changes of a batch are stored in their order — a change
// refused and sent again would land after later ones, and pg_flo_postgres
// would take it for one applied already.
func TestJetStreamOutputWaitsForRoomInABoundedStream(t *testing.T) {
	nats := testenv.StartNATS(t)
	js := nats.JetStream(t)
	ctx := context.Background()
	const maxBytes = 16 << 10
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "pgflo_g1_stream", Subjects: []string{"pgflo.g1.>"}, MaxBytes: maxBytes, Discard: jetstream.DiscardNew, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\npack: false\n", nats.URL()))
	events := func(tx string, first, n int) service.MessageBatch {
		var b service.MessageBatch
		for i := range n {
			b = append(b, jsTestEvent("users", tx, i, first+i))
		}
		return b
	}
	// Most of the stream filled, then a batch that does not fit.
	if err := out.WriteBatch(ctx, events("0/100", 1, 30)); err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Bytes < maxBytes/2 {
		t.Fatalf("stream holds %d bytes (%v): fill it more", info.State.Bytes, err)
	}
	done := make(chan error, 1)
	go func() { done <- out.WriteBatch(ctx, events("0/200", 101, 30)) }()
	select {
	case err := <-done:
		t.Fatalf("the batch was written into a full stream (error %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	// The worker consumes: room again.
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the batch was not written once the stream had room")
	}
	var ids []string
	for _, m := range jsReadStream(t, js) {
		ids = append(ids, m.IDs...)
	}
	if len(ids) != 30 || ids[0] != "101" || ids[29] != "130" || !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) {
		t.Fatalf("stream holds %v, want ids 101..130 in order", ids)
	}
}

// With partitions, a change goes to its partition's subject; a TRUNCATE goes
// to every partition as a barrier copy, and so does a sync barrier before
// the first streamed change after snapshot rows. The number of partitions
// is recorded in the stream, and an output configured with another one is
// refused.
func TestJetStreamOutputPartitions(t *testing.T) {
	ns := testenv.StartNATS(t)
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\npartitions: 2\n", ns.URL()))
	truncate := func() *service.Message {
		ev := &event.Event{Op: event.Truncate, Schema: "public", Table: "users", LSN: 0x100, CommitLSN: 0x100,
			Columns: []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}}}
		msg := service.NewMessage(ev.AppendJSON(nil))
		msg.MetaSet(event.MetaTx, "0/100")
		msg.MetaSet(event.MetaTxPos, "1")
		return msg
	}()
	batch := service.MessageBatch{jsTestPack("users", "snapshot.r.0", 0, 1, 3), jsTestEvent("users", "0/100", 0, 7), truncate, jsTestEvent("users", "0/100", 2, 8)}
	if err := out.WriteBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// A resend stores nothing new.
	if err := out.WriteBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := ns.JetStream(t).Stream(ctx, "pgflo_g1_stream")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Metadata[jsproto.StreamMetaPartitions] != "2" {
		t.Fatalf("stream metadata %v", info.Config.Metadata)
	}
	var got []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s", m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(jsproto.HeaderBarrier)))
	}
	part := func(id string) string {
		r, err := partition.Route(rawInsert(t, id), 2)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(r.Partition)
	}
	want := []string{
		"pgflo.g1.public.users." + strconv.Itoa(partition.PackPartition("snapshot.r.0", 0, 2)) + " snapshot.r.0:0-2 ",
		"pgflo.g1.public.users.0 0/100:0/sync/p0 0/100:0:sync",
		"pgflo.g1.public.users.1 0/100:0/sync/p1 0/100:0:sync",
		"pgflo.g1.public.users." + part("7") + " 0/100:0 ",
		"pgflo.g1.public.users.0 0/100:1/p0 0/100:1",
		"pgflo.g1.public.users.1 0/100:1/p1 0/100:1",
		"pgflo.g1.public.users." + part("8") + " 0/100:2 ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A transaction whose rows alternate between the partitions is packed
	// into one message per partition, its positions in the header.
	var tx service.MessageBatch
	for pos := 0; pos < 12; pos++ {
		ev := &event.Event{Op: event.Insert, Schema: "public", Table: "users", LSN: 0x300, CommitLSN: 0x300,
			Columns: []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "v", Type: "text", OID: 25}},
			New:     event.Row{{Name: "id", Text: strconv.Itoa(100 + pos)}, {Name: "v", Text: "x"}}}
		msg := service.NewMessage(ev.AppendJSON(nil))
		msg.MetaSet(event.MetaTx, "0/300")
		msg.MetaSet(event.MetaTxPos, strconv.Itoa(pos))
		tx = append(tx, msg)
	}
	if err := out.WriteBatch(ctx, tx); err != nil {
		t.Fatal(err)
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored := info.State.LastSeq - uint64(len(want)); stored != 2 {
		t.Fatalf("12 changes stored in %d messages, want one per partition", stored)
	}
	events := 0
	for seq := uint64(len(want)) + 1; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		_, first, last, ok := jsproto.ParseMsgID(m.Header.Get(jetstream.MsgIDHeader))
		n := jsproto.EventCount(m.Header)
		if !ok || (last-first+1 != uint64(n) && m.Header.Get(jsproto.HeaderPositions) == "") {
			t.Fatalf("message %d: id %q, %d events, no positions", seq, m.Header.Get(jetstream.MsgIDHeader), n)
		}
		events += n
	}
	if events != 12 {
		t.Fatalf("%d events stored", events)
	}

	conf, err := jsOutputSpec().ParseYAML(fmt.Sprintf("url: %s\ngroup: g1\npartitions: 3\n", ns.URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := newJSOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if err := other.Connect(ctx); err == nil || !strings.Contains(err.Error(), "created with 2 partition(s), this output is configured with 3") {
		t.Fatalf("connect with another number of partitions: %v", err)
	}
}

// rawInsert is the INSERT of jsTestEvent as the output routes it.
func rawInsert(t *testing.T, id string) *event.RawEvent {
	t.Helper()
	body, err := jsTestEvent("users", "0/100", 0, 0).AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.Replace(string(body), `"id":"0"`, `"id":"`+id+`"`, 1))
	var dec event.Decoder
	var ev event.RawEvent
	if err := dec.DecodeRaw(body, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// A stream the output creates with a message limit is bounded too: a batch
// that does not fit waits for room instead of being refused in part.
func TestJetStreamOutputWaitsForRoomInAStreamItCreated(t *testing.T) {
	nats := testenv.StartNATS(t)
	js := nats.JetStream(t)
	ctx := context.Background()
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\npack: false\nstream_max_msgs: 10\n", nats.URL()))
	batch := func(tx string, first, n int) service.MessageBatch {
		var b service.MessageBatch
		for i := range n {
			b = append(b, jsTestEvent("users", tx, i, first+i))
		}
		return b
	}
	if err := out.WriteBatch(ctx, batch("0/100", 1, 8)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- out.WriteBatch(ctx, batch("0/200", 101, 5)) }()
	select {
	case err := <-done:
		t.Fatalf("a batch of 5 was written into a stream with room for 2 (error %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	stream, err := js.Stream(ctx, "pgflo_g1_stream")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the batch was not written once the stream had room")
	}
	if n := len(jsReadStream(t, js)); n != 5 {
		t.Fatalf("stream holds %d messages, want the 5 of the second batch", n)
	}
}

// With interest or work-queue retention, the output creates the worker's
// consumers (one per partition) when it connects, before it publishes, with
// pg_flo_worker's names, filters and settings; an existing one is left as
// it is.
func TestJetStreamOutputCreatesConsumersBeforePublishing(t *testing.T) {
	nats := testenv.StartNATS(t)
	js := nats.JetStream(t)
	ctx := context.Background()

	jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\nstream_retention: workqueue\n", nats.URL()))
	c, err := js.Consumer(ctx, "pgflo_g1_stream", "pgflo_g1_consumer")
	if err != nil {
		t.Fatalf("workqueue: %v", err)
	}
	if cfg := c.CachedInfo().Config; cfg.FilterSubject != "pgflo.g1.>" || cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.MaxDeliver != -1 || cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Fatalf("consumer config %+v", cfg)
	}

	// Partition 1's consumer exists already, with the worker's settings.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "pgflo_g2_stream", Subjects: []string{"pgflo.g2.>"}, Retention: jetstream.InterestPolicy,
		Metadata: map[string]string{jsproto.StreamMetaPartitions: "3"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "pgflo_g2_stream", jetstream.ConsumerConfig{
		Durable: "pgflo_g2_consumer_p1", FilterSubject: "pgflo.g2.*.*.1", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 12345,
	}); err != nil {
		t.Fatal(err)
	}
	jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g2\npartitions: 3\n", nats.URL()))
	for k := 0; k < 3; k++ {
		c, err := js.Consumer(ctx, "pgflo_g2_stream", fmt.Sprintf("pgflo_g2_consumer_p%d", k))
		if err != nil {
			t.Fatalf("partition %d: %v", k, err)
		}
		cfg := c.CachedInfo().Config
		if want := fmt.Sprintf("pgflo.g2.*.*.%d", k); cfg.FilterSubject != want {
			t.Errorf("partition %d filters %q, want %q", k, cfg.FilterSubject, want)
		}
		if k == 1 && cfg.MaxAckPending != 12345 {
			t.Errorf("the existing consumer was changed: %+v", cfg)
		}
	}

	// Limits retention keeps every message: no consumer is needed.
	jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g3\n", nats.URL()))
	if _, err := js.Consumer(ctx, "pgflo_g3_stream", "pgflo_g3_consumer"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("limits retention: consumer lookup %v, want not found", err)
	}
}

// On a work queue whose subjects a worker's own consumer already takes, the
// output creates no consumer and publishes.
func TestJetStreamOutputLeavesWorkQueueToAnotherConsumer(t *testing.T) {
	nats := testenv.StartNATS(t)
	js := nats.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "pgflo_g1_stream", Subjects: []string{"pgflo.g1.>"}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "pgflo_g1_stream", jetstream.ConsumerConfig{
		Durable: "mine", FilterSubject: "pgflo.g1.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	out := jsTestOutput(t, fmt.Sprintf("url: %s\ngroup: g1\n", nats.URL()))
	if err := out.WriteBatch(ctx, service.MessageBatch{jsTestEvent("users", "0/100", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, "pgflo_g1_stream", "pgflo_g1_consumer"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer lookup %v, want not found", err)
	}
}
