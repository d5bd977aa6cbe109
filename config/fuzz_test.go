package config

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzConfigFile: no pg_flo config file panics pgflo replicator or
// pgflo worker; each it rejects gets one line; each it takes builds a
// config that stays valid YAML once its secrets are pasted in, as Benthos
// pastes them, with the PostgreSQL password whole in the DSN.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"host: db\nport: 5433\ndbname: app\nuser: u\npassword: \"pw #1: 'x\\\\\"\ngroup: g\nnats-url: nats://n:4222\ntables: [a, b]\ncopy-and-stream: true\n",
		"group: g\nnats-url: nats://u:p@n:4222\ntarget-host: t\ntarget-dbname: d\ntarget-user: u\ntarget-password: 'a #b'\ntarget-sslmode: verify-full\ntarget-sslrootcert: /ca.pem\n",
		"port: [1]\n",
		"- a\n- b\n",
		"host: {a: b}\n",
		"tables: \"a b,c\"\nbatch-size: x\n",
		"host: db\n  port: 1\n",
		"sslmode: bogus\nsslcert: c\n",
		"host: h\ndbname: d\nuser: u\ngroup: g\nnats-url: n\npassword: \"a\\u2028b\\x85c\\td\"\n",
	} {
		f.Add([]byte(seed))
	}
	oneLine := func(t *testing.T, what string, err error) {
		if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("%s: error on more than one line: %q", what, err)
		}
	}
	none := fakeSource(nil, nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseFile(data, "pg_flo.yaml")
		oneLine(t, "parse", err)
		if err != nil {
			if !strings.Contains(err.Error(), "pg_flo.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		commands := map[string]struct {
			settings []setting
			build    func(Settings) (Built, error)
		}{"replicator": {replicatorSettings, Replicator}}
		for _, sink := range []string{"stdout", "file", "postgres", "webhook"} {
			commands["worker "+sink] = struct {
				settings []setting
				build    func(Settings) (Built, error)
			}{append(append([]setting{}, workerSettings...), sinkSettings[sink]...), func(s Settings) (Built, error) { return Worker(sink, s) }}
		}
		for name, c := range commands {
			src := none
			src.file = file
			s, err := resolve(c.settings, src)
			oneLine(t, name, err)
			if err != nil {
				continue
			}
			built, err := c.build(s)
			oneLine(t, name, err)
			if err != nil {
				continue
			}
			pasted := built.YAML
			for _, secret := range built.Secrets {
				pasted = strings.ReplaceAll(pasted, "${"+secret.Env+"}", secret.Escaped())
			}
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(pasted), &doc); err != nil {
				t.Fatalf("%s: the built config with its secrets pasted in is no YAML: %v\n%s", name, err, pasted)
			}
			if pw := s.String("password"); name == "replicator" && !strings.Contains(at(doc, "input", "pg_flo_replicator", "dsn").(string), "password='"+EscapeDSNPassword(pw)+"'") {
				t.Fatalf("replicator: the DSN lost its password %q:\n%s", pw, pasted)
			}
		}
	})
}
