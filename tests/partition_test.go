package tests

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/testenv"
)

// partitionTablesSQL is the source and target schema of the partitions
// test: acct's counter only ever grows on the source, big is stored out of
// line (TOAST) for every tenth row, and logt is truncated.
const partitionTablesSQL = `
CREATE TABLE acct (id int PRIMARY KEY, counter bigint NOT NULL, note text, big text);
ALTER TABLE acct ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE logt (id int PRIMARY KEY, v text);
`

// On the target, every version of an acct row written is recorded, in the
// order written, so the test can check that no row's counter went back.
const partitionAuditSQL = `
CREATE TABLE audit (seq bigserial PRIMARY KEY, id int NOT NULL, counter bigint NOT NULL);
CREATE FUNCTION audit_acct() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit (id, counter) VALUES (NEW.id, NEW.counter);
  RETURN NULL;
END $$;
CREATE TRIGGER audit_acct AFTER INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION audit_acct();
`

// Four partitions and four workers applying into one target: after
// copy_and_stream of existing rows and a workload of inserts, updates
// (counters that only grow), key changes of rows with unchanged TOAST
// values, deletes, a TRUNCATE and an ALTER TABLE — with one worker killed
// (SIGKILL) and restarted mid-stream — the target equals the source, every
// partition applied changes, and no row's counter ever went back on the
// target.
func TestPartitionsApplyInParallel(t *testing.T) {
	const partitions = 4
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, partitionTablesSQL)
	testenv.Exec(t, source, `
INSERT INTO acct SELECT g, 1, 'n' || g, CASE WHEN g % 10 = 0 THEN repeat('T', 5000) || g END FROM generate_series(1, 3000) g;
INSERT INTO logt SELECT g, 'l' || g FROM generate_series(1, 100) g;`)
	testenv.Exec(t, target, partitionTablesSQL)
	testenv.Exec(t, target, partitionAuditSQL)

	group := "parts"
	p := newPipeline(t, source, group)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [acct, logt]\n    track_ddl: true", p.nats.URL())
	p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    partitions: %d", p.nats.URL(), group, partitions)
	p.startReplicator()
	workers := make([]*testenv.Process, partitions)
	startWorker := func(k int) {
		cfg := p.writeConfig(fmt.Sprintf("worker-p%d.yaml", k), fmt.Sprintf(`%s
input:
  pg_flo_worker:
    url: %s
    group: %s
    partition: %d
    snapshot_packs: keep
output:
  %s
`, quietHTTP, p.nats.URL(), group, k, postgresOutput(target, group, "")))
		workers[k] = testenv.StartProcess(t, fmt.Sprintf("worker-p%d", k), p.bin, "run", cfg)
	}
	for k := range workers {
		startWorker(k)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rng := rand.New(rand.NewSource(1))
	nextID := 3001
	// churn commits n transactions of counter increments on random rows,
	// inserts and deletes.
	churn := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			ids := make([]string, 8)
			for j := range ids {
				ids[j] = strconv.Itoa(1 + rng.Intn(nextID))
			}
			set := "{" + strings.Join(ids, ",") + "}"
			exec(fmt.Sprintf(`BEGIN;
UPDATE acct SET counter = counter + 1 WHERE id = ANY('%s');
UPDATE acct SET counter = counter + 1, note = note || '.' WHERE id = %s;
INSERT INTO acct VALUES (%d, 1, 'new', NULL), (%d, 1, 'new', repeat('N', 4000));
DELETE FROM acct WHERE id = %d;
INSERT INTO logt VALUES (%d, 'w') ON CONFLICT (id) DO UPDATE SET v = logt.v || 'w';
COMMIT`, set, ids[0], nextID, nextID+1, 1+rng.Intn(nextID), 1000+i))
			nextID += 2
		}
	}

	churn(100)
	// Key changes of rows whose TOASTed big is left unchanged, and of rows
	// without it, moving them between partitions.
	exec("UPDATE acct SET id = id + 100000, counter = counter + 1 WHERE id % 10 = 0 AND id < 400")
	exec("UPDATE acct SET id = id + 200000 WHERE id % 7 = 3 AND id < 300")
	// Moved rows change again at once, in their new partitions.
	exec("UPDATE acct SET counter = counter + 1 WHERE id > 100000")
	churn(50)
	exec("TRUNCATE logt")
	churn(50)

	// Kill the designated partition's worker mid-stream, then start it again.
	testenv.Eventually(t, 60*time.Second, "partition 0 applying streamed changes", func() bool {
		return progressEvents(t, target, group, 0) > 0
	})
	workers[0].Kill()
	churn(50)
	exec("ALTER TABLE acct ADD COLUMN extra text DEFAULT 'x'")
	exec("UPDATE acct SET extra = 'e' || id, counter = counter + 1 WHERE id % 5 = 0")
	startWorker(0)
	churn(100)
	exec("UPDATE acct SET id = id + 300000 WHERE id % 10 = 0 AND id BETWEEN 400 AND 600")
	exec("UPDATE acct SET counter = counter + 1, note = 'moved' WHERE id > 300000")
	churn(20)

	waitDigestsEqual(t, source, target, []string{"acct", "logt"}, 120*time.Second)
	for k := 0; k < partitions; k++ {
		if n := progressEvents(t, target, group, k); n == 0 {
			t.Errorf("partition %d applied no streamed change", k)
		}
	}
	backwards := testenv.QueryRows(t, target, `
SELECT id, prev, counter FROM (
  SELECT id, counter, lag(counter) OVER (PARTITION BY id ORDER BY seq) AS prev FROM audit) s
WHERE counter < prev LIMIT 5`)
	if len(backwards) > 0 {
		t.Fatalf("counters went back on the target (id, before, after): %v", backwards)
	}
	// The key changes after the restart moved rows between partitions:
	// partition 0 delivered them as barriers.
	if n := strings.Count(workers[0].Log(), "delivers barrier"); n == 0 {
		t.Fatalf("partition 0 delivered no barrier after its restart:\n%s", workers[0].Log())
	} else {
		t.Logf("partition 0 delivered %d barriers after its restart", n)
	}
	versions := testenv.QueryInt(t, target, "SELECT count(*) FROM audit")
	t.Logf("target equals source; %d row versions written, no counter went back; progress: %v", versions,
		testenv.QueryRows(t, target, "SELECT group_name, events, snapshot_rows FROM pgflo.progress ORDER BY group_name"))
}

// progressEvents is how many streamed changes partition k of group applied.
func progressEvents(t *testing.T, target, group string, k int) int {
	t.Helper()
	if testenv.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgflo' AND tablename = 'progress'") == 0 {
		return 0
	}
	rows := testenv.QueryRows(t, target, "SELECT events FROM pgflo.progress WHERE group_name = $1", fmt.Sprintf("%s/p%d", group, k))
	if len(rows) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(rows[0][0])
	return n
}
