// Command snapshot is pgflo's snapshot benchmark (make bench-snapshot): a
// table of N mixed-type rows (bigint PK, int, text, numeric, timestamptz,
// bool, jsonb, uuid, bytea, text[]) on a throwaway source PostgreSQL is copied
// by pgflo in copy_and_stream mode (replicator → JetStream → worker → file,
// three processes of the built binary), timed from the replicator's start
// until the worker's output file holds every row. Next to it, in the same run
// and over the same table, PostgreSQL's own COPY is timed, its output read by
// pgx and discarded:
//
//   - COPY big TO STDOUT: the whole table on one connection;
//   - the table split in 4 ctid page ranges, each read by
//     COPY (SELECT * FROM big WHERE ctid >= … AND ctid < …) TO STDOUT on its
//     own connection, the 4 concurrently: what pgflo's copy does with its
//     default 4 workers, minus everything after the read.
//
// The table printed gives seconds, rows/s and the ratio to the 4-range COPY,
// and the peak RSS of the replicator, the worker and the NATS server.
//
// Each of --runs runs measures pgflo against every NATS setup of --nats
// (default r1,stock: one `pgflo nats`, then one stock nats-server with its
// default configuration), each on a fresh source with its own anchors; the
// report starts with every run's ratio per setup, their minimum and median.
// --nats r3 or r3-sync runs pgflo against three `pgflo nats` servers in a
// cluster (stream and state bucket with 3 replicas; r3-sync with
// sync_interval: always).
//
//	go run ./bench/snapshot --bin ./pgflo [--runs 3] [--rows 1000000] [--nats r1,stock] [--out bench/results/snapshot.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

const (
	database  = "bench"
	table     = "big"
	group     = "snap"
	ranges    = 4 // ctid ranges of the parallel COPY anchor: pgflo's default max_copy_workers
	pollEvery = 50 * time.Millisecond
)

type options struct {
	bin     string
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
		"bench/results/snapshot.md", 15*time.Minute, "give up on pgflo when it takes longer than this")
	flag.IntVar(&o.rows, "rows", 1000000, "rows in the table to copy")
	flag.StringVar(&o.nats, "nats", benchkit.DefaultNATSModes, benchkit.NATSModeUsage)
	flag.IntVar(&o.runs, "runs", 3, "runs; each measures the anchors and pgflo against every --nats setup")
	benchkit.Main("bench/snapshot", "Times pgflo's copy_and_stream snapshot of a table of N mixed-type rows through JetStream into a file,\n"+
		"next to COPY ... TO STDOUT of the same table on 1 connection and in 4 ctid ranges on 4 connections.",
		func(ctx context.Context) error { return run(ctx, o) }, o.validate,
		common.Check)
}

func (o *options) validate() error {
	if o.rows < 1 {
		return fmt.Errorf("--rows must be at least 1, got %d", o.rows)
	}
	if o.runs < 1 {
		return fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	}
	var err error
	o.modes, err = benchkit.ParseNATSModes(o.nats)
	return err
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
	return runs.Publish("pgflo snapshot benchmark", benchkit.Thousands(o.rows)+" rows",
		"pgflo end to end × 4-range COPY", o.out)
}

// runOnce measures the anchors and pgflo against the NATS setup mode on a
// fresh source, and returns the run's report and pgflo's ratio to the
// 4-range COPY.
func runOnce(ctx context.Context, o options, mode string) (report string, ratio float64, err error) {
	work, pg, cleanup, err := benchkit.StartRun("pgflo-bench-snapshot-", o.keep)
	if err != nil {
		return "", 0, err
	}
	defer cleanup()

	src, err := prepareSource(ctx, pg, o)
	if err != nil {
		return "", 0, fmt.Errorf("%w (server log: %s)", err, pg.LogFile())
	}

	benchkit.Say("warm-up: COPY of the whole table, then in %d ctid ranges (untimed, so every reader finds the same caches)", ranges)
	if _, err := measureCopy(ctx, src, o.rows); err != nil {
		return "", 0, err
	}
	if _, err := measureRangeCopy(ctx, src, o.rows); err != nil {
		return "", 0, err
	}
	env := runEnv{load: loadAvg()}
	benchkit.Say("anchor 1/2: COPY %s TO STDOUT", table)
	one, err := measureCopy(ctx, src, o.rows)
	if err != nil {
		return "", 0, err
	}
	benchkit.Say("    %.3fs (%s of COPY text)", one.m.Seconds, mib(one.bytes))
	benchkit.Say("anchor 2/2: COPY in %d ctid ranges on %d connections concurrently", ranges, ranges)
	four, err := measureRangeCopy(ctx, src, o.rows)
	if err != nil {
		return "", 0, err
	}
	benchkit.Say("    %.3fs (%s of COPY text)", four.m.Seconds, mib(four.bytes))

	benchkit.Say("pgflo: nats, then the replicator in copy_and_stream (the clock starts), then the worker once the stream exists")
	res, err := measurePgflo(ctx, o, work, mode, src.dsn)
	if err != nil {
		return "", 0, err
	}
	env.loadAfter = loadAvg()

	report = formatReport(o, mode, src, env, one, four, res)
	return report, res.endToEnd.Rate(o.rows) / four.m.Rate(o.rows), nil
}

// runEnv is what the report says about the machine while it measured.
type runEnv struct {
	load, loadAfter string // /proc/loadavg before the anchors and after pgflo
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	var l1, l5, l15 string
	if _, err := fmt.Sscan(string(b), &l1, &l5, &l15); err != nil {
		return "unknown"
	}
	return l1 + " " + l5 + " " + l15
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
