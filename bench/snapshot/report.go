package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

const (
	targetRatio = 0.25      // of the 4-range COPY read rate, end to end
	targetRSS   = 300 << 20 // bytes, per process
)

func formatReport(o options, mode string, src source, env runEnv, one, four copyResult, res pgfloResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rows of a mixed-type table (bigint PK, int, text, numeric, timestamptz, bool, jsonb, uuid, bytea, text[]; "+
		"heap %s in %s blocks, %s of COPY text), read whole by each reader. PostgreSQL %s, %d CPUs, %s/%s, %s; "+
		"load average %s before the anchors, %s after pgflo. NATS (`--nats %s`): %s.\n\n",
		benchkit.Thousands(o.rows), mib(src.tableBytes), benchkit.Thousands(int(src.blocks)), mib(one.bytes),
		src.pgVersion, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		env.load, env.loadAfter, mode, res.natsSetup)

	base := four.m
	fmt.Fprintf(&b, "| reader | seconds | rows/s | × 4-range COPY |\n|---|---:|---:|---:|\n")
	for _, m := range []benchkit.Measurement{one.m, four.m, res.endToEnd, res.complete} {
		if !m.OK {
			fmt.Fprintf(&b, "| %s | – | – | – |\n", m.Reader)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s | %.2f× |\n", m.Reader, m.Seconds, benchkit.Thousands(int(m.Rate(o.rows)+0.5)), m.Rate(o.rows)/base.Rate(o.rows))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Max RSS: replicator %s, worker %s, NATS %s. CPU (user+system): replicator %s, worker %s, NATS %s.\n\n",
		benchkit.MB(res.repRSS), benchkit.MB(res.workerRSS), benchkit.MB(res.natsRSS),
		cpu(res.repCPU), cpu(res.workerCPU), cpu(res.natsCPU))

	ratio := res.endToEnd.Rate(o.rows) / base.Rate(o.rows)
	fmt.Fprintf(&b, "target ≥ %.2f× 4-range COPY: pgflo end to end %.2f× — %s\n\n", targetRatio, ratio, verdict(ratio >= targetRatio))
	maxRSS := max(res.repRSS, res.workerRSS, res.natsRSS)
	known := res.repRSS > 0 && res.workerRSS > 0 && res.natsRSS > 0
	fmt.Fprintf(&b, "target max RSS < %d MB per process: largest %s — %s\n\n", targetRSS>>20, benchkit.MB(maxRSS), verdict(known && maxRSS < targetRSS))

	b.WriteString("Notes: the table is vacuumed (freeze), analyzed and checkpointed, autovacuum off, and nothing writes to it during the run; " +
		"both COPY anchors run once untimed as a warm-up first, so every reader finds the same caches. " +
		"The COPY anchors read text COPY through pgx (`PgConn().CopyTo`) into a writer that discards the output and only counts its bytes, " +
		"timed from the start of the COPY (connections opened before) until the last row arrived; the 4-range anchor splits the heap's block count " +
		"(pg_relation_size / block_size) into 4 equal `ctid >= '(a,0)' AND ctid < '(b,0)'` ranges, one connection each, started together and timed until the last ends. " +
		"pgflo runs with its defaults (max_copy_workers by cores, 2 to 4, max_copy_workers_per_table 4, copy_chunk_pages 1000, snapshot_packs keep, pack on; the worker expands the packs into one event per row, its default); ")
	fmt.Fprintf(&b, "its snapshot plan had %d chunks. It is timed from the start of the replicator process (NATS already running; the worker started as soon as the replicator created the stream) "+
		"until the worker's file held every row (counted by distinct id); its process startup, slot creation and snapshot export are included. "+
		"\"KV snapshot record complete\" is when the group's KV record (`%s`, key `snapshot`) first said `complete: true` (polled every 50 ms). "+
		"The output held %s lines (%s of JSON)", res.chunks, "pg_flo_state_"+group, benchkit.Thousands(res.lines), mib(res.outputBytes))
	if res.duplicates > 0 {
		fmt.Fprintf(&b, ", %s of them duplicate deliveries", benchkit.Thousands(res.duplicates))
	}
	b.WriteString(".")
	if !res.complete.OK && res.complete.Note != "" {
		fmt.Fprintf(&b, " KV record: %s.", res.complete.Note)
	}
	b.WriteString("\n")
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func cpu(s float64) string {
	if s < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f s", s)
}
