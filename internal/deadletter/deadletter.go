// Package deadletter is where a group's poison messages go instead of
// stopping it: changes that cannot be decoded, and changes the target
// refuses in a way retrying cannot fix. pg_flo_worker (with on_error:
// dead_letter) stores each of them, with the error and where it came from, in
// the group's dead-letter stream before it acknowledges the original;
// `pgflo dead-letters list` reads them and `pgflo dead-letters replay`
// publishes them again to the subject they came from, once the cause is
// fixed.
//
// The dead-letter stream is a stream of its own, pgflo_<group>_dead_letters
// on the subject pgflo_dead.<group>: outside the group's subjects
// (pgflo.<group>.>), so the group's stream never stores a dead letter and
// its workers never read one.
//
// It does not import Benthos: pg_flo_worker and the CLI use it.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the dead-letter stream of a group.
func StreamName(group string) string { return "pgflo_" + group + "_dead_letters" }

// Subject is the subject of a group's dead letters. It starts with
// pgflo_dead, not pgflo, so no group's stream (pgflo.<group>.>) takes it.
func Subject(group string) string { return "pgflo_dead." + group }

// Headers of a dead letter, besides the original message's own (kept for a
// whole message, so a replayed pack is still a pack).
const (
	// HeaderError is the error that made the change a dead letter, on one
	// line.
	HeaderError = "Pgflo-Dead-Error"
	// HeaderReason is why: ReasonDecode or ReasonTarget.
	HeaderReason = "Pgflo-Dead-Reason"
	// HeaderSubject is the subject of the original message, where replay
	// publishes the dead letter again.
	HeaderSubject = "Pgflo-Dead-Subject"
	// HeaderStreamSeq is the original message's sequence in the group's
	// stream.
	HeaderStreamSeq = "Pgflo-Dead-Stream-Seq"
	// HeaderEvent is the event's 0-based place in the original message when
	// the dead letter is one event of a pack; absent when it is the whole
	// message.
	HeaderEvent = "Pgflo-Dead-Event"
	// HeaderTable, HeaderKey and HeaderLSN name the change, when known:
	// schema.table, the key as (a, b)=(1, x), the change's LSN.
	HeaderTable = "Pgflo-Dead-Table"
	HeaderKey   = "Pgflo-Dead-Key"
	HeaderLSN   = "Pgflo-Dead-LSN"
	// HeaderMsgID keeps the original message's de-duplication id: the
	// dead letter's own is derived from its stream sequence, and a replayed
	// message must not carry the original id (JetStream would drop it as a
	// duplicate within the stream's window).
	HeaderMsgID = "Pgflo-Dead-Msg-Id"
	// HeaderReplay marks a message replay published: its value is the
	// dead letter's sequence in the dead-letter stream. pg_flo_worker turns
	// it into the metadata MetaReplay.
	HeaderReplay = "Pgflo-Replay"
)

// MetaReplay is the Benthos metadata of an event replayed from the dead
// letters (the dead letter's sequence). pg_flo_postgres applies such an
// event whatever its progress table says: it is older than what was applied
// since, by design.
const MetaReplay = "pg_flo_replay"

// Reason says why a change became a dead letter; it labels the metric
// pg_flo_dead_letters_total.
type Reason string

const (
	// ReasonDecode is a message or event that is not a valid pgflo change
	// event (or pack of them).
	ReasonDecode Reason = "decode"
	// ReasonTarget is a change the target refused with an error retrying
	// cannot fix (a constraint, bad data, a missing table or column).
	ReasonTarget Reason = "target"
)

// Rejection is the error of a change that cannot be applied, ever: an
// output reports it for the message (in a Benthos batch error) so that the
// input can make the message a dead letter instead of delivering it again.
type Rejection struct {
	Reason Reason
	// Table, Key and LSN name the change when known.
	Table, Key, LSN string
	// Row is the change's row in its message when the message is a pack of
	// snapshot rows, so that the row alone becomes a dead letter; -1 when
	// the message is not a pack, or the row is not known.
	Row int
	Err error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// Letter is one dead letter: the message (or the one event of a packed
// message) and what went wrong.
type Letter struct {
	Reason Reason
	Err    string
	// Subject and StreamSeq name the original message in the group's
	// stream; Event is the event's place in it, -1 for the whole message.
	Subject   string
	StreamSeq uint64
	Event     int
	// Table, Key and LSN name the change, when known.
	Table, Key, LSN string
	// Header holds the original message's headers (a whole message only),
	// Body its body or the event's.
	Header nats.Header
	Body   []byte
}

// msg is the letter as a message of the dead-letter stream.
func (l *Letter) msg(group string) *nats.Msg {
	h := nats.Header{}
	for k, v := range l.Header {
		switch {
		case k == jetstream.MsgIDHeader:
			h[HeaderMsgID] = v
		case strings.HasPrefix(k, "Nats-"):
			// JetStream's own (Nats-Expected-Stream, …): they were for the
			// group's stream.
		default:
			h[k] = v
		}
	}
	h.Set(HeaderReason, string(l.Reason))
	h.Set(HeaderError, oneLine(l.Err))
	h.Set(HeaderSubject, l.Subject)
	h.Set(HeaderStreamSeq, strconv.FormatUint(l.StreamSeq, 10))
	if l.Event >= 0 {
		h.Set(HeaderEvent, strconv.Itoa(l.Event))
	}
	for k, v := range map[string]string{HeaderTable: l.Table, HeaderKey: l.Key, HeaderLSN: l.LSN} {
		if v != "" {
			h.Set(k, oneLine(v))
		}
	}
	// The same change stored twice (a worker that died before acknowledging
	// its original) is dropped by the stream's duplicate window.
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%d", l.StreamSeq, l.Event))
	return &nats.Msg{Subject: Subject(group), Header: h, Data: l.Body}
}

// maxHeaderText bounds a header value taken from an error or a key, so a
// dead letter stays within the server's max_payload.
const maxHeaderText = 4096

// oneLine makes s a valid header value: header lines end at a line break.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxHeaderText {
		s = strings.ToValidUTF8(s[:maxHeaderText], "") + "…"
	}
	return s
}

// Ensure creates the group's dead-letter stream when missing, with the
// group's stream's replicas (so it is as durable as the changes it holds).
// Dead letters are kept until replayed or deleted with the group.
func Ensure(ctx context.Context, js jetstream.JetStream, group string, replicas int) error {
	name := StreamName(group)
	_, err := js.Stream(ctx, name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up dead-letter stream %s: %w", name, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "pgflo dead letters of group " + group,
		Subjects:    []string{Subject(group)},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create dead-letter stream %s: %w", name, err)
	}
	return nil
}

// Publish stores the letter in the group's dead-letter stream and returns
// once JetStream acknowledged it (the stream must exist: Ensure). It
// reports false when the stream had it already (the same change stored
// within the duplicate window).
func Publish(ctx context.Context, js jetstream.JetStream, group string, l *Letter) (bool, error) {
	ack, err := js.PublishMsg(ctx, l.msg(group))
	if err != nil {
		return false, fmt.Errorf("store dead letter of stream sequence %d in %s: %w", l.StreamSeq, StreamName(group), err)
	}
	return !ack.Duplicate, nil
}

// Entry is a dead letter as stored: its sequence in the dead-letter stream
// and when it was stored.
type Entry struct {
	Seq  uint64
	Time time.Time
	Letter
}

// ErrNoStream means the group has no dead-letter stream: nothing was ever
// dead-lettered (or the group was cleaned up).
var ErrNoStream = errors.New("no dead-letter stream")

// List returns the group's dead letters in the order they were stored.
func List(ctx context.Context, js jetstream.JetStream, group string) ([]Entry, error) {
	s, err := js.Stream(ctx, StreamName(group))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("group %s: %w (%s)", group, ErrNoStream, StreamName(group))
	}
	if err != nil {
		return nil, fmt.Errorf("look up dead-letter stream %s: %w", StreamName(group), err)
	}
	st := s.CachedInfo().State
	var out []Entry
	if st.Msgs == 0 {
		return out, nil
	}
	for seq := st.FirstSeq; seq <= st.LastSeq; seq++ {
		e, err := get(ctx, s, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed (deleted)
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// get reads one dead letter.
func get(ctx context.Context, s jetstream.Stream, seq uint64) (Entry, error) {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return Entry{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return parse(m), nil
}

// parse reads a stored dead letter back; the dead-letter headers are taken
// out of Header, which keeps the original's.
func parse(m *jetstream.RawStreamMsg) Entry {
	e := Entry{Seq: m.Sequence, Time: m.Time}
	h := nats.Header{}
	for k, v := range m.Header {
		h[k] = v
	}
	take := func(k string) string {
		v := h.Get(k)
		h.Del(k)
		return v
	}
	e.Reason = Reason(take(HeaderReason))
	e.Err = take(HeaderError)
	e.Subject = take(HeaderSubject)
	e.StreamSeq, _ = strconv.ParseUint(take(HeaderStreamSeq), 10, 64)
	e.Event = -1
	if v := take(HeaderEvent); v != "" {
		e.Event, _ = strconv.Atoi(v)
	}
	e.Table, e.Key, e.LSN = take(HeaderTable), take(HeaderKey), take(HeaderLSN)
	h.Del(jetstream.MsgIDHeader)
	if id := take(HeaderMsgID); id != "" {
		h.Set(jetstream.MsgIDHeader, id)
	}
	if len(h) > 0 {
		e.Header = h
	}
	e.Body = m.Data
	return e
}

// Replay publishes dead letters again to the subjects they came from, so
// the group's worker applies them, and deletes each from the dead-letter
// stream once JetStream stored it again: seq names one (0: every one, in
// order). It returns the letters replayed; on an error, those before it.
func Replay(ctx context.Context, js jetstream.JetStream, group string, seq uint64) ([]Entry, error) {
	s, err := js.Stream(ctx, StreamName(group))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("group %s: %w (%s)", group, ErrNoStream, StreamName(group))
	}
	if err != nil {
		return nil, fmt.Errorf("look up dead-letter stream %s: %w", StreamName(group), err)
	}
	var letters []Entry
	if seq == 0 {
		if letters, err = List(ctx, js, group); err != nil {
			return nil, err
		}
	} else {
		e, err := get(ctx, s, seq)
		if err != nil {
			return nil, err
		}
		letters = []Entry{e}
	}
	var done []Entry
	for _, e := range letters {
		if e.Subject == "" {
			return done, fmt.Errorf("dead letter %d names no subject to replay to", e.Seq)
		}
		h := nats.Header{}
		for k, v := range e.Header {
			h[k] = v
		}
		// Not the original id: JetStream would drop the message as a
		// duplicate of the original within the stream's window. This one
		// keeps a replay from being stored twice.
		h.Set(jetstream.MsgIDHeader, fmt.Sprintf("pgflo-replay.%d.%d", e.Seq, e.Time.UnixNano()))
		h.Set(HeaderReplay, strconv.FormatUint(e.Seq, 10))
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: e.Subject, Header: h, Data: e.Body}); err != nil {
			return done, fmt.Errorf("replay dead letter %d to %s: %w", e.Seq, e.Subject, err)
		}
		if err := s.DeleteMsg(ctx, e.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return done, fmt.Errorf("dead letter %d was replayed to %s but not deleted from %s (replaying it again would apply it twice): %w", e.Seq, e.Subject, StreamName(group), err)
		}
		done = append(done, e)
	}
	return done, nil
}
