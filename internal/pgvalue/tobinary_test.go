package pgvalue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/testenv"
)

// copyIn loads a binary stream into a table.
func copyIn(t *testing.T, conn *pgx.Conn, table string, tuples []byte) {
	t.Helper()
	stream := slices.Concat(CopyBinaryHeader, tuples, CopyBinaryTrailer)
	if _, err := conn.PgConn().CopyFrom(context.Background(), bytes.NewReader(stream), "COPY "+table+" FROM STDIN WITH (FORMAT binary)"); err != nil {
		t.Fatalf("binary COPY into %s: %v", table, err)
	}
}

// Every column of the all-types table whose type is converted round-trips
// through the conversion exactly, row by row; the values it declines are
// exactly those beyond its range, and every other type is declined.
func TestAllTypesRoundTrip(t *testing.T) {
	dsn := pg.NewDatabase(t)
	conn := typestest.Connect(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, typestest.Types+";"+typestest.Table("src")+";"+typestest.Rows("src")); err != nil {
		t.Fatal(err)
	}
	wantDeclined := map[string]bool{"c_timestamp/4": true} // year 294276: beyond maxYear
	declined := map[string]bool{}
	converted := 0
	for _, c := range typestest.Columns(t, conn, "src")[1:] {
		conv, _, ok := TextToBinaryFor([]uint32{Int8OID, c.OID})
		if !ok {
			continue
		}
		converted++
		col := pgx.Identifier{c.Name}.Sanitize()
		dst := pgx.Identifier{"dst_" + c.Name}.Sanitize()
		if _, err := conn.Exec(ctx, "CREATE TABLE "+dst+" AS SELECT id, "+col+" FROM src WITH NO DATA"); err != nil {
			t.Fatal(err)
		}
		var tuples []byte
		var ids []string
		for _, line := range bytes.SplitAfter(typestest.CopyOut(t, conn, "SELECT id, "+col+" FROM src ORDER BY id", false), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			id := string(line[:bytes.IndexByte(line, '\t')])
			out, err := conv.Append(tuples, line)
			var ce *RowError
			if err != nil {
				if !errors.As(err, &ce) || !errors.Is(err, errNotConvertible) || ce.Column != 1 || !bytes.Equal(out, tuples) {
					t.Fatalf("%s row %s: error %v (%#v), output changed %v", c.Name, id, err, ce, !bytes.Equal(out, tuples))
				}
				declined[c.Name+"/"+id] = true
				continue
			}
			tuples = out
			ids = append(ids, id)
		}
		copyIn(t, conn, dst, tuples)
		in := "id IN (" + strings.Join(ids, ",") + ")"
		want := testenv.QueryRows(t, dsn, "SELECT id, "+col+"::text FROM src WHERE "+in+" ORDER BY id")
		got := testenv.QueryRows(t, dsn, "SELECT id, "+col+"::text FROM "+dst+" ORDER BY id")
		if !slices.EqualFunc(want, got, slices.Equal) {
			t.Errorf("%s: source %q, converted %q", c.Name, want, got)
		}
	}
	if converted < 25 {
		t.Errorf("only %d columns of the all-types table have a conversion", converted)
	}
	for k := range declined {
		if !wantDeclined[k] {
			t.Errorf("declined %s", k)
		}
	}
	for k := range wantDeclined {
		if !declined[k] {
			t.Errorf("converted %s, beyond the conversion's range", k)
		}
	}
}

// Many generated values of every converted type, spread over their ranges
// (numerics of every scale, floats of every magnitude, timestamps from 4712
// BC to 294275 AD), round-trip exactly as a table.
func TestGeneratedValuesRoundTrip(t *testing.T) {
	dsn := pg.NewDatabase(t)
	conn := typestest.Connect(t, dsn)
	ctx := context.Background()
	// The table and values totext_test.go renders from binary.
	if _, err := conn.Exec(ctx, generatedTable+";"+generatedFill+";CREATE TABLE dst (LIKE src)"); err != nil {
		t.Fatal(err)
	}
	var oids []uint32
	for _, c := range typestest.Columns(t, conn, "src") {
		oids = append(oids, c.OID)
	}
	conv, bad, ok := TextToBinaryFor(oids)
	if !ok {
		t.Fatalf("column %d has no conversion", bad)
	}
	tuples, err := conv.Append(nil, typestest.CopyOut(t, conn, "SELECT * FROM src", false))
	if err != nil {
		t.Fatal(err)
	}
	copyIn(t, conn, "dst", tuples)
	digest := "SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) FROM %s t"
	want := testenv.QueryRows(t, dsn, fmt.Sprintf(digest, "src"))
	got := testenv.QueryRows(t, dsn, fmt.Sprintf(digest, "dst"))
	if want[0][0] != got[0][0] {
		diff := testenv.QueryRows(t, dsn, "SELECT s::text, d::text FROM src s JOIN dst d USING (id) WHERE s::text <> d::text LIMIT 3")
		t.Fatalf("tables differ: %q", diff)
	}
}

// What the conversion reads is only what output functions write: any other
// form is declined, never read differently from the server's text input.
func TestDeclinesOtherForms(t *testing.T) {
	cases := map[uint32][]string{
		BoolOID:        {"true", "1", "T", ""},
		Int2OID:        {"32768", "-32769", "+1", " 1", "1.0", ""},
		Int4OID:        {"2147483648", "1e3", "0x10"},
		Int8OID:        {"9223372036854775808", "-9223372036854775809", "99999999999999999999"},
		Float4OID:      {"1e39", "1e-50", "inf", "nan", "0x1p-2", "1_0", " 1", "1.", ".5", "1e"},
		Float8OID:      {"1e309", "1e-400", "Inf", "infinity", "1,5"},
		NumericOID:     {"1e5", "1.", ".5", "nan", "inf", " 1", "1 ", "+1", "--1", ""},
		UUIDOID:        {"{5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10}", "5f0c3e7e8a3f4c539d7e0c5a1f5f2b10", "5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b1g"},
		ByteaOID:       {"abc", `\x0`, `\xzz`, `\000`},
		DateOID:        {"2024-02-30", "2023-02-29", "2024-13-01", "24-01-01", "2024-01-01 00:00:00", "0000-01-01", "4714-01-01 BC", "294276-01-01", "Infinity", "epoch", "01/02/2024"},
		TimeOID:        {"24:00:01", "23:60:00", "23:59:60", "1:00:00", "12:00", "12:00:00.1234567", "12:00:00+00", "12:00:00."},
		TimestampOID:   {"2024-01-01 00:00:00+00", "2024-01-01T00:00:00", "2024-01-01", "2024-01-01 24:00:00", "2024-01-01 00:00:00 bc"},
		TimestamptzOID: {"2024-01-01 00:00:00", "2024-01-01 00:00:00+16", "2024-01-01 00:00:00+00:60", "2024-01-01 00:00:00+00:00:00:00", "2024-01-01 00:00:00 UTC", "2024-01-01 00:00:00Z"},
		1007:           {"{1, 2}", "{1,2", "{{1},{1,2}}", "{{}}", "[1:2]={1}", "[2:1]={}", "[1:1]={{1}}", "{1,,2}", "{}x", "1", "{\"1}", "{1}{2}", "{{{{{{{1}}}}}}}", "[0:0]={}", "[+0:1]={1,2}", "[9223372036854775807:9223372036854775807]={1}", "[2147483647:2147483648]={1,2}"},
		1009:           {"{a b}", "{ a}", `{a\"}`, `{"a}`, "{a,}"},
	}
	for oid, texts := range cases {
		conv, _, _ := TextToBinaryFor([]uint32{oid})
		for _, text := range texts {
			if out, err := conv.Append(nil, append(AppendCopyEscaped(nil, text), '\n')); !errors.Is(err, errNotConvertible) {
				t.Errorf("type %d: %q converted to %x, want it declined", oid, text, out)
			}
		}
	}
	if _, bad, ok := TextToBinaryFor([]uint32{Int8OID, 1186, TextOID}); ok || bad != 1 {
		t.Errorf("interval: ok %v, column %d; want column 1 declined", ok, bad)
	}
}

// Rows convert field by field: NULLs, escapes, and a wrong number of fields
// named by row and column.
func TestAppendRows(t *testing.T) {
	conv, _, _ := TextToBinaryFor([]uint32{Int4OID, TextOID})
	got, err := conv.Append([]byte("x"), []byte("1\t\\N\n-2\ta\\tb\\\\\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("x\x00\x02\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff\xff\xff" +
		"\x00\x02\x00\x00\x00\x04\xff\xff\xff\xfe\x00\x00\x00\x04a\tb\\")
	if !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"1\n", "1\ta\tb\n", "1\ta"} {
		out, err := conv.Append([]byte("x"), []byte("2\tok\n"+bad))
		var ce *RowError
		if !errors.As(err, &ce) || ce.Row != 1 || string(out) != "x" {
			t.Errorf("%q: %v, %q", bad, err, out)
		}
	}
}

func BenchmarkAppendMixedRow(b *testing.B) {
	// The benchmarks' mixed table: int8, int4, text, numeric, timestamptz,
	// bool, jsonb, uuid, bytea, text[].
	conv, _, _ := TextToBinaryFor([]uint32{Int8OID, Int4OID, TextOID, NumericOID, TimestamptzOID, BoolOID, JSONBOID, UUIDOID, ByteaOID, 1009})
	line := []byte("12345\t-773456\trow 12345 827ccb0eea8a706c4c34a16891f84e7b\t-5604.6534\t2024-01-06 05:26:07.5+00\tf\t" +
		`{"id": 12345, "ok": false, "name": "item 12345", "tags": ["a", 0]}` + "\t3f2a2c7e-5c1a-1bb0-83fd-e9c6d6e6d3a1\t\\\\x827ccb0eea8a706c4c34a16891f84e7b\t{t5,\"q\\\\\"12345\",\"x,y\"}\n")
	lines := bytes.Repeat(line, 100)
	var dst []byte
	b.SetBytes(int64(len(lines)))
	for b.Loop() {
		var err error
		if dst, err = conv.Append(dst[:0], lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/row")
}

// Any text either converts into well-formed tuples (each field's length
// within the output) or is declined with dst untouched; nothing panics.
func FuzzAppendRows(f *testing.F) {
	oids := []uint32{Int8OID, NumericOID, TimestamptzOID, DateOID, TimeOID, Float8OID, UUIDOID, ByteaOID, 1009, 1007, 1231, 1185}
	f.Add([]byte("1\t-12.5\t2024-01-01 00:00:00+00\t2024-01-01\t24:00:00\t1e-5\t5f0c3e7e-8a3f-4c53-9d7e-0c5a1f5f2b10\t\\\\x00ff\t{a,\"b\\\\\"c\",NULL}\t[0:1][1:2]={{1,2},{3,NULL}}\t{1.5,NaN}\t{infinity}\n"))
	f.Add([]byte("\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"))
	f.Add([]byte("0\t0.0001\t0001-01-01 00:00:00+15:59:59 BC\t4713-01-01 BC\t00:00:00.000001\tNaN\t00000000-0000-0000-0000-000000000000\t\\\\x\t{}\t{{{1}}}\t{}\t{}\n"))
	conv, _, ok := TextToBinaryFor(oids)
	if !ok {
		f.Fatal("no conversion")
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		out, err := conv.Append([]byte("x"), text)
		if err != nil {
			if string(out) != "x" {
				t.Fatalf("declined, but dst changed: %q", out)
			}
			return
		}
		b := out[1:]
		for len(b) > 0 {
			if len(b) < 2 || int(b[0])<<8|int(b[1]) != len(oids) {
				t.Fatalf("bad field count in %x", b)
			}
			b = b[2:]
			for range oids {
				if len(b) < 4 {
					t.Fatalf("short field in %x", b)
				}
				n := int32(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
				b = b[4:]
				if n == -1 {
					continue
				}
				if n < 0 || int(n) > len(b) {
					t.Fatalf("field length %d beyond %d bytes", n, len(b))
				}
				b = b[n:]
			}
		}
	})
}
