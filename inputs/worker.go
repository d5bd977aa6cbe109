package inputs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/natsconf"
	"github.com/pgflo/pgflo/internal/packmsg"
)

// Field names of pg_flo_worker; the connection fields are natsconf's.
const (
	workerFieldGroup          = "group"
	workerFieldStream         = "stream"
	workerFieldDurable        = "durable"
	workerFieldFilterSubjects = "filter_subjects"
	workerFieldBatchSize      = "batch_size"
	workerFieldSnapshotBatch  = "snapshot_batch_rows"
	workerFieldFetchWait      = "fetch_wait"
	workerFieldAckWait        = "ack_wait"
	workerFieldMaxAckPending  = "max_ack_pending"
	workerFieldDeliver        = "deliver"
	workerFieldSnapshotPacks  = "snapshot_packs"
)

// Default batch sizes: pg_flo's, and with snapshot_packs: keep four packs.
const (
	workerBatchSize     = 1000
	workerBatchSizeKeep = 16384
	// workerSnapshotBatch is snapshot_batch_rows' default: 128 packs (a
	// fetch's byte bound, workerGatherMaxBytes, caps a batch of wide rows).
	workerSnapshotBatch = 131072
)

// Values of snapshot_packs.
const (
	workerPacksExpand = "expand"
	workerPacksKeep   = "keep"
)

// WorkerMetaStreamSeq is the metadata key holding the JetStream stream
// sequence of the message an event came from.
const WorkerMetaStreamSeq = "pg_flo_stream_seq"

// workerPollWait bounds one long poll for the first message of a batch, so a
// dead connection is noticed even when the stream is idle.
const workerPollWait = 5 * time.Second

// workerGatherMaxBytes bounds the bytes fetched at once after a batch's first
// message, so memory stays bounded whatever the pack sizes.
const workerGatherMaxBytes = 32 << 20

// errWorkerClosed is returned by a closed pg_flo_worker.
var errWorkerClosed = errors.New("pg_flo_worker: input is closed")

func workerSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Consumes a group's pg_flo change events from NATS JetStream with a durable pull consumer, acknowledging each message only after the pipeline delivered its events.").
		Description(`
The worker half of pg_flo's data path: reads what `+"`pg_flo_jetstream`"+` stored in the stream
`+"`pgflo_<group>_stream`"+` through the durable consumer `+"`pgflo_<group>_consumer`"+`, created when missing
(explicit acks, unlimited redeliveries) and otherwise reused. Packed messages are unpacked: each event
becomes one message of the batch, with the metadata `+"`pg_flo_op`, `pg_flo_schema`, `pg_flo_table`, `pg_flo_lsn`"+`,
`+"`pg_flo_stream_seq`"+` and, when the message has a pgflo de-duplication id, `+"`pg_flo_tx`"+` and `+"`pg_flo_tx_pos`"+`.

Snapshot rows arrive as copy packs (`+"`Pgflo-Format: copy`"+`, up to 1024 rows of a table in COPY text, see
`+"`snapshot_packs`"+` of `+"`pg_flo_replicator`"+`). By default (`+"`snapshot_packs: expand`"+`) each row becomes one message
holding its change event (an INSERT with `+"`\"snapshot\": true`"+`) with the metadata above, so every stock output
and processor sees one change event per message. With `+"`snapshot_packs: keep`"+` a pack stays one message, its
body the pack (header line and COPY rows), with the same metadata plus `+"`pg_flo_pack_rows`"+` (the number of
rows; `+"`pg_flo_tx_pos`"+` is the first row's position): `+"`pg_flo_postgres`"+` copies such rows into the target
unchanged and pgflo's processors expand them themselves, so a snapshot costs no per-row work until then.

### Delivery

- **At least once**: a JetStream message is acknowledged only when the output acknowledged every event of
  its batch; never before. pg_flo acknowledged on receipt with one delivery attempt (MaxDeliver 1), so a failed
  write lost data; this consumer has no delivery limit.
- **In order, even across failures**: changes to one row must be applied in commit order, so the worker keeps
  exactly one batch in flight. The next batch is read only after the previous one was acknowledged. A batch
  the output rejects is sent again, unchanged and in order, with back-off, before anything newer; while it is
  pending the worker tells JetStream it is in progress (every third of `+"`ack_wait`"+`) so it is not
  redelivered meanwhile. Messages are fetched only for the next batch (what exceeds it waits for the batch
  after, kept in progress too), so no prefetched message can expire and come back out of order.
- **Restarts**: when the worker starts (or reconnects) and the consumer still has unacknowledged deliveries,
  from a worker that crashed or lost its connection, the consumer is reset to its acknowledgement floor, so
  delivery resumes with the oldest unacknowledged change instead of newer ones with the old ones redelivered
  after `+"`ack_wait`"+`. For the same reason a gap or a step back in the delivery sequence also resets the
  consumer. A reset repeats changes already applied, which idempotent outputs absorb. One worker per group:
  several workers sharing the durable consumer would reorder changes (and reset each other).
- **Malformed messages are not dropped**: a message whose packing is broken, or an event that is not a
  valid pg_flo change event, is delivered as is, flagged with an error naming its stream sequence
  (`+"`errored()`"+` in Bloblang) and logged. An output that cannot use it fails, which stops the group at that
  change and retries it; a `+"`switch`"+` output on `+"`errored()`"+` can send it to a dead-letter destination
  instead. Messages are never terminated.`).
		Field(natsconf.URLField()).
		Fields(
			service.NewStringField(workerFieldGroup).
				Description("Replication group, as in pg_flo: names the stream (`pgflo_<group>_stream`), the consumer (`pgflo_<group>_consumer`) and the subjects (`pgflo.<group>.…`).").
				Example("users"),
			service.NewStringField(workerFieldStream).
				Description("Stream name; empty means pg_flo's `pgflo_<group>_stream`.").
				Default("").
				Advanced(),
			service.NewStringField(workerFieldDurable).
				Description("Durable consumer name; empty means pg_flo's `pgflo_<group>_consumer`.").
				Default("").
				Advanced(),
			service.NewStringListField(workerFieldFilterSubjects).
				Description("Subjects to consume; empty means every table of the group, `pgflo.<group>.>`. Subjects are `pgflo.<group>.<schema>.<table>`, so a worker can take a subset of tables.").
				Default([]any{}).
				Example([]string{"pgflo.users.public.users", "pgflo.users.public.orders"}).
				Advanced(),
			service.NewIntField(workerFieldBatchSize).
				Description("Most change events in one batch, as pg_flo's `--batch-size`; a pack of snapshot rows counts its rows. A packed JetStream message is never split, so a batch holds at least one message even when it has more events. Default: 1000, as pg_flo (one message per event costs the most there, and smaller batches are faster); 16384 with `snapshot_packs: keep`, where a batch of snapshot rows is sixteen packs that `pg_flo_postgres` writes over several connections at once, and a backlog is applied in fewer, larger transactions.").
				Optional(),
			service.NewIntField(workerFieldSnapshotBatch).
				Description("With `snapshot_packs: keep`: most snapshot rows (of copy packs) in one batch; change events still count against `batch_size`, and a batch holding both is full when its events and rows together reach their limits (each in proportion). `pg_flo_postgres` writes a batch's packs over its `copy_connections` at once and commits them together, so larger batches of snapshot rows mean fewer pauses between them: an initial sync is faster, while a backlog of changes keeps its smaller batches.").
				Default(workerSnapshotBatch).
				Advanced(),
			service.NewDurationField(workerFieldFetchWait).
				Description("Once a message arrived, how long to wait for more before the batch goes out smaller than `batch_size`.").
				Default("50ms").
				Advanced(),
			service.NewDurationField(workerFieldAckWait).
				Description("How long JetStream waits for an acknowledgement before redelivering, set on the consumer. A pending batch is kept alive, so this only matters when the worker dies.").
				Default("10m").
				Advanced(),
			service.NewIntField(workerFieldMaxAckPending).
				Description("Most unacknowledged messages of the consumer; 0 means twice `batch_size` (the batch in flight and the next one, fetched meanwhile). Must be at least `batch_size`.").
				Default(0).
				Advanced(),
			service.NewStringAnnotatedEnumField(workerFieldDeliver, map[string]string{
				"all": "Start with the oldest message in the stream.",
				"new": "Start with messages stored after the consumer was created.",
			}).
				Description("Where a newly created consumer starts; an existing consumer keeps its position.").
				Default("all").
				Advanced(),
			service.NewStringAnnotatedEnumField(workerFieldSnapshotPacks, map[string]string{
				workerPacksExpand: "One message per snapshot row, holding its change event (an INSERT with `\"snapshot\": true`) and the usual metadata: for any output or processor, which all see one change event per message.",
				workerPacksKeep:   "One message per pack, its body the pack's rows as COPY wrote them (text, or binary for tables of built-in types) after a header line, with `pg_flo_pack_rows` set to the number of rows and `pg_flo_tx_pos` to the first row's position. Only for pipelines whose processors and output understand packs: `pg_flo_postgres` (which copies the rows unchanged) and pgflo's processors (which expand them). A stock processor or output would see the pack as one opaque message.",
			}).
				Description("What becomes of a message holding packed snapshot rows (`Pgflo-Format: copy`). `batch_size` counts a pack's rows either way. Use `keep` in front of `pg_flo_postgres`.").
				Default(workerPacksExpand),
		).
		Fields(natsconf.AuthFields()...).
		Example("Worker to PostgreSQL", "Apply a group's changes to a target database.", `
input:
  pg_flo_worker:
    url: nats://localhost:4222
    group: users
    snapshot_packs: keep # pg_flo_postgres copies snapshot rows as they are
output:
  pg_flo_postgres:
    dsn: postgres://writer:secret@dest-db:5432/myapp
    group: users
`)
}

func init() {
	err := service.RegisterBatchInput("pg_flo_worker", workerSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newWorkerInput(conf, mgr)
			if err != nil {
				return nil, err
			}
			// No AutoRetryNacksBatched: a nacked batch is handed back to
			// JetStream and the consumer rewound, so it is read again
			// before anything newer (see ackFunc). That costs a fetch per
			// failure instead of a wrapper's bookkeeping per message.
			return in, nil
		})
	if err != nil {
		panic(err)
	}
}

// workerConfig is the parsed configuration of pg_flo_worker.
type workerConfig struct {
	conn           jsproto.ConnConfig
	group          string
	stream         string
	durable        string
	filterSubjects []string
	batchSize      int
	// snapshotBatch is the most rows of copy packs in a batch (batch_size
	// with snapshot_packs: expand, which makes them events).
	snapshotBatch int
	fetchWait     time.Duration
	ackWait       time.Duration
	maxAckPending int
	deliverNew    bool
	keepPacks     bool // snapshot_packs: keep
}

func workerParseConfig(conf *service.ParsedConfig) (workerConfig, error) {
	var c workerConfig
	r := confread.New(conf)
	c.group = r.String(workerFieldGroup)
	c.stream = r.String(workerFieldStream)
	c.durable = r.String(workerFieldDurable)
	c.filterSubjects = r.StringList(workerFieldFilterSubjects)
	if conf.Contains(workerFieldBatchSize) {
		c.batchSize = r.Int(workerFieldBatchSize)
	}
	c.snapshotBatch = r.Int(workerFieldSnapshotBatch)
	c.fetchWait = r.Duration(workerFieldFetchWait)
	c.ackWait = r.Duration(workerFieldAckWait)
	c.maxAckPending = r.Int(workerFieldMaxAckPending)
	deliver := r.String(workerFieldDeliver)
	packs := r.String(workerFieldSnapshotPacks)
	if err := r.Err(); err != nil {
		return c, err
	}

	if err := jsproto.ValidateGroup(c.group); err != nil {
		return c, fmt.Errorf("field %s: %w", workerFieldGroup, err)
	}
	if c.stream == "" {
		c.stream = jsproto.StreamName(c.group)
	} else if err := jsproto.ValidateName("stream", c.stream); err != nil {
		return c, fmt.Errorf("field %s: %w", workerFieldStream, err)
	}
	if c.durable == "" {
		c.durable = jsproto.ConsumerName(c.group)
	} else if err := jsproto.ValidateName("consumer", c.durable); err != nil {
		return c, fmt.Errorf("field %s: %w", workerFieldDurable, err)
	}
	if len(c.filterSubjects) == 0 {
		c.filterSubjects = []string{jsproto.GroupSubjects(c.group)}
	}
	for _, f := range c.filterSubjects {
		if err := jsproto.ValidateFilterSubject(f); err != nil {
			return c, fmt.Errorf("field %s: %w", workerFieldFilterSubjects, err)
		}
	}
	if !conf.Contains(workerFieldBatchSize) {
		c.batchSize = workerBatchSize
		if packs == workerPacksKeep {
			c.batchSize = workerBatchSizeKeep
		}
	}
	if c.batchSize < 1 {
		return c, fmt.Errorf("field %s: must be positive, got %d", workerFieldBatchSize, c.batchSize)
	}
	if c.snapshotBatch < 1 {
		return c, fmt.Errorf("field %s: must be positive, got %d", workerFieldSnapshotBatch, c.snapshotBatch)
	}
	if c.fetchWait < 0 {
		return c, fmt.Errorf("field %s: must not be negative, got %v", workerFieldFetchWait, c.fetchWait)
	}
	if c.ackWait < time.Second {
		return c, fmt.Errorf("field %s: must be at least 1s, got %v", workerFieldAckWait, c.ackWait)
	}
	switch {
	case c.maxAckPending == 0:
		c.maxAckPending = 2 * c.batchSize
	case c.maxAckPending < c.batchSize:
		return c, fmt.Errorf("field %s: %d is less than %s %d, so batches could never fill", workerFieldMaxAckPending, c.maxAckPending, workerFieldBatchSize, c.batchSize)
	}
	switch deliver {
	case "all":
	case "new":
		c.deliverNew = true
	default:
		return c, fmt.Errorf("field %s: unknown policy %q (all or new)", workerFieldDeliver, deliver)
	}
	switch packs {
	case workerPacksExpand:
	case workerPacksKeep:
		c.keepPacks = true
	default:
		return c, fmt.Errorf("field %s: unknown value %q (%s or %s)", workerFieldSnapshotPacks, packs, workerPacksExpand, workerPacksKeep)
	}
	if !c.keepPacks {
		c.snapshotBatch = c.batchSize // the rows become events
	}
	conn, err := natsconf.ParseConn(conf)
	if err != nil {
		return c, err
	}
	c.conn = conn
	c.conn.Name = "pgflo pg_flo_worker " + c.group
	return c, nil
}

// workerBatch is the batch in flight: its JetStream messages, acknowledged
// together when the pipeline acknowledges it.
type workerBatch struct {
	msgs []jetstream.Msg
	// carry are messages already delivered for the next batch; they are
	// kept in progress with this one.
	carry []jetstream.Msg
	// done ends the batch exactly once: by the pipeline's ack, or by Close.
	done sync.Once
	stop chan struct{} // stops the in-progress keeper
}

// workerInput is the pg_flo_worker input.
type workerInput struct {
	conf workerConfig
	log  *service.Logger

	// slot holds a token while a batch is in flight: ReadBatch takes it, the
	// batch's successful ack (or Close) gives it back.
	slot chan struct{}

	shutCtx    context.Context // cancelled by Close
	shutCancel context.CancelFunc

	mu       sync.Mutex
	nc       *nats.Conn
	js       jetstream.JetStream
	cons     jetstream.Consumer
	inflight *workerBatch
	// carry holds messages fetched beyond the last batch's event budget; they
	// start the next batch. Only touched with the slot held, or by Close.
	carry  []jetstream.Msg
	closed bool
	// Position tracking, see syncPosition.
	resync           bool   // check the consumer's position before the next fetch
	forceReset       bool   // reset it to the ack floor before the next fetch
	resetUnsupported bool   // the server has no consumer reset API
	nextDeliverySeq  uint64 // consumer sequence the next delivery must have; 0 = unknown
	lastStreamSeq    uint64 // stream sequence of the last message handed out
	// prefetch, when set, delivers the messages fetched for the next batch
	// while the current one is in flight (started by readBatch, taken by
	// the next readBatch or by Close). Only touched with the slot held, or
	// by Close.
	prefetch       chan workerFetched
	prefetchCancel func()        // ends the fetch made ahead and waits for it
	prefetchDone   chan struct{} // closed once it ended
	// retryWait is how long to wait before reading a batch nacked
	// downstream again (0 after a success).
	retryWait time.Duration
}

// Backoff between deliveries of a batch the pipeline keeps rejecting.
const (
	workerRetryMin = 50 * time.Millisecond
	workerRetryMax = 5 * time.Second
)

// workerFetched is the outcome of a fetch made ahead of time.
type workerFetched struct {
	msgs []jetstream.Msg
	err  error
}

func newWorkerInput(conf *service.ParsedConfig, mgr *service.Resources) (*workerInput, error) {
	c, err := workerParseConfig(conf)
	if err != nil {
		return nil, err
	}
	w := &workerInput{conf: c, log: mgr.Logger(), slot: make(chan struct{}, 1)}
	w.shutCtx, w.shutCancel = context.WithCancel(context.Background())
	w.conf.conn.OnDisconnect = func(err error) {
		if err != nil {
			w.log.Warnf("Disconnected from NATS: %v", err)
		}
	}
	w.conf.conn.OnReconnect = func(url string) {
		w.log.Infof("Reconnected to NATS at %s", url)
		// Deliveries may have been lost with the connection.
		w.mu.Lock()
		w.resync = true
		w.mu.Unlock()
	}
	return w, nil
}

// Connect dials NATS (once; the client then reconnects by itself) and creates
// or reuses the durable consumer. Benthos calls it again after ReadBatch
// reported service.ErrNotConnected; deliveries may have been lost with the
// connection, so the position is checked again before the next fetch.
func (w *workerInput) Connect(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errWorkerClosed
	}
	if w.nc != nil && w.nc.IsClosed() {
		w.nc, w.js, w.cons = nil, nil, nil
	}
	if w.nc == nil {
		nc, err := jsproto.Connect(w.conf.conn)
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return fmt.Errorf("jetstream: %w", err)
		}
		w.nc, w.js = nc, js
	}
	if !w.nc.IsConnected() {
		return fmt.Errorf("waiting for the NATS client to reconnect: %w (status %v)", nats.ErrDisconnected, w.nc.Status())
	}
	cons, err := w.ensureConsumer(ctx)
	if err != nil {
		return err
	}
	w.cons = cons
	w.resync = true
	return nil
}

// ensureConsumer looks the durable consumer up, creating it when missing and
// updating the settings pgflo depends on when they differ. Called with w.mu
// held.
func (w *workerInput) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	stream, err := w.js.Stream(ctx, w.conf.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s not found: pg_flo_jetstream (the replicator's output) creates it when it first connects; start the replicator first, or check %s/%s", w.conf.stream, workerFieldGroup, workerFieldStream)
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", w.conf.stream, err)
	}
	want := jetstream.ConsumerConfig{
		Durable:       w.conf.durable,
		Description:   "pgflo worker of group " + w.conf.group,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.conf.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: w.conf.maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if w.conf.deliverNew {
		want.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	workerSetFilters(&want, w.conf.filterSubjects)

	cons, err := stream.Consumer(ctx, w.conf.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = stream.CreateConsumer(ctx, want)
		if err == nil {
			w.log.Infof("Created durable consumer %s on stream %s (subjects %v)", w.conf.durable, w.conf.stream, w.conf.filterSubjects)
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = stream.Consumer(ctx, w.conf.durable) // created concurrently
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up consumer %s on stream %s: %w", w.conf.durable, w.conf.stream, err)
	}

	have := cons.CachedInfo().Config
	if have.DeliverSubject != "" {
		return nil, fmt.Errorf("consumer %s on stream %s is a push consumer; pg_flo_worker needs a pull consumer: delete it (nats consumer rm %s %s) or set %s", w.conf.durable, w.conf.stream, w.conf.stream, w.conf.durable, workerFieldDurable)
	}
	if have.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("consumer %s on stream %s acknowledges %v; pg_flo_worker needs explicit acks: delete it (nats consumer rm %s %s) or set %s", w.conf.durable, w.conf.stream, have.AckPolicy, w.conf.stream, w.conf.durable, workerFieldDurable)
	}
	update := have
	update.AckWait = want.AckWait
	update.MaxDeliver = want.MaxDeliver
	update.MaxAckPending = want.MaxAckPending
	workerSetFilters(&update, w.conf.filterSubjects)
	if slices.Equal(workerFilters(have), workerFilters(update)) && have.AckWait == update.AckWait &&
		have.MaxDeliver == update.MaxDeliver && have.MaxAckPending == update.MaxAckPending {
		return cons, nil
	}
	if cons, err = stream.UpdateConsumer(ctx, update); err != nil {
		return nil, fmt.Errorf("update consumer %s on stream %s: %w", w.conf.durable, w.conf.stream, err)
	}
	w.log.Infof("Updated consumer %s: subjects %v -> %v, max deliver %d -> unlimited, ack wait %v -> %v, max ack pending %d -> %d",
		w.conf.durable, workerFilters(have), workerFilters(update), have.MaxDeliver, have.AckWait, update.AckWait, have.MaxAckPending, update.MaxAckPending)
	return cons, nil
}

func workerSetFilters(c *jetstream.ConsumerConfig, subjects []string) {
	c.FilterSubject, c.FilterSubjects = "", nil
	if len(subjects) == 1 {
		c.FilterSubject = subjects[0]
	} else {
		c.FilterSubjects = slices.Clone(subjects)
	}
}

func workerFilters(c jetstream.ConsumerConfig) []string {
	if c.FilterSubject != "" {
		return []string{c.FilterSubject}
	}
	return c.FilterSubjects
}

// ReadBatch returns the next batch once the previous one was acknowledged:
// exactly one batch is in flight, so a batch that fails downstream is resent
// (handed back to JetStream and read again) before anything newer.
func (w *workerInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(w.shutCtx, cancel)
	defer stop()

	select {
	case w.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, w.doneErr(ctx)
	}
	batch, ackFn, err := w.readBatch(ctx)
	if err != nil {
		<-w.slot
		return nil, nil, err
	}
	return batch, ackFn, nil
}

func (w *workerInput) doneErr(ctx context.Context) error {
	if w.shutCtx.Err() != nil {
		return errWorkerClosed
	}
	return ctx.Err()
}

// readBatch fetches, checks and converts one batch. It runs with the slot
// held, so nothing is in flight.
func (w *workerInput) readBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	w.mu.Lock()
	closed, nc, cons := w.closed, w.nc, w.cons
	w.mu.Unlock()
	if closed {
		return nil, nil, errWorkerClosed
	}
	if nc == nil || cons == nil || !nc.IsConnected() {
		return nil, nil, service.ErrNotConnected
	}

	w.mu.Lock()
	wait := w.retryWait
	w.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, nil, w.doneErr(ctx)
		}
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Back off a little when resets keep being needed (another
			// consumer on the durable?), without hammering the server.
			select {
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second)):
			case <-ctx.Done():
				return nil, nil, w.doneErr(ctx)
			}
		}
		ahead, ok := w.takePrefetch(ctx)
		if !ok {
			return nil, nil, w.doneErr(ctx)
		}
		if err := w.syncPosition(ctx); err != nil {
			return nil, nil, w.readErr(ctx, nc, err)
		}
		w.mu.Lock()
		msgs := w.carry
		w.carry = nil
		w.mu.Unlock()
		if ahead != nil || !w.conf.full(msgs) {
			var fetched []jetstream.Msg
			var err error
			if ahead != nil {
				fetched, err = ahead.msgs, ahead.err
			} else {
				fetched, err = w.fetch(ctx, cons, msgs)
			}
			if err != nil {
				w.mu.Lock()
				w.carry = msgs
				if len(fetched) > 0 {
					// Fetched but neither handed out nor acknowledged:
					// rewind so they come first next time.
					w.forceReset = true
				}
				w.mu.Unlock()
				return nil, nil, w.readErr(ctx, nc, err)
			}
			if !w.checkSequence(fetched) {
				continue // dropped unacked; the reset brings them again
			}
			msgs = append(msgs, fetched...)
		}
		msgs, carry := w.conf.split(msgs)
		b := &workerBatch{msgs: msgs, carry: carry, stop: make(chan struct{})}
		w.mu.Lock()
		if w.closed {
			// Closed while fetching: hand everything back, in order.
			w.mu.Unlock()
			for _, m := range slices.Concat(msgs, carry) {
				_ = m.Nak()
			}
			return nil, nil, errWorkerClosed
		}
		w.inflight, w.carry = b, carry
		w.mu.Unlock()
		go w.keepInProgress(b)
		if !w.conf.full(carry) {
			w.startPrefetch(cons, carry)
		}
		return w.toMessages(msgs), w.ackFunc(b), nil
	}
}

// startPrefetch fetches the next batch's messages while the current batch is
// in flight, so the pipeline does not wait for a pull request after every
// acknowledgement. The fetch is the one readBatch would make next (after
// the carried messages); it is only read once that batch is acknowledged.
func (w *workerInput) startPrefetch(cons jetstream.Consumer, carry []jetstream.Msg) {
	ctx, cancel := context.WithCancel(w.shutCtx)
	ch := make(chan workerFetched, 1)
	done := make(chan struct{})
	w.prefetch, w.prefetchDone = ch, done
	w.prefetchCancel = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		msgs, err := w.fetch(ctx, cons, carry)
		// Unpack the messages now, while the batch before is written:
		// decompressing copy packs and building a message per event would
		// otherwise be a pause between two batches on the target.
		mb := messageBuilder{w: w}
		for i, m := range msgs {
			msgs[i] = mb.unpack(m)
		}
		ch <- workerFetched{msgs, err}
		// Until taken, they are pending like the batch: keep them alive.
		w.keepAlive(ctx.Done(), msgs)
	}()
}

// takePrefetch waits for the fetch made ahead, if any (nil when none). A
// position check or reset pending (a nacked batch, a reconnect) makes what
// it brought stale: it is handed back (Nak) and the fetch made again after
// the reset. ok is false when ctx ended first; the fetch is then kept.
func (w *workerInput) takePrefetch(ctx context.Context) (ahead *workerFetched, ok bool) {
	if w.prefetch == nil {
		return nil, true
	}
	var r workerFetched
	select {
	case r = <-w.prefetch:
	case <-ctx.Done():
		return nil, false
	}
	w.prefetchCancel()
	w.prefetch, w.prefetchCancel, w.prefetchDone = nil, nil, nil
	w.mu.Lock()
	stale := w.resync || w.forceReset
	w.mu.Unlock()
	if stale {
		for _, m := range r.msgs {
			_ = m.Nak()
		}
		return nil, true
	}
	if r.err != nil && errors.Is(r.err, context.Canceled) && len(r.msgs) == 0 {
		return nil, true
	}
	return &r, true
}

// A batch is full when its change events reach batch_size or the rows of
// its copy packs snapshot_batch_rows, or both together in proportion: each
// message costs its events times snapshot_batch_rows, or its rows times
// batch_size, against a batch of batch_size times snapshot_batch_rows.

// cost is what a message (by its headers) takes of a batch.
func (c *workerConfig) cost(h nats.Header) int64 {
	n := int64(jsproto.EventCount(h))
	if jsproto.IsCopyPack(h) {
		return n * int64(c.batchSize)
	}
	return n * int64(c.snapshotBatch)
}

// room is how much msgs leave of a batch (negative when they exceed it).
func (c *workerConfig) room(msgs []jetstream.Msg) int64 {
	left := int64(c.batchSize) * int64(c.snapshotBatch)
	for _, m := range msgs {
		left -= c.cost(m.Headers())
	}
	return left
}

// full reports whether msgs fill a batch.
func (c *workerConfig) full(msgs []jetstream.Msg) bool { return c.room(msgs) <= 0 }

// split cuts msgs after as many messages as fit in a batch, at least one: a
// packed message is never split.
func (c *workerConfig) split(msgs []jetstream.Msg) (batch, rest []jetstream.Msg) {
	left := int64(c.batchSize) * int64(c.snapshotBatch)
	for i, m := range msgs {
		left -= c.cost(m.Headers())
		if left < 0 && i > 0 {
			return msgs[:i], msgs[i:]
		}
	}
	return msgs, nil
}

// readErr maps a read error: a lost connection or consumer makes Benthos
// reconnect (service.ErrNotConnected), a cancelled read says so.
func (w *workerInput) readErr(ctx context.Context, nc *nats.Conn, err error) error {
	if ctx.Err() != nil {
		return w.doneErr(ctx)
	}
	if !nc.IsConnected() || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrServerShutdown) {
		w.log.Warnf("Lost the JetStream consumer %s: %v", w.conf.durable, err)
		return service.ErrNotConnected
	}
	return err
}

func (w *workerInput) setForceReset() {
	w.mu.Lock()
	w.forceReset = true
	w.mu.Unlock()
}

// syncPosition makes sure the next delivery is the oldest unacknowledged
// message, as ordering needs. When deliveries are outstanding that this input
// does not hold (left by a crashed worker, lost with a connection, discarded
// after an error), JetStream would redeliver them only after ack_wait, after
// newer ones; resetting the consumer to its ack floor delivers them first. It
// also records the sequences checkSequence expects.
func (w *workerInput) syncPosition(ctx context.Context) error {
	w.mu.Lock()
	resync, force, unsupported, js, cons := w.resync, w.forceReset, w.resetUnsupported, w.js, w.cons
	held := len(w.carry)
	w.mu.Unlock()
	if !resync && !force {
		return nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s info: %w", w.conf.durable, err)
	}
	next, last := info.Delivered.Consumer+1, info.Delivered.Stream
	// The carried messages are pending too, but held here, in order.
	outstanding := info.NumAckPending - held
	if (force || outstanding > 0) && !unsupported {
		resp, err := js.ResetConsumer(ctx, w.conf.stream, w.conf.durable)
		switch {
		case err == nil:
			w.log.Infof("Reset consumer %s to stream sequence %d (%d deliveries were unacknowledged), so delivery resumes in order", w.conf.durable, resp.ResetSeq, outstanding)
			next, last = resp.Delivered.Consumer+1, resp.ResetSeq-1
			w.mu.Lock()
			w.carry = nil // no longer delivered: they come again
			w.mu.Unlock()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("reset consumer %s: %w", w.conf.durable, err)
		case errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || workerIsAPIError(err):
			w.log.Warnf("This NATS server cannot reset consumer %s (%v): %d unacknowledged deliveries will be redelivered after ack_wait, possibly after newer changes; use a nats-server with the consumer reset API", w.conf.durable, err, outstanding)
			unsupported = true
		default:
			return fmt.Errorf("reset consumer %s: %w", w.conf.durable, err)
		}
	}
	w.mu.Lock()
	w.resync, w.forceReset, w.resetUnsupported = false, false, unsupported
	w.nextDeliverySeq, w.lastStreamSeq = next, last
	if unsupported {
		w.nextDeliverySeq = 0 // cannot recover from a gap anyway
	}
	w.mu.Unlock()
	return nil
}

func workerIsAPIError(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

// checkSequence verifies that msgs continue the delivery sequence: no
// delivery was lost (consumer sequences are consecutive) and nothing older
// than what was handed out comes back (stream sequences increase). Otherwise
// it schedules a reset and reports false; the messages are dropped unacked
// and come again, in order, after the reset.
func (w *workerInput) checkSequence(msgs []jetstream.Msg) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	next, last := w.nextDeliverySeq, w.lastStreamSeq
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
			if w.resetUnsupported {
				w.log.Warnf("Consumer %s: %s; the order of changes may be wrong from here", w.conf.durable, problem)
			} else {
				w.log.Warnf("Consumer %s: %s; resetting it so changes stay in order (is another worker using it?)", w.conf.durable, problem)
				w.forceReset = true
				return false
			}
		}
		if err == nil {
			next, last = meta.Sequence.Consumer+1, max(last, meta.Sequence.Stream)
		}
	}
	if w.nextDeliverySeq != 0 {
		w.nextDeliverySeq = next
	}
	w.lastStreamSeq = last
	return true
}

// fetch returns the messages to add to have (the carried messages) for a
// batch: without carried messages it waits (ctx allowing) for a first one,
// then it takes more until batch_size events are reached or nothing more came
// within fetch_wait. Every pull request is bounded and read to its end, so no
// message is delivered to this input that it does not return.
func (w *workerInput) fetch(ctx context.Context, cons jetstream.Consumer, have []jetstream.Msg) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for len(have) == 0 && len(msgs) == 0 {
		pollCtx, cancel := context.WithTimeout(ctx, workerPollWait)
		res, err := cons.Fetch(1, jetstream.FetchContext(pollCtx))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("fetch from consumer %s: %w", w.conf.durable, err)
		}
		got, err := workerDrainFetch(res)
		cancel()
		msgs = append(msgs, got...)
		if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return msgs, fmt.Errorf("fetch from consumer %s: %w", w.conf.durable, err)
		}
	}
	deadline := time.Now().Add(w.conf.fetchWait)
	for {
		all := slices.Concat(have, msgs)
		remaining := w.conf.room(all)
		if remaining <= 0 {
			return msgs, nil
		}
		// Ask for as many messages as fill the batch if they cost what the
		// last one did (a snapshot or a large transaction likely goes on
		// in packs); what exceeds the batch is carried to the next one.
		perMsg := int64(w.conf.snapshotBatch) // an event
		if len(all) > 0 {
			perMsg = w.conf.cost(all[len(all)-1].Headers())
		}
		want := int(max(remaining/perMsg, 1))
		res, err := cons.Fetch(want,
			jetstream.FetchMaxWait(max(time.Until(deadline), time.Millisecond)),
			jetstream.FetchMaxBytes(workerGatherMaxBytes))
		if err != nil {
			return msgs, fmt.Errorf("fetch from consumer %s: %w", w.conf.durable, err)
		}
		got, err := workerDrainFetch(res)
		msgs = append(msgs, got...)
		if err != nil {
			return msgs, fmt.Errorf("fetch from consumer %s: %w", w.conf.durable, err)
		}
		if len(got) < want {
			return msgs, nil // nothing more within fetch_wait (or the byte bound)
		}
	}
}

// workerDrainFetch reads a fetch to its end. The end of a pull request
// (no messages, request timeout, batch completed) is not an error.
func workerDrainFetch(res jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for m := range res.Messages() {
		msgs = append(msgs, m)
	}
	err := res.Error()
	if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrBatchCompleted) {
		return msgs, nil
	}
	return msgs, err
}

// toMessages unpacks the JetStream messages into one Benthos message per
// event with its routing metadata; a copy pack becomes one message per row,
// or one for the pack with snapshot_packs: keep. Malformed input is flagged,
// never dropped. Messages unpacked ahead (startPrefetch) are taken as they
// are.
func (w *workerInput) toMessages(msgs []jetstream.Msg) service.MessageBatch {
	batch := make(service.MessageBatch, 0, len(msgs))
	mb := messageBuilder{w: w}
	for _, m := range msgs {
		um := mb.unpack(m)
		for _, err := range um.errs {
			w.log.Errorf("%v", err)
		}
		batch = append(batch, um.batch...)
	}
	return batch
}

// unpackedMsg is a JetStream message unpacked (by toMessages, or ahead by
// startPrefetch): the Benthos messages it stands for, and the errors of
// what was malformed in it, logged when it is handed out. It is the
// JetStream message for everything else (acks, metadata).
type unpackedMsg struct {
	jetstream.Msg
	batch service.MessageBatch
	errs  []error
}

// messageBuilder unpacks the messages of a batch, sharing the boxed
// metadata values between them.
type messageBuilder struct {
	w                                         *workerInput
	seqBox, txBox, opBox, schemaBox, tableBox boxed
}

// unpack returns m unpacked (m itself when it was already).
func (mb *messageBuilder) unpack(m jetstream.Msg) *unpackedMsg {
	if um, ok := m.(*unpackedMsg); ok {
		return um
	}
	w := mb.w
	um := &unpackedMsg{Msg: m}
	var streamSeq uint64
	if meta, err := m.Metadata(); err == nil {
		streamSeq = meta.Sequence.Stream
	}
	seqText := strconv.FormatUint(streamSeq, 10)
	malformed := func(err error) {
		bm := service.NewMessage(m.Data())
		bm.MetaSet(WorkerMetaStreamSeq, seqText)
		err = fmt.Errorf("pg_flo_worker: stream %s sequence %d (subject %s): %w", w.conf.stream, streamSeq, m.Subject(), err)
		bm.SetError(err)
		um.batch, um.errs = service.MessageBatch{bm}, append(um.errs, err)
	}
	if jsproto.IsCopyPack(m.Headers()) {
		rows, err := w.copyPackMessages(m, seqText)
		if err != nil {
			malformed(err)
		} else {
			um.batch = rows
		}
		return um
	}
	events, err := jsproto.Unpack(m.Data(), m.Headers())
	if err != nil {
		malformed(err)
		return um
	}
	tx, first, last, hasID := jsproto.ParseMsgID(m.Headers().Get(jetstream.MsgIDHeader))
	// Positions are known per event only when the pack's range is dense.
	hasPos := hasID && last-first+1 == uint64(len(events))
	um.batch = make(service.MessageBatch, 0, len(events))
	for i, body := range events {
		bm := service.NewMessage(body)
		mb.seqBox.set(bm, WorkerMetaStreamSeq, seqText)
		if hasID {
			mb.txBox.set(bm, event.MetaTx, tx)
		}
		if hasPos {
			bm.MetaSet(event.MetaTxPos, strconv.FormatUint(first+uint64(i), 10))
		}
		head, err := event.Peek(body)
		if err != nil {
			err = fmt.Errorf("pg_flo_worker: stream %s sequence %d (subject %s), event %d of %d: %w", w.conf.stream, streamSeq, m.Subject(), i, len(events), err)
			bm.SetError(err)
			um.errs = append(um.errs, err)
		} else {
			mb.opBox.set(bm, event.MetaOp, string(head.Op))
			mb.schemaBox.set(bm, event.MetaSchema, head.Schema)
			mb.tableBox.set(bm, event.MetaTable, head.Table)
			bm.MetaSet(event.MetaLSN, head.LSN)
		}
		um.batch = append(um.batch, bm)
	}
	return um
}

// copyPackMessages returns the messages of a copy pack: the pack as one
// message (snapshot_packs: keep), or one message per row holding its event
// (expand). The metadata comes from the pack's header and the message's
// de-duplication id; no row is parsed for it.
func (w *workerInput) copyPackMessages(m jetstream.Msg, seqText string) (service.MessageBatch, error) {
	h := m.Headers()
	body, err := jsproto.Decompress(m.Data(), h)
	if err != nil {
		return nil, err
	}
	// UnpackCopy checks the rows against the declared count; the body is
	// decompressed already, so it gets only that header.
	p, err := jsproto.UnpackCopy(body, nats.Header{jsproto.HeaderEvents: h.Values(jsproto.HeaderEvents)})
	if err != nil {
		return nil, err
	}
	pm := service.NewMessage(body)
	pm.MetaSetMut(WorkerMetaStreamSeq, seqText)
	pm.MetaSetMut(event.MetaOp, string(event.Insert))
	pm.MetaSetMut(event.MetaSchema, p.Schema)
	pm.MetaSetMut(event.MetaTable, p.Table)
	// As the rows' events write it (the header's text may differ in case).
	pm.MetaSetMut(event.MetaLSN, event.FormatLSN(p.LSNValue))
	pm.MetaSetMut(event.MetaPackRows, strconv.Itoa(p.N))
	if tx, first, last, ok := jsproto.ParseMsgID(h.Get(jetstream.MsgIDHeader)); ok {
		pm.MetaSetMut(event.MetaTx, tx)
		// Positions are known per row only when the id's range is dense.
		if last-first+1 == uint64(p.N) {
			pm.MetaSetMut(event.MetaTxPos, strconv.FormatUint(first, 10))
		}
	}
	if w.conf.keepPacks {
		return service.MessageBatch{pm}, nil
	}
	return packmsg.ExpandPack(pm, p)
}

// keepInProgress tells JetStream, every third of ack_wait, that the batch is
// still being worked on, so it is not redelivered while the output retries.
func (w *workerInput) keepInProgress(b *workerBatch) {
	w.keepAlive(b.stop, slices.Concat(b.msgs, b.carry))
}

// keepAlive marks msgs in progress every third of ack_wait until stop.
func (w *workerInput) keepAlive(stop <-chan struct{}, msgs []jetstream.Msg) {
	t := time.NewTicker(w.conf.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, m := range msgs {
				if err := m.InProgress(); err != nil {
					w.log.Debugf("Mark message in progress: %v", err)
				}
			}
		}
	}
}

// ackFunc acknowledges the batch's JetStream messages once the pipeline
// acknowledged all its events, and lets the next batch be read.
func (w *workerInput) ackFunc(b *workerBatch) service.AckFunc {
	return func(ctx context.Context, res error) error {
		var ackErr error
		ran := false
		b.done.Do(func() {
			ran = true
			close(b.stop)
			if res != nil {
				// Hand the messages back and rewind so they come first,
				// after a backoff that grows while failures repeat.
				for _, m := range b.msgs {
					_ = m.Nak()
				}
				w.setForceReset()
				w.mu.Lock()
				w.retryWait = min(max(2*w.retryWait, workerRetryMin), workerRetryMax)
				w.mu.Unlock()
				w.log.Warnf("Batch of %d messages rejected downstream (%v); it is read again in %v", len(b.msgs), res, w.retryWait)
			} else {
				w.mu.Lock()
				w.retryWait = 0
				w.mu.Unlock()
				for _, m := range b.msgs {
					if err := m.Ack(); err != nil && ackErr == nil {
						ackErr = fmt.Errorf("acknowledge %d jetstream messages of consumer %s: %w", len(b.msgs), w.conf.durable, err)
					}
				}
				if ackErr != nil {
					// The messages stay pending: rewind so they come next.
					w.setForceReset()
				}
			}
			w.mu.Lock()
			if w.inflight == b {
				w.inflight = nil
			}
			w.mu.Unlock()
			<-w.slot
		})
		if !ran {
			return errors.New("pg_flo_worker: batch acknowledged after the input closed; JetStream redelivers it")
		}
		return ackErr
	}
}

// Close hands an unacknowledged batch back to JetStream (Nak, so the next
// worker gets it first) and drains the connection. It is safe to call more
// than once.
func (w *workerInput) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.shutCancel()
	b, carry, nc := w.inflight, w.carry, w.nc
	w.inflight, w.carry, w.nc, w.js, w.cons = nil, nil, nil, nil, nil
	prefetch, prefetchDone := w.prefetch, w.prefetchDone
	w.mu.Unlock()

	if b != nil {
		b.done.Do(func() {
			close(b.stop)
			for _, m := range b.msgs {
				_ = m.Nak()
			}
			<-w.slot
		})
	}
	// Hand back in order: the batch, then what was fetched after it.
	for _, m := range carry {
		_ = m.Nak()
	}
	if prefetch != nil {
		// shutCancel ended the fetch made ahead; hand back what it got.
		select {
		case <-prefetchDone:
			select {
			case r := <-prefetch:
				for _, m := range r.msgs {
					_ = m.Nak()
				}
			default:
			}
		case <-ctx.Done():
		}
	}
	if nc == nil {
		return nil
	}
	return jsproto.Drain(ctx, nc)
}
