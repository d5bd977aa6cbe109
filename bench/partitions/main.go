// Command partitions measures how a group's apply rate grows with its
// partitions and workers when every worker is bound by the round trip to the
// target (the common cross-zone case): a TCP proxy adds --delay to each
// direction between the workers and the target PostgreSQL.
//
// Each run fills a source table and one target per partition count with the
// same rows (plain SQL, no replication), starts one replicator per count
// (mode stream, `partitions: N` on pg_flo_jetstream, each its own group) and
// commits a backlog of single-row UPDATEs, which the replicators publish to
// JetStream and then stop. Then, one count after the other, N workers
// (`partition: 0…N-1`) with pg_flo_postgres apply the backlog through the
// proxy; a count is timed from the workers' start until the target's sum of
// the updated counter equals the source's. Every target is compared with the
// source (md5 of all rows) at the end. The anchor is one partition, measured in
// the same run: the report prints each count's rate and its ratio to it.
//
// --nats chooses the NATS (one `pgflo nats` by default; stock: a stock
// nats-server with its default configuration).
//
//	go run ./bench/partitions --bin ./pgflo [--nats r1|stock|r3]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/testenv"
)

const (
	sourceDB  = "bench"
	table     = "big"
	pollEvery = 100 * time.Millisecond
)

type options struct {
	bin        string
	rows       int
	changes    int
	tx         int
	partitions []int
	delay      time.Duration
	runs       int
	nats       string
	out        string
	keep       bool
	timeout    time.Duration
	// workerFields are more fields of every pg_flo_worker and
	// outputFields of every pg_flo_postgres, for trying options.
	workerFields, outputFields string
}

func main() {
	var o options
	var counts string
	common := benchkit.Flags{Bin: &o.bin, Out: &o.out, Keep: &o.keep, Timeout: &o.timeout}
	common.Register("bench/results/partitions.md", 15*time.Minute, "give up on a partition count that takes longer than this")
	flag.IntVar(&o.rows, "rows", 200000, "rows in the table (each UPDATE of the backlog changes another row while there are rows)")
	flag.IntVar(&o.changes, "changes", 200000, "single-row UPDATEs in the backlog")
	flag.IntVar(&o.tx, "tx", 100, "UPDATEs per source transaction")
	flag.StringVar(&counts, "partitions", "1,2,4,8", "partition counts to measure, comma-separated; the first is the anchor of the ratios")
	flag.DurationVar(&o.delay, "delay", 2*time.Millisecond, "delay added to each direction between the workers and the target")
	flag.IntVar(&o.runs, "runs", 3, "measure this many times, each in fresh clusters, and print minimum and median")
	flag.StringVar(&o.nats, "nats", benchkit.NATSR1, "the NATS the workers apply from, one of the setups: "+benchkit.NATSModeUsage)
	flag.StringVar(&o.workerFields, "worker-fields", "", "more fields of every pg_flo_worker, comma-separated (\"batch_size: 2000\")")
	flag.StringVar(&o.outputFields, "output-fields", "", "more fields of every pg_flo_postgres, comma-separated (\"apply_connections: 2\")")
	benchkit.Main("bench/partitions", "Times the apply of a backlog of single-row UPDATEs by 1, 2, 4 and 8 partitions and workers, each worker\n"+
		"reaching the target PostgreSQL through a proxy that adds --delay each way.",
		func(ctx context.Context) error { return run(ctx, o) },
		func() error { return o.validate(counts) }, common.Check)
}

func (o *options) validate(counts string) error {
	for f := range strings.SplitSeq(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--partitions: %q is not a positive number", f)
		}
		if slices.Contains(o.partitions, n) {
			return fmt.Errorf("--partitions: %d given twice", n)
		}
		o.partitions = append(o.partitions, n)
	}
	switch {
	case o.rows < 2:
		return fmt.Errorf("--rows must be at least 2, got %d", o.rows)
	case o.changes < 1:
		return fmt.Errorf("--changes must be at least 1, got %d", o.changes)
	case o.tx < 1:
		return fmt.Errorf("--tx must be at least 1, got %d", o.tx)
	case o.delay < 0:
		return fmt.Errorf("--delay must not be negative, got %v", o.delay)
	case o.runs < 1:
		return fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	}
	return benchkit.CheckNATSMode(o.nats)
}

// bench is one run's shared state.
type bench struct {
	o       options
	work    string
	pg      *testenv.Postgres // the source's cluster
	tpg     *testenv.Postgres // the targets' cluster
	proxy   *testenv.Proxy    // in front of tpg
	natsURL string
	nats    *benchkit.NATS
}

// result is one run: the seconds each partition count took and the CPU
// its processes spent meanwhile.
type result struct {
	seconds map[int]float64
	cpu     map[int]applyCPU
	write   time.Duration
}

func run(ctx context.Context, o options) error {
	var results []result
	var text strings.Builder
	for i := 1; i <= o.runs; i++ {
		if o.runs > 1 {
			benchkit.Say("run %d of %d", i, o.runs)
		}
		r, err := runOnce(ctx, o)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	text.WriteString(report(o, results))
	fmt.Print(text.String())
	if o.out != "" {
		if err := benchkit.WriteReport(o.out, text.String()); err != nil {
			return err
		}
		benchkit.Say("wrote %s", o.out)
	}
	return nil
}

func runOnce(ctx context.Context, o options) (_ result, err error) {
	work, removeWork, err := benchkit.WorkDir("pgflo-bench-partitions-", o.keep)
	if err != nil {
		return result{}, err
	}
	defer removeWork()
	benchkit.Say("starting two throwaway PostgreSQL clusters: the source's and the targets'")
	pg, stopPG, err := benchkit.StartPostgres(o.keep, " (source)")
	if err != nil {
		return result{}, err
	}
	defer stopPG()
	tpg, stopTargets, err := benchkit.StartPostgres(o.keep, " (targets)")
	if err != nil {
		return result{}, err
	}
	defer stopTargets()
	proxy, err := testenv.StartProxy(fmt.Sprintf("127.0.0.1:%d", tpg.Port()), o.delay)
	if err != nil {
		return result{}, err
	}
	defer proxy.Close()
	b := &bench{o: o, work: work, pg: pg, tpg: tpg, proxy: proxy}
	if err := b.prepare(ctx); err != nil {
		return result{}, err
	}
	natsSetup, err := benchkit.StartNATSMode(ctx, work, o.bin, o.nats)
	if err != nil {
		return result{}, err
	}
	defer natsSetup.Procs.StopAll(true)
	b.natsURL, b.nats = natsSetup.URL, natsSetup

	r := result{seconds: map[int]float64{}, cpu: map[int]applyCPU{}}
	if r.write, err = b.backlog(ctx); err != nil {
		return result{}, err
	}
	for _, n := range o.partitions {
		if err := benchkit.ExecAll(ctx, tpg.AdminDSN(), "CHECKPOINT"); err != nil {
			return result{}, err
		}
		took, cpu, err := b.apply(ctx, n)
		if err != nil {
			return result{}, err
		}
		r.seconds[n], r.cpu[n] = took.Seconds(), cpu
		benchkit.Say("    %d partition(s): %.2fs (%s changes/s)", n, took.Seconds(), benchkit.Thousands(int(float64(o.changes)/took.Seconds())))
	}
	benchkit.Say("checking every target against the source (md5 of all rows)")
	return r, b.verify(ctx)
}

func group(n int) string        { return fmt.Sprintf("p%d", n) }
func targetDB(n int) string     { return fmt.Sprintf("t_p%d", n) }
func (b *bench) source() string { return b.pg.DSN(sourceDB) }

// targetDSN is target n's DSN through the proxy.
func (b *bench) targetDSN(n int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", b.proxy.Port(), targetDB(n))
}

// prepare fills the source table and every target's with the same rows.
func (b *bench) prepare(ctx context.Context) error {
	fill := []string{typestest.MixedTable(table),
		"ALTER TABLE " + table + " SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
		typestest.MixedFill(table, b.o.rows),
		"VACUUM (ANALYZE, FREEZE) " + table}
	benchkit.Say("source and %d targets: table %s with %s mixed-type rows", len(b.o.partitions), table, benchkit.Thousands(b.o.rows))
	if err := benchkit.ExecAll(ctx, b.pg.AdminDSN(), "CREATE DATABASE "+sourceDB); err != nil {
		return err
	}
	if err := benchkit.ExecAll(ctx, b.source(), fill...); err != nil {
		return err
	}
	for _, n := range b.o.partitions {
		if err := benchkit.ExecAll(ctx, b.tpg.AdminDSN(), "CREATE DATABASE "+targetDB(n)); err != nil {
			return err
		}
		if err := benchkit.ExecAll(ctx, b.tpg.DSN(targetDB(n)), fill...); err != nil {
			return err
		}
	}
	return benchkit.ExecAll(ctx, b.tpg.AdminDSN(), "CHECKPOINT")
}

// backlog starts one replicator per partition count, commits the UPDATEs,
// waits until every replicator published them all, and stops the
// replicators.
func (b *bench) backlog(ctx context.Context) (time.Duration, error) {
	var reps benchkit.Procs
	defer reps.StopAll(true)
	for _, n := range b.o.partitions {
		cfg := filepath.Join(b.work, group(n)+"-replicator.yaml")
		if err := os.WriteFile(cfg, []byte(b.replicatorConfig(n)), 0o600); err != nil {
			return 0, err
		}
		rep, err := benchkit.StartProc(b.work, group(n)+"-replicator", b.o.bin, "run", cfg)
		if err != nil {
			return 0, err
		}
		reps = append(reps, rep)
	}
	// The backlog starts once every replicator streams from its slot: a
	// change committed before a slot exists is not the slot's to send.
	if err := b.waitSlots(ctx, reps); err != nil {
		return 0, err
	}
	benchkit.Say("backlog: %s single-row UPDATEs in transactions of %d", benchkit.Thousands(b.o.changes), b.o.tx)
	took, err := b.workload(ctx)
	if err != nil {
		return 0, err
	}
	// Published once every slot confirmed the source's WAL end: a replicator
	// confirms a transaction after JetStream stored it.
	var end string
	if err := benchkit.QueryRow(ctx, b.source(), "SELECT pg_current_wal_lsn()::text", &end); err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, b.source())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	_, err = benchkit.Poll(ctx, time.Now(), pollEvery, b.o.timeout, "replicators published the backlog", func() (bool, error) {
		if err := reps.Exited(func() string { return "" }); err != nil {
			return false, err
		}
		var behind int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE confirmed_flush_lsn IS NULL OR confirmed_flush_lsn < $1::pg_lsn", end).Scan(&behind)
		return behind == 0, err
	})
	if err != nil {
		return 0, reps.Describe(err)
	}
	return took, nil
}

// waitSlots waits until every group's replication slot is streaming.
func (b *bench) waitSlots(ctx context.Context, reps benchkit.Procs) error {
	conn, err := pgx.Connect(ctx, b.source())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = benchkit.Poll(ctx, time.Now(), pollEvery, time.Minute, "replicators streaming", func() (bool, error) {
		if err := reps.Exited(func() string { return "" }); err != nil {
			return false, err
		}
		var streaming int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE active").Scan(&streaming)
		return streaming == len(b.o.partitions), err
	})
	if err != nil {
		return reps.Describe(err)
	}
	return nil
}

func (b *bench) replicatorConfig(n int) string {
	partitions := ""
	if n > 1 {
		partitions = fmt.Sprintf("    partitions: %d\n", n)
	}
	return benchkit.QuietProcess + benchkit.StreamReplicator(b.source(), group(n), table, b.natsURL, partitions+b.nats.ReplicaFields("    ", "stream_replicas"))
}

func (b *bench) workerConfig(n, partition int) string {
	part := ""
	if n > 1 {
		part = fmt.Sprintf("    partition: %d\n", partition)
	}
	return benchkit.QuietProcess + fmt.Sprintf(`input:
  pg_flo_worker:
    url: %q
    group: %s
%s%s
output:
  pg_flo_postgres:
    dsn: %q
    group: %s
%s`, b.natsURL, group(n), part, benchkit.IndentFields(b.o.workerFields), b.targetDSN(n), group(n), benchkit.IndentFields(b.o.outputFields))
}

// workload commits the backlog on the source: each UPDATE adds one to the
// counter n of another row, so the sum of n tells how much of it a target
// has applied.
func (b *bench) workload(ctx context.Context) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.source())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	start := time.Now()
	for first := 0; first < b.o.changes; first += b.o.tx {
		last := min(first+b.o.tx, b.o.changes) - 1
		sql := fmt.Sprintf("DO $$BEGIN FOR k IN %d..%d LOOP UPDATE %s SET n = n + 1, ts = ts + interval '1 second' WHERE id = k::bigint * 7919 %% %d + 1; END LOOP; END$$",
			first, last, table, b.o.rows)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return 0, fmt.Errorf("workload transaction %d: %w", first/b.o.tx+1, err)
		}
	}
	took := time.Since(start)
	benchkit.Say("    committed in %.2fs", took.Seconds())
	return took, nil
}

// apply runs n workers until target n's counter sum equals the source's, and
// returns how long that took and the CPU spent meanwhile.
func (b *bench) apply(ctx context.Context, n int) (time.Duration, applyCPU, error) {
	var want int64
	if err := benchkit.QueryRow(ctx, b.source(), "SELECT sum(n) FROM "+table, &want); err != nil {
		return 0, applyCPU{}, err
	}
	var workers benchkit.Procs
	defer workers.StopAll(true)
	cpu0 := b.readCPU(nil)
	start := time.Now()
	for k := range n {
		name := fmt.Sprintf("%s-worker-%d", group(n), k)
		cfg := filepath.Join(b.work, name+".yaml")
		if err := os.WriteFile(cfg, []byte(b.workerConfig(n, k)), 0o600); err != nil {
			return 0, applyCPU{}, err
		}
		w, err := benchkit.StartProc(b.work, name, b.o.bin, "run", cfg)
		if err != nil {
			return 0, applyCPU{}, err
		}
		workers = append(workers, w)
	}
	// Polled directly, not through the proxy, so the poll does not queue
	// behind the workers' traffic.
	conn, err := pgx.Connect(ctx, b.tpg.DSN(targetDB(n)))
	if err != nil {
		return 0, applyCPU{}, err
	}
	defer conn.Close(context.Background())
	took, err := benchkit.Poll(ctx, start, pollEvery, b.o.timeout, fmt.Sprintf("%d partition(s) applied the backlog", n), func() (bool, error) {
		if err := workers.Exited(func() string { return "" }); err != nil {
			return false, err
		}
		var got int64
		err := conn.QueryRow(ctx, "SELECT sum(n) FROM "+table).Scan(&got)
		return got == want, err
	})
	if err != nil {
		return 0, applyCPU{}, workers.Describe(err)
	}
	return took, b.readCPU(workers).minus(cpu0), nil
}

// verify compares every target with the source.
func (b *bench) verify(ctx context.Context) error {
	const digest = "SELECT md5(string_agg(x::text, E'\\n' ORDER BY id)) FROM " + table + " x"
	var want string
	if err := benchkit.QueryRow(ctx, b.source(), digest, &want); err != nil {
		return err
	}
	var errs []error
	for _, n := range b.o.partitions {
		var got string
		if err := benchkit.QueryRow(ctx, b.tpg.DSN(targetDB(n)), digest, &got); err != nil {
			return err
		}
		if got != want {
			errs = append(errs, fmt.Errorf("target of %d partition(s) differs from the source (md5 %s, source %s)", n, got, want))
		}
	}
	return errors.Join(errs...)
}
