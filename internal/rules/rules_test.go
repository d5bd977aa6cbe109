package rules

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/tablefile"
)

// pgFloRules is pg_flo's example rules file, as resources/ ships it.
var pgFloRules = filepath.Join("..", "..", "resources", "rules", "pg_flo_rules.yaml")

var userColumns = []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true},
	{Name: "email", Type: "text", OID: 25},
	{Name: "phone", Type: "varchar", OID: 1043},
	{Name: "age", Type: "int4", OID: 23},
	{Name: "ssn", Type: "text", OID: 25},
	{Name: "balance", Type: "numeric", OID: 1700},
	{Name: "created_at", Type: "timestamptz", OID: 1184},
	{Name: "active", Type: "bool", OID: 16},
	{Name: "ref", Type: "uuid", OID: 2950},
	{Name: "big", Type: "int8", OID: 20},
}

// row builds a row from name/value pairs; "<NULL>" is SQL NULL.
func row(pairs ...string) event.Row {
	r := event.Row{}
	for i := 0; i < len(pairs); i += 2 {
		v := event.Value{Name: pairs[i], Text: pairs[i+1]}
		if v.Text == "<NULL>" {
			v = event.Value{Name: pairs[i], Null: true}
		}
		r = append(r, v)
	}
	return r
}

func users(op event.Op, newRow, oldRow event.Row) *event.Event {
	return &event.Event{V: event.Version, Op: op, Schema: "public", Table: "users", Columns: userColumns, New: newRow, Old: oldRow}
}

// apply runs set on ev (raw, or typed when typed) and returns the result and
// the event's rows as text again.
func apply(t *testing.T, set *Set, ev *event.Event, typed bool) (Result, *change.Event, error) {
	t.Helper()
	parsed, err := change.Parse(ev.AppendJSON(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if typed {
		if err := parsed.Decode(); err != nil {
			t.Fatal(err)
		}
		if parsed, err = change.Parse(parsed.AppendJSON(nil), nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := set.Apply(parsed)
	return res, parsed, err
}

// texts renders a row as name=text pairs.
func texts(t *testing.T, ev *change.Event, r event.RawRow) string {
	t.Helper()
	var parts []string
	for _, f := range r {
		col, _ := ev.Column(f.Name)
		text, ok, err := ev.Text(f, col)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			text = "<NULL>"
		}
		parts = append(parts, f.Name+"="+text)
	}
	return strings.Join(parts, " ")
}

func TestPgFloExampleRules(t *testing.T) {
	set, err := LoadFile(pgFloRules)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		ev      *event.Event
		drop    bool
		wantNew string
		wantOld string
	}{
		{"adult insert is masked and formatted",
			users(event.Insert, row("id", "1", "email", "alice@example.com", "phone", "5551234567", "age", "30", "ssn", "123-45-6789"), nil),
			false, "id=1 email=a***************m phone=(555) 123-4567 age=30 ssn=1XXXXXXXXX9", ""},
		{"minor insert is dropped",
			users(event.Insert, row("id", "2", "email", "kid@example.com", "age", "17"), nil), true, "", ""},
		{"age 18 is kept (gte)",
			users(event.Insert, row("id", "3", "age", "18"), nil), false, "id=3 age=18", ""},
		{"NULL age is dropped: comparisons with NULL are false",
			users(event.Insert, row("id", "4", "age", "<NULL>"), nil), true, "", ""},
		{"NULL email stays NULL, short values stay",
			users(event.Insert, row("id", "5", "email", "<NULL>", "ssn", "ab", "age", "40", "phone", "123"), nil),
			false, "id=5 email=<NULL> ssn=ab age=40 phone=123", ""},
		{"multibyte text is masked by character",
			users(event.Insert, row("id", "6", "email", "Zoë Ünïcode 🎉", "age", "20"), nil),
			false, "id=6 email=Z***********🎉 age=20", ""},
		{"key-only delete passes (allow_empty_deletes)",
			users(event.Delete, nil, row("id", "7")), false, "", "id=7"},
		{"update masks old too (REPLICA IDENTITY FULL)",
			users(event.Update, row("id", "8", "email", "new@x.io", "age", "50"), row("id", "8", "email", "old@x.io", "age", "50")),
			false, "id=8 email=n******o age=50", "id=8 email=o******o age=50"},
		{"update of a minor is dropped",
			users(event.Update, row("id", "9", "age", "12"), row("id", "9")), true, "", ""},
	}
	for _, typed := range []bool{false, true} {
		for _, tc := range cases {
			name := tc.name
			if typed {
				name += " (typed)"
			}
			t.Run(name, func(t *testing.T) {
				res, ev, err := apply(t, set, tc.ev, typed)
				if err != nil {
					t.Fatal(err)
				}
				if (res == Drop) != tc.drop {
					t.Fatalf("result = %v, want drop %v", res, tc.drop)
				}
				if tc.drop {
					return
				}
				if got := texts(t, ev, ev.New); got != tc.wantNew {
					t.Errorf("new = %s\nwant  %s", got, tc.wantNew)
				}
				if got := texts(t, ev, ev.Old); got != tc.wantOld {
					t.Errorf("old = %s\nwant  %s", got, tc.wantOld)
				}
			})
		}
	}
}

func mustLoad(t *testing.T, yaml string) *Set {
	t.Helper()
	set, err := Load([]byte(yaml), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func filterRules(column, operator, value string, extra string) string {
	return "tables:\n  users:\n    - type: filter\n      column: " + column + "\n      parameters: { operator: " + operator + ", value: " + value + " }\n" + extra
}

func TestFilterTyping(t *testing.T) {
	cases := []struct {
		column, operator, value, text string
		keep                          bool
	}{
		{"age", "gte", "18", "18", true},
		{"age", "gt", "'18'", "19", true}, // a quoted number works as in pg_flo
		{"age", "lt", "18", "9", true},    // numbers, not strings: 9 < 18
		{"big", "gt", "9007199254740992", "9007199254740993", true},
		{"big", "eq", "9007199254740992", "9007199254740993", false},
		{"balance", "gte", "100.50", "100.5", true}, // unquoted YAML number on numeric
		{"balance", "lt", "100.50", "100.49999999999999999999", true},
		{"balance", "gt", "1e3", "1000.000001", true},
		{"balance", "lt", "100", "NaN", false}, // NaN is above every number
		{"created_at", "gte", "2026-01-01T00:00:00Z", "2026-01-01 01:00:00+02", false},
		{"created_at", "gte", "2026-01-01T00:00:00Z", "2026-01-01 00:00:00+00", true},
		{"created_at", "lt", "'2026-01-01 00:00:00'", "-infinity", true},
		{"active", "eq", "true", "t", true},
		{"active", "ne", "true", "t", false},
		{"ref", "eq", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", true},
		{"email", "contains", "'@example.'", "bob@example.com", true},
		{"email", "gt", "b", "a@x", false}, // text by bytes
		{"age", "contains", "1", "21", true},
	}
	for _, tc := range cases {
		set := mustLoad(t, filterRules(tc.column, tc.operator, tc.value, ""))
		for _, typed := range []bool{false, true} {
			res, _, err := apply(t, set, users(event.Insert, row("id", "1", tc.column, tc.text), nil), typed)
			if err != nil {
				t.Errorf("%s %s %s on %q: %v", tc.column, tc.operator, tc.value, tc.text, err)
				continue
			}
			if (res == Keep) != tc.keep {
				t.Errorf("%s %s %s on %q (typed %v): keep = %v, want %v", tc.column, tc.operator, tc.value, tc.text, typed, res == Keep, tc.keep)
			}
		}
	}
}

func TestOperationsScopeRules(t *testing.T) {
	for _, where := range []string{
		"      operations: [INSERT]\n",
		"", // in parameters, below
	} {
		yaml := filterRules("age", "gte", "18", where)
		if where == "" {
			yaml = strings.Replace(yaml, "value: 18 }", "value: 18, operations: [INSERT] }", 1)
		}
		set := mustLoad(t, yaml)
		for _, tc := range []struct {
			ev   *event.Event
			keep bool
		}{
			{users(event.Insert, row("id", "1", "age", "10"), nil), false},
			{users(event.Update, row("id", "1", "age", "10"), row("id", "1")), true},
			{users(event.Delete, nil, row("id", "1", "age", "10")), true},
			{&event.Event{Op: event.Truncate, Schema: "public", Table: "users", Columns: userColumns}, true},
		} {
			res, _, err := apply(t, set, tc.ev, false)
			if err != nil || (res == Keep) != tc.keep {
				t.Errorf("%q: %s: keep = %v, %v; want %v", where, tc.ev.Op, res == Keep, err, tc.keep)
			}
		}
	}
}

func TestDeletesWithoutTheColumn(t *testing.T) {
	strict := mustLoad(t, filterRules("age", "gte", "18", ""))
	allow := mustLoad(t, filterRules("age", "gte", "18", "      allow_empty_deletes: true\n"))
	keyOnly := users(event.Delete, nil, row("id", "1"))
	full := users(event.Delete, nil, row("id", "1", "age", "10"))
	for _, tc := range []struct {
		name string
		set  *Set
		ev   *event.Event
		keep bool
	}{
		{"key-only delete, strict: dropped as pg_flo did", strict, keyOnly, false},
		{"key-only delete, allow_empty_deletes", allow, keyOnly, true},
		{"full old row is still filtered", allow, full, false},
	} {
		res, _, err := apply(t, tc.set, tc.ev, false)
		if err != nil || (res == Keep) != tc.keep {
			t.Errorf("%s: keep = %v, %v", tc.name, res == Keep, err)
		}
	}
}

func TestRuntimeErrorsLeaveTheEvent(t *testing.T) {
	cases := []struct {
		yaml, want string
		ev         *event.Event
	}{
		{filterRules("agee", "gte", "18", ""), `table users rule 2 (column "agee"): the table has no column "agee"`,
			users(event.Insert, row("id", "1", "age", "20"), nil)},
		{filterRules("age", "gte", "'abc'", ""), `"abc" is not a number`,
			users(event.Insert, row("id", "1", "age", "20"), nil)},
		{"tables:\n  users:\n    - type: transform\n      column: age\n      parameters: { type: mask, mask_char: '*' }\n",
			"mask result is not a valid int4", users(event.Insert, row("id", "1", "age", "12345"), nil)},
		{filterRules("created_at", "gt", "soon", ""), `"soon" is not a valid timestamptz`,
			users(event.Insert, row("id", "1", "created_at", "2026-01-01 00:00:00+00"), nil)},
	}
	for _, tc := range cases {
		for _, typed := range []bool{false, true} {
			set := mustLoad(t, "tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: mask, mask_char: '*' }\n"+strings.TrimPrefix(tc.yaml, "tables:\n  users:\n"))
			tc.ev.New = append(tc.ev.New, event.Value{Name: "email", Text: "secret@x.io"})
			res, ev, err := apply(t, set, tc.ev, typed)
			tc.ev.New = tc.ev.New[:len(tc.ev.New)-1]
			var ruleErr *RuleError
			if !errors.As(err, &ruleErr) || !strings.Contains(err.Error(), tc.want) || res != Keep {
				t.Errorf("error = %v (result %v), want a RuleError containing %q", err, res, tc.want)
				continue
			}
			if got := texts(t, ev, ev.New); !strings.Contains(got, "email=secret@x.io") {
				t.Errorf("event changed before the failing rule: %s", got)
			}
		}
	}
}

func TestQualifiedTableKeys(t *testing.T) {
	set := mustLoad(t, `tables:
  users:
    - { type: transform, column: email, parameters: { type: mask, mask_char: "*" } }
  crm.users:
    - { type: transform, column: email, parameters: { type: mask, mask_char: "#" } }
`)
	for schema, want := range map[string]string{"public": "a*****z", "crm": "a#####z"} {
		ev := users(event.Insert, row("id", "1", "email", "abcdefz"), nil)
		ev.Schema = schema
		_, got, err := apply(t, set, ev, false)
		if err != nil {
			t.Fatal(err)
		}
		if s := texts(t, got, got.New); s != "id=1 email="+want {
			t.Errorf("schema %s: %s, want email=%s", schema, s, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	rule := func(body string) string { return "tables:\n  users:\n    - type: filter\n      column: age\n" + body }
	cases := []struct{ yaml, want string }{
		{rule("      parameters: { operator: like, value: 1 }\n"), `rules.yaml:5: table users rule 1: field parameters.operator: unknown operator "like" (want one of eq, ne, gt, lt, gte, lte, contains)`},
		{rule("      parameters: { operator: eq }\n"), "rules.yaml:5: table users rule 1: field parameters.value: missing"},
		{rule("      parameters: { operator: eq, value: [1, 2] }\n"), "field parameters.value: want a single value"},
		{rule("      parameters: { operator: contains, value: true }\n"), "contains wants a string"},
		{rule("      parameters: { operator: eq, value: 1 }\n      operations: [INSERT, MERGE]\n"), `rules.yaml:6: table users rule 1: field operations: unknown operation "MERGE"`},
		{rule("      parameters: { operator: eq, value: 1, operations: [INSERT] }\n      operations: [UPDATE]\n"), "field parameters.operations: differs from the rule's operations"},
		{rule("      parameters: { operator: eq, value: 1 }\n      operations: []\n"), "field operations: empty list"},
		{rule("      parameters: { operator: eq, value: 1, allow_empty_deletes: maybe }\n"), "field parameters.allow_empty_deletes: want true or false"},
		{rule("      parameters: { operator: eq, value: 1, pattern: x }\n"), "field parameters.pattern: unknown field"},
		{"tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: regex, pattern: '(', replace: x }\n", "rules.yaml:5: table users rule 1: field parameters.pattern: invalid regular expression"},
		{"tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: rot13 }\n", `unknown transform "rot13"`},
		{"tables:\n  users:\n    - type: transform\n      column: email\n      parameters: { type: mask }\n", "field parameters.mask_char: missing for a mask transform"},
		{"tables:\n  users:\n    - type: redact\n      column: email\n", `field type: unknown rule type "redact"`},
		{"tables:\n  users:\n    - type: filter\n      parameters: { operator: eq, value: 1 }\n", "rule 1: field column: missing"},
		{"rules:\n  - table: users\n", `rules.yaml:1: unknown key "rules"`},
		{"tables: [users]\n", "tables: want a map"},
		{"", "empty rules"},
		{"tables:\n  users:\n    - type: filter\n      column: age\n     parameters: x\n", "rules.yaml:2: did not find expected '-' indicator"},
		{"tables:\n  \"us\\ners\":\n    - type: filter\n", `rules.yaml:2: bad table name "us\ners"`},
	}
	for _, tc := range cases {
		_, err := Load([]byte(tc.yaml), "rules.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) error = %v\nwant it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"": "", "a": "a", "ab": "ab", "abc": "a*c", "日本語テキスト": "日*****ト", "a🎉b🎉": "a**🎉"} {
		if got := Mask(in, "*"); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Mask("abcd", "<>"); got != "a<><>d" {
		t.Errorf("multi-character mask = %q", got)
	}
}

// TestReplaceAllMatchesRegexp checks the fast path against regexp's own.
func TestReplaceAllMatchesRegexp(t *testing.T) {
	cases := []struct{ pattern, replace string }{
		{`^(\d{3})(\d{3})(\d{4})$`, "($1) $2-$3"}, {`a*`, "<$0>"}, {`x*$`, "[$0]"}, {`(?i)^ab`, "${0}!"}, {`b`, "$1"}, {`^$`, "empty"}, {`.*`, "all"},
	}
	for _, tc := range cases {
		re := regexp.MustCompile(tc.pattern)
		for _, s := range []string{"", "5551234567", "555123456", "aaa", "baaab", "ABc", "xx", "b", "日本"} {
			if got, want := replaceAll(re, s, tc.replace), re.ReplaceAllString(s, tc.replace); got != want {
				t.Errorf("replaceAll(%q, %q, %q) = %q, want %q", tc.pattern, s, tc.replace, got, want)
			}
		}
	}
}

// Load reads rules in pg_flo's format from a file's contents; source (the
// file name) and line numbers start every error.
func Load(data []byte, source string) (*Set, error) {
	doc, err := tablefile.Parse(data, source, "rules, want a top-level tables: map")
	if err != nil {
		return nil, err
	}
	return load(doc)
}
