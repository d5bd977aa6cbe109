package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func fakeSource(flags map[string]any, env map[string]string, file map[string]any) source {
	return source{
		isSet: func(name string) bool { _, ok := flags[name]; return ok },
		flag:  func(st setting) any { return flags[st.name] },
		env:   func(name string) (string, bool) { v, ok := env[name]; return v, ok },
		file:  file,
	}
}

// pg_flo's precedence: flag > PG_FLO_* variable > config file > default.
func TestPrecedence(t *testing.T) {
	s, err := resolve(replicatorSettings, fakeSource(
		map[string]any{"host": "from-flag"},
		map[string]string{"PG_FLO_HOST": "from-env", "PG_FLO_DBNAME": "db-env", "PG_FLO_TABLES": "a,b c", "PG_FLO_PORT": "6543", "PG_FLO_TRACK_DDL": "true"},
		map[string]any{"host": "from-file", "dbname": "db-file", "user": "u-file", "max-copy-workers-per-table": 8},
	))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{"host": "from-flag", "dbname": "db-env", "user": "u-file", "schema": "public", "port": 6543, "max-copy-workers-per-table": 8, "track-ddl": true} {
		if s[name] != want {
			t.Errorf("%s = %v, want %v", name, s[name], want)
		}
	}
	if got := strings.Join(s.List("tables"), "|"); got != "a|b|c" {
		t.Errorf("PG_FLO_TABLES split into %q, want a|b|c (commas and spaces both separate)", got)
	}
}

func TestBadEnvironmentValue(t *testing.T) {
	_, err := resolve(replicatorSettings, fakeSource(nil, map[string]string{"PG_FLO_PORT": "five"}, nil))
	if err == nil || !strings.Contains(err.Error(), "PG_FLO_PORT") {
		t.Fatalf("error %v, want it to name PG_FLO_PORT", err)
	}
}

func replicatorWith(t *testing.T, flags map[string]any) (Built, error) {
	t.Helper()
	base := map[string]any{"host": "h", "dbname": "d", "user": "u", "password": "s3cr'et pw", "group": "g", "nats-url": "nats://n:4222"}
	for k, v := range flags {
		base[k] = v
	}
	s, err := resolve(replicatorSettings, fakeSource(base, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	return Replicator(s)
}

func TestReplicatorConfig(t *testing.T) {
	built, err := replicatorWith(t, map[string]any{"copy-and-stream": true, "tables": []string{"users"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode: copy_and_stream", "password='${PG_FLO_PASSWORD}'", "nats:\n      url: nats://n:4222", "- users", "pg_flo_jetstream:"} {
		if !strings.Contains(built.YAML, want) {
			t.Errorf("config lacks %q:\n%s", want, built.YAML)
		}
	}
	if strings.Contains(built.YAML, "s3cr") {
		t.Errorf("config holds the password:\n%s", built.YAML)
	}
	if len(built.Secrets) != 1 || built.Secrets[0].Env != "PG_FLO_PASSWORD" || built.Secrets[0].Value != "s3cr'et pw" {
		t.Errorf("secrets %+v", built.Secrets)
	}
	if got := EscapeDSNPassword("s3cr'et\\pw"); got != `s3cr\'et\\pw` {
		t.Errorf("escaped %q", got)
	}
}

// --nats-replicas sets the replicas of the stream and of the state bucket
// alike; the default leaves both fields out.
func TestReplicatorNATSReplicas(t *testing.T) {
	built, err := replicatorWith(t, map[string]any{"nats-replicas": 3, "nats-url": "nats://a:4222,nats://b:4222,nats://c:4222"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"state_replicas: 3", "stream_replicas: 3", "url: nats://a:4222,nats://b:4222,nats://c:4222"} {
		if !strings.Contains(built.YAML, want) {
			t.Errorf("config lacks %q:\n%s", want, built.YAML)
		}
	}
	built, err = replicatorWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(built.YAML, "replicas") {
		t.Errorf("default config sets replicas:\n%s", built.YAML)
	}
	if _, err := replicatorWith(t, map[string]any{"nats-replicas": 0}); err == nil || !strings.Contains(err.Error(), "--nats-replicas") {
		t.Errorf("nats-replicas 0: error %v, want one naming --nats-replicas", err)
	}
	s, err := resolve(replicatorSettings, fakeSource(map[string]any{}, map[string]string{"PG_FLO_NATS_REPLICAS": "3"}, nil))
	if err != nil || s.Int("nats-replicas") != 3 {
		t.Errorf("PG_FLO_NATS_REPLICAS=3 resolved to %v (%v)", s["nats-replicas"], err)
	}
}

// Every combination pg_flo rejects is rejected with pg_flo's message.
func TestRejectedCombinations(t *testing.T) {
	if _, err := replicatorWith(t, map[string]any{"copy": true, "stream": true}); err == nil || err.Error() != "Cannot specify multiple modes: use --stream, --copy-and-stream, or --copy" {
		t.Errorf("two modes: %v", err)
	}
	s, _ := resolve(replicatorSettings, fakeSource(map[string]any{"host": "h"}, nil, nil))
	if _, err := Replicator(s); err == nil || err.Error() != "Missing required configurations: dbname, group, nats-url, password, user" {
		t.Errorf("missing values: %v", err)
	}
	worker := func(sink string, flags map[string]any) error {
		all := append(append([]setting{}, workerSettings...), sinkSettings[sink]...)
		s, _ := resolve(all, fakeSource(flags, nil, nil))
		_, err := Worker(sink, s)
		return err
	}
	cases := []struct {
		sink  string
		flags map[string]any
		want  string
	}{
		{"stdout", map[string]any{}, "Missing required configurations: group, nats-url"},
		{"file", map[string]any{"group": "g", "nats-url": "n"}, "Missing required configurations: file-output-dir"},
		{"webhook", map[string]any{"group": "g", "nats-url": "n"}, "Missing required configurations: webhook-url"},
		{"postgres", map[string]any{"group": "g", "nats-url": "n", "target-host": "t"}, "Missing required configurations: target-dbname, target-password, target-user"},
		{"postgres", map[string]any{"group": "g", "nats-url": "n", "target-host": "t", "target-dbname": "d", "target-user": "u", "target-password": "p", "target-sync-schema": true},
			"Missing required configurations: source-dbname, source-host, source-password, source-user"},
	}
	for _, c := range cases {
		if err := worker(c.sink, c.flags); err == nil || err.Error() != c.want {
			t.Errorf("worker %s %v: error %v, want %q", c.sink, c.flags, err, c.want)
		}
	}
	// Without schema sync the source-* settings are not needed (pg_flo
	// demands them anyway).
	if err := worker("postgres", map[string]any{"group": "g", "nats-url": "n", "target-host": "t", "target-dbname": "d", "target-user": "u", "target-password": "p"}); err != nil {
		t.Errorf("postgres sink without schema sync: %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg-flo.yaml")
	if err := os.WriteFile(path, []byte("host: db\nport: 5433\ntables:\n  - a\n  - b\ncopy-and-stream: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, used, err := loadFile(path)
	if err != nil || used != path {
		t.Fatal(used, err)
	}
	s, err := resolve(replicatorSettings, fakeSource(nil, nil, file))
	if err != nil {
		t.Fatal(err)
	}
	if s.String("host") != "db" || s.Int("port") != 5433 || strings.Join(s.List("tables"), ",") != "a,b" || !s.Bool("copy-and-stream") {
		t.Errorf("settings from the file: %v", s)
	}
	if _, _, err := loadFile(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "failed to read config file") {
		t.Errorf("absent --config file: %v", err)
	}
}

// expand does what Benthos does to a config holding ${…} references: it
// pastes the environment's values (the built secrets, escaped as run sets
// them) into the text, which must still parse to the secrets' values.
func expand(t *testing.T, built Built) map[string]any {
	t.Helper()
	env := map[string]string{}
	for _, s := range built.Secrets {
		env[s.Env] = s.Escaped()
	}
	text := regexp.MustCompile(`\$\{[A-Z_]+\}`).ReplaceAllStringFunc(built.YAML, func(ref string) string {
		v, ok := env[ref[2:len(ref)-1]]
		if !ok {
			t.Errorf("config references %s, which is not among its secrets", ref)
		}
		return v
	})
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("config with the secrets pasted in: %v\n%s", err, text)
	}
	return doc
}

func at(doc map[string]any, path ...string) any {
	var v any = doc
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// The NATS flags fill the replicator's nats block and pg_flo_jetstream's
// connection fields alike; the password and a URL holding credentials
// become ${PG_FLO_NATS_…} references, never text of the printed config.
func TestReplicatorNATSFlags(t *testing.T) {
	const pw = `p"a:ss #w\ord'`
	built, err := replicatorWith(t, map[string]any{
		"nats-url":      "nats://bob:url-s3cret@n1:4222,nats://n2:4222",
		"nats-user":     "bob",
		"nats-password": pw,
		"nats-tls-ca":   "/etc/nats/ca.pem",
		"nats-tls-cert": "/etc/nats/client.pem",
		"nats-tls-key":  "/etc/nats/client-key.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"url-s3cret", "a:ss"} {
		if strings.Contains(built.YAML, leak) {
			t.Errorf("printed config holds %q:\n%s", leak, built.YAML)
		}
	}
	doc := expand(t, built)
	want := map[string]any{
		"url": "nats://bob:url-s3cret@n1:4222,nats://n2:4222", "user": "bob", "password": pw,
		"tls": map[string]any{"enabled": true, "root_cas_file": "/etc/nats/ca.pem",
			"client_certs": []any{map[string]any{"cert_file": "/etc/nats/client.pem", "key_file": "/etc/nats/client-key.pem"}}},
	}
	if got := at(doc, "input", "pg_flo_replicator", "nats"); !reflect.DeepEqual(got, want) {
		t.Errorf("pg_flo_replicator.nats = %v, want %v", got, want)
	}
	want["group"] = "g"
	if got := at(doc, "output", "pg_flo_jetstream"); !reflect.DeepEqual(got, want) {
		t.Errorf("pg_flo_jetstream = %v, want %v", got, want)
	}
}

func TestWorkerNATSFlags(t *testing.T) {
	worker := func(flags map[string]any) (Built, error) {
		all := append(append([]setting{}, workerSettings...), sinkSettings["stdout"]...)
		base := map[string]any{"group": "g", "nats-url": "nats://n:4222"}
		for k, v := range flags {
			base[k] = v
		}
		s, err := resolve(all, fakeSource(base, map[string]string{"PG_FLO_NATS_TOKEN": "t0ken"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return Worker("stdout", s)
	}
	built, err := worker(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(built.YAML, "t0ken") || !strings.Contains(built.YAML, `token: "${PG_FLO_NATS_TOKEN}"`) {
		t.Errorf("token from PG_FLO_NATS_TOKEN not referenced:\n%s", built.YAML)
	}
	if got := at(expand(t, built), "input", "pg_flo_worker", "token"); got != "t0ken" {
		t.Errorf("pg_flo_worker.token = %v", got)
	}
	built, err = worker(map[string]any{"nats-token": "", "nats-nkey-file": "/etc/nats/user.nk"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"url": "nats://n:4222", "group": "g", "nkey_file": "/etc/nats/user.nk"}
	if got := at(expand(t, built), "input", "pg_flo_worker"); !reflect.DeepEqual(got, want) {
		t.Errorf("pg_flo_worker = %v, want %v", got, want)
	}

	for _, c := range []struct {
		flags map[string]any
		want  string
	}{
		{map[string]any{"nats-creds-file": "a.creds"}, "--nats-user/--nats-password, --nats-token, --nats-creds-file and --nats-nkey-file are mutually exclusive: use one way to authenticate to NATS"},
		{map[string]any{"nats-token": "", "nats-password": "p"}, "--nats-password needs --nats-user"},
		{map[string]any{"nats-tls-cert": "c.pem"}, "--nats-tls-cert and --nats-tls-key go together"},
	} {
		if _, err := worker(c.flags); err == nil || err.Error() != c.want {
			t.Errorf("flags %v: error %v, want %q", c.flags, err, c.want)
		}
	}
}

// --partitions (PG_FLO_PARTITIONS) sets pg_flo_jetstream's partitions and
// --partition pg_flo_worker's partition; their defaults leave both out.
func TestPartitionFlags(t *testing.T) {
	built, err := replicatorWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(built.YAML, "partitions") {
		t.Errorf("default replicator config names partitions:\n%s", built.YAML)
	}
	base := map[string]any{"host": "h", "dbname": "d", "user": "u", "password": "p", "group": "g", "nats-url": "nats://n:4222"}
	s, err := resolve(replicatorSettings, fakeSource(base, map[string]string{"PG_FLO_PARTITIONS": "4"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if built, err = Replicator(s); err != nil || !strings.Contains(built.YAML, "partitions: 4") {
		t.Errorf("replicator with PG_FLO_PARTITIONS=4: %v\n%s", err, built.YAML)
	}
	all := append(append([]setting{}, workerSettings...), sinkSettings["stdout"]...)
	for _, tc := range []struct {
		flags map[string]any
		want  string
		has   bool
	}{
		{map[string]any{"group": "g", "nats-url": "n"}, "partition", false},
		{map[string]any{"group": "g", "nats-url": "n", "partition": 2}, "partition: 2", true},
		{map[string]any{"group": "g", "nats-url": "n"}, "on_error", false},
		{map[string]any{"group": "g", "nats-url": "n", "on-error": "dead_letter"}, "on_error: dead_letter", true},
	} {
		s, err := resolve(all, fakeSource(tc.flags, nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		built, err := Worker("stdout", s)
		if err != nil || strings.Contains(built.YAML, tc.want) != tc.has {
			t.Errorf("worker %v: %v\n%s", tc.flags, err, built.YAML)
		}
	}
}

// --slot-retained-wal-warning (PG_FLO_SLOT_RETAINED_WAL_WARNING) sets
// pg_flo_replicator's slot_retained_wal_warning; unset, the field's default
// applies and the config does not name it.
func TestSlotRetainedWALWarningFlag(t *testing.T) {
	built, err := replicatorWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(built.YAML, "slot_retained_wal_warning") {
		t.Errorf("default replicator config names slot_retained_wal_warning:\n%s", built.YAML)
	}
	base := map[string]any{"host": "h", "dbname": "d", "user": "u", "password": "p", "group": "g", "nats-url": "nats://n:4222"}
	s, err := resolve(replicatorSettings, fakeSource(base, map[string]string{"PG_FLO_SLOT_RETAINED_WAL_WARNING": "512MiB"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if built, err = Replicator(s); err != nil || !strings.Contains(built.YAML, "slot_retained_wal_warning: 512MiB") {
		t.Errorf("replicator with PG_FLO_SLOT_RETAINED_WAL_WARNING=512MiB: %v\n%s", err, built.YAML)
	}
}
