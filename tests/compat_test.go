package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// The password pg_flo's e2e scripts use: the test cluster trusts local
// connections, so it only has to survive quoting, never appear in output.
const compatPassword = "s3cret!@#%pw"

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	return testenv.QueryRows(t, dsn, "SELECT current_database()")[0][0]
}

const compatSchema = "CREATE TABLE users (id int PRIMARY KEY, email text, phone text, age int, note text)"

func populate(t *testing.T, dsn string, from, to int) {
	t.Helper()
	testenv.Exec(t, dsn, fmt.Sprintf("INSERT INTO users SELECT g, 'user' || g || '@example.com', '555' || lpad(g::text, 7, '0'), g %% 90, repeat('n', g %% 50) FROM generate_series(%d, %d) g", from, to))
}

func waitDigests(t *testing.T, src, dst string) {
	t.Helper()
	waitDigestsEqual(t, src, dst, []string{"users"}, 90*time.Second)
}

// pg_flo's own command lines, verbatim but for host, port and credentials:
// copy-and-stream into an empty target whose schema exists.
func TestPgFloCommandLines(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	testenv.Exec(t, dst, compatSchema)
	populate(t, src, 1, 2000)
	nats := testenv.StartNATS(t)
	bin := testenv.Binary(t)
	port := strconv.Itoa(pg.Port())
	rep := testenv.StartProcess(t, "replicator", bin, "replicator",
		"--host", "127.0.0.1", "--port", port, "--dbname", dbName(t, src), "--user", "postgres", "--password", compatPassword,
		"--group", "compat", "--tables", "users", "--nats-url", nats.URL(), "--copy-and-stream")
	wrk := testenv.StartProcess(t, "worker", bin, "worker", "postgres",
		"--group", "compat", "--nats-url", nats.URL(),
		"--target-host", "127.0.0.1", "--target-port", port, "--target-dbname", dbName(t, dst), "--target-user", "postgres", "--target-password", compatPassword)
	waitDigests(t, src, dst)
	testenv.Exec(t, src, "UPDATE users SET age = age + 1 WHERE id % 7 = 0; DELETE FROM users WHERE id % 11 = 0")
	populate(t, src, 2001, 2100)
	waitDigests(t, src, dst)
	for _, p := range []*testenv.Process{rep, wrk} {
		if strings.Contains(p.Log(), compatPassword) {
			t.Errorf("a log shows the password")
		}
	}
}

// stdoutEvents parses the JSON lines a `worker stdout` printed (its log has
// stdout and stderr together; log lines are not JSON objects).
func stdoutEvents(log string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["Type"] != nil {
			out = append(out, ev)
		}
	}
	return out
}

// The same run driven only by a pg-flo.yaml and only by PG_FLO_* variables:
// each process once from a config file and once from the environment; the
// worker's stdout has one JSON line per change in pg_flo's shape.
func TestPgFloConfigFileAndEnvironment(t *testing.T) {
	for _, replicatorFromFile := range []bool{true, false} {
		name := map[bool]string{true: "replicator from file, worker from env", false: "replicator from env, worker from file"}[replicatorFromFile]
		t.Run(name, func(t *testing.T) { runFileAndEnv(t, replicatorFromFile) })
	}
}

func runFileAndEnv(t *testing.T, replicatorFromFile bool) {
	src := pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	nats := testenv.StartNATS(t)
	bin := testenv.Binary(t)
	group := "from-file"
	if !replicatorFromFile {
		group = "from-env"
	}
	settings := [][2]string{
		{"host", "127.0.0.1"}, {"port", strconv.Itoa(pg.Port())}, {"dbname", dbName(t, src)}, {"user", "postgres"},
		{"password", compatPassword}, {"group", group}, {"schema", "public"}, {"tables", "users"}, {"nats-url", nats.URL()},
	}
	var file strings.Builder
	var env []string
	for _, kv := range settings {
		fmt.Fprintf(&file, "%s: %q\n", kv[0], kv[1])
		env = append(env, "PG_FLO_"+strings.ToUpper(strings.ReplaceAll(kv[0], "-", "_"))+"="+kv[1])
	}
	cfg := filepath.Join(t.TempDir(), "pg-flo.yaml")
	if err := os.WriteFile(cfg, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var rep, wrk *testenv.Process
	if replicatorFromFile {
		rep = testenv.StartProcess(t, "replicator", bin, "replicator", "--config", cfg)
	} else {
		rep = testenv.StartProcessEnv(t, "replicator", env, bin, "replicator")
	}
	slot := "pg_flo_" + strings.ReplaceAll(group, "-", "_") + "_publication"
	testenv.Eventually(t, 30*time.Second, "the replicator streaming", func() bool {
		rows := testenv.QueryRows(t, src, "SELECT active::text FROM pg_replication_slots WHERE slot_name = $1", slot)
		return len(rows) == 1 && rows[0][0] == "true"
	})
	if replicatorFromFile {
		wrk = testenv.StartProcessEnv(t, "worker", env, bin, "worker", "stdout")
	} else {
		wrk = testenv.StartProcess(t, "worker", bin, "worker", "stdout", "--config", cfg)
	}
	populate(t, src, 1, 20)
	testenv.Exec(t, src, "UPDATE users SET age = 99 WHERE id = 3; DELETE FROM users WHERE id = 4")
	var events []map[string]any
	testenv.Eventually(t, 60*time.Second, "22 JSON lines on the worker's stdout", func() bool {
		events = stdoutEvents(wrk.Log())
		return len(events) >= 22
	})
	if len(events) != 22 {
		t.Fatalf("%d JSON lines, want one per change (22)", len(events))
	}
	upd := events[20]
	if upd["Type"] != "UPDATE" || upd["Table"] != "users" || upd["Schema"] != "public" {
		t.Fatalf("21st line %v", upd)
	}
	newTuple, _ := upd["NewTuple"].(map[string]any)
	if newTuple["age"] != float64(99) || newTuple["email"] != "user3@example.com" {
		t.Errorf("UPDATE NewTuple %v: want typed values (age the number 99)", newTuple)
	}
	if key, _ := upd["ReplicationKey"].(map[string]any); key["Type"] != "PRIMARY KEY" {
		t.Errorf("ReplicationKey %v", upd["ReplicationKey"])
	}
	if del := events[21]; del["Type"] != "DELETE" || del["OldTuple"] == nil || del["NewTuple"] != nil {
		t.Errorf("DELETE line %v", del)
	}
	fromFile := rep
	if !replicatorFromFile {
		fromFile = wrk
	}
	if !strings.Contains(fromFile.Log(), "Using config file: "+cfg) {
		t.Errorf("the process run from the config file did not say which file it used")
	}
	for _, p := range []*testenv.Process{rep, wrk} {
		if strings.Contains(p.Log(), compatPassword) {
			t.Errorf("a log shows the password")
		}
	}
}

// --print-config gives a config that passes lint, holds no password, and
// runs the same with `pgflo run`.
func TestPrintConfigRunsTheSame(t *testing.T) {
	src := pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	nats := testenv.StartNATS(t)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	printed := map[string]string{}
	for name, args := range map[string][]string{
		"replicator": {"replicator", "--host", "127.0.0.1", "--port", strconv.Itoa(pg.Port()), "--dbname", dbName(t, src), "--user", "postgres",
			"--password", compatPassword, "--group", "printed", "--nats-url", nats.URL(), "--print-config"},
		"worker": {"worker", "file", "--group", "printed", "--nats-url", nats.URL(), "--file-output-dir", filepath.Join(dir, "out"), "--print-config"},
		"worker_postgres": {"worker", "postgres", "--group", "printed", "--nats-url", nats.URL(), "--target-host", "h", "--target-dbname", "d",
			"--target-user", "u", "--target-password", compatPassword, "--target-sync-schema", "--source-host", "h", "--source-dbname", "d",
			"--source-user", "u", "--source-password", compatPassword, "--print-config"},
	} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("%s --print-config: %v", name, err)
		}
		if strings.Contains(string(out), compatPassword) || strings.Contains(string(out), "s3cret") {
			t.Errorf("%s --print-config shows the password:\n%s", name, out)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		// The passwords come from the environment, as when it runs.
		lintCmd := exec.Command(bin, "lint", path)
		lintCmd.Env = append(os.Environ(), "PG_FLO_PASSWORD=x", "PG_FLO_TARGET_PASSWORD=x", "PG_FLO_SOURCE_PASSWORD=x")
		if lint, err := lintCmd.CombinedOutput(); err != nil {
			t.Errorf("pgflo lint of the printed %s config: %v\n%s\n%s", name, err, lint, out)
		}
		printed[name] = path
	}
	env := []string{"PG_FLO_PASSWORD=" + compatPassword}
	testenv.StartProcessEnv(t, "replicator", env, bin, "run", printed["replicator"])
	testenv.Eventually(t, 30*time.Second, "the printed replicator streaming", func() bool {
		rows := testenv.QueryRows(t, src, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'pg_flo_printed_publication'")
		return len(rows) == 1 && rows[0][0] == "true"
	})
	testenv.StartProcess(t, "worker", bin, "run", printed["worker"])
	populate(t, src, 1, 50)
	testenv.Eventually(t, 60*time.Second, "50 changes in pg_flo's file", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "out", "pg_flo_log_*.jsonl"))
		n := 0
		for _, f := range files {
			data, _ := os.ReadFile(f)
			n += strings.Count(string(data), "\n")
		}
		return n == 50
	})
}

// `worker webhook` POSTs each change, in pg_flo's JSON shape, and a target
// that fails for a while gets every change once it answers again.
func TestPgFloWebhookSink(t *testing.T) {
	src := pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	var (
		mu       sync.Mutex
		failing  = true
		received []map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if failing {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		var ev map[string]any
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &ev) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		received = append(received, ev)
	}))
	defer srv.Close()
	p := newPipeline(t, src, "hook")
	p.startReplicator()
	testenv.StartProcess(t, "worker", p.bin, "worker", "webhook", "--group", "hook", "--nats-url", p.nats.URL(), "--webhook-url", srv.URL)
	populate(t, src, 1, 30)
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	failing = false
	mu.Unlock()
	testenv.Eventually(t, 60*time.Second, "30 POSTs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= 30
	})
	mu.Lock()
	defer mu.Unlock()
	ids := map[float64]bool{}
	for _, ev := range received {
		if ev["Type"] != "INSERT" || ev["Table"] != "users" {
			t.Fatalf("POSTed %v", ev)
		}
		if nt, ok := ev["NewTuple"].(map[string]any); ok {
			id, _ := nt["id"].(float64)
			ids[id] = true
		}
	}
	if len(ids) != 30 {
		t.Errorf("%d distinct ids POSTed, want 30", len(ids))
	}
}
