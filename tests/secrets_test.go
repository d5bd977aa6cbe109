package tests

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/pgflo/pgflo/config"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Passwords never show: every failure pgflo can be driven into with a
// PostgreSQL password and a NATS password in its settings — wrong
// password, unreachable server, TLS failure, lint errors, printed configs,
// /metrics — is checked for both, in URL and keyword/value DSNs, flags and
// NATS URLs with user:password@. The passwords hold YAML's, DSNs' and
// URLs' special characters, so a half-escaped copy would show too.
const (
	secretPG       = `Pg"Zq9 #x: 'y\w@/?`
	secretPGWrong  = `Wr0ngPg #k: 'v\`
	secretNATS     = `Nt"Qx7 #m: 'n\r@`
	secretNATSBad  = `Wr0ngNt #j: z`
	secretFragment = "Zq9" // in secretPG only, for copies escaped some other way
)

// secretForms are the passwords as text might hold them: plain, escaped
// for a DSN's quotes or YAML's double quotes, or URL-encoded.
func secretForms() []string {
	var forms []string
	for _, s := range []string{secretPG, secretPGWrong, secretNATS, secretNATSBad} {
		forms = append(forms, s, config.EscapeDSNPassword(s), strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s),
			url.QueryEscape(s), url.PathEscape(s))
	}
	return append(forms, secretFragment, "Qx7", "Wr0ng")
}

// assertNoSecret fails when text shows any form of the passwords.
func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range secretForms() {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a password (%q):\n%s", where, s, text)
			return
		}
	}
}

// secretsEnv is a TLS cluster with a role that needs secretPG and its
// certificate, a NATS server with user pgflo and secretNATS, and a source
// database.
type secretsEnv struct {
	pg         *testenv.Postgres
	nats       *testenv.NATS
	src        string // database name
	cert, key  string // the role's client certificate
	bin, dir   string
	pgPort     string
	natsURLBad string // nats://pgflo:secretNATSBad@…
}

func newSecretsEnv(t *testing.T) *secretsEnv {
	t.Helper()
	p := startTLSPostgres(t)
	src := p.NewDatabase(t)
	testenv.Exec(t, src, compatSchema)
	testenv.Exec(t, p.AdminDSN(), "CREATE ROLE secretuser LOGIN SUPERUSER PASSWORD '"+strings.ReplaceAll(secretPG, "'", "''")+"'")
	cert, key, err := p.TLS().IssueClient("secretuser")
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.StartNATS(t, testenv.WithServerOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: "pgflo", Password: secretNATS}}
	}))
	return &secretsEnv{
		pg: p, nats: ns, src: dbName(t, src), cert: cert, key: key,
		bin: testenv.Binary(t), dir: t.TempDir(), pgPort: strconv.Itoa(p.Port()),
		natsURLBad: (&url.URL{Scheme: "nats", User: url.UserPassword("pgflo", secretNATSBad), Host: fmt.Sprintf("127.0.0.1:%d", ns.Port())}).String(),
	}
}

// urlDSN is a URL DSN of secretuser with password, TLS verified by ca.
func (e *secretsEnv) urlDSN(password, port, ca string) string {
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca}, "sslcert": {e.cert}, "sslkey": {e.key}}
	u := url.URL{Scheme: "postgres", User: url.UserPassword("secretuser", password), Host: "127.0.0.1:" + port, Path: "/" + e.src, RawQuery: q.Encode()}
	return u.String()
}

// keywordDSN is the same as keyword/value pairs.
func (e *secretsEnv) keywordDSN(password, port, ca string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%s dbname=%s user=secretuser password='%s' sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
		port, e.src, config.EscapeDSNPassword(password), ca, e.cert, e.key)
}

// cliFlags are pgflo replicator's flags for secretuser with password.
func (e *secretsEnv) cliFlags(password, ca string) []string {
	return []string{"--host", "127.0.0.1", "--port", e.pgPort, "--dbname", e.src, "--user", "secretuser", "--password", password,
		"--sslmode", "verify-full", "--sslrootcert", ca, "--sslcert", e.cert, "--sslkey", e.key, "--tables", "users"}
}

// replicatorYAML is a replicator config with the DSN and NATS settings
// given (a YAML mapping's lines), and its HTTP server on httpAddr.
func (e *secretsEnv) replicatorYAML(t *testing.T, name, dsn, group, natsLines, httpAddr string) string {
	t.Helper()
	body := fmt.Sprintf(`http:
  address: %s
logger:
  level: DEBUG
  format: logfmt
input:
  pg_flo_replicator:
    dsn: %s
    group: %s
    tables: [users]
    mode: copy_and_stream
    nats:
      %s
output:
  pg_flo_jetstream:
    group: %s
    %s
`, httpAddr, yamlQuote(dsn), group, strings.ReplaceAll(natsLines, "\n", "\n      "), group, strings.ReplaceAll(natsLines, "\n", "\n    "))
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// yamlQuote is s as a double-quoted YAML string.
func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// natsLines are the NATS connection fields with user pgflo and password.
func (e *secretsEnv) natsLines(password string) string {
	return fmt.Sprintf("url: %s\nuser: pgflo\npassword: %s", e.nats.URL(), yamlQuote(password))
}

// freeAddr is 127.0.0.1 and a free port, for a process's HTTP server.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// waitLog waits until the process's log shows want, then checks it shows
// no password.
func waitLog(t *testing.T, p *testenv.Process, want string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%q in %s", want, p.LogPath()), func() bool {
		return strings.Contains(p.Log(), want)
	})
	assertNoSecret(t, p.LogPath(), p.Log())
}

func TestSecretsNeverShow(t *testing.T) {
	e := newSecretsEnv(t)
	ca := e.pg.TLS().CA
	otherCA := testenv.WriteTLSFiles(t, "x").CA
	closedPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	natsFlags := []string{"--nats-url", e.nats.URL(), "--nats-user", "pgflo", "--nats-password", secretNATS}

	// Failures at connection, each in its own process: the log must name
	// the failure and hide the password.
	t.Run("failures", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"wrong PostgreSQL password, flags", append(append([]string{"replicator", "--group", "sec1"}, e.cliFlags(secretPGWrong, ca)...), natsFlags...),
				"password authentication failed for user"},
			{"wrong PostgreSQL password, URL DSN", []string{"run", e.replicatorYAML(t, "sec2.yaml", e.urlDSN(secretPGWrong, e.pgPort, ca), "sec2", e.natsLines(secretNATS), freeAddr(t))},
				"password authentication failed for user"},
			{"unreachable host, URL DSN", []string{"run", e.replicatorYAML(t, "sec3.yaml", e.urlDSN(secretPG, strconv.Itoa(closedPort), ca), "sec3", e.natsLines(secretNATS), freeAddr(t))},
				"connect: connection refused"},
			{"unreachable host, keyword DSN", []string{"run", e.replicatorYAML(t, "sec4.yaml", e.keywordDSN(secretPG, strconv.Itoa(closedPort), ca), "sec4", e.natsLines(secretNATS), freeAddr(t))},
				"connect: connection refused"},
			{"TLS failure, keyword DSN", []string{"run", e.replicatorYAML(t, "sec5.yaml", e.keywordDSN(secretPG, e.pgPort, otherCA), "sec5", e.natsLines(secretNATS), freeAddr(t))},
				"x509: certificate signed by unknown authority"},
			{"TLS failure, flags", append(append([]string{"replicator", "--group", "sec6"}, e.cliFlags(secretPG, otherCA)...), natsFlags...),
				"x509: certificate signed by unknown authority"},
			{"wrong NATS password, flag", append([]string{"replicator", "--group", "sec7", "--nats-url", e.nats.URL(), "--nats-user", "pgflo", "--nats-password", secretNATSBad},
				e.cliFlags(secretPG, ca)...), "nats: Authorization Violation"},
			{"wrong NATS password, in the URL", append([]string{"replicator", "--group", "sec8", "--nats-url", e.natsURLBad}, e.cliFlags(secretPG, ca)...),
				"nats: Authorization Violation"},
			{"wrong NATS password, worker", []string{"worker", "postgres", "--group", "sec9", "--nats-url", e.natsURLBad,
				"--target-host", "127.0.0.1", "--target-port", e.pgPort, "--target-dbname", e.src, "--target-user", "secretuser", "--target-password", secretPG,
				"--target-sslmode", "verify-full", "--target-sslrootcert", ca, "--target-sslcert", e.cert, "--target-sslkey", e.key},
				"nats: Authorization Violation"},
		}
		procs := make([]*testenv.Process, len(cases))
		for i, c := range cases {
			// The pg_flo commands run Benthos' default HTTP address; a
			// second one fails to bind, which does not matter here.
			procs[i] = testenv.StartProcess(t, c.name, e.bin, c.args...)
		}
		for i, c := range cases {
			waitLog(t, procs[i], c.want)
		}
		for _, p := range procs {
			p.Kill()
		}
	})

	// A password pgflo does take, working: the CLI's built config runs with
	// both passwords (their " #" and ": " intact), and /metrics of a
	// running replicator and of a failing one show neither.
	t.Run("running and metrics", func(t *testing.T) {
		dst := e.pg.NewDatabase(t)
		testenv.Exec(t, dst, compatSchema)
		srcDSN := e.urlDSN(secretPG, e.pgPort, ca)
		testenv.Exec(t, srcDSN, "INSERT INTO users (id, email) VALUES (1, 'a'), (2, 'b')")
		rep := testenv.StartProcess(t, "replicator", e.bin, append(append([]string{"replicator", "--group", "secok", "--copy-and-stream"}, e.cliFlags(secretPG, ca)...), natsFlags...)...)
		wrk := testenv.StartProcess(t, "worker", e.bin, append([]string{"worker", "postgres", "--group", "secok",
			"--target-host", "127.0.0.1", "--target-port", e.pgPort, "--target-dbname", dbName(t, dst), "--target-user", "secretuser", "--target-password", secretPG,
			"--target-sslmode", "verify-full", "--target-sslrootcert", ca, "--target-sslcert", e.cert, "--target-sslkey", e.key}, natsFlags...)...)
		waitDigestsEqual(t, srcDSN, dst, []string{"users"}, 60*time.Second)

		okAddr, badAddr := freeAddr(t), freeAddr(t)
		ok := testenv.StartProcess(t, "replicator with metrics", e.bin, "run",
			e.replicatorYAML(t, "metrics-ok.yaml", srcDSN, "secmetrics", e.natsLines(secretNATS), okAddr))
		bad := testenv.StartProcess(t, "failing replicator with metrics", e.bin, "run",
			e.replicatorYAML(t, "metrics-bad.yaml", e.urlDSN(secretPGWrong, e.pgPort, ca), "secbad", e.natsLines(secretNATSBad), badAddr))
		testenv.Eventually(t, 30*time.Second, "pg_flo_replicator_owner 1 in /metrics", func() bool {
			v, found := metricValue(scrape(t, "http://"+okAddr+"/metrics"), `pg_flo_replicator_owner(\{.*\})?`)
			return found && v == 1
		})
		waitLog(t, bad, "nats: Authorization Violation")
		for _, addr := range []string{okAddr, badAddr} {
			metrics := scrape(t, "http://"+addr+"/metrics")
			if !strings.Contains(metrics, "# TYPE") {
				t.Errorf("no metrics at %s", addr)
			}
			assertNoSecret(t, "/metrics of "+addr, metrics)
		}
		for _, p := range []*testenv.Process{rep, wrk, ok, bad} {
			assertNoSecret(t, p.LogPath(), p.Log())
		}
	})

	// Output of commands that end: lint errors of a config holding the
	// passwords, printed configs, pgflo cleanup with a wrong password.
	t.Run("commands", func(t *testing.T) {
		lintFile := e.replicatorYAML(t, "lint.yaml", e.urlDSN(secretPG, e.pgPort, ca), "seclint", e.natsLines(secretNATS)+"\nurl_typo: "+yamlQuote(e.natsURLBad), freeAddr(t))
		keywordLint := e.replicatorYAML(t, "lint-kw.yaml", e.keywordDSN(secretPG, e.pgPort, ca), "", "password: "+yamlQuote(secretNATS)+"\nurl: "+yamlQuote(e.natsURLBad), freeAddr(t))
		for _, c := range []struct {
			name string
			args []string
			want string // in the output; "" when the command succeeds
		}{
			{"lint, unknown field", []string{"lint", lintFile}, "field url_typo not recognised"},
			{"lint, missing group", []string{"lint", keywordLint}, "group"},
			{"echo", []string{"echo", e.replicatorYAML(t, "echo.yaml", e.keywordDSN(secretPG, e.pgPort, ca), "sececho",
				"url: "+yamlQuote("nats://127.0.0.1:1,"+e.natsURLBad)+"\nuser: pgflo\npassword: "+yamlQuote(secretNATS), freeAddr(t))}, ""},
			{"replicator --print-config", append([]string{"replicator", "--group", "secp", "--print-config", "--nats-url", e.natsURLBad, "--nats-user", "pgflo", "--nats-password", secretNATS}, e.cliFlags(secretPG, ca)...), ""},
			{"worker postgres --print-config", []string{"worker", "postgres", "--print-config", "--group", "secp", "--nats-url", e.natsURLBad, "--nats-user", "pgflo", "--nats-password", secretNATS,
				"--target-host", "h", "--target-dbname", "d", "--target-user", "u", "--target-password", secretPG, "--target-sync-schema",
				"--source-host", "h", "--source-dbname", "d", "--source-user", "u", "--source-password", secretPGWrong}, ""},
			{"replicator, missing setting", []string{"replicator", "--password", secretPG, "--nats-password", secretNATS, "--nats-url", e.natsURLBad}, "Missing required configurations"},
			{"cleanup, wrong password", []string{"cleanup", "--host", "127.0.0.1", "--port", e.pgPort, "--dbname", e.src, "--user", "secretuser", "--password", secretPGWrong, "--group", "secp"},
				"password authentication failed"},
			{"cleanup, DSN with the password", []string{"cleanup", "--dsn", e.urlDSN(secretPGWrong, strconv.Itoa(closedPort), ca), "--group", "secp"}, "connection refused"},
			{"cleanup, NATS URL with the password", []string{"cleanup", "--nats-url", e.natsURLBad, "--group", "secp"}, "Authorization Violation"},
		} {
			cmd := exec.Command(e.bin, c.args...)
			cmd.Env = append(os.Environ(), "PGSSLMODE=verify-full", "PGSSLROOTCERT="+ca, "PGSSLCERT="+e.cert, "PGSSLKEY="+e.key)
			out, err := cmd.CombinedOutput()
			if c.want == "" && err != nil || c.want != "" && !strings.Contains(string(out), c.want) {
				t.Errorf("%s: %v, output lacks %q:\n%s", c.name, err, c.want, out)
			}
			assertNoSecret(t, c.name, string(out))
			if strings.HasSuffix(c.name, "--print-config") {
				assertPrintedDSNs(t, c.name, out)
			}
		}
	})
}

// assertPrintedDSNs checks a printed config is valid YAML whose DSNs keep
// their password reference and every setting after it.
func assertPrintedDSNs(t *testing.T, name string, out []byte) {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Errorf("%s: not YAML: %v\n%s", name, err, out)
		return
	}
	// Benthos pastes the variables in before parsing: do the same with
	// the passwords, escaped as pgflo sets them when it runs the config.
	pasted := strings.NewReplacer(
		"${PG_FLO_PASSWORD}", config.EscapeDSNPassword(secretPG),
		"${PG_FLO_TARGET_PASSWORD}", config.EscapeDSNPassword(secretPG),
		"${PG_FLO_SOURCE_PASSWORD}", config.EscapeDSNPassword(secretPGWrong),
	).Replace(string(out))
	if err := yaml.Unmarshal([]byte(pasted), &doc); err != nil {
		t.Errorf("%s: not YAML once the passwords are in: %v", name, err)
		return
	}
	text := fmt.Sprint(doc)
	for _, want := range []string{"password='" + config.EscapeDSNPassword(secretPG) + "'", "dbname="} {
		if !strings.Contains(text, want) {
			t.Errorf("%s: once the passwords are in, the config lacks %q", name, want)
		}
	}
}
