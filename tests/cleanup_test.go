package tests

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/testenv"
)

// groupObjects counts what a group left on the source and on NATS.
type groupObjects struct {
	slot, publication, trigger, function, schema bool
	stream, consumer, bucket                     bool
}

func lookupGroupObjects(t *testing.T, dsn string, nats *testenv.NATS, group string) groupObjects {
	t.Helper()
	name := "pg_flo_" + strings.ReplaceAll(group, "-", "_") + "_publication"
	ddl := "pgflo_ddl_" + name
	exists := func(sql string, args ...any) bool {
		return testenv.QueryInt(t, dsn, "SELECT count(*) FROM "+sql, args...) > 0
	}
	var o groupObjects
	o.slot = exists("pg_replication_slots WHERE slot_name = $1", name)
	o.publication = exists("pg_publication WHERE pubname = $1", name)
	o.trigger = exists("pg_event_trigger WHERE evtname = $1", ddl)
	o.function = exists("pg_proc WHERE proname = $1", ddl)
	o.schema = exists("pg_namespace WHERE nspname = 'pgflo'")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := nats.JetStream(t)
	notFound := func(err error, sentinels ...error) bool {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return true
			}
		}
		if err != nil {
			t.Fatalf("look up JetStream object: %v", err)
		}
		return false
	}
	_, err := js.Stream(ctx, "pgflo_"+group+"_stream")
	o.stream = !notFound(err, jetstream.ErrStreamNotFound)
	_, err = js.Consumer(ctx, "pgflo_"+group+"_stream", "pgflo_"+group+"_consumer")
	o.consumer = !notFound(err, jetstream.ErrStreamNotFound, jetstream.ErrConsumerNotFound)
	_, err = js.KeyValue(ctx, "pg_flo_state_"+group)
	o.bucket = !notFound(err, jetstream.ErrBucketNotFound)
	return o
}

func assertContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// `pgflo cleanup` lists a group's objects without --yes, drops them all
// with it (terminating the walsender that holds the slot), never prints the
// password, and finds nothing the second time.
func TestCleanupDropsEverythingOfAGroup(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 10) g")
	const group = "clean-up"
	p := newPipeline(t, dsn, group)
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    track_ddl: true\n    nats:\n      url: %s", p.nats.URL())
	slot := "pg_flo_clean_up_publication" // dashes become underscores
	p.startReplicatorNoWait()
	testenv.Eventually(t, 30*time.Second, "replicator streaming from its slot", func() bool {
		return testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot) == 1
	})
	p.startWorker("")
	testenv.Eventually(t, 30*time.Second, "the 10 snapshot rows delivered", func() bool { return len(p.events()) >= 10 })
	if err := p.worker.Stop(); err != nil {
		t.Fatal(err)
	}
	// Freeze the replicator: its walsender keeps the slot active, and it
	// cannot reconnect and recreate what cleanup drops.
	if err := syscall.Kill(p.replicator.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.replicator.Kill)

	all := groupObjects{true, true, true, true, true, true, true, true}
	if got := lookupGroupObjects(t, dsn, p.nats, group); got != all {
		t.Fatalf("before cleanup the group has %+v, want all of %+v", got, all)
	}

	const password = "s3cret-pw"
	secretDSN := strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+password+"@", 1)
	dryRun, err := runPgflo(t, "cleanup", "--dsn", secretDSN, "--group", group, "--nats-url", p.nats.URL())
	if err != nil {
		t.Fatalf("pgflo cleanup (dry run): %v\n%s", err, dryRun)
	}
	assertContains(t, dryRun,
		"would drop  replication slot "+slot+" (held by walsender pid ",
		"would drop  publication "+slot+" (1 table)",
		"would drop  DDL capture event trigger pgflo_ddl_"+slot,
		"would drop  DDL capture function pgflo.pgflo_ddl_"+slot+"()",
		"would drop  schema pgflo (empty once the function is dropped)",
		"would drop  JetStream consumer pgflo_clean-up_consumer of stream pgflo_clean-up_stream",
		"would drop  JetStream stream pgflo_clean-up_stream (",
		"would drop  JetStream key-value bucket pg_flo_state_clean-up (",
		"Nothing was dropped (dry run)",
		"postgres://postgres:xxxxx@",
	)
	if got := lookupGroupObjects(t, dsn, p.nats, group); got != all {
		t.Fatalf("the dry run changed something: the group has %+v", got)
	}

	dropped, err := runPgflo(t, "cleanup", "--dsn", secretDSN, "--group", group, "--nats-url", p.nats.URL(), "--yes")
	if err != nil {
		t.Fatalf("pgflo cleanup --yes: %v\n%s", err, dropped)
	}
	assertContains(t, dropped,
		"dropped     replication slot "+slot+" (held by walsender pid ",
		"; terminated walsender pid ",
		"dropped     publication "+slot,
		"dropped     DDL capture event trigger",
		"dropped     DDL capture function",
		"dropped     schema pgflo",
		"dropped     JetStream consumer",
		"dropped     JetStream stream",
		"dropped     JetStream key-value bucket",
		`Dropped 8 objects of group "clean-up".`,
	)
	if got := lookupGroupObjects(t, dsn, p.nats, group); got != (groupObjects{}) {
		t.Fatalf("after cleanup the group still has %+v", got)
	}

	// Again, with pg_flo's connection flags: nothing left, nothing fails.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	again, err := runPgflo(t, "cleanup", "--host", cfg.Host, "--port", strconv.Itoa(int(cfg.Port)),
		"--dbname", cfg.Database, "--user", cfg.User, "--password", password,
		"--group", group, "--nats-url", p.nats.URL(), "--yes")
	if err != nil {
		t.Fatalf("second pgflo cleanup --yes: %v\n%s", err, again)
	}
	assertContains(t, again, "not found   replication slot "+slot, "not found   JetStream stream", `Nothing to drop: group "clean-up" has no objects left.`)
	t.Logf("dry run:\n%s\ndrop:\n%s\nagain:\n%s", dryRun, dropped, again)
	if strings.Contains(again, "dropped ") {
		t.Errorf("the second cleanup dropped something:\n%s", again)
	}
	for _, out := range []string{dryRun, dropped, again} {
		if strings.Contains(out, password) {
			t.Fatalf("cleanup printed the password:\n%s", out)
		}
	}
}

// A cleanup with nowhere to clean exits non-zero and says what is missing
// (internal/cli's tests cover every flag error).
func TestCleanupNeedsAPlace(t *testing.T) {
	out, err := runPgflo(t, "cleanup", "--group", "g")
	if err == nil || !strings.Contains(out, "nothing to clean up: give --dsn") {
		t.Errorf("pgflo cleanup --group g: err %v, output:\n%s", err, out)
	}
}

// The pgflo schema holds every group's DDL capture function: cleanup drops
// it only when nothing else is left in it.
func TestCleanupKeepsASharedSchema(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE SCHEMA pgflo; CREATE TABLE pgflo.keep_me (id int)")
	out, err := runPgflo(t, "cleanup", "--dsn", dsn, "--group", "other", "--yes")
	if err != nil {
		t.Fatalf("pgflo cleanup: %v\n%s", err, out)
	}
	assertContains(t, out, "kept        schema pgflo: it holds other objects", `Nothing to drop: group "other" has no objects left.`)
	if testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgflo'") != 1 {
		t.Error("cleanup dropped a schema that holds other objects")
	}
}
