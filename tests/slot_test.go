package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// slotPipeline is a copy_and_stream group of the table items (rows 1..200)
// with its state on NATS and its replicator's HTTP server on a free port,
// whose workers (one per partition) apply it to a target database with
// pg_flo_postgres.
func slotPipeline(t *testing.T, group string, partitions int) (p *pipeline, target, base string) {
	t.Helper()
	source := pg.NewDatabase(t)
	target = pg.NewDatabase(t)
	const items = "CREATE TABLE items (id int PRIMARY KEY, v text)"
	testenv.Exec(t, source, items+"; INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 200) g")
	testenv.Exec(t, target, items)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p = newPipeline(t, source, group)
	p.replicatorHTTP = fmt.Sprintf("127.0.0.1:%d", port)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    tables: [items]\n    nats:\n      url: %s", p.nats.URL())
	if partitions == 1 {
		p.startReplicator()
		p.startWorker(postgresOutput(target, group, ""))
	} else {
		p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    partitions: %d", p.nats.URL(), group, partitions)
		p.startReplicator()
		for k := range partitions {
			cfg := p.writeConfig(fmt.Sprintf("worker-p%d.yaml", k), fmt.Sprintf("%s\ninput:\n  pg_flo_worker:\n    url: %s\n    group: %s\n    partition: %d\noutput:\n  %s\n",
				quietHTTP, p.nats.URL(), group, k, postgresOutput(target, group, "")))
			testenv.StartProcess(t, fmt.Sprintf("worker-p%d", k), p.bin, "run", cfg)
		}
	}
	waitDigestsEqual(t, source, target, []string{"items"}, 60*time.Second)
	return p, target, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// slotLostGauge is pg_flo_replicator_slot_lost of the replicator at base,
// -1 while it is not exposed.
func slotLostGauge(t *testing.T, base string) float64 {
	v, ok := metricValue(scrape(t, base+"/metrics"), `pg_flo_replicator_slot_lost(\{.*\})?`)
	if !ok {
		return -1
	}
	return v
}

// waitSlotLostReported waits for the replicator's one error about its lost
// slot and checks what comes with it: the gauge at 1, /ready not 200, and
// no retry loop — over a few seconds the error is still logged once and
// Benthos never logs a failed connection attempt.
func waitSlotLostReported(t *testing.T, p *pipeline, base string, want ...string) string {
	t.Helper()
	const line = "Cannot resume replication group "
	testenv.Eventually(t, 60*time.Second, "the replicator reports its lost slot", func() bool {
		return strings.Contains(p.replicator.Log(), line) && slotLostGauge(t, base) == 1
	})
	if status := readyStatus(base); status == http.StatusOK {
		t.Errorf("/ready answers %d while the slot is lost", status)
	}
	time.Sleep(5 * time.Second) // a behaviour check: a retry loop would log again meanwhile
	log := p.replicator.Log()
	var errLine string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, line) {
			errLine = l
		}
	}
	if n := strings.Count(log, line); n != 1 {
		t.Errorf("the lost slot was reported %d times in 5 seconds, want once:\n%s", n, log)
	}
	if strings.Contains(log, "Failed to connect") {
		t.Errorf("the input retries its connection:\n%s", log)
	}
	assertContains(t, errLine, append(want, "pgflo resync --group "+p.group)...)
	return errLine
}

// A slot invalidated by max_slot_wal_keep_size while the replicator was
// stopped: the restarted replicator says so once, with PostgreSQL's reason
// and the way out, reports pg_flo_replicator_slot_lost 1 and is not ready,
// without retrying in a loop. `pgflo resync` then drops the slot and
// requests a new snapshot; the waiting replicator resumes by itself, emits
// a TRUNCATE of the table and copies it again, and the target converges —
// rows deleted on the source while the slot was lost are gone from it too;
// with partitions as well, where each TRUNCATE is a barrier.
func TestSlotInvalidatedThenResync(t *testing.T) {
	t.Run("one partition", func(t *testing.T) { slotInvalidatedThenResync(t, "slot-lost", 1) })
	t.Run("two partitions", func(t *testing.T) { slotInvalidatedThenResync(t, "slot-lost-p", 2) })
}

func slotInvalidatedThenResync(t *testing.T, group string, partitions int) {
	p, target, base := slotPipeline(t, group, partitions)
	if err := p.replicator.Stop(); err != nil {
		t.Fatal(err)
	}

	// Changes the slot will never deliver: deletes, updates, inserts.
	testenv.Exec(t, p.dsn, "DELETE FROM items WHERE id % 10 = 0; UPDATE items SET v = 'changed' WHERE id % 7 = 0; INSERT INTO items SELECT g, 'late' FROM generate_series(201, 250) g")
	// Then more WAL than the slot may keep: PostgreSQL invalidates it at a
	// checkpoint. The setting is the cluster's; it is put back at once.
	admin := pg.AdminDSN()
	testenv.Exec(t, admin, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	testenv.Exec(t, admin, "SELECT pg_reload_conf()")
	restore := func() {
		testenv.Exec(t, admin, "ALTER SYSTEM RESET max_slot_wal_keep_size")
		testenv.Exec(t, admin, "SELECT pg_reload_conf()")
	}
	t.Cleanup(restore)
	testenv.Exec(t, p.dsn, "CREATE TABLE filler (v text)")
	testenv.Eventually(t, 60*time.Second, "the slot invalidated (wal_status lost)", func() bool {
		testenv.Exec(t, p.dsn, "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
		testenv.Exec(t, p.dsn, "SELECT pg_switch_wal()")
		testenv.Exec(t, p.dsn, "CHECKPOINT")
		return testenv.QueryInt(t, p.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND wal_status = 'lost'", p.slot()) == 1
	})
	restore()

	p.startReplicatorNoWait()
	waitSlotLostReported(t, p, base, "was invalidated", "wal_status lost", "exceeded the maximum reserved size")

	dryRun, err := runPgflo(t, "resync", "--dsn", p.dsn, "--group", p.group, "--nats-url", p.nats.URL())
	if err != nil {
		t.Fatalf("pgflo resync (dry run): %v\n%s", err, dryRun)
	}
	assertContains(t, dryRun, "would drop replication slot "+p.slot()+" (wal_status lost)", "would request a new snapshot", "would clear the group's snapshot record (complete, 1 table)", "Nothing was changed (dry run)")
	if n := testenv.QueryInt(t, p.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", p.slot()); n != 1 {
		t.Fatalf("the dry run dropped the slot")
	}
	done, err := runPgflo(t, "resync", "--dsn", p.dsn, "--group", p.group, "--nats-url", p.nats.URL(), "--yes")
	if err != nil {
		t.Fatalf("pgflo resync --yes: %v\n%s", err, done)
	}
	assertContains(t, done, "done      drop replication slot "+p.slot(), "done      request a new snapshot", "done      clear the group's snapshot record")

	// The replicator that waited resumes on its own, from a new slot.
	waitDigestsEqual(t, p.dsn, target, []string{"items"}, 90*time.Second)
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM items WHERE id % 10 = 0 AND id <= 200"); n != 0 {
		t.Errorf("%d rows deleted on the source are still on the target", n)
	}
	testenv.Eventually(t, 30*time.Second, "pg_flo_replicator_slot_lost back at 0 and /ready 200", func() bool {
		return slotLostGauge(t, base) == 0 && readyStatus(base) == http.StatusOK
	})
	assertContains(t, p.replicator.Log(), "resync: emitting a TRUNCATE of 1 tables", "Replication group "+group+" resumes")

	// And it streams on.
	testenv.Exec(t, p.dsn, "DELETE FROM items WHERE id < 20; UPDATE items SET v = 'after' WHERE id > 240")
	waitDigestsEqual(t, p.dsn, target, []string{"items"}, 60*time.Second)
}

// A slot dropped under a group that streamed from it: the replicator does
// not create a new one (which would skip the changes in between) but
// reports it as lost, once, with the way out.
func TestSlotDroppedUnderAStreamedGroup(t *testing.T) {
	p, _, base := slotPipeline(t, "slot-dropped", 1)
	if err := p.replicator.Stop(); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, p.dsn, "SELECT pg_drop_replication_slot($1)", p.slot())
	testenv.Exec(t, p.dsn, "DELETE FROM items WHERE id <= 10")

	p.startReplicatorNoWait()
	waitSlotLostReported(t, p, base, "no longer exists, but this group streamed from it", "would silently skip")
	if n := testenv.QueryInt(t, p.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", p.slot()); n != 0 {
		t.Errorf("the replicator created a new slot under the group")
	}

	// A slot that is valid is not resynced by mistake: resync refuses it
	// without --force. (Here: the slot is gone, so resync goes ahead.)
	out, err := runPgflo(t, "resync", "--dsn", p.dsn, "--group", p.group, "--nats-url", p.nats.URL())
	if err != nil {
		t.Fatalf("pgflo resync (dry run): %v\n%s", err, out)
	}
	assertContains(t, out, "would request a new snapshot", "would clear the group's slot record")
}

// The retained-WAL warning fires when the slot keeps more WAL than
// slot_retained_wal_warning, and the gauge reports the bytes; resync
// refuses a valid slot without --force.
func TestSlotRetainedWALWarning(t *testing.T) {
	p := itemsPipeline(t, "slot-wal", true)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p.replicatorHTTP = fmt.Sprintf("127.0.0.1:%d", port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p.replicatorExtra += "\n    slot_retained_wal_warning: 1KiB\n    status_interval: 200ms"
	p.startReplicator()
	writeRange(t, p.dsn, 1, 2000, 500)
	const warning = "retains "
	testenv.Eventually(t, 30*time.Second, "the retained-WAL warning and gauge", func() bool {
		v, ok := metricValue(scrape(t, base+"/metrics"), `pg_flo_slot_retained_wal_bytes(\{.*\})?`)
		return ok && v > 0 && strings.Contains(p.replicator.Log(), "more than the warning threshold of 1.0 KiB")
	})
	log := p.replicator.Log()
	assertContains(t, log, "replication slot "+p.slot()+" "+warning)
	out, err := runPgflo(t, "resync", "--dsn", p.dsn, "--group", p.group, "--nats-url", p.nats.URL())
	if err == nil || !strings.Contains(out, "add --force") {
		t.Errorf("pgflo resync of a valid slot: %v\n%s", err, out)
	}
}

// pgflo resync needs both places: the source, which holds the slot, and
// NATS, which holds the group's state; it says so before touching either.
func TestResyncNeedsSourceAndNATS(t *testing.T) {
	for _, args := range [][]string{
		{"resync", "--group", "g", "--nats-url", "nats://127.0.0.1:1"},
		{"resync", "--group", "g", "--dsn", "postgres://postgres@127.0.0.1:1/db"},
	} {
		out, err := runPgflo(t, args...)
		if err == nil || !strings.Contains(out, "resync needs the source database") {
			t.Errorf("pgflo %v: %v\n%s", args, err, out)
		}
	}
}
