// Command bench is pgflo's stream benchmark (make bench): N single-row
// UPDATEs, in transactions of --tx, are committed on a throwaway source
// PostgreSQL while pgflo is stopped; then pgflo (replicator → JetStream →
// worker → file, three processes of the built binary) is started and timed
// until every change is in the output. Next to it, in the same run and over
// the same WAL, PostgreSQL's own readers are timed:
//
//   - pg_logical_slot_peek_binary_changes with pgoutput: logical decoding alone;
//   - pg_recvlogical with pgoutput: decoding plus the replication protocol,
//     the ceiling for any client that streams from a slot.
//
// Each reader has its own logical slot, created before the workload, so each
// decodes exactly the workload. The table printed gives seconds, changes/s and
// the ratio to pg_recvlogical, and the peak RSS of the replicator and worker.
//
// Each of --runs runs measures pgflo against every NATS setup of --nats
// (default r1,stock: one `pgflo nats`, then one stock nats-server with its
// default configuration), each on a fresh source with its own anchors; the
// report ends with every run's ratio per setup, their minimum and median.
// --nats r3 or r3-sync runs pgflo against three `pgflo nats` servers in a
// cluster (stream with 3 replicas; r3-sync with sync_interval: always).
//
//	go run ./bench --bin ./pgflo [--runs 3] [--updates 200000] [--tx 1000] [--rows 10000] [--nats r1,stock] [--out bench/results/stream.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/testenv"
)

const (
	database    = "bench"
	table       = "t"
	group       = "bench"
	publication = "pg_flo_bench_publication" // pg_flo's name for group "bench"
	pgfloSlot   = publication                // pg_flo names the slot like the publication
	recvSlot    = "anchor_recv"
	peekSlot    = "anchor_peek"
	pollEvery   = 50 * time.Millisecond
)

type options struct {
	bin     string
	updates int
	tx      int
	rows    int
	out     string
	keep    bool
	timeout time.Duration
	nats    string
	runs    int
	modes   []string // --nats, parsed
}

func main() {
	var o options
	common := benchkit.Flags{Bin: &o.bin, Out: &o.out, Keep: &o.keep, Timeout: &o.timeout}
	common.Register(
		"bench/results/stream.md", 10*time.Minute, "give up on a reader that takes longer than this")
	flag.IntVar(&o.updates, "updates", 200000, "number of single-row UPDATEs (changes) to replicate")
	flag.IntVar(&o.tx, "tx", 1000, "UPDATEs per source transaction")
	flag.IntVar(&o.rows, "rows", 10000, "rows in the table; the UPDATEs cycle over them")
	flag.StringVar(&o.nats, "nats", benchkit.DefaultNATSModes, benchkit.NATSModeUsage)
	flag.IntVar(&o.runs, "runs", 3, "runs; each measures the anchors and pgflo against every --nats setup")
	benchkit.Main("bench", "Times pgflo streaming N committed UPDATEs from PostgreSQL through JetStream into a file,\n"+
		"next to pg_recvlogical and pg_logical_slot_peek_binary_changes reading the same WAL.",
		func(ctx context.Context) error { return run(ctx, o) }, o.validate,
		common.Check)
}

func (o *options) validate() error {
	switch {
	case o.updates < 1:
		return fmt.Errorf("--updates must be at least 1, got %d", o.updates)
	case o.tx < 1:
		return fmt.Errorf("--tx must be at least 1, got %d", o.tx)
	case o.rows < 1:
		return fmt.Errorf("--rows must be at least 1, got %d", o.rows)
	case o.runs < 1:
		return fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	}
	var err error
	o.modes, err = benchkit.ParseNATSModes(o.nats)
	return err
}

// env describes the run, for the report.
type env struct {
	pgVersion string
	recvBin   string
	writeTime time.Duration
}

// run measures every run against every NATS setup and prints each run's
// report after the summary of every run's ratio.
func run(ctx context.Context, o options) error {
	runs, err := benchkit.MeasureNATSRuns(ctx, o.runs, o.modes, func(ctx context.Context, mode string) (string, float64, error) {
		return runOnce(ctx, o, mode)
	})
	if err != nil {
		return err
	}
	return runs.Publish("pgflo stream benchmark",
		fmt.Sprintf("%s UPDATEs in transactions of %s", benchkit.Thousands(o.updates), benchkit.Thousands(o.tx)),
		"pgflo end to end × pg_recvlogical", o.out)
}

// runOnce measures the anchors and pgflo against the NATS setup mode on a
// fresh source, and returns the run's report and pgflo's ratio to
// pg_recvlogical.
func runOnce(ctx context.Context, o options, mode string) (report string, ratio float64, err error) {
	work, pg, cleanup, err := benchkit.StartRun("pgflo-bench-", o.keep)
	if err != nil {
		return "", 0, err
	}
	defer cleanup()

	var e env
	dsn, err := prepareSource(ctx, pg, o, &e)
	if err != nil {
		return "", 0, fmt.Errorf("%w (server log: %s)", err, pg.LogFile())
	}

	benchkit.Say("anchor 1/2: pg_logical_slot_peek_binary_changes (decoding alone)")
	peek, endLSN, lastLSN, err := measurePeek(ctx, dsn, o.updates, ceilDiv(o.updates, o.tx))
	if err != nil {
		return "", 0, err
	}
	benchkit.Say("    %.3fs; the last UPDATE is at %s, its commit ends at %s", peek.Seconds, lastLSN, endLSN)

	benchkit.Say("anchor 2/2: pg_recvlogical --plugin pgoutput --endpos %s", endLSN)
	if e.recvBin, err = findRecvlogical(ctx, dsn); err != nil {
		return "", 0, err
	}
	recv, err := measureRecvlogical(ctx, o, work, e.recvBin, dsn, endLSN)
	if err != nil {
		return "", 0, err
	}
	benchkit.Say("    %.3fs", recv.Seconds)

	benchkit.Say("pgflo: nats, then the replicator (the clock starts), then the worker once the stream exists")
	res, err := measurePgflo(ctx, o, work, mode, dsn, lastLSN)
	if err != nil {
		return "", 0, err
	}

	report = formatReport(o, e, mode, []benchkit.Measurement{peek, recv, res.endToEnd, res.replicator}, res)
	return report, res.endToEnd.Rate(o.updates) / recv.Rate(o.updates), nil
}

// prepareSource creates the bench database and table, the publication and
// the three slots, then commits the workload, and returns the database's DSN.
func prepareSource(ctx context.Context, pg *testenv.Postgres, o options, e *env) (string, error) {
	admin, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+database); err != nil {
		return "", fmt.Errorf("create database %s: %w", database, err)
	}
	dsn := pg.DSN(database)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("connect to database %s: %w", database, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&e.pgVersion); err != nil {
		return "", fmt.Errorf("read server version: %w", err)
	}

	benchkit.Say("source: table %s with %s rows, publication %s, slots %s, %s, %s", table, benchkit.Thousands(o.rows), publication, pgfloSlot, recvSlot, peekSlot)
	steps := []struct{ what, sql string }{
		{"create table", "CREATE TABLE " + table + " (id bigint PRIMARY KEY, n int NOT NULL, s text)"},
		// Autovacuum would write WAL in the middle of the measurements that
		// every reader then has to skip; keep the WAL to the workload.
		{"disable autovacuum", "ALTER TABLE " + table + " SET (autovacuum_enabled = false)"},
		{"fill table", fmt.Sprintf("INSERT INTO %s SELECT g, 0, md5(g::text) FROM generate_series(1, %d) g", table, o.rows)},
		{"analyze", "ANALYZE " + table},
		{"create publication", "CREATE PUBLICATION " + publication + " FOR TABLE " + table},
		{"create slot " + pgfloSlot, "SELECT pg_create_logical_replication_slot('" + pgfloSlot + "', 'pgoutput')"},
		{"create slot " + recvSlot, "SELECT pg_create_logical_replication_slot('" + recvSlot + "', 'pgoutput')"},
		{"create slot " + peekSlot, "SELECT pg_create_logical_replication_slot('" + peekSlot + "', 'pgoutput')"},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql); err != nil {
			return "", fmt.Errorf("%s: %w", s.what, err)
		}
	}

	benchkit.Say("workload: %s single-row UPDATEs in transactions of %s (pgflo is not running)", benchkit.Thousands(o.updates), benchkit.Thousands(o.tx))
	start := time.Now()
	for first := 0; first < o.updates; first += o.tx {
		last := min(first+o.tx, o.updates) - 1
		// One transaction; one UPDATE statement, changing one row, per change.
		sql := fmt.Sprintf("DO $$BEGIN FOR k IN %d..%d LOOP UPDATE %s SET n = n + 1 WHERE id = k %% %d + 1; END LOOP; END$$",
			first, last, table, o.rows)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return "", fmt.Errorf("workload transaction %d: %w", first/o.tx+1, err)
		}
	}
	e.writeTime = time.Since(start)
	var sum int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(sum(n), 0) FROM "+table).Scan(&sum); err != nil {
		return "", fmt.Errorf("check workload: %w", err)
	}
	if sum != int64(o.updates) {
		return "", fmt.Errorf("check workload: the table holds %d updates, want %d", sum, o.updates)
	}
	benchkit.Say("    committed in %.2fs (%s changes/s)", e.writeTime.Seconds(), benchkit.Thousands(int(float64(o.updates)/e.writeTime.Seconds())))
	// A checkpoint now rather than in the middle of a measurement.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return dsn, nil
}

// measurePeek times decoding the workload with pgoutput through the SQL
// function, and returns the end LSN of the last commit (the position every
// reader must reach) and the LSN of the last UPDATE.
func measurePeek(ctx context.Context, dsn string, updates, txs int) (m benchkit.Measurement, endLSN, lastLSN string, err error) {
	m = benchkit.Measurement{Reader: "pg_logical_slot_peek_binary_changes (pgoutput, decoding alone)"}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return m, "", "", fmt.Errorf("peek: connect: %w", err)
	}
	defer conn.Close(context.Background())
	peek := "pg_logical_slot_peek_binary_changes('" + peekSlot + "', NULL, NULL, 'proto_version', '1', 'publication_names', '" + publication + "')"
	var count int64
	var end *string
	start := time.Now()
	err = conn.QueryRow(ctx, "SELECT count(*), max(lsn)::text FROM "+peek).Scan(&count, &end)
	m.Seconds = time.Since(start).Seconds()
	if err != nil {
		return m, "", "", fmt.Errorf("peek: %w", err)
	}
	// Every transaction decodes to BEGIN, its UPDATEs and COMMIT (plus a
	// RELATION message now and then).
	if want := int64(updates) + 2*int64(txs); count < want || end == nil {
		return m, "", "", fmt.Errorf("peek: decoded %d messages, want at least %d (%d updates in %d transactions)", count, want, updates, txs)
	}
	// Untimed: the UPDATE messages ('U') alone, to check and to find the last.
	var nUpdates int64
	var last *string
	if err := conn.QueryRow(ctx, "SELECT count(*), max(lsn)::text FROM "+peek+" WHERE get_byte(data, 0) = 85").Scan(&nUpdates, &last); err != nil {
		return m, "", "", fmt.Errorf("peek updates: %w", err)
	}
	if nUpdates != int64(updates) || last == nil {
		return m, "", "", fmt.Errorf("peek: decoded %d UPDATE messages, want %d", nUpdates, updates)
	}
	m.OK = true
	return m, *end, *last, nil
}

// findRecvlogical finds pg_recvlogical, preferring the server's major version.
func findRecvlogical(ctx context.Context, dsn string) (string, error) {
	var candidates []string
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		var num int
		if conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num) == nil {
			candidates = append(candidates, fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_recvlogical", num/10000))
		}
		conn.Close(context.Background())
	}
	if p, err := exec.LookPath("pg_recvlogical"); err == nil {
		candidates = append(candidates, p)
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_recvlogical")
	sort.Slice(installed, func(i, j int) bool { return dirVersion(installed[i]) > dirVersion(installed[j]) })
	candidates = append(candidates, installed...)
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", errors.New("pg_recvlogical not found on PATH or under /usr/lib/postgresql/*/bin; install the PostgreSQL client programs (e.g. apt-get install -y postgresql-client)")
}

func dirVersion(path string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(path))), 64)
	return v
}

// measureRecvlogical times pg_recvlogical streaming the workload with pgoutput
// from its slot to /dev/null until it exits at endLSN.
func measureRecvlogical(ctx context.Context, o options, work, bin, dsn, endLSN string) (benchkit.Measurement, error) {
	m := benchkit.Measurement{Reader: "pg_recvlogical (pgoutput)"}
	p, err := benchkit.StartProc(work, "pg_recvlogical", bin,
		"-d", dsn, "--slot", recvSlot, "--start",
		"-o", "proto_version=1", "-o", "publication_names="+publication, "--plugin", "pgoutput",
		"-f", os.DevNull, "--endpos", endLSN, "--no-loop")
	if err != nil {
		return m, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop()
		return m, ctx.Err()
	case <-time.After(o.timeout):
		_ = p.Stop()
		return m, fmt.Errorf("pg_recvlogical did not reach %s within %v\n%s", endLSN, o.timeout, p.Describe())
	}
	m.Seconds = time.Since(p.Started).Seconds()
	if err := p.ExitError(); err != nil {
		return m, fmt.Errorf("%w\n%s", err, p.Describe())
	}
	m.OK = true
	return m, nil
}

// pgfloResult holds what the pgflo run measured.
type pgfloResult struct {
	endToEnd, replicator          benchkit.Measurement
	repRSS, workerRSS, natsRSS    int64 // bytes, 0 when unknown (natsRSS: the largest server's)
	lines, duplicates, otherLines int
	natsSetup                     string // the NATS pgflo ran against
}

// measurePgflo runs `pgflo nats`, the replicator and the worker as separate
// processes, and times from the replicator's start until the worker's output
// file holds every change. On the side it notes when the group's JetStream
// stream holds the last change (lastLSN): the replicator's share of the time.
func measurePgflo(ctx context.Context, o options, work, mode, dsn, lastLSN string) (res pgfloResult, err error) {
	res.endToEnd = benchkit.Measurement{Reader: "pgflo replicator→JetStream→worker→file"}
	res.replicator = benchkit.Measurement{Reader: "pgflo replicator→JetStream (stream holds all)"}
	var procs benchkit.Procs // stopped in reverse order
	defer func() { procs.StopAll(err == nil) }()

	natsSetup, watch, err := procs.StartNATSMode(ctx, work, o.bin, mode, group)
	if err != nil {
		return res, err
	}
	defer watch.Close()
	natsURL := natsSetup.URL
	res.natsSetup = natsSetup.Describe()

	const common = "http:\n  enabled: false\nlogger:\n  level: WARN\n  format: logfmt\n"
	repCfg := filepath.Join(work, "rep.yaml")
	if err := os.WriteFile(repCfg, []byte(fmt.Sprintf(`%sinput:
  pg_flo_replicator:
    dsn: %q
    group: %s
output:
  pg_flo_jetstream:
    url: %q
    group: %s
%s`, common, dsn, group, natsURL, group, natsSetup.ReplicaFields("    ", "stream_replicas"))), 0o600); err != nil {
		return res, err
	}
	workerCfg, output, err := benchkit.WriteFileWorker(work, natsURL, group)
	if err != nil {
		return res, err
	}

	rep, worker, err := procs.StartPipeline(ctx, work, o.bin, repCfg, workerCfg, watch)
	if err != nil {
		return res, err
	}
	t0 := rep.Started

	counter := newOutputCounter(output, table)
	err = procs.Wait(ctx, t0, o.timeout, pollEvery, fmt.Sprintf("deliver all %d changes", o.updates), func() (bool, error) {
		if err := counter.poll(); err != nil {
			return false, err
		}
		if !res.endToEnd.OK && counter.distinct() >= o.updates {
			res.endToEnd.Seconds, res.endToEnd.OK = time.Since(t0).Seconds(), true
		}
		if !res.replicator.OK {
			holds, err := watch.Holds(ctx, lastLSN)
			if err != nil {
				return false, procs.Describe(err)
			}
			if holds {
				res.replicator.Seconds, res.replicator.OK = time.Since(t0).Seconds(), true
			}
		}
		return res.endToEnd.OK && res.replicator.OK, nil
	}, func() string {
		return fmt.Sprintf("%s; the stream holds the last change: %v", counter.summary(), res.replicator.OK)
	})
	if err != nil {
		return res, err
	}
	// A moment for stragglers (duplicates) before counting what arrived.
	time.Sleep(200 * time.Millisecond)
	if err := counter.poll(); err != nil {
		return res, err
	}
	res.lines, res.duplicates, res.otherLines = counter.lines, counter.duplicates(), counter.other+counter.bad
	benchkit.Say("    %.3fs end to end (the stream held every change after %.3fs); output: %s", res.endToEnd.Seconds, res.replicator.Seconds, counter.summary())
	if counter.bad > 0 {
		benchkit.Warn("the output has %d lines that are not change events (first: %s)", counter.bad, counter.badLine)
	}

	res.repRSS, _ = rep.MaxRSS()
	res.workerRSS, _ = worker.MaxRSS()
	res.natsRSS = natsSetup.MaxRSS()
	return res, nil
}

func formatReport(o options, e env, mode string, ms []benchkit.Measurement, res pgfloResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s single-row UPDATEs in transactions of %s (table of %s rows), committed on the source while pgflo was stopped; "+
		"then the time until every change is read. PostgreSQL %s, %d CPUs, %s/%s, %s. NATS (`--nats %s`): %s.\n\n",
		benchkit.Thousands(o.updates), benchkit.Thousands(o.tx), benchkit.Thousands(o.rows), e.pgVersion, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), mode, res.natsSetup)

	var recv benchkit.Measurement
	for _, m := range ms {
		if strings.HasPrefix(m.Reader, "pg_recvlogical") {
			recv = m
		}
	}
	fmt.Fprintf(&b, "| reader | seconds | changes/s | × pg_recvlogical |\n|---|---:|---:|---:|\n")
	for _, m := range ms {
		if !m.OK {
			fmt.Fprintf(&b, "| %s | – | – | – |\n", m.Reader)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s | %.2f× |\n", m.Reader, m.Seconds, benchkit.Thousands(int(m.Rate(o.updates)+0.5)), m.Rate(o.updates)/recv.Rate(o.updates))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Max RSS: replicator %s, worker %s (NATS server %s).\n\n", benchkit.MB(res.repRSS), benchkit.MB(res.workerRSS), benchkit.MB(res.natsRSS))

	ratio := res.endToEnd.Rate(o.updates) / recv.Rate(o.updates)
	verdict := "met"
	if ratio < 0.5 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "target ≥ 0.5× pg_recvlogical: pgflo end to end %.2f× — %s\n\n", ratio, verdict)

	b.WriteString("Notes: each reader has its own pgoutput slot created before the workload, so each reads exactly the same WAL. " +
		"pg_recvlogical writes to /dev/null and is timed from its start until it exits at the last commit (`--endpos`). " +
		"pgflo is timed from the start of the replicator process (NATS already running; the worker started as soon as the replicator created the stream) until the worker's file holds " +
		"every change (counted by distinct LSN); its process startup is included, as pg_recvlogical's is. " +
		"\"stream holds all\" is when the group's JetStream stream first held the last change (polled every 50 ms), the replicator's share of the time.")
	if res.duplicates > 0 || res.otherLines > 0 {
		fmt.Fprintf(&b, " The output held %d lines: %d duplicate deliveries, %d other lines.", res.lines, res.duplicates, res.otherLines)
	}
	for _, m := range ms {
		if !m.OK && m.Note != "" {
			fmt.Fprintf(&b, " %s: %s.", m.Reader, m.Note)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
