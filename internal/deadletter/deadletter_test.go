package deadletter

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// A dead letter is stored with what names it, listed as stored, and
// replayed to its subject with the original's headers (but its
// de-duplication id), then gone from the dead-letter stream.
func TestStoreListReplay(t *testing.T) {
	ns := testenv.StartNATS(t)
	js := ns.JetStream(t)
	ctx := context.Background()
	group := "g1"
	// The group's stream, as pg_flo_jetstream creates it: its subjects do
	// not take the dead letters'.
	groupStream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: jsproto.StreamName(group), Subjects: []string{jsproto.GroupSubjects(group)}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // created once, found the second time
		if err := Ensure(ctx, js, group, 1); err != nil {
			t.Fatal(err)
		}
	}
	whole := &Letter{
		Reason: ReasonDecode, Err: "malformed\npacked message", Subject: "pgflo.g1.public.users", StreamSeq: 4, Event: -1,
		Header: nats.Header{jsproto.HeaderEvents: {"3"}, jetstream.MsgIDHeader: {"0/10:0-2"}, jetstream.ExpectedStreamHeader: {"pgflo_g1_stream"}},
		Body:   []byte("garbage"),
	}
	event := &Letter{
		Reason: ReasonTarget, Err: "violates check constraint", Subject: "pgflo.g1.public.users", StreamSeq: 7, Event: 2,
		Table: `"public"."users"`, Key: "(id)=(2)", LSN: "0/1002", Body: []byte(`{"v":1}`),
	}
	for i, l := range []*Letter{whole, event, event} { // the second copy is a duplicate
		stored, err := Publish(ctx, js, group, l)
		if err != nil {
			t.Fatal(err)
		}
		if stored != (i < 2) {
			t.Errorf("letter %d stored: %v", i, stored)
		}
	}
	if info, err := groupStream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("the group's stream took dead letters: %+v, %v", info.State, err)
	}
	letters, err := List(ctx, js, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(letters), letters)
	}
	if l := letters[0]; l.Err != "malformed packed message" || l.Event != -1 || l.StreamSeq != 4 || l.Header.Get(jsproto.HeaderEvents) != "3" || l.Header.Get(jetstream.MsgIDHeader) != "0/10:0-2" || l.Header.Get(jetstream.ExpectedStreamHeader) != "" || l.Time.IsZero() {
		t.Errorf("first dead letter %+v", l)
	}
	if l := letters[1]; l.Table != `"public"."users"` || l.Key != "(id)=(2)" || l.LSN != "0/1002" || l.Event != 2 || l.Header != nil || string(l.Body) != `{"v":1}` {
		t.Errorf("second dead letter %+v", l)
	}

	done, err := Replay(ctx, js, group, 0)
	if err != nil || len(done) != 2 {
		t.Fatalf("replayed %d: %v", len(done), err)
	}
	if left, err := List(ctx, js, group); err != nil || len(left) != 0 {
		t.Fatalf("left after the replay: %+v, %v", left, err)
	}
	m, err := groupStream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "pgflo.g1.public.users" || string(m.Data) != "garbage" || m.Header.Get(jsproto.HeaderEvents) != "3" ||
		m.Header.Get(HeaderReplay) != "1" || strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), "0/10") {
		t.Errorf("replayed message %s %q %v", m.Subject, m.Data, m.Header)
	}
	if _, err := Replay(ctx, js, "nogroup", 0); err == nil {
		t.Error("replay of a group without dead letters did not fail")
	}
}
