package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// report is what a run measured.
type report struct {
	o options
	// run is this run's number, counted from 1.
	run int
	// nats is the --nats setup the run's pipeline through JetStream used,
	// natsSetup its description.
	nats, natsSetup     string
	pgVersion           string
	fillTime, writeTime time.Duration
	copy1, copy4        benchkit.Measurement
	nativeSync          benchkit.Measurement
	nativeCatchUp       benchkit.Measurement
	nativeCPU           catchUpCPU
	nativeSyncCPU       syncCPU
	pipelines           []*pipeline
	checked             int
}

func (r *report) format() string {
	var b strings.Builder
	o := r.o
	fmt.Fprintf(&b, "## pgflo apply benchmark (pg_flo_postgres)")
	if o.runs > 1 {
		fmt.Fprintf(&b, ", run %d of %d", r.run, o.runs)
	}
	fmt.Fprintf(&b, ", `--nats %s`\n\n", r.nats)
	fmt.Fprintf(&b, "PostgreSQL %s (source and targets in two clusters on this machine, fsync off), %d CPUs, %s/%s, %s; load average %s at the end. NATS: %s.\n\n",
		r.pgVersion, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02 15:04 UTC"), loadAvg(), r.natsSetup)

	fmt.Fprintf(&b, "### (a) Initial sync: %s rows of a mixed-type table into an empty table\n\n", benchkit.Thousands(o.rows))
	fmt.Fprintf(&b, "| copier | seconds | rows/s | × native | × COPY pipe |\n|---|---:|---:|---:|---:|\n")
	rows := []benchkit.Measurement{r.copy1, r.copy4, r.nativeSync}
	for _, p := range r.pipelines {
		rows = append(rows, p.sync)
	}
	for _, m := range rows {
		fmt.Fprintf(&b, "| %s | %.2f | %s | %.2f× | %.2f× |\n", m.Reader, m.Seconds, benchkit.Thousands(int(m.Rate(o.rows)+0.5)),
			m.Rate(o.rows)/r.nativeSync.Rate(o.rows), m.Rate(o.rows)/r.copy1.Rate(o.rows))
	}
	cpus := runtime.NumCPU()
	fmt.Fprintf(&b, "\nCPU of the initial sync (user+system; each cluster whole, its COPY sessions, walsenders and sync worker included): native — %s", r.nativeSyncCPU)
	for _, p := range r.pipelines {
		fmt.Fprintf(&b, "; %s — %s", p.short, p.syncCPU)
	}
	fmt.Fprintf(&b, ".\nAll of it spread over the %d CPUs: native %s (its sync worker copies on one core), ", cpus, seconds(r.nativeSyncCPU.total()/float64(cpus)))
	for i, p := range r.pipelines {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", p.short, seconds(p.syncCPU.total()/float64(cpus)))
	}
	b.WriteString(".\n")

	fmt.Fprintf(&b, "\n### (b) Backlog catch-up: %s single-row UPDATEs in transactions of %s\n\n", benchkit.Thousands(o.updates), benchkit.Thousands(o.tx))
	fmt.Fprintf(&b, "Committed while pgflo was stopped and the subscription disabled (%.1fs on the source); each applier then started alone.\n\n", r.writeTime.Seconds())
	fmt.Fprintf(&b, "| applier | seconds | changes/s | × native |\n|---|---:|---:|---:|\n")
	rows = []benchkit.Measurement{r.nativeCatchUp}
	for _, p := range r.pipelines {
		rows = append(rows, p.catchUp)
	}
	for _, m := range rows {
		fmt.Fprintf(&b, "| %s | %.2f | %s | %.2f× |\n", m.Reader, m.Seconds, benchkit.Thousands(int(m.Rate(o.updates)+0.5)),
			m.Rate(o.updates)/r.nativeCatchUp.Rate(o.updates))
	}

	fmt.Fprintf(&b, "\nCPU of the catch-up (user+system): native — apply worker %s, walsender %s", seconds(r.nativeCPU.apply), seconds(r.nativeCPU.walsender))
	for _, p := range r.pipelines {
		fmt.Fprintf(&b, "; %s — %s", p.short, p.cpu)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "\nCPU floor of the catch-up (its CPU spread over the %d CPUs, or its busiest process if that took longer; no applier can finish sooner on this machine): native %s", cpus, seconds(r.nativeCPU.floor(cpus)))
	for _, p := range r.pipelines {
		fmt.Fprintf(&b, ", %s %s", p.short, seconds(p.cpu.floor(cpus)))
	}
	b.WriteString(".\n")

	b.WriteString("\nMax RSS:")
	for _, p := range r.pipelines {
		fmt.Fprintf(&b, " %s: replicator %s", p.short, benchkit.MB(p.rss["replicator"]))
		if p.viaNATS {
			fmt.Fprintf(&b, ", worker %s", benchkit.MB(p.rss["worker"]))
		}
		b.WriteString(";")
	}
	b.WriteString(" (the NATS server not counted).\n\n")

	for _, p := range r.pipelines {
		fmt.Fprintf(&b, "- (a) %s: %.2f× native initial sync — %s\n", p.short, p.sync.Rate(o.rows)/r.nativeSync.Rate(o.rows), verdict(p.sync.Seconds <= r.nativeSync.Seconds))
		fmt.Fprintf(&b, "- (b) %s: %.2f× native catch-up — %s\n", p.short, p.catchUp.Rate(o.updates)/r.nativeCatchUp.Rate(o.updates), verdict(p.catchUp.Seconds <= r.nativeCatchUp.Seconds))
	}
	largest := r.largestRSS()
	fmt.Fprintf(&b, "- RSS under 300 MB per process: largest %s — %s\n\n", benchkit.MB(largest), verdict(largest < 300<<20))

	batch := "the worker's default batch_size"
	if o.batchSize > 0 {
		batch = fmt.Sprintf("worker batch_size %d", o.batchSize)
	}
	if o.inputFields != "" {
		batch += "; pg_flo_replicator with " + o.inputFields
	}
	if o.outputFields != "" {
		batch += "; pg_flo_postgres with " + o.outputFields
	}
	if o.workerFields != "" {
		batch += "; pg_flo_worker with " + o.workerFields
	}
	fmt.Fprintf(&b, "Notes: the table (bigint PK, int, text, numeric, timestamptz, bool, jsonb, uuid, bytea, text[]) is filled, vacuumed (freeze) and checkpointed on the source "+
		"(%.1fs); every target starts with the same empty table (primary key included; autovacuum off on source and targets; both clusters are checkpointed before each copier of (a), so none pays for the WAL of the one before; after (a) every target is vacuumed and analyzed, and both clusters are checkpointed before each applier of (b), so (b) starts alike for all). The COPY pipes stream text COPY from the source into the target through pgx, "+
		"connections opened before the clock starts. The source and the targets are in two clusters, so a slot decodes the source's changes only (in one cluster, each slot also "+
		"decoded and skipped the WAL of every target's load and apply before the backlog: a second more for the applier measured first). The native subscription's slot is created first, "+
		"then CREATE SUBSCRIPTION is timed until pg_subscription_rel says the table is ready. pgflo runs with its defaults (%s; copy_and_stream with max_copy_workers' default, this machine's cores; "+
		"the replicator reading the table with binary COPY, pg_flo_postgres writing its rows with binary COPY over its 2 copy connections, COPY for runs of inserts and upserts otherwise, large statements split over its 2 apply connections) and is timed from the start of its replicator process (NATS already running, "+
		"the worker started as soon as the stream exists), so process start-up, slot creation and snapshot export are included; (a) ends when the target's progress "+
		"table counts every snapshot row applied (committed). For (b) each UPDATE changes another row (`id = k * 7919 %% rows + 1`), so no change merges with another; "+
		"the backlog ends with a marker UPDATE, and each applier is timed until the marker is on its target (every applier applies in commit order). "+
		"Afterwards %d targets were compared with the source (md5 of every row): equal.\n", r.fillTime.Seconds(), batch, r.checked)
	return b.String()
}

// largestRSS is the peak RSS of the run's largest pgflo process.
func (r *report) largestRSS() int64 {
	var largest int64
	for _, p := range r.pipelines {
		for _, v := range p.rss {
			largest = max(largest, v)
		}
	}
	return largest
}

// summary is the table of every run's ratios and their medians, which the
// targets are judged on.
func summary(runs []*report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Medians of %d runs, `--nats %s`\n\n", len(runs), runs[0].nats)
	b.WriteString("| ratio |")
	for _, r := range runs {
		fmt.Fprintf(&b, " run %d |", r.run)
	}
	b.WriteString(" minimum | median | target |\n|---|")
	for range runs {
		b.WriteString("---:|")
	}
	b.WriteString("---:|---:|---|\n")
	row := func(name string, ratio func(r *report) float64) {
		var all []float64
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range runs {
			v := ratio(r)
			all = append(all, v)
			fmt.Fprintf(&b, " %.2f× |", v)
		}
		m := benchkit.Median(all)
		fmt.Fprintf(&b, " %.2f× | %.2f× | ≥ 1.0× — %s |\n", slices.Min(all), m, verdict(m >= 1))
	}
	for i, p := range runs[0].pipelines {
		row("(a) "+p.short+" ÷ native initial sync", func(r *report) float64 {
			return r.nativeSync.Seconds / r.pipelines[i].sync.Seconds
		})
		row("(b) "+p.short+" ÷ native catch-up", func(r *report) float64 {
			return r.nativeCatchUp.Seconds / r.pipelines[i].catchUp.Seconds
		})
	}
	b.WriteString("\npgflo's CPU over PostgreSQL's (both clusters) in the initial sync, every run:")
	for i, p := range runs[0].pipelines {
		fmt.Fprintf(&b, " %s", p.short)
		for _, r := range runs {
			fmt.Fprintf(&b, " %.0f %%", 100*r.pipelines[i].syncCPU.pgfloShare())
		}
		b.WriteString(";")
	}
	b.WriteString("\n")
	var largest int64
	b.WriteString("\nLargest RSS of a pgflo process:")
	for _, r := range runs {
		fmt.Fprintf(&b, " %s", benchkit.MB(r.largestRSS()))
		largest = max(largest, r.largestRSS())
	}
	fmt.Fprintf(&b, " — under 300 MB in every run: %s.\n\n", verdict(largest < 300<<20))
	b.WriteString("Each run starts fresh clusters and measures every copier and applier once; a ratio is native's time over pgflo's in the same run. " +
		"The targets are judged on the medians: on two shared cores one run's times scatter by about ±10 % for native logical replication and pgflo alike.\n")
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
