package consumer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Loss detection. JetStream can remove messages a consumer never delivered:
// the stream's limits with discard old (max_msgs, max_bytes, max_age), a
// purge, the stream deleted and created again, a server that lost data it
// had acknowledged but not yet written to disk. The consumer then silently
// moves on to the next message it finds, and the target would lack the
// changes in between. The consumer compares instead, whenever it attaches
// (Connect, a reconnect) and whenever a delivery skips stream sequences, its
// own position (the stream sequence of the last message it acknowledged, and
// the stream's creation time) with the stream's first and last sequence and
// creation time, and stops with a *LossError naming the hole. Its position
// is kept in memory and recorded in the group's state bucket, so a worker
// that restarts still knows it; JetStream's own consumer state is no such
// record, as a purge moves the consumer past the purged messages.

// ErrStreamLoss is wrapped by every *LossError: the stream lost messages
// the consumer never delivered.
var ErrStreamLoss = errors.New("the stream lost changes this worker never delivered")

// LossError describes a hole in what the consumer delivered. Once returned,
// the consumer returns it from every Connect and Next: nothing after the
// hole is delivered.
type LossError struct {
	Stream  string
	Durable string
	Group   string
	// What happened, in words ("removed by the stream's limits or a purge").
	Cause string
	// First and Last are the missing stream sequences; Last is 0 when the
	// end is unknown (the stream was recreated, or went backwards).
	First, Last uint64
	// AfterID and ResumeID are the de-duplication ids (<commit LSN>:<pos>)
	// of the last message delivered before the hole and the first one
	// after it, when known: they name the changes in source terms.
	AfterID, ResumeID string
}

// Error names the hole, what made it, the changes around it and the
// recovery, for the operator who reads the worker's log.
func (e *LossError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stream %s: consumer %s missed ", e.Stream, e.Durable)
	switch {
	case e.Last == 0:
		fmt.Fprintf(&b, "the messages from stream sequence %d on", e.First)
	case e.First == e.Last:
		fmt.Fprintf(&b, "stream sequence %d", e.First)
	default:
		fmt.Fprintf(&b, "stream sequences %d to %d", e.First, e.Last)
	}
	fmt.Fprintf(&b, " (%s)", e.Cause)
	if e.AfterID != "" {
		fmt.Fprintf(&b, "; the last change delivered was %s", idText(e.AfterID))
	}
	if e.ResumeID != "" {
		fmt.Fprintf(&b, "; the stream goes on with %s", idText(e.ResumeID))
	}
	fmt.Fprintf(&b, ": %v, so the worker stops before the hole; resync the group (pgflo resync --group %s --force --yes, then restart this worker) to copy its tables afresh", ErrStreamLoss, e.Group)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrStreamLoss) hold.
func (e *LossError) Unwrap() error { return ErrStreamLoss }

// idText words a de-duplication id for people: its transaction is the
// source's commit LSN (or a snapshot chunk).
func idText(id string) string {
	tx, _, ok := strings.Cut(id, ":")
	if !ok {
		return "message " + id
	}
	return fmt.Sprintf("message %s (transaction %s)", id, tx)
}

// position is the record of a consumer's progress in the state bucket.
type position struct {
	Stream  string    `json:"stream"`
	Created time.Time `json:"stream_created"`
	// Seq is the stream sequence of the last message acknowledged, ID its
	// de-duplication id (empty when it has none).
	Seq uint64 `json:"stream_seq"`
	ID  string `json:"msg_id,omitempty"`
}

// kvKeyValid matches the keys a JetStream key-value bucket accepts.
var kvKeyValid = regexp.MustCompile(`^[-_=A-Za-z0-9]+$`)

// PositionKeyPrefix starts the state bucket keys of the consumers'
// positions. Whatever makes a hole harmless (a resync of the group) should
// delete them, or the workers keep stopping at it.
const PositionKeyPrefix = "consumers."

// PositionKey is the state bucket key of a durable consumer's position:
// "consumers.<durable>", or "consumers.hex.<durable in hex>" when the name
// holds characters keys may not (a durable never holds '.', so the two
// forms never meet).
func PositionKey(durable string) string {
	if kvKeyValid.MatchString(durable) {
		return PositionKeyPrefix + durable
	}
	return PositionKeyPrefix + "hex." + hex.EncodeToString([]byte(durable))
}

// recorder writes the consumer's position to the state bucket off the
// acknowledgement path: an acknowledgement only notes the newest position,
// one goroutine writes the newest noted, at most every recordEvery. So the
// record lags the acknowledgements by about recordEvery when the worker is
// killed; Close writes the last one.
type recorder struct {
	kv   jetstream.KeyValue
	key  string
	wake chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending *position
}

func newRecorder(kv jetstream.KeyValue, key string) *recorder {
	return &recorder{kv: kv, key: key, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// note makes p the position to write next.
func (r *recorder) note(p position) {
	r.mu.Lock()
	r.pending = &p
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// recordEvery spaces the writes of a position: a worker applying many
// small batches would otherwise write one per batch, load for the servers
// that buys little.
const recordEvery = 100 * time.Millisecond

// run writes noted positions until ctx ends.
func (r *recorder) run(ctx context.Context, warn func(error)) {
	defer close(r.done)
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		if err := r.write(ctx); err != nil && ctx.Err() == nil {
			warn(err)
		}
		pause.Reset(recordEvery)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// write writes the pending position, if any; on failure it stays pending
// unless a newer one was noted meanwhile.
func (r *recorder) write(ctx context.Context) error {
	r.mu.Lock()
	p := r.pending
	r.pending = nil
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode position: %w", err)
	}
	if _, err := r.kv.Put(ctx, r.key, body); err != nil {
		r.mu.Lock()
		if r.pending == nil {
			r.pending = p
		}
		r.mu.Unlock()
		return fmt.Errorf("record position in %s: %w", r.key, err)
	}
	return nil
}

// loadPosition reads a consumer's recorded position (nil when none).
func loadPosition(ctx context.Context, kv jetstream.KeyValue, key string) (*position, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read position %s: %w", key, err)
	}
	var p position
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, fmt.Errorf("read position %s: %w", key, err)
	}
	return &p, nil
}

// causeRemoved is the cause of a hole at the head of the stream.
const causeRemoved = "removed from the stream before this worker read them: the stream's limits (max_msgs, max_bytes or max_age with discard old) or a purge"

// attachCheck compares, when the consumer (re)attaches, where it is with
// what the stream holds. Called without c.mu.
func (c *Consumer) attachCheck(ctx context.Context, js jetstream.JetStream, ci *jetstream.ConsumerInfo) error {
	stream, err := js.Stream(ctx, c.conf.Stream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", c.conf.Stream, err)
	}
	si := stream.CachedInfo()
	c.mu.Lock()
	created, acked, ackedID, known, rec := c.streamCreated, c.ackedSeq, c.ackedID, c.ackedKnown, c.record
	c.mu.Unlock()

	// Where this consumer is: what it acknowledged in this process, else
	// its record, else JetStream's acknowledgement floor.
	pos, posID, fromServer := acked, ackedID, false
	if !known {
		var p *position
		if rec != nil {
			if p, err = loadPosition(ctx, rec.kv, rec.key); err != nil {
				return err
			}
		}
		switch {
		case p != nil && p.Stream == c.conf.Stream:
			created, pos, posID = p.Created, p.Seq, p.ID
		case c.conf.DeliverNew && ci.Delivered.Consumer == 0:
			// A new consumer that starts with new messages skips the
			// older ones on purpose.
			pos, fromServer = max(si.State.LastSeq, ci.AckFloor.Stream), true
		default:
			pos, fromServer = ci.AckFloor.Stream, true
		}
	}
	// The record lags a killed worker's last acknowledgements, and a
	// consumer filtering subjects acknowledges up to the last message it
	// skipped as not its own: JetStream's floor is ahead, and right, unless
	// a purge moved it to just before the stream's first message. In a
	// stream that deletes acknowledged messages (interest or work queue
	// retention) the floor sits there anyway, and is trusted.
	sameStream := created.IsZero() || created.Equal(si.Created)
	limits := si.Config.Retention == jetstream.LimitsPolicy
	if floor := ci.AckFloor.Stream; sameStream && !fromServer && floor > pos && (floor+1 != si.State.FirstSeq || !limits) {
		pos, posID = floor, ""
	}
	// There, other consumers' acknowledgements delete messages between a
	// filtering consumer's own: removed messages are no sign of a hole.
	headCheck := limits || !filtering(c.conf.FilterSubjects, si.Config.Subjects)
	c.mu.Lock()
	c.gapChecks = headCheck
	c.mu.Unlock()
	loss := &LossError{Stream: c.conf.Stream, Durable: c.conf.Durable, Group: c.conf.Group, AfterID: posID}
	switch {
	case !sameStream:
		loss.Cause = fmt.Sprintf("the stream was deleted and created again at %s; this worker had read the one created at %s up to sequence %d, and whatever that one held after it never reached this worker",
			si.Created.UTC().Format(time.RFC3339Nano), created.UTC().Format(time.RFC3339Nano), pos)
		loss.First = pos + 1
	case si.State.LastSeq < max(pos, ci.Delivered.Stream):
		loss.Cause = fmt.Sprintf("the stream's last sequence is %d, below the %d this worker had reached: a NATS server lost messages it had acknowledged (data not yet synced to disk when it went down?), and new messages take their sequences",
			si.State.LastSeq, max(pos, ci.Delivered.Stream))
		loss.First = si.State.LastSeq + 1
	case headCheck && si.State.FirstSeq > pos+1:
		loss.Cause = causeRemoved
		if fromServer && ci.Delivered.Consumer == 0 && pos == 0 {
			loss.Cause = "removed from the stream before this consumer was created: the stream's limits or a purge; a consumer meant to start with new changes is created with deliver: new"
		}
		loss.First, loss.Last = pos+1, si.State.FirstSeq-1
		loss.ResumeID = c.msgID(ctx, stream, si.State.FirstSeq, si.State.LastSeq)
	default:
		c.mu.Lock()
		c.streamCreated = si.Created
		if !c.ackedKnown {
			c.ackedSeq, c.ackedID, c.ackedKnown = pos, posID, true
		}
		c.mu.Unlock()
		return nil
	}
	return c.lose(loss)
}

// gapCheck is called when a delivery skipped stream sequences after last:
// normal for a consumer filtering subjects, a loss when the stream no longer
// holds the sequences skipped. Called without c.mu.
func (c *Consumer) gapCheck(ctx context.Context, js jetstream.JetStream, last uint64) error {
	stream, err := js.Stream(ctx, c.conf.Stream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", c.conf.Stream, err)
	}
	si := stream.CachedInfo()
	if si.State.FirstSeq <= last+1 {
		return nil
	}
	c.mu.Lock()
	afterID := ""
	if c.ackedSeq == last {
		afterID = c.ackedID
	}
	c.mu.Unlock()
	return c.lose(&LossError{
		Stream: c.conf.Stream, Durable: c.conf.Durable, Group: c.conf.Group,
		Cause: causeRemoved,
		First: last + 1, Last: si.State.FirstSeq - 1, AfterID: afterID,
		ResumeID: c.msgID(ctx, stream, si.State.FirstSeq, si.State.LastSeq),
	})
}

// filtering reports whether a consumer of filters takes only some of a
// stream's subjects.
func filtering(filters, subjects []string) bool {
	if len(filters) == 0 {
		return false
	}
	for _, f := range filters {
		if !slices.Contains(subjects, f) {
			return true
		}
	}
	return len(filters) < len(subjects)
}

// skips reports whether msgs skip stream sequences after last (and between
// themselves).
func skips(msgs []jetstream.Msg, last uint64) bool {
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if meta.Sequence.Stream > last+1 {
			return true
		}
		last = max(last, meta.Sequence.Stream)
	}
	return false
}

// msgID is the de-duplication id of the message at seq, if it is there
// (and seq not beyond last): it names the hole's end in source terms.
func (c *Consumer) msgID(ctx context.Context, stream jetstream.Stream, seq, last uint64) string {
	if seq == 0 || seq > last {
		return ""
	}
	m, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return ""
	}
	return m.Header.Get(nats.MsgIdHdr)
}

// lose makes loss the consumer's error from now on, and reports it.
func (c *Consumer) lose(loss *LossError) error {
	c.mu.Lock()
	first := c.lost == nil
	if first {
		c.lost = loss
	}
	err := c.lost
	c.mu.Unlock()
	if first {
		c.log.Warnf("%v", loss)
		if c.conf.OnLoss != nil {
			c.conf.OnLoss(loss)
		}
	}
	return err
}

// noteAcked records that the messages of a batch were acknowledged: the
// last one is the consumer's position.
func (c *Consumer) noteAcked(msgs []jetstream.Msg) {
	if len(msgs) == 0 {
		return
	}
	last := msgs[len(msgs)-1]
	meta, err := last.Metadata()
	if err != nil {
		return
	}
	id := last.Headers().Get(nats.MsgIdHdr)
	c.mu.Lock()
	if meta.Sequence.Stream <= c.ackedSeq && c.ackedKnown {
		c.mu.Unlock()
		return
	}
	c.ackedSeq, c.ackedID, c.ackedKnown = meta.Sequence.Stream, id, true
	rec, created := c.record, c.streamCreated
	c.mu.Unlock()
	if rec != nil && !created.IsZero() {
		rec.note(position{Stream: c.conf.Stream, Created: created, Seq: meta.Sequence.Stream, ID: id})
	}
}

// AcceptLoss records, for every durable consumer of stream, the position
// just before the stream's first message, so that its workers go on from
// what the stream still holds instead of stopping at a hole before it. A
// resync of the group calls it: the copy it brings replaces whatever the
// stream lost. A consumer that had read past the head keeps its position.
// It returns the consumers whose record it wrote; a stream that does not
// exist has none.
func AcceptLoss(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, streamName string) ([]string, error) {
	stream, err := js.Stream(ctx, streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", streamName, err)
	}
	si := stream.CachedInfo()
	head := si.State.FirstSeq
	if head > 0 {
		head--
	}
	var written []string
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		key := PositionKey(name)
		p, err := loadPosition(ctx, kv, key)
		if err != nil {
			return written, err
		}
		if p != nil && p.Stream == streamName && p.Created.Equal(si.Created) && p.Seq >= head {
			continue
		}
		body, err := json.Marshal(position{Stream: streamName, Created: si.Created, Seq: head})
		if err != nil {
			return written, fmt.Errorf("encode position: %w", err)
		}
		if _, err := kv.Put(ctx, key, body); err != nil {
			return written, fmt.Errorf("record position %s: %w", key, err)
		}
		written = append(written, name)
	}
	if err := names.Err(); err != nil {
		return written, fmt.Errorf("list the consumers of stream %s: %w", streamName, err)
	}
	return written, nil
}
