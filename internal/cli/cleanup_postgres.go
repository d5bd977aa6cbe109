package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/bytesize"
	"github.com/pgflo/pgflo/internal/pgdsn"
	"github.com/pgflo/pgflo/internal/replication"
)

// SQLSTATEs cleanup tells apart.
const (
	sqlObjectInUse      = "55006" // the slot is held by a walsender
	sqlUndefinedObject  = "42704" // the slot was dropped meanwhile
	sqlDependentObjects = "2BP01" // the schema is not empty
)

// releasePollInterval is how often dropSlot checks whether a terminated
// walsender let go of the slot.
const releasePollInterval = 100 * time.Millisecond

// pgfloSchemaKeepReason says why the pgflo schema outlives a group's
// cleanup.
const pgfloSchemaKeepReason = "it holds other objects (another group's DDL capture, for instance)"

// postgresTargets inspects the source database: the group's replication
// slot, publication, DDL capture event trigger and function, and the pgflo
// schema that holds DDL capture functions.
func postgresTargets(ctx context.Context, o CleanupOptions) (place, error) {
	conn, err := replication.Connect(ctx, o.DSN)
	if err != nil {
		return place{}, err
	}
	p := place{close: func() { _ = conn.Close(context.Background()) }}
	var database string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&database); err != nil {
		p.close()
		return place{}, fmt.Errorf("read current database: %w", err)
	}
	p.name = fmt.Sprintf("PostgreSQL %s (database %s)", pgdsn.Redact(o.DSN), database)

	slot, err := slotTarget(ctx, conn, o, database)
	if err != nil {
		p.close()
		return place{}, err
	}
	publication, err := publicationTarget(ctx, conn, o.Publication)
	if err != nil {
		p.close()
		return place{}, err
	}
	ddl, err := ddlTargets(ctx, conn, o.Publication)
	if err != nil {
		p.close()
		return place{}, err
	}
	p.targets = append([]target{slot, publication}, ddl...)
	return p, nil
}

// slotTarget describes the group's replication slot: whether a walsender
// holds it and how much WAL it keeps on the source.
func slotTarget(ctx context.Context, conn *pgx.Conn, o CleanupOptions, database string) (target, error) {
	t := target{what: "replication slot " + o.Slot}
	var (
		slotDB, app, client *string
		active              bool
		pid                 *int32
		retained            *int64
	)
	err := conn.QueryRow(ctx, `SELECT s.database, s.active, s.active_pid, a.application_name, host(a.client_addr),
		pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, s.restart_lsn)::bigint
		FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.slot_name = $1`, o.Slot).Scan(&slotDB, &active, &pid, &app, &client, &retained)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("look up replication slot %q: %w", o.Slot, err)
	}
	t.exists = true
	var details []string
	if active && pid != nil {
		holder := fmt.Sprintf("held by walsender pid %d", *pid)
		if app != nil && *app != "" {
			holder += ", application " + *app
		}
		if client != nil && *client != "" {
			holder += ", client " + *client
		}
		details = append(details, holder)
	} else {
		details = append(details, "inactive")
	}
	if retained != nil {
		details = append(details, "retains "+bytesize.Format(*retained)+" of WAL")
	}
	switch {
	case slotDB == nil:
		t.keep = "it is a physical slot, not a logical one pgflo created"
	case *slotDB != database:
		t.keep = fmt.Sprintf("it belongs to database %s: run cleanup with a DSN of that database", *slotDB)
	}
	t.detail = strings.Join(details, ", ")
	t.drop = func(ctx context.Context) (string, error) { return dropSlot(ctx, conn, o.Slot, o.ReleaseTimeout) }
	return t, nil
}

// dropSlot drops slot, terminating the walsender that holds it (and any
// that takes it over before the drop) until timeout.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var terminated []string
	note := func() string {
		if len(terminated) == 0 {
			return ""
		}
		return "terminated walsender pid " + strings.Join(terminated, ", ")
	}
	for {
		var pid *int32
		err := conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return note(), nil
		}
		if err != nil {
			return note(), fmt.Errorf("look up replication slot: %w", err)
		}
		if pid == nil {
			_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
			var pgErr *pgconn.PgError
			switch {
			case err == nil, errors.As(err, &pgErr) && pgErr.Code == sqlUndefinedObject:
				return note(), nil
			case !errors.As(err, &pgErr) || pgErr.Code != sqlObjectInUse:
				return note(), err
			}
		} else {
			var signalled bool
			if err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", *pid).Scan(&signalled); err != nil {
				return note(), fmt.Errorf("terminate walsender pid %d: %w", *pid, err)
			}
			if signalled {
				terminated = append(terminated, fmt.Sprint(*pid))
			}
		}
		if time.Now().After(deadline) {
			return note(), fmt.Errorf("the slot is still in use after %v: is the group's replicator still running? Stop it first", timeout)
		}
		select {
		case <-ctx.Done():
			return note(), ctx.Err()
		case <-time.After(releasePollInterval):
		}
	}
}

// publicationTarget describes the group's publication.
func publicationTarget(ctx context.Context, conn *pgx.Conn, publication string) (target, error) {
	t := target{what: "publication " + publication}
	var tables int
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		(SELECT count(*) FROM pg_publication_tables WHERE pubname = $1)`, publication).Scan(&t.exists, &tables)
	if err != nil {
		return t, fmt.Errorf("look up publication %q: %w", publication, err)
	}
	t.detail = plural(tables, "table")
	if !t.exists {
		t.detail = ""
	}
	t.drop = execDrop(conn, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{publication}.Sanitize())
	return t, nil
}

// ddlTargets describe the publication's DDL capture (track_ddl): its event
// trigger, its function, and the schema of such functions, which is
// dropped only when nothing else is left in it.
func ddlTargets(ctx context.Context, conn *pgx.Conn, publication string) ([]target, error) {
	schema, name := replication.DDLCaptureObjects(publication)
	trigger := target{what: "DDL capture event trigger " + name}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)", name).Scan(&trigger.exists); err != nil {
		return nil, fmt.Errorf("look up event trigger %q: %w", name, err)
	}
	trigger.drop = execDrop(conn, "DROP EVENT TRIGGER IF EXISTS "+pgx.Identifier{name}.Sanitize())

	qualified := pgx.Identifier{schema, name}.Sanitize() + "()"
	function := target{what: "DDL capture function " + schema + "." + name + "()"}
	var functionOID uint32
	err := conn.QueryRow(ctx, `SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1 AND p.proname = $2 AND p.pronargs = 0`, schema, name).Scan(&functionOID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("look up function %s: %w", qualified, err)
	default:
		function.exists = true
	}
	function.drop = execDrop(conn, "DROP FUNCTION IF EXISTS "+qualified)

	schemaTarget := target{what: "schema " + schema}
	var others *int64
	// Every object in a schema depends on it (deptype 'n'); the group's
	// function is about to go, anything else keeps the schema.
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_depend d
		WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid AND d.deptype = 'n'
		  AND NOT (d.classid = 'pg_proc'::regclass AND d.objid = $2))
		FROM pg_namespace n WHERE n.nspname = $1`, schema, functionOID).Scan(&others)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("look up schema %q: %w", schema, err)
	default:
		schemaTarget.exists = true
		if *others > 0 {
			schemaTarget.keep = pgfloSchemaKeepReason
		} else {
			schemaTarget.detail = "empty once the function is dropped"
		}
	}
	schemaTarget.drop = func(ctx context.Context) (string, error) {
		_, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlDependentObjects {
			return "", errors.New("the schema is not empty: the function above was not dropped, or another object was created meanwhile")
		}
		return "", err
	}
	return []target{trigger, function, schemaTarget}, nil
}

// execDrop is a drop that runs one statement.
func execDrop(conn *pgx.Conn, sql string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		_, err := conn.Exec(ctx, sql)
		return "", err
	}
}
