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
//	go run ./bench --bin ./pgflo [--updates 200000] [--tx 1000] [--rows 10000] [--out bench/results/stream.md]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
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
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "./pgflo", "path of the built pgflo binary")
	flag.IntVar(&o.updates, "updates", 200000, "number of single-row UPDATEs (changes) to replicate")
	flag.IntVar(&o.tx, "tx", 1000, "UPDATEs per source transaction")
	flag.IntVar(&o.rows, "rows", 10000, "rows in the table; the UPDATEs cycle over them")
	flag.StringVar(&o.out, "out", "", "also write the result table (markdown) to this file, e.g. bench/results/stream.md")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dirs (configs, logs, NATS store, output, PostgreSQL data dir)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on a reader that takes longer than this")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]\n\n"+
			"Times pgflo streaming N committed UPDATEs from PostgreSQL through JetStream into a file,\n"+
			"next to pg_recvlogical and pg_logical_slot_peek_binary_changes reading the same WAL.\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	switch {
	case o.updates < 1:
		return fmt.Errorf("--updates must be at least 1, got %d", o.updates)
	case o.tx < 1:
		return fmt.Errorf("--tx must be at least 1, got %d", o.tx)
	case o.rows < 1:
		return fmt.Errorf("--rows must be at least 1, got %d", o.rows)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %v", o.timeout)
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return fmt.Errorf("--bin %s: %w", o.bin, err)
	}
	st, err := os.Stat(bin)
	if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("--bin %s: not an executable file; build it first (make build, or go build -o pgflo .)", o.bin)
	}
	o.bin = bin
	return nil
}

func say(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

func warn(format string, args ...any) { fmt.Fprintf(os.Stderr, "warning: "+format+"\n", args...) }

// measurement is one reader's time for the workload.
type measurement struct {
	reader  string
	seconds float64
	ok      bool   // false: not measured
	note    string // why not, when !ok
}

func (m measurement) rate(n int) float64 { return float64(n) / m.seconds }

// env describes the run, for the report.
type env struct {
	pgVersion string
	recvBin   string
	writeTime time.Duration
}

func run(ctx context.Context, o options) (err error) {
	work, err := os.MkdirTemp("", "pgflo-bench-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer func() {
		if o.keep {
			say("kept work dir %s", work)
		} else if rmErr := os.RemoveAll(work); rmErr != nil {
			warn("remove work dir: %v", rmErr)
		}
	}()

	say("starting a throwaway PostgreSQL cluster (wal_level=logical, fsync off)")
	pg, err := testenv.StartPostgres()
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() {
		if o.keep {
			if stopErr := pg.StopServer(); stopErr != nil {
				warn("%v", stopErr)
			}
			say("kept PostgreSQL data dir %s (the next harness run removes it once it is a minute old)", filepath.Dir(pg.LogFile()))
		} else if stopErr := pg.Stop(); stopErr != nil {
			warn("%v", stopErr)
		}
	}()

	var e env
	dsn, err := prepareSource(ctx, pg, o, &e)
	if err != nil {
		return fmt.Errorf("%w (server log: %s)", err, pg.LogFile())
	}

	say("anchor 1/2: pg_logical_slot_peek_binary_changes (decoding alone)")
	peek, endLSN, lastLSN, err := measurePeek(ctx, dsn, o.updates, ceilDiv(o.updates, o.tx))
	if err != nil {
		return err
	}
	say("    %.3fs; the last UPDATE is at %s, its commit ends at %s", peek.seconds, lastLSN, endLSN)

	say("anchor 2/2: pg_recvlogical --plugin pgoutput --endpos %s", endLSN)
	if e.recvBin, err = findRecvlogical(ctx, dsn); err != nil {
		return err
	}
	recv, err := measureRecvlogical(ctx, o, work, e.recvBin, dsn, endLSN)
	if err != nil {
		return err
	}
	say("    %.3fs", recv.seconds)

	say("pgflo: nats, then the replicator (the clock starts), then the worker once the stream exists")
	res, err := measurePgflo(ctx, o, work, dsn, lastLSN)
	if err != nil {
		return err
	}

	report := formatReport(o, e, []measurement{peek, recv, res.endToEnd, res.replicator}, res)
	fmt.Print(report)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		say("wrote %s", o.out)
	}
	return nil
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

	say("source: table %s with %s rows, publication %s, slots %s, %s, %s", table, thousands(o.rows), publication, pgfloSlot, recvSlot, peekSlot)
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

	say("workload: %s single-row UPDATEs in transactions of %s (pgflo is not running)", thousands(o.updates), thousands(o.tx))
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
	say("    committed in %.2fs (%s changes/s)", e.writeTime.Seconds(), thousands(int(float64(o.updates)/e.writeTime.Seconds())))
	// A checkpoint now rather than in the middle of a measurement.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return dsn, nil
}

// measurePeek times decoding the workload with pgoutput through the SQL
// function, and returns the end LSN of the last commit (the position every
// reader must reach) and the LSN of the last UPDATE.
func measurePeek(ctx context.Context, dsn string, updates, txs int) (m measurement, endLSN, lastLSN string, err error) {
	m = measurement{reader: "pg_logical_slot_peek_binary_changes (pgoutput, decoding alone)"}
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
	m.seconds = time.Since(start).Seconds()
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
	m.ok = true
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
func measureRecvlogical(ctx context.Context, o options, work, bin, dsn, endLSN string) (measurement, error) {
	m := measurement{reader: "pg_recvlogical (pgoutput)"}
	p, err := startProc(work, "pg_recvlogical", bin,
		"-d", dsn, "--slot", recvSlot, "--start",
		"-o", "proto_version=1", "-o", "publication_names="+publication, "--plugin", "pgoutput",
		"-f", os.DevNull, "--endpos", endLSN, "--no-loop")
	if err != nil {
		return m, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.stop()
		return m, ctx.Err()
	case <-time.After(o.timeout):
		_ = p.stop()
		return m, fmt.Errorf("pg_recvlogical did not reach %s within %v\n%s", endLSN, o.timeout, p.describe())
	}
	m.seconds = time.Since(p.started).Seconds()
	if err := p.exitError(); err != nil {
		return m, fmt.Errorf("%w\n%s", err, p.describe())
	}
	m.ok = true
	return m, nil
}

// pgfloResult holds what the pgflo run measured.
type pgfloResult struct {
	endToEnd, replicator          measurement
	repRSS, workerRSS, natsRSS    int64 // bytes, 0 when unknown
	lines, duplicates, otherLines int
}

// measurePgflo runs `pgflo nats`, the replicator and the worker as separate
// processes, and times from the replicator's start until the worker's output
// file holds every change. On the side it notes when the group's JetStream
// stream holds the last change (lastLSN): the replicator's share of the time.
func measurePgflo(ctx context.Context, o options, work, dsn, lastLSN string) (res pgfloResult, err error) {
	res.endToEnd = measurement{reader: "pgflo replicator→JetStream→worker→file"}
	res.replicator = measurement{reader: "pgflo replicator→JetStream (stream holds all)"}
	var procs []*proc // stopped in reverse order
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			if stopErr := procs[i].stop(); stopErr != nil && err == nil {
				warn("%v\n%s", stopErr, procs[i].describe())
			}
		}
	}()
	// describeAll adds the end of every process log to a failure.
	describeAll := func(err error) error {
		var b strings.Builder
		b.WriteString(err.Error())
		for _, p := range procs {
			b.WriteString("\n")
			b.WriteString(p.describe())
		}
		return errors.New(b.String())
	}

	natsPort, err := testenv.FreePort()
	if err != nil {
		return res, err
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsProc, err := startProc(work, "nats", o.bin, "nats", "--port", strconv.Itoa(natsPort), "--store-dir", filepath.Join(work, "nats-store"))
	if err != nil {
		return res, err
	}
	procs = append(procs, natsProc)
	if err := waitTCP(natsProc, natsPort, 30*time.Second); err != nil {
		return res, err
	}
	watch, err := newStreamWatch(natsURL)
	if err != nil {
		return res, err
	}
	defer watch.close()

	output := filepath.Join(work, "out.jsonl")
	const common = "http:\n  enabled: false\nlogger:\n  level: WARN\n  format: logfmt\n"
	repCfg := filepath.Join(work, "rep.yaml")
	workerCfg := filepath.Join(work, "worker.yaml")
	if err := os.WriteFile(repCfg, []byte(fmt.Sprintf(`%sinput:
  pg_flo_replicator:
    dsn: %q
    group: %s
output:
  pg_flo_jetstream:
    url: %q
    group: %s
`, common, dsn, group, natsURL, group)), 0o600); err != nil {
		return res, err
	}
	if err := os.WriteFile(workerCfg, []byte(fmt.Sprintf(`%sinput:
  pg_flo_worker:
    url: %q
    group: %s
output:
  file:
    path: %q
    codec: lines
`, common, natsURL, group, output)), 0o600); err != nil {
		return res, err
	}

	rep, err := startProc(work, "replicator", o.bin, "run", repCfg)
	if err != nil {
		return res, err
	}
	procs = append(procs, rep)
	t0 := rep.started
	// The worker needs the group's stream, which the replicator's output
	// creates; started earlier it would only fail and retry with backoff.
	if err := watch.waitCreated(ctx, rep, 60*time.Second); err != nil {
		return res, describeAll(err)
	}
	worker, err := startProc(work, "worker", o.bin, "run", workerCfg)
	if err != nil {
		return res, err
	}
	procs = append(procs, worker)

	counter := newOutputCounter(output, table)
	deadline := t0.Add(o.timeout)
	nextProgress := t0.Add(5 * time.Second)
	for !res.endToEnd.ok || !res.replicator.ok {
		if err := counter.poll(); err != nil {
			return res, err
		}
		if !res.endToEnd.ok && counter.distinct() >= o.updates {
			res.endToEnd.seconds, res.endToEnd.ok = time.Since(t0).Seconds(), true
		}
		if !res.replicator.ok {
			holds, err := watch.holds(ctx, lastLSN)
			if err != nil {
				return res, describeAll(err)
			}
			if holds {
				res.replicator.seconds, res.replicator.ok = time.Since(t0).Seconds(), true
			}
		}
		if res.endToEnd.ok && res.replicator.ok {
			break
		}
		for _, p := range procs {
			if p.exited() {
				return res, describeAll(fmt.Errorf("%s exited during the run (%v); output so far: %s", p.name, p.err, counter.summary()))
			}
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		now := time.Now()
		if now.After(deadline) {
			return res, describeAll(fmt.Errorf("pgflo did not deliver all %d changes within %v; output so far: %s; the stream holds the last change: %v",
				o.updates, o.timeout, counter.summary(), res.replicator.ok))
		}
		if now.After(nextProgress) {
			say("    %.0fs: %s", now.Sub(t0).Seconds(), counter.summary())
			nextProgress = now.Add(5 * time.Second)
		}
		time.Sleep(pollEvery)
	}
	// A moment for stragglers (duplicates) before counting what arrived.
	time.Sleep(200 * time.Millisecond)
	if err := counter.poll(); err != nil {
		return res, err
	}
	res.lines, res.duplicates, res.otherLines = counter.lines, counter.duplicates(), counter.other+counter.bad
	say("    %.3fs end to end (the stream held every change after %.3fs); output: %s", res.endToEnd.seconds, res.replicator.seconds, counter.summary())
	if counter.bad > 0 {
		warn("the output has %d lines that are not change events (first: %s)", counter.bad, counter.badLine)
	}

	res.repRSS, _ = rep.maxRSS()
	res.workerRSS, _ = worker.maxRSS()
	res.natsRSS, _ = natsProc.maxRSS()
	return res, nil
}

// streamWatch looks at the group's JetStream stream from the outside.
type streamWatch struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	name    string
	stream  jetstream.Stream
	lastSeq uint64 // the last message looked at by holds
}

func newStreamWatch(url string) (*streamWatch, error) {
	nc, err := nats.Connect(url, nats.Name("pgflo-bench"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &streamWatch{nc: nc, js: js, name: jsproto.StreamName(group)}, nil
}

func (w *streamWatch) close() { w.nc.Close() }

// waitCreated waits until the stream exists (rep, the replicator, creates
// it), polling every 10ms.
func (w *streamWatch) waitCreated(ctx context.Context, rep *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := w.js.Stream(reqCtx, w.name)
		cancel()
		switch {
		case err == nil:
			w.stream = s
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("look up stream %s: %w", w.name, err)
		case rep.exited():
			return fmt.Errorf("replicator exited (%v) before creating stream %s", rep.err, w.name)
		case time.Now().After(deadline):
			return fmt.Errorf("the replicator did not create stream %s within %v", w.name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holds reports whether the stream's last message holds the change at lsn,
// the workload's last: the replicator publishes in WAL order on one
// connection, so the stream then holds every change.
func (w *streamWatch) holds(ctx context.Context, lsn string) (bool, error) {
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := w.stream.Info(reqCtx)
	if err != nil {
		return false, fmt.Errorf("stream %s info: %w", w.name, err)
	}
	seq := info.State.LastSeq
	if seq == 0 || seq == w.lastSeq {
		return false, nil
	}
	w.lastSeq = seq
	msg, err := w.stream.GetMsg(reqCtx, seq)
	if err != nil {
		return false, fmt.Errorf("stream %s message %d: %w", w.name, seq, err)
	}
	return bytes.Contains(msg.Data, []byte(`"lsn":"`+lsn+`"`)), nil
}

func formatReport(o options, e env, ms []measurement, res pgfloResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## pgflo stream benchmark\n\n")
	fmt.Fprintf(&b, "%s single-row UPDATEs in transactions of %s (table of %s rows), committed on the source while pgflo was stopped; "+
		"then the time until every change is read. PostgreSQL %s, %d CPUs, %s/%s, %s.\n\n",
		thousands(o.updates), thousands(o.tx), thousands(o.rows), e.pgVersion, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))

	var recv measurement
	for _, m := range ms {
		if strings.HasPrefix(m.reader, "pg_recvlogical") {
			recv = m
		}
	}
	fmt.Fprintf(&b, "| reader | seconds | changes/s | × pg_recvlogical |\n|---|---:|---:|---:|\n")
	for _, m := range ms {
		if !m.ok {
			fmt.Fprintf(&b, "| %s | – | – | – |\n", m.reader)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s | %.2f× |\n", m.reader, m.seconds, thousands(int(m.rate(o.updates)+0.5)), m.rate(o.updates)/recv.rate(o.updates))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Max RSS: replicator %s, worker %s (`pgflo nats` %s).\n\n", mb(res.repRSS), mb(res.workerRSS), mb(res.natsRSS))

	ratio := res.endToEnd.rate(o.updates) / recv.rate(o.updates)
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
		if !m.ok && m.note != "" {
			fmt.Fprintf(&b, " %s: %s.", m.reader, m.note)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func mb(bytes int64) string {
	if bytes <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MB", float64(bytes)/(1<<20))
}

// thousands formats n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
