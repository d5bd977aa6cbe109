package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// The source stamps each row with clock_timestamp() as it is inserted and
// each target with its own as it is written; both clusters run on this
// machine and share its clock. Epoch seconds as float8 read back the same
// from SQL and from an event's JSON.
const (
	sourceTable = `CREATE TABLE %s (
  id bigserial PRIMARY KEY,
  src float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
  pad int NOT NULL)`
	targetTable = `CREATE TABLE %s (
  id bigint PRIMARY KEY,
  src float8 NOT NULL,
  pad int NOT NULL,
  dst float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()))`
	// The workload: one INSERT of :rows rows per transaction.
	script = "INSERT INTO %s (pad) SELECT 0 FROM generate_series(1, :rows);\n"
)

// Each pgflo pipeline has a table of its own, loaded in turn: the other
// pipeline's processes then idle instead of taking the same two cores.
// Native logical replication follows both.
const (
	pgTable   = "lat_pg"
	fileTable = "lat_file"
)

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func (b *bench) prepareSQL(ctx context.Context) error {
	var ver string
	if err := benchkit.QueryRow(ctx, b.src.DSN(sourceDB), "SHOW server_version", &ver); err != nil {
		return err
	}
	b.pgVer = ver
	tables := []string{pgTable, fileTable}
	var source, native []string
	for _, t := range tables {
		source = append(source, fmt.Sprintf(sourceTable, ident(t)))
		native = append(native, fmt.Sprintf(targetTable, ident(t)))
	}
	source = append(source, fmt.Sprintf("CREATE PUBLICATION native FOR TABLE %s, %s", ident(pgTable), ident(fileTable)))
	if err := benchkit.ExecAll(ctx, b.src.DSN(sourceDB), source...); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := benchkit.ExecAll(ctx, b.dst.AdminDSN(), "CREATE DATABASE "+nativeDB, "CREATE DATABASE "+pgfloDB); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if err := benchkit.ExecAll(ctx, b.dst.DSN(pgfloDB), fmt.Sprintf(targetTable, ident(pgTable))); err != nil {
		return fmt.Errorf("target %s: %w", pgfloDB, err)
	}
	native = append(native, fmt.Sprintf("CREATE SUBSCRIPTION native CONNECTION '%s' PUBLICATION native WITH (copy_data = false)",
		strings.ReplaceAll(b.src.DSN(sourceDB), "'", "''")))
	return benchkit.ExecAll(ctx, b.dst.DSN(nativeDB), native...)
}

// stats are one reader's latencies over a load, in milliseconds.
type stats struct {
	p50, p99, max float64
	n             int
}

// result is one load's measurement.
type result struct {
	run  int
	load load
	// txRate is the transactions per second pgbench achieved; changes the
	// rows inserted per second of the load (both the mean of the passes).
	txRate, changes      float64
	native, pgflo, files stats
}

func (r result) line() string {
	return fmt.Sprintf("%d tx/s × %d: achieved %.0f tx/s, %.0f changes/s; p50/p99/max ms: native %s, pg_flo_postgres %s, file %s",
		r.load.tps, r.load.rows, r.txRate, r.changes, r.native, r.pgflo, r.files)
}

func (s stats) String() string { return fmt.Sprintf("%.1f/%.1f/%.1f", s.p50, s.p99, s.max) }

// span is the rows one pass inserted into table: ids in (lo, hi].
type span struct {
	table  string
	lo, hi int64
}

// measure runs the load twice, into each pipeline's table, and waits each
// time until every row inserted is on its targets.
func (b *bench) measure(ctx context.Context, l load, seconds int) (result, error) {
	res := result{load: l}
	pg, pgTPS, err := b.pass(ctx, l, seconds, pgTable, nil)
	if err != nil {
		return res, err
	}
	lo, err := b.maxID(ctx, fileTable)
	if err != nil {
		return res, err
	}
	follow, stopFollow := b.file.start(lo)
	defer stopFollow()
	file, fileTPS, err := b.pass(ctx, l, seconds, fileTable, follow)
	if err != nil {
		return res, err
	}
	res.txRate = (pgTPS + fileTPS) / 2
	res.changes = float64(pg.hi-pg.lo+file.hi-file.lo) / 2 / float64(seconds)
	if res.native, err = b.targetStats(ctx, nativeDB, pg, file); err != nil {
		return res, err
	}
	if res.pgflo, err = b.targetStats(ctx, pgfloDB, pg); err != nil {
		return res, err
	}
	res.files = follow.stats()
	return res, nil
}

func (b *bench) maxID(ctx context.Context, table string) (int64, error) {
	var id int64
	err := benchkit.QueryRow(ctx, b.src.DSN(sourceDB), "SELECT coalesce(max(id), 0) FROM "+ident(table), &id)
	return id, err
}

// pass loads table and waits until its rows are on the native target and on
// the pipeline's: pgflo's target, or the file (follow).
func (b *bench) pass(ctx context.Context, l load, seconds int, table string, follow *following) (span, float64, error) {
	s := span{table: table}
	var err error
	if s.lo, err = b.maxID(ctx, table); err != nil {
		return s, 0, err
	}
	tps, err := b.runPgbench(ctx, l, seconds, table)
	if err != nil {
		return s, 0, err
	}
	if s.hi, err = b.maxID(ctx, table); err != nil {
		return s, 0, err
	}
	want := int(s.hi - s.lo)
	dbs := []string{nativeDB}
	if follow == nil {
		dbs = append(dbs, pgfloDB)
	}
	_, err = benchkit.Poll(ctx, time.Now(), 50*time.Millisecond, b.o.timeout, "every row of "+table+" on its targets", func() (bool, error) {
		if err := b.procs.Exited(func() string { return "" }); err != nil {
			return false, err
		}
		for _, db := range dbs {
			var n int
			err := benchkit.QueryRow(ctx, b.dst.DSN(db), fmt.Sprintf("SELECT count(*) FROM %s WHERE id > %d AND id <= %d", ident(table), s.lo, s.hi), &n)
			if err != nil || n < want {
				return false, err
			}
		}
		if follow == nil {
			return true, nil
		}
		return follow.count() >= want, follow.error()
	})
	return s, tps, err
}

var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+)`)

// runPgbench runs the load and returns the transactions per second it
// achieved. Commits are synchronous (fsync stays off): an asynchronous
// commit reaches the WAL senders only when the WAL writer flushes it, up to
// wal_writer_delay later, for native replication as for pgflo.
func (b *bench) runPgbench(ctx context.Context, l load, seconds int, table string) (float64, error) {
	scriptPath, err := b.workFile(table+".sql", fmt.Sprintf(script, ident(table)))
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, b.pgbench, "-n", "-f", scriptPath, "-D", fmt.Sprintf("rows=%d", l.rows),
		"-R", strconv.Itoa(l.tps), "-T", strconv.Itoa(seconds), "-c", "4", "-j", "2", b.src.DSN(sourceDB))
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=on")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// targetStats are the latencies of the rows of spans on the target db.
func (b *bench) targetStats(ctx context.Context, db string, spans ...span) (stats, error) {
	conn, err := pgx.Connect(ctx, b.dst.DSN(db))
	if err != nil {
		return stats{}, err
	}
	defer conn.Close(context.Background())
	var rows []string
	for _, s := range spans {
		rows = append(rows, fmt.Sprintf("SELECT (dst - src) * 1000 AS l FROM %s WHERE id > %d AND id <= %d", ident(s.table), s.lo, s.hi))
	}
	var s stats
	err = conn.QueryRow(ctx, `SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY l), percentile_disc(0.99) WITHIN GROUP (ORDER BY l), max(l), count(*)
FROM (`+strings.Join(rows, " UNION ALL ")+`) s`).Scan(&s.p50, &s.p99, &s.max, &s.n)
	if err != nil {
		return s, fmt.Errorf("latencies on %s: %w", db, err)
	}
	return s, nil
}

// fileFollower reads the file worker's output as it grows and timestamps
// each row's line as it is read.
type fileFollower struct {
	lines *benchkit.FileLines
	every time.Duration
}

func newFileFollower(path string, every time.Duration) *fileFollower {
	return &fileFollower{lines: benchkit.NewFileLines(path, 1<<20), every: every}
}

// following collects the latencies of rows with ids above lo.
type following struct {
	lo  int64
	mu  sync.Mutex
	ms  map[int64]float64
	err error
}

// start follows the file until stop is called.
func (f *fileFollower) start(lo int64) (*following, func()) {
	fw := &following{lo: lo, ms: map[int64]float64{}}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(f.every)
		defer tick.Stop()
		for {
			err := f.lines.Poll(fw.line(time.Now()))
			if err != nil {
				fw.fail(err)
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return fw, func() { close(done); <-stopped }
}

// line returns the handler of the lines read at now.
func (fw *following) line(now time.Time) func([]byte) {
	return func(l []byte) {
		if !bytes.Contains(l, []byte(`"`+fileTable+`"`)) {
			return
		}
		var ev struct {
			Op  string            `json:"op"`
			New map[string]string `json:"new"`
		}
		if err := json.Unmarshal(l, &ev); err != nil {
			fw.fail(fmt.Errorf("file output: %w: %s", err, benchkit.Clip(l, 200)))
			return
		}
		if ev.Op != "INSERT" {
			return
		}
		id, err1 := strconv.ParseInt(ev.New["id"], 10, 64)
		src, err2 := strconv.ParseFloat(ev.New["src"], 64)
		if err1 != nil || err2 != nil {
			fw.fail(fmt.Errorf("file output: unreadable row: %s", benchkit.Clip(l, 200)))
			return
		}
		if id <= fw.lo {
			return
		}
		fw.mu.Lock()
		if _, seen := fw.ms[id]; !seen {
			fw.ms[id] = (float64(now.UnixMicro())/1e6 - src) * 1000
		}
		fw.mu.Unlock()
	}
}

func (fw *following) fail(err error) {
	fw.mu.Lock()
	if fw.err == nil {
		fw.err = err
	}
	fw.mu.Unlock()
}

func (fw *following) error() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.err
}

func (fw *following) count() int {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return len(fw.ms)
}

func (fw *following) stats() stats {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	v := make([]float64, 0, len(fw.ms))
	for _, ms := range fw.ms {
		v = append(v, ms)
	}
	slices.Sort(v)
	return stats{p50: nearestRank(v, 0.5), p99: nearestRank(v, 0.99), max: nearestRank(v, 1), n: len(v)}
}

// nearestRank is the p-quantile of sorted v as percentile_disc computes it.
func nearestRank(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v))*p+0.999999999) - 1
	return v[max(0, min(i, len(v)-1))]
}
