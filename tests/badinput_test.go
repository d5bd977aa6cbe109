package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// Bad input, every kind pgflo knows of — pg_flo's flags, environment and
// config file, the components' fields, rules and routing files, connection
// strings — stops pgflo with one line that names the flag, field or
// file:line at fault.

// badCLI are pg_flo command lines pgflo refuses before it runs anything.
var badCLI = []struct {
	name string
	args []string
	env  []string
	file string // a --config file's contents, when set
	want string
}{
	{"missing settings", []string{"replicator", "--host", "h"}, nil, "", "Missing required configurations: dbname, group, nats-url, password, user"},
	{"worker missing settings", []string{"worker", "postgres", "--group", "g", "--nats-url", "n"}, nil, "", "Missing required configurations: target-dbname, target-host, target-password, target-user"},
	{"schema sync without the source", []string{"worker", "postgres", "--group", "g", "--nats-url", "n", "--target-host", "h", "--target-dbname", "d", "--target-user", "u", "--target-password", "p", "--target-sync-schema"}, nil, "",
		"Missing required configurations: source-dbname, source-host, source-password, source-user"},
	{"two modes", replicatorArgs("--copy", "--stream"), nil, "", "Cannot specify multiple modes: use --stream, --copy-and-stream, or --copy"},
	{"nats replicas", replicatorArgs("--nats-replicas", "7"), nil, "", "--nats-replicas must be between 1 and 5, got 7"},
	{"port not a number", replicatorArgs("--port", "abc"), nil, "", `invalid value "abc" for flag -port`},
	{"port variable", replicatorArgs(), []string{"PG_FLO_PORT=abc"}, "", `environment variable PG_FLO_PORT: "abc" is not a whole number`},
	{"bool variable", replicatorArgs(), []string{"PG_FLO_COPY=sometimes"}, "", `environment variable PG_FLO_COPY: "sometimes" is not true or false`},
	{"two NATS logins", replicatorArgs("--nats-token", "t", "--nats-user", "u", "--nats-password", "p"), nil, "", "--nats-user/--nats-password, --nats-token, --nats-creds-file and --nats-nkey-file are mutually exclusive"},
	{"NATS password alone", replicatorArgs("--nats-password", "p"), nil, "", "--nats-password needs --nats-user"},
	{"NATS cert alone", replicatorArgs("--nats-tls-cert", "c.pem"), nil, "", "--nats-tls-cert and --nats-tls-key go together"},
	{"sslmode", replicatorArgs("--sslmode", "verify"), nil, "", `--sslmode: "verify" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
	{"sslcert alone", replicatorArgs("--sslcert", "c.pem"), nil, "", "--sslcert and --sslkey go together"},
	{"target sslmode", []string{"worker", "postgres", "--group", "g", "--nats-url", "n", "--target-host", "h", "--target-dbname", "d", "--target-user", "u", "--target-password", "p", "--target-sslmode", "on"}, nil, "",
		`--target-sslmode: "on" is not one of`},
	{"password with a line break", replicatorArgs("--password", "a\nb"), nil, "", "--password holds a line break, a control character or invalid UTF-8"},
	{"unknown sink", []string{"worker", "kafka"}, nil, "", `unknown sink "kafka": use stdout, file, postgres or webhook`},
	{"absent config file", []string{"replicator", "--config", "/nonexistent/pg_flo.yaml"}, nil, "", "failed to read config file /nonexistent/pg_flo.yaml: open /nonexistent/pg_flo.yaml: no such file or directory"},
	{"config file syntax", []string{"replicator"}, nil, "host: h\n  port: 1\n", "pg_flo.yaml:2: mapping values are not allowed in this context"},
	{"config file not a map", []string{"replicator"}, nil, "- host\n", "pg_flo.yaml: want a map of pg_flo settings: line 1: cannot unmarshal !!seq into map[string]interface {}"},
	{"config file key", []string{"replicator"}, nil, "port: [5432]\n", "config file key port: want a whole number, not a list"},
	{"config file bool", []string{"replicator"}, nil, "copy: maybe\n", `config file key copy: "maybe" is not true or false`},
	{"cleanup without a place", []string{"cleanup", "--group", "g"}, nil, "", "nothing to clean up: give --dsn (or --host/--dbname/…) for the source PostgreSQL, --nats-url for NATS, or both"},
	{"cleanup two sources", []string{"cleanup", "--group", "g", "--dsn", "postgres://u@h/d", "--host", "h"}, nil, "", "--dsn and --host both name the source: give one"},
	{"cleanup half the flags", []string{"cleanup", "--group", "g", "--host", "h"}, nil, "", "--dbname is required with pg_flo-style connection flags (or give --dsn)"},
	{"cleanup group", []string{"cleanup", "--group", "a b", "--nats-url", "nats://127.0.0.1:1"}, nil, "", `--group: invalid group name "a b"`},
	{"cleanup argument", []string{"cleanup", "--group", "g", "extra"}, nil, "", `cleanup: unexpected argument "extra" (every setting is a flag)`},
}

// replicatorArgs is a complete pgflo replicator command line with args
// added.
func replicatorArgs(args ...string) []string {
	return append([]string{"replicator", "--host", "h", "--port", "5432", "--dbname", "d", "--user", "u", "--password", "p",
		"--group", "g", "--nats-url", "nats://127.0.0.1:1"}, args...)
}

func TestBadCommandLines(t *testing.T) {
	bin := testenv.Binary(t)
	dir := t.TempDir()
	for _, c := range badCLI {
		args := c.args
		if c.file != "" {
			path := filepath.Join(dir, "pg_flo.yaml")
			if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(append([]string{}, args...), "--config", path)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: pgflo %v succeeded:\n%s", c.name, args, out)
			continue
		}
		// The error is the first line but for the config file's name.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if strings.HasPrefix(lines[0], "Using config file: ") && len(lines) > 1 {
			lines = lines[1:]
		}
		if !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: pgflo %v: first line %q, want it to contain %q\n%s", c.name, args, lines[0], c.want, out)
		}
	}
}

// badConfigs are component configs pgflo refuses, at lint or when it builds
// the component, each naming the field (and for rules and routing files,
// file:line). {rules} and {routing} stand for the bad files' paths.
var badConfigs = []struct {
	name, input, pipeline, output, want string
}{
	{"worker batch_size", workerIn("batch_size: 0"), "", drop, "field batch_size: must be positive, got 0"},
	{"worker fetch_wait", workerIn("fetch_wait: -1s"), "", drop, "field fetch_wait: must not be negative"},
	{"worker ack_wait", workerIn("ack_wait: 100ms"), "", drop, "field ack_wait: must be at least 1s"},
	{"worker max_ack_pending", workerIn("batch_size: 100\n    max_ack_pending: 10"), "", drop, "field max_ack_pending: 10 is less than batch_size 100"},
	{"worker deliver", workerIn("deliver: sometimes"), "", drop, "(7,1) value sometimes is not a valid option for this field"},
	{"worker snapshot_packs", workerIn("snapshot_packs: zip"), "", drop, "(7,1) value zip is not a valid option for this field"},
	{"worker partition", workerIn("partition: 100000"), "", drop, "field partition: must be between 0 and"},
	{"worker group", "pg_flo_worker:\n    url: nats://127.0.0.1:1\n    group: 'a b'", "", drop, `field group: invalid group name "a b"`},
	{"worker password alone", workerIn("password: p"), "", drop, "field password: set user too"},
	{"worker unknown field", workerIn("batch: 1"), "", drop, "field batch not recognised"},
	{"replicator group", replicatorIn("group: ''"), "", drop, "field group"},
	{"replicator tables", replicatorIn("tables: ['a.b.c']"), "", drop, `field tables[0]: "a.b.c" is not a table name`},
	{"replicator slot", replicatorIn("slot: Bad-Slot"), "", drop, `field slot: "Bad-Slot" is not a valid replication slot name`},
	{"replicator publication", replicatorIn("publication: bad-pub"), "", drop, `field publication: "bad-pub": use letters, digits and underscores`},
	{"replicator copy without nats", replicatorIn("mode: copy"), "", drop, "field nats.url: mode copy records finished snapshot chunks"},
	{"replicator state_replicas", replicatorIn("state_replicas: 9"), "", drop, "field state_replicas: must be between 1 and 5, got 9"},
	{"replicator owner_lease", replicatorIn("owner_lease: 100ms"), "", drop, "field owner_lease: 100ms is too short"},
	{"replicator status_interval", replicatorIn("status_interval: 1ms"), "", drop, "field status_interval: 1ms is too short"},
	{"replicator max_copy_workers", replicatorIn("max_copy_workers_per_table: 0"), "", drop, "field max_copy_workers_per_table: must be at least 1"},
	{"replicator nats without url", replicatorIn("nats:\n      user: u"), "", drop, "field nats.url: must be set with the other nats fields"},
	{"replicator both nats urls", replicatorIn("nats_url: nats://a:4222\n    nats:\n      url: nats://b:4222"), "", drop, "fields nats_url and nats.url are both set"},
	{"replicator mode", replicatorIn("mode: snapshot"), "", drop, "(7,1) value snapshot is not a valid option for this field"},
	{"jetstream pack_max_bytes", generate, "", jetstreamOut("pack_max_bytes: 0"), "field pack_max_bytes: must be positive, got 0"},
	{"jetstream stream_max_age", generate, "", jetstreamOut("stream_max_age: -1s"), "field stream_max_age: must not be negative"},
	{"jetstream stream_max_bytes", generate, "", jetstreamOut("stream_max_bytes: -5"), "field stream_max_bytes: must be positive or -1"},
	{"jetstream stream_replicas", generate, "", jetstreamOut("stream_replicas: 9"), "field stream_replicas: must be between 1 and 5, got 9"},
	{"jetstream duplicate_window", generate, "", jetstreamOut("stream_max_age: 1m\n    duplicate_window: 1h"), "field duplicate_window: 1h0m0s is longer than stream_max_age 1m0s"},
	{"jetstream publish_timeout", generate, "", jetstreamOut("publish_timeout: 0s"), "field publish_timeout: must be positive"},
	{"jetstream partitions", generate, "", jetstreamOut("partitions: 0"), "field partitions: must be between 1 and"},
	{"jetstream stream_retention", generate, "", jetstreamOut("stream_retention: forever"), "(9,1) value forever is not a valid option for this field"},
	{"jetstream group", generate, "", "pg_flo_jetstream:\n    url: nats://127.0.0.1:1\n    group: ''", "field group"},
	{"postgres dsn", generate, "", "pg_flo_postgres:\n    dsn: ''\n    group: g", "field dsn: must not be empty"},
	{"postgres group", generate, "", "pg_flo_postgres:\n    dsn: postgres://u@h/d\n    group: ''", "(7,1) field group is required and must not be empty"},
	{"postgres sync_schema", generate, "", postgresOut("sync_schema: true"), "(7,1) field source_dsn is required with sync_schema: true"},
	{"postgres copy_min_rows", generate, "", postgresOut("copy_min_rows: -1"), "field copy_min_rows: must not be negative, got -1"},
	{"postgres copy_connections", generate, "", postgresOut("copy_connections: 0"), "field copy_connections: must be at least 1, got 0"},
	{"postgres apply_connections", generate, "", postgresOut("apply_connections: 0"), "field apply_connections: must be at least 1, got 0"},
	{"postgres retries", generate, "", postgresOut("retries: -1"), "field retries: must not be negative, got -1"},
	{"postgres schema_mapping", generate, "", postgresOut("schema_mapping: {'': x}"), "field schema_mapping: schema names must not be empty"},
	{"postgres key_columns", generate, "", postgresOut("key_columns: [{table: users, columns: []}]"), "field key_columns[0].columns: name at least one column"},
	{"rules file absent", generate, "- pg_flo_rules: { rules_file: /nonexistent/rules.yaml }", drop, "read rules file: open /nonexistent/rules.yaml: no such file or directory"},
	{"rules file", generate, "- pg_flo_rules: { rules_file: '{rules}' }", drop, "rules.yaml:5: table users rule 1: field parameters.operator: unknown operator"},
	{"rules file and inline rules", generate, "- pg_flo_rules: { rules_file: '{rules}', rules: { tables: {} } }", drop, "pg_flo_rules: give exactly one of rules_file and rules"},
	{"inline rules", generate, "- pg_flo_rules: { rules: { tables: { users: [ { type: filter, column: age } ] } } }", drop, "rules: table users rule 1: field parameters: missing"},
	{"inline routes", generate, "- pg_flo_route: { routes: { users: { operations: [MERGE] } } }", drop, `routes: table users: field operations: unknown operation`},
	{"routing file absent", generate, "- pg_flo_route: { routing_file: /nonexistent/routing.yaml }", drop, "read routing file: open /nonexistent/routing.yaml: no such file or directory"},
	{"routing file", generate, "- pg_flo_route: { routing_file: '{routing}' }", drop, "routing.yaml:3: table users: field operations: empty list"},
}

const (
	drop     = "drop: {}"
	generate = "generate: { mapping: 'root = {}', count: 1, interval: '' }"
)

func workerIn(fields string) string {
	return "pg_flo_worker:\n    url: nats://127.0.0.1:1\n    group: g\n    " + fields
}

func replicatorIn(fields string) string {
	return "pg_flo_replicator:\n    dsn: postgres://u@127.0.0.1:1/d\n    group: g\n    " + fields
}

func jetstreamOut(fields string) string {
	return "pg_flo_jetstream:\n    url: nats://127.0.0.1:1\n    group: g\n    " + fields
}

func postgresOut(fields string) string {
	return "pg_flo_postgres:\n    dsn: postgres://u@127.0.0.1:1/d\n    group: g\n    " + fields
}

// runBad runs config with pgflo run until its output shows want, and
// returns the line that does.
func runBad(t *testing.T, bin, path, want string) string {
	t.Helper()
	p := testenv.StartProcess(t, filepath.Base(path), bin, "run", path)
	defer p.Kill()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%q in %s", want, p.LogPath()), func() bool {
		return strings.Contains(p.Log(), want) || p.Exited()
	})
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.Contains(line, want) {
			return line
		}
	}
	t.Errorf("%s: %s lacks %q:\n%s", path, p.LogPath(), want, p.Log())
	return ""
}

func TestBadConfigs(t *testing.T) {
	bin := testenv.Binary(t)
	dir := t.TempDir()
	files := map[string]string{
		"{rules}":   "tables:\n  users:\n    - type: filter\n      column: age\n      parameters: { operator: like, value: 1 }\n",
		"{routing}": "users:\n  destination_table: customers\n  operations: []\n",
	}
	var paths []string
	for key, body := range files {
		path := filepath.Join(dir, strings.Trim(key, "{}")+".yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, key, path)
	}
	fill := strings.NewReplacer(paths...)
	for i, c := range badConfigs {
		config := fmt.Sprintf("http:\n  enabled: false\ninput:\n  %s\n", c.input)
		if c.pipeline != "" {
			config += "pipeline:\n  processors:\n    " + fill.Replace(c.pipeline) + "\n"
		}
		config += fmt.Sprintf("output:\n  %s\n", c.output)
		path := filepath.Join(dir, fmt.Sprintf("config%d.yaml", i))
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		line := runBad(t, bin, path, c.want)
		// Benthos logs in logfmt, where a line break in the message
		// would show as \n.
		if strings.Contains(line, `\n`) {
			t.Errorf("%s: the error spans lines: %s", c.name, line)
		}
	}
}

// Connection strings pgx cannot parse, or whose server is not there, fail
// at connection with pgx's reason on one line, the DSN redacted, and no part
// of the password.
func TestBadDSNs(t *testing.T) {
	bin := testenv.Binary(t)
	dir := t.TempDir()
	for i, c := range []struct{ name, component, want string }{
		{"replicator unterminated password", "pg_flo_replicator:\n    dsn: \"host=127.0.0.1 password='Se cretPw\"\n    group: g", "parse source dsn host=127.0.0.1 password=xxxxx: failed to parse as keyword/value (unterminated quoted string in connection info string)"},
		{"replicator bad port", "pg_flo_replicator:\n    dsn: host=127.0.0.1 port=abc password=SecretPw\n    group: g", "parse source dsn host=127.0.0.1 port=abc password=xxxxx: invalid port"},
		{"replicator CA file", "pg_flo_replicator:\n    dsn: postgres://u:SecretPw@127.0.0.1/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\n    group: g", "parse source dsn postgres://u:xxxxx@127.0.0.1/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem: failed to configure TLS (unable to read CA file: open /nonexistent/ca.pem: no such file or directory)"},
		// pgx lists each address it tried on a line of its own; the
		// log keeps them on one.
		{"replicator unreachable", replicatorIn("mode: stream"), "connect to source postgres://u@127.0.0.1:1/d: failed to connect to `user=u database=d`: 127.0.0.1:1 (127.0.0.1): dial error"},
		{"target unreachable", postgresOut("retries: 0"), "connect to target postgres://u@127.0.0.1:1/d: failed to connect to `user=u database=d`: 127.0.0.1:1 (127.0.0.1): dial error"},
		{"target bad port", "pg_flo_postgres:\n    dsn: postgres://u:SecretPw@127.0.0.1:badport/d\n    group: g", "parse target dsn postgres://xxxxx@127.0.0.1:badport/d: invalid port"},
	} {
		input, output := c.component, drop
		if strings.HasPrefix(c.component, "pg_flo_postgres") {
			input, output = generate, c.component
		}
		path := filepath.Join(dir, fmt.Sprintf("dsn%d.yaml", i))
		config := fmt.Sprintf("http:\n  enabled: false\ninput:\n  %s\noutput:\n  %s\n", input, output)
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		line := runBad(t, bin, path, c.want)
		if strings.Contains(line, "cret") || strings.Contains(line, `\n`) {
			t.Errorf("%s: %s", c.name, line)
		}
	}
}
