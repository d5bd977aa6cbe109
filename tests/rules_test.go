package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/testenv"
)

// outRow is a row of an output event: column → text, NULL as testenv.NullText.
type outRow map[string]string

// outEvent is what the tests compare of an output event.
type outEvent struct {
	Op       event.Op
	Table    string
	Columns  string // name:type[:key] …
	New, Old outRow
}

// readChanges reads the worker's file output, raw or typed events alike,
// with every value back in its PostgreSQL text form.
func readChanges(t *testing.T, path string) []outEvent {
	t.Helper()
	var out []outEvent
	for _, line := range outputLines(t, path) {
		ev, err := change.Parse(line, nil)
		if err != nil {
			t.Fatalf("output line %d: %v\n%s", len(out)+1, err, line)
		}
		o := outEvent{Op: ev.Op, Table: ev.Schema + "." + ev.Table}
		var cols []string
		for _, c := range ev.Columns {
			s := c.Name + ":" + c.Type
			if c.Key {
				s += ":key"
			}
			cols = append(cols, s)
		}
		o.Columns = strings.Join(cols, " ")
		rowOf := func(r event.RawRow) outRow {
			if r == nil {
				return nil
			}
			m := outRow{}
			for _, f := range r {
				col, _ := ev.Column(f.Name)
				text, ok, err := ev.Text(f, col)
				if err != nil {
					t.Fatalf("output line %d: %v", len(out)+1, err)
				}
				if !ok {
					text = testenv.NullText
				}
				m[f.Name] = text
			}
			return m
		}
		o.New, o.Old = rowOf(ev.New), rowOf(ev.Old)
		out = append(out, o)
	}
	return out
}

// mask is the rules' mask, written here again from its definition: keep the
// first and last character (not byte), replace the others.
func mask(s, with string) string {
	if s == testenv.NullText || utf8.RuneCountInString(s) <= 2 {
		return s
	}
	r := []rune(s)
	return string(r[0]) + strings.Repeat(with, len(r)-2) + string(r[len(r)-1])
}

// formatPhone is the example regex ^(\d{3})(\d{3})(\d{4})$ → ($1) $2-$3.
func formatPhone(s string) string {
	if len(s) != 10 || strings.Trim(s, "0123456789") != "" {
		return s
	}
	return "(" + s[:3] + ") " + s[3:6] + "-" + s[6:]
}

func waitForChanges(t *testing.T, p *pipeline, want int) []outEvent {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%d changes in the output", want), func() bool {
		return len(readChanges(t, p.output)) >= want
	})
	time.Sleep(time.Second) // nothing more may arrive
	got := readChanges(t, p.output)
	if len(got) != want {
		t.Fatalf("got %d output events, want exactly %d", len(got), want)
	}
	return got
}

func compareChanges(t *testing.T, got, want []outEvent) {
	t.Helper()
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("output event %d:\n got %+v\nwant %+v", i+1, got[i], want[i])
		}
	}
}

// TestPgFloRulesAndRoutingEndToEnd runs pg_flo's own example rules and a
// routing file that renames the table and two columns (the key one of them)
// through replicator → JetStream → worker → file, and checks every output
// row against the rules' semantics computed here.
func TestPgFloRulesAndRoutingEndToEnd(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, phone text, age int, ssn text)")
	p := newPipeline(t, dsn, "rules")
	rulesFile, _ := filepath.Abs(filepath.Join("..", "resources", "rules", "pg_flo_rules.yaml"))
	routingFile, _ := filepath.Abs(filepath.Join("..", "resources", "rules", "pg_flo_routing.yaml"))
	p.startReplicator()
	p.startWorkerWith(fmt.Sprintf("    - pg_flo_rules: { rules_file: %q }\n    - pg_flo_route: { routing_file: %q }\n", rulesFile, routingFile), "")

	null := testenv.NullText
	source := map[string]outRow{} // id → current source row
	var want []outEvent
	const columns = "customer_id:int8:key contact_email:text phone:text age:int4 ssn:text"
	// expected turns a source row into the output row the rules and the
	// routing give, or false when the age filter drops it.
	expected := func(r outRow) (outRow, bool) {
		age, err := strconv.Atoi(r["age"])
		if r["age"] == null || err != nil || age < 18 {
			return nil, false
		}
		return outRow{"customer_id": r["id"], "contact_email": mask(r["email"], "*"), "phone": formatPhone(r["phone"]),
			"age": r["age"], "ssn": mask(r["ssn"], "X")}, true
	}
	insert := func(rows ...outRow) {
		var values []string
		var args []any
		for _, r := range rows {
			var ph []string
			for _, c := range []string{"id", "email", "phone", "age", "ssn"} {
				if r[c] == null {
					args = append(args, nil)
				} else {
					args = append(args, r[c])
				}
				ph = append(ph, fmt.Sprintf("$%d::text", len(args)))
			}
			values = append(values, "("+ph[0]+"::int8, "+ph[1]+", "+ph[2]+", "+ph[3]+"::int, "+ph[4]+")")
			source[r["id"]] = r
			if out, ok := expected(r); ok {
				want = append(want, outEvent{Op: event.Insert, Table: "public.customers", Columns: columns, New: out})
			}
		}
		testenv.Exec(t, dsn, "INSERT INTO users VALUES "+strings.Join(values, ", "), args...)
	}
	update := func(id, column, value string) {
		r := outRow{}
		for k, v := range source[id] {
			r[k] = v
		}
		r[column] = value
		source[id] = r
		testenv.Exec(t, dsn, fmt.Sprintf("UPDATE users SET %s = $1::text::%s WHERE id = %s", column, map[bool]string{true: "int", false: "text"}[column == "age"], id), value)
		if out, ok := expected(r); ok {
			want = append(want, outEvent{Op: event.Update, Table: "public.customers", Columns: columns, New: out, Old: outRow{"customer_id": id}})
		}
	}
	remove := func(id string) {
		delete(source, id)
		testenv.Exec(t, dsn, "DELETE FROM users WHERE id = "+id)
		// A key-only old row lacks age: allow_empty_deletes lets it through.
		want = append(want, outEvent{Op: event.Delete, Table: "public.customers", Columns: columns, Old: outRow{"customer_id": id}})
	}

	insert(outRow{"id": "1", "email": "alice@example.com", "phone": "5551234567", "age": "30", "ssn": "123-45-6789"})
	insert(outRow{"id": "2", "email": "kid@example.com", "phone": "5559876543", "age": "17", "ssn": "987-65-4321"})
	insert(outRow{"id": "3", "email": "Zoë@exämple.org", "phone": "555-123-4567", "age": "18", "ssn": null},
		outRow{"id": "4", "email": "ab", "phone": "12", "age": null, "ssn": "x"},
		outRow{"id": "5", "email": "日本語@例え.jp", "phone": "0000000000", "age": "65", "ssn": "000000000"},
		outRow{"id": "6", "email": null, "phone": null, "age": "40", "ssn": null})
	var batch []outRow
	for i := 7; i <= 56; i++ {
		batch = append(batch, outRow{"id": strconv.Itoa(i), "email": fmt.Sprintf("user%d@example.com", i),
			"phone": fmt.Sprintf("555%07d", i), "age": strconv.Itoa(i % 40), "ssn": fmt.Sprintf("%03d-00-0000", i)})
	}
	insert(batch...)
	update("1", "age", "16")                  // adult becomes a minor: dropped
	update("2", "age", "21")                  // minor becomes an adult: appears
	update("5", "phone", "1112223333")        // formatted again
	update("3", "email", "ünïcødé@zürich.ch") // masked by character
	remove("1")
	remove("2")
	remove("4")

	compareChanges(t, waitForChanges(t, p, len(want)), want)
}

// TestRulesPerOperationTypedEndToEnd: a filter with operations: [INSERT]
// leaves updates and deletes alone, an unquoted YAML number filters a numeric
// column exactly, a multibyte mask character masks multibyte text, all on
// typed events (pg_flo_decode first) with REPLICA IDENTITY FULL.
func TestRulesPerOperationTypedEndToEnd(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric); ALTER TABLE accounts REPLICA IDENTITY FULL")
	p := newPipeline(t, dsn, "perop")
	rulesFile := p.writeConfig("rules.yaml", `tables:
  public.accounts:
    - type: filter
      column: balance
      parameters:
        operator: gte
        value: 100.50
      operations: [INSERT]
    - type: transform
      column: owner
      parameters:
        type: mask
        mask_char: "•"
`)
	p.startReplicator()
	p.startWorkerWith(fmt.Sprintf("    - pg_flo_decode: {}\n    - pg_flo_rules: { rules_file: %q }\n", rulesFile), "")

	const columns = "id:int4:key owner:text:key balance:numeric:key"
	full := func(id, owner, balance string) outRow {
		return outRow{"id": id, "owner": mask(owner, "•"), "balance": balance}
	}
	testenv.Exec(t, dsn, `INSERT INTO accounts VALUES (1, 'Zoë Ünïcode', 100.50), (2, 'Bob', 100.49),
		(3, '日本語テキスト', 1e3), (4, 'Eve', 100.499999999999999999999)`)
	testenv.Exec(t, dsn, "UPDATE accounts SET balance = 5 WHERE id = 1") // below the threshold: kept, UPDATE is not filtered
	testenv.Exec(t, dsn, "UPDATE accounts SET balance = 7 WHERE id = 2") // a row whose INSERT was dropped: kept too
	testenv.Exec(t, dsn, "DELETE FROM accounts WHERE id IN (2, 4)")
	want := []outEvent{
		{Op: event.Insert, Table: "public.accounts", Columns: columns, New: full("1", "Zoë Ünïcode", "100.50")},
		{Op: event.Insert, Table: "public.accounts", Columns: columns, New: full("3", "日本語テキスト", "1000")},
		{Op: event.Update, Table: "public.accounts", Columns: columns, New: full("1", "Zoë Ünïcode", "5"), Old: full("1", "Zoë Ünïcode", "100.50")},
		{Op: event.Update, Table: "public.accounts", Columns: columns, New: full("2", "Bob", "7"), Old: full("2", "Bob", "100.49")},
		{Op: event.Delete, Table: "public.accounts", Columns: columns, Old: full("2", "Bob", "7")},
		{Op: event.Delete, Table: "public.accounts", Columns: columns, Old: full("4", "Eve", "100.499999999999999999999")},
	}
	compareChanges(t, waitForChanges(t, p, len(want)), want)
	raw, err := os.ReadFile(p.output)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"balance":100.50`) || !strings.Contains(string(raw), `"typed":true`) {
		t.Errorf("the output is not typed: %s", raw)
	}
}

// TestLintRejectsUnknownOperator: `pgflo lint` names the rules file, the
// line, the table, the rule and the operator.
func TestLintRejectsUnknownOperator(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`tables:
  users:
    - type: transform
      column: email
      parameters: { type: mask, mask_char: "*" }
    - type: filter
      column: age
      parameters:
        operator: between
        value: 18
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`input:
  stdin: {}
pipeline:
  processors:
    - pg_flo_rules:
        rules_file: %q
output:
  stdout: {}
`, rulesFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testenv.Binary(t), "lint", cfg).CombinedOutput()
	if err == nil {
		t.Fatalf("pgflo lint accepted the unknown operator:\n%s", out)
	}
	want := rulesFile + `:9: table users rule 2: field parameters.operator: unknown operator "between" (want one of eq, ne, gt, lt, gte, lte, contains)`
	if !strings.Contains(string(out), want) {
		t.Errorf("pgflo lint said:\n%s\nwant it to contain:\n%s", out, want)
	}
}
