// Command latency measures how long a change takes from the source's INSERT
// to its target under a steady load (pgbench at a fixed rate), for native
// logical replication, pgflo through JetStream into pg_flo_postgres and pgflo
// through JetStream into a file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/testenv"
)

type options struct {
	bin     string
	out     string
	keep    bool
	timeout time.Duration
	seconds int
	runs    int
	poll    time.Duration
	// workerFields are more fields of both pg_flo_workers (experiments).
	workerFields string
	nats         string
	modes        []string // --nats, parsed
}

// load is one steady workload: tps transactions per second of rows rows.
type load struct{ tps, rows int }

var loads = []load{{50, 1}, {500, 10}, {1000, 10}}

func main() {
	var o options
	common := benchkit.Flags{Bin: &o.bin, Out: &o.out, Keep: &o.keep, Timeout: &o.timeout}
	common.Register("bench/results/latency.md", 2*time.Minute, "give up when a load's rows have not all arrived this long after it ended")
	flag.IntVar(&o.seconds, "seconds", 20, "length of each load")
	flag.IntVar(&o.runs, "runs", 3, "measure every load this many times (the loads take turns) and print minimum and median")
	flag.DurationVar(&o.poll, "poll", time.Millisecond, "how often the file output is read; its latencies include up to this much")
	flag.StringVar(&o.workerFields, "worker-fields", "", "more fields of both pg_flo_workers, comma-separated (\"fetch_wait: 10ms\")")
	flag.StringVar(&o.nats, "nats", benchkit.DefaultNATSModes, benchkit.NATSModeUsage+"; every setup is measured with its own clusters, one after the other")
	benchkit.Main("bench/latency", "Per-row latency under a steady pgbench load (50 tx/s × 1 row, 500 and 1,000 tx/s × 10 rows):\n"+
		"native logical replication, pgflo via JetStream into pg_flo_postgres, and into a file, side by side.",
		func(ctx context.Context) error { return run(ctx, o) }, o.validate, common.Check)
}

func (o *options) validate() error {
	var err error
	if o.modes, err = benchkit.ParseNATSModes(o.nats); err != nil {
		return err
	}
	switch {
	case o.seconds < 1:
		return fmt.Errorf("--seconds must be at least 1, got %d", o.seconds)
	case o.runs < 1:
		return fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	case o.poll <= 0:
		return fmt.Errorf("--poll must be positive, got %v", o.poll)
	}
	return nil
}

func run(ctx context.Context, o options) error {
	var report strings.Builder
	for _, mode := range o.modes {
		part, err := runWith(ctx, o, mode)
		if err != nil {
			return fmt.Errorf("NATS %s: %w", mode, err)
		}
		report.WriteString(part)
	}
	fmt.Print(report.String())
	if o.out != "" {
		return benchkit.WriteReport(o.out, report.String())
	}
	return nil
}

// runWith measures every load o.runs times with pgflo on the NATS setup
// mode and returns the report.
func runWith(ctx context.Context, o options, mode string) (string, error) {
	b, cleanup, err := setup(ctx, o, mode)
	if err != nil {
		return "", err
	}
	defer cleanup()
	var results []result
	for r := 1; r <= o.runs; r++ {
		for _, l := range loads {
			benchkit.Say("NATS %s, run %d of %d: %d tx/s × %d rows for %ds", mode, r, o.runs, l.tps, l.rows, o.seconds)
			res, err := b.measure(ctx, l, o.seconds)
			if err != nil {
				return "", err
			}
			res.run = r
			fmt.Fprintln(os.Stderr, "    "+res.line())
			results = append(results, res)
		}
	}
	return format(o, b.nats, b.pgVer, results), nil
}

// bench is the running setup: two clusters, NATS and both pgflo pipelines.
type bench struct {
	o       options
	work    string
	src     *testenv.Postgres
	dst     *testenv.Postgres
	pgVer   string
	pgbench string
	procs   benchkit.Procs
	nats    *benchkit.NATS
	file    *fileFollower
}

const (
	sourceDB = "postgres"
	nativeDB = "native"
	pgfloDB  = "pgflo"
	// The pgflo groups: into pg_flo_postgres, into a file.
	pgGroup   = "latpg"
	fileGroup = "latfile"
)

// setup starts everything and waits until a short load went through every
// reader.
func setup(ctx context.Context, o options, mode string) (b *bench, cleanup func(), err error) {
	work, removeWork, err := benchkit.WorkDir("pgflo-bench-latency-", o.keep)
	if err != nil {
		return nil, nil, err
	}
	b = &bench{o: o, work: work}
	var stops []func()
	cleanup = func() {
		b.procs.StopAll(true)
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		removeWork()
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	benchkit.Say("starting the source and the target PostgreSQL clusters")
	src, stop, err := benchkit.StartPostgres(o.keep, "")
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, stop)
	dst, stop, err := benchkit.StartPostgres(o.keep, "")
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, stop)
	b.src, b.dst = src, dst
	if err := b.prepareSQL(ctx); err != nil {
		return nil, nil, err
	}
	if b.pgbench, err = findPgbench(ctx, src.DSN(sourceDB)); err != nil {
		return nil, nil, err
	}

	benchkit.Say("starting NATS (%s) and both pipelines", mode)
	nats, err := benchkit.StartNATSMode(ctx, work, o.bin, mode)
	if err != nil {
		return nil, nil, err
	}
	b.nats = nats
	b.procs = append(b.procs, nats.Procs...)
	if err := b.startPipelines(ctx, nats.URL); err != nil {
		return nil, nil, err
	}
	benchkit.Say("waiting for a first row on every target")
	if _, err := b.measure(ctx, load{tps: 20, rows: 1}, 2); err != nil {
		return nil, nil, fmt.Errorf("warm-up: %w", err)
	}
	return b, cleanup, nil
}

// findPgbench finds pgbench, preferring the server's major version.
func findPgbench(ctx context.Context, dsn string) (string, error) {
	var num int
	if err := benchkit.QueryRow(ctx, dsn, "SELECT current_setting('server_version_num')::int", &num); err == nil {
		if p := fmt.Sprintf("/usr/lib/postgresql/%d/bin/pgbench", num/10000); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgbench not found under /usr/lib/postgresql/<server version>/bin; install the PostgreSQL client programs")
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

func (b *bench) workFile(name, body string) (string, error) {
	path := filepath.Join(b.work, name)
	return path, os.WriteFile(path, []byte(body), 0o600)
}

// startPipelines starts both groups: replicator → JetStream, and a worker
// into pg_flo_postgres or a file, each with the documented minimal config
// (resources/replicator.yaml, worker_postgres.yaml, worker.yaml).
func (b *bench) startPipelines(ctx context.Context, natsURL string) error {
	const head = "http:\n  enabled: false\nlogger:\n  level: WARN\n  format: logfmt\n"
	for group, table := range map[string]string{pgGroup: pgTable, fileGroup: fileTable} {
		rep, err := b.workFile(group+"-replicator.yaml", head+benchkit.StreamReplicator(b.src.DSN(sourceDB), group, table, natsURL, ""))
		if err != nil {
			return err
		}
		var worker string
		if group == pgGroup {
			worker, err = b.workFile(group+"-worker.yaml", head+fmt.Sprintf(`input:
  pg_flo_worker:
    url: %q
    group: %s
    snapshot_packs: keep
%soutput:
  pg_flo_postgres:
    dsn: %q
    group: %s
`, natsURL, group, benchkit.IndentFields(b.o.workerFields), b.dst.DSN(pgfloDB), group))
		} else {
			var output string
			worker, output, err = benchkit.WriteFileWorker(b.work, natsURL, group)
			if err == nil && b.o.workerFields != "" {
				err = addWorkerFields(worker, group, b.o.workerFields)
			}
			b.file = newFileFollower(output, b.o.poll)
		}
		if err != nil {
			return err
		}
		watch, err := benchkit.NewStreamWatch(natsURL, group)
		if err != nil {
			return err
		}
		_, _, err = b.procs.StartPipeline(ctx, b.work, b.o.bin, rep, worker, watch)
		watch.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// addWorkerFields adds --worker-fields under the file worker's pg_flo_worker.
func addWorkerFields(path, group, fields string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	anchor := "    group: " + group + "\n"
	if !strings.Contains(string(data), anchor) {
		return fmt.Errorf("%s: no %q to add worker fields after", path, strings.TrimSpace(anchor))
	}
	return os.WriteFile(path, []byte(strings.Replace(string(data), anchor, anchor+benchkit.IndentFields(fields), 1)), 0o600)
}
