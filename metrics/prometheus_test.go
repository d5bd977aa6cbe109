package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/testenv"
)

// exporterFrom builds the exporter from a YAML config of the prometheus
// field, as Benthos would.
func exporterFrom(t *testing.T, yaml string) (*promExporter, error) {
	t.Helper()
	conf, err := prometheusSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse %q: %v", yaml, err)
	}
	return newPrometheus(conf, nil)
}

// exposition returns what the exporter serves at /metrics.
func exposition(t *testing.T, e *promExporter) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.HandlerFunc()(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func assertLines(t *testing.T, body string, want ...string) {
	t.Helper()
	lines := strings.Split(body, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if l == w {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("exposition lacks the line %q:\n%s", w, body)
		}
	}
}

// A Benthos stream with the HTTP server on and `metrics: prometheus`
// serves the metric processor's labelled counter, gauge and timer (in
// seconds), and Benthos' own metrics, at /metrics and /stats. Benthos
// labels every component's metrics with its label and config path.
func TestStreamServesPrometheusExposition(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	builder := service.NewStreamBuilder()
	if err := builder.SetYAML(fmt.Sprintf(`
http:
  enabled: true
  address: 127.0.0.1:%d
pipeline:
  processors:
    - metric:
        type: counter
        name: pg_flo_events_total
        labels:
          table: ${! json("table") }
          op: ${! json("op") }
    - metric:
        type: gauge
        name: pg_flo_replication_lag_bytes
        value: ${! json("lag") }
    - metric:
        type: timing
        name: apply_ns
        value: 1500000000
output:
  drop: {}
metrics:
  prometheus: {}
logger:
  level: NONE
`, port)); err != nil {
		t.Fatal(err)
	}
	produce, err := builder.AddProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	stream, err := builder.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	t.Cleanup(func() {
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer stopCancel()
		_ = stream.Stop(stopCtx)
		<-done
	})

	for _, doc := range []string{
		`{"table":"public.users","op":"INSERT","lag":4096}`,
		`{"table":"public.users","op":"INSERT","lag":2048}`,
		`{"table":"public.users","op":"UPDATE","lag":0}`,
	} {
		if err := produce(ctx, service.NewMessage([]byte(doc))); err != nil {
			t.Fatal(err)
		}
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var body string
	testenv.Eventually(t, 10*time.Second, "the metrics of three messages at /metrics", func() bool {
		body = get(base + "/metrics")
		return strings.Contains(body, `output_sent{label="",path="root.output"} 3`)
	})
	assertLines(t, body,
		"# HELP pg_flo_events_total Change events emitted by the replicator, by table and operation.",
		"# TYPE pg_flo_events_total counter",
		`pg_flo_events_total{label="",op="INSERT",path="root.pipeline.processors.0",table="public.users"} 2`,
		`pg_flo_events_total{label="",op="UPDATE",path="root.pipeline.processors.0",table="public.users"} 1`,
		"# TYPE pg_flo_replication_lag_bytes gauge",
		`pg_flo_replication_lag_bytes{label="",path="root.pipeline.processors.1"} 0`,
		"# TYPE apply_seconds histogram",
		`apply_seconds_bucket{label="",path="root.pipeline.processors.2",le="1"} 0`,
		`apply_seconds_bucket{label="",path="root.pipeline.processors.2",le="2.5"} 3`,
		`apply_seconds_bucket{label="",path="root.pipeline.processors.2",le="+Inf"} 3`,
		`apply_seconds_sum{label="",path="root.pipeline.processors.2"} 4.5`,
		`apply_seconds_count{label="",path="root.pipeline.processors.2"} 3`,
		"# TYPE output_latency_seconds histogram",
		`output_sent{label="",path="root.output"} 3`,
	)
	if stats := get(base + "/stats"); !strings.Contains(stats, "# TYPE pg_flo_events_total counter") {
		t.Errorf("/stats does not serve the exposition:\n%s", stats)
	}
}

func get(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestPrefixSanitizingAndFloats(t *testing.T) {
	e, err := exporterFrom(t, `prefix: pgflo`)
	if err != nil {
		t.Fatal(err)
	}
	e.NewCounterCtor("Foos.total", "kafka-topic", "__meta")("orders", "x").Incr(3)
	c := e.NewCounterCtor("fractions")()
	c.(interface{ IncrFloat64(float64) }).IncrFloat64(0.25)
	c.Incr(-5) // counters never go down
	g := e.NewGaugeCtor("9lives")()
	g.Set(7)
	g.(interface{ SetFloat64(float64) }).SetFloat64(-1.5)
	e.NewGaugeCtor("invalid_utf8", "v")("a\xffb").Set(1)
	assertLines(t, exposition(t, e),
		`pgflo_Foos_total{_meta="x",kafka_topic="orders"} 3`,
		"pgflo_fractions 0.25",
		"pgflo_9lives -1.5",
		`pgflo_invalid_utf8{v="a�b"} 1`,
	)
}

func TestSummaryTiming(t *testing.T) {
	e, err := exporterFrom(t, `
use_histogram_timing: false
summary_quantiles_objectives:
  - { quantile: 0.5, error: 0.01 }
`)
	if err != nil {
		t.Fatal(err)
	}
	timing := e.NewTimerCtor("output_latency_ns", "path")
	for _, ns := range []int64{1e9, 2e9, 3e9} {
		timing("root.output").Timing(ns)
	}
	assertLines(t, exposition(t, e),
		"# TYPE output_latency_seconds summary",
		`output_latency_seconds{path="root.output",quantile="0.5"} 2`,
		`output_latency_seconds_sum{path="root.output"} 6`,
		`output_latency_seconds_count{path="root.output"} 3`,
	)
}

func TestCustomBuckets(t *testing.T) {
	e, err := exporterFrom(t, `histogram_buckets: [0.1, 1]`)
	if err != nil {
		t.Fatal(err)
	}
	e.NewTimerCtor("pg_flo_apply_batch_seconds")().Timing(int64(50 * time.Millisecond))
	assertLines(t, exposition(t, e),
		"# HELP pg_flo_apply_batch_seconds Time to apply one batch of events to the target PostgreSQL, in seconds.",
		`pg_flo_apply_batch_seconds_bucket{le="0.1"} 1`,
		`pg_flo_apply_batch_seconds_bucket{le="1"} 1`,
		"pg_flo_apply_batch_seconds_sum 0.05",
	)
}

// A name registered again with the same kind and labels shares the series;
// with another kind or other labels the newcomer is dropped, not the
// pipeline.
func TestConflictingRegistrations(t *testing.T) {
	e, err := exporterFrom(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	e.NewCounterCtor("hits", "table")("a").Incr(1)
	e.NewCounterCtor("hits", "table")("a").Incr(1)
	e.NewGaugeCtor("hits", "table")("a").Set(100)
	e.NewCounterCtor("hits", "other")("a").Incr(100)
	e.NewCounterCtor("hits", "table")("a", "too many").Incr(100)
	body := exposition(t, e)
	assertLines(t, body, "# TYPE hits counter", `hits{table="a"} 2`)
	if strings.Contains(body, "100") {
		t.Errorf("a conflicting registration reached the exposition:\n%s", body)
	}
}

func TestGoAndProcessMetrics(t *testing.T) {
	e, err := exporterFrom(t, `{add_go_metrics: true, add_process_metrics: true}`)
	if err != nil {
		t.Fatal(err)
	}
	body := exposition(t, e)
	for _, want := range []string{"# TYPE go_goroutines gauge", "# TYPE process_resident_memory_bytes gauge"} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	plain, err := exporterFrom(t, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if body := exposition(t, plain); strings.Contains(body, "go_goroutines") {
		t.Errorf("Go metrics exported without add_go_metrics:\n%s", body)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`prefix: "my-app"`, "field prefix"},
		{`histogram_buckets: [1, 0.5]`, "field histogram_buckets"},
		{`summary_quantiles_objectives: [{quantile: 1.5, error: 0.1}]`, "field summary_quantiles_objectives[0]"},
	} {
		_, err := exporterFrom(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.yaml, err, tc.want)
		}
	}
}
