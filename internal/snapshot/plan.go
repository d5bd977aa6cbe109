// Package snapshot copies the current rows of the published tables as
// snapshot events: a plan of ctid page-range chunks per table (leaf partitions
// of partitioned tables), and copy workers that import one exported snapshot
// and read the chunks with COPY, in parallel, into the feed.
package snapshot

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/state"
)

// TableInfo is what a copy worker needs to know about a published table.
type TableInfo struct {
	Schema, Name string
	// Columns are the table's columns as pgoutput describes them: not
	// dropped, not generated, in attribute order; Key marks the replica
	// identity as pgoutput does (every column for REPLICA IDENTITY FULL).
	Columns []event.Column
	// Leaves are the relations holding its rows: itself, or the leaf
	// partitions of a partitioned table (whose changes pgoutput publishes
	// under the root's name, publish_via_partition_root).
	Leaves []Leaf
}

// Leaf is one relation read by COPY, with its size in blocks.
type Leaf struct {
	Ident  string // quoted schema.name
	Blocks int64
}

// DescribeWith connects to dsn and describes tables.
func DescribeWith(ctx context.Context, dsn string, tables []replication.Table) ([]*TableInfo, error) {
	conn, err := replication.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	return Describe(ctx, conn, tables)
}

// Describe reads the columns, keys and leaf relations of tables.
func Describe(ctx context.Context, conn *pgx.Conn, tables []replication.Table) ([]*TableInfo, error) {
	var infos []*TableInfo
	for _, t := range tables {
		info := &TableInfo{Schema: t.Schema, Name: t.Name}
		rows, err := conn.Query(ctx, `
SELECT a.attname, a.atttypid, ty.typname,
       CASE c.relreplident
         WHEN 'f' THEN true
         WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
         WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey))
         ELSE false END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type ty ON ty.oid = a.atttypid
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, t.String())
		if err != nil {
			return nil, fmt.Errorf("describe columns of %s: %w", t, err)
		}
		info.Columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.Column, error) {
			var c event.Column
			return c, r.Scan(&c.Name, &c.OID, &c.Type, &c.Key)
		})
		if err != nil {
			return nil, fmt.Errorf("describe columns of %s: %w", t, err)
		}
		rows, err = conn.Query(ctx, `
SELECT c.oid::regclass::text, pg_relation_size(c.oid) / current_setting('block_size')::bigint
FROM pg_class c
WHERE c.oid = $1::regclass AND c.relkind = 'r'
UNION ALL
SELECT p.relid::regclass::text, pg_relation_size(p.relid) / current_setting('block_size')::bigint
FROM pg_partition_tree($1::regclass) p JOIN pg_class c ON c.oid = p.relid
WHERE p.isleaf AND p.relid <> $1::regclass AND c.relkind = 'r'
ORDER BY 1`, t.String())
		if err != nil {
			return nil, fmt.Errorf("list relations of %s: %w", t, err)
		}
		info.Leaves, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Leaf, error) {
			var l Leaf
			return l, r.Scan(&l.Ident, &l.Blocks)
		})
		if err != nil {
			return nil, fmt.Errorf("list relations of %s: %w", t, err)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Plan splits every table into chunks of at most chunkPages pages. The last
// chunk of each relation is open-ended, so rows stored past the planned size
// (the table grew) are copied too. An empty relation still gets one chunk.
func Plan(infos []*TableInfo, chunkPages int64) []*state.Table {
	var tables []*state.Table
	id := 0
	for _, info := range infos {
		t := &state.Table{Schema: info.Schema, Name: info.Name, Done: []int{}}
		for _, leaf := range info.Leaves {
			for first := int64(0); ; first += chunkPages {
				end := first + chunkPages
				if end >= leaf.Blocks {
					end = 0
				}
				t.Chunks = append(t.Chunks, state.Chunk{ID: id, Relation: leaf.Ident, FirstPage: first, EndPage: end})
				id++
				if end == 0 {
					break
				}
			}
		}
		tables = append(tables, t)
	}
	return tables
}
