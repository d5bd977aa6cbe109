package inputs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/consumer"
	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/natsconf"
	"github.com/pgflo/pgflo/internal/packmsg"
	"github.com/pgflo/pgflo/internal/partition"
	"github.com/pgflo/pgflo/internal/shutdown"
	"github.com/pgflo/pgflo/internal/state"
)

// Field names of pg_flo_worker; the connection fields are natsconf's.
const (
	workerFieldGroup          = "group"
	workerFieldStream         = "stream"
	workerFieldDurable        = "durable"
	workerFieldFilterSubjects = "filter_subjects"
	workerFieldBatchSize      = "batch_size"
	workerFieldFetchWait      = "fetch_wait"
	workerFieldAckWait        = "ack_wait"
	workerFieldMaxAckPending  = "max_ack_pending"
	workerFieldDeliver        = "deliver"
	workerFieldSnapshotPacks  = "snapshot_packs"
	workerFieldPartition      = "partition"
	workerFieldOnError        = "on_error"
)

// Values of on_error.
const (
	workerOnErrorStop       = "stop"
	workerOnErrorDeadLetter = "dead_letter"
)

// Default batch sizes, whatever snapshot_packs is: pg_flo_postgres applies
// a backlog in fewer, larger transactions, and copies snapshot rows in
// larger runs, with these than with pg_flo's 1000.
const (
	workerBatchSize = 16384
	// workerSnapshotBatch bounds the snapshot rows of a batch with
	// snapshot_packs: keep: 128 packs (a fetch's byte bound caps a batch of
	// wide rows). pg_flo_postgres writes a batch's packs over its
	// copy_connections at once and commits them together, so larger batches
	// of snapshot rows mean fewer pauses in an initial sync, while a backlog
	// of changes keeps batch_size's smaller batches.
	workerSnapshotBatch = 131072
)

// WorkerMetaStreamSeq is the metadata key holding the JetStream stream
// sequence of the message an event came from.
const WorkerMetaStreamSeq = "pg_flo_stream_seq"

// WorkerMetaPartition is the metadata key holding the partition an event
// came from, on the events of a partitioned group's worker.
const WorkerMetaPartition = event.MetaPartition

// lossRetry is how often a worker stopped at a hole in its stream says so
// again (Connect keeps failing with the loss).
const lossRetry = 10 * time.Second

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
and processor sees one change event per message. The rows' messages also carry their pack (in the messages'
context, invisible to other components): `+"`pg_flo_postgres`"+` copies the pack's rows into the target as they came
when it receives all of them unchanged, in order, and applies them as events otherwise (after a processor
rewrote or dropped some). With `+"`snapshot_packs: keep`"+` a pack stays one message, its
body the pack (header line and COPY rows), with the same metadata plus `+"`pg_flo_pack_rows`"+` (the number of
rows; `+"`pg_flo_tx_pos`"+` is the first row's position): only `+"`pg_flo_postgres`"+` and pgflo's processors read it.

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
  consumer. A reset repeats changes already applied, which idempotent outputs absorb. One worker per group
  (per partition, see `+"`partition`"+`): several workers sharing the durable consumer would reorder changes (and reset
  each other).
- **Malformed messages are not dropped**: with `+"`on_error: stop`"+` (the default) a message whose packing is
  broken, or an event that is not a valid pg_flo change event, is delivered as is, flagged with an error naming its stream sequence
  (`+"`errored()`"+` in Bloblang) and logged. An output that cannot use it fails, which stops the group at that
  change and retries it; a `+"`switch`"+` output on `+"`errored()`"+` can send it to a dead-letter destination
  instead. Messages are never terminated.
- **Dead letters** (`+"`on_error: dead_letter`"+`): a message that is not valid, and a change `+"`pg_flo_postgres`"+`
  (with `+"`on_error: dead_letter`"+`) reports it can never apply, are stored in the group's dead-letter stream
  `+"`pgflo_<group>_dead_letters`"+` (subject `+"`pgflo_dead.<group>`"+`, created with the group stream's replicas) with
  the error, the original subject, stream sequence, table, key and LSN in headers, and counted by the metric
  `+"`pg_flo_dead_letters_total`"+` (label `+"`reason`"+`: `+"`decode`"+` or `+"`target`"+`); the batch is then delivered again without
  them, and the original is acknowledged with it. `+"`pgflo dead-letters list`"+` and `+"`replay`"+` read and republish them
  ([docs/operations.md](../operations.md#poison-messages-and-dead-letters)); the events of a replayed message carry
  the metadata `+"`pg_flo_replay`"+` (whatever `+"`on_error`"+` is), which `+"`pg_flo_postgres`"+` applies even though its progress
  table is past them.
- **Lost changes stop the worker**: when the stream no longer holds messages this worker never delivered
  (removed by the stream's limits with discard old, a purge, the stream deleted and created again, a NATS
  server that lost data it had acknowledged), the worker delivers nothing past the hole: its input fails, every
  10 seconds, with an error naming the missing stream sequences and the changes around them (so `+"`/ready`"+`
  answers 503), the gauge `+"`pg_flo_worker_stream_loss`"+` is 1, until the group is resynced. It keeps its position
  (the stream sequence it last acknowledged, and the stream's creation time) in the group's state bucket
  (`+"`pg_flo_state_<group>`"+`, key `+"`consumers.<durable>`"+`) to recognise a hole after a restart. See the
  operations guide.`).
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
				Description("Most change events in one batch, as pg_flo's `--batch-size`; expanded snapshot rows count as events. With `snapshot_packs: keep` snapshot rows count apart: a batch holds up to 131,072 of them (128 packs, which `pg_flo_postgres` writes over several connections at once), and a batch holding both events and rows is full when they together reach their limits, each in proportion. A packed JetStream message is never split, so a batch holds at least one message even when it has more events. Default: 16384, with which `pg_flo_postgres` applies a backlog in fewer, larger transactions than with pg_flo's 1000.").
				Optional(),
			service.NewDurationField(workerFieldFetchWait).
				Description("Once a message arrived, how long to wait for more before the batch goes out smaller than `batch_size`: a quiet source's change waits this long, a backlog goes in full batches.").
				Default("50ms").
				Advanced(),
			service.NewDurationField(workerFieldAckWait).
				Description("How long JetStream waits for an acknowledgement before redelivering, set on the consumer. A pending batch is kept alive, so this only matters when the worker dies.").
				Default("10m"). // consumer.DefaultAckWait
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
				packsExpand: "One message per snapshot row, holding its change event (an INSERT with `\"snapshot\": true`) and the usual metadata: for any output or processor, which all see one change event per message. `pg_flo_postgres` still copies a pack's rows as they came when it receives all of them unchanged.",
				packsKeep:   "One message per pack, its body the pack's rows as COPY wrote them (text, or binary for tables of built-in types) after a header line, with `pg_flo_pack_rows` set to the number of rows and `pg_flo_tx_pos` to the first row's position. Only for pipelines whose processors and output understand packs: `pg_flo_postgres` (which copies the rows unchanged) and pgflo's processors (which expand them). A stock processor or output would see the pack as one opaque message. It spares the worker making the rows' events: about 3 CPU-seconds per million rows of the benchmarks' mixed-type table.",
			}).
				Description("What becomes of a message holding packed snapshot rows (`Pgflo-Format: copy`). `pg_flo_postgres` copies snapshot rows with either.").
				Default(packsExpand),
			service.NewIntField(workerFieldPartition).
				Description("The partition this worker applies, from 0 to N-1, in a group created with N > 1 partitions (`pg_flo_jetstream`'s `partitions`, recorded in the stream); required there, and refused for a group of one partition. The consumer is then `pgflo_<group>_consumer_p<k>`, filtering `pgflo.<group>.*.*.<k>`, and every event carries the metadata `pg_flo_partition`, which `pg_flo_postgres` keys its progress row by. Run one worker per partition. A barrier (TRUNCATE, DDL, an UPDATE moving a row between partitions, the end of a snapshot) is delivered once everything before it was acknowledged and every partition reached it: partition 0's worker delivers its event, the others wait until it is acknowledged and skip their copy. The workers coordinate through the group's key-value bucket `pg_flo_state_<group>`.").
				Optional().
				Example(0),
			service.NewStringAnnotatedEnumField(workerFieldOnError, map[string]string{
				workerOnErrorStop:       "A message that is not a valid change event is delivered flagged with its error, and a batch the output rejects is delivered again until it is accepted: the group stops at the offending change, nothing after it is applied, nothing is lost.",
				workerOnErrorDeadLetter: "A message that is not a valid change event, and a change the output reports it can never apply (`pg_flo_postgres` with `on_error: dead_letter`), go to the group's dead-letter stream `pgflo_<group>_dead_letters`; everything else is applied. The original is acknowledged only once its dead letter is stored.",
			}).
				Description("What becomes of poison messages: a message that cannot be decoded, and a change the output can never apply. Other failures (the output or NATS unreachable, a serialization failure) are retried either way.").
				Default(workerOnErrorStop),
		).
		Fields(natsconf.AuthFields()...).
		LintRule(`root = [
`+confread.LintChecks(confread.Removed{Field: "snapshot_batch_rows", Instead: "with snapshot_packs: keep a batch holds up to 131072 snapshot rows; delete the field"})+`].filter(e -> e != null)`).
		Example("Worker to PostgreSQL", "Apply a group's changes to a target database.", `
input:
  pg_flo_worker:
    url: nats://localhost:4222
    group: users
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
			// before anything newer (see consumer.Batch.Done). That costs
			// a fetch per failure instead of a wrapper's bookkeeping per
			// message.
			return in, nil
		})
	if err != nil {
		panic(err)
	}
}

// workerConfig is the parsed configuration of pg_flo_worker: the consumer's,
// and what becomes of copy packs.
type workerConfig struct {
	consumer.Config
	keepPacks bool // snapshot_packs: keep
	// deadLetter is on_error: dead_letter.
	deadLetter bool
	// partition is the partition this worker applies, -1 for a group of
	// one partition.
	partition int
}

func workerParseConfig(conf *service.ParsedConfig) (workerConfig, error) {
	var c workerConfig
	r := confread.New(conf)
	c.Group = r.String(workerFieldGroup)
	c.Stream = r.String(workerFieldStream)
	c.Durable = r.String(workerFieldDurable)
	c.FilterSubjects = r.StringList(workerFieldFilterSubjects)
	if conf.Contains(workerFieldBatchSize) {
		c.BatchSize = r.Int(workerFieldBatchSize)
	}
	c.SnapshotBatch = workerSnapshotBatch
	c.FetchWait = r.Duration(workerFieldFetchWait)
	c.AckWait = r.Duration(workerFieldAckWait)
	c.MaxAckPending = r.Int(workerFieldMaxAckPending)
	deliver := r.String(workerFieldDeliver)
	packs := r.String(workerFieldSnapshotPacks)
	onError := r.String(workerFieldOnError)
	c.partition = -1
	if conf.Contains(workerFieldPartition) {
		c.partition = r.Int(workerFieldPartition)
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	if conf.Contains(workerFieldPartition) && (c.partition < 0 || c.partition >= maxWorkerPartition) {
		return c, fmt.Errorf("field %s: must be between 0 and %d, got %d", workerFieldPartition, maxWorkerPartition-1, c.partition)
	}

	if err := jsproto.ValidateGroup(c.Group); err != nil {
		return c, fmt.Errorf("field %s: %w", workerFieldGroup, err)
	}
	if c.Stream == "" {
		c.Stream = jsproto.StreamName(c.Group)
	} else if err := jsproto.ValidateName("stream", c.Stream); err != nil {
		return c, fmt.Errorf("field %s: %w", workerFieldStream, err)
	}
	// pg_flo_jetstream creates the same consumers ahead of the worker for a
	// stream that drops what no consumer waits for.
	groupDefault := consumer.GroupConfig(c.Group, c.Stream, jsproto.SubjectPrefix(c.Group), c.partition)
	switch {
	case c.Durable == "":
		c.Durable = groupDefault.Durable
	default:
		if err := jsproto.ValidateName("consumer", c.Durable); err != nil {
			return c, fmt.Errorf("field %s: %w", workerFieldDurable, err)
		}
	}
	switch {
	case len(c.FilterSubjects) == 0:
		c.FilterSubjects = groupDefault.FilterSubjects
	}
	for _, f := range c.FilterSubjects {
		if err := jsproto.ValidateFilterSubject(f); err != nil {
			return c, fmt.Errorf("field %s: %w", workerFieldFilterSubjects, err)
		}
	}
	if !conf.Contains(workerFieldBatchSize) {
		c.BatchSize = workerBatchSize
	}
	if c.BatchSize < 1 {
		return c, fmt.Errorf("field %s: must be positive, got %d", workerFieldBatchSize, c.BatchSize)
	}
	if c.FetchWait < 0 {
		return c, fmt.Errorf("field %s: must not be negative, got %v", workerFieldFetchWait, c.FetchWait)
	}
	if c.AckWait < time.Second {
		return c, fmt.Errorf("field %s: must be at least 1s, got %v", workerFieldAckWait, c.AckWait)
	}
	switch {
	case c.MaxAckPending == 0:
		c.MaxAckPending = 2 * c.BatchSize
	case c.MaxAckPending < c.BatchSize:
		return c, fmt.Errorf("field %s: %d is less than %s %d, so batches could never fill", workerFieldMaxAckPending, c.MaxAckPending, workerFieldBatchSize, c.BatchSize)
	}
	switch deliver {
	case "all":
	case "new":
		c.DeliverNew = true
	default:
		return c, fmt.Errorf("field %s: unknown policy %q (all or new)", workerFieldDeliver, deliver)
	}
	switch packs {
	case packsExpand:
	case packsKeep:
		c.keepPacks = true
	default:
		return c, fmt.Errorf("field %s: unknown value %q (%s or %s)", workerFieldSnapshotPacks, packs, packsExpand, packsKeep)
	}
	if !c.keepPacks {
		// The rows become events, and count as events: each is a message
		// about four times its share of the pack, and the batch after is
		// unpacked while one is applied. Twice as many (32,768) made the
		// worker collect garbage for a quarter more CPU.
		c.SnapshotBatch = c.BatchSize
	}
	switch onError {
	case workerOnErrorStop:
	case workerOnErrorDeadLetter:
		c.deadLetter = true
	default:
		return c, fmt.Errorf("field %s: unknown value %q (%s or %s)", workerFieldOnError, onError, workerOnErrorStop, workerOnErrorDeadLetter)
	}
	conn, err := natsconf.ParseConn(conf)
	if err != nil {
		return c, err
	}
	c.Conn = conn
	c.Conn.Name = "pgflo pg_flo_worker " + c.Group
	if c.partition >= 0 {
		c.Conn.Name += " partition " + strconv.Itoa(c.partition)
	}
	return c, nil
}

// maxWorkerPartition bounds partition (pg_flo_jetstream's partitions is at
// most 256).
const maxWorkerPartition = 256

// checkPartitions is the worker's check of the stream: partition is set
// exactly when the group has more than one partition, and names one of
// them. It returns the stream's number of partitions.
func checkPartitions(stream jetstream.StreamConfig, k int) (int, error) {
	n, err := jsproto.StreamPartitions(stream.Metadata)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream.Name, err)
	}
	switch {
	case n > 1 && k < 0:
		return 0, fmt.Errorf("field %s: stream %s has %d partitions: set %s to the partition this worker applies, 0 to %d (one worker per partition)", workerFieldPartition, stream.Name, n, workerFieldPartition, n-1)
	case n == 1 && k >= 0:
		return 0, fmt.Errorf("field %s: stream %s is not partitioned (pg_flo_jetstream's partitions is 1): remove %s", workerFieldPartition, stream.Name, workerFieldPartition)
	case k >= n:
		return 0, fmt.Errorf("field %s: stream %s has %d partitions, 0 to %d; got %d", workerFieldPartition, stream.Name, n, n-1, k)
	}
	return n, nil
}

// workerInput is the pg_flo_worker input: the group's consumer
// (internal/consumer), its JetStream messages made Benthos messages.
type workerInput struct {
	stream    string // named in the errors of malformed messages
	group     string
	keepPacks bool
	log       *service.Logger
	consumer  *consumer.Consumer
	// stop is fired when Benthos asks the input to stop, so the output
	// gives up a batch it cannot finish (internal/shutdown); nil in tests.
	stop *shutdown.Signal

	// partition is the partition applied (-1: the group has one) and
	// partitionText its metadata value.
	partition     int
	partitionText string
	// partitions is the stream's number of partitions, read by Connect
	// (through the consumer's stream check); coord runs the barrier
	// protocol once connected.
	// replicas is the stream's, given to the group's key-value bucket
	// when this worker is the first to need it.
	mu         sync.Mutex
	partitions int
	replicas   int
	coord      *partition.Coordinator

	// dead holds the dead-letter state (on_error: dead_letter), nil
	// otherwise.
	dead *deadLetters
}

func newWorkerInput(conf *service.ParsedConfig, mgr *service.Resources) (*workerInput, error) {
	c, err := workerParseConfig(conf)
	if err != nil {
		return nil, err
	}
	// A hole in the stream stops the worker (internal/consumer, loss.go);
	// the metrics let an alert say so before anyone reads the logs.
	lossGauge := mgr.Metrics().NewGauge("pg_flo_worker_stream_loss")
	lossTotal := mgr.Metrics().NewCounter("pg_flo_worker_stream_loss_total")
	lossGauge.Set(0)
	c.OnLoss = func(*consumer.LossError) {
		lossGauge.Set(1)
		lossTotal.Incr(1)
	}
	w := newWorker(c, mgr.Logger())
	if c.deadLetter {
		w.dead.count = mgr.Metrics().NewCounter("pg_flo_dead_letters_total", "reason")
	}
	w.stop = shutdown.Arm(mgr, c.Group)
	return w, nil
}

// newWorker builds the input of a parsed configuration.
func newWorker(c workerConfig, log *service.Logger) *workerInput {
	w := &workerInput{stream: c.Stream, group: c.Group, keepPacks: c.keepPacks, log: log, partition: c.partition}
	if c.deadLetter {
		w.dead = &deadLetters{skip: map[deadKey]struct{}{}}
	}
	if c.partition >= 0 {
		w.partitionText = strconv.Itoa(c.partition)
	}
	c.Logger = w.log
	c.CheckStream = func(stream jetstream.StreamConfig) error {
		n, err := checkPartitions(stream, c.partition)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.partitions, w.replicas = n, max(stream.Replicas, 1)
		w.mu.Unlock()
		return nil
	}
	// Unpack the messages fetched ahead while the batch before is written:
	// decompressing copy packs and building a message per event would
	// otherwise be a pause between two batches on the target.
	c.Ahead = func(msgs []jetstream.Msg) {
		mb := messageBuilder{w: w}
		for i, m := range msgs {
			msgs[i] = mb.unpack(m)
		}
	}
	c.RecordPosition = true
	w.consumer = consumer.New(c.Config)
	return w
}

// Connect connects the consumer; Benthos calls it again after ReadBatch
// reported service.ErrNotConnected.
func (w *workerInput) Connect(ctx context.Context) error {
	if err := w.consumer.Connect(ctx); err != nil {
		if errors.Is(err, consumer.ErrStreamLoss) {
			// Not connected for good: /ready says so, and the error comes
			// back every lossRetry, not every second.
			return service.NewErrBackOff(err, lossRetry)
		}
		return workerErr(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.partition < 0 || w.coord != nil {
		return nil
	}
	kv, err := state.OpenBucket(ctx, w.consumer.JetStream(), w.group, w.replicas)
	if err != nil {
		return err
	}
	w.coord = partition.NewCoordinator(kv, w.partitions, w.partition, w.log)
	w.log.Infof("Applying partition %d of %d of group %s", w.partition, w.partitions, w.group)
	return nil
}

// ReadBatch returns the next batch once the previous one was acknowledged:
// exactly one batch is in flight, so a batch that fails downstream is resent
// (handed back to JetStream and read again) before anything newer.
func (w *workerInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		b, err := w.consumer.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				w.stop.Fire() // Benthos asked the input to stop: tell the output
			}
			return nil, nil, workerErr(err)
		}
		id := b.Msgs[0].Headers().Get(jsproto.HeaderBarrier)
		if w.dead != nil && (id == "" || w.partition < 0) {
			msgs, ack, err := w.deadLetterBatch(ctx, b)
			if err != nil || msgs != nil {
				return msgs, ack, err
			}
			continue // every message of the batch was a dead letter
		}
		if id == "" || w.partition < 0 {
			return w.toMessages(b.Msgs), func(_ context.Context, res error) error {
				return workerErr(b.Done(res))
			}, nil
		}
		msgs, ack, err := w.barrier(ctx, b, id)
		if err != nil || msgs != nil {
			return msgs, ack, err
		}
	}
}

// barrier runs the barrier protocol for a batch holding one barrier copy
// (the consumer hands it out alone, once everything before it was
// acknowledged): the batch to deliver (its event, on the designated
// partition), or nil once the copy was acknowledged without delivery.
func (w *workerInput) barrier(ctx context.Context, b *consumer.Batch, idText string) (service.MessageBatch, service.AckFunc, error) {
	w.mu.Lock()
	coord := w.coord
	w.mu.Unlock()
	fail := func(err error) (service.MessageBatch, service.AckFunc, error) {
		_ = b.Done(err) // handed back: met again next
		return nil, nil, err
	}
	if coord == nil {
		return fail(service.ErrNotConnected)
	}
	id, err := partition.ParseBarrierID(idText)
	if err != nil {
		return fail(fmt.Errorf("pg_flo_worker: stream %s: header %s: %w", w.stream, jsproto.HeaderBarrier, err))
	}
	deliver, err := coord.Meet(ctx, id)
	if err != nil {
		return fail(fmt.Errorf("pg_flo_worker: partition %d at barrier %s: %w", w.partition, id, err))
	}
	if !deliver {
		if err := b.Done(nil); err != nil {
			return nil, nil, workerErr(err)
		}
		return nil, nil, nil
	}
	w.log.Debugf("Partition %d delivers barrier %s: every partition reached it", w.partition, id)
	return w.toMessages(b.Msgs), func(ctx context.Context, res error) error {
		if res == nil {
			if err := coord.Applied(ctx, id); err != nil {
				// Not acknowledged: delivered again, and skipped by an
				// output that records its progress.
				res = err
			}
		}
		return workerErr(b.Done(res))
	}, nil
}

// Close hands an unacknowledged batch back to JetStream and drains the
// connection. It is safe to call more than once.
func (w *workerInput) Close(ctx context.Context) error {
	return w.consumer.Close(ctx)
}

// workerErr words the consumer's errors as Benthos expects them.
func workerErr(err error) error {
	switch {
	case errors.Is(err, consumer.ErrClosed):
		return errWorkerClosed
	case errors.Is(err, consumer.ErrNotConnected), errors.Is(err, consumer.ErrStreamLoss):
		// After a loss, Connect reports it (and keeps failing).
		return service.ErrNotConnected
	case errors.Is(err, consumer.ErrBatchEnded):
		return errors.New("pg_flo_worker: batch acknowledged after the input closed; JetStream redelivers it")
	}
	return err
}

// toMessages unpacks the JetStream messages into one Benthos message per
// event with its routing metadata; a copy pack becomes one message per row,
// or one for the pack with snapshot_packs: keep. Malformed input is flagged,
// never dropped. Messages unpacked ahead (consumer.Config.Ahead) are taken
// as they are.
func (w *workerInput) toMessages(msgs []jetstream.Msg) service.MessageBatch {
	batch, _, letters := w.unpackAll(msgs)
	// Only a barrier of a partitioned group comes here with dead letters
	// on (one message, delivered by one partition): what is malformed in
	// it is delivered flagged, as with on_error: stop, never dropped.
	for _, l := range letters {
		bm := service.NewMessage(l.Body)
		bm.MetaSetMut(WorkerMetaStreamSeq, strconv.FormatUint(l.StreamSeq, 10))
		bm.SetError(errors.New(l.Err))
		batch = append(batch, bm)
	}
	return batch
}

// unpackAll is toMessages, also returning where each message came from and
// the dead letters of what was malformed (with on_error: dead_letter, which
// keeps those out of the batch).
func (w *workerInput) unpackAll(msgs []jetstream.Msg) (service.MessageBatch, []origin, []*deadletter.Letter) {
	batch := make(service.MessageBatch, 0, len(msgs))
	var origins []origin
	var letters []*deadletter.Letter
	mb := messageBuilder{w: w}
	for _, m := range msgs {
		um := mb.unpack(m)
		for _, err := range um.errs {
			w.log.Errorf("%v", err)
		}
		batch = append(batch, um.batch...)
		origins = append(origins, um.origins...)
		letters = append(letters, um.dead...)
	}
	return batch, origins, letters
}

// unpackedMsg is a JetStream message unpacked (by toMessages, or ahead):
// the Benthos messages it stands for, and the errors of what was malformed
// in it, logged when it is handed out. It is the JetStream message for
// everything else (acks, metadata).
type unpackedMsg struct {
	jetstream.Msg
	batch service.MessageBatch
	errs  []error
	// With on_error: dead_letter, origins tells where each message of
	// batch came from, and dead holds the dead letters of what was
	// malformed (left out of batch).
	origins []origin
	dead    []*deadletter.Letter
}

// messageBuilder unpacks the messages of a batch, sharing the boxed
// metadata values between them.
type messageBuilder struct {
	w                                         *workerInput
	seqBox, txBox, opBox, schemaBox, tableBox boxed
	partBox                                   boxed
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
		err = fmt.Errorf("pg_flo_worker: stream %s sequence %d (subject %s): %w", w.stream, streamSeq, m.Subject(), err)
		um.errs = append(um.errs, err)
		if w.dead != nil {
			um.batch = nil
			um.dead = append(um.dead, &deadletter.Letter{
				Reason: deadletter.ReasonDecode, Err: err.Error(), Subject: m.Subject(), StreamSeq: streamSeq,
				Event: -1, Header: m.Headers(), Body: m.Data(),
			})
			return
		}
		bm := service.NewMessage(m.Data())
		bm.MetaSet(WorkerMetaStreamSeq, seqText)
		bm.MetaSet(WorkerMetaPartition, w.partitionText)
		bm.SetError(err)
		um.batch = service.MessageBatch{bm}
	}
	if w.dead.skips(streamSeq, -1) {
		return um // stored as a dead letter
	}
	// Replayed from the dead letters: applied whatever the output's
	// progress says.
	replay := m.Headers().Get(deadletter.HeaderReplay)
	if jsproto.IsCopyPack(m.Headers()) {
		rows, err := w.copyPackMessages(m, seqText)
		if err != nil {
			malformed(err)
			return um
		}
		if replay != "" {
			for _, row := range rows {
				row.MetaSetMut(deadletter.MetaReplay, replay)
			}
		}
		um.batch = rows
		if w.dead != nil {
			um.batch, um.origins = w.packOrigins(m, streamSeq, rows)
		}
		return um
	}
	events, err := jsproto.Unpack(m.Data(), m.Headers())
	if err != nil {
		malformed(err)
		return um
	}
	tx, first, last, hasID := jsproto.ParseMsgID(m.Headers().Get(jetstream.MsgIDHeader))
	// Positions are known per event when the pack's range is dense, or
	// else listed in its header.
	hasPos := hasID && last-first+1 == uint64(len(events))
	var positions []uint64
	if v := m.Headers().Get(jsproto.HeaderPositions); hasID && !hasPos && v != "" {
		positions, _ = jsproto.DecodePositions(v, first, last, len(events))
	}
	um.batch = make(service.MessageBatch, 0, len(events))
	for i, body := range events {
		if w.dead.skips(streamSeq, i) {
			continue // stored as a dead letter
		}
		bm := service.NewMessage(body)
		mb.seqBox.set(bm, WorkerMetaStreamSeq, seqText)
		mb.partBox.set(bm, WorkerMetaPartition, w.partitionText)
		if hasID {
			mb.txBox.set(bm, event.MetaTx, tx)
		}
		if replay != "" {
			bm.MetaSetMut(deadletter.MetaReplay, replay)
		}
		if hasPos {
			bm.MetaSet(event.MetaTxPos, strconv.FormatUint(first+uint64(i), 10))
		} else if positions != nil {
			bm.MetaSet(event.MetaTxPos, strconv.FormatUint(positions[i], 10))
		}
		head, err := event.Peek(body)
		if err != nil {
			err = fmt.Errorf("pg_flo_worker: stream %s sequence %d (subject %s), event %d of %d: %w", w.stream, streamSeq, m.Subject(), i, len(events), err)
			um.errs = append(um.errs, err)
			if w.dead != nil {
				um.dead = append(um.dead, &deadletter.Letter{
					Reason: deadletter.ReasonDecode, Err: err.Error(), Subject: m.Subject(), StreamSeq: streamSeq,
					Event: i, Body: body,
				})
				continue
			}
			bm.SetError(err)
		} else {
			mb.opBox.set(bm, event.MetaOp, string(head.Op))
			mb.schemaBox.set(bm, event.MetaSchema, head.Schema)
			mb.tableBox.set(bm, event.MetaTable, head.Table)
			bm.MetaSet(event.MetaLSN, head.LSN)
		}
		if w.dead != nil {
			um.origins = append(um.origins, origin{msg: m, seq: streamSeq, event: i, body: body})
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
	if w.partitionText != "" {
		pm.MetaSetMut(WorkerMetaPartition, w.partitionText)
	}
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
	if w.keepPacks {
		return service.MessageBatch{pm}, nil
	}
	return packmsg.ExpandPack(pm, p)
}
