package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pgflo/pgflo/internal/jsproto"
)

// Secret is a password the built config references by environment variable
// instead of holding it: printed configs never contain a password.
type Secret struct {
	Env   string // e.g. PG_FLO_PASSWORD
	Value string
	// YAML marks a reference that is a double-quoted YAML string of its
	// own (the NATS fields); the others sit between the single quotes of a
	// keyword/value DSN. Each is escaped for where it sits (Escaped).
	YAML bool
}

// Escaped is the secret's value as its environment variable must hold it:
// Benthos pastes the variable into the config text as it is.
func (s Secret) Escaped() string {
	if s.YAML {
		return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s.Value)
	}
	return EscapeDSNPassword(s.Value)
}

// reference is a ${env} reference as a double-quoted YAML string, which
// any value pasted into it (escaped by Secret.Escaped) leaves intact.
func reference(env string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: "${" + env + "}"}
}

// natsConn returns the NATS connection fields of the settings as
// pg_flo_jetstream and pg_flo_worker spell them (and pg_flo_replicator's
// nats object), with the secrets they reference: the password, the token,
// and a URL holding credentials (as ${PG_FLO_NATS_URL}).
func natsConn(s Settings) (map[string]any, []Secret, error) {
	methods := 0
	for _, set := range []bool{s.String("nats-user") != "" || s.String("nats-password") != "", s.String("nats-token") != "", s.String("nats-creds-file") != "", s.String("nats-nkey-file") != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, nil, fmt.Errorf("--nats-user/--nats-password, --nats-token, --nats-creds-file and --nats-nkey-file are mutually exclusive: use one way to authenticate to NATS")
	}
	if err := checkPasswords(s, "nats-url", "nats-password", "nats-token"); err != nil {
		return nil, nil, err
	}
	if s.String("nats-password") != "" && s.String("nats-user") == "" {
		return nil, nil, fmt.Errorf("--nats-password needs --nats-user")
	}
	if (s.String("nats-tls-cert") == "") != (s.String("nats-tls-key") == "") {
		return nil, nil, fmt.Errorf("--nats-tls-cert and --nats-tls-key go together")
	}
	conn := map[string]any{"url": s.String("nats-url")}
	var secrets []Secret
	if url := s.String("nats-url"); jsproto.HasURLCredentials(url) {
		conn["url"] = reference(EnvName("nats-url"))
		secrets = append(secrets, Secret{Env: EnvName("nats-url"), Value: url, YAML: true})
	}
	for _, name := range []string{"nats-password", "nats-token"} {
		if v := s.String(name); v != "" {
			conn[strings.TrimPrefix(name, "nats-")] = reference(EnvName(name))
			secrets = append(secrets, Secret{Env: EnvName(name), Value: v, YAML: true})
		}
	}
	for flag, field := range map[string]string{"nats-user": "user", "nats-creds-file": "creds_file", "nats-nkey-file": "nkey_file"} {
		if v := s.String(flag); v != "" {
			conn[field] = v
		}
	}
	if ca, cert := s.String("nats-tls-ca"), s.String("nats-tls-cert"); ca != "" || cert != "" {
		tls := map[string]any{"enabled": true}
		if ca != "" {
			tls["root_cas_file"] = ca
		}
		if cert != "" {
			tls["client_certs"] = []any{map[string]any{"cert_file": cert, "key_file": s.String("nats-tls-key")}}
		}
		conn["tls"] = tls
	}
	return conn, secrets, nil
}

// Built is a Benthos config built from pg_flo settings.
type Built struct {
	YAML    string
	Secrets []Secret
}

// keywordDSN builds a keyword/value connection string whose password is a
// reference to env (kept out of the config text).
func keywordDSN(host string, port int, dbname, user, passwordEnv string) string {
	parts := []string{
		"host=" + quoteDSNValue(host), "port=" + strconv.Itoa(port),
		"dbname=" + quoteDSNValue(dbname), "user=" + quoteDSNValue(user),
	}
	if passwordEnv != "" {
		parts = append(parts, "password='${"+passwordEnv+"}'")
	}
	return strings.Join(parts, " ")
}

// quoteDSNValue quotes a keyword/value connection string value when needed.
func quoteDSNValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// EscapeDSNPassword is how a password must be escaped to sit between the
// single quotes of a keyword/value connection string.
func EscapeDSNPassword(p string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p)
}

func marshal(doc map[string]any) (string, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	return b.String(), nil
}

var logger = map[string]any{"level": "INFO", "format": "logfmt"}

// Replicator builds the config of `pgflo replicator`: pg_flo_replicator
// into pg_flo_jetstream.
func Replicator(s Settings) (Built, error) {
	if err := missing(s, "host", "dbname", "user", "password", "group", "nats-url"); err != nil {
		return Built{}, err
	}
	modes := 0
	mode := "stream"
	for _, m := range []struct{ flag, mode string }{{"stream", "stream"}, {"copy-and-stream", "copy_and_stream"}, {"copy", "copy"}} {
		if s.Bool(m.flag) {
			modes++
			mode = m.mode
		}
	}
	if modes > 1 {
		return Built{}, fmt.Errorf("Cannot specify multiple modes: use --stream, --copy-and-stream, or --copy")
	}
	replicas := s.Int("nats-replicas")
	if replicas < 1 || replicas > 5 {
		return Built{}, fmt.Errorf("--nats-replicas must be between 1 and 5, got %d", replicas)
	}
	conn, secrets, err := natsConn(s)
	if err != nil {
		return Built{}, err
	}
	if err := checkPasswords(s, "password"); err != nil {
		return Built{}, err
	}
	dsn, err := withPGTLS(keywordDSN(s.String("host"), s.Int("port"), s.String("dbname"), s.String("user"), EnvName("password")), s, "")
	if err != nil {
		return Built{}, err
	}
	input := map[string]any{
		"dsn":                        literalDSN(dsn),
		"group":                      s.String("group"),
		"schema":                     s.String("schema"),
		"tables":                     s.List("tables"),
		"mode":                       mode,
		"max_copy_workers_per_table": max(s.Int("max-copy-workers-per-table"), 1),
		"track_ddl":                  s.Bool("track-ddl"),
		// Every mode keeps the group's ownership lease there (and the
		// copy modes their snapshot record).
		"nats": conn,
	}
	output := map[string]any{"group": s.String("group")}
	for k, v := range conn {
		output[k] = v
	}
	if replicas != 1 {
		// The group's state lives next to its changes: both survive
		// the loss of a node, or neither does.
		input["state_replicas"] = replicas
		output["stream_replicas"] = replicas
	}
	if n := s.Int("partitions"); n != 1 {
		output["partitions"] = n
	}
	if v := s.String("slot-retained-wal-warning"); v != "" {
		input["slot_retained_wal_warning"] = v
	}
	doc := map[string]any{
		"input":  map[string]any{"pg_flo_replicator": input},
		"output": map[string]any{"pg_flo_jetstream": output},
		"logger": logger,
	}
	text, err := marshal(doc)
	return Built{YAML: text, Secrets: append([]Secret{{Env: EnvName("password"), Value: s.String("password")}}, secrets...)}, err
}

// pgFloShape turns a decoded event into the JSON object pg_flo's stdout,
// file and webhook sinks write (keys sorted, as pg_flo's encoder sorts them).
const pgFloShape = `let keys = this.columns.filter(c -> c.key.or(false)).map_each(c -> c.name)
root.Type = this.op
root.Schema = this.schema
root.Table = this.table
root.LSN = if this.snapshot { "" } else { this.lsn }
root.EmittedAt = now()
root.NewTuple = if this.new != null { this.new } else { deleted() }
root.OldTuple = if this.old != null { this.old } else { deleted() }
root.ReplicationKey = {
  "Type": if $keys.length() == 0 { "" } else if $keys.length() == this.columns.length() { "FULL" } else { "PRIMARY KEY" },
  "Columns": if $keys.length() == 0 || $keys.length() == this.columns.length() { null } else { $keys },
}`

// Worker builds the config of `pgflo worker <sink>`: pg_flo_worker, then
// pg_flo_decode, pg_flo_rules and pg_flo_route, then the sink.
func Worker(sink string, s Settings) (Built, error) {
	required := []string{"group", "nats-url"}
	switch sink {
	case "file":
		required = append(required, "file-output-dir")
	case "webhook":
		required = append(required, "webhook-url")
	case "postgres":
		required = append(required, "target-host", "target-dbname", "target-user", "target-password")
		// pg_flo demands the source-* settings even without schema sync;
		// pgflo asks for them only when they are used.
		if s.Bool("target-sync-schema") {
			required = append(required, "source-host", "source-dbname", "source-user", "source-password")
		}
	case "stdout":
	default:
		return Built{}, fmt.Errorf("unknown sink %q: use stdout, file, postgres or webhook", sink)
	}
	if err := missing(s, required...); err != nil {
		return Built{}, err
	}
	var processors []any
	if sink != "postgres" {
		// People read these sinks: typed values. The postgres sink takes
		// the events' exact text form as they are.
		processors = append(processors, map[string]any{"pg_flo_decode": map[string]any{}})
	}
	if f := s.String("rules-config"); f != "" {
		processors = append(processors, map[string]any{"pg_flo_rules": map[string]any{"rules_file": f}})
	}
	if f := s.String("routing-config"); f != "" {
		processors = append(processors, map[string]any{"pg_flo_route": map[string]any{"routing_file": f}})
	}
	worker, secrets, err := natsConn(s)
	if err != nil {
		return Built{}, err
	}
	worker["group"] = s.String("group")
	// Unset, the worker's own default, as a config without the field gets.
	if n := s.Int("batch-size"); n > 0 {
		worker["batch_size"] = n
	}
	if k := s.Int("partition"); k >= 0 {
		worker["partition"] = k
	}
	onError := s.String("on-error")
	switch onError {
	case "", "stop":
		onError = ""
	case "dead_letter":
		worker["on_error"] = onError
	default:
		return Built{}, fmt.Errorf("--on-error: unknown value %q (stop or dead_letter)", onError)
	}
	var output map[string]any
	switch sink {
	case "stdout":
		processors = append(processors, map[string]any{"mapping": pgFloShape})
		output = map[string]any{"stdout": map[string]any{"codec": "lines"}}
	case "file":
		processors = append(processors, map[string]any{"mapping": pgFloShape})
		// pg_flo names its files pg_flo_log_<UTC time>.jsonl and starts a
		// new one every hour (or 100 MiB); here the name carries the hour.
		path := strings.TrimRight(s.String("file-output-dir"), "/") + `/pg_flo_log_${! now().ts_format("20060102T15", "UTC") }0000Z.jsonl`
		output = map[string]any{"file": map[string]any{"path": path, "codec": "lines"}}
	case "webhook":
		processors = append(processors, map[string]any{"mapping": pgFloShape})
		output = map[string]any{"http_client": map[string]any{
			"url": s.String("webhook-url"), "verb": "POST",
			"headers": map[string]any{"Content-Type": "application/json"},
			"retries": 3, "retry_period": "1s", "max_retry_backoff": "30s",
			"max_in_flight": 1,
		}}
	case "postgres":
		if err := checkPasswords(s, "target-password", "source-password"); err != nil {
			return Built{}, err
		}
		dsn, err := withPGTLS(keywordDSN(s.String("target-host"), s.Int("target-port"), s.String("target-dbname"), s.String("target-user"), EnvName("target-password")), s, "target-")
		if err != nil {
			return Built{}, err
		}
		pg := map[string]any{
			"group":                s.String("group"),
			"dsn":                  literalDSN(dsn),
			"disable_foreign_keys": s.Bool("target-disable-foreign-keys"),
			"sync_schema":          s.Bool("target-sync-schema"),
		}
		secrets = append(secrets, Secret{Env: EnvName("target-password"), Value: s.String("target-password")})
		if s.Bool("target-sync-schema") {
			sourceDSN, err := withPGTLS(keywordDSN(s.String("source-host"), s.Int("source-port"), s.String("source-dbname"), s.String("source-user"), EnvName("source-password")), s, "source-")
			if err != nil {
				return Built{}, err
			}
			pg["source_dsn"] = literalDSN(sourceDSN)
			secrets = append(secrets, Secret{Env: EnvName("source-password"), Value: s.String("source-password")})
		}
		if onError != "" {
			pg["on_error"] = onError
		}
		output = map[string]any{"pg_flo_postgres": pg}
		// This pipeline's processors (pgflo's, when there are any) and
		// output read packs: snapshot rows reach the target's COPY as the
		// source's COPY wrote them, and the worker spares their events.
		worker["snapshot_packs"] = "keep"
	}
	doc := map[string]any{
		"input":  map[string]any{"pg_flo_worker": worker},
		"output": output,
		"logger": logger,
	}
	if len(processors) > 0 {
		doc["pipeline"] = map[string]any{"processors": processors}
	}
	text, err := marshal(doc)
	return Built{YAML: text, Secrets: secrets}, err
}
