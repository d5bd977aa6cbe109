// Package config keeps pg_flo's command line, config file and environment
// working on pgflo: it resolves pg_flo's settings with pg_flo's precedence
// (flag > PG_FLO_* environment variable > config file > default), checks
// them with pg_flo's rules, and builds the equivalent Benthos config, which
// the `pgflo replicator` and `pgflo worker …` commands run or print.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// kind is a setting's type.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindList
)

// setting is one pg_flo flag: its name is also its config-file key and,
// upper-cased with '-' → '_' behind PG_FLO_, its environment variable.
type setting struct {
	name  string
	kind  kind
	def   any
	usage string
}

// EnvName is the environment variable of a pg_flo setting.
func EnvName(name string) string {
	return "PG_FLO_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s setting) flag() cli.Flag {
	usage := s.usage + " (env " + EnvName(s.name) + ")"
	switch s.kind {
	case kindInt:
		return &cli.IntFlag{Name: s.name, Value: s.def.(int), Usage: usage}
	case kindBool:
		return &cli.BoolFlag{Name: s.name, Usage: usage}
	case kindList:
		return &cli.StringSliceFlag{Name: s.name, Usage: usage}
	}
	return &cli.StringFlag{Name: s.name, Value: s.def.(string), Usage: usage}
}

// natsSettings are the NATS connection's authentication and TLS, for
// both commands (pg_flo had only --nats-url).
var natsSettings = []setting{
	{"nats-user", kindString, "", "NATS user (user/password authentication)"},
	{"nats-password", kindString, "", "NATS password"},
	{"nats-token", kindString, "", "NATS token (token authentication)"},
	{"nats-creds-file", kindString, "", "NATS credentials file (JWT and NKey seed)"},
	{"nats-nkey-file", kindString, "", "file holding a NATS NKey user seed"},
	{"nats-tls-ca", kindString, "", "CA certificate file (PEM) verifying the NATS server; enables TLS"},
	{"nats-tls-cert", kindString, "", "client certificate file (PEM) for NATS TLS; enables TLS"},
	{"nats-tls-key", kindString, "", "private key file (PEM) of --nats-tls-cert"},
}

var replicatorSettings = append([]setting{
	{"host", kindString, "", "source PostgreSQL host"},
	{"port", kindInt, 5432, "source PostgreSQL port"},
	{"dbname", kindString, "", "source database"},
	{"user", kindString, "", "source user"},
	{"password", kindString, "", "source password"},
	{"group", kindString, "", "replication group name"},
	{"schema", kindString, "public", "schema to replicate from"},
	{"tables", kindList, nil, "tables to replicate (comma-separated; empty = every table of the schema)"},
	{"nats-url", kindString, "", "NATS server URL"},
	{"stream", kindBool, false, "stream changes (the default mode)"},
	{"copy-and-stream", kindBool, false, "copy the tables' rows, then stream"},
	{"copy", kindBool, false, "copy the tables' rows only"},
	{"max-copy-workers-per-table", kindInt, 4, "parallel copy workers per table"},
	{"track-ddl", kindBool, false, "capture DDL on the replicated tables"},
	{"nats-replicas", kindInt, 1, "replicas of the group's JetStream stream and state bucket, when created (3 in a 3-node NATS cluster)"},
	{"partitions", kindInt, 1, "partitions of the group, applied by one worker each (fixed when the group's stream is created)"},
	{"slot-retained-wal-warning", kindString, "", "warn when the group's slot keeps more WAL than this on the source, e.g. 512MiB (default 1GiB; 0 turns it off)"},
}, natsSettings...)

var workerSettings = append([]setting{
	{"group", kindString, "", "replication group to consume"},
	{"nats-url", kindString, "", "NATS server URL"},
	{"rules-config", kindString, "", "rules YAML file"},
	{"routing-config", kindString, "", "routing YAML file"},
	{"batch-size", kindInt, 0, "most changes per batch (0: pg_flo_worker's default, 16384)"},
	{"partition", kindInt, -1, "partition this worker applies, 0 to N-1, in a group of N > 1 partitions (-1: the group has one)"},
	{"on-error", kindString, "stop", "what a change that can never be applied does: stop (the group stops at it) or dead_letter (it goes to the group's dead-letter stream and the group goes on)"},
}, natsSettings...)

var sinkSettings = map[string][]setting{
	"stdout": nil,
	"file":   {{"file-output-dir", kindString, "", "directory of the JSON-lines files"}},
	"webhook": {
		{"webhook-url", kindString, "", "URL each change is POSTed to"},
	},
	"postgres": {
		{"target-host", kindString, "", "target PostgreSQL host"},
		{"target-port", kindInt, 5432, "target PostgreSQL port"},
		{"target-dbname", kindString, "", "target database"},
		{"target-user", kindString, "", "target user"},
		{"target-password", kindString, "", "target password"},
		{"target-sync-schema", kindBool, false, "create missing target tables from the source's schema first"},
		{"target-disable-foreign-keys", kindBool, false, "apply with session_replication_role = replica"},
		{"source-host", kindString, "", "source host (schema sync only)"},
		{"source-port", kindInt, 5432, "source port (schema sync only)"},
		{"source-dbname", kindString, "", "source database (schema sync only)"},
		{"source-user", kindString, "", "source user (schema sync only)"},
		{"source-password", kindString, "", "source password (schema sync only)"},
	},
}

// Settings are resolved pg_flo settings by flag name.
type Settings map[string]any

// String returns a string setting.
func (s Settings) String(name string) string { v, _ := s[name].(string); return v }

// Int returns an int setting.
func (s Settings) Int(name string) int { v, _ := s[name].(int); return v }

// Bool returns a bool setting.
func (s Settings) Bool(name string) bool { v, _ := s[name].(bool); return v }

// List returns a list setting.
func (s Settings) List(name string) []string { v, _ := s[name].([]string); return v }

// source tells where settings come from, so tests can drive them without a
// real command line.
type source struct {
	isSet func(name string) bool
	flag  func(setting) any
	env   func(string) (string, bool)
	file  map[string]any
}

// resolve applies pg_flo's precedence: flag > environment > file > default.
func resolve(settings []setting, src source) (Settings, error) {
	out := Settings{}
	for _, st := range settings {
		var v any = st.def
		if raw, ok := src.file[st.name]; ok {
			parsed, err := fromFile(st, raw)
			if err != nil {
				return nil, err
			}
			v = parsed
		}
		if raw, ok := src.env(EnvName(st.name)); ok {
			parsed, err := fromText(st, raw)
			if err != nil {
				return nil, fmt.Errorf("environment variable %s: %w", EnvName(st.name), err)
			}
			v = parsed
		}
		if src.isSet(st.name) {
			v = src.flag(st)
		}
		if st.kind == kindList && v == nil {
			v = []string{}
		}
		out[st.name] = v
	}
	return out, nil
}

// fromText parses an environment value. Lists are split on commas and white
// space alike: pg_flo (through viper) split PG_FLO_TABLES on white space only,
// turning "a,b" into one table named "a,b" — nobody means that.
func fromText(st setting, raw string) (any, error) {
	switch st.kind {
	case kindInt:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", raw)
		}
		return n, nil
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", raw)
		}
		return b, nil
	case kindList:
		return splitList(raw), nil
	}
	return raw, nil
}

func splitList(raw string) []string {
	out := []string{}
	for _, part := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		out = append(out, part)
	}
	return out
}

// fromFile converts a config-file value (YAML-typed) to the setting's kind.
func fromFile(st setting, raw any) (any, error) {
	switch st.kind {
	case kindList:
		switch v := raw.(type) {
		case []any:
			out := []string{}
			for _, item := range v {
				out = append(out, fmt.Sprint(item))
			}
			return out, nil
		case string:
			return splitList(v), nil
		}
	case kindInt:
		if n, ok := raw.(int); ok {
			return n, nil
		}
	case kindBool:
		if b, ok := raw.(bool); ok {
			return b, nil
		}
	case kindString:
		switch v := raw.(type) {
		case string:
			return v, nil
		case int, float64, bool:
			return fmt.Sprint(v), nil
		}
	}
	if s, ok := raw.(string); ok {
		v, err := fromText(st, s)
		if err != nil {
			return nil, fmt.Errorf("config file key %s: %w", st.name, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("config file key %s: want %s, not %s", st.name, kindNames[st.kind], describe(raw))
}

// loadFile reads pg_flo's config file: the --config path, or else
// $HOME/.pg_flo.yaml when it exists. It returns the path used ("" when none).
func loadFile(path string) (map[string]any, string, error) {
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return map[string]any{}, "", nil
		}
		path = filepath.Join(home, ".pg_flo.yaml")
		if _, err := os.Stat(path); err != nil {
			return map[string]any{}, "", nil
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("failed to read config file %s: %w", path, err)
	}
	file, err := parseFile(data, path)
	if err != nil {
		return nil, "", err
	}
	return file, path, nil
}

// missing names the required settings that are empty, sorted as pg_flo
// lists them.
func missing(s Settings, required ...string) error {
	var absent []string
	for _, name := range required {
		if v, ok := s[name]; !ok || v == "" || v == nil {
			absent = append(absent, name)
		}
	}
	if len(absent) == 0 {
		return nil
	}
	sort.Strings(absent)
	return fmt.Errorf("Missing required configurations: %s", strings.Join(absent, ", "))
}
