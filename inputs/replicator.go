// Package inputs holds pgflo's Benthos inputs: pg_flo_replicator, which reads
// a PostgreSQL logical replication slot, and pg_flo_worker, which reads a
// group's JetStream stream. They are thin adapters: the protocol work lives in
// internal/ packages.
package inputs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/bytesize"
	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/natsconf"
	"github.com/pgflo/pgflo/internal/packmsg"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/shutdown"
	"github.com/pgflo/pgflo/internal/snapshot"
	"github.com/pgflo/pgflo/internal/source"
	"github.com/pgflo/pgflo/internal/state"
)

// Field names of pg_flo_replicator.
const (
	repFieldDSN                 = "dsn"
	repFieldGroup               = "group"
	repFieldSchema              = "schema"
	repFieldTables              = "tables"
	repFieldMode                = "mode"
	repFieldSlot                = "slot"
	repFieldPublication         = "publication"
	repFieldNATS                = "nats"
	repFieldNATSURL             = "nats_url" // replaced by nats.url
	repFieldTrackDDL            = "track_ddl"
	repFieldMaxCopyWorkers      = "max_copy_workers"
	repFieldMaxCopyWorkersTable = "max_copy_workers_per_table"
	repFieldCopyChunkPages      = "copy_chunk_pages"
	repFieldProgressInterval    = "progress_interval"
	repFieldStatusInterval      = "status_interval"
	repFieldMaxBatchEvents      = "max_batch_events"
	repFieldQueueEvents         = "queue_events"
	repFieldSnapshotPacks       = "snapshot_packs"
	repFieldOwnerLease          = "owner_lease"
	repFieldStateReplicas       = "state_replicas"
	repFieldRetainedWALWarning  = "slot_retained_wal_warning"
)

const replicatorDescription = `
Creates the group's publication and logical replication slot (pgoutput) when they are absent and reuses them
when present, then emits every INSERT, UPDATE, DELETE and TRUNCATE of the published tables as one message per
change, in the JSON change event format ([docs/event.md](../event.md)).

Every message carries the metadata ‹pg_flo_op›, ‹pg_flo_schema›, ‹pg_flo_table› and ‹pg_flo_lsn› (plus
‹pg_flo_tx› and ‹pg_flo_tx_pos›, which identify the change across replays and from which ‹pg_flo_jetstream›
derives its de-duplication ids). Row changes also carry ‹pg_flo_key_hash› (and ‹pg_flo_new_key_hash› when an UPDATE
changed the key), which a partitioned ‹pg_flo_jetstream› routes them by.

### Modes

- ‹stream› (pg_flo's --stream): stream changes from the slot.
- ‹copy_and_stream› (--copy-and-stream): copy the tables' current rows, then stream. The slot is created with an
  exported snapshot; every copy worker imports it (‹SET TRANSACTION SNAPSHOT›), so every row committed before the
  slot's consistent point is copied and every later change is streamed, each exactly once. Snapshot rows are
  INSERT events with ‹snapshot: true› and the consistent point as ‹lsn›. A group whose slot exists and whose
  snapshot is finished (or was never started) streams without copying again, as pg_flo does.
- ‹copy› (--copy): copy the tables' current rows, then the input ends (the pipeline shuts down cleanly). No slot
  is created.

Tables are split into chunks of ‹copy_chunk_pages› pages (from the relation's size, no scan) read with
‹COPY (SELECT … WHERE ctid >= … AND ctid < …) TO STDOUT›; up to ‹max_copy_workers_per_table› chunks of a table
and ‹max_copy_workers› chunks overall are read at once. Partitioned tables are copied leaf partition by leaf
partition and their rows are emitted under the partitioned table's name, as their streamed changes are
(the publication uses ‹publish_via_partition_root›). Memory stays bounded (‹queue_events›): the copy waits for
the pipeline.

### Resume by chunk

The copy modes keep their plan and the chunks whose every event the pipeline acknowledged in the group's
JetStream key-value bucket (‹pg_flo_state_<group>›, key ‹snapshot›, on ‹nats.url›). After a crash, a restart
copies only the unfinished chunks, under a new snapshot whose position in the WAL is exact (a temporary slot's),
and streams from the slot's confirmed position (never past the first snapshot's consistent point) in this order:
the changes committed before the new snapshot, then the chunks copied under it, then the later changes. Every row
and every change reaches the output at least once, and each row only moves forward: the rows copied before the
crash get every change after their snapshot, the rows copied after it are newer than every change delivered
before them. Changes delivered again are absorbed by an idempotent apply (upsert by key, as ‹pg_flo_postgres›
does, whose progress table also skips them). Tables without a replica-identity key can get duplicate rows in that
case.

An UPDATE during the interruption can move a row from a chunk not yet copied onto a page of a chunk copied
before; neither copy then holds it. When the UPDATE carries the whole row, it is enough. When it leaves a TOAST
value out (the value did not change), it is not: while the changes before the new snapshot are streamed, the
restart notes the keys of such rows in the plan (before the slot is confirmed past them) and reads those rows
again by key under the new snapshot, as snapshot INSERT events (‹pg_flo_tx› ‹snapshot.<run>.keys<n>›). A table
with more than 10,000 such rows is copied again from its first chunk instead, which the log says.

Mode ‹copy› has no stream to reconcile the two snapshots: after a resume, chunks copied before hold their rows as
they were then, and a row that an UPDATE moved from a chunk not yet copied into one copied before is in neither
copy. For an exact copy after an interruption, let ‹pgflo cleanup› remove the group's state and copy again.

### One owner per group

With ‹nats.url› set, one replicator of a group copies and streams at a time: the owner holds a lease in the group's
key-value bucket (key ‹owner›: its id, host, pid and since when) and renews it every third of ‹owner_lease›. Another
replicator of the same group — a rolling deploy's new one, a standby — waits: it logs once, at INFO, who owns the
group, reports ‹pg_flo_replicator_owner› 0 and is not ready (‹/ready› answers 503, the input is not connected). It
takes over when the owner stops (a clean stop releases the lease at once) or once the lease went unrenewed for
‹owner_lease› (the owner was killed, hung, or cut off from NATS), and then resumes as after a crash: an unfinished
snapshot by chunk, then streaming from the slot. An owner that cannot renew its lease for two thirds of
‹owner_lease›, or that finds the snapshot record written by another replicator, stops producing at once — nothing
it still holds is delivered — and waits as a standby. Without ‹nats.url› (mode ‹stream› only) the slot decides, as
PostgreSQL lets one connection stream from it: a second replicator stands by the same way and streams once the
slot is free.

### Delivery guarantee

The slot's confirmed flush position moves only to the end of the last transaction whose events, and all events
before them, the pipeline has acknowledged. A crash, a restart or a failing output never loses a change: after a
restart, streaming resumes at the slot's confirmed position, so changes that were in flight are delivered again
(at-least-once). A batch the output rejects is delivered again, in order, before anything newer; to keep that
order the input keeps one batch in flight at a time.

Messages are batched: a batch holds whole transactions (a transaction larger than 1024 events is split into
pieces of 1024) up to ‹max_batch_events›, so a backlog is read in large batches and a quiet source is delivered
without delay.

### Source requirements

‹wal_level = logical› on the source, and a role with the REPLICATION attribute (or superuser) that may create
the publication (or owns the tables), and for the copy modes SELECT on the tables. The input checks these and
names what is missing before it creates anything.

### Snapshot packs

With ‹snapshot_packs: keep› (the default), snapshot rows leave the input as packs: one message holds up to 1024 rows of
a table exactly as COPY's text format wrote them, after a header line describing the table (docs/jetstream.md).
That is a quarter of the bytes of the rows' change events and no per-row work. ‹pg_flo_jetstream› publishes a pack
as one message, ‹pg_flo_postgres› writes it with COPY, and ‹pg_flo_decode›, ‹pg_flo_rules›, ‹pg_flo_route› and
‹pg_flo_worker› (by default) expand it into the rows' events. A pack message carries the metadata of its rows plus
‹pg_flo_pack_rows› (the number of rows; ‹pg_flo_tx_pos› is the first row's position). Set ‹snapshot_packs: expand›
when stock processors or outputs read this input directly: every snapshot row is then its own event message.

### Slot hazards

A slot PostgreSQL invalidated (‹wal_status› ‹lost›, after the slot fell more than the source's ‹max_slot_wal_keep_size›
behind; on PostgreSQL 16+ also a slot ‹conflicting› with recovery), or a slot dropped while the group's state (with
‹nats.url›) says the group streamed from it, cannot bring back the changes made since its last confirmed position,
and a new slot would skip them without a word. The input then logs one error, with PostgreSQL's own reason, naming the
way out — ‹pgflo resync --group <group>› (docs/operations.md) — sets ‹pg_flo_replicator_slot_lost› to 1 and stays not
connected (‹/ready› answers 503): it neither exits nor retries in a loop. It looks again, quietly, every 15 seconds,
and once a resync was requested it resumes by itself: it creates a new slot, emits a TRUNCATE event of every table
(all at the LSN just before the new slot's consistent point), then copies every table and streams, whatever its mode
(‹stream› included). A first start, with no trace of the group in its state, creates the slot as always. Without
‹nats.url› a dropped slot cannot be told from a first start.

The WAL the slot retains on the source is checked every ‹status_interval› (gauge ‹pg_flo_slot_retained_wal_bytes›);
past ‹slot_retained_wal_warning› a warning is logged, once each time it grows past it.

### Metrics

‹pg_flo_replication_lag_bytes› (the server's WAL end minus the slot's confirmed position, updated with every
status update), ‹pg_flo_replicator_owner› (1 while this replicator owns its group, 0 while it stands by), ‹pg_flo_replicator_slot_lost› (1 while the group's slot is invalidated or dropped, see Slot hazards), ‹pg_flo_slot_retained_wal_bytes› (the WAL the slot keeps on the source), ‹pg_flo_events_total› by ‹table› and ‹op›, and for snapshots ‹pg_flo_snapshot_rows_total›, ‹pg_flo_snapshot_chunks_done› and ‹pg_flo_snapshot_chunks_total›, labelled by
‹table›; progress (rows, chunks done/total, rows/s, ETA) is logged per table every ‹progress_interval›.`

// defaultCopyWorkers is max_copy_workers' default on a machine of cpus
// cores: one chunk a core, at least 2 and at most 4.
func defaultCopyWorkers(cpus int) int { return min(max(cpus, 2), 4) }

func replicatorSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Streams the changes of PostgreSQL tables from a logical replication slot as pgflo change events, after an optional consistent parallel snapshot.").
		Description(strings.NewReplacer("‹", "`", "›", "`").Replace(replicatorDescription)).
		Fields(
			service.NewStringField(repFieldDSN).
				Description("Connection string of the source database, as a URL (`postgres://user:password@host:5432/db?sslmode=disable`) or keyword/value pairs. The password is never logged. TLS takes libpq's keywords (`sslmode=verify-full`, `sslrootcert`, `sslcert`, `sslkey`) or, when the string has none, the `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` environment variables.").
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
			service.NewStringEnumField(repFieldMode, source.ModeStream, source.ModeCopyAndStream, source.ModeCopy).
				Description("`stream`, `copy_and_stream` or `copy`, as pg_flo's --stream, --copy-and-stream and --copy (see Modes).").
				Default(source.ModeStream),
			service.NewStringField(repFieldSlot).
				Description("Replication slot name (lower-case letters, digits and underscores). Default: pg_flo's name for the group, `pg_flo_<group>_publication`.").
				Optional().
				Advanced(),
			service.NewStringField(repFieldPublication).
				Description("Publication name. Default: pg_flo's name for the group, `pg_flo_<group>_publication`.").
				Optional().
				Advanced(),
			natsconf.ObjectField(repFieldNATS,
				"The NATS connection of the group's state: the same fields as `pg_flo_jetstream` and `pg_flo_worker` take for theirs (url, authentication, TLS).",
				"NATS server holding the group's state (the JetStream key-value bucket `pg_flo_state_<group>`): the snapshot plan and finished chunks, and the lease that lets one replicator of the group run at a time (see One owner per group); several URLs may be given separated by commas. Required by the copy modes, recommended for `stream`; unset or empty, the replicator uses no NATS. Credentials may be embedded (`nats://user:password@host:4222`): pgflo keeps them out of its logs and errors, and the field is a secret, so printed configs (`pgflo echo`) show it scrubbed unless it is an environment reference such as `${NATS_URL}`; the `user`/`password` fields keep the URL readable."),
			service.NewStringField(repFieldNATSURL).
				Description("Replaced by `nats.url`, which it stands for: still accepted, with a warning at start. Setting both is an error.").
				Optional().
				Advanced(),
			service.NewBoolField(repFieldTrackDDL).
				Description("Capture DDL on the published tables (pg_flo's --track-ddl) as DDL events, in commit order with the data: an event trigger (named per group, so groups don't clobber each other) writes each command into the WAL with `pg_logical_emit_message`, and the slot delivers it inside its transaction. Needs a superuser (event triggers are superuser-only). `DROP TABLE` is not captured.").
				Default(false),
			service.NewIntField(repFieldMaxCopyWorkers).
				Description("The most chunks copied at once over all tables (each is one connection to the source). 0 takes this machine's cores, at least 2 and at most 4: pgflo receives and packs every chunk it copies, and more chunks at once than its cores only take turns with the rest of the pipeline. Set it near the source's cores when pgflo's host has cores to spare.").
				Default(0),
			service.NewIntField(repFieldMaxCopyWorkersTable).
				Description("The most chunks of one table copied at once (pg_flo's --max-copy-workers-per-table).").
				Default(4),
			service.NewIntField(repFieldCopyChunkPages).
				Description("Pages (8 KiB blocks) per snapshot chunk: the unit of parallelism and of resume.").
				Default(1000).
				Advanced(),
			service.NewDurationField(repFieldProgressInterval).
				Description("How often snapshot progress is logged per table.").
				Default("10s").
				Advanced(),
			service.NewDurationField(repFieldStatusInterval).
				Description("How often a standby status update is sent to the source when no acknowledgement or keepalive request triggers one sooner. Keep it well below the server's `wal_sender_timeout`.").
				Default("10s").
				Advanced(),
			service.NewIntField(repFieldMaxBatchEvents).
				Description("The most events in one batch (a single transaction piece of up to 1024 events is never split further; a pack of snapshot rows counts its rows). Large batches let `pg_flo_postgres` in the same process write many snapshot packs at once and apply a backlog in few transactions.").
				Default(16384).
				Advanced(),
			service.NewStringAnnotatedEnumField(repFieldSnapshotPacks, map[string]string{
				packsKeep:   "Snapshot rows leave the input as packs (see Snapshot packs): for `pg_flo_jetstream`, `pg_flo_postgres` and pgflo's processors.",
				packsExpand: "Every snapshot row is its own event message, e.g. for a stock output right after this input.",
			}).
				Description("How snapshot rows leave the input, as `pg_flo_worker`'s field of the same name.").
				Default(packsKeep),
			service.NewDurationField(repFieldOwnerLease).
				Description("How long the group's ownership lease lasts without renewal (see One owner per group): a standby takes over this long after the owner stopped renewing it — killed, hung or cut off from NATS — and the owner, renewing every third of it, stops producing once two thirds passed without a renewal. A cleanly stopped owner hands over at once. Shorter fails over sooner; longer rides out longer NATS hiccups without a hand-over. At least 1s.").
				Default("10s").
				Advanced(),
			service.NewIntField(repFieldStateReplicas).
				Description("Number of replicas of the group's state bucket (`pg_flo_state_<group>`) in a NATS cluster, used when the bucket is created. Set it like `pg_flo_jetstream`'s `stream_replicas`: 3 in a 3-node cluster, so the snapshot progress and the ownership lease survive the loss of a node as the changes do. An existing bucket keeps its replicas; a warning says when they are fewer.").
				Default(1).
				Advanced(),
			service.NewStringField(repFieldRetainedWALWarning).
				Description("Log a warning when the group's slot keeps more WAL than this on the source (from the slot's restart position to the end of WAL, checked every `status_interval`; see Slot hazards): the replicator, its output or a worker is down or too slow, and the source's disk fills — or, with `max_slot_wal_keep_size`, the slot will be invalidated. Set it well below `max_slot_wal_keep_size`. Units B, KiB (kB), MiB (MB), GiB (GB), TiB (TB), powers of 1024. `0` turns the warning off; the gauge `pg_flo_slot_retained_wal_bytes` is kept either way.").
				Example("512MiB").
				Example("10GiB").
				Default("1GiB"),
			service.NewIntField(repFieldQueueEvents).
				Description("How many events may wait for the pipeline. It bounds the input's memory; when the queue is full, reading from the slot and copying pause (the source keeps the WAL).").
				Default(32768).
				Advanced(),
		).
		LintRule(`root = [
  if this.group.or("").trim() == "" { "field group is required and must not be empty" },
  if ["true", "false"].contains(this.snapshot_packs.or("").string()) { "field snapshot_packs: true and false were replaced by keep and expand" },
  if this.exists("nats_url") && this.exists("nats.url") { "fields nats_url and nats.url are both set: keep nats.url (nats_url is its old name)" },
` + confread.LintChecks(confread.Removed{Field: "snapshot_binary", Instead: "snapshot rows are read with binary COPY wherever every column's type allows it; delete the field"}) + `].filter(e -> e != null)`)
}

func init() {
	err := service.RegisterBatchInput("pg_flo_replicator", replicatorSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newReplicatorInput(conf, mgr)
			if err != nil {
				return nil, err
			}
			// No AutoRetryNacksBatched: a nacked batch is kept and read
			// again, before anything newer (see ReadBatch), without the
			// wrapper's bookkeeping per message.
			return in, nil
		})
	if err != nil {
		panic(err)
	}
}

type replicatorInput struct {
	conf  source.Config
	group string
	// stateConn reaches the group's state bucket; nil without NATS.
	// natsField names its field in errors (nats, or the old nats_url).
	stateConn  *jsproto.ConnConfig
	natsField  string
	replicas   int // of the state bucket
	ownerLease time.Duration
	holder     state.Holder // this process, as its lease says
	maxBatch   int
	packs      bool // emit snapshot packs as they are (else expand them)
	log        *service.Logger
	// stop is fired when Benthos asks the input to stop, so the output
	// gives up a batch it cannot finish (internal/shutdown).
	stop *shutdown.Signal

	owner       *service.MetricGauge // pg_flo_replicator_owner
	slotLost    *service.MetricGauge // pg_flo_replicator_slot_lost
	retainedWAL *service.MetricGauge // pg_flo_slot_retained_wal_bytes
	lagBytes    *service.MetricGauge
	eventsTotal *service.MetricCounter
	rowsTotal   *service.MetricCounter
	chunksDone  *service.MetricGauge
	chunksTotal *service.MetricGauge
	countMu     sync.Mutex
	doneCount   map[string]int64 // chunks done per table, for the gauge

	// slotLostReported is the slot hazard last logged, so that it is
	// logged once however often it is found again.
	slotLostReported string

	mu      sync.Mutex
	current *source.Source
	nc      *nats.Conn
	store   *state.Store
	// lease is the group's ownership lease while this replicator holds it;
	// it outlives a source that failed and is started again.
	lease *state.Lease
	// inFlight holds a token while a batch is unacknowledged: one batch at a
	// time keeps redelivery of a rejected batch in order.
	inFlight chan struct{}
	// rejected is the batch the pipeline nacked, of source rejectedOf: the
	// next read delivers it again, after retryWait (both under the token).
	rejected   *feed.Batch
	rejectedOf *source.Source
	retryWait  time.Duration
}

// Backoff between deliveries of a batch the pipeline keeps rejecting.
const (
	replicatorRetryMin = 50 * time.Millisecond
	replicatorRetryMax = 5 * time.Second
)

var slotNamePattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func newReplicatorInput(conf *service.ParsedConfig, mgr *service.Resources) (*replicatorInput, error) {
	in := &replicatorInput{log: mgr.Logger(), inFlight: make(chan struct{}, 1), doneCount: map[string]int64{}}
	r := confread.New(conf)
	src := replication.Source{DSN: r.String(repFieldDSN), Schema: r.String(repFieldSchema), Tables: r.StringList(repFieldTables)}
	in.group = r.String(repFieldGroup)
	in.stop = shutdown.Arm(mgr, in.group)
	mode := r.String(repFieldMode)
	src.Slot = replication.PgFloName(in.group)
	if conf.Contains(repFieldSlot) {
		src.Slot = r.String(repFieldSlot)
	}
	src.Publication = replication.PgFloName(in.group)
	if conf.Contains(repFieldPublication) {
		src.Publication = r.String(repFieldPublication)
	}
	stateConn, withNATS, err := natsconf.ParseConnAt(conf, repFieldNATS)
	if err != nil {
		return nil, err
	}
	in.natsField = repFieldNATS
	if conf.Contains(repFieldNATSURL) {
		if withNATS {
			return nil, fmt.Errorf("fields %s and %s.%s are both set: keep %s.%s (%s is its old name)", repFieldNATSURL, repFieldNATS, natsconf.FieldURL, repFieldNATS, natsconf.FieldURL, repFieldNATSURL)
		}
		// Empty, as before, means no NATS.
		stateConn = jsproto.ConnConfig{URL: r.String(repFieldNATSURL)}
		withNATS = stateConn.URL != ""
		in.natsField = repFieldNATSURL
		in.log.Warnf("Field %s is deprecated: use %s.%s, which takes the same URL (and %s's authentication and TLS fields)", repFieldNATSURL, repFieldNATS, natsconf.FieldURL, repFieldNATS)
	}
	if withNATS {
		stateConn.Name = "pgflo replicator " + in.group + " state"
		in.stateConn = &stateConn
	}
	copyCfg := snapshot.Config{
		DSN: src.DSN, Workers: r.Int(repFieldMaxCopyWorkers), PerTable: r.Int(repFieldMaxCopyWorkersTable),
		ProgressInterval: r.Duration(repFieldProgressInterval), Logger: in.log,
	}
	chunkPages := r.Int(repFieldCopyChunkPages)
	trackDDL := r.Bool(repFieldTrackDDL)
	statusInterval := r.Duration(repFieldStatusInterval)
	in.maxBatch = r.Int(repFieldMaxBatchEvents)
	queueEvents := r.Int(repFieldQueueEvents)
	in.packs = r.String(repFieldSnapshotPacks) == packsKeep
	in.ownerLease = r.Duration(repFieldOwnerLease)
	in.replicas = r.Int(repFieldStateReplicas)
	retainedWarning := r.String(repFieldRetainedWALWarning)
	if err := r.Err(); err != nil {
		return nil, err
	}
	retainedLimit, err := bytesize.Parse(retainedWarning)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", repFieldRetainedWALWarning, err)
	}

	if strings.TrimSpace(in.group) == "" {
		return nil, errors.New("field group: must not be empty")
	}
	for i, t := range src.Tables {
		if strings.TrimSpace(t) == "" || strings.Count(t, ".") > 1 {
			return nil, fmt.Errorf("field tables[%d]: %q is not a table name (use table or schema.table)", i, t)
		}
	}
	if !slotNamePattern.MatchString(src.Slot) {
		return nil, fmt.Errorf("field slot: %q is not a valid replication slot name (lower-case letters, digits and underscores; set slot or use a lower-case group)", src.Slot)
	}
	if !slotNamePattern.MatchString(strings.ToLower(src.Publication)) {
		return nil, fmt.Errorf("field publication: %q: use letters, digits and underscores", src.Publication)
	}
	if mode != source.ModeStream && in.stateConn == nil {
		return nil, fmt.Errorf("field %s.%s: mode %s records finished snapshot chunks in the group's JetStream state bucket: set %s.%s", repFieldNATS, natsconf.FieldURL, mode, repFieldNATS, natsconf.FieldURL)
	}
	if copyCfg.Workers == 0 {
		copyCfg.Workers = defaultCopyWorkers(runtime.NumCPU())
	}
	for name, v := range map[string]int{repFieldMaxCopyWorkers: copyCfg.Workers, repFieldMaxCopyWorkersTable: copyCfg.PerTable, repFieldCopyChunkPages: chunkPages, repFieldMaxBatchEvents: in.maxBatch, repFieldQueueEvents: queueEvents} {
		if v < 1 {
			return nil, fmt.Errorf("field %s: must be at least 1", name)
		}
	}
	if in.replicas < 1 || in.replicas > 5 {
		return nil, fmt.Errorf("field %s: must be between 1 and 5, got %d", repFieldStateReplicas, in.replicas)
	}
	if in.ownerLease < time.Second {
		return nil, fmt.Errorf("field %s: %v is too short (at least 1s)", repFieldOwnerLease, in.ownerLease)
	}
	in.holder = state.NewHolder()
	if statusInterval < 100*time.Millisecond {
		return nil, fmt.Errorf("field %s: %v is too short (at least 100ms)", repFieldStatusInterval, statusInterval)
	}

	metrics := mgr.Metrics()
	in.lagBytes = metrics.NewGauge("pg_flo_replication_lag_bytes")
	in.owner = metrics.NewGauge("pg_flo_replicator_owner")
	in.slotLost = metrics.NewGauge("pg_flo_replicator_slot_lost")
	in.retainedWAL = metrics.NewGauge("pg_flo_slot_retained_wal_bytes")
	in.eventsTotal = metrics.NewCounter("pg_flo_events_total", "table", "op")
	in.rowsTotal = metrics.NewCounter("pg_flo_snapshot_rows_total", "table")
	in.chunksDone = metrics.NewGauge("pg_flo_snapshot_chunks_done", "table")
	in.chunksTotal = metrics.NewGauge("pg_flo_snapshot_chunks_total", "table")
	copyCfg.Copied = func(schema, table string, rows int) { in.rowsTotal.Incr(int64(rows), schema+"."+table) }
	in.conf = source.Config{
		Mode: mode, Source: src, TrackDDL: trackDDL, StatusInterval: statusInterval, QueueEvents: queueEvents,
		Copy: copyCfg, ChunkPages: int64(chunkPages), Logger: in.log,
		OnStatus: func(serverWALEnd, confirmed pglogrepl.LSN) {
			in.lagBytes.Set(int64(serverWALEnd - confirmed))
		},
		RetainedWALWarning: retainedLimit,
		OnSlotUsage:        func(u replication.SlotUsage) { in.retainedWAL.Set(u.RetainedBytes) },
		ChunksPlanned: func(schema, table string, total, done int) {
			name := schema + "." + table
			in.countMu.Lock()
			defer in.countMu.Unlock()
			in.doneCount[name] = int64(done)
			in.chunksTotal.Set(int64(total), name)
			in.chunksDone.Set(int64(done), name)
		},
		ChunkDone: func(schema, table string) {
			name := schema + "." + table
			in.countMu.Lock()
			defer in.countMu.Unlock()
			in.doneCount[name]++
			in.chunksDone.Set(in.doneCount[name], name)
		},
	}
	return in, nil
}

// Connect starts the source. Benthos calls it from one goroutine at a time;
// in.mu is not held while a standby waits for the lease, so Close is never
// kept waiting.
func (in *replicatorInput) Connect(ctx context.Context) error {
	in.mu.Lock()
	connected := in.current != nil
	in.mu.Unlock()
	if connected {
		return nil
	}
	conf := in.conf
	if in.stateConn != nil {
		store, err := in.openState(ctx)
		if err != nil {
			return err
		}
		if conf.Owner, err = in.own(ctx, store); err != nil {
			return err
		}
		conf.State = store
	}
	src, err := in.startResumable(ctx, conf)
	if err != nil {
		return err
	}
	if conf.Owner == nil {
		// Without a lease, streaming from the slot is what owning is:
		// PostgreSQL lets one connection do it.
		in.owner.Set(1)
	}
	in.mu.Lock()
	in.current = src
	in.mu.Unlock()
	return nil
}

// sqlstateObjectInUse is PostgreSQL's object_in_use: the replication slot is
// active for another connection.
const sqlstateObjectInUse = "55006"

// startSource starts the source. Without a lease (no nats.url), a slot
// another connection streams from means another replicator of the group
// runs: this one stands by, quietly, until the slot is free.
func (in *replicatorInput) startSource(ctx context.Context, conf source.Config) (*source.Source, error) {
	announced := false
	for {
		src, err := source.Start(ctx, conf)
		var pgErr *pgconn.PgError
		if err == nil || conf.Owner != nil || !errors.As(err, &pgErr) || pgErr.Code != sqlstateObjectInUse {
			if err == nil && announced {
				in.log.Infof("Took over replication slot %s", conf.Source.Slot)
			}
			return src, err
		}
		if !announced {
			in.owner.Set(0)
			in.log.Infof("Standing by: %s — another replicator of group %s streams from it; streaming once it stops (set %s.%s for an ownership lease)", pgErr.Message, in.group, repFieldNATS, natsconf.FieldURL)
			announced = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// slotRecheck is how often a replicator whose slot is lost looks again
// whether a resync made the group resumable.
const slotRecheck = 15 * time.Second

// startResumable starts the source unless the group's slot is lost
// (invalidated, or dropped under a group that streamed): then it logs why
// and the way out once, reports pg_flo_replicator_slot_lost 1 and waits
// inside Connect, looking again every slotRecheck without a word, until a
// resync lets the source start (or the input is closed).
//
// Waiting, rather than failing Connect or ending the pipeline, is on
// purpose: a failed Connect is retried and logged by Benthos every second
// or so, and an exit makes a supervisor restart the process into the same
// error again and again; neither can end without a person running the
// resync. A waiting input keeps /ready at 503 and /metrics up for the
// alert, and resumes by itself once the resync is done.
func (in *replicatorInput) startResumable(ctx context.Context, conf source.Config) (*source.Source, error) {
	for {
		src, err := in.startSource(ctx, conf)
		var lost *replication.SlotLostError
		if !errors.As(err, &lost) {
			if err == nil && in.slotLostReported != "" {
				in.log.Infof("Replication group %s resumes: its slot was lost, and a resync was requested", in.group)
				in.slotLostReported = ""
			}
			in.slotLost.Set(0)
			return src, err
		}
		in.slotLost.Set(1)
		if msg := lost.Error(); msg != in.slotLostReported {
			in.slotLostReported = msg
			in.log.Errorf("Cannot resume replication group %s: %v. %s", in.group, err, in.resyncHint())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(slotRecheck):
		}
	}
}

// resyncHint says how to get a group with a lost slot going again.
func (in *replicatorInput) resyncHint() string {
	if in.stateConn == nil {
		return "Copy the tables again: drop the slot (pgflo cleanup --dsn … --group " + in.group + " --yes) and start the group afresh in mode copy_and_stream (with nats.url, so that a lost slot is told from a first start); the target keeps rows deleted meanwhile. Not retrying"
	}
	return "To copy every table again (after a TRUNCATE event of each, so that rows deleted meanwhile go too), run: pgflo resync --group " + in.group + " --dsn <source> --nats-url <nats> --yes (see docs/operations.md, Slot hazards). Waiting for it: this replicator then resumes by itself; it does not retry until then"
}

// openState connects to NATS and opens the group's state bucket, once.
func (in *replicatorInput) openState(ctx context.Context) (*state.Store, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.nc == nil {
		nc, err := jsproto.Connect(*in.stateConn)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", in.natsField, err)
		}
		in.nc = nc
	}
	if in.store != nil {
		return in.store, nil
	}
	js, err := jetstream.New(in.nc)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", in.natsField, err)
	}
	store, err := state.Open(ctx, js, in.group, in.replicas)
	if err != nil {
		return nil, err
	}
	if have := store.Replicas(); have < in.replicas {
		in.log.Warnf("State bucket %s has %d replicas, fewer than the configured %s %d: it is not changed; raise them with `nats stream edit KV_%s --replicas %d`", jsproto.StateBucket(in.group), have, repFieldStateReplicas, in.replicas, jsproto.StateBucket(in.group), in.replicas)
	}
	in.store = store
	return store, nil
}

// own makes this replicator the group's owner, waiting as a standby while
// another one holds the lease. A lease still held from before a reconnect
// is kept.
func (in *replicatorInput) own(ctx context.Context, store *state.Store) (*state.Lease, error) {
	in.mu.Lock()
	held := in.lease
	in.mu.Unlock()
	if held != nil && held.Err() == nil {
		return held, nil
	}
	in.owner.Set(0)
	var waited bool
	lease, err := store.AcquireLease(ctx, state.LeaseConfig{
		TTL: in.ownerLease, Holder: in.holder, Logger: in.log,
		Standby: func(owner state.Holder) {
			waited = true
			in.log.Infof("Standing by: replication group %s is owned by replicator %s; taking over when it stops, or once its lease goes unrenewed for %v", in.group, owner, in.ownerLease)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("acquire the ownership lease of group %s: %w", in.group, err)
	}
	in.mu.Lock()
	in.lease = lease
	in.mu.Unlock()
	in.owner.Set(1)
	if waited {
		in.log.Infof("Took over replication group %s as replicator %s", in.group, lease.Holder().ID)
	} else {
		in.log.Infof("Replicator %s owns replication group %s (lease %v)", lease.Holder().ID, in.group, in.ownerLease)
	}
	return lease, nil
}

func (in *replicatorInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	in.mu.Lock()
	src := in.current
	in.mu.Unlock()
	if src == nil {
		return nil, nil, service.ErrNotConnected
	}
	for {
		select {
		case in.inFlight <- struct{}{}:
		case <-ctx.Done():
			in.stop.Fire() // Benthos asked the input to stop: tell the output
			return nil, nil, ctx.Err()
		}
		b, err := in.next(ctx, src)
		if err != nil {
			<-in.inFlight
			return nil, nil, in.readErr(ctx, src, err)
		}
		if len(b.Events) == 0 {
			// Only chunk ends (chunks whose rows went in earlier batches,
			// or empty chunks): nothing to deliver, record them now.
			err := src.Ack(ctx, b)
			<-in.inFlight
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		msgs, err := toMessages(b, in.packs)
		if err != nil {
			<-in.inFlight
			return nil, nil, err
		}
		return msgs, func(ctx context.Context, err error) error {
			defer func() { <-in.inFlight }()
			if err != nil {
				// Delivered again next, unchanged, after a backoff that grows
				// while the pipeline keeps rejecting it.
				in.rejected, in.rejectedOf = b, src
				in.retryWait = min(max(2*in.retryWait, replicatorRetryMin), replicatorRetryMax)
				in.log.Warnf("Batch of %d events rejected downstream (%v); delivering it again in %v", len(b.Events), err, in.retryWait)
				return nil
			}
			in.retryWait = 0
			in.countEvents(b) // once, however often it was delivered
			return src.Ack(ctx, b)
		}, nil
	}
}

// next returns the batch to deliver: the rejected one again (after the
// backoff), unless its source was replaced since (the new one replays from
// the slot's confirmed position), else the source's next. It runs with the
// token held.
func (in *replicatorInput) next(ctx context.Context, src *source.Source) (*feed.Batch, error) {
	b, of := in.rejected, in.rejectedOf
	if b == nil || of != src {
		in.rejected, in.rejectedOf = nil, nil
		return src.Next(ctx, in.maxBatch)
	}
	select {
	case <-time.After(in.retryWait):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	in.rejected, in.rejectedOf = nil, nil
	if err := src.Fenced(); err != nil {
		// The group is another replicator's now: nothing more goes out.
		return nil, err
	}
	return b, nil
}

func (in *replicatorInput) readErr(ctx context.Context, src *source.Source, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, source.ErrCopyDone) {
		in.log.Infof("Snapshot copied: the input ends (mode copy)")
		return service.ErrEndOfInput
	}
	if errors.Is(err, state.ErrLeaseLost) || errors.Is(err, state.ErrConflict) {
		in.log.Errorf("Stopped producing: %v; standing by", err)
		in.dropLease()
	} else {
		in.log.Errorf("Replication failed, reconnecting: %v", err)
	}
	in.mu.Lock()
	if in.current == src {
		in.current = nil
	}
	in.mu.Unlock()
	_ = src.Close(context.Background())
	return service.ErrNotConnected
}

// countEvents adds a batch to pg_flo_events_total, one increment per table
// and op rather than per event.
func (in *replicatorInput) countEvents(b *feed.Batch) {
	type key struct{ table, op string }
	counts := map[key]int64{}
	for i := range b.Events {
		e := &b.Events[i]
		counts[key{e.Schema + "." + e.Table, string(e.Op)}] += int64(e.Count())
	}
	for k, n := range counts {
		in.eventsTotal.Incr(n, k.table, k.op)
	}
}

// toMessages makes one message per event, and per pack of snapshot rows
// (expanded into its rows' events unless packs is set).
func toMessages(b *feed.Batch, packs bool) (service.MessageBatch, error) {
	batch := make(service.MessageBatch, 0, len(b.Events))
	var op, schema, table, tx boxed
	for i := range b.Events {
		e := &b.Events[i]
		msg := service.NewMessage(e.JSON)
		msg.MetaSetMut(event.MetaOp, op.get(string(e.Op)))
		msg.MetaSetMut(event.MetaSchema, schema.get(e.Schema))
		msg.MetaSetMut(event.MetaTable, table.get(e.Table))
		msg.MetaSetMut(event.MetaLSN, e.LSN)
		msg.MetaSetMut(event.MetaTx, tx.get(e.Tx))
		msg.MetaSetMut(event.MetaTxPos, strconv.Itoa(e.Pos))
		if e.Rows > 0 {
			msg.MetaSetMut(event.MetaPackRows, strconv.Itoa(e.Rows))
		}
		if e.Hashed {
			setKeyHashes(msg, e)
		}
		if e.Rows == 0 || packs {
			batch = append(batch, msg)
			continue
		}
		events, err := packmsg.ExpandOne(msg)
		if err != nil {
			return nil, fmt.Errorf("expand snapshot rows of %s.%s: %w", e.Schema, e.Table, err)
		}
		batch = append(batch, events...)
	}
	return batch, nil
}

// dropLease gives up the lease (deleting it if it is still held, so that
// another replicator of the group does not wait for it to expire).
func (in *replicatorInput) dropLease() {
	in.mu.Lock()
	lease := in.lease
	in.lease = nil
	in.mu.Unlock()
	in.owner.Set(0)
	if lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lease.Release(ctx); err != nil {
			in.log.Warnf("%v", err)
		}
	}
}

func (in *replicatorInput) Close(ctx context.Context) error {
	in.mu.Lock()
	src, nc, lease := in.current, in.nc, in.lease
	in.current, in.nc, in.store, in.lease = nil, nil, nil, nil
	in.mu.Unlock()
	var err error
	if src != nil {
		err = src.Close(ctx)
	}
	// Released after the source stopped: a standby takes over at once.
	if lease != nil {
		if relErr := lease.Release(ctx); relErr != nil {
			in.log.Warnf("%v", relErr)
		}
	}
	if nc != nil {
		nc.Close()
	}
	return err
}
