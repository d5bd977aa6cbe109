package routing

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/tablefile"
)

var columns = []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true},
	{Name: "email", Type: "text", OID: 25},
	{Name: "bio", Type: "text", OID: 25},
}

func parse(t *testing.T, ev *event.Event) *change.Event {
	t.Helper()
	parsed, err := change.Parse(ev.AppendJSON(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

func names(r event.RawRow) []string {
	var out []string
	for _, f := range r {
		out = append(out, f.Name)
	}
	return out
}

func TestPgFloRoutingFile(t *testing.T) {
	router, err := LoadFile(filepath.Join("..", "..", "resources", "rules", "pg_flo_routing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ev := parse(t, &event.Event{Op: event.Update, Schema: "public", Table: "users", Columns: columns,
		New: event.Row{{Name: "id", Text: "1"}, {Name: "email", Text: "a@b.c"}},
		Old: event.Row{{Name: "id", Text: "1"}}, UnchangedToast: []string{"bio"}})
	keep, err := router.Apply(ev)
	if err != nil || !keep {
		t.Fatalf("Apply = %v, %v", keep, err)
	}
	if ev.Table != "customers" || ev.Schema != "public" {
		t.Errorf("table = %s.%s, want public.customers", ev.Schema, ev.Table)
	}
	var colNames []string
	for _, c := range ev.Columns {
		colNames = append(colNames, c.Name)
	}
	if want := []string{"customer_id", "contact_email", "bio"}; !slices.Equal(colNames, want) {
		t.Errorf("columns = %v, want %v", colNames, want)
	}
	if !ev.Columns[0].Key {
		t.Error("the renamed key column lost its key flag")
	}
	if got := names(ev.New); !slices.Equal(got, []string{"customer_id", "contact_email"}) {
		t.Errorf("new = %v", got)
	}
	if got := names(ev.Old); !slices.Equal(got, []string{"customer_id"}) {
		t.Errorf("old = %v", got)
	}
	if !slices.Equal(ev.UnchangedToast, []string{"bio"}) {
		t.Errorf("unchanged_toast = %v", ev.UnchangedToast)
	}
	// Other tables pass unchanged.
	other := parse(t, &event.Event{Op: event.Insert, Schema: "public", Table: "orders", Columns: columns, New: event.Row{{Name: "id", Text: "1"}}})
	if keep, err := router.Apply(other); !keep || err != nil || other.Table != "orders" || other.Columns[0].Name != "id" {
		t.Errorf("unrouted table changed: %v %v %+v", keep, err, other)
	}
}

func TestOperations(t *testing.T) {
	cases := []struct {
		ops  string
		keep []event.Op
	}{
		{"", Operations}, // omitted: all (pg_flo dropped everything)
		{"  operations: [INSERT, UPDATE]\n", []event.Op{event.Insert, event.Update}},
		{"  operations: [delete, TRUNCATE, DDL]\n", []event.Op{event.Delete, event.Truncate, event.DDL}},
	}
	for _, tc := range cases {
		router, err := Load([]byte("users:\n  destination_table: customers\n"+tc.ops), "routing.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range Operations {
			keep, err := router.Apply(parse(t, &event.Event{Op: op, Schema: "public", Table: "users", Columns: columns}))
			if err != nil || keep != slices.Contains(tc.keep, op) {
				t.Errorf("operations %q, %s: keep = %v, %v", tc.ops, op, keep, err)
			}
		}
	}
}

func TestSchemaRoutes(t *testing.T) {
	router, err := Load([]byte("users:\n  destination_table: a\nsales.users:\n  destination_table: b\n  destination_schema: archive\n"), "routing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for schema, want := range map[string]string{"public": "public.a", "sales": "archive.b"} {
		ev := parse(t, &event.Event{Op: event.Insert, Schema: schema, Table: "users", Columns: columns})
		if _, err := router.Apply(ev); err != nil || ev.Schema+"."+ev.Table != want {
			t.Errorf("%s.users → %s.%s (%v), want %s", schema, ev.Schema, ev.Table, err, want)
		}
	}
}

func TestRenameCollision(t *testing.T) {
	router, err := Load([]byte("users:\n  column_mappings:\n    - { source: email, destination: bio }\n"), "routing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ev := parse(t, &event.Event{Op: event.Insert, Schema: "public", Table: "users", Columns: columns, New: event.Row{{Name: "email", Text: "x"}}})
	if _, err := router.Apply(ev); err == nil || !strings.Contains(err.Error(), `columns "bio" and "email" would both be named "bio"`) && !strings.Contains(err.Error(), `would both be named "bio"`) {
		t.Errorf("Apply error = %v", err)
	}
	if ev.Columns[1].Name != "email" || ev.New[0].Name != "email" {
		t.Error("a failed rename changed the event")
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"users:\n  operations: []\n", "routing.yaml:2: table users: field operations: empty list"},
		{"users:\n  operations: [MERGE]\n", `unknown operation "MERGE"`},
		{"users:\n  destination: x\n", `routing.yaml:2: table users: field destination: unknown field`},
		{"users:\n  source_table: orders\n", `"orders" differs from the route's key "users"`},
		{"users:\n  column_mappings:\n    - { source: a, destination: x }\n    - { source: b, destination: x }\n", `columns "a" and "b" would both become "x"`},
		{"users:\n  column_mappings:\n    - { source: a }\n", "want both source and destination"},
		{"users:\n  column_mappings:\n    - { source: a, destination: x }\n    - { source: a, destination: y }\n", `column "a" is mapped twice`},
		{"- users\n", "want a map from source table"},
		{"users:\n  destination_table: [x\n", "routing.yaml:1: did not find expected ',' or ']'"},
		{"users:\n  \"dest\\ttable\": x\n", `routing.yaml:2: table users: field "dest\ttable": unknown field`},
	}
	for _, tc := range cases {
		_, err := Load([]byte(tc.yaml), "routing.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) error = %v\nwant it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// A DDL event of a routed table names the target's columns: the route's
// column mappings are applied inside the statement.
func TestDDLColumnsRenamed(t *testing.T) {
	router, err := Load([]byte(`users:
  destination_table: customers
  column_mappings:
    - {source: id, destination: customer_id}
    - {source: email, destination: contact_email}
  operations: [INSERT, UPDATE, DELETE, DDL]
`), "routing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ddlEvent := func(command string) *change.Event {
		return parse(t, &event.Event{Op: event.DDL, Schema: "public", Table: "users",
			Columns: []event.Column{{Name: event.DDLCommandColumn, Type: "text", OID: 25}, {Name: event.DDLTagColumn, Type: "text", OID: 25}},
			New:     event.Row{{Name: event.DDLCommandColumn, Text: command}, {Name: event.DDLTagColumn, Text: "ALTER TABLE"}}})
	}
	command := func(ev *change.Event) string {
		i := ev.New.Index(event.DDLCommandColumn)
		written, err := change.Parse(ev.AppendJSON(nil), nil)
		if err != nil || i < 0 {
			t.Fatalf("event: %v", err)
		}
		out, err := eventtest.Decode(written.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out.New.Get(event.DDLCommandColumn)
		return v.Text
	}
	for in, want := range map[string]string{
		`ALTER TABLE users ALTER COLUMN email TYPE varchar(200)`:    `ALTER TABLE users ALTER COLUMN "contact_email" TYPE varchar(200)`,
		`ALTER TABLE users RENAME COLUMN email TO mail; SELECT 1`:   `ALTER TABLE users RENAME COLUMN "contact_email" TO mail; SELECT 1`,
		`CREATE INDEX users_email ON users (email)`:                 `CREATE INDEX users_email ON users ("contact_email")`,
		`ALTER TABLE users ADD COLUMN note text`:                    `ALTER TABLE users ADD COLUMN note text`,
		"ALTER TABLE users ALTER COLUMN bio SET DEFAULT 'email';\n": "ALTER TABLE users ALTER COLUMN bio SET DEFAULT 'email';\n",
	} {
		ev := ddlEvent(in)
		if keep, err := router.Apply(ev); !keep || err != nil {
			t.Fatalf("%q: Apply = %v, %v", in, keep, err)
		}
		if got := command(ev); got != want {
			t.Errorf("%q\n got %q\nwant %q", in, got, want)
		}
	}
}

// Load reads routes in pg_flo's format from a file's contents; source (the
// file name) and line numbers start every error.
func Load(data []byte, source string) (*Router, error) {
	doc, err := tablefile.Parse(data, source, emptyRouting)
	if err != nil {
		return nil, err
	}
	return load(doc)
}
