package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/natsembed"
)

var pg *Postgres

func TestMain(m *testing.M) {
	var err error
	if pg, err = StartPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func TestNewDatabaseHasLogicalWAL(t *testing.T) {
	dsn := pg.NewDatabase(t)
	if got := QueryRows(t, dsn, "SHOW wal_level"); len(got) != 1 || got[0][0] != "logical" {
		t.Fatalf("wal_level = %v, want logical", got)
	}
	if got := QueryRows(t, dsn, "SELECT current_database() <> 'postgres'"); got[0][0] != "t" {
		t.Fatalf("DSN %s points at the postgres database", dsn)
	}
}

func TestNewDatabaseIsDistinct(t *testing.T) {
	a, b := pg.NewDatabase(t), pg.NewDatabase(t)
	if a == b {
		t.Fatalf("same DSN twice: %s", a)
	}
	Exec(t, a, "CREATE TABLE only_in_a (id int)")
	if n := QueryInt(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"); n != 0 {
		t.Fatalf("table of database a visible in database b")
	}
}

func TestNewDatabaseCleanupDropsSlots(t *testing.T) {
	// A client streaming from a slot keeps it active; cleanup must end it.
	recvlogical := filepath.Join(filepath.Dir(pg.postgres), "pg_recvlogical")
	if !isExecutable(recvlogical) {
		t.Skip("pg_recvlogical not installed")
	}
	var name string
	var cmd *exec.Cmd
	// --no-loop: once the cleanup ends its connection it exits instead of
	// retrying forever; the kill is for a test that failed before that.
	t.Cleanup(func() {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	t.Run("inner", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		name = QueryRows(t, dsn, "SELECT current_database()")[0][0]
		Exec(t, dsn, "SELECT pg_create_logical_replication_slot('idle', 'pgoutput')")
		Exec(t, dsn, "SELECT pg_create_logical_replication_slot('busy', 'test_decoding')")
		cmd = exec.Command(recvlogical, "-d", dsn, "-S", "busy", "--start", "--no-loop", "-f", os.DevNull)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait() //nolint:errcheck // ended by the cleanup's pg_terminate_backend
		Eventually(t, 10*time.Second, "slot busy active", func() bool {
			return QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'busy' AND active") == 1
		})
	})
	if n := QueryInt(t, pg.AdminDSN(), "SELECT count(*) FROM pg_database WHERE datname = $1", name); n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
	if n := QueryInt(t, pg.AdminDSN(), "SELECT count(*) FROM pg_replication_slots WHERE database = $1", name); n != 0 {
		t.Fatalf("slots of %s still exist after its test ended", name)
	}
}

func TestMissingBinariesError(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := pgSearchPatterns
	pgSearchPatterns = []string{filepath.Join(t.TempDir(), "*", "bin")}
	t.Cleanup(func() { pgSearchPatterns = saved })
	_, err := StartPostgres()
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found") ||
		!strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Fatalf("want the install hint, got %v", err)
	}
}

func TestQueryRowsTextAndNull(t *testing.T) {
	got := QueryRows(t, pg.AdminDSN(),
		"SELECT 1::int8, NULL::text, ''::text, 'NULL'::text, 1.50::numeric, '{1,NULL}'::int[], $1::text",
		"arg")
	want := []string{"1", NullText, "", "NULL", "1.50", "{1,NULL}", "arg"}
	if len(got) != 1 || strings.Join(got[0], "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if rows := QueryRows(t, pg.AdminDSN(), "SELECT 1 WHERE false"); len(rows) != 0 {
		t.Fatalf("got %q, want no rows", rows)
	}
}

func TestRestartKeepsData(t *testing.T) {
	dsn := pg.NewDatabase(t)
	Exec(t, dsn, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
	port := pg.Port()
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if pg.Port() != port {
		t.Fatalf("port changed from %d to %d", port, pg.Port())
	}
	if n := QueryInt(t, dsn, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("count after restart = %d, want 100", n)
	}

	// Down means down: connections fail until StartServer.
	if err := pg.StopServer(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ping(ctx, dsn); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	if n := QueryInt(t, dsn, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("count after stop/start = %d, want 100", n)
	}
}

func TestNATSRestartKeepsStream(t *testing.T) {
	t.Parallel()
	n := StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	url := n.URL()
	n.Restart(t)
	if n.URL() != url {
		t.Fatalf("URL changed from %s to %s", url, n.URL())
	}
	nc, err = nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("message lost across restart: %v", err)
	}
	if string(msg.Data) != "kept" {
		t.Fatalf("got %q, want kept", msg.Data)
	}

	n.Shutdown()
	if _, err := nats.Connect(n.URL(), nats.Timeout(time.Second)); err == nil {
		t.Fatal("connected to a shut down server")
	}
	n.Start(t)
}

// The max payload is the server's, as clients see it, and survives a restart.
func TestNATSMaxPayload(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []NATSOption
		want int64
	}{
		{"default", nil, int64(natsembed.DefaultMaxPayload)},
		{"with max payload", []NATSOption{WithMaxPayload(16 << 10)}, 16 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := StartNATS(t, tt.opts...)
			if got := n.JetStream(t).Conn().MaxPayload(); got != tt.want {
				t.Errorf("max payload = %d, want %d", got, tt.want)
			}
			n.Restart(t)
			if got := n.JetStream(t).Conn().MaxPayload(); got != tt.want {
				t.Errorf("after restart max payload = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestProcess(t *testing.T) {
	t.Parallel()
	p := StartProcessEnv(t, "sh", []string{"TESTENV_GREETING=hello"},
		"/bin/sh", "-c", `echo "$TESTENV_GREETING"; echo oops >&2; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done`)
	Eventually(t, 5*time.Second, "greeting in log", func() bool {
		return strings.Contains(p.Log(), "hello\noops\n")
	})
	if p.Exited() {
		t.Fatal("exited early")
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if !strings.Contains(p.Log(), "bye") {
		t.Fatalf("SIGTERM handler did not run: %q", p.Log())
	}

	k := StartProcess(t, "sleeper", "/bin/sh", "-c", "sleep 30")
	k.Kill()
	if !k.Exited() || k.Wait() == nil {
		t.Fatal("killed process should have exited with an error")
	}
}

// TestBuildMain checks the build-and-install step of Binary on a tiny module, so
// this package's tests do not depend on the state of the repository's main.go.
func TestBuildMain(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.21\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from build\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	for range 2 { // the second build replaces the first
		bin, err := buildMain(src, out, "hello")
		if err != nil {
			t.Fatal(err)
		}
		p := StartProcess(t, "hello", bin)
		if err := p.Wait(); err != nil || p.Log() != "hello from build\n" {
			t.Fatalf("run built binary: %v, output %q", err, p.Log())
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Fatalf("build dir holds %d entries, want just the binary", len(entries))
	}

	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\nfunc main() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := buildMain(src, out, "hello"); err == nil || !strings.Contains(err.Error(), "undefined") {
		t.Fatalf("want a build error with the compiler output, got %v", err)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testenv", "testenv_test.go")); err != nil {
		t.Fatalf("repo root %s does not hold this package: %v", root, err)
	}
}
