package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Every change of a mixed workload arrives exactly once, in order, with the
// right op, table, values and LSNs.
func TestStreamEndToEnd(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int PRIMARY KEY, email text, n int)")
	p := newPipeline(t, dsn, "e2e")
	p.startReplicator()
	p.startWorker("")

	for tx := 0; tx < 10; tx++ {
		testenv.Exec(t, dsn, fmt.Sprintf(
			"INSERT INTO users SELECT g, 'user' || g || '@example.com', g FROM generate_series(%d, %d) g", tx*100+1, tx*100+100))
	}
	testenv.Exec(t, dsn, "UPDATE users SET email = 'changed-' || id, n = n * 10 WHERE id <= 100")
	testenv.Exec(t, dsn, "DELETE FROM users WHERE id > 950")
	testenv.Exec(t, dsn, "TRUNCATE users")

	const want = 1000 + 100 + 50 + 1
	testenv.Eventually(t, 60*time.Second, "all 1151 changes in the output", func() bool { return len(p.events()) >= want })
	time.Sleep(time.Second) // nothing more may arrive
	events := p.events()
	if len(events) != want {
		t.Fatalf("got %d events, want exactly %d", len(events), want)
	}

	type seen struct{ ops []event.Op }
	byID := map[string][]event.Event{}
	counts := map[event.Op]int{}
	for _, ev := range events {
		counts[ev.Op]++
		if ev.Schema != "public" || ev.Table != "users" {
			t.Fatalf("event for %s.%s", ev.Schema, ev.Table)
		}
		if ev.Op == event.Truncate {
			if ev.New != nil || ev.Old != nil {
				t.Errorf("TRUNCATE carries rows: %+v", ev)
			}
			continue
		}
		byID[keyOf(ev)] = append(byID[keyOf(ev)], ev)
	}
	if counts[event.Insert] != 1000 || counts[event.Update] != 100 || counts[event.Delete] != 50 || counts[event.Truncate] != 1 {
		t.Fatalf("op counts %v", counts)
	}
	if events[len(events)-1].Op != event.Truncate {
		t.Errorf("the TRUNCATE is not last")
	}
	for i := 1; i <= 1000; i++ {
		id := strconv.Itoa(i)
		evs := byID[id]
		var ops []string
		for _, ev := range evs {
			ops = append(ops, string(ev.Op))
		}
		wantOps := "INSERT"
		if i <= 100 {
			wantOps += ",UPDATE"
		}
		if i > 950 {
			wantOps += ",DELETE"
		}
		if strings.Join(ops, ",") != wantOps {
			t.Fatalf("id %d: ops %v, want %s", i, ops, wantOps)
		}
		for j := 1; j < len(evs); j++ {
			if evs[j].LSN <= evs[j-1].LSN || evs[j].CommitLSN < evs[j-1].CommitLSN {
				t.Errorf("id %d: LSNs not ascending: %s then %s", i, evs[j-1].LSN, evs[j].LSN)
			}
		}
		ins := evs[0]
		if v, _ := ins.New.Get("email"); v.Text != "user"+id+"@example.com" {
			t.Errorf("id %d: inserted email %q", i, v.Text)
		}
		if ins.Xid == 0 || ins.CommitTime.IsZero() || ins.Snapshot || ins.LSN > ins.CommitLSN {
			t.Errorf("id %d: insert header %+v", i, ins)
		}
		if len(ins.Columns) != 3 || !ins.Columns[0].Key || ins.Columns[0].Type != "int4" || ins.Columns[1].Type != "text" {
			t.Errorf("id %d: columns %+v", i, ins.Columns)
		}
		if i <= 100 {
			up := evs[1]
			if v, _ := up.New.Get("email"); v.Text != "changed-"+id {
				t.Errorf("id %d: updated email %q", i, v.Text)
			}
			if v, _ := up.Old.Get("id"); v.Text != id || len(up.Old) != 1 {
				t.Errorf("id %d: update old key %+v", i, up.Old)
			}
		}
		if i > 950 {
			del := evs[len(evs)-1]
			if del.New != nil || len(del.Old) != 1 {
				t.Errorf("id %d: delete rows new=%v old=%v", i, del.New, del.Old)
			}
		}
	}
}

// writer inserts rows id from..to into items, one small transaction at a
// time, until done; used while processes are killed and restarted.
func writeRange(t *testing.T, dsn string, from, to, perTx int) {
	t.Helper()
	for id := from; id <= to; id += perTx {
		last := min(id+perTx-1, to)
		testenv.Exec(t, dsn, fmt.Sprintf("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(%d, %d) g", id, last))
	}
}

// assertAllInserted checks that every id in [1, n] was inserted at least once
// (restarts may deliver twice, never lose).
func waitAllInserted(t *testing.T, p *pipeline, n int, timeout time.Duration) {
	t.Helper()
	var missing []int
	testenv.Eventually(t, timeout, fmt.Sprintf("all %d inserts in the output", n), func() bool {
		seen := make([]bool, n+1)
		for _, ev := range p.events() {
			if ev.Op != event.Insert {
				continue
			}
			if id, err := strconv.Atoi(keyOf(ev)); err == nil && id >= 1 && id <= n {
				seen[id] = true
			}
		}
		missing = missing[:0]
		for id := 1; id <= n; id++ {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
}

// Killing (SIGKILL) the replicator, the worker, or restarting NATS while
// changes flow loses nothing — also with the group's ownership lease
// (nats.url), which the killed replicator leaves behind for its successor to
// wait out, and which the owner keeps across the NATS restart.
func TestRestartsLoseNothing(t *testing.T) {
	t.Run("without group state", func(t *testing.T) { restartsLoseNothing(t, false) })
	t.Run("with the group's lease", func(t *testing.T) { restartsLoseNothing(t, true) })
}

func restartsLoseNothing(t *testing.T, lease bool) {
	p := itemsPipeline(t, "restarts", lease)
	dsn := p.dsn
	p.startReplicator()
	p.startWorker("")

	next := 1
	phase := func(name string, disrupt func()) {
		t.Helper()
		from, to := next, next+1999
		next = to + 1
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeRange(t, dsn, from, to, 20)
		}()
		// Disrupt once part of this phase's rows went through.
		testenv.Eventually(t, 60*time.Second, name+": changes flowing", func() bool {
			for _, ev := range p.events() {
				if id, _ := strconv.Atoi(keyOf(ev)); id >= from+200 {
					return true
				}
			}
			return false
		})
		disrupt()
		wg.Wait()
		waitAllInserted(t, p, to, 90*time.Second)
		t.Logf("%s: all %d inserts arrived (%d output lines)", name, to, len(p.events()))
	}

	phase("replicator kill -9", func() {
		p.replicator.Kill()
		time.Sleep(500 * time.Millisecond)
		p.startReplicator()
	})
	phase("worker kill -9", func() {
		p.worker.Kill()
		time.Sleep(500 * time.Millisecond)
		p.startWorker("")
	})
	phase("NATS restart", func() {
		p.nats.Restart(t)
	})
	if log := p.replicator.Log(); lease && !strings.Contains(log, "Took over replication group restarts") {
		t.Fatalf("the replicator started after the kill did not wait out its predecessor's lease:\n%s", infoLines(log))
	}
}

// An output that fails for a while gets every change once it recovers: the
// worker acks JetStream only after the output succeeded and redelivers what
// failed.
func TestOutputFailureRedelivers(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	var (
		mu       sync.Mutex
		failing  = true
		failures int
		received = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if failing {
			failures++
			http.Error(w, "target down", http.StatusServiceUnavailable)
			return
		}
		ev, err := eventtest.Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		received[keyOf(*ev)]++
	}))
	defer srv.Close()

	p := newPipeline(t, dsn, "failing")
	p.startReplicator()
	p.startWorker(fmt.Sprintf("http_client:\n    url: %s\n    verb: POST\n    retries: 0\n    max_in_flight: 4", srv.URL))
	writeRange(t, dsn, 1, 500, 50)
	testenv.Eventually(t, 30*time.Second, "the output failing", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failures >= 3
	})
	time.Sleep(time.Second)
	mu.Lock()
	failing = false
	mu.Unlock()
	testenv.Eventually(t, 60*time.Second, "all 500 inserts delivered after the output recovered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) == 500
	})
}
