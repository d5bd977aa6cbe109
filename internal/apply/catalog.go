package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/pgvalue"
)

// TableName is a schema-qualified table name, unquoted.
type TableName struct {
	Schema, Name string
}

// String quotes the name for SQL and messages.
func (n TableName) String() string { return pgx.Identifier{n.Schema, n.Name}.Sanitize() }

// Target returns the target table of a source schema and table: the
// schema through the schema mapping.
func (a *Applier) Target(schema, table string) TableName {
	return TableName{Schema: a.cfg.TargetSchema(schema), Name: table}
}

// table returns the target table of a change, reading it from the catalog
// (and creating it, with schema sync) the first time.
func (a *Applier) table(ctx context.Context, ch *Change) (*Table, error) {
	if t, ok := a.cachedTable(ch.Target); ok {
		return t, nil
	}
	key := a.cfg.KeyColumns[ch.Target.Schema+"."+ch.Target.Name]
	t, err := loadTable(ctx, a.conn, ch.Target, key)
	if errors.Is(err, ErrTableNotFound) && a.cfg.CreateTable != nil {
		if err := a.cfg.CreateTable(ctx, a.conn, ch); err != nil {
			return nil, changeError(ch, nil, fmt.Errorf("sync_schema: %w", err))
		}
		a.created++
		t, err = loadTable(ctx, a.conn, ch.Target, key)
	}
	if errors.Is(err, ErrTableNotFound) {
		return nil, changeError(ch, nil, fmt.Errorf("%w: create it, or enable sync_schema", err))
	}
	if err != nil {
		return nil, changeError(ch, nil, err)
	}
	if !t.HasKey() {
		a.log.Warnf("Target table %s has no primary key or NOT NULL unique index: its INSERTs are applied as plain inserts, "+
			"and each UPDATE and DELETE changes one row found by the old values the event carries (REPLICA IDENTITY FULL on the source); "+
			"give it a key (or key_columns) for upserts and fast, set-based updates", t.Name)
	}
	a.tablesMu.Lock()
	a.tables[ch.Target] = t
	a.tablesMu.Unlock()
	return t, nil
}

// cachedTable returns the target table's definition if it was read.
func (a *Applier) cachedTable(name TableName) (*Table, bool) {
	a.tablesMu.Lock()
	defer a.tablesMu.Unlock()
	t, ok := a.tables[name]
	return t, ok
}

// invalidate forgets the target's table definitions: after a failure (a
// rolled-back DDL, a table changed behind our back) they are read again.
func (a *Applier) invalidate() {
	a.tablesMu.Lock()
	defer a.tablesMu.Unlock()
	clear(a.tables)
}

// Table is what the applier knows about one target table: its columns and
// the key it applies changes by.
type Table struct {
	Name    TableName
	OID     uint32
	Columns []Column
	byName  map[string]int
	// Key holds the indexes (into Columns) of the columns that identify a
	// row: the primary key, else the first suitable unique index (see
	// loadTable). Empty for a table without one.
	Key []int
	// KeyName describes where Key comes from, for messages.
	KeyName string
	// ForeignKeys is set when the table references, or is referenced by, a
	// foreign key: its changes are then never reordered with another
	// table's.
	ForeignKeys bool
	// OtherUnique is set when a unique index or exclusion constraint other
	// than the key's exists: rows of different keys can then conflict, so
	// their changes are not split over connections (see Applier.parts).
	OtherUnique bool
	// alwaysIdentity is set when a column is GENERATED ALWAYS AS IDENTITY:
	// inserts then need OVERRIDING SYSTEM VALUE to write the source's value.
	alwaysIdentity bool
	ident          string
	// statements caches the SQL built for this definition of the table;
	// the parts of a split statement are built at once (see execSplit).
	statementsMu sync.Mutex
	statements   map[string]string
	// binary caches the binary conversion of snapshot rows by column list
	// (nil: some column's type has none); textCopy is set once a value
	// could not be converted, and snapshot rows then go to COPY as text.
	binary   map[string]*pgvalue.TextToBinary
	textCopy bool
}

// Column is one column of a target table.
type Column struct {
	Name string
	// CastType is the column's type as a quoted, schema-qualified name
	// without a type modifier: text values are cast to it (the column's
	// modifier is then applied by assignment, which rejects what does not
	// fit instead of silently truncating as an explicit cast to bit(n) or
	// char(n) would).
	CastType string
	// TypeOID is the column's type (pg_attribute.atttypid): snapshot rows
	// go to COPY in binary for the built-in types internal/pgvalue converts.
	TypeOID   uint32
	NotNull   bool
	Generated bool
	Identity  byte // 'a' (always), 'd' (by default) or 0
	ident     string
}

// Column returns the index of the named column.
func (t *Table) Column(name string) (int, bool) {
	i, ok := t.byName[name]
	return i, ok
}

// HasKey reports whether the table has a key to apply changes by.
func (t *Table) HasKey() bool { return len(t.Key) > 0 }

// ErrTableNotFound is returned (wrapped) when a change's target table does
// not exist.
var ErrTableNotFound = errors.New("target table does not exist")

// querier is what catalog reads need: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadTable reads a table's columns and key from the catalog. keyColumns,
// when not empty, names the columns to use as key instead of the table's
// own primary key or unique index (they need a unique index all the same,
// for ON CONFLICT).
func loadTable(ctx context.Context, q querier, name TableName, keyColumns []string) (*Table, error) {
	t := &Table{Name: name, ident: name.String(), byName: map[string]int{}}
	var relkind string
	err := q.QueryRow(ctx, `SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, name.Schema, name.Name).Scan(&t.OID, &relkind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", name, ErrTableNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up target table %s: %w", name, err)
	}
	if relkind != "r" && relkind != "p" {
		return nil, fmt.Errorf("target %s is not a table (relkind %q)", name, relkind)
	}

	rows, err := q.Query(ctx, `SELECT a.attname, quote_ident(tn.nspname) || '.' || quote_ident(t.typname), a.atttypid,
			a.attnotnull, a.attgenerated <> '', a.attidentity::text
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}
	for rows.Next() {
		var c Column
		var identity string
		if err := rows.Scan(&c.Name, &c.CastType, &c.TypeOID, &c.NotNull, &c.Generated, &identity); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", name, err)
		}
		if identity != "" {
			c.Identity = identity[0]
		}
		c.ident = pgx.Identifier{c.Name}.Sanitize()
		t.alwaysIdentity = t.alwaysIdentity || c.Identity == 'a'
		t.byName[c.Name] = len(t.Columns)
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}

	if err := t.loadKey(ctx, q, keyColumns); err != nil {
		return nil, err
	}
	err = q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
		WHERE contype = 'f' AND (conrelid = $1 OR confrelid = $1))`, t.OID).Scan(&t.ForeignKeys)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys of %s: %w", name, err)
	}
	var unique int
	err = q.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_index
		WHERE indrelid = $1 AND (indisunique OR indisexclusion)`, t.OID).Scan(&unique)
	if err != nil {
		return nil, fmt.Errorf("read unique indexes of %s: %w", name, err)
	}
	t.OtherUnique = unique > 1 || (unique == 1 && !t.HasKey())
	return t, nil
}

// loadKey picks the key: the primary key, else the unique index (valid,
// immediate, not partial, on plain columns) that is the replica identity,
// else the one with the fewest columns, provided every column of it is NOT
// NULL (NULLs never conflict, so a nullable unique index identifies nothing).
func (t *Table) loadKey(ctx context.Context, q querier, keyColumns []string) error {
	rows, err := q.Query(ctx, `SELECT ic.relname, i.indisprimary,
			array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
		FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
		  AND i.indpred IS NULL AND i.indexprs IS NULL
		ORDER BY i.indisprimary DESC, i.indisreplident DESC, i.indnkeyatts, ic.relname`, t.OID)
	if err != nil {
		return fmt.Errorf("read unique indexes of %s: %w", t.Name, err)
	}
	type index struct {
		name    string
		primary bool
		columns []string
	}
	var indexes []index
	for rows.Next() {
		var ix index
		if err := rows.Scan(&ix.name, &ix.primary, &ix.columns); err != nil {
			rows.Close()
			return fmt.Errorf("read unique indexes of %s: %w", t.Name, err)
		}
		indexes = append(indexes, ix)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read unique indexes of %s: %w", t.Name, err)
	}
	columnsOf := func(ix index) []int {
		cols := make([]int, 0, len(ix.columns))
		for _, name := range ix.columns {
			i, ok := t.byName[name]
			if !ok {
				return nil
			}
			cols = append(cols, i)
		}
		return cols
	}

	if len(keyColumns) > 0 {
		want := map[string]bool{}
		for _, c := range keyColumns {
			if _, ok := t.byName[c]; !ok {
				return fmt.Errorf("key_columns of %s: column %q does not exist on the target", t.Name, c)
			}
			want[c] = true
		}
		for _, ix := range indexes {
			cols := columnsOf(ix)
			if len(cols) != len(want) {
				continue
			}
			match := true
			for _, i := range cols {
				match = match && want[t.Columns[i].Name]
			}
			if match {
				t.Key, t.KeyName = cols, "unique index "+pgx.Identifier{ix.name}.Sanitize()+" (key_columns)"
				return nil
			}
		}
		return fmt.Errorf("key_columns of %s: no unique index on exactly (%s) on the target; create one (changes are applied with INSERT … ON CONFLICT on it)",
			t.Name, strings.Join(keyColumns, ", "))
	}

	for _, ix := range indexes {
		cols := columnsOf(ix)
		if cols == nil {
			continue
		}
		notNull := true
		for _, i := range cols {
			notNull = notNull && t.Columns[i].NotNull
		}
		if !notNull {
			continue
		}
		t.Key = cols
		if ix.primary {
			t.KeyName = "primary key " + pgx.Identifier{ix.name}.Sanitize()
		} else {
			t.KeyName = "unique index " + pgx.Identifier{ix.name}.Sanitize()
		}
		return nil
	}
	return nil
}

// keyColumnNames lists the key's column names, for messages.
func (t *Table) keyColumnNames() string {
	names := make([]string, len(t.Key))
	for i, k := range t.Key {
		names[i] = t.Columns[k].Name
	}
	return strings.Join(names, ", ")
}
