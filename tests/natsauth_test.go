package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

// End-to-end tests of the NATS connection block: every component that talks
// to NATS (pg_flo_replicator's state bucket and lease, pg_flo_jetstream,
// pg_flo_worker) reaches a server that requires TLS with client
// certificates and authentication, and a wrong password fails clearly
// without showing it.

// tlsFiles are a CA and, as PEM files it signed, a server certificate for
// 127.0.0.1 and a client certificate.
type tlsFiles = testenv.TLSFiles

func writeTLSFiles(t *testing.T) tlsFiles { return testenv.WriteTLSFiles(t, "client") }

// secureNATS starts a server that accepts only TLS clients presenting a
// certificate of f's CA, with auth adding its authentication.
func secureNATS(t *testing.T, f tlsFiles, auth func(*server.Options)) *testenv.NATS {
	t.Helper()
	return testenv.StartNATS(t, testenv.WithServerOptions(func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: f.ServerCert, KeyFile: f.ServerKey, CaFile: f.CA, Verify: true})
		if err != nil {
			t.Fatalf("server TLS config: %v", err)
		}
		o.TLSConfig, o.TLS, o.TLSVerify, o.TLSTimeout = tc, true, true, 5
		auth(o)
	}))
}

// natsTLSYAML is the client side of the TLS files as the components' tls field,
// indented by indent.
func natsTLSYAML(f tlsFiles, indent string) string {
	return strings.ReplaceAll(fmt.Sprintf(`tls:
  enabled: true
  root_cas_file: %q
  client_certs:
    - cert_file: %q
      key_file: %q
`, f.CA, f.ClientCert, f.ClientKey), "\n", "\n"+indent)
}

// natsTLSFlags are the TLS files as pgflo replicator's and worker's flags.
func natsTLSFlags(f tlsFiles) []string {
	return []string{"--nats-tls-ca", f.CA, "--nats-tls-cert", f.ClientCert, "--nats-tls-key", f.ClientKey}
}

// snapshotComplete reports whether the group's state bucket records a
// finished snapshot: the replicator reached it, over TLS and
// authentication, with its nats block.
func snapshotComplete(t *testing.T, url, group string, opts ...nats.Option) bool {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), jsproto.StateBucket(group))
	if err != nil {
		return false
	}
	entry, err := kv.Get(t.Context(), state.SnapshotKey)
	if err != nil {
		return false
	}
	var snap state.Snapshot
	return json.Unmarshal(entry.Value(), &snap) == nil && snap.Complete
}

// changeUsers changes the users table every way: updates, deletes, inserts.
func changeUsers(t *testing.T, dsn string) {
	t.Helper()
	testenv.Exec(t, dsn, "UPDATE users SET age = age + 1, note = 'changed' WHERE id % 7 = 0; DELETE FROM users WHERE id % 11 = 0")
	populate(t, dsn, 501, 600)
	testenv.Exec(t, dsn, "UPDATE users SET email = NULL WHERE id > 590; DELETE FROM users WHERE id BETWEEN 520 AND 525")
}

// pg_flo's command lines with the NATS flags: TLS with client certificates
// and user/password (a password with YAML's and shells' special
// characters), for the replicator's state bucket and lease, its
// pg_flo_jetstream output and the worker into pg_flo_postgres.
func TestNATSTLSAndPassword(t *testing.T) {
	const natsPassword = `n"ats\pw #1' :x`
	files := writeTLSFiles(t)
	ns := secureNATS(t, files, func(o *server.Options) {
		o.Users = []*server.User{{Username: "pgflo", Password: natsPassword}}
	})
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	testenv.Exec(t, dst, compatSchema)
	populate(t, src, 1, 500)
	bin := testenv.Binary(t)
	port := strconv.Itoa(pg.Port())
	natsFlags := append([]string{"--nats-url", ns.URL(), "--nats-user", "pgflo", "--nats-password", natsPassword}, natsTLSFlags(files)...)

	rep := testenv.StartProcess(t, "replicator", bin, append([]string{"replicator",
		"--host", "127.0.0.1", "--port", port, "--dbname", dbName(t, src), "--user", "postgres", "--password", compatPassword,
		"--group", "natstls", "--tables", "users", "--copy-and-stream"}, natsFlags...)...)
	wrk := testenv.StartProcess(t, "worker", bin, append([]string{"worker", "postgres", "--group", "natstls",
		"--target-host", "127.0.0.1", "--target-port", port, "--target-dbname", dbName(t, dst), "--target-user", "postgres", "--target-password", compatPassword},
		natsFlags...)...)
	waitDigests(t, src, dst)
	clientOpts := []nats.Option{nats.UserInfo("pgflo", natsPassword), nats.RootCAs(files.CA), nats.ClientCert(files.ClientCert, files.ClientKey)}
	testenv.Eventually(t, 30*time.Second, "the snapshot recorded complete in the state bucket", func() bool {
		return snapshotComplete(t, ns.URL(), "natstls", clientOpts...)
	})
	changeUsers(t, src)
	waitDigests(t, src, dst)

	for _, p := range []*testenv.Process{rep, wrk} {
		if log := p.Log(); strings.Contains(log, natsPassword) || strings.Contains(log, `ats\pw`) {
			t.Errorf("a log shows the NATS password:\n%s", log)
		}
	}
	// Without a client certificate the server refuses the connection: TLS
	// is what the components used.
	if nc, err := nats.Connect(ns.URL(), nats.UserInfo("pgflo", natsPassword), nats.RootCAs(files.CA)); err == nil {
		nc.Close()
		t.Fatal("the server accepted a client without a certificate")
	}

	// pgflo cleanup takes the same flags: it drops the group's NATS objects.
	for _, p := range []*testenv.Process{rep, wrk} {
		if err := p.Stop(); err != nil {
			t.Logf("stop: %v", err)
		}
	}
	out, err := runPgflo(t, append([]string{"cleanup", "--group", "natstls", "--yes"}, natsFlags...)...)
	if err != nil {
		t.Fatalf("pgflo cleanup: %v\n%s", err, out)
	}
	assertContains(t, out, "dropped     JetStream stream pgflo_natstls_stream", "dropped     JetStream key-value bucket pg_flo_state_natstls")
	if strings.Contains(out, natsPassword) {
		t.Errorf("pgflo cleanup shows the NATS password:\n%s", out)
	}
	nc, err := nats.Connect(ns.URL(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(t.Context(), "pgflo_natstls_stream"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("after cleanup, the stream: %v, want it gone", err)
	}
}

// operator is NATS decentralized authentication in memory: an operator, an
// account with JetStream signed by it, and a user of the account whose
// credentials file the components use.
type operator struct {
	claims    *jwt.OperatorClaims
	resolver  *server.MemAccResolver
	system    string // the system account JetStream needs
	credsFile string
}

func newOperator(t *testing.T) operator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	opKP, err := nkeys.CreateOperator()
	must(err)
	opPub, err := opKP.PublicKey()
	must(err)
	op := operator{claims: jwt.NewOperatorClaims(opPub), resolver: &server.MemAccResolver{}}
	_, err = op.claims.Encode(opKP) // fills in the issuer
	must(err)

	account := func() (nkeys.KeyPair, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		return kp, pub
	}
	_, sysPub := account()
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(opKP)
	must(err)
	must(op.resolver.Store(sysPub, sysJWT))
	op.system = sysPub

	accKP, accPub := account()
	acc := jwt.NewAccountClaims(accPub)
	acc.Name = "pgflo"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := acc.Encode(opKP)
	must(err)
	must(op.resolver.Store(accPub, accJWT))

	userKP, err := nkeys.CreateUser()
	must(err)
	userPub, err := userKP.PublicKey()
	must(err)
	user := jwt.NewUserClaims(userPub)
	user.Name = "pgflo"
	userJWT, err := user.Encode(accKP)
	must(err)
	seed, err := userKP.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	op.credsFile = filepath.Join(t.TempDir(), "pgflo.creds")
	must(os.WriteFile(op.credsFile, creds, 0o600))
	return op
}

// The same pipeline as YAML configs (`pgflo run`), with a .creds file of an
// operator-mode server (and TLS) in pg_flo_replicator's nats block,
// pg_flo_jetstream and pg_flo_worker.
func TestNATSCredsFile(t *testing.T) {
	files := writeTLSFiles(t)
	op := newOperator(t)
	ns := secureNATS(t, files, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
		o.AccountResolver = op.resolver
		o.SystemAccount = op.system
	})
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	testenv.Exec(t, dst, compatSchema)
	populate(t, src, 1, 500)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	conn := func(indent string) string {
		return fmt.Sprintf("url: %s\n%screds_file: %q\n%s%s", ns.URL(), indent, op.credsFile, indent, natsTLSYAML(files, indent))
	}
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rep := testenv.StartProcess(t, "replicator", bin, "run", write("replicator.yaml", fmt.Sprintf(`%s
input:
  pg_flo_replicator:
    dsn: %q
    group: natscreds
    tables: [users]
    mode: copy_and_stream
    nats:
      %s
output:
  pg_flo_jetstream:
    group: natscreds
    %s
`, quietHTTP, src, conn("      "), conn("    "))))
	wrk := testenv.StartProcess(t, "worker", bin, "run", write("worker.yaml", fmt.Sprintf(`%s
input:
  pg_flo_worker:
    group: natscreds
    snapshot_packs: keep
    %s
output:
  pg_flo_postgres:
    dsn: %q
    group: natscreds
`, quietHTTP, conn("    "), dst)))
	waitDigests(t, src, dst)
	clientOpts := []nats.Option{nats.UserCredentials(op.credsFile), nats.RootCAs(files.CA), nats.ClientCert(files.ClientCert, files.ClientKey)}
	testenv.Eventually(t, 30*time.Second, "the snapshot recorded complete in the state bucket", func() bool {
		return snapshotComplete(t, ns.URL(), "natscreds", clientOpts...)
	})
	changeUsers(t, src)
	waitDigests(t, src, dst)
	for _, p := range []*testenv.Process{rep, wrk} {
		if strings.Contains(p.Log(), "Authorization Violation") {
			t.Errorf("%s was refused by NATS:\n%s", p.LogPath(), p.Log())
		}
	}
}

// A wrong password stops the replicator (CLI flag) and the worker (password
// embedded in the URL) at their NATS connection, with the server's
// authorization violation, the server named and the password nowhere.
func TestNATSWrongPassword(t *testing.T) {
	const wrong = "wr0ng-n4ts-pw"
	ns := testenv.StartNATS(t, testenv.WithServerOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: "pgflo", Password: "the-right-one"}}
	}))
	src := pg.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	bin := testenv.Binary(t)
	rep := testenv.StartProcess(t, "replicator", bin, "replicator",
		"--host", "127.0.0.1", "--port", strconv.Itoa(pg.Port()), "--dbname", dbName(t, src), "--user", "postgres", "--password", compatPassword,
		"--group", "natswrong", "--tables", "users", "--copy-and-stream",
		"--nats-url", ns.URL(), "--nats-user", "pgflo", "--nats-password", wrong)
	urlWithPassword := fmt.Sprintf("nats://pgflo:%s@127.0.0.1:%d", wrong, ns.Port())
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("%s\ninput:\n  pg_flo_worker:\n    url: %s\n    group: natswrong\noutput:\n  drop: {}\n", quietHTTP, urlWithPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	wrk := testenv.StartProcess(t, "worker", bin, "run", cfg)

	for _, c := range []struct {
		p    *testenv.Process
		want string
	}{
		// The replicator's state connection (its nats block) and its
		// pg_flo_jetstream output.
		{rep, fmt.Sprintf("Failed to connect to pg_flo_replicator: field nats: connect to nats %s: nats: Authorization Violation", ns.URL())},
		{rep, fmt.Sprintf("Failed to connect to pg_flo_jetstream: connect to nats %s: nats: Authorization Violation", ns.URL())},
		{wrk, fmt.Sprintf("Failed to connect to pg_flo_worker: connect to nats nats://redacted@127.0.0.1:%d: nats: Authorization Violation", ns.Port())},
	} {
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%q in %s", c.want, c.p.LogPath()), func() bool {
			return strings.Contains(c.p.Log(), c.want)
		})
	}
	for _, p := range []*testenv.Process{rep, wrk} {
		if log := p.Log(); strings.Contains(log, wrong) {
			t.Errorf("%s shows the password:\n%s", p.LogPath(), log)
		}
	}
	// Nothing was copied: the replicator never got the group's lease.
	if n := testenv.QueryInt(t, src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg_flo_natswrong_publication'"); n != 0 {
		t.Errorf("the replicator created its slot without NATS")
	}
}
