package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// End-to-end tests of TLS to PostgreSQL: source and target on a cluster
// that admits TLS clients with a certificate of its CA only, with
// sslmode=verify-full for the replicator's replication connection, its
// snapshot connections and pg_flo_postgres.

// startTLSPostgres starts a cluster of its own for the test
// (testenv.StartPostgresTLS) and stops it when the test ends.
func startTLSPostgres(t *testing.T) *testenv.Postgres {
	t.Helper()
	p, err := testenv.StartPostgresTLS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop the TLS cluster: %v", err)
		}
	})
	return p
}

// connectionLine matches the server's log_connections line of an
// authorized connection (a replication connection's names no database).
var connectionLine = regexp.MustCompile(`(replication )?connection authorized: user=\S+(?: database=(\S+))?.*`)

// assertAllTLS checks, in the server's log, that every connection was TLS,
// and that a replication connection and at least minPlain other connections
// to source reached it; and, in
// pg_stat_ssl, that the connections open now (walsender, target writers)
// are TLS.
func assertAllTLS(t *testing.T, p *testenv.Postgres, source, target string, minPlain int) {
	t.Helper()
	logText, err := os.ReadFile(p.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	replication, plain := 0, 0
	for _, m := range connectionLine.FindAllStringSubmatch(string(logText), -1) {
		if !strings.Contains(m[0], "SSL enabled") {
			t.Errorf("a connection without TLS: %s", m[0])
		}
		switch {
		case m[1] != "":
			replication++
		case m[2] == source:
			plain++
		}
	}
	if replication == 0 || plain < minPlain {
		t.Errorf("source connections in the log: %d replication, %d others; want a replication one and %d others", replication, plain, minPlain)
	}
	rows := testenv.QueryRows(t, p.AdminDSN(), `SELECT a.datname, a.backend_type, s.ssl::text, coalesce(s.version, '')
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		WHERE a.datname IN ($1, $2) AND a.pid <> pg_backend_pid()`, source, target)
	walsenders, writers := 0, 0
	for _, r := range rows {
		if r[2] != "true" {
			t.Errorf("a connection without TLS now: %v", r)
		}
		switch {
		case r[0] == source && r[1] == "walsender":
			walsenders++
		case r[0] == target && r[1] == "client backend":
			writers++
		}
	}
	if walsenders == 0 || writers == 0 {
		t.Errorf("open TLS connections: %d walsenders on the source, %d on the target, want both: %v", walsenders, writers, rows)
	}
}

func TestPostgresTLS(t *testing.T) {
	p := startTLSPostgres(t)
	bin := testenv.Binary(t)

	// `pgflo run` with URL DSNs carrying sslmode=verify-full, sslrootcert,
	// sslcert and sslkey; the user is authenticated by its certificate.
	t.Run("run config", func(t *testing.T) {
		src, dst := p.NewDatabase(t), p.NewDatabase(t)
		testenv.Exec(t, src, compatSchema)
		testenv.Exec(t, dst, compatSchema)
		populate(t, src, 1, 500)
		nats := testenv.StartNATS(t)
		dir := t.TempDir()
		write := func(name, body string) string {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		testenv.StartProcess(t, "replicator", bin, "run", write("replicator.yaml", fmt.Sprintf(`%s
input:
  pg_flo_replicator:
    dsn: %q
    group: pgtls
    tables: [users]
    mode: copy_and_stream
    max_copy_workers_per_table: 3
    nats:
      url: %s
output:
  pg_flo_jetstream:
    url: %s
    group: pgtls
`, quietHTTP, src, nats.URL(), nats.URL())))
		testenv.StartProcess(t, "worker", bin, "run", write("worker.yaml", fmt.Sprintf(`%s
input:
  pg_flo_worker:
    url: %s
    group: pgtls
    snapshot_packs: keep
output:
  pg_flo_postgres:
    dsn: %q
    group: pgtls
`, quietHTTP, nats.URL(), dst)))
		waitDigests(t, src, dst)
		changeUsers(t, src)
		waitDigests(t, src, dst)
		assertAllTLS(t, p, dbName(t, src), dbName(t, dst), 2)
	})

	// pg_flo's command lines with the TLS flags; the user needs its
	// certificate and its password (scram-sha-256 clientcert=verify-full).
	t.Run("command line", func(t *testing.T) {
		const password = `tls pw #1: 'q'`
		src, dst := p.NewDatabase(t), p.NewDatabase(t)
		testenv.Exec(t, src, compatSchema)
		testenv.Exec(t, dst, compatSchema)
		testenv.Exec(t, p.AdminDSN(), "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rep') THEN CREATE ROLE rep LOGIN SUPERUSER PASSWORD '"+strings.ReplaceAll(password, "'", "''")+"'; END IF; END $$")
		populate(t, src, 1, 500)
		cert, key, err := p.TLS().IssueClient("rep")
		if err != nil {
			t.Fatal(err)
		}
		nats := testenv.StartNATS(t)
		port := strconv.Itoa(p.Port())
		rep := testenv.StartProcess(t, "replicator", bin, "replicator",
			"--host", "127.0.0.1", "--port", port, "--dbname", dbName(t, src), "--user", "rep", "--password", password,
			"--sslmode", "verify-full", "--sslrootcert", p.TLS().CA, "--sslcert", cert, "--sslkey", key,
			"--group", "pgtlscli", "--tables", "users", "--nats-url", nats.URL(), "--copy-and-stream")
		// The target's TLS settings as PG_FLO_* environment variables.
		wrk := testenv.StartProcessEnv(t, "worker", []string{"PG_FLO_TARGET_SSLMODE=verify-full", "PG_FLO_TARGET_SSLROOTCERT=" + p.TLS().CA,
			"PG_FLO_TARGET_SSLCERT=" + cert, "PG_FLO_TARGET_SSLKEY=" + key}, bin, "worker", "postgres",
			"--group", "pgtlscli", "--nats-url", nats.URL(),
			"--target-host", "127.0.0.1", "--target-port", port, "--target-dbname", dbName(t, dst), "--target-user", "rep", "--target-password", password)
		waitDigests(t, src, dst)
		changeUsers(t, src)
		waitDigests(t, src, dst)
		assertAllTLS(t, p, dbName(t, src), dbName(t, dst), 2)
		for _, proc := range []*testenv.Process{rep, wrk} {
			if strings.Contains(proc.Log(), "tls pw") {
				t.Errorf("%s shows the password", proc.LogPath())
			}
		}
	})

	// A server certificate of another CA stops the replicator at its first
	// connection, with the verification failure and the server named.
	t.Run("wrong CA", func(t *testing.T) {
		src := p.NewDatabase(t)
		testenv.Exec(t, src, compatSchema)
		other := testenv.WriteTLSFiles(t, "postgres")
		nats := testenv.StartNATS(t)
		rep := testenv.StartProcess(t, "replicator", bin, "replicator",
			"--host", "127.0.0.1", "--port", strconv.Itoa(p.Port()), "--dbname", dbName(t, src), "--user", "postgres", "--password", "unused",
			"--sslmode", "verify-full", "--sslrootcert", other.CA, "--sslcert", p.TLS().ClientCert, "--sslkey", p.TLS().ClientKey,
			"--group", "pgtlsca", "--tables", "users", "--nats-url", nats.URL())
		want := fmt.Sprintf("127.0.0.1:%d", p.Port())
		testenv.Eventually(t, 30*time.Second, "the certificate error in "+rep.LogPath(), func() bool {
			log := rep.Log()
			return strings.Contains(log, "x509: certificate signed by unknown authority") && strings.Contains(log, want)
		})
		if n := testenv.QueryInt(t, src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg_flo_pgtlsca_publication'"); n != 0 {
			t.Errorf("the replicator created its slot despite the certificate")
		}
	})
}
