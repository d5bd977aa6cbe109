package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/testenv"
)

// pipeline is one replication group run as two processes of the built binary:
// replicator (slot → JetStream) and worker (JetStream → an output).
type pipeline struct {
	t     *testing.T
	bin   string
	dir   string
	dsn   string
	group string
	nats  *testenv.NATS
	// urls, when set, are the NATS URLs the processes use instead of nats's
	// (a cluster's, comma-separated).
	urls   string
	output string // the worker's file output, one event per line

	// replicatorExtra is YAML added under pg_flo_replicator (indented by 4),
	// workerExtra under pg_flo_worker (the same), workerProcessors YAML for
	// the worker's pipeline.processors (indented by 4, list items).
	replicatorExtra, workerExtra, workerProcessors string
	// replicatorOutput, when set, is the replicator's output YAML (indented
	// by 2) instead of pg_flo_jetstream: a one-process pipeline.
	replicatorOutput string
	// replicatorHTTP, when set, is the replicator's HTTP server address
	// (metrics, /ready); it is disabled otherwise.
	replicatorHTTP string

	replicator, worker *testenv.Process
}

func newPipeline(t *testing.T, dsn, group string) *pipeline {
	t.Helper()
	dir := t.TempDir()
	return &pipeline{
		t: t, bin: testenv.Binary(t), dir: dir, dsn: dsn, group: group,
		nats: testenv.StartNATS(t), output: filepath.Join(dir, "changes.jsonl"),
	}
}

// itemsPipeline is a pipeline of group over a new database holding an empty
// table items; with lease its replicator keeps the group's state on NATS
// (nats.url), and so takes part in the group's ownership lease.
func itemsPipeline(t *testing.T, group string, lease bool) *pipeline {
	t.Helper()
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	p := newPipeline(t, dsn, group)
	if lease {
		p.replicatorExtra = "    nats:\n      url: " + p.nats.URL()
	}
	return p
}

// natsURL is the NATS URL (or URLs) the processes connect to.
func (p *pipeline) natsURL() string {
	if p.urls != "" {
		return p.urls
	}
	return p.nats.URL()
}

func (p *pipeline) writeConfig(name, body string) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

const quietHTTP = "http:\n  enabled: false\nlogger:\n  level: DEBUG\n  format: logfmt\n"

func (p *pipeline) replicatorConfig() string {
	output := p.replicatorOutput
	if output == "" {
		output = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s", p.natsURL(), p.group)
	}
	return p.writeConfig("replicator.yaml", fmt.Sprintf(`%s
input:
  pg_flo_replicator:
    dsn: %q
    group: %s
    status_interval: 1s
%s
output:
  %s
`, p.httpSection(), p.dsn, p.group, p.replicatorExtra, output))
}

func (p *pipeline) httpSection() string {
	if p.replicatorHTTP == "" {
		return quietHTTP
	}
	return strings.Replace(quietHTTP, "  enabled: false", "  address: "+p.replicatorHTTP, 1) + "metrics:\n  prometheus: {}\n"
}

// startReplicator starts the replicator and waits until it streams from the
// slot, so that every change written afterwards is captured.
func (p *pipeline) startReplicator() {
	p.t.Helper()
	p.startReplicatorNoWait()
	testenv.Eventually(p.t, 30*time.Second, "replicator streaming from its slot", func() bool {
		rows := testenv.QueryRows(p.t, p.dsn, "SELECT active::text FROM pg_replication_slots WHERE slot_name = $1", p.slot())
		return len(rows) == 1 && rows[0][0] == "true"
	})
}

// startReplicatorNoWait starts the replicator process and returns at once.
func (p *pipeline) startReplicatorNoWait() {
	p.t.Helper()
	p.replicator = testenv.StartProcess(p.t, "replicator", p.bin, "run", p.replicatorConfig())
}

func (p *pipeline) slot() string { return replication.PgFloName(p.group) }

// startWorker starts the worker with outputYAML (default: the file output).
func (p *pipeline) startWorker(outputYAML string) {
	p.t.Helper()
	p.startWorkerWith(p.workerProcessors, outputYAML)
}

// startWorkerWith starts the worker with processorsYAML (list items of
// pipeline.processors, indented by four spaces; none when empty) and
// outputYAML (default: the file output).
func (p *pipeline) startWorkerWith(processorsYAML, outputYAML string) {
	p.t.Helper()
	if outputYAML == "" {
		outputYAML = fmt.Sprintf("file:\n    path: %q\n    codec: lines", p.output)
		p.dropPartialLine()
	}
	pipelineYAML := ""
	if processorsYAML != "" {
		pipelineYAML = "pipeline:\n  processors:\n" + strings.TrimRight(processorsYAML, "\n") + "\n"
	}
	cfg := p.writeConfig("worker.yaml", fmt.Sprintf(`%s
input:
  pg_flo_worker:
    url: %s
    group: %s
%s%soutput:
  %s
`, quietHTTP, p.natsURL(), p.group, p.workerExtra, pipelineYAML, outputYAML))
	p.worker = testenv.StartProcess(p.t, "worker", p.bin, "run", cfg)
}

// dropPartialLine cuts off the last line of the worker's file output when
// it is incomplete: a worker killed while writing it left it so, and never
// acknowledged its message, which the next worker writes again — appended to
// the partial line, it would make one line of two.
func (p *pipeline) dropPartialLine() {
	p.t.Helper()
	data, err := os.ReadFile(p.output)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		p.t.Fatal(err)
	}
	if keep := bytes.LastIndexByte(data, '\n') + 1; keep < len(data) {
		if err := os.Truncate(p.output, int64(keep)); err != nil {
			p.t.Fatal(err)
		}
	}
}

// events reads the complete lines of the worker's file output.
func (p *pipeline) events() []event.Event {
	p.t.Helper()
	return readEvents(p.t, p.output)
}

func readEvents(t *testing.T, path string) []event.Event {
	t.Helper()
	var out []event.Event
	for i, line := range outputLines(t, path) {
		ev, err := eventtest.Decode(line)
		if err != nil {
			t.Fatalf("output line %d is not a change event: %v\n%s", i+1, err, line)
		}
		out = append(out, *ev)
	}
	return out
}

// outputLines returns the complete lines of an output file (none when it
// does not exist yet); a last line still being written is left out.
func outputLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		return nil
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data[:i+1]))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines
}

// keyOf returns the value of the id column from new, or else old.
func keyOf(ev event.Event) string {
	if v, ok := ev.New.Get("id"); ok {
		return v.Text
	}
	if v, ok := ev.Old.Get("id"); ok {
		return v.Text
	}
	return ""
}
