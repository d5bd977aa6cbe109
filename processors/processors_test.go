package processors

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

// result is one message out of a pipeline run.
type result struct {
	body  string
	meta  map[string]string
	error string
}

// testStream builds a stream of the processors (one YAML document each) on
// threads pipeline threads, whose output goes to consume (one message at a
// time, serialized).
func testStream(t *testing.T, threads int, processorsYAML []string, consume func(*service.Message)) (*service.Stream, service.MessageBatchHandlerFunc) {
	t.Helper()
	b := service.NewStreamBuilder()
	b.SetThreads(threads)
	if err := b.SetLoggerYAML("level: NONE"); err != nil {
		t.Fatal(err)
	}
	send, err := b.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	for _, conf := range processorsYAML {
		if err := b.AddProcessorYAML(conf); err != nil {
			t.Fatalf("processor config: %v", err)
		}
	}
	var mu sync.Mutex
	if err := b.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range batch {
			consume(msg)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return stream, send
}

// runProcessors sends the inputs as one batch through the processors (one
// YAML document each) and returns what comes out.
func runProcessors(t *testing.T, processorsYAML []string, inputs ...string) []result {
	t.Helper()
	batch := service.MessageBatch{}
	for _, in := range inputs {
		msg := service.NewMessage([]byte(in))
		msg.MetaSetMut(event.MetaTable, "users")
		batch = append(batch, msg)
	}
	return runBatch(t, processorsYAML, batch)
}

// runBatch sends batch through the processors (one YAML document each) and
// returns what comes out.
func runBatch(t *testing.T, processorsYAML []string, batch service.MessageBatch) []result {
	t.Helper()
	var out []result
	stream, send := testStream(t, 1, processorsYAML, func(msg *service.Message) {
		data, _ := msg.AsBytes()
		r := result{body: string(data), meta: map[string]string{}}
		_ = msg.MetaWalk(func(k, v string) error { r.meta[k] = v; return nil })
		if err := msg.GetError(); err != nil {
			r.error = err.Error()
		}
		out = append(out, r)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	if err := send(ctx, batch); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := stream.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	return out
}

func userEvent(op event.Op, newRow, oldRow event.Row) string {
	ev := event.Event{Op: op, Schema: "public", Table: "users", Columns: []event.Column{
		{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "email", Type: "text", OID: 25}, {Name: "age", Type: "int4", OID: 23},
	}, New: newRow, Old: oldRow}
	return string(ev.AppendJSON(nil))
}

func TestRulesDropAndRoute(t *testing.T) {
	out := runProcessors(t, []string{`
pg_flo_rules:
  rules:
    tables:
      users:
        - { type: filter, column: age, parameters: { operator: gte, value: 18 }, operations: [INSERT] }
        - { type: transform, column: email, parameters: { type: mask, mask_char: "*" } }
`, `
pg_flo_route:
  routes:
    users:
      destination_table: customers
      destination_schema: crm
      column_mappings: [{ source: id, destination: customer_id }]
`},
		userEvent(event.Insert, event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "kid@x.io"}, {Name: "age", Text: "9"}}, nil),
		userEvent(event.Insert, event.Row{{Name: "id", Text: "2"}, {Name: "email", Text: "adult@x.io"}, {Name: "age", Text: "40"}}, nil),
		userEvent(event.Update, event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "kid@x.io"}, {Name: "age", Text: "10"}}, event.Row{{Name: "id", Text: "1"}}),
		`not an event`,
	)
	if len(out) != 3 {
		t.Fatalf("got %d messages, want 3 (the minor's insert dropped): %+v", len(out), out)
	}
	for i, want := range []string{`"new":{"customer_id":"2","email":"a********o","age":"40"}`, `"new":{"customer_id":"1","email":"k******o","age":"10"}`} {
		if !strings.Contains(out[i].body, want) || !strings.Contains(out[i].body, `"schema":"crm","table":"customers"`) {
			t.Errorf("message %d = %s, want it to contain %s", i, out[i].body, want)
		}
		if out[i].meta[event.MetaTable] != "customers" || out[i].meta[event.MetaSchema] != "crm" {
			t.Errorf("message %d metadata = %v", i, out[i].meta)
		}
	}
	if out[2].body != "not an event" || !strings.Contains(out[2].error, "not a pgflo change event") {
		t.Errorf("malformed message = %+v, want it unchanged and flagged", out[2])
	}
}

func TestDecodeProcessor(t *testing.T) {
	out := runProcessors(t, []string{"pg_flo_decode: {}"},
		userEvent(event.Insert, event.Row{{Name: "id", Text: "9007199254740993"}, {Name: "email", Text: "a@b.c"}, {Name: "age", Text: "<bad>"}}, nil),
		userEvent(event.Insert, event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "a@b.c"}, {Name: "age", Null: true}}, nil),
	)
	if len(out) != 2 {
		t.Fatalf("got %d messages", len(out))
	}
	if !strings.Contains(out[0].error, `column "age": decode int4 value "<bad>"`) || strings.Contains(out[0].body, "typed") {
		t.Errorf("bad value: %+v, want it flagged and unchanged", out[0])
	}
	if !strings.Contains(out[1].body, `"new":{"id":1,"email":"a@b.c","age":null}`) || !strings.HasSuffix(out[1].body, `,"typed":true}`) {
		t.Errorf("typed event = %s", out[1].body)
	}
	// Decoding twice changes nothing.
	again := runProcessors(t, []string{"pg_flo_decode: {}"}, out[1].body)
	if len(again) != 1 || again[0].body != out[1].body {
		t.Errorf("second decode changed the event: %s", again[0].body)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(bad, []byte("tables:\n  users:\n    - type: filter\n      column: age\n      parameters: { operator: between, value: 1 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ yaml, want string }{
		{"pg_flo_rules: {}", "give exactly one of rules_file and rules"},
		{"pg_flo_rules: { rules_file: " + bad + " }", bad + `:5: table users rule 1: field parameters.operator: unknown operator "between"`},
		{"pg_flo_route: { routing_file: x.yaml, routes: { a: {} } }", "give exactly one of routing_file and routes"},
		{"pg_flo_route: { routes: { users: { operations: [] } } }", "pg_flo_route.routes: table users: field operations: empty list"},
	}
	for _, tc := range cases {
		env := service.NewEnvironment()
		b := env.NewStreamBuilder()
		err := b.AddProcessorYAML(tc.yaml)
		if err == nil {
			_, err = b.Build()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestBloblangMethods(t *testing.T) {
	cases := []struct{ mapping, input, want string }{
		{`root = this.v.pg_flo_mask("*")`, `{"v":"Zoë Ünïcode"}`, `Z*********e`},
		{`root = this.v.pg_flo_decode("_int4")`, `{"v":"{1,NULL,3}"}`, `[1,null,3]`},
		{`root = this.v.pg_flo_decode("int8")`, `{"v":"9007199254740993"}`, `9007199254740993`},
		{`root = this.v.pg_flo_decode("timestamptz").pg_flo_encode("timestamptz")`, `{"v":"0044-03-15 12:00:00+00 BC"}`, `0044-03-15 12:00:00+00 BC`},
		{`root = this.v.pg_flo_encode("jsonb")`, `{"v":{"b":1,"aa":[true]}}`, `{"b": 1, "aa": [true]}`},
	}
	for _, tc := range cases {
		exe, err := bloblang.Parse(tc.mapping)
		if err != nil {
			t.Fatalf("%s: %v", tc.mapping, err)
		}
		msg := service.NewMessage([]byte(tc.input))
		res, err := msg.BloblangQuery(exe)
		if err != nil {
			t.Errorf("%s on %s: %v", tc.mapping, tc.input, err)
			continue
		}
		got, _ := res.AsBytes()
		if string(got) != tc.want {
			t.Errorf("%s on %s = %s, want %s", tc.mapping, tc.input, got, tc.want)
		}
	}
	if _, err := bloblang.Parse(`root = this.v.pg_flo_mask("")`); err == nil {
		t.Error("an empty mask_char was accepted")
	}
}

// TestLintFunctions: `pgflo lint` reports bad rules and routing through the
// processors' lint rules.
func TestLintFunctions(t *testing.T) {
	env := service.NewEnvironment()
	for _, tc := range []struct{ yaml, want string }{
		{"pipeline:\n  processors:\n    - pg_flo_rules: { rules: { tables: { users: [ { type: filter, column: a, parameters: { operator: like, value: 1 } } ] } } }\n",
			`table users rule 1: field parameters.operator: unknown operator "like"`},
		{"pipeline:\n  processors:\n    - pg_flo_route: { routing_file: /nonexistent/routing.yaml }\n", "read routing file"},
	} {
		err := env.NewStreamBuilder().SetYAML(tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lint of %s = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// BenchmarkChain measures decode → rules → route per event without the
// stream around them.
func BenchmarkChain(b *testing.B) {
	set, err := rulesFrom("../resources/rules/pg_flo_rules.yaml", nil)
	if err != nil {
		b.Fatal(err)
	}
	router, err := routesFrom("../resources/rules/pg_flo_routing.yaml", nil)
	if err != nil {
		b.Fatal(err)
	}
	log := service.MockResources().Logger()
	rp := &rulesProcessor{set: set}
	rp.editor = newEditor(log, rp.edit, nil)
	chain := []*editor{newEditor(log, decodeEvent, nil), rp.editor, newEditor(log, router.Apply, setRouteMeta)}
	ev := event.Event{Op: event.Insert, Schema: "public", Table: "users", Columns: []event.Column{
		{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "email", Type: "text", OID: 25}, {Name: "phone", Type: "text", OID: 25},
		{Name: "age", Type: "int4", OID: 23}, {Name: "ssn", Type: "text", OID: 25}, {Name: "created_at", Type: "timestamptz", OID: 1184},
	}, New: event.Row{{Name: "id", Text: "42"}, {Name: "email", Text: "user42@example.com"}, {Name: "phone", Text: "5551234567"},
		{Name: "age", Text: "31"}, {Name: "ssn", Text: "123-45-6789"}, {Name: "created_at", Text: "2026-11-26 12:00:00.123456+00"}}}
	data := ev.AppendJSON(nil)
	b.ReportAllocs()
	for b.Loop() {
		batch := service.MessageBatch{service.NewMessage(data)}
		for _, e := range chain {
			batch = e.process(batch)[0]
		}
	}
}

// TestCopiesDoNotShareEvents: copies of a message (branch, broker) share its
// context, so the parsed event handed from one processor to the next is
// taken once; the other copies parse their own.
func TestCopiesDoNotShareEvents(t *testing.T) {
	log := service.MockResources().Logger()
	set, err := rulesFrom("", map[string]any{"tables": map[string]any{"users": []any{
		map[string]any{"type": "transform", "column": "email", "parameters": map[string]any{"type": "mask", "mask_char": "*"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	router, err := routesFrom("", map[string]any{"users": map[string]any{"destination_table": "customers"}})
	if err != nil {
		t.Fatal(err)
	}
	rp := &rulesProcessor{set: set}
	rp.editor = newEditor(log, rp.edit, nil)
	decoded := newEditor(log, decodeEvent, nil).process(service.MessageBatch{
		service.NewMessage([]byte(userEvent(event.Insert, event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "alice@x.io"}}, nil))),
	})[0][0]
	a, b := decoded.Copy(), decoded.Copy()
	masked := rp.editor.process(service.MessageBatch{a})[0][0]
	routed := newEditor(log, router.Apply, setRouteMeta).process(service.MessageBatch{b})[0][0]
	maskedBody, _ := masked.AsBytes()
	routedBody, _ := routed.AsBytes()
	if !strings.Contains(string(maskedBody), `"email":"a********o"`) || !strings.Contains(string(maskedBody), `"table":"users"`) {
		t.Errorf("masked copy = %s", maskedBody)
	}
	if !strings.Contains(string(routedBody), `"email":"alice@x.io"`) || !strings.Contains(string(routedBody), `"table":"customers"`) {
		t.Errorf("routed copy = %s, want the unmasked email: the other copy's rules must not leak into it", routedBody)
	}
}

// TestUntouchedEventsKeepTheirBytes: an event no rule or route applies to
// is passed on as it came, not rewritten.
func TestUntouchedEventsKeepTheirBytes(t *testing.T) {
	in := `{ "v": 1, "op": "INSERT", "schema": "public", "table": "orders", "columns": [], "new": {}, "old": null }`
	out := runProcessors(t, []string{
		"pg_flo_rules: { rules: { tables: { users: [ { type: filter, column: age, parameters: { operator: gt, value: 1 } } ] } } }",
		"pg_flo_route: { routes: { users: { destination_table: customers } } }",
	}, in)
	if len(out) != 1 || out[0].body != in || out[0].error != "" {
		t.Errorf("untouched event came out as %+v, want it byte for byte", out)
	}
}

// TestConcurrentPipelineThreads runs the three processors on several
// pipeline threads at once (go test -race finds shared state).
func TestConcurrentPipelineThreads(t *testing.T) {
	var bad []string
	count := 0
	stream, send := testStream(t, 4, []string{
		"pg_flo_decode: {}",
		"pg_flo_rules: { rules: { tables: { users: [ { type: transform, column: email, parameters: { type: mask, mask_char: '*' } } ] } } }",
		"pg_flo_route: { routes: { users: { destination_table: customers, column_mappings: [ { source: id, destination: customer_id } ] } } }",
	}, func(msg *service.Message) {
		data, _ := msg.AsBytes()
		count++
		if !strings.Contains(string(data), `"table":"customers"`) || !strings.Contains(string(data), `"email":"u`) || msg.GetError() != nil {
			bad = append(bad, string(data))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { _ = stream.Run(ctx) }()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				batch := service.MessageBatch{}
				for j := 0; j < 20; j++ {
					batch = append(batch, service.NewMessage([]byte(userEvent(event.Insert,
						event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "user@example.com"}, {Name: "age", Text: "30"}}, nil))))
				}
				if err := send(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := stream.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if count != 4*50*20 || len(bad) > 0 {
		t.Fatalf("%d events out, %d wrong, e.g. %v", count, len(bad), bad[:min(len(bad), 1)])
	}
}

// packMessage is a message holding a copy pack of users rows (id, email,
// age: COPY text lines) at positions pos.. of the snapshot unit "snap", as
// pg_flo_replicator and pg_flo_worker (snapshot_packs: keep) emit it; rows
// overrides the pg_flo_pack_rows count when not 0.
func packMessage(pos, rows int, lines ...string) *service.Message {
	cols := []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "email", Type: "text", OID: 25}, {Name: "age", Type: "int4", OID: 23}}
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "users", cols, 0x3000))
	for _, l := range lines {
		body = append(append(body, l...), '\n')
	}
	if rows == 0 {
		rows = len(lines)
	}
	msg := service.NewMessage(body)
	for k, v := range map[string]string{
		event.MetaOp: "INSERT", event.MetaSchema: "public", event.MetaTable: "users", event.MetaLSN: "0/3000",
		event.MetaTx: "snap", event.MetaTxPos: strconv.Itoa(pos), event.MetaPackRows: strconv.Itoa(rows),
	} {
		msg.MetaSetMut(k, v)
	}
	return msg
}

// TestProcessorsExpandPacks: each processor sees every row of a pack as its
// own event, in order, with the row's position; a pack that cannot be read
// is passed on flagged.
func TestProcessorsExpandPacks(t *testing.T) {
	rows := []string{"1\tkid@x.io\t9", "2\tadult@x.io\t40", "3\t\\N\t\\N", "4\tsenior@x.io\t80"}
	plain := service.NewMessage([]byte(userEvent(event.Insert, event.Row{{Name: "id", Text: "5"}, {Name: "email", Text: "last@x.io"}, {Name: "age", Text: "50"}}, nil)))
	plain.MetaSetMut(event.MetaTable, "users")
	rulesYAML := "pg_flo_rules: { rules: { tables: { users: [ " +
		"{ type: filter, column: age, parameters: { operator: gte, value: 18 } }, " +
		"{ type: transform, column: email, parameters: { type: mask, mask_char: '*' } } ] } } }"
	routeYAML := "pg_flo_route: { routes: { users: { destination_table: customers } } }"

	for _, tc := range []struct {
		name       string
		processors []string
		want       []string // a part of each output body, in order
		pos        []string // pg_flo_tx_pos of each output
		table      string
	}{
		{"rules", []string{rulesYAML},
			[]string{`"id":"2","email":"a********o","age":"40"`, `"id":"4","email":"s*********o","age":"80"`, `"id":"5","email":"l*******o"`},
			[]string{"11", "13", ""}, "users"},
		{"route", []string{routeYAML},
			[]string{`"table":"customers"`, `"table":"customers"`, `"table":"customers"`, `"table":"customers"`, `"table":"customers"`},
			[]string{"10", "11", "12", "13", ""}, "customers"},
		{"decode", []string{"pg_flo_decode: {}"},
			[]string{`"id":1,"email":"kid@x.io","age":9`, `"id":2,`, `"id":3,"email":null,"age":null`, `"id":4,`, `"id":5,`},
			[]string{"10", "11", "12", "13", ""}, "users"},
		{"chain", []string{"pg_flo_decode: {}", rulesYAML, routeYAML},
			[]string{`"new":{"id":2,"email":"a********o","age":40}`, `"new":{"id":4,"email":"s*********o","age":80}`, `"new":{"id":5,"email":"l*******o","age":50}`},
			[]string{"11", "13", ""}, "customers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runBatch(t, tc.processors, service.MessageBatch{packMessage(10, 0, rows...), plain.Copy()})
			if len(out) != len(tc.want) {
				t.Fatalf("got %d messages, want %d: %+v", len(out), len(tc.want), out)
			}
			for i, r := range out {
				if !strings.Contains(r.body, tc.want[i]) || r.error != "" {
					t.Errorf("message %d = %s (error %q), want it to contain %s", i, r.body, r.error, tc.want[i])
				}
				if r.meta[event.MetaTxPos] != tc.pos[i] || r.meta[event.MetaTable] != tc.table {
					t.Errorf("message %d metadata %v, want position %q and table %q", i, r.meta, tc.pos[i], tc.table)
				}
				if _, ok := r.meta[event.MetaPackRows]; ok {
					t.Errorf("message %d still has %s", i, event.MetaPackRows)
				}
				if i < len(tc.want)-1 && !strings.Contains(r.body, `"snapshot":true`) {
					t.Errorf("row %d is not a snapshot event: %s", i, r.body)
				}
			}
		})
	}

	t.Run("malformed", func(t *testing.T) {
		bad := packMessage(0, 5, rows...) // declares 5 rows, holds 4
		body, _ := bad.AsBytes()
		out := runBatch(t, []string{rulesYAML}, service.MessageBatch{bad, plain.Copy()})
		if len(out) != 2 {
			t.Fatalf("got %d messages, want 2: %+v", len(out), out)
		}
		if out[0].body != string(body) || !strings.Contains(out[0].error, "malformed copy pack: metadata pg_flo_pack_rows=5, the pack holds 4 rows") {
			t.Errorf("malformed pack = %+v, want it unchanged and flagged", out[0])
		}
		if !strings.Contains(out[1].body, `"email":"l*******o"`) || out[1].error != "" {
			t.Errorf("the event after the malformed pack = %+v", out[1])
		}
	})
}
