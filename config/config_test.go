package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, want := range []string{"mode: copy_and_stream", "password='${PG_FLO_PASSWORD}'", "nats_url: nats://n:4222", "- users", "pg_flo_jetstream:"} {
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
