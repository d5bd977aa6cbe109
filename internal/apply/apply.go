// Package apply writes pgflo change events to a target PostgreSQL: the
// engine of the pg_flo_postgres output. A batch of changes becomes one
// target transaction in which consecutive changes are merged per table and
// key into set statements (INSERT … SELECT FROM unnest … ON CONFLICT, UPDATE
// … FROM unnest, DELETE … USING unnest, COPY for runs of inserts, and for
// copy packs of snapshot rows the packs' COPY text as it is); values are
// sent as text and cast by the server to each column's type, so every type
// round-trips exactly. A progress table on the target, written in the same
// transaction, records the last applied position of the group, so a batch
// delivered again is not applied twice.
//
// The files follow one batch (ApplyBatch, applyOnce): batch.go holds it as
// it is decoded, copy.go writes its leading runs of inserts with COPY,
// plan.go plans the rest into steps, execute.go runs them, progress.go
// records the position reached with the commit. catalog.go (target tables),
// sql.go and column.go (statements and their parameters), packstream.go
// (snapshot rows for COPY), ddl.go and errors.go serve those steps.
//
// It does not import Benthos: outputs/postgres.go adapts it.
package apply

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/pgdsn"
)

// TableCreator creates a missing target table for a change (schema sync):
// on the applier's connection, inside the batch's transaction.
type TableCreator func(ctx context.Context, conn *pgx.Conn, ch *Change) error

// Config configures an Applier.
type Config struct {
	// DSN is the target's connection string.
	DSN string
	// Group names the row of the progress table.
	Group string
	// Progress is the progress table; a zero name disables it.
	Progress TableName
	// SchemaMapping maps a source schema to the target schema.
	SchemaMapping map[string]string
	// KeyColumns overrides the key of tables ("schema.table" of the target).
	KeyColumns map[string][]string
	// DisableForeignKeys runs the session with session_replication_role =
	// replica: foreign keys and ordinary triggers do not fire, as in
	// PostgreSQL's own logical replication.
	DisableForeignKeys bool
	// CopyMinRows is the least number of inserted rows of a table written
	// with COPY; 0 never uses COPY.
	CopyMinRows int
	// CopyConnections is how many connections write a batch's leading run
	// of copy packs at once (see copyShares); 1 or less writes them in the
	// batch's transaction only.
	CopyConnections int
	// Snapshot rows go to COPY in binary format where every column's type
	// has a conversion (see packstream.go), and set statements send the
	// values of columns of the types in typedParams as arrays of their type
	// (see column.go). TextCopy and TextParameters send text instead, so
	// tests can compare the two forms.
	TextCopy       bool
	TextParameters bool
	// ApplyConnections is how many connections apply a large set statement
	// at once, its rows split by key (see execSplit); 1 or less applies
	// everything in the batch's transaction only.
	ApplyConnections int
	// Retries is how often a batch is retried after a serialization
	// failure, deadlock or lock timeout before Apply gives up.
	Retries int
	// CreateTable, when set, creates missing target tables.
	CreateTable TableCreator
	// ApplicationName is the session's application_name.
	ApplicationName string
	Logger          logging.Logger
}

// TargetSchema maps a source schema through the schema mapping.
func (c *Config) TargetSchema(schema string) string {
	if to, ok := c.SchemaMapping[schema]; ok {
		return to
	}
	return schema
}

// Applier applies batches of changes to the target over one connection. It
// is not safe for concurrent use.
type Applier struct {
	cfg  Config
	pcfg *pgx.ConnConfig // the session's settings, for side connections
	conn *pgx.Conn
	side []*pgx.Conn // copy connections beside conn, opened when needed
	// tables caches the target tables' definitions; the planning goroutine
	// reads it while the executor loads tables into it.
	tablesMu sync.Mutex
	tables   map[TableName]*Table
	// noCopyBatches counts, per table, batches left in which COPY is not
	// tried after one hit a conflict.
	noCopyBatches map[TableName]int
	searchPath    string
	progressIdent string
	// partition is the partition of a partitioned group whose progress row
	// batches use ("" for the group's own row; see UsePartition).
	partition string
	// splitSeed hashes keys to the connections of a split step.
	splitSeed maphash.Seed
	// created counts the tables schema sync created.
	created int
	log     logging.Logger
}

// Result tells what a batch did.
type Result struct {
	// Applied is the number of changes written, Skipped the number already
	// applied before (by the progress table). A copy pack counts as its
	// rows.
	Applied, Skipped int
	// PackRows is how many of the Applied are rows of copy packs written
	// with COPY as they came (the fast path for snapshots).
	PackRows int
	// SideRows is how many of the Applied were applied on side connections
	// (see ApplyConnections).
	SideRows int
	// Serial is set when the batch had to be applied change by change after
	// the set statements failed.
	Serial bool
}

// Connect opens the applier's connection, sets the session up and makes
// sure the progress table and the group's row exist.
func Connect(ctx context.Context, cfg Config) (*Applier, error) {
	pcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse target dsn %s: %s", pgdsn.Redact(cfg.DSN), pgdsn.ParseError(err))
	}
	for k, v := range event.TextFormSettings() {
		pcfg.RuntimeParams[k] = v
	}
	if cfg.ApplicationName != "" {
		pcfg.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %s: %w", pgdsn.Redact(cfg.DSN), redactErr(err, pcfg.Password), ErrConnection)
	}
	useColumnCodec(conn.TypeMap())
	a := &Applier{
		cfg: cfg, pcfg: pcfg, conn: conn, log: cfg.Logger,
		tables: map[TableName]*Table{}, noCopyBatches: map[TableName]int{},
		splitSeed: maphash.MakeSeed(),
	}
	if a.log == nil {
		a.log = logging.Nop{}
	}
	if err := a.setup(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return a, nil
}

func redactErr(err error, password string) string {
	return pgdsn.RedactIn(err.Error(), password)
}

// setup sets the session up: foreign keys off (disable_foreign_keys), the
// search_path DDL replay restores, the progress table.
func (a *Applier) setup(ctx context.Context) error {
	if a.cfg.DisableForeignKeys {
		if _, err := a.conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			return fmt.Errorf("disable_foreign_keys: set session_replication_role = replica on the target (needs superuser, or GRANT SET ON PARAMETER session_replication_role): %w", err)
		}
	}
	if err := a.conn.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&a.searchPath); err != nil {
		return fmt.Errorf("read search_path of the target: %w", err)
	}
	return a.setupProgress(ctx)
}

// Close closes the connection.
func (a *Applier) Close(ctx context.Context) error {
	a.closeSide(ctx)
	if a.conn == nil {
		return nil
	}
	return a.conn.Close(ctx)
}

// ApplyBatch applies a batch, possibly still being decoded (see Batch), in
// one target transaction (more than one when a DDL statement must run
// outside a transaction) and returns once it committed. A transient failure
// (serialization failure, deadlock, lock timeout) is retried; a lost
// connection returns an error wrapping ErrConnection; a change the target
// refuses returns a *ChangeError naming it; a decoding failure is returned
// as it is, once nothing of the batch was committed. When the set
// statements fail, the batch is applied again change by change, which both
// finds the change at fault and gets past constraints that only hold in the
// source's order (a unique column two rows swap).
func (a *Applier) ApplyBatch(ctx context.Context, batch *Batch) (Result, error) {
	mode := applyMode{parallel: a.cfg.ApplyConnections > 1, early: true}
	backoff := 50 * time.Millisecond
	var unknownCol *unknownColumnError
	reread := false
	for attempt := 0; ; attempt++ {
		res, err := a.applyOnce(ctx, batch, mode)
		if err == nil {
			res.Serial = mode.serial
			return res, nil
		}
		if errors.Is(err, errReplan) {
			mode.early = false
			continue
		}
		a.invalidate()
		var decodeErr *decodeError
		var sideErr *sideError
		switch {
		case errors.As(err, &decodeErr):
			return res, decodeErr.err
		case errors.As(err, &sideErr) && mode.parallel && ctx.Err() == nil:
			// Whatever went wrong beside the batch's transaction, the batch
			// is applied again on its connection alone.
			a.log.Debugf("Applying a batch of %d changes over %d connections failed (%v); applying it on one", batch.size(), a.cfg.ApplyConnections, err)
			mode.parallel = false
		case a.conn.IsClosed() || connectionLost(err):
			_ = a.conn.Close(context.Background())
			if errors.Is(err, ErrConnection) {
				return res, err
			}
			return res, fmt.Errorf("%w: %w", ErrConnection, err)
		case ctx.Err() != nil:
			return res, err
		case retryable(err) && attempt < a.cfg.Retries:
			a.log.Warnf("Applying a batch of %d changes failed transiently, retrying in %v: %v", batch.size(), backoff, err)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(backoff + rand.N(backoff/2)):
			}
			backoff = min(backoff*2, 5*time.Second)
		case errors.As(err, &unknownCol) && !reread:
			// invalidate (above) has the tables read again.
			reread = true
		case !mode.serial && !retryable(err):
			a.log.Debugf("Set-based apply of %d changes failed (%v); applying them one by one", batch.size(), err)
			mode.serial = true
		default:
			return res, err
		}
	}
}

// applyMode is how ApplyBatch tries a batch; a failed try changes it for
// the next.
type applyMode struct {
	// serial applies the batch change by change, in the source's order: no
	// merging, no COPY (after the set statements failed).
	serial bool
	// parallel lets large set statements be split over side connections
	// (Config.ApplyConnections; off after a side connection failed).
	parallel bool
	// early plans a batch that does not start with inserts while its
	// transaction begins (off once that planned changes already applied:
	// see applyOnce).
	early bool
}

// applyOnce applies the batch in one transaction: the leading runs of
// inserts stream into COPY as they are decoded (copy.go), the planner turns
// the rest into steps chunk by chunk (plan.go), the executor runs them
// (execute.go), and the commit records the position reached (progress.go).
//
// With mode.early, a batch that does not start with inserts is planned
// while the transaction begins (two round trips, each a wait for the server
// when the cores are busy): the planner cannot know yet what the progress
// table says is applied, so the executor checks it, and a batch delivered
// again (errReplan) is planned again once the position is known.
func (a *Applier) applyOnce(ctx context.Context, batch *Batch, mode applyMode) (res Result, err error) {
	serial := mode.serial
	var pl *planning
	if first := batch.wait(0); mode.early && (serial || a.cfg.CopyMinRows == 0 || first == nil || first.Op != event.Insert) {
		pl = a.startPlanning(batch, 0, serial, nil)
	}
	b, err := a.begin(ctx)
	if err != nil {
		if pl != nil {
			pl.end()
		}
		return res, err
	}
	b.parallel = mode.parallel && !serial
	defer func() { b.rollback() }()
	var copied []*Change
	if pl == nil {
		// Leading runs of inserts (a snapshot: packs, or events) are
		// written with COPY as they are decoded, run after run, until a
		// change that is not for COPY; the planner applies the rest.
		streamed := 0
		for !serial && a.cfg.CopyMinRows > 0 {
			n, done, skipped, err := a.streamInserts(ctx, b, batch, streamed)
			if err != nil {
				return res, err
			}
			if n == 0 {
				break
			}
			streamed += n
			res.Skipped += skipped
			copied = append(copied, done...)
		}
		pl = a.startPlanning(batch, streamed, serial, &b.at)
	}
	b.done = copied
	applied, skipped, err := a.applyRest(ctx, b, pl)
	if err != nil {
		return res, err
	}
	changes, err := batch.all()
	if err != nil {
		return res, err
	}
	res.Skipped += skipped
	if res.Skipped > 0 {
		a.log.Infof("Skipped %d of %d changes already applied (group %s is at %s)", res.Skipped, rowsOf(changes), a.progressRow(), b.at)
	}
	for name := range a.noCopyBatches {
		if a.noCopyBatches[name]--; a.noCopyBatches[name] <= 0 {
			delete(a.noCopyBatches, name)
		}
	}
	if err := a.commit(ctx, b); err != nil {
		return res, err
	}
	res.Applied = rowsOf(copied) + applied
	res.PackRows = packRowsOf(copied)
	res.SideRows = b.splitRows
	return res, nil
}
