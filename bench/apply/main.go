// Command apply is pgflo's apply benchmark (make bench-apply): pgflo moving
// a table into a target PostgreSQL through pg_flo_postgres, next to
// PostgreSQL's own ways, in one run on one machine.
//
// (a) Initial sync of a table of N mixed-type rows (bigint PK, int, text,
// numeric, timestamptz, bool, jsonb, uuid, bytea, text[]) into an empty
// table with the same definition:
//
//   - COPY big TO STDOUT piped into COPY big FROM STDIN (one pair of
//     connections), and the same split in 4 ctid page ranges piped
//     concurrently: the ceiling of any copier;
//   - native logical replication: CREATE SUBSCRIPTION (copy_data), until the
//     table is ready;
//   - pgflo copy_and_stream, until the target's progress table counts every
//     snapshot row applied: replicator → JetStream → worker →
//     pg_flo_postgres (three processes with a NATS server) as the documented
//     pair of configs shows it, every field at its default; the same
//     pipeline started with pg_flo's command line (`pgflo replicator
//     --copy-and-stream`, `pgflo worker postgres`); the documented pair
//     with the worker's `snapshot_packs: keep`; and replicator →
//     pg_flo_postgres in one process.
//
// (b) Backlog catch-up: with pgflo stopped and the subscription disabled,
// M single-row UPDATEs (each of a different row) in transactions of T are
// committed on the source, then a marker UPDATE; then each applier in turn
// is started (the subscription enabled) and timed until the marker is on
// its target (changes are applied in commit order, so everything before it
// is there too).
//
// The table printed gives seconds, rows or changes per second and the ratios,
// and the peak RSS of every pgflo process; at the end every target is
// compared with the source (md5 of all rows).
//
// Each of --runs runs is made against every NATS setup of --nats (default
// r1,stock: one `pgflo nats`, then one stock nats-server with its default
// configuration), each in fresh clusters with its own anchors; the medians
// are given per setup.
//
//	go run ./bench/apply --bin ./pgflo [--runs 3] [--rows 1000000] [--updates 200000] [--tx 1000] [--nats r1,stock] [--only "documented pair,worker keep"] [--out bench/results/apply.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/testenv"
)

const (
	sourceDB    = "bench"
	table       = "big"
	publication = "native_pub"
	nativeSlot  = "native_sub"
	markerID    = 1
	pollEvery   = 50 * time.Millisecond
)

// Target databases, one per applier.
const (
	targetCopy   = "t_copy"
	targetCopy4  = "t_copy4"
	targetNative = "t_native"
	targetPgflo  = "t_pgflo"
	targetCLI    = "t_pgflo_cli"
	targetKeep   = "t_pgflo_keep"
	targetSingle = "t_pgflo_single"
)

// pgfloTargets are the targets of pgflo's pipelines.
var pgfloTargets = []string{targetPgflo, targetCLI, targetKeep, targetSingle}

type options struct {
	bin       string
	rows      int
	updates   int
	tx        int
	batchSize int
	runs      int
	nats      string
	modes     []string // --nats, parsed
	out       string
	keep      bool
	timeout   time.Duration
	profile   string
	profileS  int
	// only names the pgflo pipelines to measure (their short names), all
	// when empty.
	only string
	// inputFields, outputFields and workerFields are more fields of
	// pg_flo_replicator, pg_flo_postgres and pg_flo_worker, for trying
	// options: "copy_connections: 3, ...".
	inputFields, outputFields, workerFields string
}

func main() {
	var o options
	common := benchkit.Flags{Bin: &o.bin, Out: &o.out, Keep: &o.keep, Timeout: &o.timeout}
	common.Register(
		"bench/results/apply.md", 15*time.Minute, "give up on an applier that takes longer than this")
	flag.IntVar(&o.rows, "rows", 1000000, "rows in the table to sync")
	flag.IntVar(&o.updates, "updates", 200000, "single-row UPDATEs of the backlog")
	flag.IntVar(&o.tx, "tx", 1000, "UPDATEs per source transaction")
	flag.IntVar(&o.runs, "runs", 3, "measure this many times, each in fresh clusters, and print the medians")
	flag.StringVar(&o.nats, "nats", benchkit.DefaultNATSModes, benchkit.NATSModeUsage)
	flag.IntVar(&o.batchSize, "batch-size", 0, "pg_flo_worker batch_size (0: its default)")
	flag.StringVar(&o.profile, "profile", "", "save CPU profiles of every pgflo process (taken as it starts, --profile-seconds long) in this directory; with --runs above 1 each run overwrites the one before")
	flag.IntVar(&o.profileS, "profile-seconds", 3, "length of each --profile CPU profile")
	flag.StringVar(&o.only, "only", "", "measure only these pgflo pipelines, comma-separated (\"documented pair,pg_flo CLI,worker keep,1 process\")")
	flag.StringVar(&o.inputFields, "input-fields", "", "more fields of every pg_flo_replicator, comma-separated (\"max_copy_workers: 4\")")
	flag.StringVar(&o.outputFields, "output-fields", "", "more fields of every pg_flo_postgres, comma-separated (\"copy_connections: 3, apply_connections: 1\")")
	flag.StringVar(&o.workerFields, "worker-fields", "", "more fields of the pg_flo_worker, comma-separated (\"fetch_wait: 10ms\")")
	benchkit.Main("bench/apply", "Times pgflo's pg_flo_postgres output on an initial sync of N mixed-type rows and on the catch-up of a\n"+
		"backlog of single-row UPDATEs, next to COPY pipes and PostgreSQL's native logical replication.",
		func(ctx context.Context) error { return run(ctx, o) }, o.validate,
		common.Check)
}

func (o *options) validate() error {
	switch {
	case o.rows < markerID:
		return fmt.Errorf("--rows must be at least 1, got %d", o.rows)
	case o.updates < 1 || o.updates > o.rows:
		return fmt.Errorf("--updates must be between 1 and --rows (each UPDATE changes another row), got %d", o.updates)
	case o.tx < 1:
		return fmt.Errorf("--tx must be at least 1, got %d", o.tx)
	case o.runs < 1:
		return fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	case o.batchSize < 0:
		return fmt.Errorf("--batch-size must not be negative, got %d", o.batchSize)
	}
	var err error
	o.modes, err = benchkit.ParseNATSModes(o.nats)
	return err
}

// bench is one run's shared state.
type bench struct {
	o        options
	work     string
	pg       *testenv.Postgres // the source's cluster
	tpg      *testenv.Postgres // the targets' cluster
	source   string            // DSN of the source database
	natsURL  string
	nats     *benchkit.NATS
	pgVer    string
	fillTime time.Duration
	// nativeCPU is what the native subscription's catch-up cost.
	nativeCPU catchUpCPU
	// nativeSyncCPU is what its initial sync cost.
	nativeSyncCPU syncCPU
}

// dsn is the DSN of a database: the source in its cluster, the targets in
// theirs.
func (b *bench) dsn(db string) string {
	if db == sourceDB {
		return b.pg.DSN(db)
	}
	return b.tpg.DSN(db)
}

// run measures o.runs times, each time in fresh clusters, and prints every
// run's report and the medians: one run on two shared cores scatters by
// ±10 %, for native logical replication as for pgflo.
//
// Runs against the NATS setups of --nats are interleaved (run 1 against
// each, then run 2, …), so that a busy spell of the machine touches every
// setup alike; the medians are per setup.
func run(ctx context.Context, o options) error {
	reports := make(map[string][]*report)
	var text strings.Builder
	for i := 1; i <= o.runs; i++ {
		for _, mode := range o.modes {
			benchkit.Say("run %d of %d, NATS %s", i, o.runs, mode)
			r, err := runOnce(ctx, o, mode)
			if err != nil {
				return fmt.Errorf("run %d, NATS %s: %w", i, mode, err)
			}
			r.run = i
			reports[mode] = append(reports[mode], r)
			part := r.format()
			fmt.Print(part)
			text.WriteString(part)
		}
	}
	for _, mode := range o.modes {
		if o.runs > 1 {
			part := summary(reports[mode])
			fmt.Print(part)
			text.WriteString(part)
		}
	}
	if o.out != "" {
		if err := benchkit.WriteReport(o.out, text.String()); err != nil {
			return err
		}
		benchkit.Say("wrote %s", o.out)
	}
	return nil
}

// runOnce is one run: fresh clusters, (a), (b) and the check of every target.
func runOnce(ctx context.Context, o options, mode string) (_ *report, err error) {
	work, removeWork, err := benchkit.WorkDir("pgflo-bench-apply-", o.keep)
	if err != nil {
		return nil, err
	}
	defer removeWork()
	// Two clusters: in one, every slot would also decode (and skip) the
	// WAL of every target's loading and applying, more for the appliers
	// measured first.
	benchkit.Say("starting two throwaway PostgreSQL clusters (wal_level=logical, fsync off): the source's and the targets'")
	pg, stopPG, err := benchkit.StartPostgres(o.keep, " (source)")
	if err != nil {
		return nil, err
	}
	defer stopPG()
	tpg, stopTargets, err := benchkit.StartPostgres(o.keep, " (targets)")
	if err != nil {
		return nil, err
	}
	defer stopTargets()
	b := &bench{o: o, work: work, pg: pg, tpg: tpg}
	if err := b.prepare(ctx); err != nil {
		return nil, fmt.Errorf("%w (server log: %s)", err, pg.LogFile())
	}
	natsSetup, err := benchkit.StartNATSMode(ctx, work, o.bin, mode)
	if err != nil {
		return nil, err
	}
	defer natsSetup.Procs.StopAll(true)
	b.natsURL, b.nats = natsSetup.URL, natsSetup

	var r report
	r.o, r.nats, r.natsSetup = o, mode, natsSetup.Describe()
	benchkit.Say("(a) initial sync of %s rows", benchkit.Thousands(o.rows))
	if err := b.checkpoint(ctx); err != nil {
		return nil, err
	}
	if r.copy1, err = b.copyPipe(ctx, targetCopy, 1); err != nil {
		return nil, err
	}
	benchkit.Say("    COPY pipe: %.2fs", r.copy1.Seconds)
	if err := b.checkpoint(ctx); err != nil {
		return nil, err
	}
	if r.copy4, err = b.copyPipe(ctx, targetCopy4, 4); err != nil {
		return nil, err
	}
	benchkit.Say("    COPY pipe in 4 ranges: %.2fs", r.copy4.Seconds)
	if err := b.checkpoint(ctx); err != nil {
		return nil, err
	}
	if r.nativeSync, err = b.nativeInitialSync(ctx); err != nil {
		return nil, err
	}
	benchkit.Say("    native CREATE SUBSCRIPTION: %.2fs", r.nativeSync.Seconds)
	pipelines := []*pipeline{
		{name: "pgflo replicator→JetStream→worker→pg_flo_postgres, the documented configs", short: "documented pair", group: "jsapply", target: targetPgflo, viaNATS: true},
		{name: "pgflo replicator→JetStream→worker→pg_flo_postgres, pg_flo's command line", short: "pg_flo CLI", group: "cli", target: targetCLI, viaNATS: true, cli: true},
		{name: "pgflo replicator→JetStream→worker (snapshot_packs: keep)→pg_flo_postgres", short: "worker keep", group: "keep", target: targetKeep, viaNATS: true, keepPacks: true},
		{name: "pgflo replicator→pg_flo_postgres (one process)", short: "1 process", group: "direct", target: targetSingle},
	}
	if o.only != "" {
		pipelines = slices.DeleteFunc(pipelines, func(p *pipeline) bool {
			return !slices.Contains(strings.Split(o.only, ","), p.short)
		})
	}
	for _, p := range pipelines {
		if err := b.checkpoint(ctx); err != nil {
			return nil, err
		}
		if err := b.pgfloInitialSync(ctx, p); err != nil {
			return nil, err
		}
		benchkit.Say("    %s: %.2fs", p.name, p.sync.Seconds)
	}

	measured := []string{targetNative}
	for _, p := range pipelines {
		measured = append(measured, p.target)
	}
	if err := b.settle(ctx, measured); err != nil {
		return nil, err
	}
	benchkit.Say("(b) backlog: %s single-row UPDATEs in transactions of %s, pgflo stopped and the subscription disabled",
		benchkit.Thousands(o.updates), benchkit.Thousands(o.tx))
	if r.writeTime, err = b.workload(ctx); err != nil {
		return nil, err
	}
	if r.nativeCatchUp, err = b.nativeCatchUp(ctx); err != nil {
		return nil, err
	}
	benchkit.Say("    native subscription enabled: %.2fs", r.nativeCatchUp.Seconds)
	for _, p := range pipelines {
		// The applier before left the target's buffer pool full of its dirty
		// pages; without a checkpoint this one would write them out.
		if err := b.checkpoint(ctx); err != nil {
			return nil, err
		}
		if err := b.pgfloCatchUp(ctx, p); err != nil {
			return nil, err
		}
		benchkit.Say("    %s: %.2fs", p.name, p.catchUp.Seconds)
	}
	r.pipelines, r.nativeCPU, r.nativeSyncCPU = pipelines, b.nativeCPU, b.nativeSyncCPU

	benchkit.Say("checking every target against the source (md5 of all rows)")
	if r.checked, err = b.verify(ctx, measured); err != nil {
		return nil, err
	}
	r.pgVersion, r.fillTime = b.pgVer, b.fillTime
	return &r, nil
}

// prepare creates the source database with the filled table and the
// publication, and the target databases with the empty table.
func (b *bench) prepare(ctx context.Context) error {
	for _, db := range append([]string{sourceDB, targetCopy, targetCopy4, targetNative}, pgfloTargets...) {
		cluster := b.tpg
		if db == sourceDB {
			cluster = b.pg
		}
		if err := benchkit.ExecAll(ctx, cluster.AdminDSN(), "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
		if db == sourceDB {
			continue
		}
		// No autovacuum on the targets either: it would start on a loaded
		// target at a moment that differs between appliers (see settle).
		if err := benchkit.ExecAll(ctx, b.dsn(db), typestest.MixedTable(table),
			"ALTER TABLE "+table+" SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"); err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
	}
	b.source = b.dsn(sourceDB)
	if err := benchkit.QueryRow(ctx, b.source, "SHOW server_version", &b.pgVer); err != nil {
		return err
	}
	benchkit.Say("source: table %s with %s mixed-type rows", table, benchkit.Thousands(b.o.rows))
	start := time.Now()
	err := benchkit.ExecAll(ctx, b.source,
		typestest.MixedTable(table),
		"ALTER TABLE "+table+" SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
		typestest.MixedFill(table, b.o.rows),
		"VACUUM (ANALYZE, FREEZE) "+table,
		"CREATE PUBLICATION "+publication+" FOR TABLE "+table,
		"CHECKPOINT")
	b.fillTime = time.Since(start)
	return err
}

// checkpoint flushes both clusters before a copier of (a) or an applier of
// (b) starts: every load writes a table's worth of WAL and dirty buffers,
// and a checkpoint falling due in the middle of the next one (max_wal_size),
// or the dirty buffers it must evict, would make it pay for the one before.
func (b *bench) checkpoint(ctx context.Context) error {
	for _, dsn := range []string{b.pg.AdminDSN(), b.tpg.AdminDSN()} {
		if err := benchkit.ExecAll(ctx, dsn, "CHECKPOINT"); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// settle vacuums and analyzes the targets' tables after the initial sync,
// so that every applier of (b) starts from the same state: hint bits set,
// visibility map and statistics current, whichever loaded its table last.
func (b *bench) settle(ctx context.Context, targets []string) error {
	for _, db := range targets {
		if err := benchkit.ExecAll(ctx, b.dsn(db), "VACUUM (ANALYZE) "+table, "CHECKPOINT"); err != nil {
			return fmt.Errorf("vacuum %s: %w", db, err)
		}
	}
	return nil
}

// workload commits the backlog on the source: each UPDATE changes another
// row (no change can be merged with another), then the marker.
func (b *bench) workload(ctx context.Context) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.source)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	start := time.Now()
	for first := 0; first < b.o.updates; first += b.o.tx {
		last := min(first+b.o.tx, b.o.updates) - 1
		sql := fmt.Sprintf("DO $$BEGIN FOR k IN %d..%d LOOP UPDATE %s SET n = n + 1, ts = ts + interval '1 second' WHERE id = k::bigint * 7919 %% %d + 1; END LOOP; END$$",
			first, last, table, b.o.rows)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return 0, fmt.Errorf("workload transaction %d: %w", first/b.o.tx+1, err)
		}
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET s = 'marker' WHERE id = %d", table, markerID)); err != nil {
		return 0, fmt.Errorf("marker: %w", err)
	}
	took := time.Since(start)
	benchkit.Say("    committed in %.2fs (%s changes/s)", took.Seconds(), benchkit.Thousands(int(float64(b.o.updates)/took.Seconds())))
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return took, err
}

// waitMarker waits until the marker UPDATE is on the target.
func (b *bench) waitMarker(ctx context.Context, target string, start time.Time, what string, alive func() error) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.dsn(target))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	return benchkit.Poll(ctx, start, pollEvery, b.o.timeout, what, func() (bool, error) {
		if alive != nil {
			if err := alive(); err != nil {
				return false, err
			}
		}
		var s *string
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT s FROM %s WHERE id = %d", table, markerID)).Scan(&s); err != nil {
			return false, err
		}
		return s != nil && *s == "marker", nil
	})
}

// verify compares every target with the source.
func (b *bench) verify(ctx context.Context, targets []string) (int, error) {
	sum := func(dsn string) (string, error) {
		var s string
		err := benchkit.QueryRow(ctx, dsn, fmt.Sprintf("SELECT md5(string_agg(x::text, E'\\n' ORDER BY id)) FROM %s x", table), &s)
		return s, err
	}
	want, err := sum(b.source)
	if err != nil {
		return 0, err
	}
	for _, t := range targets {
		got, err := sum(b.dsn(t))
		if err != nil {
			return 0, err
		}
		if got != want {
			return 0, fmt.Errorf("target %s differs from the source (md5 %s, source %s)", t, got, want)
		}
	}
	return len(targets), nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
