package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// mixedTarget is mixedTablesSQL's table mixed, empty.
const mixedTarget = "CREATE TABLE mixed (id bigint PRIMARY KEY, n int NOT NULL, s text, big text, amount numeric(14,4), at timestamptz, tags text[], doc jsonb, flag bool)"

// waitUntil waits until done says so, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !done(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not yet %s", timeout, what)
		}
	}
}

// packCopyLog is pg_flo_postgres's debug line for snapshot rows written
// with COPY as their packs came (never for INSERT events).
var packCopyLog = regexp.MustCompile(`Wrote (\d+) snapshot rows of \d+ packs into ([^ ]+) with COPY`)

// packCopiedRows sums the rows of a table (as the log names it, unquoted)
// the log says were copied as packs.
func packCopiedRows(log, table string) int {
	n := 0
	for _, m := range packCopyLog.FindAllStringSubmatch(log, -1) {
		if strings.NewReplacer(`\`, "", `"`, "").Replace(m[2]) == table {
			rows, _ := strconv.Atoi(m[1])
			n += rows
		}
	}
	return n
}

// The minimal documented pair — pg_flo_worker with its defaults feeding
// pg_flo_postgres — copies a snapshot's rows as their packs came, while a
// stock output beside it (a fan-out to a file) receives one change event per
// row: the target equals the source, the worker's log names the COPY of
// every row of the table, and the file holds each row's INSERT once.
func TestDefaultWorkerCopiesSnapshotPacks(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, mixedTablesSQL)
	tables := []string{"mixed", "small"}
	testenv.Exec(t, target, mixedTarget+"; CREATE TABLE small (id int PRIMARY KEY, v text)")

	p := newPipeline(t, source, "fastpath")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [mixed, small]", p.nats.URL())
	p.startReplicator()
	p.startWorker(fmt.Sprintf(`broker:
    pattern: fan_out
    outputs:
      - pg_flo_postgres:
          dsn: %q
          group: fastpath
      - file:
          path: %q
          codec: lines`, target, p.output))
	waitDigestsEqual(t, source, target, tables, 120*time.Second)
	waitUntil(t, 60*time.Second, "3020 events in the file", func() bool { return len(outputLines(t, p.output)) >= 3020 })

	waitUntil(t, 30*time.Second, "every row of mixed copied as packs (pg_flo_postgres's log)", func() bool {
		return packCopiedRows(p.worker.Log(), "public.mixed") == 3000
	})
	rows := map[string]map[string]int{}
	for _, ev := range p.events() {
		if !ev.Snapshot || ev.Op != "INSERT" {
			t.Fatalf("the file got an event that is not a snapshot row: %+v", ev)
		}
		if rows[ev.Table] == nil {
			rows[ev.Table] = map[string]int{}
		}
		rows[ev.Table][keyOf(ev)]++
	}
	for table, want := range map[string]int{"mixed": 3000, "small": 20} {
		if len(rows[table]) != want {
			t.Errorf("the file holds %d rows of %s, want %d", len(rows[table]), table, want)
		}
		for key, n := range rows[table] {
			if n != 1 {
				t.Errorf("the file holds row %s of %s %d times", key, table, n)
			}
		}
	}
}

// A processor that rewrites the rows' events between the default worker and
// pg_flo_postgres is obeyed: the rewritten rows are applied, not their
// packs.
func TestDefaultWorkerRewrittenRowsAreApplied(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, mixedTablesSQL)
	testenv.Exec(t, target, mixedTarget)

	p := newPipeline(t, source, "rewritten")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [mixed]", p.nats.URL())
	p.startReplicator()
	p.startWorkerWith("    - mutation: 'root.new.s = \"mapped\"'\n", postgresOutput(target, "rewritten", ""))
	waitUntil(t, 120*time.Second, "every row on the target, rewritten", func() bool {
		return testenv.QueryInt(t, target, "SELECT count(*) FROM mixed WHERE s = 'mapped'") == 3000
	})
	if got := packCopiedRows(p.worker.Log(), "public.mixed"); got != 0 {
		t.Errorf("pg_flo_postgres copied %d rows of mixed as packs although the processor rewrote them", got)
	}
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM mixed"); n != 3000 {
		t.Errorf("the target holds %d rows, want 3000", n)
	}
}
