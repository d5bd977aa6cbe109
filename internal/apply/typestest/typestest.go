// Package typestest holds the all-types table of pgflo's apply tests: one
// column of every built-in type (and of an enum, a domain, a composite and
// range types), and rows of edge values, so that tests can prove values
// round-trip exactly from a source to a target.
package typestest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/testenv"
)

// Types creates the user-defined types the table uses; run it on source and
// target before Table.
const Types = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN positive_int AS int4 CHECK (VALUE > 0);
CREATE DOMAIN short_text AS varchar(20);
CREATE TYPE pair AS (a int4, b text);
CREATE TYPE floatrange AS RANGE (subtype = float8);
`

// Table creates the all-types table, named name.
func Table(name string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
  id int8 PRIMARY KEY,
  c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid,
  c_numeric numeric, c_numeric_ps numeric(20,6), c_float4 float4, c_float8 float8, c_money money,
  c_text text, c_varchar varchar(50), c_char char(5), c_qchar "char", c_name name,
  c_bytea bytea, c_uuid uuid, c_json json, c_jsonb jsonb, c_jsonpath jsonpath, c_xml xml,
  c_date date, c_time time, c_timetz timetz, c_timestamp timestamp(6), c_timestamptz timestamptz, c_interval interval,
  c_bit bit(4), c_varbit varbit(16), c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
  c_point point, c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon, c_circle circle,
  c_tsvector tsvector, c_tsquery tsquery, c_pg_lsn pg_lsn,
  c_int4range int4range, c_int8range int8range, c_numrange numrange, c_tsrange tsrange, c_tstzrange tstzrange, c_daterange daterange,
  c_int4multirange int4multirange, c_datemultirange datemultirange,
  c_enum mood, c_domain positive_int, c_domain_text short_text, c_composite pair, c_floatrange floatrange,
  a_int4 int4[], a_int8 int8[], a_text text[], a_numeric numeric[], a_float8 float8[], a_bool bool[], a_bytea bytea[],
  a_timestamptz timestamptz[], a_date date[], a_interval interval[], a_uuid uuid[], a_jsonb jsonb[], a_json json[],
  a_inet inet[], a_bit bit(4)[], a_varbit varbit[], a_point point[], a_box box[], a_int4range int4range[],
  a_enum mood[], a_composite pair[], a_char char(3)[], a_money money[], a_xml xml[], a_tsvector tsvector[],
  a_int4_2d int4[][], a_text_2d text[][]
)`, name)
}

// Rows inserts the edge-value rows into the table, with ids 1 to 5: ordinary
// values, extremes and specials (NaN, ±Infinity, infinity dates, BC dates,
// int8 beyond 2^53, -0), NULLs everywhere, arrays with NULL elements, nested
// arrays and non-default lower bounds, and text with every character that
// needs escaping somewhere.
func Rows(name string) string {
	return fmt.Sprintf(`
INSERT INTO %[1]s VALUES (1,
  true, 32767, 2147483647, 9007199254740993, 4294967295,
  12345678901234567890.000000001, 12345678901234.123456, 3.4028235e38, 1.7976931348623157e308, 1234567.89,
  'plain text', 'varchar', 'ab', 'x', 'a_name',
  '\x00ff10', '5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10', '{"b": 1, "a": [1, 2.50, "x"]}', '{"b": 1, "a": [1, 2.50, "x"], "n": null}', '$.a[*] ? (@ > 1)', '<a href="x">t&amp;</a>',
  '2026-11-26', '23:59:59.999999', '12:00:00+05:30', '2026-11-26 12:00:00.123456', '2026-11-26 12:00:00.123456+00', '1 year 2 mons 3 days 04:05:06.789',
  '1010', '1101001', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
  '(1.5,-2)', '{1,-1,0}', '[(0,0),(1,1)]', '(2,2),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),1.5>',
  'a fat cat:1 sat:2A', 'fat & (rat | cat)', '16/B374D848',
  '[1,10)', '[-9223372036854775808,9223372036854775807)', '(1.5,2.5]', '[2026-01-01 00:00,2026-12-31 23:59)', '[2026-01-01 00:00+00,)', '[2026-01-01,2026-02-01)',
  '{[1,3), [5,8)}', '{[2026-01-01,2026-01-05)}',
  'happy', 7, 'short', '(1,"a ""b"" c")', '[1.5,2.5)',
  '{1,NULL,3}', '{9007199254740993,-9223372036854775808}', '{"a b","c,d","e\"f","g\\h",NULL,"NULL",""}', '{1.5,NaN,Infinity,-Infinity}', '{0.1,NaN,-Infinity,1e-300}', '{t,f,NULL}', '{"\\x00","\\xdeadbeef"}',
  '{"2026-11-26 12:00:00+00",infinity,-infinity}', '{2026-11-26,infinity,"4713-01-01 BC"}', '{"1 day","-00:00:01"}', '{5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10}', '{"{\"a\": 1}","[1, 2]"}', '{"{\"a\" : 1}",null}',
  '{10.0.0.1,::1/128}', '{1010,0101}', '{1,10101}', '{"(1,2)","(3.5,4)"}', '{(2\,2)\,(0\,0);(1\,1)\,(0\,0)}', '{"[1,2)",empty}',
  '{sad,"it''s \"complicated\""}', '{"(1,x)","(2,\"y z\")",NULL}', '{ab,abc," a"}', '{1.00,-2.5}', '{"<a/>","<b>x</b>"}', '{"a:1 b:2"}',
  '[0:1][1:2]={{1,2},{3,NULL}}', '{{a,b},{"c d",NULL}}'
);
INSERT INTO %[1]s VALUES (2,
  false, -32768, -2147483648, -9223372036854775808, 0,
  'NaN', -99999999999999.999999, 'NaN', '-Infinity', -92233720368547758.08,
  E'tab\there\nnewline\r\\backslash ''quote'' "dq" \u00e9\u4e2d\U0001F600', '', '     ', E'\\', 'x',
  '\x', '00000000-0000-0000-0000-000000000000', '[]', '"str"', '$', '<?xml version="1.0"?><a/>',
  '4713-01-01 BC', '00:00:00', '00:00:00-12', '4713-01-01 00:00:00 BC', '-infinity', '-178000000 years',
  '0000', '', '::ffff:1.2.3.4/128', '2001:db8::/32', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff:ff:ff',
  '(-0,0)', '{0,1,0}', '[(1e-10,2),(3,4)]', '(0,0),(0,0)', '((0,0))', '((0,0))', '<(0,0),0>',
  '', 'a', '0/0',
  'empty', '(,)', '(,0)', '(,)', 'empty', '[-infinity,infinity)',
  '{}', '{}',
  'it''s "complicated"', 2147483647, '', '(,)', 'empty',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}',
  '{}', '{}', '{}', '{}', '{}', '{}',
  '{}', '{}', '{}', '{}', '{}', '{}',
  '{}', '{}', '{}', '{}', '{}', '{}',
  '{}', '{}'
);
INSERT INTO %[1]s (id) VALUES (3);
INSERT INTO %[1]s VALUES (4,
  NULL, 0, 0, 0, 1,
  'Infinity', 0, '-0', '-0', 0,
  'NULL', 'null', 'N', E'\n', 'Üñî',
  '\xff', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '{"a": {"b": [true, false, null, 1e100, -0.0]}}', '$.a', '',
  '2000-02-29', '24:00:00', '24:00:00+15:59', '294276-12-31 23:59:59.999999', 'infinity', '-1 days +02:03:04',
  '1111', '0', '0.0.0.0/0', '0.0.0.0/0', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00',
  '(1e+300,-1e-300)', '{1,0,-5}', '[(0,0),(0,0)]', '(1,1),(1,1)', '[(1,2)]', '((1,2),(3,4),(5,6),(7,8))', '<(1e-5,-1e5),1e10>',
  'x:1A,2B,3C,4D', '!x <-> y', 'FFFFFFFF/FFFFFFFF',
  '[-2147483648,2147483647)', '[0,1)', '[NaN,NaN]', '[infinity,infinity]', '(-infinity,infinity)', 'empty',
  '{[-2147483648,-2147483647), [2147483646,2147483647)}', '{(-infinity,infinity)}',
  'sad', 1, 'twenty chars exactly', '(,"")', '(-Infinity,Infinity)',
  '[-1:1]={NULL,NULL,NULL}', '{NULL}', '{NULL,""}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
  '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{null}', '{NULL}',
  '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
  '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
  '{{NULL}}', '{{"\\\"","\\\\"}}'
);
INSERT INTO %[1]s (id, c_text, c_bytea, c_jsonb, a_text) VALUES (5,
  repeat('large TOASTable text ', 20000), decode(repeat('00ff', 50000), 'hex'), jsonb_build_object('k', repeat('v', 100000)), array_fill('x'::text, ARRAY[5000]));
`, name)
}

// Digest is a query returning an md5 of every row of the table in its text
// form, ordered by id: equal digests mean equal tables, value for value.
func Digest(name string) string {
	return fmt.Sprintf("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY id), '')) FROM %s t", name)
}

// InsertEvents reads every row of a table (ordered by its first column) as
// INSERT events with values in their text form, as pg_flo_replicator sends
// them; the first column is marked key.
func InsertEvents(t testing.TB, dsn, schema, table string) []event.Event {
	t.Helper()
	names := testenv.QueryRows(t, dsn, `SELECT a.attname FROM pg_attribute a WHERE a.attrelid = $1::regclass
		AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`, pgx.Identifier{schema, table}.Sanitize())
	var cols []event.Column
	var list []string
	for i, n := range names {
		cols = append(cols, event.Column{Name: n[0], Key: i == 0})
		list = append(list, pgx.Identifier{n[0]}.Sanitize())
	}
	var out []event.Event
	for _, r := range testenv.QueryRows(t, dsn, "SELECT "+strings.Join(list, ", ")+" FROM "+pgx.Identifier{schema, table}.Sanitize()+" ORDER BY 1") {
		ev := event.Event{V: event.Version, Op: event.Insert, Schema: schema, Table: table, Columns: cols}
		for i, v := range r {
			val := event.Value{Name: cols[i].Name, Text: v}
			if v == testenv.NullText {
				val = event.Value{Name: cols[i].Name, Null: true}
			}
			ev.New = append(ev.New, val)
		}
		out = append(out, ev)
	}
	return out
}
