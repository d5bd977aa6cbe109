package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// report formats every run and, over the runs, the minimum and median time of
// each partition count, with its rate and its speed-up over the anchor (the
// first count), each taken from the same statistic.
func report(o options, results []result) string {
	var s strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&s, "## Partitioned apply: %s single-row UPDATEs, target %v away each way\n\n", benchkit.Thousands(o.changes), o.delay)
	fmt.Fprintf(&s, "%s, %d cores (%s), %s, %d run(s), UPDATEs in transactions of %d, table of %s rows, NATS `--nats %s`.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), host, runtime.GOOS+"/"+runtime.GOARCH, len(results), o.tx, benchkit.Thousands(o.rows), o.nats)
	anchor := o.partitions[0]
	s.WriteString("| partitions | every run (s) | min (s) | median (s) | changes/s (median) | × " + fmt.Sprint(anchor) + " partition(s), min | median |\n")
	s.WriteString("|---|---|---|---|---|---|---|\n")
	anchorMin, anchorMed := stats(results, anchor)
	for _, n := range o.partitions {
		mn, med := stats(results, n)
		var runs []string
		for _, r := range results {
			runs = append(runs, fmt.Sprintf("%.2f", r.seconds[n]))
		}
		fmt.Fprintf(&s, "| %d | %s | %.2f | %.2f | %s | %.2f | %.2f |\n", n, strings.Join(runs, ", "), mn, med,
			benchkit.Thousands(int(float64(o.changes)/med)), anchorMin/mn, anchorMed/med)
	}
	s.WriteString("\n")
	s.WriteString(cpuReport(o, results))
	return s.String()
}

// cpuReport prints, per partition count, the CPU seconds each party spent per
// million changes (median over the runs) and how busy the machine was: the
// CPU of all of them over the cores × the elapsed time. Near 100 % the count
// was bound by the machine, and more workers cannot add throughput here.
func cpuReport(o options, results []result) string {
	var s strings.Builder
	perMillion := 1e6 / float64(o.changes)
	fmt.Fprintf(&s, "CPU seconds per million changes (median of the runs) and the machine's %d cores' busy share while applying:\n\n", runtime.NumCPU())
	s.WriteString("| partitions | workers | target PostgreSQL | NATS | proxy + poll | together | machine busy, every run |\n")
	s.WriteString("|---|---|---|---|---|---|---|\n")
	for _, n := range o.partitions {
		var workers, target, nats, proxy, total []float64
		var busy []string
		for _, r := range results {
			c := r.cpu[n]
			workers, target, nats, proxy, total = append(workers, c.workers), append(target, c.target), append(nats, c.nats), append(proxy, c.bench), append(total, c.total())
			busy = append(busy, fmt.Sprintf("%.0f %%", 100*c.total()/(r.seconds[n]*float64(runtime.NumCPU()))))
		}
		fmt.Fprintf(&s, "| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", n, benchkit.Median(workers)*perMillion, benchkit.Median(target)*perMillion,
			benchkit.Median(nats)*perMillion, benchkit.Median(proxy)*perMillion, benchkit.Median(total)*perMillion, strings.Join(busy, ", "))
	}
	s.WriteString("\n")
	return s.String()
}

// stats is the minimum and median seconds of partition count n over the runs.
func stats(results []result, n int) (minimum, med float64) {
	var xs []float64
	for _, r := range results {
		xs = append(xs, r.seconds[n])
	}
	return slices.Min(xs), benchkit.Median(xs)
}
