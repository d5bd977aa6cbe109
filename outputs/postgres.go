package outputs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/apply"
	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/packmsg"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/schemasync"
	"github.com/pgflo/pgflo/internal/shutdown"
)

// Field names of pg_flo_postgres.
const (
	pgFieldDSN                = "dsn"
	pgFieldGroup              = "group"
	pgFieldSchemaMapping      = "schema_mapping"
	pgFieldKeyColumns         = "key_columns"
	pgFieldKeyTable           = "table"
	pgFieldKeyColumnsList     = "columns"
	pgFieldDisableForeignKeys = "disable_foreign_keys"
	pgFieldSyncSchema         = "sync_schema"
	pgFieldSourceDSN          = "source_dsn"
	pgFieldProgressTable      = "progress_table"
	pgFieldCopyMinRows        = "copy_min_rows"
	pgFieldCopyConnections    = "copy_connections"
	pgFieldApplyConnections   = "apply_connections"
	pgFieldRetries            = "retries"
	pgFieldBatching           = "batching"
	pgFieldOnError            = "on_error"
)

func pgOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Applies pg_flo change events to a target PostgreSQL: batched, set-based upserts and deletes in one transaction per batch, exactly once per group, for every built-in type; DDL replay and schema sync.").
		Description(`
The end of pg_flo's data path: connect it to `+"`pg_flo_worker`"+` (or straight to `+"`pg_flo_replicator`"+`, with or
without `+"`pg_flo_rules`"+` and `+"`pg_flo_route`"+` between) and the target converges to the source, row for row.
The full guide is [docs/postgres.md](../postgres.md).

### Applying changes

Each batch is one target transaction, acknowledged only once it committed. Within it, consecutive changes
are merged per table and key (a later change of a row wins) into set statements:
`+"`INSERT … SELECT FROM unnest(…) ON CONFLICT (key) DO UPDATE`"+` for inserts and updates, `+"`DELETE … USING unnest(…)`"+`, and `+"`COPY`"+` for runs
of inserts (snapshots). An UPDATE that changes the key deletes the old key and writes the new row. Unchanged
TOASTed values (`+"`unchanged_toast`"+`) are left as the target has them. TRUNCATE truncates. Changes to different
tables keep their order when the tables have foreign keys. When a set statement fails, the batch is applied
again change by change in the source's order, which both gets past constraints that only hold in that order and
names the change at fault.

Values are sent as text and cast by the server to each column's type — or, for bool, integers, floats, numeric,
uuid, bytea, dates, times and timestamps, as binary arrays of the column's type converted from that text by pgflo, which the server reads without parsing: numeric, NaN and infinities, int8 beyond 2^53,
timestamps with infinity and BC, intervals, bytea, arrays (NULL elements, several dimensions, lower bounds),
ranges, enums, domains, composites — every type round-trips exactly. A set statement's rows go in key order, so the
target reads its index and table pages in order. Events after `+"`pg_flo_decode`"+` (typed values) are encoded back
to that text form.

### Snapshot packs

Snapshot packs from `+"`pg_flo_replicator`"+` (its default) or `+"`pg_flo_worker`"+` are written with COPY — those
`+"`pg_flo_worker`"+` expanded into one event message per row (its default) too, when every row of the pack arrives
unchanged and in order (no processor rewrote, dropped or re-routed one of them); else their events are applied:
a batch that starts with packs streams each table's run of them into `+"`COPY … FROM STDIN`"+` over `+"`copy_connections`"+`,
in COPY's binary format when every column has a type pgflo converts (the rows' COPY text is read back into
binary here, which spares the target's server the types' text input), else as the source's COPY wrote
them. Where that does not apply (packs after other changes in a batch,
a COPY that hit an existing row — a snapshot chunk applied again —, a column the target lacks, the change-by-change
fallback, `+"`copy_min_rows: 0`"+`), a pack's rows are applied as their INSERT events would be: upserts by key.

### Target table and key

The target table is named by the metadata `+"`pg_flo_schema`, `pg_flo_table`"+` (set by the inputs and rewritten by
`+"`pg_flo_route`"+`), or by the event's schema and table; `+"`schema_mapping`"+` then maps the schema. Rows are identified
by the target's primary key, else its first NOT NULL unique index (or `+"`key_columns`"+`). A table without either gets
plain INSERTs, and each UPDATE and DELETE changes one row found by the old values the event carries (REPLICA
IDENTITY FULL on the source): slower, and a warning says so.

### Exactly once

The progress table (`+"`progress_table`"+`, one row per `+"`group`"+`) records the last applied position (commit LSN and
position in the transaction) in the same transaction as the data. A batch delivered again after a crash, a
restart or a lost acknowledgement is skipped for what it already applied, so the target sees every change once.

### Errors

A lost connection (the target restarting) makes the output reconnect and apply the batch again. Serialization
failures, deadlocks and lock timeouts are retried `+"`retries`"+` times with backoff. A change the target refuses
(a constraint, a type mismatch, a missing table or column) fails the batch with an error naming the table, the
key and the LSN; the input delivers the batch again (with backoff) until the target is fixed, and nothing after it
is applied meanwhile (`+"`on_error: stop`"+`). With `+"`on_error: dead_letter`"+` such a change, and a message that is not
a valid change event, is reported to `+"`pg_flo_worker`"+` alone, which stores it in the group's dead-letter stream and
delivers the batch again without it: every other change of the batch is applied, once and in order
([docs/operations.md](../operations.md#poison-messages-and-dead-letters)).

When the pipeline stops (SIGTERM) with `+"`pg_flo_worker`"+` or `+"`pg_flo_replicator`"+` as its input, a
batch still being applied gets 5 seconds to commit and is then cancelled, and a batch waiting for the target to
come back is given up at once: the input hands it back, and the process ends within `+"`shutdown_timeout`"+`.

### DDL

DDL events (`+"`pg_flo_replicator`"+` with `+"`track_ddl`"+`) are replayed at their place in the stream: in the batch's
transaction, or on their own for statements that cannot run in one (`+"`CREATE INDEX CONCURRENTLY`"+`). The table the
statement names is replaced by the event's target table, so routing renames and schema mappings apply.

The timer `+"`pg_flo_apply_batch_seconds`"+` measures each applied batch.`).
		Fields(
			service.NewStringField(pgFieldDSN).
				Description("Connection string of the target database, as a URL or keyword/value pairs. The password is never logged. TLS takes libpq's keywords (`sslmode=verify-full`, `sslrootcert`, `sslcert`, `sslkey`) or, when the string has none, the `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` environment variables.").
				Example("postgres://writer:secret@dest-db:5432/myapp").
				Secret(),
			service.NewStringField(pgFieldGroup).
				Description("Replication group, as in pg_flo: names this output's row of the progress table. Two pipelines writing to one target need different groups.").
				Example("users"),
			service.NewStringMapField(pgFieldSchemaMapping).
				Description("Maps a source schema to the target schema its tables are written to.").
				Default(map[string]any{}).
				Example(map[string]any{"public": "replica"}),
			service.NewBoolField(pgFieldDisableForeignKeys).
				Description("Run the apply session with `session_replication_role = replica`, as pg_flo's `--target-disable-foreign-keys` and as PostgreSQL's own logical replication: foreign keys are not checked and ordinary triggers do not fire (ENABLE REPLICA / ALWAYS triggers do). Needs a superuser, or `GRANT SET ON PARAMETER session_replication_role` (PostgreSQL 15+). Also lets changes of different tables be grouped freely.").
				Default(false),
			service.NewBoolField(pgFieldSyncSchema).
				Description("Create a missing target table, the first time a change of it arrives, from the source table's definition read from `source_dsn`'s catalog: columns, types (enums, domains, composites and ranges included), defaults, identity and generated columns, serial sequences, constraints, foreign keys to tables that exist, indexes. Routing renames apply. pg_flo ran `pg_dump --schema-only` of the whole source database instead.").
				Default(false),
			service.NewStringField(pgFieldSourceDSN).
				Description("Connection string of the source database, read by `sync_schema`. TLS takes libpq's keywords (`sslmode=verify-full`, `sslrootcert`, `sslcert`, `sslkey`) or, when the string has none, the `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` environment variables.").
				Default("").
				Secret(),
			service.NewObjectListField(pgFieldKeyColumns,
				service.NewStringField(pgFieldKeyTable).Description("Target table, `schema.table` or `table` (in `public`)."),
				service.NewStringListField(pgFieldKeyColumnsList).Description("Columns identifying a row; a unique index on exactly them must exist."),
			).
				Description("Identify the rows of these tables by other columns than their primary key.").
				Default([]any{}).
				Advanced(),
			service.NewStringField(pgFieldProgressTable).
				Description("Table recording each group's applied position, created when missing (with its schema). Empty disables exactly-once apply: a batch delivered again is applied again (harmless for tables with a key, duplicates in tables without).").
				Default("pgflo.progress").
				Advanced(),
			service.NewIntField(pgFieldCopyMinRows).
				Description("Runs of at least this many INSERTs (or snapshot pack rows) of one table are written with COPY (falling back to upserts when a row already exists); 0 never uses COPY.").
				Default(64).
				Advanced(),
			service.NewIntField(pgFieldCopyConnections).
				Description("How many connections write a batch's leading run of snapshot packs at once. The first share goes into the batch's transaction; each other share is written and committed on a connection of its own just before the batch commits (snapshot rows are idempotent and not tracked by the progress table, so a redelivered batch upserts them over what is there). The target's COPY is what bounds an initial sync, one server process per connection; more connections than the target has cores to spare cost more than they bring, as COPY sessions into one table contend on extending it. 1 writes every pack in the batch's transaction.").
				Default(2).
				Advanced(),
			service.NewIntField(pgFieldApplyConnections).
				Description("How many connections apply a large set statement of the stream at once (a catch-up: thousands of changes of one table in a batch), its rows split by a hash of their key so every change of a key goes through one connection in order. The batch's transaction takes one part; each other part commits on a connection of its own before the next statement (every statement is idempotent for its rows, so a redelivered batch converges). Only tables with a key, no other unique index or exclusion constraint and no foreign key (unless `disable_foreign_keys`) are split, and only statements of at least 256 rows a connection. 1 applies everything in the batch's transaction, like PostgreSQL's single apply worker.").
				Default(2).
				Advanced(),
			service.NewIntField(pgFieldRetries).
				Description("How often a batch is retried at once after a serialization failure, deadlock or lock timeout before it fails (and is delivered again by the input).").
				Default(5).
				Advanced(),
			service.NewStringAnnotatedEnumField(pgFieldOnError, map[string]string{
				pgOnErrorStop:       "The batch fails with an error naming the change's table, key, LSN and stream sequence; the input delivers it again until the cause is fixed, and nothing after it is applied meanwhile.",
				pgOnErrorDeadLetter: "The change alone fails: the output reports it for its message and applies nothing of the batch, so that `pg_flo_worker` with `on_error: dead_letter` stores the message in the group's dead-letter stream and delivers the batch again without it. With another input, or `pg_flo_worker` with `on_error: stop`, the batch is delivered again as with `stop`.",
			}).
				Description("What a change that can never be applied does: one the target refuses with a data exception (SQLSTATE class 22), an integrity constraint violation (class 23: a CHECK, a unique index, a foreign key or NOT NULL the source does not have) or a syntax error or access rule violation (class 42: a missing column or table, a type mismatch, a missing privilege); a missing target table; a message that is not a valid change event. Lost connections, serialization failures, deadlocks and lock timeouts are retried either way.").
				Default(pgOnErrorStop),
			service.NewBatchPolicyField(pgFieldBatching).
				Description("Batching of messages before they are applied: one batch is one target transaction. `pg_flo_worker` and `pg_flo_replicator` batch already (`batch_size`, `max_batch_events`) and keep one batch in flight, so leave this empty with them; use it with other inputs."),
		).
		LintRule(`root = [
  if this.group.or("").trim() == "" { "field group is required and must not be empty" },
  if this.sync_schema.or(false) && this.source_dsn.or("").trim() == "" { "field source_dsn is required with sync_schema: true" },
`+confread.LintChecks(
			confread.Removed{Field: "copy_binary", Instead: "snapshot rows go to COPY in binary wherever every column's type allows it; delete the field"},
			confread.Removed{Field: "binary_parameters", Instead: "values of the types pgflo converts are always sent in binary; delete the field"},
		)+`].filter(e -> e != null)`).
		Example("Worker to PostgreSQL", "Apply a group's changes to a target database, creating missing tables from the source.", `
input:
  pg_flo_worker:
    url: nats://localhost:4222
    group: users
output:
  pg_flo_postgres:
    dsn: postgres://writer:secret@dest-db:5432/myapp
    group: users
    sync_schema: true
    source_dsn: postgres://reader:secret@source-db:5432/myapp
`).
		Example("Single process", "Replicate straight from the source's slot into the target, without NATS.", `
input:
  pg_flo_replicator:
    dsn: postgres://replicator:secret@source-db:5432/myapp
    group: users
    mode: copy_and_stream
output:
  pg_flo_postgres:
    dsn: postgres://writer:secret@dest-db:5432/myapp
    group: users
`)
}

func init() {
	err := service.RegisterBatchOutput("pg_flo_postgres", pgOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			out, policy, err := newPGOutput(conf, mgr)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			// One batch in flight: batches are transactions that must commit
			// in stream order (the progress table would otherwise skip an
			// earlier batch that commits after a later one).
			return out, policy, 1, nil
		})
	if err != nil {
		panic(err)
	}
}

// pgOutput is the pg_flo_postgres output.
type pgOutput struct {
	// applyTime is pg_flo_apply_batch_seconds: the time each committed
	// batch took, decoding included.
	applyTime *service.MetricTimer
	cfg       apply.Config
	syncer    *schemasync.Syncer
	// deadLetter is on_error: dead_letter.
	deadLetter bool
	log        *service.Logger
	// res holds the signal fired when the pipeline's input is asked to
	// stop: a batch the target keeps refusing or blocking is then given up
	// (internal/shutdown).
	res *service.Resources

	mu      sync.Mutex
	applier *apply.Applier
	decoder event.Decoder
	closed  bool
}

func newPGOutput(conf *service.ParsedConfig, mgr *service.Resources) (*pgOutput, service.BatchPolicy, error) {
	r := confread.New(conf)
	dsn := r.String(pgFieldDSN)
	group := r.String(pgFieldGroup)
	disableFKs := r.Bool(pgFieldDisableForeignKeys)
	syncSchema := r.Bool(pgFieldSyncSchema)
	sourceDSN := r.String(pgFieldSourceDSN)
	progress := r.String(pgFieldProgressTable)
	copyMin := r.Int(pgFieldCopyMinRows)
	copyConns := r.Int(pgFieldCopyConnections)
	applyConns := r.Int(pgFieldApplyConnections)
	retries := r.Int(pgFieldRetries)
	onError := r.String(pgFieldOnError)
	if err := r.Err(); err != nil {
		return nil, service.BatchPolicy{}, err
	}
	mapping, err := conf.FieldStringMap(pgFieldSchemaMapping)
	if err != nil {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: %w", pgFieldSchemaMapping, err)
	}
	policy, err := conf.FieldBatchPolicy(pgFieldBatching)
	if err != nil {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: %w", pgFieldBatching, err)
	}
	keys, err := pgKeyColumns(conf)
	if err != nil {
		return nil, service.BatchPolicy{}, err
	}

	if strings.TrimSpace(dsn) == "" {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must not be empty", pgFieldDSN)
	}
	if strings.TrimSpace(group) == "" {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must not be empty", pgFieldGroup)
	}
	if syncSchema && strings.TrimSpace(sourceDSN) == "" {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: required with %s: true", pgFieldSourceDSN, pgFieldSyncSchema)
	}
	if copyMin < 0 {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must not be negative, got %d", pgFieldCopyMinRows, copyMin)
	}
	if copyConns < 1 {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must be at least 1, got %d", pgFieldCopyConnections, copyConns)
	}
	if applyConns < 1 {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must be at least 1, got %d", pgFieldApplyConnections, applyConns)
	}
	if retries < 0 {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: must not be negative, got %d", pgFieldRetries, retries)
	}
	if onError != pgOnErrorStop && onError != pgOnErrorDeadLetter {
		return nil, service.BatchPolicy{}, fmt.Errorf("field %s: unknown value %q (%s or %s)", pgFieldOnError, onError, pgOnErrorStop, pgOnErrorDeadLetter)
	}
	var progressTable apply.TableName
	if progress != "" {
		if progressTable, err = pgTableName(progress); err != nil {
			return nil, service.BatchPolicy{}, fmt.Errorf("field %s: %w", pgFieldProgressTable, err)
		}
	}
	for from, to := range mapping {
		if strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
			return nil, service.BatchPolicy{}, fmt.Errorf("field %s: schema names must not be empty (%q: %q)", pgFieldSchemaMapping, from, to)
		}
	}

	o := &pgOutput{log: mgr.Logger(), applyTime: mgr.Metrics().NewTimer("pg_flo_apply_batch_seconds"), deadLetter: onError == pgOnErrorDeadLetter, res: mgr}
	o.cfg = apply.Config{
		DSN: dsn, Group: group, Progress: progressTable, SchemaMapping: mapping, KeyColumns: keys,
		DisableForeignKeys: disableFKs, CopyMinRows: copyMin, CopyConnections: copyConns, ApplyConnections: applyConns, Retries: retries,
		ApplicationName: "pgflo pg_flo_postgres " + group, Logger: o.log,
	}
	if syncSchema {
		o.syncer = schemasync.New(sourceDSN, o.log)
		o.cfg.CreateTable = o.syncer.TableCreator(o.cfg.TargetSchema)
	}
	return o, policy, nil
}

// pgTableName parses schema.table, or table (in public).
func pgTableName(s string) (apply.TableName, error) {
	schema, table, found := strings.Cut(s, ".")
	if !found {
		schema, table = "public", s
	}
	if strings.TrimSpace(schema) == "" || strings.TrimSpace(table) == "" || strings.Contains(table, ".") {
		return apply.TableName{}, fmt.Errorf("%q is not a table name (use schema.table)", s)
	}
	return apply.TableName{Schema: schema, Name: table}, nil
}

func pgKeyColumns(conf *service.ParsedConfig) (map[string][]string, error) {
	list, err := conf.FieldObjectList(pgFieldKeyColumns)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", pgFieldKeyColumns, err)
	}
	keys := map[string][]string{}
	for i, item := range list {
		table, err := item.FieldString(pgFieldKeyTable)
		if err != nil {
			return nil, fmt.Errorf("field %s[%d].%s: %w", pgFieldKeyColumns, i, pgFieldKeyTable, err)
		}
		cols, err := item.FieldStringList(pgFieldKeyColumnsList)
		if err != nil {
			return nil, fmt.Errorf("field %s[%d].%s: %w", pgFieldKeyColumns, i, pgFieldKeyColumnsList, err)
		}
		name, err := pgTableName(table)
		if err != nil {
			return nil, fmt.Errorf("field %s[%d].%s: %w", pgFieldKeyColumns, i, pgFieldKeyTable, err)
		}
		if len(cols) == 0 {
			return nil, fmt.Errorf("field %s[%d].%s: name at least one column", pgFieldKeyColumns, i, pgFieldKeyColumnsList)
		}
		keys[name.Schema+"."+name.Name] = cols
	}
	return keys, nil
}

// Connect opens the target connection and sets up the progress table.
func (o *pgOutput) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("pg_flo_postgres: output is closed")
	}
	if o.applier != nil {
		return nil
	}
	stop := shutdown.Lookup(o.res, o.cfg.Group)
	if stop.Fired() {
		// Benthos keeps the batch it failed to write until Connect
		// succeeds: let WriteBatch hand it back instead.
		return nil
	}
	ctx, done := stop.Context(ctx, 0)
	defer done()
	a, err := apply.Connect(ctx, o.cfg)
	if err != nil {
		return err
	}
	o.applier = a
	return nil
}

// WriteBatch applies the batch in one transaction and returns once it
// committed. Once the pipeline is stopping, a batch that does not commit
// within shutdown.Grace (a target down, a lock held) fails, so the input
// hands it back and the process ends within Benthos' shutdown_timeout.
func (o *pgOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	stop := shutdown.Lookup(o.res, o.cfg.Group)
	ctx, done := stop.Context(ctx, shutdown.Grace)
	defer done()
	_, err := o.applyBatch(ctx, batch)
	if err != nil && stop.Fired() {
		// Not wrapped: Benthos would keep a batch that failed with
		// service.ErrNotConnected for the next connection.
		return fmt.Errorf("%w (%v)", shutdown.ErrStopping, err)
	}
	return err
}

// applyBatch is WriteBatch, returning what the batch did. The batch is
// decoded on another goroutine while the applier works, so a snapshot's rows
// stream into COPY as they are decoded.
func (o *pgOutput) applyBatch(ctx context.Context, batch service.MessageBatch) (apply.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.applier == nil {
		return apply.Result{}, service.ErrNotConnected
	}
	part, err := batchPartition(batch)
	if err != nil {
		return apply.Result{}, err
	}
	o.applier.UsePartition(part)
	started := time.Now()
	changes := apply.NewBatch(len(batch))
	stop := make(chan struct{})
	decoded := make(chan struct{})
	go func() {
		defer close(decoded)
		o.decode(batch, changes, stop)
	}()
	res, err := o.applier.ApplyBatch(ctx, changes)
	close(stop)
	<-decoded // the decoder's cache is the next batch's
	if errors.Is(err, apply.ErrConnection) {
		o.log.Warnf("Lost the connection to the target; reconnecting: %v", err)
		_ = o.applier.Close(context.Background())
		o.applier = nil
		return res, service.ErrNotConnected
	}
	if err != nil {
		return res, o.failure(batch, err)
	}
	o.applyTime.Timing(time.Since(started).Nanoseconds())
	if res.Serial {
		o.log.Infof("Applied a batch of %d changes one by one: the set statements failed (a constraint that only holds in the source's order)", res.Applied+res.Skipped)
	}
	return res, nil
}

// batchPartition is the partition of a partitioned group the batch came
// from (metadata pg_flo_partition), "" for a group of one partition. Each
// partition records its own position, so a batch must not mix them.
func batchPartition(batch service.MessageBatch) (string, error) {
	var part string
	for i, msg := range batch {
		p, _ := msg.MetaGet(event.MetaPartition)
		if i == 0 {
			part = p
		} else if p != part {
			return "", fmt.Errorf("message %d of the batch is of partition %q, message 0 of partition %q: a batch must come from one partition (one pg_flo_worker)", i, p, part)
		}
	}
	return part, nil
}

// decode decodes the batch's events, and where they go, into changes,
// until stop is closed.
// The rows of a pack that pg_flo_worker (or pgflo's processors) expanded
// into one event message each arrive as a run of messages sharing the pack
// (internal/packmsg): when the run is whole, its bodies untouched and its
// rows routed alike, it becomes the pack's one change, copied as keep's
// packs are, and no event is decoded.
func (o *pgOutput) decode(batch service.MessageBatch, changes *apply.Batch, stop <-chan struct{}) {
	chs := make([]apply.Change, len(batch))
	for i := 0; i < len(batch); {
		select {
		case <-stop:
			return
		default:
		}
		ch := &chs[i]
		n, err := o.decodeMessage(batch, i, ch)
		if err != nil {
			changes.Fail(&messageError{index: i, err: err})
			return
		}
		changes.Add(ch)
		i += n
	}
	changes.Finish()
}

// expandedPack returns the pack whose rows' messages batch[i:] starts with
// and their number, nil when it does not (see packmsg.Run) or when a row
// is routed differently from the first.
func expandedPack(batch service.MessageBatch, i int) (*copypack.Pack, int) {
	p, n := packmsg.Run(batch, i)
	if p == nil {
		return nil, 0
	}
	first := batch[i]
	for _, m := range batch[i+1 : i+n] {
		for _, key := range rowRouting {
			a, _ := first.MetaGet(key)
			if b, _ := m.MetaGet(key); a != b {
				return nil, 0
			}
		}
	}
	return p, n
}

// rowRouting is the metadata decodeMessage reads of every message but its
// position: a run of rows becomes one change only when they agree on it.
var rowRouting = []string{event.MetaSchema, event.MetaTable, event.MetaSourceSchema, event.MetaSourceTable, deadletter.MetaReplay}

// decodeMessage decodes batch[i], or the run of an expanded pack's rows
// starting there, into ch, and returns how many messages it took.
func (o *pgOutput) decodeMessage(batch service.MessageBatch, i int, ch *apply.Change) (int, error) {
	msg := batch[i]
	if err := msg.GetError(); err != nil {
		return 0, fmt.Errorf("message %d of the batch is flagged as failed: %w", i, err)
	}
	n := 1
	if p, rows := expandedPack(batch, i); p != nil {
		ch.SetPack(p)
		ch.RowMessages, n = true, rows
	} else if err := o.decodeOne(i, msg, ch); err != nil {
		return 0, err
	}
	return n, o.locate(i, msg, ch)
}

// decodeOne decodes one message: a change event, or a pack.
func (o *pgOutput) decodeOne(i int, msg *service.Message, ch *apply.Change) error {
	body, err := msg.AsBytes()
	if err != nil {
		return fmt.Errorf("message %d of the batch: %w", i, err)
	}
	if declared, ok := msg.MetaGet(event.MetaPackRows); ok {
		// A pack of snapshot rows: one change for all of them.
		if err := apply.DecodePack(body, ch); err != nil {
			return fmt.Errorf("message %d of the batch: %w", i, err)
		}
		if declared != strconv.Itoa(ch.Pack.N) {
			return fmt.Errorf("message %d of the batch: %w: metadata %s=%q, the pack holds %d rows", i, copypack.ErrMalformed, event.MetaPackRows, declared, ch.Pack.N)
		}
	} else if err := o.decoder.Decode(body, &ch.Event, pgvalue.EncodeJSON); err != nil {
		// A pack whose metadata got lost on the way is still a pack.
		if apply.DecodePack(body, ch) != nil {
			return fmt.Errorf("message %d of the batch: %w", i, err)
		}
	}
	return nil
}

// locate sets where the change of message i stands in the stream and the
// table it goes to, from the message's metadata.
func (o *pgOutput) locate(i int, msg *service.Message, ch *apply.Change) error {
	var err error
	ch.Index, ch.Pos = i, -1
	if _, ok := msg.MetaGet(deadletter.MetaReplay); ok {
		// Replayed from the dead letters after the cause was fixed: older
		// than what the progress table records, and applied all the same
		// (a commit LSN of 0 is neither skipped nor recorded).
		ch.CommitLSN = 0
	}
	if text, ok := msg.MetaGet(event.MetaTxPos); ok && text != "" {
		if ch.Pos, err = strconv.ParseInt(text, 10, 64); err != nil {
			return fmt.Errorf("message %d of the batch: metadata %s=%q is not a position", i, event.MetaTxPos, text)
		}
	}
	schema, table := ch.Schema, ch.Table
	if s, ok := msg.MetaGet(event.MetaSchema); ok && s != "" {
		schema = s
	}
	if t, ok := msg.MetaGet(event.MetaTable); ok && t != "" {
		table = t
	}
	if schema != ch.Schema || table != ch.Table {
		ch.Source = apply.TableName{Schema: ch.Schema, Name: ch.Table}
	}
	// pg_flo_route renamed the event's table: the source table is in its
	// metadata.
	if t, ok := msg.MetaGet(event.MetaSourceTable); ok && t != "" {
		s, _ := msg.MetaGet(event.MetaSourceSchema)
		ch.Source = apply.TableName{Schema: cmp.Or(s, ch.Schema), Name: t}
	}
	ch.Target = o.applier.Target(schema, table)
	return nil
}

// Values of on_error.
const (
	pgOnErrorStop       = "stop"
	pgOnErrorDeadLetter = "dead_letter"
)

// pgMetaStreamSeq is pg_flo_worker's metadata holding a message's stream
// sequence, named in errors so the message can be found in the stream.
const pgMetaStreamSeq = "pg_flo_stream_seq"

// messageError is a message of the batch that is not a change event.
type messageError struct {
	index int
	err   error
}

func (e *messageError) Error() string { return e.err.Error() }
func (e *messageError) Unwrap() error { return e.err }

// failure is the error of a batch that failed: with on_error: dead_letter
// and a change that can never be applied, a batch error naming its message
// alone (nothing of the batch was committed: the input delivers the batch
// again without it once it stored it as a dead letter); otherwise the error,
// naming the message's stream sequence when it is known.
func (o *pgOutput) failure(batch service.MessageBatch, err error) error {
	index := -1
	rejection := &deadletter.Rejection{Err: err, Row: -1}
	var changeErr *apply.ChangeError
	var msgErr *messageError
	switch {
	case errors.As(err, &msgErr):
		index, rejection.Reason = msgErr.index, deadletter.ReasonDecode
	case errors.As(err, &changeErr):
		index, rejection.Reason = changeErr.Index, deadletter.ReasonTarget
		rejection.Table, rejection.Key, rejection.LSN = changeErr.Table.String(), changeErr.Key, changeErr.LSN
	}
	if index < 0 || index >= len(batch) {
		return err
	}
	msg := batch[index]
	if changeErr != nil && changeErr.Pos >= 0 {
		rejection.Row = packRow(msg, changeErr.Pos)
	}
	var where []string
	if msgErr != nil {
		// Not decoded: the input's metadata may still name the change.
		schema, _ := msg.MetaGet(event.MetaSchema)
		if table, _ := msg.MetaGet(event.MetaTable); table != "" {
			rejection.Table = apply.TableName{Schema: schema, Name: table}.String()
			where = append(where, "table "+rejection.Table)
		}
		if lsn, _ := msg.MetaGet(event.MetaLSN); lsn != "" {
			rejection.LSN = lsn
			where = append(where, "LSN "+lsn)
		}
	}
	if seq, _ := msg.MetaGet(pgMetaStreamSeq); seq != "" {
		where = append(where, "stream sequence "+seq)
	}
	if len(where) > 0 {
		err = fmt.Errorf("%w (%s)", err, strings.Join(where, ", "))
		rejection.Err = err
	}
	if !o.deadLetter || (rejection.Reason == deadletter.ReasonTarget && !apply.Permanent(changeErr)) {
		return err
	}
	return service.NewBatchError(batch, err).Failed(index, rejection)
}

// packRow is the row of a pack message the change at position pos is, -1
// when msg is not a pack or the row is not known.
func packRow(msg *service.Message, pos int64) int {
	rows, isPack := msg.MetaGet(event.MetaPackRows)
	first, hasPos := msg.MetaGet(event.MetaTxPos)
	if !isPack || !hasPos {
		return -1
	}
	n, err1 := strconv.ParseInt(rows, 10, 64)
	at, err2 := strconv.ParseInt(first, 10, 64)
	if err1 != nil || err2 != nil || pos < at || pos-at >= n {
		return -1
	}
	return int(pos - at)
}

// Close closes the target and source connections. It is safe to call more
// than once.
func (o *pgOutput) Close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	var err error
	if o.applier != nil {
		err = o.applier.Close(ctx)
		o.applier = nil
	}
	if o.syncer != nil {
		err = errors.Join(err, o.syncer.Close(ctx))
	}
	return err
}
