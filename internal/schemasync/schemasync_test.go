package schemasync

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/apply"
	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }

type logger struct {
	t     *testing.T
	warns []string
}

func (l *logger) Debugf(f string, a ...any) {}
func (l *logger) Infof(f string, a ...any)  { l.t.Logf("INFO "+f, a...) }
func (l *logger) Warnf(f string, a ...any) {
	l.warns = append(l.warns, fmt.Sprintf(f, a...))
	l.t.Logf("WARN "+f, a...)
}

func applier(t *testing.T, src, dst string, mapping map[string]string) (*apply.Applier, *logger) {
	t.Helper()
	log := &logger{t: t}
	syncer := New(src, log)
	t.Cleanup(func() { _ = syncer.Close(context.Background()) })
	mapSchema := func(s string) string {
		if to, ok := mapping[s]; ok {
			return to
		}
		return s
	}
	a, err := apply.Connect(context.Background(), apply.Config{
		DSN: dst, Group: "g", SchemaMapping: mapping, Logger: log, CopyMinRows: 2,
		CreateTable: syncer.TableCreator(mapSchema),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a, log
}

func changes(evs []event.Event, mod func(*apply.Change)) []*apply.Change {
	var out []*apply.Change
	for i, ev := range evs {
		c := &apply.Change{Event: ev, Pos: int64(i), Index: i}
		c.CommitLSN, c.LSN = 0x1000, 0x1000
		if mod != nil {
			mod(c)
		}
		out = append(out, c)
	}
	return out
}

// batchOf hands changes to the applier as a batch decoded in full.
func batchOf(changes []*apply.Change) *apply.Batch {
	b := apply.NewBatch(len(changes))
	for _, ch := range changes {
		b.Add(ch)
	}
	return b
}

func TestCreatesAllTypesTable(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, typestest.Types)
	testenv.Exec(t, src, typestest.Table("types"))
	testenv.Exec(t, src, typestest.Rows("types"))
	a, _ := applier(t, src, dst, nil)
	if _, err := a.ApplyBatch(context.Background(), batchOf(changes(typestest.InsertEvents(t, src, "public", "types"), nil))); err != nil {
		t.Fatal(err)
	}
	want := testenv.QueryRows(t, src, typestest.Digest("types"))[0][0]
	if got := testenv.QueryRows(t, dst, typestest.Digest("types"))[0][0]; got != want {
		t.Fatalf("digest %s, source %s", got, want)
	}
	// Same column types, typmods included.
	typesOf := func(dsn string) string {
		rows := testenv.QueryRows(t, dsn, `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
			FROM pg_attribute WHERE attrelid = 'public.types'::regclass AND attnum > 0 AND NOT attisdropped`)
		return rows[0][0]
	}
	if got, want := typesOf(dst), typesOf(src); got != want {
		t.Fatalf("columns:\n%s\nsource:\n%s", got, want)
	}
}

func TestCreatesRoutedTableWithConstraints(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, `
		CREATE TABLE customers (id int PRIMARY KEY);
		CREATE TABLE orders (
			id bigserial PRIMARY KEY,
			customer_id int REFERENCES customers (id),
			parent bigint REFERENCES orders (id),
			email text NOT NULL CHECK (email <> '') COLLATE "C",
			total numeric(10,2) DEFAULT 0,
			doubled numeric GENERATED ALWAYS AS (total * 2) STORED,
			code int GENERATED ALWAYS AS IDENTITY,
			UNIQUE (email));
		CREATE INDEX orders_lower_email ON orders (lower(email)) WHERE total > 0;
		INSERT INTO customers VALUES (1);
		INSERT INTO orders (customer_id, email, total) VALUES (1, 'a@x', 10), (1, 'b@x', 20);`)
	testenv.Exec(t, dst, "CREATE SCHEMA replica; CREATE TABLE replica.customers (id int PRIMARY KEY); INSERT INTO replica.customers VALUES (1)")
	a, log := applier(t, src, dst, map[string]string{"public": "replica"})
	evs := typestest.InsertEvents(t, src, "public", "orders")
	// routing: orders → purchases, email → contact
	batch := changes(evs, func(c *apply.Change) {
		c.Source = apply.TableName{Schema: "public", Name: "orders"}
		c.Table = "purchases"
		for i := range c.Columns {
			if c.Columns[i].Name == "email" {
				c.Columns[i].Name = "contact"
			}
		}
		for i := range c.New {
			if c.New[i].Name == "email" {
				c.New[i].Name = "contact"
			}
		}
	})
	if _, err := a.ApplyBatch(context.Background(), batchOf(batch)); err != nil {
		t.Fatal(err)
	}
	if len(log.warns) > 0 {
		t.Errorf("warnings: %q", log.warns)
	}
	got := testenv.QueryRows(t, dst, "SELECT id, customer_id, contact, total, doubled, code FROM replica.purchases ORDER BY id")
	if fmt.Sprint(got) != "[[1 1 a@x 10.00 20.00 1] [2 1 b@x 20.00 40.00 2]]" {
		t.Fatalf("rows %v", got)
	}
	defs := testenv.QueryRows(t, dst, `SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), E'\n' ORDER BY conname)
		FROM pg_constraint WHERE conrelid = 'replica.purchases'::regclass`)[0][0]
	for _, want := range []string{
		"orders_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES replica.customers(id)",
		"orders_email_check: CHECK ((contact <> ''::text))",
		"orders_email_key: UNIQUE (contact)",
		"orders_parent_fkey: FOREIGN KEY (parent) REFERENCES replica.purchases(id)",
		"orders_pkey: PRIMARY KEY (id)",
	} {
		if !strings.Contains(defs, want) {
			t.Errorf("constraints:\n%s\nlack %s", defs, want)
		}
	}
	index := testenv.QueryRows(t, dst, "SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_lower_email'")
	if len(index) != 1 || index[0][0] != "CREATE INDEX orders_lower_email ON replica.purchases USING btree (lower(contact)) WHERE (total > (0)::numeric)" {
		t.Errorf("index %v", index)
	}
	// The serial column's sequence came along, at the source's value.
	testenv.Exec(t, dst, "INSERT INTO replica.purchases (contact) VALUES ('c@x')")
	if n := testenv.QueryInt(t, dst, "SELECT max(id) FROM replica.purchases"); n != 3 {
		t.Errorf("next serial id %d", n)
	}
	if got := testenv.QueryRows(t, dst, "SELECT collation_name FROM information_schema.columns WHERE table_name = 'purchases' AND column_name = 'contact'"); got[0][0] != "C" {
		t.Errorf("collation %v", got)
	}
}

func TestMissingSourceTable(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	a, _ := applier(t, src, dst, nil)
	ev := event.Event{V: 1, Op: event.Insert, Schema: "public", Table: "nope", Columns: []event.Column{{Name: "id"}}, New: event.Row{{Name: "id", Text: "1"}}}
	_, err := a.ApplyBatch(context.Background(), batchOf(changes([]event.Event{ev}, nil)))
	if err == nil || !strings.Contains(err.Error(), `sync_schema: table "public"."nope" does not exist on the source`) {
		t.Fatalf("error %v", err)
	}
}
