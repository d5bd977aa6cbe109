// Package metrics holds pgflo's Benthos metrics exporters. Benthos v4's core
// ships only json_api, logger and none; pgflo adds `prometheus`, so the
// replicator's and worker's metrics (pgflo's own pg_flo_* series and every
// stock Benthos series) can be scraped from the HTTP server's /metrics.
package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// Field names of the prometheus metrics exporter.
const (
	promFieldPrefix             = "prefix"
	promFieldUseHistogramTiming = "use_histogram_timing"
	promFieldHistogramBuckets   = "histogram_buckets"
	promFieldSummaryObjectives  = "summary_quantiles_objectives"
	promFieldQuantile           = "quantile"
	promFieldError              = "error"
	promFieldAddGoMetrics       = "add_go_metrics"
	promFieldAddProcessMetrics  = "add_process_metrics"
)

const prometheusDescription = `
Keeps every metric of the pipeline in a Prometheus registry and serves it, in the Prometheus text exposition
format, on the HTTP server (the ‹http› section, port 4195 by default) at ‹/metrics› (and ‹/stats›). Point a
Prometheus scrape job at ‹http://<host>:4195/metrics›. Benthos makes an exporter named ‹prometheus› the
default of the ‹metrics› section, so every pgflo config without one (and every ‹pgflo replicator› and
‹pgflo worker› command) exports this way.

### What is exported

- Counters are Prometheus counters, gauges are gauges; labels are kept as labels. Benthos labels every
  component's metrics with ‹label› (the component's label) and ‹path› (its place in the config, such as
  ‹root.input›).
- Timers are exported in **seconds**: as histograms by default (‹use_histogram_timing›, buckets
  ‹histogram_buckets›), or as summaries with the quantiles of ‹summary_quantiles_objectives›. Benthos measures
  timers in nanoseconds and names several of them ‹…_ns›; a timer whose name ends in ‹_ns› is exported as
  ‹…_seconds› instead (‹output_latency_ns› becomes ‹output_latency_seconds›), so a name never lies about its
  unit.
- Names and label names are made valid Prometheus names: every character other than letters, digits, ‹_›
  (and ‹:› in metric names) becomes ‹_›. Label values are kept as they are.
- pgflo's components add ‹pg_flo_replication_lag_bytes›, ‹pg_flo_events_total{table,op}›,
  ‹pg_flo_snapshot_rows_total›, ‹pg_flo_snapshot_chunks_done›, ‹pg_flo_snapshot_chunks_total› (by ‹table›) and
  ‹pg_flo_apply_batch_seconds›; Benthos adds its own (‹input_received›, ‹output_sent›, ‹output_error›, …).

Rename or drop metrics with the ‹mapping› field of the ‹metrics› section, as for every Benthos exporter. A
metric registered twice with a different type or different label names (two ‹metric› processors disagreeing,
for instance) keeps its first definition; the second is dropped with a warning in the log.

This exporter is pgflo's own (Benthos v4 has none for Prometheus). Its fields follow Redpanda Connect's
‹prometheus› exporter, with two differences: timers default to histograms, and summaries are in seconds too.
Push gateway and file output are not supported: Prometheus scrapes.`

// defaultObjectives are the summary quantiles exported by default, with
// their allowed absolute errors.
var defaultObjectives = []any{
	map[string]any{promFieldQuantile: 0.5, promFieldError: 0.05},
	map[string]any{promFieldQuantile: 0.9, promFieldError: 0.01},
	map[string]any{promFieldQuantile: 0.99, promFieldError: 0.001},
}

func prometheusSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Summary("Serves the pipeline's metrics, pgflo's included, in the Prometheus text format at the HTTP server's /metrics.").
		Description(strings.NewReplacer("‹", "`", "›", "`").Replace(prometheusDescription)).
		Fields(
			service.NewStringField(promFieldPrefix).
				Description("Prepended to every metric name with an underscore (`pgflo` turns `input_received` into `pgflo_input_received`). Empty exports the names as they are. The Go and process metrics keep their standard names.").
				Example("pgflo").
				Default(""),
			service.NewBoolField(promFieldUseHistogramTiming).
				Description("Export timers as histograms (true) or as summaries (false). Both are in seconds.").
				Default(true).
				Advanced(),
			service.NewFloatListField(promFieldHistogramBuckets).
				Description("Upper bounds, in seconds and increasing, of the timer histograms' buckets. Empty uses Prometheus' defaults (0.005 s to 10 s).").
				Example([]float64{0.001, 0.01, 0.1, 1, 10}).
				Default([]any{}).
				Advanced(),
			service.NewObjectListField(promFieldSummaryObjectives,
				service.NewFloatField(promFieldQuantile).
					Description("The quantile, between 0 and 1.").
					Example(0.99),
				service.NewFloatField(promFieldError).
					Description("The allowed absolute error of the quantile, between 0 and 1.").
					Example(0.001),
			).
				Description("The quantiles the timer summaries export, when `use_histogram_timing` is false.").
				Default(defaultObjectives).
				Advanced(),
			service.NewBoolField(promFieldAddGoMetrics).
				Description("Also export the Go runtime's metrics (`go_*`: goroutines, heap, GC pauses).").
				Default(false),
			service.NewBoolField(promFieldAddProcessMetrics).
				Description("Also export the process' metrics (`process_*`: CPU seconds, resident memory, open file descriptors).").
				Default(false),
		)
}

func init() {
	service.MustRegisterMetricsExporter("prometheus", prometheusSpec(),
		func(conf *service.ParsedConfig, log *service.Logger) (service.MetricsExporter, error) {
			return newPrometheus(conf, log)
		})
}

// metricKind is what a registered family holds.
type metricKind string

const (
	kindCounter metricKind = "counter"
	kindGauge   metricKind = "gauge"
	kindTimer   metricKind = "timer"
)

// family is one registered metric name.
type family struct {
	kind   metricKind
	labels []string
	// vec is a *prometheus.CounterVec, *prometheus.GaugeVec or a
	// prometheus.ObserverVec; nil when registering it failed.
	vec prometheus.Collector
}

// promExporter is the prometheus metrics exporter: a registry of its own
// (so two streams in one process never collide) and its HTTP handler.
type promExporter struct {
	log        *service.Logger
	registry   *prometheus.Registry
	handler    http.Handler
	prefix     string
	histogram  bool
	buckets    []float64
	objectives map[float64]float64

	mu       sync.Mutex
	families map[string]*family
}

var validPrefix = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func newPrometheus(conf *service.ParsedConfig, log *service.Logger) (*promExporter, error) {
	e := &promExporter{
		log:      log,
		registry: prometheus.NewRegistry(),
		families: map[string]*family{},
	}
	var err error
	if e.prefix, err = conf.FieldString(promFieldPrefix); err != nil {
		return nil, err
	}
	if e.prefix != "" && !validPrefix.MatchString(e.prefix) {
		return nil, fmt.Errorf("field %s: %q is not a valid Prometheus name (letters, digits, '_' and ':', not starting with a digit)", promFieldPrefix, e.prefix)
	}
	if e.histogram, err = conf.FieldBool(promFieldUseHistogramTiming); err != nil {
		return nil, err
	}
	if e.buckets, err = conf.FieldFloatList(promFieldHistogramBuckets); err != nil {
		return nil, err
	}
	for i := 1; i < len(e.buckets); i++ {
		if e.buckets[i] <= e.buckets[i-1] {
			return nil, fmt.Errorf("field %s: bucket bounds must increase, but %v follows %v", promFieldHistogramBuckets, e.buckets[i], e.buckets[i-1])
		}
	}
	if len(e.buckets) == 0 {
		e.buckets = prometheus.DefBuckets
	}
	if e.objectives, err = parseObjectives(conf); err != nil {
		return nil, err
	}

	addGo, err := conf.FieldBool(promFieldAddGoMetrics)
	if err != nil {
		return nil, err
	}
	if addGo {
		if err := e.registry.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("field %s: %w", promFieldAddGoMetrics, err)
		}
	}
	addProcess, err := conf.FieldBool(promFieldAddProcessMetrics)
	if err != nil {
		return nil, err
	}
	if addProcess {
		if err := e.registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("field %s: %w", promFieldAddProcessMetrics, err)
		}
	}
	e.handler = promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return e, nil
}

func parseObjectives(conf *service.ParsedConfig) (map[float64]float64, error) {
	list, err := conf.FieldObjectList(promFieldSummaryObjectives)
	if err != nil {
		return nil, err
	}
	objectives := make(map[float64]float64, len(list))
	for i, obj := range list {
		q, err := obj.FieldFloat(promFieldQuantile)
		if err != nil {
			return nil, err
		}
		e, err := obj.FieldFloat(promFieldError)
		if err != nil {
			return nil, err
		}
		if q < 0 || q > 1 || e <= 0 || e >= 1 {
			return nil, fmt.Errorf("field %s[%d]: quantile must be within [0, 1] and error within (0, 1), got %v and %v", promFieldSummaryObjectives, i, q, e)
		}
		objectives[q] = e
	}
	return objectives, nil
}

// HandlerFunc serves the registry in the text exposition format; Benthos'
// HTTP server mounts it at /metrics and /stats.
func (e *promExporter) HandlerFunc() http.HandlerFunc { return e.handler.ServeHTTP }

// Close has nothing to release: the registry goes with the exporter.
func (e *promExporter) Close(context.Context) error { return nil }

// NewCounterCtor returns the constructor of name's counters.
func (e *promExporter) NewCounterCtor(name string, labelKeys ...string) service.MetricsExporterCounterCtor {
	var get func(...string) (prometheus.Counter, error)
	if vec, ok := e.vec(name, kindCounter, labelKeys, func(opts prometheus.Opts, labels []string) prometheus.Collector {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts), labels)
	}).(*prometheus.CounterVec); ok {
		get = vec.GetMetricWithLabelValues
	}
	return series(get, func(c prometheus.Counter) service.MetricsExporterCounter { return counter{c} })
}

// NewGaugeCtor returns the constructor of name's gauges.
func (e *promExporter) NewGaugeCtor(name string, labelKeys ...string) service.MetricsExporterGaugeCtor {
	var get func(...string) (prometheus.Gauge, error)
	if vec, ok := e.vec(name, kindGauge, labelKeys, func(opts prometheus.Opts, labels []string) prometheus.Collector {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts(opts), labels)
	}).(*prometheus.GaugeVec); ok {
		get = vec.GetMetricWithLabelValues
	}
	return series(get, func(g prometheus.Gauge) service.MetricsExporterGauge { return gauge{g} })
}

// NewTimerCtor returns the constructor of name's timers: a histogram or a
// summary in seconds, named …_seconds when Benthos named it …_ns.
func (e *promExporter) NewTimerCtor(name string, labelKeys ...string) service.MetricsExporterTimerCtor {
	var get func(...string) (prometheus.Observer, error)
	if vec, ok := e.vec(name, kindTimer, labelKeys, func(opts prometheus.Opts, labels []string) prometheus.Collector {
		if e.histogram {
			return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: opts.Name, Help: opts.Help, Buckets: e.buckets}, labels)
		}
		return prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: opts.Name, Help: opts.Help, Objectives: e.objectives}, labels)
	}).(prometheus.ObserverVec); ok {
		get = vec.GetMetricWithLabelValues
	}
	return series(get, func(o prometheus.Observer) service.MetricsExporterTimer { return timer{o} })
}

// series returns the constructor of a family's series: get's series for
// the label values, wrapped. Without get (the family was rejected) or when
// the values do not fit the labels, the series is discarded rather than
// breaking the pipeline.
func series[M, R any](get func(...string) (M, error), wrap func(M) R) func(...string) R {
	none := any(discard{}).(R) // discard implements every kind of metric
	return func(labelValues ...string) R {
		if get == nil {
			return none
		}
		m, err := get(validValues(labelValues)...)
		if err != nil {
			return none
		}
		return wrap(m)
	}
}

// vec returns the collector of the metric Benthos calls name, creating it
// with newVec (given its Prometheus name and help) and registering it on
// first use. It returns nil, and logs why, when the name is already
// registered with another kind or other labels, or the registry refuses it.
func (e *promExporter) vec(name string, kind metricKind, labelKeys []string, newVec func(opts prometheus.Opts, labels []string) prometheus.Collector) prometheus.Collector {
	if kind == kindTimer {
		name = timerName(name)
	}
	opts := prometheus.Opts{Name: e.metricName(name), Help: helpText(name, kind)}
	labels := make([]string, len(labelKeys))
	for i, k := range labelKeys {
		labels[i] = labelName(k)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.families[opts.Name]; ok {
		if f.kind != kind || !slices.Equal(f.labels, labels) {
			e.log.Warnf("Metric %s is already registered as a %s with labels %v; dropping the %s with labels %v", opts.Name, f.kind, f.labels, kind, labels)
			return nil
		}
		return f.vec
	}
	f := &family{kind: kind, labels: labels}
	e.families[opts.Name] = f
	vec := newVec(opts, labels)
	if err := e.registry.Register(vec); err != nil {
		e.log.Warnf("Metric %s cannot be exported: %v", opts.Name, err)
		return nil
	}
	f.vec = vec
	return vec
}

// metricName applies the prefix to a Benthos metric name and makes it a
// valid Prometheus metric name.
func (e *promExporter) metricName(name string) string {
	if e.prefix != "" {
		name = e.prefix + "_" + name
	}
	return sanitize(name, true)
}

// timerName names a timer for its unit: Benthos' …_ns timers are exported
// in seconds.
func timerName(name string) string {
	if base, ok := strings.CutSuffix(name, "_ns"); ok {
		return base + "_seconds"
	}
	return name
}

// labelName makes key a valid Prometheus label name; names starting with
// "__" are reserved for Prometheus, so one underscore is dropped.
func labelName(key string) string {
	name := sanitize(key, false)
	for strings.HasPrefix(name, "__") {
		name = name[1:]
	}
	return name
}

// sanitize replaces every character Prometheus does not allow in a name
// with '_' (':' is allowed in metric names only), and prefixes a name that
// starts with a digit, or is empty, with '_'.
func sanitize(name string, colon bool) string {
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', colon && r == ':':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// validValues replaces invalid UTF-8 in label values, which Prometheus
// rejects.
func validValues(values []string) []string {
	for i, v := range values {
		if !utf8.ValidString(v) {
			values = slices.Clone(values)
			values[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return values
}

// knownHelp describes pgflo's own metrics in the exposition's HELP lines.
var knownHelp = map[string]string{
	"pg_flo_replication_lag_bytes": "WAL the source retains for the group's slot: the server's WAL end minus the slot's confirmed flush position, in bytes.",
	"pg_flo_events_total":          "Change events emitted by the replicator, by table and operation.",
	"pg_flo_snapshot_rows_total":   "Rows copied by the snapshot, by table.",
	"pg_flo_snapshot_chunks_done":  "Snapshot chunks copied and acknowledged, by table.",
	"pg_flo_snapshot_chunks_total": "Snapshot chunks planned, by table.",
	"pg_flo_apply_batch_seconds":   "Time to apply one batch of events to the target PostgreSQL, in seconds.",
}

// helpText is the HELP line of the metric Benthos calls name.
func helpText(name string, kind metricKind) string {
	if text, ok := knownHelp[name]; ok {
		return text
	}
	if kind == kindTimer {
		return "Benthos timer " + name + ", in seconds."
	}
	return "Benthos " + string(kind) + " " + name + "."
}

// counter adapts a Prometheus counter, which cannot go down: negative
// increments are ignored.
type counter struct{ c prometheus.Counter }

func (c counter) Incr(count int64) {
	if count > 0 {
		c.c.Add(float64(count))
	}
}

func (c counter) IncrFloat64(count float64) {
	if count > 0 && !math.IsInf(count, 1) {
		c.c.Add(count)
	}
}

type gauge struct{ g prometheus.Gauge }

func (g gauge) Set(value int64)          { g.g.Set(float64(value)) }
func (g gauge) SetFloat64(value float64) { g.g.Set(value) }

type timer struct{ o prometheus.Observer }

// Timing records delta, in nanoseconds, as seconds.
func (t timer) Timing(delta int64) { t.o.Observe(float64(delta) / 1e9) }

// discard stands in for a metric that could not be registered.
type discard struct{}

func (discard) Incr(int64)          {}
func (discard) IncrFloat64(float64) {}
func (discard) Set(int64)           {}
func (discard) SetFloat64(float64)  {}
func (discard) Timing(int64)        {}
