package tests

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Poison messages: a change the target refuses (a CHECK constraint only the
// target has) and a message that is not a change event (garbage published
// on the group's subject), each under on_error: stop — the group stops at
// it, naming it, and applies nothing after it — and under on_error:
// dead_letter — the group goes on without it, the dead letter is listed and
// counted, and replaying it once the cause is fixed makes the target equal
// the source.

// deadLetterGroup is a pipeline of table small into a target whose copy of
// small refuses v = 'forbidden'.
type deadLetterGroup struct {
	*pipeline
	target  string
	metrics string // the worker's HTTP base URL
	// packs is the worker's snapshot_packs; empty leaves it at its
	// default (expand).
	packs string
}

func newDeadLetterGroup(t *testing.T, group string, sourceSQL ...string) *deadLetterGroup {
	t.Helper()
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, "CREATE TABLE small (id int PRIMARY KEY, v text)")
	for _, sql := range sourceSQL {
		testenv.Exec(t, source, sql)
	}
	testenv.Exec(t, target, "CREATE TABLE small (id int PRIMARY KEY, v text CONSTRAINT no_forbidden CHECK (v <> 'forbidden'))")
	g := &deadLetterGroup{pipeline: newPipeline(t, source, group), target: target, packs: "keep"}
	if len(sourceSQL) > 0 {
		g.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s", g.nats.URL())
	}
	g.startReplicator()
	return g
}

// startWorker starts the worker (pg_flo_worker → pg_flo_postgres) with
// on_error set on both, its metrics served over HTTP.
func (g *deadLetterGroup) startWorker(onError string) {
	g.t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		g.t.Fatal(err)
	}
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := g.writeConfig("worker.yaml", fmt.Sprintf(`http:
  address: 127.0.0.1:%d
metrics:
  prometheus: {}
logger:
  level: DEBUG
  format: logfmt
input:
  pg_flo_worker:
    url: %s
    group: %s
%s    on_error: %s
output:
  pg_flo_postgres:
    dsn: %q
    group: %s
    on_error: %s
`, port, g.natsURL(), g.group, packsField(g.packs), onError, g.target, g.group, onError))
	g.worker = testenv.StartProcess(g.t, "worker", g.bin, "run", cfg)
}

// rows is small's rows as "id=v", in key order.
func rows(t *testing.T, dsn string, except ...int) []string {
	t.Helper()
	var out []string
	for _, r := range testenv.QueryRows(t, dsn, "SELECT id::text, coalesce(v, 'NULL') FROM small ORDER BY id") {
		id, _ := strconv.Atoi(r[0])
		skip := false
		for _, e := range except {
			skip = skip || id == e
		}
		if !skip {
			out = append(out, r[0]+"="+r[1])
		}
	}
	return out
}

// waitRowsEqual waits until the target's rows are the source's but for
// except, and fails showing both otherwise.
func (g *deadLetterGroup) waitRowsEqual(what string, except ...int) {
	g.t.Helper()
	var src, dst []string
	ok := false
	deadline := time.Now().Add(60 * time.Second)
	for !ok && time.Now().Before(deadline) {
		src, dst = rows(g.t, g.dsn, except...), rows(g.t, g.target)
		ok = strings.Join(src, " ") == strings.Join(dst, " ")
		if !ok {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ok {
		g.t.Fatalf("%s: the target differs from the source (but for %v)\nsource: %s\ntarget: %s\nworker log:\n%s", what, except, abridged(src), abridged(dst), lastLines(g.worker.Log(), 40))
	}
}

// abridged shows a long list of rows by its length, ends and size.
func abridged(rows []string) string {
	if len(rows) <= 20 {
		return fmt.Sprint(rows)
	}
	return fmt.Sprintf("%d rows: %v … %v", len(rows), rows[:10], rows[len(rows)-10:])
}

// deadLetters runs `pgflo dead-letters <args> --group … --nats-url …`.
func (g *deadLetterGroup) deadLetters(args ...string) string {
	g.t.Helper()
	args = append(append([]string{"dead-letters"}, args...), "--group", g.group, "--nats-url", g.natsURL())
	out, err := runPgflo(g.t, args...)
	if err != nil {
		g.t.Fatalf("pgflo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// deadLetterCount is pg_flo_dead_letters_total{reason} of the worker.
func (g *deadLetterGroup) deadLetterCount(reason string) float64 {
	v, _ := metricValue(scrape(g.t, g.metrics+"/metrics"), `pg_flo_dead_letters_total\{[^}]*reason="`+reason+`"[^}]*\}`)
	return v
}

// publishGarbage publishes a message that is not a change event on small's
// subject of the group, and returns its stream sequence.
func (g *deadLetterGroup) publishGarbage() uint64 {
	g.t.Helper()
	js := g.nats.JetStream(g.t)
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{
		Subject: jsproto.TableSubject(jsproto.SubjectPrefix(g.group), "public", "small"),
		Data:    []byte("this is not a change event"),
	})
	if err != nil {
		g.t.Fatalf("publish garbage: %v", err)
	}
	return ack.Sequence
}

// A row the target refuses stops the group under on_error: stop, with an
// error naming table, key, LSN and stream sequence, and nothing after it is
// applied until the constraint is gone; under dead_letter everything else
// is applied (the refused rows in a transaction of several too), the dead
// letters are listed and counted, and replaying them after the fix makes
// the target equal the source.
func TestDeadLetterRefusedRow(t *testing.T) {
	t.Run("stop", func(t *testing.T) {
		g := newDeadLetterGroup(t, "dlstop")
		g.startWorker("stop")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (1, 'ok')")
		g.waitRowsEqual("the first row")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (2, 'forbidden')")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (3, 'after')")
		refusal := regexp.MustCompile(`apply INSERT to \\"public\\".\\"small\\" key \(id\)=\(2\) at LSN [0-9A-F]+/[0-9A-F]+ .*SQLSTATE 23514.*\(stream sequence [0-9]+\)`)
		testenv.Eventually(t, 60*time.Second, "the refusal, named, in the worker's log", func() bool {
			return refusal.MatchString(g.worker.Log())
		})
		// Refused again after a back-off: the group stays at the change.
		testenv.Eventually(t, 60*time.Second, "the refusal repeated", func() bool {
			return len(refusal.FindAllString(g.worker.Log(), -1)) >= 2
		})
		if got := rows(t, g.target); strings.Join(got, " ") != "1=ok" {
			t.Fatalf("target rows %v: a change after the refused one was applied", got)
		}
		testenv.Exec(t, g.target, "ALTER TABLE small DROP CONSTRAINT no_forbidden")
		g.waitRowsEqual("after the constraint was dropped")
	})

	t.Run("dead_letter", func(t *testing.T) {
		g := newDeadLetterGroup(t, "dlletter")
		g.startWorker("dead_letter")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (1, 'ok')")
		g.waitRowsEqual("the first row")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (2, 'forbidden')")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (3, 'after')")
		// One transaction, one batch: the refused row among others.
		testenv.Exec(t, g.dsn, "INSERT INTO small SELECT g, CASE WHEN g = 15 THEN 'forbidden' ELSE 'v' || g END FROM generate_series(10, 20) g")
		testenv.Exec(t, g.dsn, "UPDATE small SET v = 'changed' WHERE id IN (1, 12)")
		testenv.Exec(t, g.dsn, "DELETE FROM small WHERE id = 20")
		g.waitRowsEqual("everything but the refused rows", 2, 15)
		defer func() {
			if t.Failed() {
				t.Logf("worker log:\n%s", g.worker.Log())
			}
		}()
		testenv.Eventually(t, 30*time.Second, "both dead letters counted", func() bool {
			return g.deadLetterCount("target") == 2
		})

		list := g.deadLetters("list")
		t.Logf("pgflo dead-letters list:\n%s", list)
		for _, want := range []string{`"public"."small"`, "(id)=(2)", "(id)=(15)", "SQLSTATE 23514", "target", "2 dead letters"} {
			if !strings.Contains(list, want) {
				t.Errorf("dead-letters list lacks %q:\n%s", want, list)
			}
		}
		if !regexp.MustCompile(`(?m)^1 .*\(id\)=\(2\) +[0-9A-F]+/[0-9A-F]+ `).MatchString(list) {
			t.Errorf("dead-letters list does not show the first dead letter with its key and LSN:\n%s", list)
		}

		testenv.Exec(t, g.target, "ALTER TABLE small DROP CONSTRAINT no_forbidden")
		out := g.deadLetters("replay", "--seq", "1")
		if !strings.Contains(out, "Replayed 1 dead letter") {
			t.Fatalf("replay --seq 1:\n%s", out)
		}
		g.waitRowsEqual("after replaying the first dead letter", 15)
		out = g.deadLetters("replay")
		if !strings.Contains(out, "Replayed 1 dead letter") {
			t.Fatalf("replay:\n%s", out)
		}
		g.waitRowsEqual("after replaying every dead letter")
		if list := g.deadLetters("list"); !strings.Contains(list, "no dead letters") {
			t.Errorf("dead letters left after the replay:\n%s", list)
		}
		// The group goes on as before.
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (30, 'later')")
		g.waitRowsEqual("a change after the replay")
	})
}

// Garbage on the group's subject stops the group under on_error: stop (its
// stream sequence named) and nothing after it is applied; a worker with
// dead_letter then sets it aside and applies the rest. A group running with
// dead_letter applies everything around it; replayed, the garbage comes back
// as a dead letter, since there is nothing to fix.
func TestDeadLetterUndecodableMessage(t *testing.T) {
	t.Run("stop", func(t *testing.T) {
		g := newDeadLetterGroup(t, "dlgarbagestop")
		g.startWorker("stop")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (1, 'ok')")
		g.waitRowsEqual("the first row")
		seq := g.publishGarbage()
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (2, 'after')")
		named := regexp.MustCompile(fmt.Sprintf(`sequence %d \(subject pgflo\.dlgarbagestop\.public\.small\).*\(stream sequence %d\)`, seq, seq))
		testenv.Eventually(t, 60*time.Second, "the garbage, named, in the worker's log", func() bool {
			return len(named.FindAllString(g.worker.Log(), -1)) >= 2
		})
		if got := rows(t, g.target); strings.Join(got, " ") != "1=ok" {
			t.Fatalf("target rows %v: a change after the garbage was applied", got)
		}
		g.worker.Kill()
		g.startWorker("dead_letter")
		g.waitRowsEqual("with dead_letter, the change after the garbage")
		if list := g.deadLetters("list"); !strings.Contains(list, "decode") || !strings.Contains(list, "1 dead letter") {
			t.Errorf("dead-letters list:\n%s", list)
		}
	})

	t.Run("dead_letter", func(t *testing.T) {
		g := newDeadLetterGroup(t, "dlgarbage")
		g.startWorker("dead_letter")
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (1, 'ok')")
		g.waitRowsEqual("the first row")
		seq := g.publishGarbage()
		testenv.Exec(t, g.dsn, "INSERT INTO small SELECT g, 'v' || g FROM generate_series(2, 10) g")
		g.waitRowsEqual("everything around the garbage")
		testenv.Eventually(t, 30*time.Second, "the dead letter counted", func() bool {
			return g.deadLetterCount("decode") == 1
		})
		list := g.deadLetters("list")
		t.Logf("pgflo dead-letters list:\n%s", list)
		for _, want := range []string{"decode", fmt.Sprintf(" %d ", seq), "1 dead letter"} {
			if !strings.Contains(list, want) {
				t.Errorf("dead-letters list lacks %q:\n%s", want, list)
			}
		}
		js := g.nats.JetStream(t)
		if info, err := js.Stream(context.Background(), deadletter.StreamName(g.group)); err != nil {
			t.Fatalf("dead-letter stream: %v", err)
		} else if subj := info.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != deadletter.Subject(g.group) {
			t.Errorf("dead-letter stream subjects %v, want %s", subj, deadletter.Subject(g.group))
		}

		if out := g.deadLetters("replay"); !strings.Contains(out, "Replayed 1 dead letter") {
			t.Fatalf("replay:\n%s", out)
		}
		testenv.Eventually(t, 30*time.Second, "the replayed garbage set aside again", func() bool {
			return g.deadLetterCount("decode") == 2
		})
		testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (11, 'later')")
		g.waitRowsEqual("a change after the replay")
		if list := g.deadLetters("list"); !strings.Contains(list, "1 dead letter") {
			t.Errorf("dead-letters list after the replay:\n%s", list)
		}

		// Dropping the group drops its dead letters.
		g.worker.Kill()
		g.replicator.Kill()
		out, err := runPgflo(t, "cleanup", "--group", g.group, "--nats-url", g.natsURL(), "--yes")
		if err != nil || !strings.Contains(out, "dropped     JetStream stream "+deadletter.StreamName(g.group)+" (1 dead letter)") {
			t.Fatalf("cleanup: %v\n%s", err, out)
		}
		if _, err := js.Stream(context.Background(), deadletter.StreamName(g.group)); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("the dead-letter stream after cleanup: %v", err)
		}
	})
}

// packsField is the worker's snapshot_packs line, none for "".
func packsField(packs string) string {
	if packs == "" {
		return ""
	}
	return "    snapshot_packs: " + packs + "\n"
}

// A snapshot row the target refuses, in a pack of snapshot rows the worker
// keeps whole (snapshot_packs: keep) or expands into a message per row that
// pg_flo_postgres copies as the pack (the default): the row alone becomes a
// dead letter, every other row of its pack is applied, and the replayed row
// lands once the constraint is gone.
func TestDeadLetterRefusedSnapshotRow(t *testing.T) {
	t.Run("keep", func(t *testing.T) { refusedSnapshotRow(t, "dlsnapshot", "keep") })
	t.Run("expand", func(t *testing.T) { refusedSnapshotRow(t, "dlexpanded", "") })
}

func refusedSnapshotRow(t *testing.T, group, packs string) {
	g := newDeadLetterGroup(t, group,
		"INSERT INTO small SELECT g, CASE WHEN g = 500 THEN 'forbidden' ELSE 'v' || g END FROM generate_series(1, 2000) g")
	g.packs = packs
	g.startWorker("dead_letter")
	g.waitRowsEqual("every snapshot row but the refused one", 500)
	testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (3000, 'streamed')")
	g.waitRowsEqual("a streamed change after the snapshot", 500)
	list := g.deadLetters("list")
	t.Logf("pgflo dead-letters list:\n%s", list)
	if !strings.Contains(list, "(id)=(500)") || !strings.Contains(list, "1 dead letter") {
		t.Fatalf("dead-letters list:\n%s", list)
	}
	testenv.Exec(t, g.target, "ALTER TABLE small DROP CONSTRAINT no_forbidden")
	g.deadLetters("replay")
	g.waitRowsEqual("after the replay")
}

// pg_flo's command line: `pgflo worker postgres` with PG_FLO_ON_ERROR=
// dead_letter sets the refused row aside and applies the rest.
func TestDeadLetterCommandLine(t *testing.T) {
	g := newDeadLetterGroup(t, "dlcli")
	g.worker = testenv.StartProcessEnv(t, "worker", []string{"PG_FLO_ON_ERROR=dead_letter"}, g.bin, "worker", "postgres",
		"--group", g.group, "--nats-url", g.natsURL(),
		"--target-host", "127.0.0.1", "--target-port", strconv.Itoa(pg.Port()), "--target-dbname", dbName(t, g.target),
		"--target-user", "postgres", "--target-password", compatPassword)
	testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (1, 'ok')")
	testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (2, 'forbidden')")
	testenv.Exec(t, g.dsn, "INSERT INTO small VALUES (3, 'after')")
	g.waitRowsEqual("everything but the refused row", 2)
	if list := g.deadLetters("list"); !strings.Contains(list, "(id)=(2)") || !strings.Contains(list, "1 dead letter") {
		t.Fatalf("dead-letters list:\n%s", list)
	}
	if strings.Contains(g.worker.Log(), compatPassword) {
		t.Errorf("the worker's log shows the password")
	}
}
