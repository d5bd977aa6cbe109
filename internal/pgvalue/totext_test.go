package pgvalue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply/typestest"
)

func exec(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

// short quotes at most 200 bytes of b, for a failure message.
func short(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// unescapeCopy decodes the escapes COPY's text output writes.
func unescapeCopy(t testing.TB, field []byte) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c == '\\' {
			i++
			if i == len(field) {
				t.Fatalf("COPY field ends in a backslash: %s", short(field))
			}
			switch c = field[i]; c {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			case '\\':
			default:
				t.Fatalf("COPY field has escape \\%c: %s", c, short(field))
			}
		}
		out = append(out, c)
	}
	return out
}

// matchCopyText checks that the binary COPY of query, rendered, is byte
// for byte its text COPY, both whole (AppendCopyText) and value by value
// (AppendText against the unescaped text field), and returns how many rows
// it compared.
func matchCopyText(t *testing.T, conn *pgx.Conn, query string, cols []typestest.Column) int {
	t.Helper()
	oids := make([]uint32, len(cols))
	for i, c := range cols {
		oids[i] = c.OID
	}
	r, bad, ok := BinaryToTextFor(oids)
	if !ok {
		t.Fatalf("column %s (type %d) is not supported", cols[bad].Name, cols[bad].OID)
	}
	tuples := typestest.CopyOut(t, conn, query, true)
	want := typestest.CopyOut(t, conn, query, false)
	got, err := r.AppendCopyText([]byte("prefix"), tuples)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatal("AppendCopyText did not append to dst")
	}
	got = got[len("prefix"):]
	wantLines := bytes.SplitAfter(want, []byte("\n"))
	if !bytes.Equal(got, want) {
		gotLines := bytes.SplitAfter(got, []byte("\n"))
		for i := range min(len(gotLines), len(wantLines)) {
			if bytes.Equal(gotLines[i], wantLines[i]) {
				continue
			}
			gf := bytes.Split(bytes.TrimSuffix(gotLines[i], []byte("\n")), []byte("\t"))
			wf := bytes.Split(bytes.TrimSuffix(wantLines[i], []byte("\n")), []byte("\t"))
			for j := range min(len(gf), len(wf)) {
				if !bytes.Equal(gf[j], wf[j]) {
					t.Fatalf("row %d, column %s (type %d): rendered %s, COPY text %s", i+1, cols[j].Name, cols[j].OID, short(gf[j]), short(wf[j]))
				}
			}
			t.Fatalf("row %d: rendered %d fields, COPY text %d", i+1, len(gf), len(wf))
		}
		t.Fatalf("rendered %d rows, COPY text %d", len(gotLines), len(wantLines))
	}
	n, err := CountTuples(tuples, len(cols))
	if err != nil || n != len(wantLines)-1 {
		t.Fatalf("Count: %d, %v; want %d rows", n, err, len(wantLines)-1)
	}
	// Value by value.
	rest := tuples
	var text []byte
	for row := 0; len(rest) > 0; row++ {
		var tuple []byte
		if tuple, rest, err = NextTuple(rest, len(cols)); err != nil {
			t.Fatal(err)
		}
		fields := bytes.Split(bytes.TrimSuffix(wantLines[row], []byte("\n")), []byte("\t"))
		err := EachField(tuple, func(col int, data []byte) error {
			if data == nil {
				if string(fields[col]) != `\N` {
					return fmt.Errorf("NULL, COPY text %s", short(fields[col]))
				}
				return nil
			}
			var err error
			if text, err = r.AppendText(text[:0], col, data); err != nil {
				return err
			}
			if want := unescapeCopy(t, fields[col]); !bytes.Equal(text, want) {
				return fmt.Errorf("AppendText %s, COPY text unescaped %s", short(text), short(want))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("row %d: %v", row+1, err)
		}
	}
	return n
}

// The generated table: the text-to-binary round-trip generator, with an array of
// every other element type and floats with few digits around the switch
// between fixed and exponent notation.
const generatedTable = `CREATE TABLE src (id int8, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
	n numeric, np numeric(12,3), t text, vc varchar(40), c char(8), j json, jb jsonb, u uuid, by bytea,
	d date, tm time, ts timestamp, tz timestamptz, at text[], an numeric[], atz timestamptz[], ai int4[][],
	ab bool[], aby bytea[], ai2 int2[], ai8 int8[], abp char(3)[], avc varchar[], af4 float4[], af8 float8[],
	ats timestamp[], ad date[], atm time[], au uuid[], aj json[], ajb jsonb[])`

const generatedFill = `INSERT INTO src SELECT g, g % 3 = 0,
	(g * 7919 % 65536 - 32768)::int2, (g::int8 * 104729 % 4294967296 - 2147483648)::int4,
	((random() - 0.5) * 2 ^ 63)::numeric::int8,
	CASE WHEN g % 2 = 0 THEN ((random() - 0.5) * 10 ^ (g % 76 - 38))::float4
	     ELSE (round((random() * 1000)::numeric) * 10::numeric ^ (g % 24 - 12))::float4 END,
	CASE WHEN g % 2 = 0 THEN ((random() - 0.5) * 10 ^ (g % 600 - 300))::float8
	     ELSE (round((random() * 1000)::numeric) * 10::numeric ^ (g % 50 - 25))::float8 END,
	round(((random() - 0.5) * 10 ^ (g % 60 - 30))::numeric, g % 40),
	round((random() * 1e9)::numeric, 3),
	E'text \\ \t ' || g, 'v' || g, 'c' || g % 100,
	json_build_object('g', g, 's', E'q"\\'), jsonb_build_object('g', g, 'f', random()),
	gen_random_uuid(), decode(md5(g::text), 'hex'),
	date '4712-01-01 BC' + (random() * 106000000)::int,
	time '00:00' + random() * interval '24 hours',
	timestamp '4712-01-01 00:00 BC' + random() * interval '298000 years',
	timestamptz '4712-01-01 00:00+00 BC' + random() * interval '298000 years',
	ARRAY['a' || g, NULL, E'"q" \\ {x}', ''],
	ARRAY[round(random()::numeric * 1000, g % 5), 'NaN', NULL],
	ARRAY[now() - random() * interval '100 years', 'infinity'],
	CASE WHEN g % 2 = 0 THEN ARRAY[[g, -g], [NULL, 0]] ELSE '[0:0][-3:-2]={{1,2}}'::int4[] END,
	ARRAY[g % 2 = 0, NULL, true],
	ARRAY[decode(md5(g::text), 'hex'), '\x'::bytea, NULL],
	ARRAY[(g % 32768)::int2, -1::int2],
	ARRAY[g::int8 * 1000000007, NULL],
	ARRAY['a', 'b c', NULL]::char(3)[],
	ARRAY['v' || g, 'NULL', 'null', '']::varchar[],
	ARRAY[((random() - 0.5) * 10 ^ (g % 76 - 38))::float4, 'NaN', '-0'],
	ARRAY[((random() - 0.5) * 10 ^ (g % 600 - 300))::float8, '-Infinity'],
	ARRAY[timestamp '4712-01-01 00:00 BC' + random() * interval '298000 years', '-infinity'],
	ARRAY[date '4712-01-01 BC' + (random() * 106000000)::int, NULL],
	ARRAY[time '00:00' + random() * interval '24 hours', '24:00:00'],
	ARRAY[gen_random_uuid(), NULL],
	ARRAY[json_build_object('g', g, 's', E'a\\b "c"'), NULL, 'null'::json],
	ARRAY[jsonb_build_object('g', g, 'f', random()), '"x, y"'::jsonb]
FROM generate_series(1, 20000) g`

// specials are values at the edges of each column's type, by column; row i
// of the specials takes each column's i-th value (NULL past the end).
var specials = map[string][]string{
	"b":  {"true", "false"},
	"i2": {"32767", "-32768", "0"},
	"i4": {"2147483647", "-2147483648"},
	"i8": {"9223372036854775807", "-9223372036854775808", "9007199254740993"},
	"f4": {"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0", "'1e-45'", "'3.4028235e38'", "1234567", "123456", "0.0001",
		"'1e-05'", "100000", "1000000", "'1.17549435e-38'", "0.1", "'-1.5e-5'", "999999"},
	"f8": {"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0", "'5e-324'", "'1.7976931348623157e308'", "123456789012345",
		"1234567890123456", "'1e-05'", "0.0001", "'1e15'", "'1e14'", "'2.2250738585072014e-308'", "9007199254740993", "0.1",
		"'-0.00012345'", "'1e100'", "999999999999999", "'1e-100'"},
	"n": {"'NaN'", "'Infinity'", "'-Infinity'", "0", "0.000", "-0.5", "'1e-20'", "123456789012345678901234567890.123456789",
		"-1000000", "0.0001", "10000", "'1e100'", "-0.00000001", "99990000.00010"},
	"np": {"0", "-0.001", "999999999.999", "-999999999.999"},
	"t": {"''", "'NULL'", "'null'", `E'\\'`, `E'a\tb\nc\rd\be\ff\vg'`, `E'\x01\x7f\x1b'`, "'ünïcödé ☃'", `E'\\N'`, `'\N'`,
		`E'\\\\'`, "' '"},
	"vc": {"''", `E'tab\t'`},
	"c":  {"''", "'a'", `E'\\'`},
	"j":  {"'null'", `'{"a" : [1,  2]}'`, `E'"\\u0000"'`},
	"jb": {"'null'", `'{"b": 1, "a": [1, 2.50, "x\ty"]}'`, `'"\\\\"'`, "'1e100'", "'[]'"},
	"u":  {"'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"},
	"by": {`'\x'`, `'\x00ff5c0a09'`},
	"d": {"'infinity'", "'-infinity'", "'0001-01-01 BC'", "'4713-01-01 BC'", "'4714-11-24 BC'", "'5874897-12-31'",
		"'294276-12-31'", "'2000-02-29'", "'0001-01-01'", "'1999-12-31'", "'9999-12-31'", "'10000-01-01'"},
	"tm": {"'00:00:00'", "'24:00:00'", "'23:59:59.999999'", "'12:00:00.5'", "'00:00:00.000001'", "'01:02:03.1'"},
	"ts": {"'infinity'", "'-infinity'", "'4714-11-24 00:00:00 BC'", "'0001-12-31 23:59:59.999999 BC'",
		"'294276-12-31 23:59:59.999999'", "'0044-03-15 12:00:00 BC'", "'1999-12-31 23:59:59.000001'", "'2000-01-01'",
		"'1969-12-31 23:59:59.5'", "'4713-01-01 00:00:00 BC'"},
	"tz": {"'infinity'", "'-infinity'", "'4714-11-24 00:00:00+00 BC'", "'0001-12-31 23:59:59.999999+00 BC'",
		"'294276-12-31 23:59:59.999999+00'", "'0044-03-15 12:00:00+00 BC'", "'2024-06-01 12:00:00+05:30'", "'2000-01-01 00:00:00.1+00'"},
	"at": {"'{}'", "'{NULL}'", `'{"NULL","null","Null",""}'`, `E'{"a\\\\b","q\\"","{}"," ",",","\\ta"}'`,
		`ARRAY[E'\x01', E'a\bb', E'tab\there', E'v\vf\f', E'cr\r', 'x y', E'\\']`, `'{{a,b},{c,d}}'`, `'[2:3]={x,y}'`},
	"an":  {"ARRAY['NaN', 'Infinity', '-Infinity', 0, -0.0010, '1e-20']::numeric[]", "'{}'"},
	"atz": {`'{infinity,-infinity,"0044-03-15 12:00:00+00 BC","294276-12-31 23:59:59.999999+00"}'`},
	"ai": {"'[-5:-3]={1,2,3}'", "'{{{{{{1}}}}}}'", "'[2147483646:2147483646]={1}'", "'[-2147483648:-2147483647]={1,2}'",
		"'[1:2][0:1]={{1,NULL},{NULL,4}}'", "'{{{1,2},{3,4}},{{5,6},{7,8}}}'", "'[1:1]={5}'", "'{}'"},
	"ab":  {"'{}'", "'{t}'"},
	"ai2": {"'{32767,-32768,NULL}'"},
	"ai8": {"'{9223372036854775807,-9223372036854775808}'"},
	"aby": {`ARRAY['\x'::bytea, '\x5c22'::bytea]`},
	"abp": {"'{\"\",a}'"},
	"avc": {`ARRAY['', 'NULL', 'nULl', 'NULLx', ' ', E'\\', '"']`},
	"af4": {"ARRAY['NaN', 'Infinity', '-0', '1e-45', 1234567, 0.0001]::float4[]"},
	"af8": {"ARRAY['NaN', '-Infinity', '-0', '5e-324', 1234567890123456, 0.0001]::float8[]"},
	"ats": {`'{infinity,"0044-03-15 12:00:00 BC"}'`},
	"ad":  {`'{infinity,"4713-01-01 BC",2000-01-01}'`},
	"atm": {"'{00:00:00,24:00:00,12:34:56.789}'"},
	"au":  {"'{}'"},
	"aj":  {`ARRAY['{"a" : 1}', '"\\\\"', '[]']::json[]`},
	"ajb": {`ARRAY['{"a": {"b": null}}', 'null', '"NULL"']::jsonb[]`},
}

// Generated values of every type, spread over their ranges (numerics of
// every scale, floats of every magnitude, timestamps from 4712 BC to 294275
// AD), and the specials, render exactly as the server's COPY text.
func TestGeneratedValuesMatchCopyText(t *testing.T) {
	conn := typestest.Connect(t, pg.NewDatabase(t))
	exec(t, conn, generatedTable+";"+generatedFill)
	maxRows := 0
	for _, vals := range specials {
		maxRows = max(maxRows, len(vals))
	}
	for i := range maxRows {
		names, vals := []string{"id"}, []string{fmt.Sprint(100000 + i)}
		for name, v := range specials {
			if i < len(v) {
				names = append(names, name)
				vals = append(vals, v[i])
			}
		}
		exec(t, conn, "INSERT INTO src ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(vals, ", ")+")")
	}
	cols := typestest.Columns(t, conn, "src")
	for _, c := range cols[1:] {
		if _, ok := specials[c.Name]; !ok {
			t.Errorf("column %s has no specials", c.Name)
		}
	}
	if n := matchCopyText(t, conn, "SELECT * FROM src ORDER BY id", cols); n != 20000+maxRows {
		t.Errorf("compared %d rows, want %d", n, 20000+maxRows)
	}
}

// Every column of the all-types table whose type is supported renders as
// the server's COPY text, row by row (edge values, NULLs, TOASTed values).
func TestAllTypesTable(t *testing.T) {
	conn := typestest.Connect(t, pg.NewDatabase(t))
	exec(t, conn, typestest.Types+";"+typestest.Table("src")+";"+typestest.Rows("src"))
	var cols []typestest.Column
	var names []string
	for _, c := range typestest.Columns(t, conn, "src") {
		if BinaryToTextSupported(c.OID) {
			cols = append(cols, c)
			names = append(names, pgx.Identifier{c.Name}.Sanitize())
		}
	}
	if len(cols) < 30 {
		t.Errorf("only %d columns of the all-types table are supported", len(cols))
	}
	if n := matchCopyText(t, conn, "SELECT "+strings.Join(names, ", ")+" FROM src ORDER BY id", cols); n != 5 {
		t.Errorf("compared %d rows, want 5", n)
	}
}

// Supported and For agree, on the same OIDs as the text-to-binary conversion.
func TestSupported(t *testing.T) {
	want := []uint32{16, 17, 20, 21, 23, 25, 114, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184, 1700, 2950, 3802,
		1000, 1001, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1115, 1182, 1183, 1185, 1231, 2951, 199, 3807}
	for _, oid := range want {
		if !BinaryToTextSupported(oid) {
			t.Errorf("type %d not supported", oid)
		}
	}
	for _, oid := range []uint32{0, 18, 19, 26, 1186, 1266, 869, 142, 3904, 1187, 1011} {
		if BinaryToTextSupported(oid) {
			t.Errorf("type %d supported", oid)
		}
	}
	if r, bad, ok := BinaryToTextFor([]uint32{Int8OID, 1186, TextOID}); ok || bad != 1 || r != nil {
		t.Errorf("interval: ok %v, column %d; want column 1 unsupported", ok, bad)
	}
	if _, bad, ok := BinaryToTextFor(want); !ok || bad != -1 {
		t.Errorf("BinaryToTextFor(supported): ok %v, column %d", ok, bad)
	}
}

// Floats of every bit pattern, and short decimals with their neighbours
// (among them the ties strconv would print shorter than the server, as
// 1e23 and float4 6.22e9), render as the server's float8out and float4out.
func TestFloatsMatchServer(t *testing.T) {
	conn := typestest.Connect(t, pg.NewDatabase(t))
	exec(t, conn, "CREATE TABLE floats (id int8, f4 float4, f8 float8)")
	rng := rand.New(rand.NewPCG(1, 2))
	var rows [][]any
	add := func(f4 float32, f8 float64) { rows = append(rows, []any{int64(len(rows)), f4, f8}) }
	for range 100000 {
		add(math.Float32frombits(rng.Uint32()), math.Float64frombits(rng.Uint64()))
	}
	// For every exponent, mantissas with few bits (powers of two, whose
	// interval is lopsided, and values whose exact decimal is short enough
	// to tie), the largest, and random ones.
	for e := range 2047 {
		for i := range 40 {
			var m4, m8 uint64
			switch {
			case i < 10:
				m4, m8 = uint64(i), uint64(i)
			case i < 20:
				m4, m8 = 1<<23-uint64(i-9), 1<<52-uint64(i-9)
			case i < 30:
				m4, m8 = rng.Uint64N(1<<11)<<12, rng.Uint64N(1<<12)<<40
			default:
				m4, m8 = rng.Uint64N(1<<23), rng.Uint64N(1<<52)
			}
			add(math.Float32frombits(uint32(e%255)<<23|uint32(m4)), math.Float64frombits(uint64(e)<<52|m8))
		}
	}
	for d := 1; d < 1000; d += 1 + d/10 {
		for e := -46; e <= 39; e++ {
			f8, _ := strconv.ParseFloat(fmt.Sprintf("%de%d", d, e), 64)
			f4, _ := strconv.ParseFloat(fmt.Sprintf("%de%d", d, e), 32)
			add(float32(f4), f8)
			add(math.Nextafter32(float32(f4), 0), math.Nextafter(f8, 0))
			add(math.Nextafter32(float32(f4), math.MaxFloat32), math.Nextafter(f8, math.MaxFloat64))
		}
	}
	for e := -30; e <= 30; e++ {
		f, _ := strconv.ParseFloat(fmt.Sprintf("1e%d", e), 64)
		add(float32(f), f)
	}
	ties := 0
	for _, r := range rows {
		if isTie(float64(r[1].(float32)), 32) {
			ties++
		}
		if isTie(r[2].(float64), 64) {
			ties++
		}
	}
	if ties < 100 {
		t.Errorf("only %d values whose strconv digits need the exact path", ties)
	}
	if _, err := conn.CopyFrom(context.Background(), pgx.Identifier{"floats"}, []string{"id", "f4", "f8"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	matchCopyText(t, conn, "SELECT * FROM floats ORDER BY id", typestest.Columns(t, conn, "floats"))
	t.Logf("%d rows, %d ties", len(rows), ties)
}

// isTie reports whether strconv's shortest digits of f are not the
// server's for sure: on a bound, or one of two equally near.
func isTie(f float64, bitSize int) bool {
	if f != f || f == 0 || math.IsInf(f, 0) {
		return false
	}
	f = math.Abs(f)
	d, exp, nd := decimalOf(strconv.AppendFloat(nil, f, 'e', -1, bitSize))
	b := binaryOf(f, bitSize)
	return b.onBound(d, exp-(nd-1)) || b.isTie(d, exp-(nd-1))
}

// Binary builders for hand-made tuples.

func be16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func be32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func be64(v int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

// tuple builds a tuple of fields, nil for NULL.
func tuple(fields ...[]byte) []byte {
	b := be16(len(fields))
	for _, f := range fields {
		if f == nil {
			b = append(b, be32(-1)...)
			continue
		}
		b = append(b, be32(len(f))...)
		b = append(b, f...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// array builds an array's binary form: dims and lower bounds, then
// elements (nil for NULL).
func array(elemOID int, dims, lbs []int, elems ...[]byte) []byte {
	b := cat(be32(len(dims)), be32(0), be32(elemOID))
	for i := range dims {
		b = append(b, be32(dims[i])...)
		b = append(b, be32(lbs[i])...)
	}
	for _, e := range elems {
		if e == nil {
			b = append(b, be32(-1)...)
			continue
		}
		b = append(b, be32(len(e))...)
		b = append(b, e...)
	}
	return b
}

// Hand-made values render as the server's output functions do, including
// forms the server normalises on receipt.
func TestHandMadeValues(t *testing.T) {
	cases := []struct {
		oid  uint32
		data []byte
		want string
	}{
		{BoolOID, []byte{2}, "t"},
		{NumericOID, cat(be16(2), be16(1), be16(0), be16(0), be16(0), be16(12)), "12"}, // leading zero digit
		{NumericOID, cat(be16(0), be16(3), be16(0), be16(2)), "0.00"},                  // zero of weight 3
		{NumericOID, cat(be16(1), be16(-1), be16(numericNeg), be16(2), be16(50)), "0.00"},
		{NumericOID, cat(be16(1), be16(-1), be16(numericNeg), be16(3), be16(50)), "-0.005"},
		{NumericOID, cat(be16(1), be16(0), be16(0), be16(0), be16(9999)), "9999"},
		{NumericOID, cat(be16(1), be16(-2), be16(0), be16(8), be16(1)), "0.00000001"},
		{NumericOID, cat(be16(1), be16(-2), be16(0), be16(6), be16(1)), "0.000000"},
		{NumericOID, cat(be16(2), be16(1), be16(0), be16(1), be16(1), be16(2)), "10002.0"},
		{NumericOID, cat(be16(0), be16(0), be16(numericNaN), be16(0)), "NaN"},
		{TimestamptzOID, be64(minTimestamp), "4714-11-24 00:00:00+00 BC"},
		{TimestampOID, be64(endTimestamp - 1), "294276-12-31 23:59:59.999999"},
		{DateOID, be32(endDate - 1), "5874897-12-31"},
		{DateOID, be32(minDate), "4714-11-24 BC"},
		{TimeOID, be64(usPerDay), "24:00:00"},
		{TextOID, []byte{}, ""},
		{JSONBOID, []byte{1}, ""},
		{1007, array(Int4OID, []int{0}, []int{1}), "{}"},
		{1007, array(Int4OID, []int{2, 0}, []int{5, 5}), "{}"},
		{1009, array(TextOID, []int{3}, []int{1}, []byte(""), nil, []byte("nuLL")), `{"",NULL,"nuLL"}`},
		{1009, array(TextOID, []int{1}, []int{0}, []byte(`a"b\c`)), `[0:0]={"a\"b\\c"}`},
		{1009, array(TextOID, []int{2, 1}, []int{1, 1}, []byte("x"), []byte("y\vz")), "{{x},{\"y\vz\"}}"},
	}
	for _, c := range cases {
		r, _, ok := BinaryToTextFor([]uint32{c.oid})
		if !ok {
			t.Fatalf("type %d not supported", c.oid)
		}
		got, err := r.AppendText([]byte("x"), 0, c.data)
		if err != nil || string(got) != "x"+c.want {
			t.Errorf("type %d, %x: %q, %v; want %q", c.oid, c.data, got, err, c.want)
		}
	}
}

// COPY's escaping, a word at a time or in place, is the byte-by-byte one,
// wherever the escaped bytes fall.
func TestEscapes(t *testing.T) {
	naive := func(s []byte) []byte {
		var out []byte
		for _, c := range s {
			if e := copyEscapes[c]; e != 0 {
				out = append(out, '\\', e)
			} else {
				out = append(out, c)
			}
		}
		return out
	}
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("ab\\\b\f\n\r\t\v\x00\x07\x0e\x1f\x5b\x5d\x7f\xff\x8c\xdc")
	for range 20000 {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			s[i] = 'x'
			if rng.IntN(4) == 0 {
				s[i] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		want := naive(s)
		if got := appendEscaped([]byte("p"), s); string(got) != "p"+string(want) {
			t.Fatalf("appendEscaped(%q) = %q, want %q", s, got[1:], want)
		}
		if got := escapeTail(append([]byte("p"), s...), 1); string(got) != "p"+string(want) {
			t.Fatalf("escapeTail(%q) = %q, want %q", s, got[1:], want)
		}
	}
}

// Malformed rows and values are errors that say where they are and never
// quote the data; nothing panics and dst is left as it was.
func TestErrors(t *testing.T) {
	secret := []byte("SECRET")
	ok := tuple(be32(1), secret)
	cols := []uint32{Int4OID, TextOID}
	r, _, _ := BinaryToTextFor(cols)
	rowErrors := map[string][]byte{
		"truncated count":  cat(ok, []byte{0}),
		"truncated length": cat(ok, be16(2), be32(4), be32(1), []byte{0, 0}),
		"truncated data":   cat(ok, be16(2), be32(4), be32(1), be32(7), secret),
		"wrong count":      cat(ok, tuple(be32(1))),
		"too many":         cat(ok, tuple(be32(1), secret, secret)),
		"negative length":  cat(ok, be16(2), be32(4), be32(1), be32(-2)),
		"trailer":          cat(ok, be16(-1)),
		"int4 size":        cat(ok, tuple([]byte("SECRE"), secret)),
	}
	for name, rows := range rowErrors {
		out, err := r.AppendCopyText([]byte("x"), rows)
		var e *RowError
		if !errors.As(err, &e) || e.Row != 1 || string(out) != "x" || strings.Contains(err.Error(), "SECRE") {
			t.Errorf("%s: AppendCopyText %q, %v (%#v)", name, out, err, e)
		}
		if name == "int4 size" {
			if e.Column != 0 || !errors.Is(err, errSize) || err.Error() != "row 2, column 1: "+errSize.Error() {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		n, err := CountTuples(rows, len(cols))
		if !errors.As(err, &e) || e.Row != 1 || n != 1 {
			t.Errorf("%s: Count %d, %v", name, n, err)
		}
		_, rest, _ := NextTuple(rows, len(cols))
		if tup, rest2, err := NextTuple(rest, len(cols)); err == nil || tup != nil || len(rest2) != len(rest) {
			t.Errorf("%s: NextTuple %x, %v", name, tup, err)
		}
	}
	// EachField checks the tuple itself.
	for _, tup := range [][]byte{nil, {0}, be16(-1), cat(be16(1), be32(5), secret[:4]), cat(be16(1), be32(-3)), cat(ok, []byte{0})} {
		if err := EachField(tup, func(int, []byte) error { return nil }); err == nil {
			t.Errorf("EachField(%x): no error", tup)
		}
	}
	stop := errors.New("stop")
	if err := EachField(ok, func(int, []byte) error { return stop }); err != stop {
		t.Errorf("EachField: %v, want fn's error as it is", err)
	}
	var got [][]byte
	if err := EachField(tuple(nil, []byte{}), func(_ int, data []byte) error { got = append(got, data); return nil }); err != nil || got[0] != nil || got[1] == nil {
		t.Errorf("EachField NULL and empty: %v, %#v", err, got)
	}

	valueErrors := []struct {
		oid  uint32
		data []byte
	}{
		{BoolOID, []byte{}},
		{Int2OID, []byte{1, 2, 3}},
		{Int8OID, secret},
		{Float4OID, secret},
		{Float8OID, secret},
		{UUIDOID, secret},
		{JSONBOID, []byte{}},
		{JSONBOID, cat([]byte{2}, secret)},
		{NumericOID, secret[:4]},
		{NumericOID, cat(be16(1), be16(0), be16(0), be16(0))},                                   // a digit missing
		{NumericOID, cat(be16(1), be16(0), be16(0), be16(0), be16(10000))},                      // digit out of range
		{NumericOID, cat(be16(1), be16(0), be16(0), be16(0), be16(-1))},                         // negative digit
		{NumericOID, cat(be16(0), be16(0), be16(0x1000), be16(0))},                              // bad sign
		{NumericOID, cat(be16(0), be16(0), be16(0), be16(0x4000))},                              // bad scale
		{NumericOID, cat(be16(-1), be16(0), be16(0), be16(0))},                                  // negative count
		{DateOID, be32(endDate)},                                                                // out of range
		{DateOID, be32(minDate - 1)},                                                            //
		{TimeOID, be64(usPerDay + 1)},                                                           //
		{TimeOID, be64(-1)},                                                                     //
		{TimestampOID, be64(endTimestamp)},                                                      //
		{TimestamptzOID, be64(minTimestamp - 1)},                                                //
		{DateOID, secret},                                                                       // sizes
		{TimeOID, secret},                                                                       //
		{TimestampOID, secret},                                                                  //
		{1007, array(Int8OID, []int{1}, []int{1}, be32(1))},                                     // element type
		{1007, array(Int4OID, []int{1}, []int{1}, be64(1))},                                     // element size
		{1007, array(Int4OID, []int{2}, []int{1}, be32(1))},                                     // element missing
		{1007, cat(array(Int4OID, []int{1}, []int{1}, be32(1)), []byte{0})},                     // bytes after
		{1007, cat(array(Int4OID, nil, nil), []byte{0})},                                        // bytes after the empty array
		{1007, array(Int4OID, []int{1, 1, 1, 1, 1, 1, 1}, []int{1, 1, 1, 1, 1, 1, 1}, be32(1))}, // 7 dimensions
		{1007, array(Int4OID, []int{1 << 30, 1 << 30}, []int{1, 1}, be32(1))},                   // absurd size
		{1007, array(Int4OID, []int{-1}, []int{1})},                                             // negative length
		{1007, array(Int4OID, []int{2}, []int{2147483647}, be32(1), be32(2))},
		{1007, array(Int4OID, []int{1}, []int{2147483647}, be32(1))},        // upper bound overflows
		{1007, cat(be32(-1), be32(0), be32(Int4OID))},                       // negative dimensions
		{1007, cat(be32(0), be32(2), be32(Int4OID))},                        // bad flags
		{1007, cat(be32(1), be32(0), be32(Int4OID), be32(1))},               // truncated header
		{1007, cat(be32(1), be32(0))},                                       //
		{1007, cat(array(Int4OID, []int{1}, []int{1}), be32(-2))},           // negative element length
		{1007, cat(array(Int4OID, []int{1}, []int{1}), be32(9), be32(1))},   // element beyond
		{3807, array(JSONBOID, []int{1}, []int{1}, cat([]byte{2}, secret))}, // element's jsonb version
		{1231, array(NumericOID, []int{1}, []int{1}, secret)},               // bad element
	}
	for _, c := range valueErrors {
		r, _, _ := BinaryToTextFor([]uint32{TextOID, c.oid})
		out, err := r.AppendText([]byte("x"), 1, c.data)
		var e *RowError
		if !errors.As(err, &e) || e.Row != -1 || e.Column != 1 || string(out) != "x" || strings.Contains(err.Error(), "SECRE") {
			t.Errorf("type %d, %x: AppendText %q, %v", c.oid, c.data, out, err)
		}
		out, err = r.AppendCopyText([]byte("x"), tuple(secret, c.data))
		if !errors.As(err, &e) || e.Row != 0 || e.Column != 1 || string(out) != "x" || strings.Contains(err.Error(), "SECRE") {
			t.Errorf("type %d, %x: AppendCopyText %q, %v", c.oid, c.data, out, err)
		}
	}
	if out, err := r.AppendText(nil, 2, secret); err == nil || out != nil {
		t.Errorf("AppendText of column 3 of 2: %q, %v", out, err)
	}
}

// mixedRows returns the binary tuples of rows of the mixed table, the
// columns' OIDs, and checks they render as the server's COPY text.
func mixedRows(tb testing.TB, rows int) (tuples []byte, oids []uint32) {
	tb.Helper()
	conn := typestest.Connect(tb, pg.NewDatabase(tb))
	exec(tb, conn, typestest.MixedTable("mixed")+";"+typestest.MixedFill("mixed", rows))
	for _, c := range typestest.Columns(tb, conn, "mixed") {
		oids = append(oids, c.OID)
	}
	const query = "SELECT * FROM mixed ORDER BY id"
	tuples = typestest.CopyOut(tb, conn, query, true)
	r, _, _ := BinaryToTextFor(oids)
	if got, err := r.AppendCopyText(nil, tuples); err != nil || !bytes.Equal(got, typestest.CopyOut(tb, conn, query, false)) {
		tb.Fatalf("mixed rows do not render as COPY text (%v)", err)
	}
	return tuples, oids
}

func BenchmarkAppendCopyText(b *testing.B) {
	const rows = 1000
	tuples, oids := mixedRows(b, rows)
	r, _, _ := BinaryToTextFor(oids)
	var dst []byte
	b.SetBytes(int64(len(tuples)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = r.AppendCopyText(dst[:0], tuples); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

// Rendering a row's values one by one (as events are built) allocates
// nothing once dst has room.
func TestNoAllocations(t *testing.T) {
	tuples, oids := mixedRows(t, 100)
	r, _, _ := BinaryToTextFor(oids)
	dst := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(10, func() {
		var err error
		if dst, err = r.AppendCopyText(dst[:0], tuples); err != nil {
			t.Fatal(err)
		}
		rest := tuples
		for len(rest) > 0 {
			var tup []byte
			tup, rest, _ = NextTuple(rest, len(oids))
			_ = EachField(tup, func(col int, data []byte) error {
				if data != nil {
					dst, err = r.AppendText(dst, col, data)
				}
				return err
			})
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

// Any bytes either render or are an error with dst as it was; nothing
// panics: as tuples of the generated table's columns, and as a value of
// each of its types. Seeded with real tuples and their values.
func FuzzAppendCopyText(f *testing.F) {
	conn := typestest.Connect(f, pg.NewDatabase(f))
	exec(f, conn, generatedTable+";"+strings.Replace(generatedFill, "20000", "3", 1))
	var oids []uint32
	for _, c := range typestest.Columns(f, conn, "src") {
		oids = append(oids, c.OID)
	}
	all := typestest.CopyOut(f, conn, "SELECT * FROM src ORDER BY id", true)
	f.Add(all)
	for rest := all; len(rest) > 0; {
		var tup []byte
		var err error
		if tup, rest, err = NextTuple(rest, len(oids)); err != nil {
			f.Fatal(err)
		}
		f.Add(tup)
		_ = EachField(tup, func(_ int, data []byte) error {
			if data != nil {
				f.Add(data)
			}
			return nil
		})
	}
	nulls := be16(len(oids))
	for range oids {
		nulls = append(nulls, be32(-1)...)
	}
	f.Add(nulls)
	r, _, ok := BinaryToTextFor(oids)
	if !ok {
		f.Fatal("unsupported column")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := r.AppendCopyText([]byte("x"), b)
		if err != nil && string(out) != "x" {
			t.Fatalf("error %v, but dst changed", err)
		}
		n, cerr := CountTuples(b, len(oids))
		if cerr != nil && err == nil {
			t.Fatalf("Count: %v, but AppendCopyText rendered", cerr)
		}
		if err == nil && bytes.Count(out, []byte("\n")) != n {
			t.Fatalf("%d rows rendered, Count %d", bytes.Count(out, []byte("\n")), n)
		}
		for rest := b; len(rest) > 0; {
			var tup []byte
			if tup, rest, err = NextTuple(rest, len(oids)); err != nil {
				break
			}
			_ = EachField(tup, func(col int, data []byte) error {
				if data != nil {
					_, _ = r.AppendText(nil, col, data)
				}
				return nil
			})
		}
		for col := range oids {
			if out, err := r.AppendText([]byte("x"), col, b); err != nil && string(out) != "x" {
				t.Fatalf("column %d: error %v, but dst changed", col+1, err)
			}
		}
	})
}
