package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/testenv"
)

// source describes the bench database and its table.
type source struct {
	dsn        string
	pgVersion  string
	tableBytes int64 // pg_relation_size of the heap
	totalBytes int64 // pg_total_relation_size (heap, TOAST, indexes)
	blocks     int64 // heap blocks: the ctid page range to split
	fillTime   time.Duration
}

// prepareSource creates the bench database and the table, fills it, and
// leaves it vacuumed, analyzed and checkpointed, so reading it writes nothing.
func prepareSource(ctx context.Context, pg *testenv.Postgres, o options) (source, error) {
	var src source
	admin, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		return src, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+database); err != nil {
		return src, fmt.Errorf("create database %s: %w", database, err)
	}
	src.dsn = pg.DSN(database)
	conn, err := pgx.Connect(ctx, src.dsn)
	if err != nil {
		return src, fmt.Errorf("connect to database %s: %w", database, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&src.pgVersion); err != nil {
		return src, fmt.Errorf("read server version: %w", err)
	}

	benchkit.Say("source: table %s with %s mixed-type rows", table, benchkit.Thousands(o.rows))
	start := time.Now()
	steps := []struct{ what, sql string }{
		{"create table", typestest.MixedTable(table)},
		// Nothing may write to the table's pages while the readers run.
		{"disable autovacuum", "ALTER TABLE " + table + " SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"},
		{"fill table", typestest.MixedFill(table, o.rows)},
		// Hint bits and the visibility map set now, not by the first reader.
		{"vacuum analyze", "VACUUM (ANALYZE, FREEZE) " + table},
		{"checkpoint", "CHECKPOINT"},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql); err != nil {
			return src, fmt.Errorf("%s: %w", s.what, err)
		}
	}
	src.fillTime = time.Since(start)
	var count int64
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table+`),
		pg_relation_size('`+table+`'), pg_total_relation_size('`+table+`'),
		pg_relation_size('`+table+`') / current_setting('block_size')::bigint`).
		Scan(&count, &src.tableBytes, &src.totalBytes, &src.blocks)
	if err != nil {
		return src, fmt.Errorf("measure table: %w", err)
	}
	if count != int64(o.rows) {
		return src, fmt.Errorf("the table holds %d rows, want %d", count, o.rows)
	}
	benchkit.Say("    filled, vacuumed and checkpointed in %.1fs: heap %s in %s blocks (%s with TOAST and index)",
		src.fillTime.Seconds(), mib(src.tableBytes), benchkit.Thousands(int(src.blocks)), mib(src.totalBytes))
	return src, nil
}

// copyResult is a COPY anchor's time and the size of what it read.
type copyResult struct {
	m     benchkit.Measurement
	bytes int64 // COPY text received
}

// countingDiscard discards what it is given and counts the bytes.
type countingDiscard struct{ n int64 }

func (w *countingDiscard) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingDiscard)(nil)

// measureCopy times COPY of the whole table to the client on one connection,
// the output discarded. The connection is opened before the clock starts.
func measureCopy(ctx context.Context, src source, rows int) (copyResult, error) {
	r := copyResult{m: benchkit.Measurement{Reader: "COPY " + table + " TO STDOUT (1 connection)"}}
	conn, err := pgx.Connect(ctx, src.dsn)
	if err != nil {
		return r, fmt.Errorf("COPY: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var w countingDiscard
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, &w, "COPY "+table+" TO STDOUT")
	r.m.Seconds = time.Since(start).Seconds()
	if err != nil {
		return r, fmt.Errorf("COPY %s: %w", table, err)
	}
	if got := tag.RowsAffected(); got != int64(rows) {
		return r, fmt.Errorf("COPY %s: %d rows, want %d", table, got, rows)
	}
	r.bytes, r.m.OK = w.n, true
	return r, nil
}

// rangeBounds splits blocks [0, blocks) into n ctid page ranges; range i is
// [bounds[i], bounds[i+1]).
func rangeBounds(blocks int64, n int) []int64 {
	b := make([]int64, n+1)
	for i := range b {
		b[i] = blocks * int64(i) / int64(n)
	}
	return b
}

// measureRangeCopy times the table read in `ranges` ctid page ranges, each
// by COPY on its own connection, all concurrently; the clock runs from the
// start of the first until the end of the last. The connections are opened
// before the clock starts.
func measureRangeCopy(ctx context.Context, src source, rows int) (copyResult, error) {
	r := copyResult{m: benchkit.Measurement{Reader: fmt.Sprintf("COPY in %d ctid ranges (%d connections, concurrently)", ranges, ranges)}}
	bounds := rangeBounds(src.blocks, ranges)
	conns := make([]*pgx.Conn, ranges)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	for i := range conns {
		c, err := pgx.Connect(ctx, src.dsn)
		if err != nil {
			return r, fmt.Errorf("range COPY: connect: %w", err)
		}
		conns[i] = c
	}
	type result struct {
		rows, bytes int64
		err         error
	}
	results := make([]result, ranges)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sql := fmt.Sprintf("COPY (SELECT * FROM %s WHERE ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid) TO STDOUT", table, bounds[i], bounds[i+1])
			var w countingDiscard
			<-begin
			tag, err := conns[i].PgConn().CopyTo(ctx, &w, sql)
			if err != nil {
				err = fmt.Errorf("range COPY pages %d..%d: %w", bounds[i], bounds[i+1]-1, err)
			}
			results[i] = result{rows: tag.RowsAffected(), bytes: w.n, err: err}
		}(i)
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	r.m.Seconds = time.Since(start).Seconds()
	var total int64
	for _, res := range results {
		if res.err != nil {
			return r, res.err
		}
		total += res.rows
		r.bytes += res.bytes
	}
	if total != int64(rows) {
		return r, fmt.Errorf("range COPY: %d rows in %d ranges of %d blocks, want %d", total, ranges, src.blocks, rows)
	}
	r.m.OK = true
	return r, nil
}
