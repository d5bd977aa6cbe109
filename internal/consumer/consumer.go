// Package consumer reads a pgflo group's JetStream stream through a durable
// pull consumer, as pg_flo_worker needs it: batches in stream order, exactly
// one in flight, each acknowledged only once the whole batch was delivered;
// a rejected batch comes again, unchanged, before anything newer. It reads
// the pack headers of the messages (internal/jsproto) to count a batch's
// events, never their bodies: turning messages into events is the caller's.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/state"
)

// ErrClosed is returned by a closed Consumer.
var ErrClosed = errors.New("consumer is closed")

// ErrNotConnected is returned by Next when the connection or the consumer
// was lost: Connect again.
var ErrNotConnected = errors.New("not connected to the JetStream consumer")

// ErrBatchEnded is returned by Batch.Done when Close already handed the
// batch back.
var ErrBatchEnded = errors.New("batch ended by Close")

// errOutOfOrder means a fetch was dropped for a reset of the consumer.
var errOutOfOrder = errors.New("delivery out of order")

// Config describes the consumer of one group.
type Config struct {
	Conn           jsproto.ConnConfig
	Group          string // named in the consumer's description
	Stream         string
	Durable        string
	FilterSubjects []string
	// A batch is full when its change events reach BatchSize or the rows of
	// its copy packs SnapshotBatch, or both together in proportion.
	BatchSize     int
	SnapshotBatch int
	// FetchWait is how long to wait for more once a batch has a message.
	FetchWait time.Duration
	// AckWait and MaxAckPending are set on the consumer.
	AckWait       time.Duration
	MaxAckPending int
	// DeliverNew makes a newly created consumer start with new messages.
	DeliverNew bool
	Logger     logging.Logger
	// CheckStream, when set, is given the stream's configuration before the
	// consumer is created or reused; an error it returns fails Connect.
	CheckStream func(jetstream.StreamConfig) error
	// Ahead, when set, is given the messages fetched for the next batch
	// while the current one is out, and may replace each with a wrapper of
	// itself; the batch then holds the wrappers. Work done there overlaps
	// the pipeline's, instead of pausing it between two batches.
	Ahead func(msgs []jetstream.Msg)
	// RecordPosition makes the consumer record its position (the stream
	// sequence of the last message acknowledged) in the group's state
	// bucket, so a restarted worker still recognises a hole in the stream
	// (see loss.go).
	RecordPosition bool
	// OnLoss, when set, is called once when the consumer finds that the
	// stream lost messages it never delivered.
	OnLoss func(*LossError)
}

// pollWait bounds one long poll for the first message of a batch, so a dead
// connection is noticed even when the stream is idle.
const pollWait = 5 * time.Second

// gatherMaxBytes bounds the bytes fetched at once after a batch's first
// message, so memory stays bounded whatever the pack sizes.
const gatherMaxBytes = 32 << 20

// Backoff between deliveries of a batch the pipeline keeps rejecting.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

// Consumer is the durable pull consumer of one group.
type Consumer struct {
	// Set by New and never changed, so read without mu.
	conf Config
	log  logging.Logger

	// turn holds a token while a batch is out: Next takes it, the batch's
	// end (or Close) gives it back. It orders the readers and guards no
	// field.
	turn chan struct{}

	shut       context.Context // cancelled by Close: ends reads and the fetch made ahead
	shutCancel context.CancelFunc

	// mu guards every field below. A mutex rather than an owner goroutine:
	// the state is touched briefly from Next, the pipeline's acks, Close
	// and the NATS client's reconnect callback; network calls are made
	// without it (but in Connect), on what was read under it.
	mu       sync.Mutex
	closed   bool
	nc       *nats.Conn
	js       jetstream.JetStream
	cons     jetstream.Consumer
	inflight *Batch
	// carry holds messages fetched beyond the last batch's budget; they
	// start the next batch.
	carry []jetstream.Msg
	// ahead fetches the next batch's messages while a batch is out.
	ahead *prefetch
	// Position tracking, see syncPosition.
	resync           bool   // check the consumer's position before the next fetch
	forceReset       bool   // reset it to the ack floor before the next fetch
	resetUnsupported bool   // the server has no consumer reset API
	nextDeliverySeq  uint64 // consumer sequence the next delivery must have; 0 = unknown
	lastStreamSeq    uint64 // stream sequence of the last message handed out
	// retryWait is how long to wait before reading a rejected batch again
	// (0 after a success).
	retryWait time.Duration
	// Loss detection, see loss.go: the creation time of the stream read,
	// the last message acknowledged (known once attached), the recorder of
	// that position, and the hole found, returned from then on.
	streamCreated  time.Time
	streamReplicas int
	ackedSeq       uint64
	ackedID        string
	ackedKnown     bool
	gapChecks      bool // skipped stream sequences may be a hole (see attachCheck)
	record         *recorder
	lost           error
}

// New returns a consumer; Connect connects it.
func New(conf Config) *Consumer {
	if conf.Logger == nil {
		conf.Logger = logging.Nop{}
	}
	c := &Consumer{conf: conf, log: conf.Logger, turn: make(chan struct{}, 1)}
	c.shut, c.shutCancel = context.WithCancel(context.Background())
	c.conf.Conn.OnDisconnect = func(err error) {
		if err != nil {
			c.log.Warnf("Disconnected from NATS: %v", err)
		}
	}
	c.conf.Conn.OnReconnect = func(url string) {
		c.log.Infof("Reconnected to NATS at %s", url)
		// Deliveries may have been lost with the connection.
		c.mu.Lock()
		c.resync = true
		c.mu.Unlock()
	}
	return c
}

// Connect dials NATS (once; the client then reconnects by itself) and
// creates or reuses the durable consumer. Call it again after Next returned
// ErrNotConnected; deliveries may have been lost with the connection, so the
// position is checked again before the next fetch.
func (c *Consumer) Connect(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.lost != nil {
		return c.lost
	}
	if c.nc != nil && c.nc.IsClosed() {
		c.nc, c.js, c.cons = nil, nil, nil
	}
	if c.nc == nil {
		nc, err := jsproto.Connect(c.conf.Conn)
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return fmt.Errorf("jetstream: %w", err)
		}
		c.nc, c.js = nc, js
	}
	if !c.nc.IsConnected() {
		return fmt.Errorf("waiting for the NATS client to reconnect: %w (status %v)", nats.ErrDisconnected, c.nc.Status())
	}
	cons, err := c.ensureConsumer(ctx)
	if err != nil {
		return err
	}
	c.cons = cons
	c.resync = true
	if c.conf.RecordPosition && c.record == nil {
		kv, err := state.OpenBucket(ctx, c.js, c.conf.Group, c.streamReplicas)
		if err != nil {
			return err
		}
		c.record = newRecorder(kv, PositionKey(c.conf.Durable))
		go c.record.run(c.shut, func(err error) { c.log.Warnf("Consumer %s: %v", c.conf.Durable, err) })
	}
	return nil
}

// JetStream returns the connection's JetStream context, nil before Connect
// succeeded.
func (c *Consumer) JetStream() jetstream.JetStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.js
}

// ensureConsumer looks the durable consumer up, creating it when missing and
// updating the settings pgflo depends on when they differ. Called with c.mu
// held.
func (c *Consumer) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	conf := &c.conf
	stream, err := c.js.Stream(ctx, conf.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s not found: pg_flo_jetstream (the replicator's output) creates it when it first connects; start the replicator first, or check group/stream", conf.Stream)
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", conf.Stream, err)
	}
	c.streamReplicas = max(stream.CachedInfo().Config.Replicas, 1)
	if conf.CheckStream != nil {
		if err := conf.CheckStream(stream.CachedInfo().Config); err != nil {
			return nil, err
		}
	}
	want := DurableConfig(*conf)
	cons, err := stream.Consumer(ctx, conf.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = stream.CreateConsumer(ctx, want)
		if err == nil {
			c.log.Infof("Created durable consumer %s on stream %s (subjects %v)", conf.Durable, conf.Stream, conf.FilterSubjects)
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = stream.Consumer(ctx, conf.Durable) // created concurrently
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up consumer %s on stream %s: %w", conf.Durable, conf.Stream, err)
	}

	have := cons.CachedInfo().Config
	if have.DeliverSubject != "" {
		return nil, fmt.Errorf("consumer %s on stream %s is a push consumer; pg_flo_worker needs a pull consumer: delete it (nats consumer rm %s %s) or set durable", conf.Durable, conf.Stream, conf.Stream, conf.Durable)
	}
	if have.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("consumer %s on stream %s acknowledges %v; pg_flo_worker needs explicit acks: delete it (nats consumer rm %s %s) or set durable", conf.Durable, conf.Stream, have.AckPolicy, conf.Stream, conf.Durable)
	}
	update := have
	update.AckWait = want.AckWait
	update.MaxDeliver = want.MaxDeliver
	update.MaxAckPending = want.MaxAckPending
	setFilters(&update, conf.FilterSubjects)
	if slices.Equal(filters(have), filters(update)) && have.AckWait == update.AckWait &&
		have.MaxDeliver == update.MaxDeliver && have.MaxAckPending == update.MaxAckPending {
		return cons, nil
	}
	if cons, err = stream.UpdateConsumer(ctx, update); err != nil {
		return nil, fmt.Errorf("update consumer %s on stream %s: %w", conf.Durable, conf.Stream, err)
	}
	c.log.Infof("Updated consumer %s: subjects %v -> %v, max deliver %d -> unlimited, ack wait %v -> %v, max ack pending %d -> %d",
		conf.Durable, filters(have), filters(update), have.MaxDeliver, have.AckWait, update.AckWait, have.MaxAckPending, update.MaxAckPending)
	return cons, nil
}

// DurableConfig is the server-side configuration of the durable consumer
// conf describes, as Connect creates it. The replicator's output creates
// the same ahead of the worker (see GroupConfig), so a stream that deletes
// what no consumer needs keeps every change until the worker comes.
func DurableConfig(conf Config) jetstream.ConsumerConfig {
	want := jetstream.ConsumerConfig{
		Durable:       conf.Durable,
		Description:   "pgflo worker of group " + conf.Group,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       conf.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: conf.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if conf.DeliverNew {
		want.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	setFilters(&want, conf.FilterSubjects)
	return want
}

// Defaults of pg_flo_worker's consumer settings (its ack_wait and
// batch_size fields), which GroupConfig uses too.
const (
	DefaultAckWait   = 10 * time.Minute
	DefaultBatchSize = 1000
)

// GroupConfig is the consumer pg_flo_worker uses by default for partition k
// of a group whose subjects start with prefix (k < 0: a group of one
// partition): pg_flo's durable name (with _p<k>), the group's or the
// partition's subjects, the default ack wait and max ack pending (twice the
// default batch size). A worker configured otherwise updates those settings
// of the consumer when it connects.
func GroupConfig(group, stream, prefix string, k int) Config {
	c := Config{
		Group: group, Stream: stream,
		Durable:        jsproto.ConsumerName(group),
		FilterSubjects: []string{jsproto.PrefixSubjects(prefix)},
		BatchSize:      DefaultBatchSize,
		AckWait:        DefaultAckWait,
		MaxAckPending:  2 * DefaultBatchSize,
	}
	if k >= 0 {
		c.Durable = jsproto.PartitionConsumerName(group, k)
		c.FilterSubjects = []string{jsproto.PartitionFilter(prefix, k)}
	}
	return c
}

// CreateIfMissing creates the durable consumer conf describes on stream
// unless one of its name exists, which is left as it is: its worker owns its
// settings and position. It reports whether it created it.
func CreateIfMissing(ctx context.Context, stream jetstream.Stream, conf Config) (bool, error) {
	_, err := stream.Consumer(ctx, conf.Durable)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, fmt.Errorf("look up consumer %s on stream %s: %w", conf.Durable, conf.Stream, err)
	}
	_, err = stream.CreateConsumer(ctx, DurableConfig(conf))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrConsumerExists):
		return false, nil // the worker created it meanwhile
	default:
		return false, fmt.Errorf("create consumer %s on stream %s: %w", conf.Durable, conf.Stream, err)
	}
}

func setFilters(c *jetstream.ConsumerConfig, subjects []string) {
	c.FilterSubject, c.FilterSubjects = "", nil
	if len(subjects) == 1 {
		c.FilterSubject = subjects[0]
	} else {
		c.FilterSubjects = slices.Clone(subjects)
	}
}

func filters(c jetstream.ConsumerConfig) []string {
	if c.FilterSubject != "" {
		return []string{c.FilterSubject}
	}
	return c.FilterSubjects
}

// Batch is the batch in flight: JetStream messages, in stream order,
// acknowledged together by Done.
type Batch struct {
	Msgs []jetstream.Msg

	c *Consumer
	// once ends the batch exactly once: by Done, or by Close.
	once sync.Once
	stop chan struct{} // stops the in-progress keeper
}

// Next returns the next batch once the previous one ended: exactly one batch
// is in flight, so a batch that fails downstream is read again before
// anything newer.
func (c *Consumer) Next(ctx context.Context) (*Batch, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.shut, cancel)()

	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, c.doneErr(ctx)
	}
	b, err := c.next(ctx)
	if err != nil {
		<-c.turn
	}
	return b, err
}

// next reads one batch, with the turn held: nothing else is in flight.
func (c *Consumer) next(ctx context.Context) (*Batch, error) {
	c.mu.Lock()
	closed, nc, cons, wait, lost := c.closed, c.nc, c.cons, c.retryWait, c.lost
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if lost != nil {
		return nil, lost
	}
	if nc == nil || cons == nil || !nc.IsConnected() {
		return nil, ErrNotConnected
	}
	if !sleep(ctx, wait) {
		return nil, c.doneErr(ctx)
	}
	for attempt := 0; ; attempt++ {
		// Back off a little when resets keep being needed (another
		// consumer on the durable?), without hammering the server.
		if !sleep(ctx, min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second)) {
			return nil, c.doneErr(ctx)
		}
		msgs, err := c.gather(ctx, nc, cons)
		if errors.Is(err, errOutOfOrder) {
			continue // dropped unacked; the reset brings them again
		}
		if err != nil {
			return nil, err
		}
		return c.handOut(cons, msgs)
	}
}

// gather returns the messages of the next batch, and maybe some beyond it:
// those carried over from the last batch, then those fetched ahead or
// fetched now, once the consumer's position was checked.
func (c *Consumer) gather(ctx context.Context, nc *nats.Conn, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	ahead, err := c.takeAhead(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.syncPosition(ctx); err != nil {
		return nil, c.readErr(ctx, nc, err)
	}
	c.mu.Lock()
	msgs := c.carry
	c.carry = nil
	c.mu.Unlock()
	if ahead == nil && c.conf.full(msgs) {
		return msgs, nil
	}
	var fetched []jetstream.Msg
	var streamFirst uint64
	if ahead != nil {
		fetched, err, streamFirst = ahead.msgs, ahead.err, ahead.streamFirst
	} else {
		fetched, err = c.fetch(ctx, cons, msgs)
	}
	if err != nil {
		c.mu.Lock()
		c.carry = msgs
		if len(fetched) > 0 {
			// Fetched but neither handed out nor acknowledged: rewind so
			// they come first next time.
			c.forceReset = true
		}
		c.mu.Unlock()
		return nil, c.readErr(ctx, nc, err)
	}
	ok, jumped, after := c.checkSequence(fetched)
	if !ok {
		return nil, errOutOfOrder
	}
	// A consumer filtering subjects skips sequences all the time; the
	// stream's first sequence, looked up after the fetch, clears most skips
	// without asking again.
	c.mu.Lock()
	js, gapChecks := c.js, c.gapChecks
	c.mu.Unlock()
	if jumped && gapChecks && (streamFirst == 0 || streamFirst > after+1) {
		if err := c.gapCheck(ctx, js, after); err != nil {
			nak(msgs)
			nak(fetched)
			return nil, c.readErr(ctx, nc, err)
		}
	}
	return append(msgs, fetched...), nil
}

// handOut makes a batch of as many of msgs as fit, carries the rest to the
// next batch, keeps both in progress while the batch is out, and fetches
// ahead for the next batch unless the carried messages fill it.
func (c *Consumer) handOut(cons jetstream.Consumer, msgs []jetstream.Msg) (*Batch, error) {
	msgs, carry := c.conf.split(msgs)
	c.mu.Lock()
	if c.closed {
		// Closed while fetching: hand everything back, in order.
		c.mu.Unlock()
		nak(msgs)
		nak(carry)
		return nil, ErrClosed
	}
	b := &Batch{Msgs: msgs, c: c, stop: make(chan struct{})}
	c.inflight, c.carry = b, carry
	if !c.conf.full(carry) {
		var js jetstream.JetStream // looks the stream up when messages skip sequences
		if c.gapChecks {
			js = c.js
		}
		c.ahead = c.fetchAhead(cons, carry, js, c.lastStreamSeq)
	}
	c.mu.Unlock()
	go c.keepAlive(b.stop, slices.Concat(msgs, carry))
	return b, nil
}

// prefetch is a fetch for the next batch made while the current one is out.
type prefetch struct {
	fetched chan struct{} // closed once msgs and err are set
	msgs    []jetstream.Msg
	err     error
	cancel  context.CancelFunc
	done    chan struct{} // closed once its goroutine ended
	// streamFirst is the stream's first sequence, looked up after the
	// fetch when msgs skip stream sequences (0 otherwise): the check for a
	// hole (gapCheck) then costs the next batch no round trip.
	streamFirst uint64
}

// fetchAhead starts the fetch Next would make after the carried messages, so
// the pipeline does not wait for a pull request after every batch. What it
// brings is read only once the current batch ended, and kept in progress
// until then.
func (c *Consumer) fetchAhead(cons jetstream.Consumer, carry []jetstream.Msg, js jetstream.JetStream, last uint64) *prefetch {
	ctx, cancel := context.WithCancel(c.shut)
	p := &prefetch{fetched: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.msgs, p.err = c.fetch(ctx, cons, carry)
		if js != nil && skips(p.msgs, last) {
			if stream, err := js.Stream(ctx, c.conf.Stream); err == nil {
				p.streamFirst = stream.CachedInfo().State.FirstSeq
			}
		}
		if c.conf.Ahead != nil {
			c.conf.Ahead(p.msgs)
		}
		close(p.fetched)
		c.keepAlive(ctx.Done(), p.msgs)
	}()
	return p
}

// end stops the fetch made ahead (and its keeper) and waits for it.
func (p *prefetch) end() {
	p.cancel()
	<-p.done
}

// takeAhead waits for the fetch made ahead, if any (nil when none). A
// position check or reset pending (a rejected batch, a reconnect) makes what
// it brought stale: it is handed back (Nak) and the fetch made again after
// the reset. When ctx ends first the fetch is kept for the next call.
func (c *Consumer) takeAhead(ctx context.Context) (*prefetch, error) {
	c.mu.Lock()
	p := c.ahead
	c.mu.Unlock()
	if p == nil {
		return nil, nil
	}
	select {
	case <-p.fetched:
	case <-ctx.Done():
		return nil, c.doneErr(ctx)
	}
	p.end()
	c.mu.Lock()
	mine := c.ahead == p
	if mine {
		c.ahead = nil
	}
	stale := c.resync || c.forceReset
	c.mu.Unlock()
	switch {
	case !mine:
		return nil, ErrClosed // Close took it and hands it back
	case stale:
		nak(p.msgs)
		return nil, nil
	case errors.Is(p.err, context.Canceled) && len(p.msgs) == 0:
		return nil, nil
	}
	return p, nil
}

// syncPosition makes sure the next delivery is the oldest unacknowledged
// message, as ordering needs. When deliveries are outstanding that this
// consumer does not hold (left by a crashed worker, lost with a connection,
// discarded after an error), JetStream would redeliver them only after
// ack_wait, after newer ones; resetting the consumer to its ack floor
// delivers them first. It also records the sequences checkSequence expects.
func (c *Consumer) syncPosition(ctx context.Context) error {
	c.mu.Lock()
	resync, force, unsupported, js, cons := c.resync, c.forceReset, c.resetUnsupported, c.js, c.cons
	held := len(c.carry)
	c.mu.Unlock()
	if !resync && !force {
		return nil
	}
	durable := c.conf.Durable
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s info: %w", durable, err)
	}
	// Attached again, or deliveries out of order: did the stream lose what
	// this consumer had not delivered yet?
	if err := c.attachCheck(ctx, js, info); err != nil {
		return err
	}
	next, last := info.Delivered.Consumer+1, info.Delivered.Stream
	// The carried messages are pending too, but held here, in order.
	outstanding := info.NumAckPending - held
	dropCarry := false
	if (force || outstanding > 0) && !unsupported {
		resp, err := js.ResetConsumer(ctx, c.conf.Stream, durable)
		switch {
		case err == nil:
			c.log.Infof("Reset consumer %s to stream sequence %d (%d deliveries were unacknowledged), so delivery resumes in order", durable, resp.ResetSeq, outstanding)
			next, last = resp.Delivered.Consumer+1, resp.ResetSeq-1
			dropCarry = true // no longer delivered: they come again
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("reset consumer %s: %w", durable, err)
		case errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || isAPIError(err):
			c.log.Warnf("This NATS server cannot reset consumer %s (%v): %d unacknowledged deliveries will be redelivered after ack_wait, possibly after newer changes; use a nats-server with the consumer reset API", durable, err, outstanding)
			unsupported = true
		default:
			return fmt.Errorf("reset consumer %s: %w", durable, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if dropCarry {
		c.carry = nil
	}
	c.resync, c.forceReset, c.resetUnsupported = false, false, unsupported
	c.nextDeliverySeq, c.lastStreamSeq = next, last
	if unsupported {
		c.nextDeliverySeq = 0 // cannot recover from a gap anyway
	}
	return nil
}

func isAPIError(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

// checkSequence verifies that msgs continue the delivery sequence: no
// delivery was lost (consumer sequences are consecutive) and nothing older
// than what was handed out comes back (stream sequences increase). Otherwise
// it schedules a reset and reports false; the messages are dropped unacked
// and come again, in order, after the reset. It also reports whether a
// message skipped stream sequences, and the one it skipped after: the
// stream may have lost them (gapCheck).
func (c *Consumer) checkSequence(msgs []jetstream.Msg) (ok, jumped bool, after uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, last := c.nextDeliverySeq, c.lastStreamSeq
	for _, m := range msgs {
		meta, err := m.Metadata()
		var problem string
		switch {
		case err != nil:
			problem = fmt.Sprintf("unreadable delivery metadata: %v", err)
		case next != 0 && meta.Sequence.Consumer != next:
			problem = fmt.Sprintf("delivery %d arrived when %d was expected (deliveries were lost)", meta.Sequence.Consumer, next)
		case meta.Sequence.Stream <= last:
			problem = fmt.Sprintf("stream sequence %d arrived after %d (a redelivery of an older message)", meta.Sequence.Stream, last)
		}
		if problem != "" {
			if c.resetUnsupported {
				c.log.Warnf("Consumer %s: %s; the order of changes may be wrong from here", c.conf.Durable, problem)
			} else {
				c.log.Warnf("Consumer %s: %s; resetting it so changes stay in order (is another worker using it?)", c.conf.Durable, problem)
				c.forceReset = true
				return false, false, 0
			}
		}
		if err == nil {
			if !jumped && meta.Sequence.Stream > last+1 {
				jumped, after = true, last
			}
			next, last = meta.Sequence.Consumer+1, max(last, meta.Sequence.Stream)
		}
	}
	if c.nextDeliverySeq != 0 {
		c.nextDeliverySeq = next
	}
	c.lastStreamSeq = last
	return true, jumped, after
}

// fetch returns the messages to add to have (the carried messages) for a
// batch: without carried messages it waits (ctx allowing) for a first one,
// then it takes more until the batch is full or nothing more came within
// FetchWait. Every pull request is bounded and read to its end, so no
// message is delivered to this consumer that it does not return.
func (c *Consumer) fetch(ctx context.Context, cons jetstream.Consumer, have []jetstream.Msg) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for len(have) == 0 && len(msgs) == 0 {
		pollCtx, cancel := context.WithTimeout(ctx, pollWait)
		got, err := drainFetch(cons.Fetch(1, jetstream.FetchContext(pollCtx)))
		cancel()
		msgs = append(msgs, got...)
		if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return msgs, fmt.Errorf("fetch from consumer %s: %w", c.conf.Durable, err)
		}
	}
	deadline := time.Now().Add(c.conf.FetchWait)
	for {
		all := slices.Concat(have, msgs)
		remaining := c.conf.room(all)
		if remaining <= 0 {
			return msgs, nil
		}
		// Ask for as many messages as fill the batch if they cost what the
		// last one did (a snapshot or a large transaction likely goes on
		// in packs); what exceeds the batch is carried to the next one.
		perMsg := int64(c.conf.SnapshotBatch) // an event
		if len(all) > 0 {
			perMsg = c.conf.cost(all[len(all)-1].Headers())
		}
		want := int(max(remaining/perMsg, 1))
		got, err := drainFetch(cons.Fetch(want,
			jetstream.FetchMaxWait(max(time.Until(deadline), time.Millisecond)),
			jetstream.FetchMaxBytes(gatherMaxBytes)))
		msgs = append(msgs, got...)
		if err != nil {
			return msgs, fmt.Errorf("fetch from consumer %s: %w", c.conf.Durable, err)
		}
		if len(got) < want {
			return msgs, nil // nothing more within FetchWait (or the byte bound)
		}
	}
}

// drainFetch reads a fetch (started with err) to its end. The end of a pull
// request (no messages, request timeout, batch completed) is not an error.
func drainFetch(res jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range res.Messages() {
		msgs = append(msgs, m)
	}
	err = res.Error()
	if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrBatchCompleted) {
		return msgs, nil
	}
	return msgs, err
}

// A batch is full when its change events reach BatchSize or the rows of its
// copy packs SnapshotBatch, or both together in proportion: each message
// costs its events times SnapshotBatch, or its rows times BatchSize, against
// a batch of BatchSize times SnapshotBatch.

// cost is what a message (by its headers) takes of a batch.
func (c *Config) cost(h nats.Header) int64 {
	n := int64(jsproto.EventCount(h))
	if jsproto.IsCopyPack(h) {
		return n * int64(c.BatchSize)
	}
	return n * int64(c.SnapshotBatch)
}

// room is how much msgs leave of a batch (negative when they exceed it). A
// barrier copy (jsproto.HeaderBarrier) fills the batch: it is a batch of its
// own (see split), so nothing is fetched after it.
func (c *Config) room(msgs []jetstream.Msg) int64 {
	left := int64(c.BatchSize) * int64(c.SnapshotBatch)
	for _, m := range msgs {
		if isBarrier(m) {
			return 0
		}
		left -= c.cost(m.Headers())
	}
	return left
}

// isBarrier reports whether m is a barrier copy of a partitioned group.
func isBarrier(m jetstream.Msg) bool { return m.Headers().Get(jsproto.HeaderBarrier) != "" }

// full reports whether msgs fill a batch.
func (c *Config) full(msgs []jetstream.Msg) bool { return c.room(msgs) <= 0 }

// split cuts msgs after as many messages as fit in a batch, at least one: a
// packed message is never split. A barrier copy is a batch of its own: the
// worker coordinates with the other partitions once everything before it
// was delivered.
func (c *Config) split(msgs []jetstream.Msg) (batch, rest []jetstream.Msg) {
	left := int64(c.BatchSize) * int64(c.SnapshotBatch)
	for i, m := range msgs {
		if isBarrier(m) {
			if i == 0 {
				return msgs[:1], msgs[1:]
			}
			return msgs[:i], msgs[i:]
		}
		left -= c.cost(m.Headers())
		if left < 0 && i > 0 {
			return msgs[:i], msgs[i:]
		}
	}
	return msgs, nil
}

// readErr maps a read error: a lost connection or consumer is
// ErrNotConnected, a cancelled read says so.
func (c *Consumer) readErr(ctx context.Context, nc *nats.Conn, err error) error {
	if ctx.Err() != nil {
		return c.doneErr(ctx)
	}
	if !nc.IsConnected() || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrServerShutdown) {
		c.log.Warnf("Lost the JetStream consumer %s: %v", c.conf.Durable, err)
		return ErrNotConnected
	}
	return err
}

// doneErr is the error of a read whose ctx ended: ErrClosed when Close
// ended it.
func (c *Consumer) doneErr(ctx context.Context) error {
	if c.shut.Err() != nil {
		return ErrClosed
	}
	return ctx.Err()
}

// sleep waits d, or less when ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// keepAlive tells JetStream every third of ack_wait, until stop, that msgs
// are still being worked on, so they are not redelivered while the pipeline
// retries.
func (c *Consumer) keepAlive(stop <-chan struct{}, msgs []jetstream.Msg) {
	t := time.NewTicker(c.conf.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, m := range msgs {
				if err := m.InProgress(); err != nil {
					c.log.Debugf("Mark message in progress: %v", err)
				}
			}
		}
	}
}

// nak hands msgs back to JetStream, for another delivery.
func nak(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}

// Done ends the batch once the pipeline delivered it (err nil: its messages
// are acknowledged) or gave up on it (they are handed back and the consumer
// rewound, so they come again first, after a back-off that grows while
// failures repeat). Only then is the next batch read.
func (b *Batch) Done(err error) error {
	c := b.c
	var ackErr error
	ended := b.end(func() {
		if err != nil {
			nak(b.Msgs)
			c.mu.Lock()
			c.forceReset = true
			c.retryWait = min(max(2*c.retryWait, retryMin), retryMax)
			wait := c.retryWait
			c.mu.Unlock()
			c.log.Warnf("Batch of %d messages rejected downstream (%v); it is read again in %v", len(b.Msgs), err, wait)
			return
		}
		for _, m := range b.Msgs {
			if err := m.Ack(); err != nil && ackErr == nil {
				ackErr = fmt.Errorf("acknowledge %d jetstream messages of consumer %s: %w", len(b.Msgs), c.conf.Durable, err)
			}
		}
		c.mu.Lock()
		c.retryWait = 0
		if ackErr != nil {
			c.forceReset = true // the messages stay pending: rewind so they come next
		}
		c.mu.Unlock()
		if ackErr == nil {
			c.noteAcked(b.Msgs)
		}
	})
	if !ended {
		return ErrBatchEnded
	}
	return ackErr
}

// end runs f, stops keeping the batch in progress and lets the next batch be
// read, once: by Done or by Close. It reports whether it ran.
func (b *Batch) end(f func()) bool {
	ran := false
	b.once.Do(func() {
		ran = true
		close(b.stop)
		f()
		c := b.c
		c.mu.Lock()
		if c.inflight == b {
			c.inflight = nil
		}
		c.mu.Unlock()
		<-c.turn
	})
	return ran
}

// Close hands an unacknowledged batch back to JetStream (Nak, so the next
// worker gets it first) and drains the connection. It is safe to call more
// than once.
func (c *Consumer) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.shutCancel()
	b, carry, ahead, nc, rec := c.inflight, c.carry, c.ahead, c.nc, c.record
	c.inflight, c.carry, c.ahead, c.nc, c.js, c.cons = nil, nil, nil, nil, nil, nil
	c.mu.Unlock()

	// Hand back in order: the batch, then what was fetched after it.
	if b != nil {
		b.end(func() { nak(b.Msgs) })
	}
	nak(carry)
	if ahead != nil {
		// shutCancel ends the fetch made ahead; hand back what it got.
		select {
		case <-ahead.done:
			nak(ahead.msgs)
		case <-ctx.Done():
		}
	}
	if nc == nil {
		return nil
	}
	if rec != nil {
		// shutCancel stopped the recorder; write the last position.
		select {
		case <-rec.done:
			if err := rec.write(ctx); err != nil {
				c.log.Warnf("Consumer %s: %v", c.conf.Durable, err)
			}
		case <-ctx.Done():
		}
	}
	return jsproto.Drain(ctx, nc)
}
