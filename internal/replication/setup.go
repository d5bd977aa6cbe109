package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgdsn"
)

// PgFloName is the name pg_flo gives both the publication and the slot of a
// group: pg_flo_<group with '-' replaced by '_'>_publication.
func PgFloName(group string) string {
	return "pg_flo_" + strings.ReplaceAll(group, "-", "_") + "_publication"
}

// Source describes what to replicate.
type Source struct {
	DSN string
	// Schema is the default schema for table names without one, and the
	// schema whose tables are replicated when Tables is empty.
	Schema string
	// Tables are "table" or "schema.table"; empty means every table of Schema.
	Tables      []string
	Publication string
	Slot        string
	// NeedSelect makes Prepare check that the role may read every table
	// (the snapshot copies them).
	NeedSelect bool
	// TrackDDL installs the DDL capture trigger of the publication.
	TrackDDL bool
}

// Table is a resolved source table.
type Table struct {
	Schema, Name string
}

// String returns the table's quoted, qualified name.
func (t Table) String() string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// Prepared is the state of the source after Prepare.
type Prepared struct {
	Tables []Table
	// TypeNames maps every pg_type OID of the source to its typname.
	TypeNames map[uint32]string
	// SlotExists is false when the slot still has to be created (on the
	// replication connection, so a snapshot can be exported with it).
	SlotExists bool
	// ConfirmedLSN is the slot's confirmed_flush_lsn when it exists.
	ConfirmedLSN pglogrepl.LSN
	// ServerVersion is server_version_num.
	ServerVersion int
	// SlotHealth is the existing slot's health: an invalidated slot
	// exists but cannot be streamed from.
	SlotHealth SlotHealth
}

// Sentinel errors for the conditions a user must fix on the source.
var (
	// ErrWalLevel means the source does not run with wal_level=logical.
	ErrWalLevel = errors.New("source PostgreSQL is not configured for logical replication")
	// ErrNoReplicationPrivilege means the role may not open a replication connection.
	ErrNoReplicationPrivilege = errors.New("role lacks the REPLICATION attribute")
	// ErrUnknownTable means a configured table does not exist.
	ErrUnknownTable = errors.New("table not found")
	// ErrNoSelectPrivilege means the role may not read a table to copy it.
	ErrNoSelectPrivilege = errors.New("role may not read table")
	// ErrNoWalSender means every WAL sender of the source is taken: a
	// replication connection needs one.
	ErrNoWalSender = errors.New("the source has no free WAL sender: raise max_wal_senders on the source (a restart is needed; each running replicator holds one, as do physical replicas and other logical replication clients), or stop a client that holds one")
	// ErrNoConnectionSlot means the source refused a regular connection
	// for lack of connection slots.
	ErrNoConnectionSlot = errors.New("the source has no free connection slot: raise max_connections on the source (a restart is needed; a replicator needs about max_copy_workers + 2 connections while copying), or lower superuser_reserved_connections / reserved_connections, or close other clients' connections")
	// ErrNoSlotLeft means every replication slot of the source is taken.
	ErrNoSlotLeft = errors.New("the source has no free replication slot: raise max_replication_slots on the source (a restart is needed), or drop a slot no longer used (pgflo cleanup drops a group's)")
)

// SQLSTATEs of exhausted source resources.
const (
	sqlstateTooManyConnections = "53300" // connection slots and WAL senders
	sqlstateLimitExceeded      = "53400" // max_replication_slots when creating a slot
)

// connConfig parses dsn. Its errors show the DSN redacted and pgx's reason
// without pgx's copy of the DSN, which may hold part of the password.
func connConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse source dsn %s: %s", pgdsn.Redact(dsn), pgdsn.ParseError(err))
	}
	// Values are printed (by pgoutput, and by COPY for snapshots) with the
	// session's settings: pin the ones that change the text form, so events
	// do not depend on role or database defaults (timestamps in UTC ISO
	// form, bytea as hex, floats exact).
	for name, value := range event.TextFormSettings() {
		cfg.RuntimeParams[name] = value
	}
	return cfg, nil
}

// connectError describes a failed connection without the password: the DSN
// is shown redacted and the driver's text is scrubbed. When the source ran
// out of connections it wraps the sentinel naming the setting to raise:
// PostgreSQL refuses both kinds with the same SQLSTATE, and a replication
// connection takes a WAL sender, which max_connections does not count.
func connectError(dsn, password string, replication bool, err error) error {
	text := fmt.Sprintf("connect to source %s: %s", pgdsn.Redact(dsn), pgdsn.RedactIn(err.Error(), password))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != sqlstateTooManyConnections {
		return errors.New(text)
	}
	if replication {
		return fmt.Errorf("%s: %w", text, ErrNoWalSender)
	}
	return fmt.Errorf("%s: %w", text, ErrNoConnectionSlot)
}

// ConnectReplication opens a replication connection (replication=database)
// to dsn, for streaming and for creating the slot.
func ConnectReplication(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cfg, err := connConfig(dsn)
	if err != nil {
		return nil, err
	}
	rc := cfg.Config.Copy()
	rc.RuntimeParams["replication"] = "database"
	var paced *pacedReader // of the last connection attempt, the one that succeeded
	rc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f, p := pacedFrontend(r, w)
		paced = p
		return f
	}
	conn, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, connectError(dsn, cfg.Password, true, err)
	}
	conn.CustomData()[pacedReaderKey] = paced
	return conn, nil
}

// Connect opens a regular connection to dsn.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := connConfig(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(dsn, cfg.Password, false, err)
	}
	return conn, nil
}

// Prepare checks the source and creates what is missing but the slot: it
// verifies wal_level and privileges, resolves the tables (failing before
// anything is created when one does not exist), and creates the publication
// or adds missing tables to it.
func Prepare(ctx context.Context, src Source) (*Prepared, error) {
	conn, err := Connect(ctx, src.DSN)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())

	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return nil, fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return nil, fmt.Errorf("%w: wal_level is %q, it must be \"logical\" (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)", ErrWalLevel, walLevel)
	}
	var role string
	var canReplicate bool
	if err := conn.QueryRow(ctx, "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &canReplicate); err != nil {
		return nil, fmt.Errorf("read role attributes: %w", err)
	}
	if !canReplicate {
		return nil, fmt.Errorf("%w: role %q may not stream from a replication slot (ALTER ROLE %s REPLICATION)", ErrNoReplicationPrivilege, role, pgx.Identifier{role}.Sanitize())
	}

	p := &Prepared{}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&p.ServerVersion); err != nil {
		return nil, fmt.Errorf("read server version: %w", err)
	}
	if p.Tables, err = resolveTables(ctx, conn, src); err != nil {
		return nil, err
	}
	if src.NeedSelect {
		if err := checkSelect(ctx, conn, role, p.Tables); err != nil {
			return nil, err
		}
	}
	if err := ensurePublication(ctx, conn, src, p); err != nil {
		return nil, err
	}
	if src.TrackDDL {
		if err := installDDLCapture(ctx, conn, src.Publication); err != nil {
			return nil, err
		}
	}
	if p.TypeNames, err = loadTypeNames(ctx, conn); err != nil {
		return nil, err
	}

	var plugin, database, slotDB string
	var confirmed *string
	h := &p.SlotHealth
	err = conn.QueryRow(ctx, `SELECT plugin, database, current_database(), confirmed_flush_lsn::text, `+slotHealthColumns(p.ServerVersion)+`
		FROM pg_replication_slots WHERE slot_name = $1`, src.Slot).Scan(&plugin, &slotDB, &database, &confirmed, &h.WALStatus, &h.Conflicting, &h.InvalidationReason)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("look up replication slot %q: %w", src.Slot, err)
	default:
		if plugin != "pgoutput" {
			return nil, fmt.Errorf("replication slot %q exists with plugin %q; pgflo needs pgoutput (drop the slot or choose another one with the slot field)", src.Slot, plugin)
		}
		if slotDB != database {
			return nil, fmt.Errorf("replication slot %q belongs to database %q, not %q", src.Slot, slotDB, database)
		}
		p.SlotExists = true
		if confirmed != nil {
			if p.ConfirmedLSN, err = pglogrepl.ParseLSN(*confirmed); err != nil {
				return nil, fmt.Errorf("parse confirmed_flush_lsn of slot %q: %w", src.Slot, err)
			}
		}
	}
	return p, nil
}

// resolveTables checks every configured table exists (as a table or a
// partitioned table) and returns them qualified.
func resolveTables(ctx context.Context, conn *pgx.Conn, src Source) ([]Table, error) {
	if len(src.Tables) == 0 {
		rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname`, src.Schema)
		if err != nil {
			return nil, fmt.Errorf("list tables of schema %q: %w", src.Schema, err)
		}
		tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
			var t Table
			return t, r.Scan(&t.Schema, &t.Name)
		})
		if err != nil {
			return nil, fmt.Errorf("list tables of schema %q: %w", src.Schema, err)
		}
		return tables, nil
	}
	var tables []Table
	var missing []string
	for _, spec := range src.Tables {
		t := Table{Schema: src.Schema, Name: spec}
		if schema, name, ok := strings.Cut(spec, "."); ok {
			t = Table{Schema: schema, Name: name}
		}
		var exists bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))`, t.Schema, t.Name).Scan(&exists)
		if err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t, err)
		}
		if !exists {
			missing = append(missing, t.Schema+"."+t.Name)
			continue
		}
		tables = append(tables, t)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("field tables: %w: %s (nothing was created on the source)", ErrUnknownTable, strings.Join(missing, ", "))
	}
	return tables, nil
}

// checkSelect fails, naming the tables, when role may not read some of them.
func checkSelect(ctx context.Context, conn *pgx.Conn, role string, tables []Table) error {
	var denied []string
	for _, t := range tables {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT has_table_privilege($1::regclass, 'SELECT')", t.String()).Scan(&ok); err != nil {
			return fmt.Errorf("check SELECT privilege on %s: %w", t, err)
		}
		if !ok {
			denied = append(denied, t.Schema+"."+t.Name)
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("field tables: %w: role %q has no SELECT privilege on %s, which the snapshot copy needs (GRANT SELECT; nothing was created on the source)", ErrNoSelectPrivilege, role, strings.Join(denied, ", "))
	}
	return nil
}

// ensurePublication creates the publication, or adds configured tables that
// an existing one lacks. An empty table list publishes the whole schema,
// including tables created later (PostgreSQL 15+).
func ensurePublication(ctx context.Context, conn *pgx.Conn, src Source, p *Prepared) error {
	pub := pgx.Identifier{src.Publication}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", src.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %q: %w", src.Publication, err)
	}
	if !exists {
		var target string
		switch {
		case len(src.Tables) == 0 && p.ServerVersion >= 150000:
			target = "TABLES IN SCHEMA " + pgx.Identifier{src.Schema}.Sanitize()
		case len(p.Tables) == 0:
			return fmt.Errorf("schema %q has no tables to publish (name them in the tables field or create them first)", src.Schema)
		default:
			target = "TABLE " + tableList(p.Tables)
		}
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR %s WITH (publish_via_partition_root = true)", pub, target)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create publication %q: %w", src.Publication, err)
		}
		return nil
	}
	if len(src.Tables) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", src.Publication)
	if err != nil {
		return fmt.Errorf("list tables of publication %q: %w", src.Publication, err)
	}
	published, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return fmt.Errorf("list tables of publication %q: %w", src.Publication, err)
	}
	have := map[Table]bool{}
	for _, t := range published {
		have[t] = true
	}
	var add []Table
	for _, t := range p.Tables {
		if !have[t] {
			add = append(add, t)
		}
	}
	if len(add) > 0 {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pub, tableList(add))); err != nil {
			return fmt.Errorf("add tables %s to publication %q: %w", tableList(add), src.Publication, err)
		}
	}
	return nil
}

func tableList(tables []Table) string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.String()
	}
	return strings.Join(names, ", ")
}

func loadTypeNames(ctx context.Context, conn *pgx.Conn) (map[uint32]string, error) {
	rows, err := conn.Query(ctx, "SELECT oid, typname FROM pg_type")
	if err != nil {
		return nil, fmt.Errorf("load type names: %w", err)
	}
	names := map[uint32]string{}
	var oid uint32
	var name string
	_, err = pgx.ForEachRow(rows, []any{&oid, &name}, func() error {
		names[oid] = name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load type names: %w", err)
	}
	return names, nil
}
