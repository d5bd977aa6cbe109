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
	// of copy packs at once (see parallel.go); 1 or less writes them in the
	// batch's transaction only.
	CopyConnections int
	// CopyBinary writes snapshot rows to COPY in binary format where every
	// column's type has a conversion (see packstream.go).
	CopyBinary bool
	// BinaryParameters sends the values of set statements' columns of the
	// types in typedParams as arrays of their type (see column.go).
	BinaryParameters bool
	// ApplyConnections is how many connections apply a large set statement
	// at once, its rows split by key (see parallel.go); 1 or less applies
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
		return nil, fmt.Errorf("parse target dsn %s: %s", pgdsn.Redact(cfg.DSN), redactErr(err, ""))
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

func (a *Applier) setup(ctx context.Context) error {
	if a.cfg.DisableForeignKeys {
		if _, err := a.conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			return fmt.Errorf("disable_foreign_keys: set session_replication_role = replica on the target (needs superuser, or GRANT SET ON PARAMETER session_replication_role): %w", err)
		}
	}
	if err := a.conn.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&a.searchPath); err != nil {
		return fmt.Errorf("read search_path of the target: %w", err)
	}
	if a.cfg.Progress.Name == "" {
		return nil
	}
	a.progressIdent = a.cfg.Progress.String()
	create := []string{
		"CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{a.cfg.Progress.Schema}.Sanitize(),
		"CREATE TABLE IF NOT EXISTS " + a.progressIdent + ` (
			group_name text PRIMARY KEY,
			commit_lsn pg_lsn NOT NULL,
			tx_pos bigint NOT NULL,
			events bigint NOT NULL DEFAULT 0,
			snapshot_rows bigint NOT NULL DEFAULT 0,
			batches bigint NOT NULL DEFAULT 0,
			pending_commit_lsn pg_lsn,
			pending_tx_pos bigint,
			updated_at timestamptz NOT NULL DEFAULT now())`,
		"INSERT INTO " + a.progressIdent + " (group_name, commit_lsn, tx_pos) VALUES ($1, '0/0', -1) ON CONFLICT (group_name) DO NOTHING",
	}
	for attempt := 0; ; attempt++ {
		var err error
		for i, sql := range create {
			if i == 2 {
				_, err = a.conn.Exec(ctx, sql, a.cfg.Group)
			} else {
				_, err = a.conn.Exec(ctx, sql)
			}
			if err != nil {
				break
			}
		}
		// Two appliers creating the table at once: one loses with a
		// unique violation on the catalog; the second attempt sees the table.
		if err != nil && sqlState(err) == "23505" && attempt == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("create progress table %s on the target: %w", a.progressIdent, err)
		}
		break
	}
	pos, err := a.Progress(ctx)
	if err != nil {
		return err
	}
	if pos.CommitLSN != 0 {
		a.log.Infof("Group %s has applied the target up to commit %s (position %d in it); changes up to there are skipped", a.cfg.Group, event.FormatLSN(pos.CommitLSN), pos.Pos)
	}
	return nil
}

// Close closes the connection.
func (a *Applier) Close(ctx context.Context) error {
	a.closeSide(ctx)
	if a.conn == nil {
		return nil
	}
	return a.conn.Close(ctx)
}

// Apply applies the changes in one target transaction (more than one when
// a DDL statement must run outside a transaction) and returns once it
// committed. A transient failure (serialization failure, deadlock, lock
// timeout) is retried; a lost connection returns an error wrapping
// ErrConnection; a change the target refuses returns a *ChangeError naming
// it. When the set statements fail, the batch is applied again change by
// change, which both finds the change at fault and gets past constraints
// that only hold in the source's order (a unique column two rows swap).
func (a *Applier) Apply(ctx context.Context, changes []*Change) (Result, error) {
	return a.ApplyFeed(ctx, FeedOf(changes))
}

// ApplyFeed is Apply for a batch still being decoded (see Feed). A decoding
// failure is returned as it is, once nothing of the batch was committed.
func (a *Applier) ApplyFeed(ctx context.Context, f *Feed) (Result, error) {
	serial, parallel, early := false, a.cfg.ApplyConnections > 1, true
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := a.applyOnce(ctx, f, serial, parallel, early)
		if err == nil {
			res.Serial = serial
			return res, nil
		}
		if errors.Is(err, errReplan) {
			early = false
			continue
		}
		a.invalidate()
		var decodeErr *feedError
		var sideErr *sideError
		switch {
		case errors.As(err, &decodeErr):
			return res, decodeErr.err
		case errors.As(err, &sideErr) && parallel && ctx.Err() == nil:
			// Whatever went wrong beside the batch's transaction, the batch
			// is applied again on its connection alone.
			a.log.Debugf("Applying a batch of %d changes over %d connections failed (%v); applying it on one", f.total, a.cfg.ApplyConnections, err)
			parallel = false
		case a.conn.IsClosed() || connectionLost(err):
			_ = a.conn.Close(context.Background())
			if errors.Is(err, ErrConnection) {
				return res, err
			}
			return res, fmt.Errorf("%w: %w", ErrConnection, err)
		case ctx.Err() != nil:
			return res, err
		case retryable(err) && attempt < a.cfg.Retries:
			a.log.Warnf("Applying a batch of %d changes failed transiently, retrying in %v: %v", f.total, backoff, err)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(backoff + rand.N(backoff/2)):
			}
			backoff = min(backoff*2, 5*time.Second)
		case !serial && !retryable(err):
			a.log.Debugf("Set-based apply of %d changes failed (%v); applying them one by one", f.total, err)
			serial = true
		default:
			return res, err
		}
	}
}

// applyOnce applies the feed in one transaction. With early, a batch that
// does not start with inserts is planned while the transaction begins (two
// round trips, each a wait for the server when the cores are busy): the
// planner cannot know yet what the progress table says is applied, so the
// executor checks it, and a batch delivered again (errReplan) is planned
// again once the position is known.
func (a *Applier) applyOnce(ctx context.Context, f *Feed, serial, parallel, early bool) (res Result, err error) {
	var pl *planning
	if first := f.wait(0); early && (serial || a.cfg.CopyMinRows == 0 || first == nil || first.Op != event.Insert) {
		pl = a.startPlanning(f, 0, serial, nil)
	}
	b, err := a.begin(ctx)
	if err != nil {
		if pl != nil {
			pl.end()
		}
		return res, err
	}
	b.parallel = parallel && !serial
	defer func() { b.rollback() }()
	var copied []*Change
	if pl == nil {
		// Leading runs of inserts (a snapshot: packs, or events) are
		// written with COPY as they are decoded, run after run, until a
		// change that is not for COPY; the planner applies the rest.
		streamed := 0
		for !serial && a.cfg.CopyMinRows > 0 {
			n, done, skipped, err := a.streamInserts(ctx, b, f, streamed)
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
		pl = a.startPlanning(f, streamed, serial, &b.at)
	}
	b.done = copied
	applied, skipped, err := a.applyRest(ctx, b, pl)
	if err != nil {
		return res, err
	}
	changes, err := f.all()
	if err != nil {
		return res, err
	}
	res.Skipped += skipped
	if res.Skipped > 0 {
		a.log.Infof("Skipped %d of %d changes already applied (group %s is at %s)", res.Skipped, rowsOf(changes), a.cfg.Group, b.at)
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
