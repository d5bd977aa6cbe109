// Package schemasync creates a missing target table from its source
// table's definition, read from the source's catalog: columns with their
// types, defaults, identity and generated expressions, the sequences of
// serial columns, primary key, unique, check and exclusion constraints,
// foreign keys to tables that exist on the target, indexes, and the enums,
// domains, composite and range types the columns use. Routing renames (a
// table, its columns) and schema mappings are applied on the way.
//
// It reads the catalog instead of running pg_dump: no client binaries (of a
// matching version) are needed, only the replicated tables are created (not
// the whole database), and renames are exact. Partitioned tables are
// created as plain tables (events name the partition that holds a row), and
// types from extensions must be installed on the target first.
package schemasync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply"
	"github.com/pgflo/pgflo/internal/ddl"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/pgdsn"
)

// Name is a schema-qualified name, unquoted.
type Name struct{ Schema, Name string }

func (n Name) quoted() string { return pgx.Identifier{n.Schema, n.Name}.Sanitize() }

// Request asks for one table.
type Request struct {
	// Source is the table on the source, Target the table to create.
	Source, Target Name
	// Columns are the event's column names, in source column order (after
	// routing renamed some): they name the target's columns. Empty keeps
	// the source names.
	Columns []string
	// MapSchema maps a source schema to the target's (for the tables
	// foreign keys reference); nil keeps schemas.
	MapSchema func(string) string
}

// Syncer reads definitions from the source. Its connection is opened on
// first use and kept.
type Syncer struct {
	dsn string
	log logging.Logger

	mu   sync.Mutex
	conn *pgx.Conn
}

// New returns a Syncer reading the source at dsn.
func New(dsn string, log logging.Logger) *Syncer { return &Syncer{dsn: dsn, log: log} }

// Close closes the source connection.
func (s *Syncer) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close(ctx)
	s.conn = nil
	return err
}

func (s *Syncer) source(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return nil, fmt.Errorf("parse source dsn %s: %s", pgdsn.Redact(s.dsn), pgdsn.ParseError(err))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to source %s: %s", pgdsn.Redact(s.dsn), pgdsn.RedactIn(err.Error(), cfg.Password))
	}
	// With an empty search_path, every name the catalog functions print
	// (types, sequences, referenced tables, functions) is schema-qualified.
	if _, err := conn.Exec(ctx, "SET search_path = ''"); err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("source: %w", err)
	}
	s.conn = conn
	return conn, nil
}

// Create creates req.Target on the target connection (in its current
// transaction, if any) from the source's req.Source.
func (s *Syncer) Create(ctx context.Context, target *pgx.Conn, req Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.source(ctx)
	if err != nil {
		return err
	}
	if req.MapSchema == nil {
		req.MapSchema = func(schema string) string { return schema }
	}
	b := &builder{src: src, dst: target, req: req, log: s.log, made: map[uint32]bool{}}
	stmts, err := b.table(ctx)
	if err != nil {
		if src.IsClosed() {
			s.conn = nil
		}
		return err
	}
	for _, stmt := range stmts {
		if _, err := target.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create %s: %q: %w", req.Target.quoted(), stmt, err)
		}
	}
	s.log.Infof("sync_schema: created %s from the source's %s (%d statements)", req.Target.quoted(), req.Source.quoted(), len(stmts))
	return nil
}

// builder collects the statements creating one table.
type builder struct {
	src, dst *pgx.Conn
	req      Request
	log      logging.Logger
	pre      []string // types, schemas, sequences
	post     []string // constraints, indexes, sequence ownership
	made     map[uint32]bool
}

type column struct {
	num        int16
	name       string
	typ        string
	typeOID    uint32
	notNull    bool
	identity   string
	generated  string
	def        *string
	collation  *string
	targetName string
}

func (b *builder) table(ctx context.Context) ([]string, error) {
	var oid uint32
	err := b.src.QueryRow(ctx, `SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, b.req.Source.Schema, b.req.Source.Name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("table %s does not exist on the source (a table renamed by routing is read from the source under the name in the event's metadata pg_flo_source_table)", b.req.Source.quoted())
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s on the source: %w", b.req.Source.quoted(), err)
	}
	rows, err := b.src.Query(ctx, `SELECT a.attnum, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid,
			a.attnotnull, a.attidentity::text, a.attgenerated::text, pg_catalog.pg_get_expr(d.adbin, d.adrelid),
			CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
				THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
		LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s on the source: %w", b.req.Source.quoted(), err)
	}
	var cols []*column
	for rows.Next() {
		c := &column{}
		if err := rows.Scan(&c.num, &c.name, &c.typ, &c.typeOID, &c.notNull, &c.identity, &c.generated, &c.def, &c.collation); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s on the source: %w", b.req.Source.quoted(), err)
		}
		c.targetName = c.name
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s on the source: %w", b.req.Source.quoted(), err)
	}

	// Routing renames columns in the events, which carry every column but
	// generated ones, in table order.
	renames := map[string]string{}
	var published []*column
	for _, c := range cols {
		if c.generated == "" {
			published = append(published, c)
		}
	}
	if len(b.req.Columns) == len(published) {
		for i, c := range published {
			if c.name != b.req.Columns[i] {
				c.targetName = b.req.Columns[i]
				renames[c.name] = c.targetName
			}
		}
	} else if len(b.req.Columns) > 0 {
		b.log.Warnf("sync_schema: the events of %s carry %d columns and the source table %s has %d; creating the columns under their source names",
			b.req.Target.quoted(), len(b.req.Columns), b.req.Source.quoted(), len(published))
	}

	b.pre = append(b.pre, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{b.req.Target.Schema}.Sanitize())
	for _, c := range cols {
		if err := b.ensureType(ctx, c.typeOID); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	if err := b.sequences(ctx, oid, cols); err != nil {
		return nil, err
	}

	var defs []string
	for _, c := range cols {
		var d strings.Builder
		d.WriteString(pgx.Identifier{c.targetName}.Sanitize())
		d.WriteString(" ")
		d.WriteString(c.typ)
		if c.collation != nil {
			d.WriteString(" COLLATE " + *c.collation)
		}
		switch {
		case c.generated == "s" && c.def != nil:
			d.WriteString(" GENERATED ALWAYS AS (" + ddl.RenameColumns(*c.def, renames) + ") STORED")
		case c.identity == "a":
			d.WriteString(" GENERATED ALWAYS AS IDENTITY")
		case c.identity == "d":
			d.WriteString(" GENERATED BY DEFAULT AS IDENTITY")
		case c.def != nil:
			d.WriteString(" DEFAULT " + *c.def)
		}
		if c.notNull {
			d.WriteString(" NOT NULL")
		}
		defs = append(defs, d.String())
	}
	create := "CREATE TABLE " + b.req.Target.quoted() + " (\n  " + strings.Join(defs, ",\n  ") + "\n)"

	if err := b.constraints(ctx, oid, renames); err != nil {
		return nil, err
	}
	if err := b.indexes(ctx, oid, renames); err != nil {
		return nil, err
	}
	out := append(b.pre, create)
	return append(out, b.post...), nil
}

// exists reports whether the target has the object the query finds.
func (b *builder) exists(ctx context.Context, query string, args ...any) (bool, error) {
	var found bool
	err := b.dst.QueryRow(ctx, "SELECT EXISTS ("+query+")", args...).Scan(&found)
	return found, err
}

// ensureType makes sure the target has a user-defined type (and what it is
// made of), adding CREATE statements for what is missing.
func (b *builder) ensureType(ctx context.Context, oid uint32) error {
	if b.made[oid] {
		return nil
	}
	b.made[oid] = true
	var (
		schema, name, typtype, category string
		elem, base, relid               uint32
		extension                       *string
	)
	err := b.src.QueryRow(ctx, `SELECT n.nspname, t.typname, t.typtype::text, t.typcategory::text, t.typelem, t.typbasetype, t.typrelid,
			(SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
			 WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
		FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`, oid).
		Scan(&schema, &name, &typtype, &category, &elem, &base, &relid, &extension)
	if err != nil {
		return fmt.Errorf("read type %d on the source: %w", oid, err)
	}
	if schema == "pg_catalog" || schema == "information_schema" {
		return nil
	}
	if category == "A" && elem != 0 {
		return b.ensureType(ctx, elem)
	}
	qualified := Name{schema, name}.quoted()
	found, err := b.exists(ctx, `SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = $1 AND t.typname = $2`, schema, name)
	if err != nil {
		return fmt.Errorf("look up type %s on the target: %w", qualified, err)
	}
	if found {
		return nil
	}
	if extension != nil {
		return fmt.Errorf("type %s comes from extension %s: install it on the target (CREATE EXTENSION %s)", qualified, *extension, *extension)
	}
	b.pre = append(b.pre, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
	var stmt string
	switch typtype {
	case "e":
		err = b.src.QueryRow(ctx, `SELECT 'CREATE TYPE ' || $2 || ' AS ENUM (' ||
				coalesce(string_agg(pg_catalog.quote_literal(enumlabel), ', ' ORDER BY enumsortorder), '') || ')'
			FROM pg_catalog.pg_enum WHERE enumtypid = $1`, oid, qualified).Scan(&stmt)
	case "d":
		if err := b.ensureType(ctx, base); err != nil {
			return err
		}
		err = b.src.QueryRow(ctx, `SELECT 'CREATE DOMAIN ' || $2 || ' AS ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
				|| CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
					THEN ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) ELSE '' END
				|| coalesce(' DEFAULT ' || t.typdefault, '')
				|| CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
				|| coalesce((SELECT string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' || pg_catalog.pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
					FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c'), '')
			FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
			LEFT JOIN pg_catalog.pg_collation co ON co.oid = t.typcollation
			LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
			WHERE t.oid = $1`, oid, qualified).Scan(&stmt)
	case "c":
		rows, qerr := b.src.Query(ctx, `SELECT atttypid FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, relid)
		if qerr != nil {
			return qerr
		}
		var types []uint32
		for rows.Next() {
			var t uint32
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return err
			}
			types = append(types, t)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, t := range types {
			if err := b.ensureType(ctx, t); err != nil {
				return err
			}
		}
		err = b.src.QueryRow(ctx, `SELECT 'CREATE TYPE ' || $2 || ' AS (' || coalesce(string_agg(pg_catalog.quote_ident(attname) || ' '
				|| pg_catalog.format_type(atttypid, atttypmod), ', ' ORDER BY attnum), '') || ')'
			FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, relid, qualified).Scan(&stmt)
	case "r", "m":
		var subtype uint32
		rangeQuery := `SELECT r.rngsubtype, 'CREATE TYPE ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
				|| ' AS RANGE (subtype = ' || pg_catalog.format_type(r.rngsubtype, NULL)
				|| CASE WHEN r.rngsubdiff <> 0 AND fn.nspname = 'pg_catalog' THEN ', subtype_diff = ' || r.rngsubdiff::regproc::text ELSE '' END
				|| ', multirange_type_name = ' || pg_catalog.quote_ident(mn.nspname) || '.' || pg_catalog.quote_ident(mt.typname) || ')'
			FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type t ON t.oid = r.rngtypid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
			JOIN pg_catalog.pg_type mt ON mt.oid = r.rngmultitypid JOIN pg_catalog.pg_namespace mn ON mn.oid = mt.typnamespace
			LEFT JOIN pg_catalog.pg_proc p ON p.oid = r.rngsubdiff LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = p.pronamespace
			WHERE r.rngtypid = $1 OR r.rngmultitypid = $1`
		err = b.src.QueryRow(ctx, rangeQuery, oid).Scan(&subtype, &stmt)
		if err == nil {
			err = b.ensureType(ctx, subtype)
		}
	default:
		return fmt.Errorf("type %s (typtype %q) cannot be created by sync_schema: create it on the target", qualified, typtype)
	}
	if err != nil {
		return fmt.Errorf("read type %s on the source: %w", qualified, err)
	}
	b.pre = append(b.pre, stmt)
	return nil
}

// sequences creates the sequences of serial columns (owned by a column,
// used by its default) in the target schema, at the source's value.
func (b *builder) sequences(ctx context.Context, table uint32, cols []*column) error {
	rows, err := b.src.Query(ctx, `SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(s.seqtypid, NULL),
			s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle
		FROM pg_catalog.pg_depend d
		JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'S'
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
		JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1 AND d.deptype = 'a'`, table)
	if err != nil {
		return fmt.Errorf("read sequences of %s on the source: %w", b.req.Source.quoted(), err)
	}
	type seq struct {
		schema, name, column, typ            string
		start, increment, min, max, cacheVal int64
		cycle                                bool
	}
	var seqs []seq
	for rows.Next() {
		var s seq
		if err := rows.Scan(&s.schema, &s.name, &s.column, &s.typ, &s.start, &s.increment, &s.min, &s.max, &s.cacheVal, &s.cycle); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, s := range seqs {
		var last int64
		var called bool
		if err := b.src.QueryRow(ctx, "SELECT last_value, is_called FROM "+Name{s.schema, s.name}.quoted()).Scan(&last, &called); err != nil {
			return fmt.Errorf("read sequence %s on the source: %w", Name{s.schema, s.name}.quoted(), err)
		}
		target := Name{b.req.Target.Schema, s.name}
		cycle := "NO CYCLE"
		if s.cycle {
			cycle = "CYCLE"
		}
		b.pre = append(b.pre, fmt.Sprintf("CREATE SEQUENCE IF NOT EXISTS %s AS %s INCREMENT %d MINVALUE %d MAXVALUE %d START %d CACHE %d %s",
			target.quoted(), s.typ, s.increment, s.min, s.max, s.start, s.cacheVal, cycle),
			fmt.Sprintf("SELECT pg_catalog.setval('%s', %d, %t)", strings.ReplaceAll(target.quoted(), "'", "''"), last, called))
		var col *column
		for _, c := range cols {
			if c.name == s.column {
				col = c
			}
		}
		if col == nil || col.def == nil {
			continue
		}
		// The default names the sequence as regclass text (printed by
		// quote_ident, with an empty search_path); point it at the target's.
		var from, to string
		if err := b.src.QueryRow(ctx, `SELECT pg_catalog.quote_literal(pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2)) || '::regclass',
				pg_catalog.quote_literal(pg_catalog.quote_ident($3) || '.' || pg_catalog.quote_ident($2)) || '::regclass'`,
			s.schema, s.name, target.Schema).Scan(&from, &to); err != nil {
			return err
		}
		def := strings.Replace(*col.def, from, to, 1)
		col.def = &def
		b.post = append(b.post, "ALTER SEQUENCE "+target.quoted()+" OWNED BY "+b.req.Target.quoted()+"."+pgx.Identifier{col.targetName}.Sanitize())
	}
	return nil
}

// constraints adds the table's constraints; a foreign key only when the
// table it references exists on the target.
func (b *builder) constraints(ctx context.Context, table uint32, renames map[string]string) error {
	rows, err := b.src.Query(ctx, `SELECT c.conname, c.contype::text, pg_catalog.pg_get_constraintdef(c.oid),
			coalesce(rn.nspname, ''), coalesce(r.relname, '')
		FROM pg_catalog.pg_constraint c
		LEFT JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
		LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'c', 'x', 'f')
		ORDER BY c.contype = 'f', c.conname`, table)
	if err != nil {
		return fmt.Errorf("read constraints of %s on the source: %w", b.req.Source.quoted(), err)
	}
	type con struct{ name, typ, def, refSchema, refName string }
	var cons []con
	for rows.Next() {
		var c con
		if err := rows.Scan(&c.name, &c.typ, &c.def, &c.refSchema, &c.refName); err != nil {
			rows.Close()
			return err
		}
		cons = append(cons, c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cons {
		def := c.def
		if c.typ == "f" {
			ref := Name{b.req.MapSchema(c.refSchema), c.refName}
			if c.refSchema == b.req.Source.Schema && c.refName == b.req.Source.Name {
				ref = b.req.Target // self-reference
			} else {
				found, err := b.exists(ctx, `SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
					WHERE n.nspname = $1 AND c.relname = $2`, ref.Schema, ref.Name)
				if err != nil {
					return err
				}
				if !found {
					b.log.Warnf("sync_schema: foreign key %s of %s not created: the table it references, %s, does not exist on the target", c.name, b.req.Target.quoted(), ref.quoted())
					continue
				}
			}
			// Rename our columns only, before REFERENCES.
			at := strings.Index(def, " REFERENCES ")
			if at < 0 {
				continue
			}
			rest := def[at+len(" REFERENCES "):]
			if open := strings.Index(rest, "("); open >= 0 {
				rest = ref.quoted() + rest[open:]
			}
			def = ddl.RenameColumns(def[:at], renames) + " REFERENCES " + rest
		} else {
			def = ddl.RenameColumns(def, renames)
		}
		b.post = append(b.post, "ALTER TABLE "+b.req.Target.quoted()+" ADD CONSTRAINT "+pgx.Identifier{c.name}.Sanitize()+" "+def)
	}
	return nil
}

// indexes adds the indexes that back no constraint.
func (b *builder) indexes(ctx context.Context, table uint32, renames map[string]string) error {
	rows, err := b.src.Query(ctx, `SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
		WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
		ORDER BY i.indexrelid`, table)
	if err != nil {
		return fmt.Errorf("read indexes of %s on the source: %w", b.req.Source.quoted(), err)
	}
	var defs []string
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			rows.Close()
			return err
		}
		defs = append(defs, def)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, def := range defs {
		def = ddl.Rewrite(def, ddl.Rename{Schema: b.req.Target.Schema, Table: b.req.Target.Name, Columns: renames})
		def = strings.Replace(def, " INDEX ", " INDEX IF NOT EXISTS ", 1)
		b.post = append(b.post, def)
	}
	return nil
}

// TableCreator returns the hook that makes the applier create a missing
// target table from the source: the change's source table (its Source, or
// the event's schema and table) with the event's column names.
func (s *Syncer) TableCreator(mapSchema func(string) string) apply.TableCreator {
	return func(ctx context.Context, conn *pgx.Conn, ch *apply.Change) error {
		src := Name(ch.Source)
		if src.Name == "" {
			src = Name{ch.Schema, ch.Table}
		}
		var cols []string
		if ch.Op != event.DDL && ch.Op != event.Truncate {
			for _, c := range ch.Columns {
				cols = append(cols, c.Name)
			}
		}
		return s.Create(ctx, conn, Request{Source: src, Target: Name(ch.Target), Columns: cols, MapSchema: mapSchema})
	}
}
