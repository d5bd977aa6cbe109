package apply

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Set statements send the columns of the types in typedParams as arrays of
// their own type. Values spread over the types' ranges and their special
// values land on the target exactly as its text input reads the source's
// text (a COPY of that text into a table like the target's is the
// reference), into columns of the same type and of another type or
// modifier, through inserts, updates and deletes by a typed key; a value
// the conversion declines goes as text.
func TestTypedParamsRoundTrip(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	const cols = `b bool, i2 int2, i4 int4, f4 float4, f8 float8, n numeric, by bytea, d date, tm time, tz timestamptz, s text`
	testenv.Exec(t, src, `CREATE TABLE typed (id int8, u uuid, `+cols+`,
		np numeric, ts timestamp, w int4, wf float4, PRIMARY KEY (id, u))`)
	// The target's np, ts, w and wf differ: a modifier that rounds, a wider type.
	dstDef := `(id int8, u uuid, ` + cols + `, np numeric(12,3), ts timestamp(2), w int8, wf float8, PRIMARY KEY (id, u))`
	testenv.Exec(t, dst, `CREATE TABLE typed `+dstDef)
	testenv.Exec(t, dst, `CREATE TABLE ref `+dstDef)
	testenv.Exec(t, src, `INSERT INTO typed SELECT g, md5(g::text)::uuid,
		CASE WHEN g % 5 = 0 THEN NULL ELSE g % 2 = 0 END,
		(g * 7919 % 65536 - 32768)::int2, (g::int8 * 104729 % 4294967296 - 2147483648)::int4,
		((random() - 0.5) * 10 ^ (g % 76 - 38))::float4,
		((random() - 0.5) * 10 ^ (g % 600 - 300))::float8,
		round(((random() - 0.5) * 10 ^ (g % 60 - 30))::numeric, g % 40),
		decode(md5(g::text), 'hex'),
		date '4712-01-01 BC' + (random() * 106000000)::int,
		time '00:00' + random() * interval '24 hours',
		timestamptz '4712-01-01 00:00+00 BC' + random() * interval '298000 years',
		E'text \\ \t ' || g,
		round((random() * 1e9)::numeric, g % 8),
		timestamp '4712-01-01 00:00 BC' + random() * interval '298000 years',
		g * 31 - 100000, (random() * 1000)::float4
		FROM generate_series(1, 3000) g`)
	testenv.Exec(t, src, `INSERT INTO typed VALUES
		(-9223372036854775808, '00000000-0000-0000-0000-000000000000', true, -32768, -2147483648, 'NaN', '-Infinity', 'NaN',
		 '\x', 'infinity', '24:00:00', '-infinity', '', 'NaN', 'infinity', 2147483647, '-Infinity'),
		(9223372036854775807, 'ffffffff-ffff-ffff-ffff-ffffffffffff', false, 32767, 2147483647, '-0', '4.9e-324', 'Infinity',
		 '\x00ff', '-infinity', '00:00:00', 'infinity', NULL, NULL, '-infinity', -2147483648, '1.4e-45'),
		(0, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, NULL, NULL, 'Infinity', '-0', '-Infinity',
		 NULL, '4713-11-24 BC', NULL, '294276-12-31 23:59:59.999999+00', NULL, '123456789.1235', '4714-11-24 00:00:00.005 BC', 0, 'NaN'),
		(5000, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 0, 0, '3.4028235e+38', '1.7976931348623157e+308', '0.000000000000000000000000000001',
		 '\x5c', '5874897-12-31', '23:59:59.999999', '2000-01-01 00:00:00.5+00', 'x', '-0.0005', '2000-01-01 00:00:00.125', 0, '-0')`)

	a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 0; c.ApplyConnections = 1 })
	conn := typestest.Connect(t, src)
	refConn := typestest.Connect(t, dst)
	var s stream
	check := func(what string) {
		t.Helper()
		// The reference: the source's text, read by the target's COPY.
		testenv.Exec(t, dst, "TRUNCATE ref")
		text := typestest.CopyOut(t, conn, "SELECT * FROM typed", false)
		if _, err := refConn.PgConn().CopyFrom(context.Background(), bytes.NewReader(text), "COPY ref FROM STDIN"); err != nil {
			t.Fatal(err)
		}
		digest := func(table string) string {
			return fmt.Sprintf("SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY id, u), '')) FROM %s t", table)
		}
		want := testenv.QueryRows(t, dst, digest("ref"))[0][0]
		if got := testenv.QueryRows(t, dst, digest("typed"))[0][0]; got != want {
			t.Fatalf("%s: target %s, text input of the source's values %s\ndiffering rows:\n%s", what, got, want,
				rows(t, dst, "(SELECT 'target', t::text FROM typed t EXCEPT SELECT 'target', r::text FROM ref r) UNION ALL (SELECT 'text input', r::text FROM ref r EXCEPT SELECT 'text input', t::text FROM typed t) LIMIT 10"))
		}
	}
	changes := func(op event.Op) []*Change {
		var out []*Change
		for _, ev := range typestest.InsertEvents(t, src, "public", "typed") {
			ev.Columns[1].Key = true
			c := &Change{Event: ev}
			c.Op = op
			if op != event.Insert {
				c.Old = event.Row{ev.New[0], ev.New[1]}
			}
			if op == event.Delete {
				c.New = nil
			}
			out = append(out, c)
		}
		return out
	}

	inserts := changes(event.Insert)
	generated := slices.DeleteFunc(slices.Clone(inserts), func(c *Change) bool {
		id, _ := strconv.ParseInt(c.New[0].Text, 10, 64)
		return id < 1 || id > 3000
	})
	assertTyped(t, a, generated, "b", "i2", "i4", "f4", "f8", "n", "by", "d", "tm", "tz", "np", "ts", "w", "wf", "id", "u")
	// The extreme dates and timestamps of the special rows are declined
	// (beyond the range the conversion reads): those columns go as text.
	assertTyped(t, a, inserts, "b", "i2", "i4", "f4", "f8", "n", "by", "tm", "np", "w", "wf", "id", "u")
	apply(t, a, s.tx(inserts...)...)
	check("inserts")

	// Every row takes the next one's values (keys stay).
	testenv.Exec(t, src, `UPDATE typed t SET (b, i2, i4, f4, f8, n, by, d, tm, tz, s, np, ts, w, wf) =
		(SELECT b, i2, i4, f4, f8, n, by, d, tm, tz, s, np, ts, w, wf FROM typed o WHERE o.id > t.id ORDER BY o.id LIMIT 1)
		WHERE t.id < 9223372036854775807`)
	apply(t, a, s.tx(changes(event.Update)...)...)
	check("updates")

	// A declined value (another form than numeric's output) sends its
	// column as text; the server reads it.
	upd := slices.DeleteFunc(changes(event.Update), func(c *Change) bool {
		id, _ := strconv.ParseInt(c.New[0].Text, 10, 64)
		return id < 1 || id > 3
	})
	for _, c := range upd {
		c.New[slices.IndexFunc(c.New, func(v event.Value) bool { return v.Name == "n" })] = event.Value{Name: "n", Text: " 1e3 "}
	}
	assertTyped(t, a, upd, "b", "i2", "i4", "f4", "f8", "by", "d", "tm", "tz", "np", "ts", "w", "wf", "id", "u")
	apply(t, a, s.tx(upd...)...)
	testenv.Exec(t, src, `UPDATE typed SET n = 1000 WHERE id BETWEEN 1 AND 3`)
	check("declined values")

	// TextParameters sends every column as text.
	off, _ := connectApplier(t, dst, func(c *Config) { c.TextParameters = true })
	assertTyped(t, off, generated)

	// Deletes by the typed key, half of the rows.
	var dels []*Change
	for i, c := range changes(event.Delete) {
		if i%2 == 0 {
			dels = append(dels, c)
		}
	}
	apply(t, a, s.tx(dels...)...)
	testenv.Exec(t, src, `DELETE FROM typed WHERE (id, u) IN (SELECT id, u FROM (SELECT id, u, row_number() OVER (ORDER BY id) AS r FROM typed) x WHERE r % 2 = 1)`)
	check("deletes")
}

// assertTyped plans changes (one set statement) and checks which of its
// parameters go as typed arrays: exactly the named columns.
func assertTyped(t *testing.T, a *Applier, changes []*Change, want ...string) {
	t.Helper()
	for _, c := range changes {
		c.Target = a.Target(c.Schema, c.Table)
	}
	p := &planner{lookup: func(ch *Change) (*Table, error) { return a.table(context.Background(), ch) }}
	steps, err := p.plan(changes)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 {
		t.Fatalf("%d steps, want one set statement", len(steps))
	}
	st := steps[0]
	_, args := statement(st, !a.cfg.TextParameters)
	var typed []string
	for i, arg := range args {
		if _, ok := arg.(typedColumn); ok {
			typed = append(typed, st.table.Columns[st.cols[i]].Name)
		}
	}
	slices.Sort(typed)
	slices.Sort(want)
	if !slices.Equal(typed, want) {
		t.Fatalf("typed parameters %v, want %v", typed, want)
	}
}
