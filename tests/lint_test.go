package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", rel)
}

func runPgflo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t), args...).CombinedOutput()
	return string(out), err
}

func TestLintAcceptsResources(t *testing.T) {
	for _, name := range []string{"resources/replicator.yaml", "resources/worker.yaml"} {
		if out, err := runPgflo(t, "lint", repoFile(t, name)); err != nil {
			t.Errorf("pgflo lint %s: %v\n%s", name, err, out)
		}
	}
}

func TestLintRejectsBadConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown field", `
input:
  pg_flo_replicator:
    dsn: postgres://u@localhost/db
    group: g
    tabels: [users]
output:
  drop: {}
`, "tabels"},
		{"missing group", `
input:
  pg_flo_replicator:
    dsn: postgres://u@localhost/db
output:
  drop: {}
`, "group"},
		{"worker missing group", `
input:
  pg_flo_worker:
    url: nats://127.0.0.1:4222
output:
  drop: {}
`, "group"},
		{"jetstream output unknown field", `
input:
  generate: { mapping: 'root = {}', count: 1 }
output:
  pg_flo_jetstream:
    url: nats://127.0.0.1:4222
    group: g
    strem: x
`, "strem"},
		// Removed fields are named with what to write instead.
		{"removed snapshot_binary", `
input:
  pg_flo_replicator:
    dsn: postgres://u@localhost/db
    group: g
    snapshot_binary: false
output:
  drop: {}
`, "field snapshot_binary was removed: snapshot rows are read with binary COPY"},
		{"snapshot_packs as a bool", `
input:
  pg_flo_replicator:
    dsn: postgres://u@localhost/db
    group: g
    snapshot_packs: false
output:
  drop: {}
`, "true and false were replaced by keep and expand"},
		{"nats_url and nats.url", `
input:
  pg_flo_replicator:
    dsn: postgres://u@localhost/db
    group: g
    nats_url: nats://127.0.0.1:4222
    nats:
      url: nats://127.0.0.1:4222
output:
  drop: {}
`, "fields nats_url and nats.url are both set"},
		{"removed pack_max_events", `
input:
  generate: { mapping: 'root = {}', count: 1 }
output:
  pg_flo_jetstream:
    url: nats://127.0.0.1:4222
    group: g
    pack_max_events: 5
`, "field pack_max_events was removed"},
		{"removed snapshot_batch_rows", `
input:
  pg_flo_worker:
    url: nats://127.0.0.1:4222
    group: g
    snapshot_batch_rows: 1000
output:
  drop: {}
`, "field snapshot_batch_rows was removed"},
		{"removed copy_binary", `
input:
  generate: { mapping: 'root = {}', count: 1 }
output:
  pg_flo_postgres:
    dsn: postgres://u@localhost/db
    group: g
    copy_binary: false
    binary_parameters: false
`, "field binary_parameters was removed"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runPgflo(t, "lint", path)
		if err == nil {
			t.Errorf("%s: pgflo lint accepted it:\n%s", c.name, out)
			continue
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: lint output does not name %q:\n%s", c.name, c.want, out)
		}
	}
}
