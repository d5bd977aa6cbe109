package outputs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/consumer"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/natsconf"
	"github.com/pgflo/pgflo/internal/partition"
	"github.com/pgflo/pgflo/internal/shutdown"
)

// Field names of pg_flo_jetstream; the connection fields are natsconf's.
const (
	jsFieldGroup           = "group"
	jsFieldStream          = "stream"
	jsFieldSubjectPrefix   = "subject_prefix"
	jsFieldPack            = "pack"
	jsFieldPackMaxBytes    = "pack_max_bytes"
	jsFieldStreamMaxAge    = "stream_max_age"
	jsFieldStreamMaxBytes  = "stream_max_bytes"
	jsFieldStreamMaxMsgs   = "stream_max_msgs"
	jsFieldStreamRetention = "stream_retention"
	jsFieldStreamDiscard   = "stream_discard"
	jsFieldStreamReplicas  = "stream_replicas"
	jsFieldDuplicateWindow = "duplicate_window"
	jsFieldPublishTimeout  = "publish_timeout"
	jsFieldPartitions      = "partitions"
)

// JetStream's errors for a work-queue consumer whose subjects another
// consumer takes.
const (
	jsErrWorkQueueUnfiltered = 10099
	jsErrWorkQueueNotUnique  = 10100
)

// maxPartitions bounds partitions: each is a worker, a consumer and a copy
// of every barrier.
const maxPartitions = 256

// jsPayloadHeadroom is kept free below the server's max payload for the
// headers of a packed message (Nats-Msg-Id, Pgflo-Events, Nats-Expected-Stream).
const jsPayloadHeadroom = 4 << 10

func jsOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Publishes pg_flo change events to the group's NATS JetStream stream, with de-duplication ids, acknowledging a batch only after JetStream stored every message of it.").
		Description(`
The replicator half of pg_flo's data path: connect `+"`pg_flo_replicator`"+` to this output, and
`+"`pg_flo_worker`"+` consumes what it stores.

### Stream and subjects

Events go to the stream `+"`pgflo_<group>_stream`"+` (pg_flo's name), one subject per table:
`+"`pgflo.<group>.<schema>.<table>`"+`. In a subject, whitespace, control characters, `+"`.`, `*` and `>`"+`
in a schema or table name are replaced by `+"`_`"+` (the event itself keeps the exact names). The stream is
created on connect when it does not exist (file storage, subjects `+"`pgflo.<group>.>`"+`, the `+"`stream_*`"+`
settings below). An existing stream is never changed: when its settings can lose data (a maximum age,
discarding old messages when full, a shorter duplicate window) a warning says so; when its subjects do not
cover ours (a stream made by pg_flo, whose single subject is `+"`pgflo.<group>`"+`), connecting fails with an
error saying how to fix it.

With `+"`partitions`"+` above 1, each subject gets one more token, the change's partition:
`+"`pgflo.<group>.<schema>.<table>.<k>`"+` (see the field).

### Packing

With `+"`pack`"+` on, consecutive events of one transaction and table are packed into one JetStream message
(newline-separated JSON, header `+"`Pgflo-Events: <count>`"+`), which multiplies throughput for snapshots and
large transactions. A pack never crosses a multiple of 1024 positions in its transaction and stays below
`+"`pack_max_bytes`"+`. A single event is published as a plain message (no header),
so non-pgflo consumers can read one-event messages. `+"`pg_flo_worker`"+` unpacks both.

### Guarantees

- **Acknowledged only when stored**: a batch is acknowledged only after every one of its messages got its
  PubAck from JetStream (the stream stored it on all replicas). On any failure the batch is nacked, and the
  input resends it.
- **Order**: messages are published strictly in batch order on one connection, and batches one at a time
  (this output runs with max in flight 1; it is not configurable, because two batches in flight could be
  stored out of order when one of them is retried).
- **No duplicates from retries**: every message carries a de-duplication id (`+"`Nats-Msg-Id`"+`) derived from its
  events' transaction and positions (metadata `+"`pg_flo_tx`, `pg_flo_tx_pos`"+`): `+"`<tx>:<pos>`"+` or
  `+"`<tx>:<first>-<last>`"+`. A batch resent after a failure, or a transaction replayed after a restart of the
  replicator, is stored once as long as it comes within `+"`duplicate_window`"+`. Messages without those
  metadata (from a stock input) are published one per message without an id: they are never mistaken for
  one another, but a resend after a failure can store them twice.

Messages must be pg_flo change events: the subject comes from the metadata `+"`pg_flo_schema`, `pg_flo_table`"+`,
or from the event body when the metadata are missing; anything else fails the batch with an error.`).
		Field(natsconf.URLField().
			Description("NATS server URL; several may be given separated by commas. Credentials may be embedded (`nats://user:password@host:4222`): pgflo keeps them out of its logs and errors, and the field is a secret, so printed configs (`pgflo echo`) show it scrubbed unless it is an environment reference such as `${NATS_URL}`; the `user`/`password` fields keep the URL readable.").
			Example("nats://n1:4222,nats://n2:4222")).
		Fields(
			service.NewStringField(jsFieldGroup).
				Description("Replication group, as in pg_flo: names the stream (`pgflo_<group>_stream`) and the subjects (`pgflo.<group>.…`). Must not contain whitespace, `.`, `*`, `>`, `/` or `\\`.").
				Example("users"),
			service.NewStringField(jsFieldStream).
				Description("Stream name; empty means pg_flo's `pgflo_<group>_stream`.").
				Default("").
				Advanced(),
			service.NewStringField(jsFieldSubjectPrefix).
				Description("Subject prefix; the subject of an event is `<prefix>.<schema>.<table>` and the stream is created with subjects `<prefix>.>`. Empty means `pgflo.<group>`. A worker reading a custom prefix needs `filter_subjects: [\"<prefix>.>\"]`.").
				Default("").
				Advanced(),
			service.NewBoolField(jsFieldPack).
				Description("Pack consecutive events of one transaction and table into one JetStream message. `pg_flo_worker` reads both forms; turn it off only for consumers that expect one event per message.").
				Default(true),
			service.NewIntField(jsFieldPackMaxBytes).
				Description("Largest body of a packed message, in bytes. Lowered automatically to the server's `max_payload` minus room for headers. Snapshot copy packs larger than it are cut into copy packs of whole rows.").
				Default(jsproto.DefaultPackMaxBytes).
				Advanced(),
			service.NewDurationField(jsFieldStreamMaxAge).
				Description("Maximum age of messages in the stream, used when the stream is created. `0s` keeps messages until they are removed otherwise. pg_flo used 24h, which silently deletes the changes a worker has not read when it is down longer than that; pgflo keeps them by default, and the replication slot keeps WAL only until the replicator has published it.").
				Default("0s").
				Example("168h").
				Advanced(),
			service.NewIntField(jsFieldStreamMaxBytes).
				Description("Maximum size of the stream in bytes, used when the stream is created; -1 is unlimited. When full, `stream_discard` decides what happens.").
				Default(-1).
				Advanced(),
			service.NewIntField(jsFieldStreamMaxMsgs).
				Description("Maximum number of messages in the stream (a pack is one message), used when the stream is created; -1 is unlimited. When full, `stream_discard` decides what happens.").
				Default(-1).
				Advanced(),
			service.NewStringAnnotatedEnumField(jsFieldStreamRetention, map[string]string{
				"limits":    "Messages are kept until a limit (age, size) removes them; the worker's acknowledgements do not delete them, so the stream can be replayed.",
				"interest":  "Messages are deleted once every consumer acknowledged them. A message no consumer is waiting for would be deleted at once, so this output creates the worker's durable consumer (`pgflo_<group>_consumer`, or one per partition) before it publishes anything.",
				"workqueue": "Messages are deleted once acknowledged; only one consumer per subject is allowed. As with `interest`, this output creates the worker's consumer(s) before it publishes anything.",
			}).
				Description("Retention policy, used when the stream is created. With `interest` or `workqueue`, the output creates the worker's durable consumers whenever they are missing, with `pg_flo_worker`'s default settings (a worker adopts them and sets its own `ack_wait` and `max_ack_pending`), so nothing is published before a consumer is there to keep it; a worker with another `durable` or `filter_subjects` needs its consumer created before the replicator starts.").
				Default("limits").
				Advanced(),
			service.NewStringAnnotatedEnumField(jsFieldStreamDiscard, map[string]string{
				"new": "A full stream takes no new messages: a batch is published once the stream has room for all of it, so the replicator waits and the replication slot keeps the WAL until the worker has caught up (with `interest` or `workqueue` retention, consumed messages free the room). Nothing is lost; a warning says so once per episode, and the gauge `pg_flo_stream_full` is 1 meanwhile.",
				"old": "A full stream deletes its oldest messages, even ones no worker has read: data loss.",
			}).
				Description("What a full stream does (see `stream_max_bytes`, `stream_max_msgs`), used when the stream is created.").
				Default("new").
				Advanced(),
			service.NewIntField(jsFieldStreamReplicas).
				Description("Number of stream replicas in a NATS cluster, used when the stream is created: 3 in a 3-node cluster, so the stream survives the loss of a node (see docs/operations.md). An existing stream keeps its replicas; a warning says when they are fewer. Set the replicator's `state_replicas` to the same.").
				Default(1).
				Advanced(),
			service.NewDurationField(jsFieldDuplicateWindow).
				Description("JetStream de-duplication window, used when the stream is created: a message whose id was stored less than this long ago is acknowledged without being stored again. Replays of a batch or a transaction after a restart of the replicator within the window are therefore stored once; a longer window costs server memory (one entry per message id).").
				Default("10m").
				Advanced(),
			service.NewIntField(jsFieldPartitions).
				Description("Number of partitions of the group, fixed when the stream is created (it is recorded in the stream's metadata, and connecting to a stream created with another number fails). With 1, every change goes to its table's subject and one worker applies the group. With N > 1, each change goes to one of N subjects per table, `<prefix>.<schema>.<table>.<k>`, chosen by a hash of its table and replica-identity key, and N workers (`pg_flo_worker`'s `partition`) apply the partitions in parallel: the changes of one row stay in order, changes of different partitions do not. TRUNCATE, DDL, an UPDATE that moves a row to another partition, and the end of a snapshot are barriers, published to every partition and applied once, after every partition reached them. Events need the metadata `pg_flo_tx` and `pg_flo_tx_pos` (as `pg_flo_replicator` sets them) for barriers. To change the number, drain the group and recreate its stream and consumers (see docs/operations.md).").
				Default(1).
				Example(4),
			service.NewDurationField(jsFieldPublishTimeout).
				Description("How long to wait for JetStream's acknowledgement of a published message before the batch fails and is resent.").
				Default("30s").
				Advanced(),
		).
		Fields(natsconf.AuthFields()...).
		LintRule(`root = [
`+confread.LintChecks(confread.Removed{Field: "pack_max_events", Instead: "a pack holds at most 1024 events, the unit pgflo's de-duplication ids are counted in; bound packs with pack_max_bytes"})+`].filter(e -> e != null)`).
		Example("Replicator", "Stream a table's changes into the group's JetStream stream.", `
input:
  pg_flo_replicator:
    dsn: postgres://replicator:secret@localhost:5432/myapp
    group: users
    tables: [ users ]
output:
  pg_flo_jetstream:
    url: nats://localhost:4222
    group: users
`)
}

func init() {
	err := service.RegisterBatchOutput("pg_flo_jetstream", jsOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			out, err := newJSOutput(conf, mgr)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			// One batch in flight: see "Order" in the description.
			return out, service.BatchPolicy{}, 1, nil
		})
	if err != nil {
		panic(err)
	}
}

// jsOutputConfig is the parsed configuration of pg_flo_jetstream.
type jsOutputConfig struct {
	conn           jsproto.ConnConfig
	group          string
	stream         string
	subjectPrefix  string
	pack           bool
	packMaxBytes   int
	streamConfig   jetstream.StreamConfig
	publishTimeout time.Duration
	partitions     int
}

func jsParseOutputConfig(conf *service.ParsedConfig) (jsOutputConfig, error) {
	var c jsOutputConfig
	r := confread.New(conf)
	c.group = r.String(jsFieldGroup)
	c.stream = r.String(jsFieldStream)
	c.subjectPrefix = r.String(jsFieldSubjectPrefix)
	c.pack = r.Bool(jsFieldPack)
	c.packMaxBytes = r.Int(jsFieldPackMaxBytes)
	maxAge := r.Duration(jsFieldStreamMaxAge)
	maxBytes := r.Int(jsFieldStreamMaxBytes)
	maxMsgs := r.Int(jsFieldStreamMaxMsgs)
	retention := r.String(jsFieldStreamRetention)
	discard := r.String(jsFieldStreamDiscard)
	replicas := r.Int(jsFieldStreamReplicas)
	dupWindow := r.Duration(jsFieldDuplicateWindow)
	c.publishTimeout = r.Duration(jsFieldPublishTimeout)
	c.partitions = r.Int(jsFieldPartitions)
	if err := r.Err(); err != nil {
		return c, err
	}

	if err := jsproto.ValidateGroup(c.group); err != nil {
		return c, fmt.Errorf("field %s: %w", jsFieldGroup, err)
	}
	if c.stream == "" {
		c.stream = jsproto.StreamName(c.group)
	} else if err := jsproto.ValidateName("stream", c.stream); err != nil {
		return c, fmt.Errorf("field %s: %w", jsFieldStream, err)
	}
	if c.subjectPrefix == "" {
		c.subjectPrefix = jsproto.SubjectPrefix(c.group)
	} else if err := jsproto.ValidateSubjectPrefix(c.subjectPrefix); err != nil {
		return c, fmt.Errorf("field %s: %w", jsFieldSubjectPrefix, err)
	}
	if c.packMaxBytes < 1 {
		return c, fmt.Errorf("field %s: must be positive, got %d", jsFieldPackMaxBytes, c.packMaxBytes)
	}
	if maxAge < 0 {
		return c, fmt.Errorf("field %s: must not be negative, got %v", jsFieldStreamMaxAge, maxAge)
	}
	if maxBytes == 0 || maxBytes < -1 {
		return c, fmt.Errorf("field %s: must be positive or -1 (unlimited), got %d", jsFieldStreamMaxBytes, maxBytes)
	}
	if maxMsgs == 0 || maxMsgs < -1 {
		return c, fmt.Errorf("field %s: must be positive or -1 (unlimited), got %d", jsFieldStreamMaxMsgs, maxMsgs)
	}
	if replicas < 1 || replicas > 5 {
		return c, fmt.Errorf("field %s: must be between 1 and 5, got %d", jsFieldStreamReplicas, replicas)
	}
	if dupWindow < 0 {
		return c, fmt.Errorf("field %s: must not be negative, got %v", jsFieldDuplicateWindow, dupWindow)
	}
	if maxAge > 0 && dupWindow > maxAge {
		return c, fmt.Errorf("field %s: %v is longer than %s %v, which JetStream rejects", jsFieldDuplicateWindow, dupWindow, jsFieldStreamMaxAge, maxAge)
	}
	if c.publishTimeout <= 0 {
		return c, fmt.Errorf("field %s: must be positive, got %v", jsFieldPublishTimeout, c.publishTimeout)
	}
	if c.partitions < 1 || c.partitions > maxPartitions {
		return c, fmt.Errorf("field %s: must be between 1 and %d, got %d", jsFieldPartitions, maxPartitions, c.partitions)
	}
	conn, err := natsconf.ParseConn(conf)
	if err != nil {
		return c, err
	}
	c.conn = conn

	c.streamConfig = jetstream.StreamConfig{
		Name:        c.stream,
		Description: "pgflo change events of group " + c.group,
		Subjects:    []string{jsproto.PrefixSubjects(c.subjectPrefix)},
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		MaxBytes:    int64(maxBytes),
		MaxMsgs:     int64(maxMsgs),
		Replicas:    replicas,
		Duplicates:  dupWindow,
	}
	if c.partitions > 1 {
		c.streamConfig.Metadata = map[string]string{jsproto.StreamMetaPartitions: strconv.Itoa(c.partitions)}
	}
	switch retention {
	case "limits":
		c.streamConfig.Retention = jetstream.LimitsPolicy
	case "interest":
		c.streamConfig.Retention = jetstream.InterestPolicy
	case "workqueue":
		c.streamConfig.Retention = jetstream.WorkQueuePolicy
	default:
		return c, fmt.Errorf("field %s: unknown policy %q (limits, interest or workqueue)", jsFieldStreamRetention, retention)
	}
	switch discard {
	case "new":
		c.streamConfig.Discard = jetstream.DiscardNew
	case "old":
		c.streamConfig.Discard = jetstream.DiscardOld
	default:
		return c, fmt.Errorf("field %s: unknown policy %q (new or old)", jsFieldStreamDiscard, discard)
	}
	c.conn.Name = "pgflo pg_flo_jetstream " + c.group
	return c, nil
}

// jsOutput is the pg_flo_jetstream output.
type jsOutput struct {
	conf jsOutputConfig
	log  *service.Logger

	mu           sync.Mutex
	nc           *nats.Conn
	js           jetstream.JetStream
	packMaxBytes int // conf.packMaxBytes clamped to the server's max payload
	// bounded: the stream has a byte or message limit and refuses new
	// messages when full (see waitForRoom).
	bounded bool
	// room and roomMsgs are how many bytes and messages the bounded stream
	// was last seen to have free, less what was published since: the room
	// can only have grown (the worker frees it; nobody else publishes), so
	// batches that fit in it are published without asking the server again.
	room, roomMsgs uint64
	// fullSince is when the current episode of waiting for room began
	// (zero when the last batch found room at once); fullLogged says its
	// log line was written. streamFull (pg_flo_stream_full) is 1 during an
	// episode.
	fullSince  time.Time
	fullLogged bool
	streamFull *service.MetricGauge
	// res holds the signal fired when the pipeline's input is asked to
	// stop: a batch still waiting for room or for NATS is then given up
	// (internal/shutdown).
	res    *service.Resources
	closed bool
	// bodies holds the memory of the packed bodies published before.
	bodies jsproto.BodyPool
	// With partitions: the decoder of events routed by their key, and
	// whether a sync barrier must precede the next streamed change (at
	// first, so what a replicator published before it restarted is
	// behind one, and after snapshot rows, so every partition applied the
	// snapshot before any change streamed after it).
	decoder  event.Decoder
	needSync bool
}

func newJSOutput(conf *service.ParsedConfig, mgr *service.Resources) (*jsOutput, error) {
	c, err := jsParseOutputConfig(conf)
	if err != nil {
		return nil, err
	}
	o := &jsOutput{conf: c, log: mgr.Logger(), packMaxBytes: c.packMaxBytes, needSync: true,
		streamFull: mgr.Metrics().NewGauge("pg_flo_stream_full"), res: mgr}
	o.conf.conn.OnDisconnect = func(err error) {
		if err != nil {
			o.log.Warnf("Disconnected from NATS: %v", err)
		}
	}
	o.conf.conn.OnReconnect = func(url string) { o.log.Infof("Reconnected to NATS at %s", url) }
	return o, nil
}

// Connect dials NATS (once; the client then reconnects by itself) and makes
// sure the stream exists. Benthos calls it again after WriteBatch reported
// service.ErrNotConnected; it then waits for the client's own reconnection.
func (o *jsOutput) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("pg_flo_jetstream: output is closed")
	}
	if shutdown.Lookup(o.res, o.conf.group).Fired() {
		return nil // WriteBatch hands the batch Benthos keeps back
	}
	if o.nc != nil && o.nc.IsClosed() {
		o.nc, o.js = nil, nil
	}
	if o.nc == nil {
		nc, err := jsproto.Connect(o.conf.conn)
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncTimeout(o.conf.publishTimeout),
			jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			nc.Close()
			return fmt.Errorf("jetstream: %w", err)
		}
		o.nc, o.js = nc, js
	}
	if !o.nc.IsConnected() {
		return fmt.Errorf("waiting for the NATS client to reconnect: %w (status %v)", nats.ErrDisconnected, o.nc.Status())
	}
	if err := o.ensureStream(ctx); err != nil {
		return err
	}
	o.clampPackSize()
	return nil
}

// ensureStream creates the stream when missing and warns about an existing
// stream whose settings can lose data. Called with o.mu held.
func (o *jsOutput) ensureStream(ctx context.Context) error {
	want := o.conf.streamConfig
	s, err := o.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = o.js.CreateStream(ctx, want)
		if err == nil {
			o.log.Infof("Created JetStream stream %s (subjects %v, max age %v, duplicate window %v, %d partition(s))", want.Name, want.Subjects, want.MaxAge, want.Duplicates, o.conf.partitions)
			o.bounded = streamBounded(want)
			return o.ensureConsumers(ctx, s)
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = o.js.Stream(ctx, want.Name) // created concurrently
		}
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	o.bounded = streamBounded(have)
	partitions, err := jsproto.StreamPartitions(have.Metadata)
	if err != nil {
		return fmt.Errorf("stream %s: %w", want.Name, err)
	}
	if partitions != o.conf.partitions {
		return fmt.Errorf("field %s: stream %s was created with %d partition(s), this output is configured with %d; the number is fixed when the stream is created: keep %d, or drain the group (stop the replicator, let every worker finish), delete the stream and the workers' consumers, and start again (docs/operations.md, Partitions)",
			jsFieldPartitions, want.Name, partitions, o.conf.partitions, partitions)
	}
	sample := jsproto.TableSubject(o.conf.subjectPrefix, "public", "t")
	if o.conf.partitions > 1 {
		sample = jsproto.PartitionSubject(sample, 0)
	}
	covered := false
	for _, subj := range have.Subjects {
		if jsproto.SubjectMatches(subj, sample) {
			covered = true
			break
		}
	}
	if !covered {
		return fmt.Errorf("stream %s has subjects %v, which do not include %s (a stream created by pg_flo publishes to the single subject %s): add the subject with `nats stream edit %s --subjects %s` (keeping the existing ones), or delete the stream",
			want.Name, have.Subjects, want.Subjects[0], o.conf.subjectPrefix, want.Name, want.Subjects[0])
	}
	if have.MaxAge > 0 {
		o.log.Warnf("Stream %s deletes messages older than %v even if no worker has read them (pg_flo created its streams with 24h); set its max age to 0 to keep changes until they are consumed", want.Name, have.MaxAge)
	}
	if have.Discard == jetstream.DiscardOld && (have.MaxBytes > 0 || have.MaxMsgs > 0 || have.MaxMsgsPerSubject > 0) {
		o.log.Warnf("Stream %s discards its oldest messages when full, even ones no worker has read; use discard policy new so the replicator waits instead", want.Name)
	}
	if have.Replicas < want.Replicas {
		o.log.Warnf("Stream %s has %d replicas, fewer than the configured %s %d: it is not changed; raise them with `nats stream edit %s --replicas %d`", want.Name, max(have.Replicas, 1), jsFieldStreamReplicas, want.Replicas, want.Name, want.Replicas)
	}
	if have.Duplicates < want.Duplicates {
		o.log.Warnf("Stream %s de-duplicates over %v, less than the configured %v: replays older than that are stored twice", want.Name, have.Duplicates, want.Duplicates)
	}
	return o.ensureConsumers(ctx, s)
}

// ensureConsumers creates the group's worker consumers, one per partition,
// as pg_flo_worker would, when the stream has interest or work-queue
// retention and they do not exist yet. Such a stream deletes a message no
// consumer needs as soon as it is stored: published before the worker's
// consumer exists, a whole snapshot would be acknowledged and lost. Called
// before anything is published; existing consumers are left as they are.
func (o *jsOutput) ensureConsumers(ctx context.Context, s jetstream.Stream) error {
	info := s.CachedInfo().Config
	if info.Retention == jetstream.LimitsPolicy {
		return nil
	}
	first, last := -1, -1
	if o.conf.partitions > 1 {
		first, last = 0, o.conf.partitions-1
	}
	for k := first; k <= last; k++ {
		conf := consumer.GroupConfig(o.conf.group, info.Name, o.conf.subjectPrefix, k)
		created, err := consumer.CreateIfMissing(ctx, s, conf)
		if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrWorkQueueNotUnique || apiErr.ErrorCode == jsErrWorkQueueUnfiltered) {
			// A work queue takes one consumer per subject: a worker's
			// own consumer (its durable or filter_subjects) already
			// takes these subjects.
			o.log.Infof("Not creating consumer %s on stream %s: another consumer already takes its subjects %v", conf.Durable, info.Name, conf.FilterSubjects)
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s has %v retention, which drops changes no consumer is waiting for: the worker's consumer must exist before anything is published: %w", info.Name, info.Retention, err)
		}
		if created {
			o.log.Infof("Created the worker's durable consumer %s on stream %s (subjects %v) before publishing: the stream has %v retention, which drops changes no consumer is waiting for", conf.Durable, info.Name, conf.FilterSubjects, info.Retention)
		}
	}
	return nil
}

// clampPackSize lowers the pack size to what the server accepts. Called with
// o.mu held.
func (o *jsOutput) clampPackSize() {
	limit := int(o.nc.MaxPayload()) - jsPayloadHeadroom
	if limit < 1 {
		limit = 1
	}
	o.packMaxBytes = o.conf.packMaxBytes
	if o.packMaxBytes > limit {
		o.log.Infof("Field %s lowered from %d to %d bytes: the NATS server's max payload is %d", jsFieldPackMaxBytes, o.conf.packMaxBytes, limit, o.nc.MaxPayload())
		o.packMaxBytes = limit
	}
}

// WriteBatch publishes the batch's events in order and returns once JetStream
// acknowledged every message, or with the first error.
func (o *jsOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.Lock()
	nc, js, packMaxBytes, bounded := o.nc, o.js, o.packMaxBytes, o.bounded
	o.mu.Unlock()
	stop := shutdown.Lookup(o.res, o.conf.group)
	if nc == nil || !nc.IsConnected() {
		if stop.Fired() {
			return shutdown.ErrStopping
		}
		return service.ErrNotConnected
	}
	ctx, done := stop.Context(ctx, shutdown.Grace)
	defer done()

	items, needSync, err := o.items(batch)
	if err != nil {
		return err
	}
	lim := jsproto.Limits{MaxBytes: packMaxBytes, MaxEvents: 1}
	if o.conf.pack {
		lim.MaxEvents = jsproto.PackWindow
	}
	packs := jsproto.Build(items, lim)

	// Refuse the batch before publishing any of it when a message cannot fit:
	// publishing the rest would store later changes before the rejected one.
	maxPayload := int(nc.MaxPayload())
	for _, p := range packs {
		if size := p.Size() + jsHeaderBytes(p, o.conf.stream); size > maxPayload {
			return fmt.Errorf("publish %s: event of %d bytes exceeds the NATS server's max payload of %d bytes (raise max_payload in the server configuration)", p.Subject, p.Size(), maxPayload)
		}
	}

	msgs := make([]*nats.Msg, len(packs))
	for i, p := range packs {
		msgs[i] = p.MsgFrom(&o.bodies)
	}
	if bounded {
		if err := o.waitForRoom(ctx, stop, js, packs, msgs); err != nil {
			for _, m := range msgs {
				o.bodies.Put(m)
			}
			return err
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(packs))
	var publishErr error
	for i, p := range packs {
		opts := []jetstream.PublishOpt{
			jetstream.WithExpectStream(o.conf.stream),
			jetstream.WithStallWait(o.conf.publishTimeout),
		}
		if p.MsgID != "" {
			opts = append(opts, jetstream.WithMsgID(p.MsgID))
		}
		f, err := js.PublishMsgAsync(msgs[i], opts...)
		if err != nil {
			publishErr = fmt.Errorf("publish to %s: %w", p.Subject, err)
			break
		}
		futures = append(futures, f)
	}
	for _, m := range msgs[len(futures):] {
		o.bodies.Put(m) // never published
	}

	// Wait for every future, even after an error, so that no acknowledgement
	// of this batch is still pending when it is retried.
	var ackErr error
	stored, dups := 0, 0
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				dups++
			} else {
				stored++
			}
		case err := <-f.Err():
			if ackErr == nil {
				ackErr = fmt.Errorf("publish to %s (id %q): %w", f.Msg().Subject, f.Msg().Header.Get(jetstream.MsgIDHeader), err)
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for jetstream acknowledgements: %w", ctx.Err())
		}
	}
	// Every future is resolved: NATS keeps none of the bodies any more.
	for _, f := range futures {
		o.bodies.Put(f.Msg())
	}
	if err := errors.Join(publishErr, ackErr); err != nil {
		o.room, o.roomMsgs = 0, 0 // ask the server next time
		if !nc.IsConnected() {
			o.log.Warnf("Publishing failed while disconnected from NATS: %v", err)
			return service.ErrNotConnected
		}
		return err
	}
	if dups > 0 {
		o.log.Debugf("Stored %d messages; %d were duplicates already in stream %s", stored, dups, o.conf.stream)
	}
	o.needSync = needSync
	return nil
}

// waitForRoom returns once the stream has room for every message of the
// batch. A stream with a byte or message limit that refuses new messages
// when full (stream_discard: new) would otherwise refuse some of a batch's
// messages and store later ones as the worker frees room; sent again, the
// refused ones would be stored after changes that followed them, and
// pg_flo_postgres would skip them as applied already (their position is
// behind its own) — changes lost. Only this output publishes to the group's
// stream, so the room it found is still there when it publishes. A batch
// larger than the whole stream is published once the stream is empty.
//
// While it waits, nothing is acknowledged, so the replicator stops reading
// the slot and the source keeps the WAL. One log line per episode says why
// (once the wait passed 10 seconds), and the gauge pg_flo_stream_full is 1.
func (o *jsOutput) waitForRoom(ctx context.Context, stop *shutdown.Signal, js jetstream.JetStream, packs []jsproto.Pack, msgs []*nats.Msg) error {
	var need uint64
	for i, m := range msgs {
		need += storedSize(m, jsHeaderBytes(packs[i], o.conf.stream))
	}
	count := uint64(len(msgs))
	if need <= o.room && count <= o.roomMsgs {
		o.room -= need
		o.roomMsgs -= count
		o.endFullEpisode()
		return nil
	}
	wait := time.Millisecond
	for first := true; ; first = false {
		s, err := js.Stream(ctx, o.conf.stream)
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", o.conf.stream, err)
		}
		info := s.CachedInfo()
		if !streamBounded(info.Config) {
			o.room, o.roomMsgs = math.MaxUint64, math.MaxUint64
			o.endFullEpisode()
			return nil
		}
		free, freeMsgs := streamRoom(info.Config, info.State)
		if (need <= free && count <= freeMsgs) || info.State.Msgs == 0 {
			o.room, o.roomMsgs = free-min(need, free), freeMsgs-min(count, freeMsgs)
			if first {
				o.endFullEpisode()
			}
			return nil
		}
		if o.fullSince.IsZero() {
			o.fullSince = time.Now()
			o.streamFull.Set(1)
		}
		if !o.fullLogged && time.Since(o.fullSince) > 10*time.Second {
			o.log.Warnf("Stream %s is full (%d of %s bytes, %d of %s messages): publishing waits for the worker to consume, the replication slot keeps the WAL meanwhile; nothing is lost", o.conf.stream,
				info.State.Bytes, limitText(info.Config.MaxBytes), info.State.Msgs, limitText(info.Config.MaxMsgs))
			o.fullLogged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for room in stream %s: %w", o.conf.stream, ctx.Err())
		case <-stop.Done():
			return fmt.Errorf("wait for room in stream %s: %w", o.conf.stream, shutdown.ErrStopping)
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// endFullEpisode ends an episode of waiting for room: a batch found room
// at once.
func (o *jsOutput) endFullEpisode() {
	if o.fullSince.IsZero() {
		return
	}
	if o.fullLogged {
		o.log.Infof("Stream %s has room again: publishing resumed after %v", o.conf.stream, time.Since(o.fullSince).Round(time.Millisecond))
	}
	o.fullSince, o.fullLogged = time.Time{}, false
	o.streamFull.Set(0)
}

// streamBounded reports whether a stream refuses new messages once a size
// or count limit is reached, so publishing must wait for room.
func streamBounded(c jetstream.StreamConfig) bool {
	return c.Discard == jetstream.DiscardNew && (c.MaxBytes > 0 || c.MaxMsgs > 0)
}

// streamRoom is how many bytes and messages a bounded stream takes before
// it is full (math.MaxUint64 for no limit).
func streamRoom(c jetstream.StreamConfig, st jetstream.StreamState) (bytes, msgs uint64) {
	bytes, msgs = math.MaxUint64, math.MaxUint64
	if c.MaxBytes > 0 {
		bytes = uint64(c.MaxBytes) - min(st.Bytes, uint64(c.MaxBytes))
	}
	if c.MaxMsgs > 0 {
		msgs = uint64(c.MaxMsgs) - min(st.Msgs, uint64(c.MaxMsgs))
	}
	return bytes, msgs
}

// limitText is a stream limit for a log line.
func limitText(limit int64) string {
	if limit <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(limit, 10)
}

// storedSize bounds the bytes the server's file store counts for m (record
// length, sequence, time, subject, headers, body and hash), its headers
// bounded by headerBytes.
func storedSize(m *nats.Msg, headerBytes int) uint64 {
	return uint64(22+len(m.Subject)+4+headerBytes+len(m.Data)+8) + 64 // 64: slack for headers
}

// jsHeaderBytes bounds the size of the headers a pack is published with.
func jsHeaderBytes(p jsproto.Pack, stream string) int {
	// NATS/1.0, Nats-Msg-Id, Nats-Expected-Stream, Pgflo-Events,
	// Pgflo-Barrier and Pgflo-Positions lines.
	n := 128 + len(p.MsgID) + len(stream) + len(p.Barrier)
	if p.Positions != nil {
		n += len(jsproto.HeaderPositions) + 4 + (int(p.Positions[len(p.Positions)-1]-p.Positions[0])/8+1)*4/3 + 4
	}
	return n
}

// items maps the batch to the events to publish, with their identity and
// subject. With partitions it also routes each event to its partition,
// turns barriers into a copy per partition and puts a sync barrier before
// the first streamed change that follows snapshot rows (or this output's
// start); needSync is what o.needSync becomes once the batch is stored.
func (o *jsOutput) items(batch service.MessageBatch) (items []jsproto.Item, needSync bool, err error) {
	items = make([]jsproto.Item, 0, len(batch))
	needSync = o.needSync
	n := o.conf.partitions
	// parts holds each item's partition, -1 for a barrier copy.
	var parts []int
	if n > 1 {
		parts = make([]int, 0, len(batch))
	}
	add := func(it jsproto.Item, k int) {
		items = append(items, it)
		parts = append(parts, k)
	}
	// A batch's events mostly come in runs of one table: its subject is
	// built once a run.
	var lastSchema, lastTable, lastSubject string
	for i, msg := range batch {
		body, err := msg.AsBytes()
		if err != nil {
			return nil, false, fmt.Errorf("message %d: %w", i, err)
		}
		it := jsproto.Item{Body: body}
		tx, hasTx := msg.MetaGet(event.MetaTx)
		posText, hasPos := msg.MetaGet(event.MetaTxPos)
		// Without both, the event has no stable identity: no id.
		if hasTx && hasPos && tx != "" {
			pos, err := strconv.ParseUint(posText, 10, 64)
			if err != nil {
				return nil, false, fmt.Errorf("message %d: metadata %s=%q is not a position: %w", i, event.MetaTxPos, posText, err)
			}
			it.Tx, it.Pos = tx, pos
		}
		if rowsText, ok := msg.MetaGet(event.MetaPackRows); ok {
			rows, err := strconv.Atoi(rowsText)
			if err != nil || rows < 1 {
				return nil, false, fmt.Errorf("message %d: metadata %s=%q is not a positive row count", i, event.MetaPackRows, rowsText)
			}
			it.Rows = rows
		}
		schema, hasSchema := msg.MetaGet(event.MetaSchema)
		table, hasTable := msg.MetaGet(event.MetaTable)
		if !hasSchema || !hasTable {
			head, err := event.Peek(body)
			if err != nil {
				return nil, false, fmt.Errorf("message %d: not a pg_flo change event and no %s/%s metadata to route it by: %w", i, event.MetaSchema, event.MetaTable, err)
			}
			schema, table = head.Schema, head.Table
		}
		if i == 0 || schema != lastSchema || table != lastTable {
			lastSchema, lastTable = schema, table
			lastSubject = jsproto.TableSubject(o.conf.subjectPrefix, schema, table)
		}
		it.Subject = lastSubject
		if n == 1 {
			items = append(items, it)
			continue
		}

		// Streamed changes are identified by their commit LSN; snapshot
		// rows (and events without identity) are not.
		commitLSN, lsnErr := pglogrepl.ParseLSN(it.Tx)
		streamed := it.Tx != "" && lsnErr == nil
		if !streamed {
			needSync = true
		} else if needSync {
			id := partition.BarrierID{CommitLSN: commitLSN, Pos: it.Pos, Sync: true}
			for k := 0; k < n; k++ {
				add(jsproto.Item{
					Tx: it.Tx, Pos: it.Pos, Subject: jsproto.PartitionSubject(it.Subject, k),
					Barrier: id.String(), IDSuffix: "/sync" + jsproto.PartitionIDSuffix(k),
				}, -1)
			}
			needSync = false
		}
		if it.Rows > 0 {
			k := partition.PackPartition(it.Tx, it.Pos, n)
			it.Subject = jsproto.PartitionSubject(it.Subject, k)
			add(it, k)
			continue
		}
		route, op, err := o.route(msg, body)
		if err != nil {
			return nil, false, fmt.Errorf("message %d: %w", i, err)
		}
		if !route.Barrier {
			it.Subject = jsproto.PartitionSubject(it.Subject, route.Partition)
			add(it, route.Partition)
			continue
		}
		if !streamed || !hasPos {
			return nil, false, fmt.Errorf("message %d: a %s of %s.%s concerns every partition and needs the metadata %s (a commit LSN) and %s to order it, as pg_flo_replicator sets them", i, op, schema, table, event.MetaTx, event.MetaTxPos)
		}
		id := partition.BarrierID{CommitLSN: commitLSN, Pos: it.Pos}
		for k := 0; k < n; k++ {
			c := it
			c.Subject = jsproto.PartitionSubject(it.Subject, k)
			c.Barrier, c.IDSuffix = id.String(), jsproto.PartitionIDSuffix(k)
			add(c, -1)
		}
	}
	if n > 1 {
		items = groupByPartition(items, parts, n)
	}
	return items, needSync, nil
}

// groupByPartition puts together, between two barriers, the items of each
// partition, keeping their order: consecutive changes of a transaction and
// table in one partition are then packed into one message (their positions
// in its Pgflo-Positions header), where in the source's order they would
// alternate between partitions, one message each. The order between
// partitions does not matter; barriers keep their place. A unit of the
// replicator (a transaction piece) is always in one batch and barriers are
// at fixed positions of it, so a replay is grouped, packed and identified
// the same way.
func groupByPartition(items []jsproto.Item, parts []int, n int) []jsproto.Item {
	out := make([]jsproto.Item, 0, len(items))
	byPart := make([][]jsproto.Item, n)
	flush := func() {
		for k := range byPart {
			out = append(out, byPart[k]...)
			byPart[k] = byPart[k][:0]
		}
	}
	for i, it := range items {
		if parts[i] < 0 {
			flush()
			out = append(out, it)
			continue
		}
		byPart[parts[i]] = append(byPart[parts[i]], it)
	}
	flush()
	return out
}

// route is where an event goes among the partitions: by the hashes
// pg_flo_replicator computed from the decoded row (metadata
// pg_flo_key_hash, pg_flo_new_key_hash), or else by its body's key. It
// returns the event's operation too, for messages.
func (o *jsOutput) route(msg *service.Message, body []byte) (partition.Routing, event.Op, error) {
	n := o.conf.partitions
	op, _ := msg.MetaGet(event.MetaOp)
	if hashText, ok := msg.MetaGet(event.MetaKeyHash); ok {
		hash, err := strconv.ParseUint(hashText, 10, 64)
		if err != nil {
			return partition.Routing{}, "", fmt.Errorf("metadata %s=%q is not a hash: %w", event.MetaKeyHash, hashText, err)
		}
		var newHash uint64
		newText, moved := msg.MetaGet(event.MetaNewKeyHash)
		if moved {
			if newHash, err = strconv.ParseUint(newText, 10, 64); err != nil {
				return partition.Routing{}, "", fmt.Errorf("metadata %s=%q is not a hash: %w", event.MetaNewKeyHash, newText, err)
			}
		}
		return partition.RouteHashes(hash, newHash, moved, n), event.Op(op), nil
	}
	var ev event.RawEvent
	if err := o.decoder.DecodeRaw(body, &ev); err != nil {
		return partition.Routing{}, event.Op(op), fmt.Errorf("route to a partition: %w", err)
	}
	route, err := partition.Route(&ev, n)
	return route, ev.Op, err
}

// Close drains the connection: publishes in flight complete, then it closes.
// It is safe to call more than once.
func (o *jsOutput) Close(ctx context.Context) error {
	o.mu.Lock()
	nc := o.nc
	o.closed = true
	o.nc, o.js = nil, nil
	o.mu.Unlock()
	if nc == nil {
		return nil
	}
	return jsproto.Drain(ctx, nc)
}
