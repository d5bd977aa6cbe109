// Command processors is pgflo's worker-processor benchmark (make
// bench-processors): change events, JSON in and JSON out, through
//
//   - pg_flo_decode → pg_flo_rules (pg_flo's 4 example rules) → pg_flo_route,
//   - pg_flo_rules → pg_flo_route (the same work without typing the values),
//   - one stock Benthos `mapping` doing the rules' and the routing's work in
//     plain Bloblang (mask, regex, filter, renames),
//
// each in a Benthos stream on one core (GOMAXPROCS=1), in the same run over
// the same events, with three `noop` processors as the stream's own cost.
// Before timing, it checks that the mapping and pgflo's rules and routing
// give the same events, so both do the same work. Rates are events per CPU
// second of the process (GC included), which other work on a shared machine
// does not distort; the wall rate is printed beside.
//
//	go run ./bench/processors [--events 200000] [--runs 3] [--out bench/results/processors.md] [--only NAME] [--cpuprofile FILE]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/event"
	_ "github.com/pgflo/pgflo/processors"
)

// rulesYAML is pg_flo's example rules file (resources/rules/pg_flo_rules.yaml).
const rulesYAML = `
pg_flo_rules:
  rules:
    tables:
      users:
        - { type: transform, column: email, parameters: { type: mask, mask_char: "*", allow_empty_deletes: true }, operations: [INSERT, UPDATE, DELETE] }
        - { type: transform, column: phone, parameters: { type: regex, pattern: '^(\d{3})(\d{3})(\d{4})$', replace: '($1) $2-$3', allow_empty_deletes: true }, operations: [INSERT, UPDATE, DELETE] }
        - { type: filter, column: age, parameters: { operator: gte, value: 18, allow_empty_deletes: true }, operations: [INSERT, UPDATE, DELETE] }
        - { type: transform, column: ssn, parameters: { type: mask, mask_char: "X", allow_empty_deletes: true }, operations: [INSERT, UPDATE, DELETE] }
`

// routeYAML is resources/rules/pg_flo_routing.yaml.
const routeYAML = `
pg_flo_route:
  routes:
    users:
      destination_table: customers
      column_mappings:
        - { source: id, destination: customer_id }
        - { source: email, destination: contact_email }
      operations: [INSERT, UPDATE, DELETE]
`

// mappingYAML does the rules' and the routing's work in plain Bloblang.
const mappingYAML = `
mapping: |
  map mask_star {
    root = if this == null || this.length() <= 2 { this } else { this.slice(0, 1) + this.slice(1, -1).re_replace_all("(?s).", "*") + this.slice(-1) }
  }
  map mask_x {
    root = if this == null || this.length() <= 2 { this } else { this.slice(0, 1) + this.slice(1, -1).re_replace_all("(?s).", "X") + this.slice(-1) }
  }
  map transform {
    root = this
    root.email = if this.exists("email") { this.email.apply("mask_star") } else { deleted() }
    root.phone = if this.phone != null { this.phone.re_replace_all("^(\\d{3})(\\d{3})(\\d{4})$", "($1) $2-$3") } else if this.exists("phone") { null } else { deleted() }
    root.ssn = if this.exists("ssn") { this.ssn.apply("mask_x") } else { deleted() }
  }
  map rename {
    root = this.map_each_key(k -> match k { "id" => "customer_id", "email" => "contact_email", _ => k })
  }
  root = this
  if this.table == "users" {
    let row = if this.op == "DELETE" { this.old } else { this.new }
    if $row.exists("age") && ($row.age == null || $row.age.number() < 18) {
      root = deleted()
    } else {
      root.new = if this.new != null { this.new.apply("transform").apply("rename") }
      root.old = if this.old != null { this.old.apply("transform").apply("rename") }
      root.columns = this.columns.map_each(c -> c.assign({"name": match c.name { "id" => "customer_id", "email" => "contact_email", _ => c.name }}))
      root.table = "customers"
      meta pg_flo_table = "customers"
    }
  }
`

type options struct {
	events int
	runs   int
	batch  int
	out    string
	only   string
}

func main() {
	var o options
	flag.IntVar(&o.events, "events", 200000, "events per timed run")
	flag.IntVar(&o.runs, "runs", 3, "timed runs per pipeline; the best counts")
	flag.IntVar(&o.batch, "batch", 1000, "events per batch (pg_flo_worker's default batch_size)")
	flag.StringVar(&o.out, "out", "", "also write the result table (markdown) to this file, e.g. bench/results/processors.md")
	flag.StringVar(&o.only, "only", "", "time only the pipelines whose name contains this")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the timed runs to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/processors:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	runtime.GOMAXPROCS(1)
	if err := run(o); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/processors:", err)
		os.Exit(1)
	}
}

// pipeline is one measured processor chain.
type pipeline struct {
	name       string
	processors []string
}

func run(o options) error {
	events := makeEvents(5000)
	var size int
	for _, e := range events {
		size += len(e)
	}
	pipelines := []pipeline{
		{"pgflo: pg_flo_decode → pg_flo_rules (4 rules) → pg_flo_route", []string{"pg_flo_decode: {}", rulesYAML, routeYAML}},
		{"pgflo: pg_flo_rules (4 rules) → pg_flo_route", []string{rulesYAML, routeYAML}},
		{"Benthos `mapping` doing the same rules and routing in Bloblang", []string{mappingYAML}},
		{"(reference) three `noop` processors: the stream's own cost", []string{"noop: {}", "noop: {}", "noop: {}"}},
	}
	if err := sameWork(events[:2000], pipelines[1], pipelines[2]); err != nil {
		return err
	}
	type result struct {
		name     string
		rate     float64 // events per CPU second
		wallRate float64
		kept     int
	}
	var results []result
	for _, p := range pipelines {
		if !strings.Contains(p.name, o.only) {
			continue
		}
		best := result{name: p.name}
		for r := 0; r < o.runs; r++ {
			cpu, wall, kept, err := measure(p, events, o.events, o.batch)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if rate := float64(o.events) / cpu.Seconds(); rate > best.rate {
				best.rate, best.wallRate, best.kept = rate, float64(o.events)/wall.Seconds(), kept
			}
		}
		results = append(results, best)
		fmt.Fprintf(os.Stderr, "%-70s %10.0f events per CPU second (%.0f/s wall)\n", p.name, best.rate, best.wallRate)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Worker processors, one core\n\n")
	fmt.Fprintf(&b, "`go run ./bench/processors --events %d --runs %d` (GOMAXPROCS=1, %s, %s, %d CPUs), %s.\n\n",
		o.events, o.runs, runtime.Version(), runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Raw change events of a `users` table (7 columns, %d bytes on average; 70%% INSERT, 20%% UPDATE, 10%% DELETE;\n"+
		"ages 0–79, so about a fifth is filtered out), in batches of %d, JSON in and JSON out through a Benthos stream.\n"+
		"The rules are pg_flo's example rules, the routing renames the table and two columns. Best of %d runs.\n"+
		"The rate per core divides the events by the CPU time the process used (user and system, GC included), which\n"+
		"a machine shared with other work does not inflate; with one core and nothing else running it is the wall rate.\n\n",
		size/len(events), o.batch, o.runs)
	fmt.Fprintf(&b, "| pipeline | events/s per core (CPU time) | µs of CPU per event | events/s (wall) | events out |\n|---|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.0f | %d |\n", r.name, r.rate, 1e6/r.rate, r.wallRate, r.kept)
	}
	fmt.Fprintf(&b, "\nThe Bloblang mapping does less than pg_flo_rules: it compares ages as floats, masks by byte slices and\n"+
		"checks nothing (no column types, no errors for missing columns); its output was checked equal to pgflo's on\n"+
		"these events before timing.\n")
	fmt.Print(b.String())
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(o.out, []byte(b.String()), 0o644)
	}
	return nil
}

// makeEvents builds n raw change events of a users table.
func makeEvents(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	cols := []event.Column{
		{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "email", Type: "text", OID: 25},
		{Name: "phone", Type: "text", OID: 25}, {Name: "age", Type: "int4", OID: 23}, {Name: "ssn", Type: "text", OID: 25},
		{Name: "created_at", Type: "timestamptz", OID: 1184}, {Name: "note", Type: "text", OID: 25},
	}
	out := make([][]byte, n)
	for i := range out {
		id := fmt.Sprint(i + 1)
		row := event.Row{
			{Name: "id", Text: id},
			{Name: "email", Text: fmt.Sprintf("user%d@example.com", i)},
			{Name: "phone", Text: fmt.Sprintf("555%07d", rng.IntN(10000000))},
			{Name: "age", Text: fmt.Sprint(rng.IntN(80))},
			{Name: "ssn", Text: fmt.Sprintf("%03d-%02d-%04d", rng.IntN(1000), rng.IntN(100), rng.IntN(10000))},
			{Name: "created_at", Text: "2026-11-26 12:00:00.123456+00"},
			{Name: "note", Text: "Customer since 2019; prefers email contact, weekly newsletter, no calls after 6pm."},
		}
		ev := event.Event{V: event.Version, Schema: "public", Table: "users", Columns: cols,
			LSN: pglogrepl.LSN(0x16B3748 + 0x100*i), CommitLSN: pglogrepl.LSN(0x16B37A0 + 0x100*i), Xid: uint32(757 + i),
			CommitTime: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
		switch p := rng.IntN(10); {
		case p < 7:
			ev.Op, ev.New = event.Insert, row
		case p < 9:
			ev.Op, ev.New, ev.Old = event.Update, row, event.Row{{Name: "id", Text: id}}
		default:
			ev.Op, ev.Old = event.Delete, event.Row{{Name: "id", Text: id}}
		}
		out[i] = ev.AppendJSON(nil)
	}
	return out
}

// measure runs total events through p in batches and returns the CPU time
// and the wall time it took, and how many events came out.
func measure(p pipeline, events [][]byte, total, batchSize int) (cpu, wall time.Duration, kept int, err error) {
	var out atomic.Int64
	stream, send, err := build(p, func(batch service.MessageBatch) { out.Add(int64(len(batch))) })
	if err != nil {
		return 0, 0, 0, err
	}
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	runtime.GC()
	startCPU := cpuTime()
	start := time.Now()
	next := 0
	for sent := 0; sent < total; sent += batchSize {
		batch := make(service.MessageBatch, batchSize)
		for i := range batch {
			batch[i] = service.NewMessage(events[next])
			next = (next + 1) % len(events)
		}
		if err := send(ctx, batch); err != nil {
			return 0, 0, 0, err
		}
	}
	wall = time.Since(start)
	cpu = cpuTime() - startCPU
	if err := stream.Stop(ctx); err != nil {
		return 0, 0, 0, err
	}
	<-done
	return cpu, wall, int(out.Load()), nil
}

// cpuTime is the CPU time (user and system) this process used so far: on a
// machine shared with other work, events per CPU second is the rate per core
// that wall time would understate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func build(p pipeline, consume func(service.MessageBatch)) (*service.Stream, service.MessageBatchHandlerFunc, error) {
	b := service.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: NONE"); err != nil {
		return nil, nil, err
	}
	send, err := b.AddBatchProducerFunc()
	if err != nil {
		return nil, nil, err
	}
	for _, conf := range p.processors {
		if err := b.AddProcessorYAML(conf); err != nil {
			return nil, nil, err
		}
	}
	if err := b.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		for _, msg := range batch {
			if _, err := msg.AsBytes(); err != nil {
				return err
			}
		}
		consume(batch)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	stream, err := b.Build()
	return stream, send, err
}

// sameWork checks that two pipelines give the same events.
func sameWork(events [][]byte, a, b pipeline) error {
	outA, err := collect(a, events)
	if err != nil {
		return err
	}
	outB, err := collect(b, events)
	if err != nil {
		return err
	}
	if len(outA) != len(outB) {
		return fmt.Errorf("%q gave %d events, %q %d: they do not do the same work", a.name, len(outA), b.name, len(outB))
	}
	for i := range outA {
		if !reflect.DeepEqual(outA[i], outB[i]) {
			return fmt.Errorf("event %d differs:\n%s: %v\n%s: %v", i, a.name, outA[i], b.name, outB[i])
		}
	}
	return nil
}

func collect(p pipeline, events [][]byte) ([]any, error) {
	var out []any
	var failure error
	stream, send, err := build(p, func(batch service.MessageBatch) {
		for _, msg := range batch {
			data, _ := msg.AsBytes()
			var v any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil && failure == nil {
				failure = err
			}
			out = append(out, v)
		}
	})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	batch := make(service.MessageBatch, len(events))
	for i, e := range events {
		batch[i] = service.NewMessage(e)
	}
	if err := send(ctx, batch); err != nil {
		return nil, err
	}
	if err := stream.Stop(ctx); err != nil {
		return nil, err
	}
	<-done
	return out, failure
}
