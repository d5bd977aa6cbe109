package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// Targets of pgflo → pg_flo_postgres (issue 21): at 50 tx/s p50 ≤ 5 ms and
// p99 ≤ 20 ms; at 10,000 changes/s p99 ≤ 30 ms.
const (
	quietP50, quietP99 = 5.0, 20.0
	busyP99            = 30.0
)

func format(o options, nats *benchkit.NATS, pgVer string, results []result) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Latency under a steady load, `--nats %s`\n\n", nats.Mode)
	fmt.Fprintf(&s, "%s, PostgreSQL %s, %d CPUs; every load %d s, %d runs; `go run ./bench/latency --bin ./pgflo --nats %s`; NATS: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), pgVer, runtime.NumCPU(), o.seconds, o.runs, nats.Mode, nats.Describe())
	s.WriteString("Per row, the target's `clock_timestamp()` as it writes the row minus the source's at its INSERT (file: the time the\n" +
		"line was read, polled every " + o.poll.String() + "). Each load runs twice, into the table of one pgflo pipeline and then\n" +
		"into the other's (replicator → NATS → worker, the documented configs), so one pipeline works at a time;\n" +
		"native logical replication follows both tables and counts both. The pgbench transactions commit synchronously;\n" +
		"the rates are the means of the two passes.\n\n")
	s.WriteString("| run | load | achieved tx/s | changes/s | native p50 / p99 / max ms | pgflo → `pg_flo_postgres` | pgflo → file |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&s, "| %d | %d tx/s × %d rows | %.0f | %.0f | %s | %s | %s |\n",
			r.run, r.load.tps, r.load.rows, r.txRate, r.changes, r.native, r.pgflo, r.files)
	}
	s.WriteString("\nMinimum and median over the runs (max: the largest of any run):\n\n")
	s.WriteString("| load | changes/s (median) | reader | p50 min, median | p99 min, median | max | target |\n|---|---|---|---|---|---|---|\n")
	for _, l := range loads {
		var of []result
		for _, r := range results {
			if r.load == l {
				of = append(of, r)
			}
		}
		changes := benchkit.Median(pick(of, func(r result) float64 { return r.changes }))
		for _, reader := range []struct {
			name string
			get  func(result) stats
		}{
			{"native", func(r result) stats { return r.native }},
			{"pgflo → `pg_flo_postgres`", func(r result) stats { return r.pgflo }},
			{"pgflo → file", func(r result) stats { return r.files }},
		} {
			p50 := pick(of, func(r result) float64 { return reader.get(r).p50 })
			p99 := pick(of, func(r result) float64 { return reader.get(r).p99 })
			maxes := pick(of, func(r result) float64 { return reader.get(r).max })
			target := ""
			if reader.name != "native" {
				target = verdict(l, benchkit.Median(p50), benchkit.Median(p99))
			}
			fmt.Fprintf(&s, "| %d tx/s × %d | %.0f | %s | %.1f, %.1f | %.1f, %.1f | %.1f | %s |\n",
				l.tps, l.rows, changes, reader.name, slices.Min(p50), benchkit.Median(p50), slices.Min(p99), benchkit.Median(p99), slices.Max(maxes), target)
		}
	}
	return s.String()
}

// verdict judges medians against the targets of the load.
func verdict(l load, p50, p99 float64) string {
	switch {
	case l.tps*l.rows <= 50:
		return met(p50 <= quietP50 && p99 <= quietP99, fmt.Sprintf("p50 ≤ %.0f, p99 ≤ %.0f", quietP50, quietP99))
	case l.tps*l.rows >= 10000:
		return met(p99 <= busyP99, fmt.Sprintf("p99 ≤ %.0f", busyP99))
	}
	return ""
}

func met(ok bool, target string) string {
	if ok {
		return target + ": met"
	}
	return target + ": not met"
}

func pick(rs []result, f func(result) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}
