// Package inputs holds pgflo's Benthos inputs: pg_flo_replicator, which reads
// a PostgreSQL logical replication slot, and pg_flo_worker, which reads a
// group's JetStream stream. They are thin adapters: the protocol work lives in
// internal/ packages.
package inputs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/replication"
)

// Field names of pg_flo_replicator.
const (
	repFieldDSN            = "dsn"
	repFieldGroup          = "group"
	repFieldSchema         = "schema"
	repFieldTables         = "tables"
	repFieldMode           = "mode"
	repFieldSlot           = "slot"
	repFieldPublication    = "publication"
	repFieldStatusInterval = "status_interval"
	repFieldMaxBatchEvents = "max_batch_events"
	repFieldQueueEvents    = "queue_events"
)

// Replication modes, as pg_flo's --stream, --copy-and-stream and --copy.
const (
	modeStream        = "stream"
	modeCopyAndStream = "copy_and_stream"
	modeCopy          = "copy"
)

func replicatorSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Streams the changes of PostgreSQL tables from a logical replication slot as pgflo change events.").
		Description(`
Creates the group's publication and logical replication slot (pgoutput) when they are absent and reuses them
when present, then streams every INSERT, UPDATE, DELETE and TRUNCATE of the published tables as one message
per change, in the JSON change event format (docs/event.md).

Every message carries the metadata `+"`pg_flo_op`, `pg_flo_schema`, `pg_flo_table` and `pg_flo_lsn`"+` (plus
`+"`pg_flo_tx` and `pg_flo_tx_pos`"+`, which identify the change across replays and from which
`+"`pg_flo_jetstream`"+` derives its de-duplication ids).

### Delivery guarantee

The slot's confirmed flush position moves only to the end of the last transaction whose events, and all events
before them, the pipeline has acknowledged. A crash, a restart or a failing output never loses a change: after a
restart, streaming resumes at the slot's confirmed position, so changes that were in flight are delivered again
(at-least-once). A batch the output rejects is delivered again, in order, before anything newer; to keep that
order the input keeps one batch in flight at a time.

Messages are batched: a batch holds whole transactions (a transaction larger than 1024 events is split into
pieces of 1024) up to `+"`max_batch_events`"+`, so a backlog is read in large batches and a quiet source is
delivered without delay.

### Source requirements

`+"`wal_level = logical`"+` on the source, and a role with the REPLICATION attribute (or superuser) that may create
the publication (or owns the tables). The input checks both and names what is missing.`).
		Fields(
			service.NewStringField(repFieldDSN).
				Description("Connection string of the source database, as a URL (`postgres://user:password@host:5432/db?sslmode=disable`) or keyword/value pairs. The password is never logged.").
				Example("postgres://replicator:secret@localhost:5432/myapp").
				Secret(),
			service.NewStringField(repFieldGroup).
				Description("Name of the replication group. It names the slot and publication (`pg_flo_<group>_publication`, dashes replaced by underscores, as pg_flo does) and, in `pg_flo_jetstream`, the stream.").
				Example("users"),
			service.NewStringField(repFieldSchema).
				Description("Schema of tables named without one, and the schema whose tables are all replicated when `tables` is empty.").
				Default("public"),
			service.NewStringListField(repFieldTables).
				Description("Tables to replicate, as `table` or `schema.table`. Empty replicates every table of `schema` (on PostgreSQL 15+ including tables created later). Every named table must exist: an unknown one stops the input before anything is created on the source.").
				Example([]string{"users", "billing.invoices"}).
				Default([]string{}),
			service.NewStringEnumField(repFieldMode, modeStream, modeCopyAndStream, modeCopy).
				Description("`stream` streams changes from the slot. `copy_and_stream` (copy the tables' current rows, then stream) and `copy` (copy only) are pg_flo's --copy-and-stream and --copy; they are not available in this version yet and are rejected with an error.").
				Default(modeStream),
			service.NewStringField(repFieldSlot).
				Description("Replication slot name. Default: pg_flo's name for the group, `pg_flo_<group>_publication`.").
				Optional().
				Advanced(),
			service.NewStringField(repFieldPublication).
				Description("Publication name. Default: pg_flo's name for the group, `pg_flo_<group>_publication`.").
				Optional().
				Advanced(),
			service.NewDurationField(repFieldStatusInterval).
				Description("How often a standby status update is sent to the source when no acknowledgement or keepalive request triggers one sooner. Keep it well below the server's `wal_sender_timeout`.").
				Default("10s").
				Advanced(),
			service.NewIntField(repFieldMaxBatchEvents).
				Description("The most events in one batch (a single transaction piece of up to 1024 events is never split further).").
				Default(4096).
				Advanced(),
			service.NewIntField(repFieldQueueEvents).
				Description("How many decoded events may wait for the pipeline. It bounds the input's memory; when the queue is full, reading from the slot pauses (the source keeps the WAL).").
				Default(32768).
				Advanced(),
		).
		LintRule(`root = if this.group.or("").trim() == "" { ["field group is required and must not be empty"] }`)
}

func init() {
	err := service.RegisterBatchInput("pg_flo_replicator", replicatorSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newReplicatorInput(conf, mgr)
			if err != nil {
				return nil, err
			}
			return service.AutoRetryNacksBatched(in), nil
		})
	if err != nil {
		panic(err)
	}
}

type replicatorInput struct {
	source   replication.Source
	stream   replication.StreamConfig
	maxBatch int
	log      *service.Logger

	mu      sync.Mutex
	current *replication.Stream
	// inFlight holds a token while a batch is unacknowledged: one batch at a
	// time keeps redelivery of a rejected batch in order.
	inFlight chan struct{}
}

func newReplicatorInput(conf *service.ParsedConfig, mgr *service.Resources) (*replicatorInput, error) {
	in := &replicatorInput{log: mgr.Logger(), inFlight: make(chan struct{}, 1)}
	r := confread.New(conf)
	in.source.DSN = r.String(repFieldDSN)
	group := r.String(repFieldGroup)
	in.source.Schema = r.String(repFieldSchema)
	in.source.Tables = r.StringList(repFieldTables)
	mode := r.String(repFieldMode)
	in.source.Slot = replication.PgFloName(group)
	if conf.Contains(repFieldSlot) {
		in.source.Slot = r.String(repFieldSlot)
	}
	in.source.Publication = replication.PgFloName(group)
	if conf.Contains(repFieldPublication) {
		in.source.Publication = r.String(repFieldPublication)
	}
	statusInterval := r.Duration(repFieldStatusInterval)
	in.maxBatch = r.Int(repFieldMaxBatchEvents)
	queueEvents := r.Int(repFieldQueueEvents)
	if err := r.Err(); err != nil {
		return nil, err
	}

	if strings.TrimSpace(group) == "" {
		return nil, errors.New("field group: must not be empty")
	}
	for i, t := range in.source.Tables {
		if strings.TrimSpace(t) == "" || strings.Count(t, ".") > 1 {
			return nil, fmt.Errorf("field tables[%d]: %q is not a table name (use table or schema.table)", i, t)
		}
	}
	if mode != modeStream {
		return nil, fmt.Errorf("field mode: %q is not available in this version yet; only %q is (the copy modes come with the snapshot feature)", mode, modeStream)
	}
	if statusInterval < 100*time.Millisecond {
		return nil, fmt.Errorf("field %s: %v is too short (at least 100ms)", repFieldStatusInterval, statusInterval)
	}
	if in.maxBatch < 1 {
		return nil, fmt.Errorf("field %s: must be at least 1", repFieldMaxBatchEvents)
	}
	if queueEvents < 1 {
		return nil, fmt.Errorf("field %s: must be at least 1", repFieldQueueEvents)
	}
	in.stream = replication.StreamConfig{
		DSN:            in.source.DSN,
		Slot:           in.source.Slot,
		Publication:    in.source.Publication,
		StatusInterval: statusInterval,
		QueueEvents:    queueEvents,
		Logger:         in.log,
	}
	return in, nil
}

func (in *replicatorInput) Connect(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.current != nil {
		return nil
	}
	prep, err := replication.Prepare(ctx, in.source)
	if err != nil {
		return err
	}
	stream, err := replication.StartStream(ctx, in.stream, prep)
	if err != nil {
		return err
	}
	in.current = stream
	return nil
}

func (in *replicatorInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	in.mu.Lock()
	stream := in.current
	in.mu.Unlock()
	if stream == nil {
		return nil, nil, service.ErrNotConnected
	}
	select {
	case in.inFlight <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	b, err := stream.Next(ctx, in.maxBatch)
	if err != nil {
		<-in.inFlight
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		in.log.Errorf("Replication stream failed, reconnecting: %v", err)
		in.mu.Lock()
		if in.current == stream {
			in.current = nil
		}
		in.mu.Unlock()
		return nil, nil, service.ErrNotConnected
	}
	batch := make(service.MessageBatch, len(b.Events))
	for i := range b.Events {
		e := &b.Events[i]
		msg := service.NewMessage(e.JSON)
		for _, kv := range e.Meta() {
			msg.MetaSetMut(kv[0], kv[1])
		}
		batch[i] = msg
	}
	return batch, func(ctx context.Context, err error) error {
		// Wrapped by AutoRetryNacksBatched: this runs once, on success.
		if err == nil {
			stream.Ack(b.Checkpoint)
		}
		<-in.inFlight
		return nil
	}, nil
}

func (in *replicatorInput) Close(ctx context.Context) error {
	in.mu.Lock()
	stream := in.current
	in.current = nil
	in.mu.Unlock()
	if stream == nil {
		return nil
	}
	return stream.Close(ctx)
}
