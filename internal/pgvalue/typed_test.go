package pgvalue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
)

// literals are SQL expressions of every built-in type, with the edge values
// of each. The test asks PostgreSQL for their text output (`::text`), so the
// text forms are the server's own, not ours.
var literals = map[string][]string{
	"bool":   {"true", "false"},
	"int2":   {"0", "-32768", "32767"},
	"int4":   {"-2147483648", "2147483647", "0"},
	"int8":   {"-9223372036854775808", "9223372036854775807", "9007199254740993"},
	"oid":    {"0", "4294967295"},
	"xid":    {"'0'", "'4294967295'"},
	"xid8":   {"'0'", "'18446744073709551615'"},
	"cid":    {"'0'", "'4294967295'"},
	"float4": {"'NaN'", "'Infinity'", "'-Infinity'", "'3.4028235e38'", "'1.4e-45'", "'-0'", "'0.1'", "'1234567'", "'1e7'"},
	"float8": {"'NaN'", "'Infinity'", "'-Infinity'", "'0.1'", "'1.7976931348623157e308'", "'5e-324'", "'-0'",
		"'1234567890123456789'", "'123456.789'", "'1e15'", "'1e16'", "'1e-5'", "'0.0001'"},
	"numeric": {"'NaN'", "'Infinity'", "'-Infinity'", "0", "-0.5", "'12345678901234567890.000000001'", "1.50",
		"'1e-20'", "'1e30'", "'-0.000'", "'0.1e1'"},
	"money":   {"1000", "-1.5", "0"},
	"text":    {"''", "'a'", "E'line1\\nline2\\ttab\\r'", `'quote" back\ slash'`, "'🎉 ключ'", "'NULL'", "E'\\x01'"},
	"varchar": {"''", "'hello world'"},
	"bpchar":  {"'ab'::char(5)", "'x'"},
	"name":    {"'pg_class'", "'Mixed Case'"},
	"char":    {`'a'::"char"`, `''::"char"`},
	"bytea":   {`'\x'`, `'\x00ff10'`, "'abc'", `'\\'`},
	"date": {"'2026-11-26'", "'infinity'", "'-infinity'", "'0044-03-15 BC'", "'4713-01-01 BC'", "'5874897-12-31'",
		"'0001-01-01'", "'0001-01-01 BC'", "'2000-02-29'"},
	"time":   {"'00:00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:00:00.5'"},
	"timetz": {"'12:00:00+02'", "'12:00:00.123-03:30'", "'00:00:00+00'", "'23:59:59.999999-15:59:59'", "'24:00:00+15:59'"},
	"timestamp": {"'2026-11-26 12:00:00'", "'2026-11-26 12:00:00.123456'", "'infinity'", "'-infinity'",
		"'4713-01-01 00:00:00 BC'", "'294276-12-31 23:59:59.999999'", "'0044-03-15 12:00:00.5 BC'", "'10000-01-01 00:00:00'"},
	"timestamptz": {"'2026-11-26 12:00:00.123456+00'", "'infinity'", "'-infinity'", "'2026-06-01 12:00:00+05:30'",
		"'0044-03-15 12:00:00+00 BC'", "'1900-01-01 00:00:00 Europe/Amsterdam'", "'294276-12-31 23:59:59.999999+00'"},
	"interval": {"'0'", "'1 year 2 mons 3 days 04:05:06.789'", "'-1 year -2 mons +3 days -04:05:06'",
		"'1 day -00:00:01'", "'-0.5 seconds'", "'178000000 years'", "'-178000000 years'", "'2562047788:00:54.775807'",
		"'-2562047788:00:54.775807'", "'-1 days'", "'1 mon'", "'100 hours'", "'1 year'", "'11 mons -30 days 00:00:00.000001'"},
	"json": {`'{"a": 1,   "b":[1,2]}'`, `'"str"'`, "'null'", "'[]'", `'{"a":1,"a":2}'`, `E'{\n  "x": 1\n}'`,
		"'1.0e5'", `'"\u00e9 \u0000"'`, `'{"k": "<&>"}'`},
	"jsonb": {`'{"b": 1, "a": [1, 2.50, {"c": null}]}'`, `'"x\ny"'`, "'1e5'", "'-0'", `'"\u0001 é \\/"'`,
		`'{"aa":1,"b":2,"ab":{}}'`, "'[]'", "'{}'", "'true'", "'1.0E-3'", `'{"k": "<&>"}'`},
	"uuid":           {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"},
	"inet":           {"'192.168.0.1'", "'10.0.0.0/8'", "'::1'", "'2001:db8::1/64'"},
	"cidr":           {"'10.0.0.0/8'", "'2001:db8::/32'"},
	"macaddr":        {"'08:00:2b:01:02:03'"},
	"macaddr8":       {"'08:00:2b:01:02:03:04:05'"},
	"bit":            {"B'0101'::bit(4)", "B'1'"},
	"varbit":         {"B''::varbit", "B'10101'::varbit"},
	"point":          {"'(1,2)'", "'(-1.5,1e+20)'"},
	"line":           {"'{1,2,3}'"},
	"lseg":           {"'[(1,2),(3,4)]'"},
	"box":            {"'(1,1),(0,0)'"},
	"path":           {"'[(1,2),(3,4)]'", "'((0,0),(1,1))'"},
	"polygon":        {"'((0,0),(1,1),(1,0))'"},
	"circle":         {"'<(1,2),3>'"},
	"tsvector":       {"'a fat cat'", `'''quoted word'':1A'`},
	"tsquery":        {"'fat & rat'"},
	"xml":            {"'<a x=\"1\">text &amp; more</a>'"},
	"pg_lsn":         {"'0/16B3748'", "'FFFFFFFF/FFFFFFFF'"},
	"txid_snapshot":  {"'10:20:10,14,15'"},
	"pg_snapshot":    {"'10:20:10,14,15'"},
	"tid":            {"'(0,1)'"},
	"regclass":       {"'pg_class'"},
	"regtype":        {"'int4'"},
	"regproc":        {"'now'"},
	"regprocedure":   {"'now()'"},
	"regoper":        {"'||/'"},
	"regoperator":    {"'+(int4,int4)'"},
	"regnamespace":   {"'public'"},
	"regrole":        {"'pg_monitor'"},
	"regconfig":      {"'english'"},
	"regdictionary":  {"'simple'"},
	"regcollation":   {`'"C"'`},
	"refcursor":      {"'c'"},
	"aclitem":        {"'pg_monitor=r/pg_monitor'"},
	"jsonpath":       {`'$.a[*] ? (@ > 1)'`},
	"int2vector":     {"'1 2'"},
	"oidvector":      {"'1 2'"},
	"int4range":      {"'[1,10)'", "'empty'", "'(,5]'", "'(,)'", "'[-2147483648,0)'"},
	"int8range":      {"'[1,9223372036854775806]'", "'(,)'"},
	"numrange":       {"'[1.5,2.50]'", "'(,0)'", "'empty'", "'[NaN,NaN]'"},
	"tsrange":        {`'["2026-01-01 00:00:00","2026-02-01 00:00:00")'`, "'[-infinity,infinity]'", "'(,\"2026-01-01 12:00:00.5\"]'"},
	"tstzrange":      {`'["2026-01-01 00:00:00+00","2026-02-01 00:00:00+00")'`, "'[-infinity,)'"},
	"daterange":      {"'[2026-01-01,2026-02-01)'", "'[0044-03-15 BC,2026-01-01]'", "'[-infinity,infinity)'"},
	"int4multirange": {"'{}'", "'{[1,3),[5,7)}'", "'{(,0),[5,)}'"},
	"int8multirange": {"'{[1,3)}'"},
	"nummultirange":  {"'{[1.5,2.5],(3,)}'"},
	"tsmultirange":   {`'{["2026-01-01 00:00:00","2026-02-01 00:00:00")}'`},
	"tstzmultirange": {`'{["2026-01-01 00:00:00+00",infinity)}'`},
	"datemultirange": {"'{[2026-01-01,2026-02-01),[2026-03-01,)}'"},
}

// arrayLiterals add what ARRAY[x, NULL] of each literal does not reach.
var arrayLiterals = map[string][]string{
	"int4":           {"'{}'", "'{{1,2},{3,4}}'", "'[0:1]={1,2}'", "'[2:2][3:4]={{5,NULL}}'", "'{{{1}},{{2}}}'"},
	"text":           {`'{"a b","c,d","e\"f","g\\h","NULL","",NULL,"{}",ünï,"  "}'`, "'[-3:-2]={x,y}'"},
	"jsonb":          {`'{"[1, 2]",null,"{}","3"}'`, `'{{"[1, 2]",null},{"{}","3"}}'`},
	"json":           {`'{"{\"a\":  1}",null}'`, `'{{"[]"},{"{}"}}'`},
	"box":            {`'{"(1,1),(0,0)";"(2,2),(1,1)"}'`},
	"int4range":      {`'{"[1,3)",empty,NULL}'`},
	"int4multirange": {`'{"{[1,3)}","{}"}'`, `'{{"{}"},{"{[5,)}"}}'`},
	"timestamptz":    {`'{"2026-01-01 00:00:00+00",infinity}'`},
	"bytea":          {`'{"\\\\x00",NULL}'`},
	"float8":         {"'{NaN,-Infinity,1e+100}'"},
}

// noTextInput lists the built-in types that have no text input, so no value
// of them can be written; a column of them can never be replicated either.
var noTextInput = []string{"gtsvector", "pg_node_tree", "pg_ndistinct", "pg_dependencies", "pg_mcv_list",
	"pg_brin_bloom_summary", "pg_brin_minmax_multi_summary"}

// sample is one value as PostgreSQL printed it.
type sample struct {
	expr string
	col  event.Column
	text string
}

// serverSamples evaluates every literal (and an array of it) on a real
// server in the given time zone.
func serverSamples(t *testing.T) []sample {
	t.Helper()
	dsn := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var out []sample
	query := func(tz, expr string) {
		if _, err := conn.Exec(ctx, "SET TimeZone = "+pgx.Identifier{tz}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		var s sample
		var oid uint32
		// Text result format: the type's output function, as pgoutput sends
		// it (x::text differs for bool and inet).
		err := conn.QueryRow(ctx, "SELECT pg_typeof(x)::oid, (SELECT typname FROM pg_type WHERE oid = pg_typeof(x)), x FROM (SELECT "+expr+" AS x) s",
			pgx.QueryResultFormats{pgx.TextFormatCode}).Scan(&oid, &s.col.Type, &s.text)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		s.expr, s.col.OID, s.col.Name = expr, oid, "c"
		out = append(out, s)
	}
	for typ, exprs := range literals {
		sqlType := pgx.Identifier{typ}.Sanitize()
		for _, e := range exprs {
			value := fmt.Sprintf("(%s)::%s", e, sqlType)
			for _, tz := range []string{"UTC", "Asia/Kolkata", "America/St_Johns"} {
				if tz != "UTC" && typ != "timestamptz" && typ != "tstzrange" && typ != "tstzmultirange" {
					continue
				}
				query(tz, value)
				query(tz, fmt.Sprintf("ARRAY[%s, NULL]", value))
			}
		}
	}
	for typ, exprs := range arrayLiterals {
		for _, e := range exprs {
			query("UTC", fmt.Sprintf("(%s)::%s[]", e, pgx.Identifier{typ}.Sanitize()))
		}
	}
	return out
}

// jsonNullDocument reports a json/jsonb value that is the JSON document
// null: after a trip through JSON it reads as SQL NULL (docs/decode.md).
func jsonNullDocument(s sample) bool {
	switch s.col.Type {
	case "json", "jsonb", "_json", "_jsonb":
		return strings.Contains(s.expr, "('null')")
	}
	return false
}

// TestEncodeDecodeIdentity is the codec's contract: for every built-in type,
// Encode(Decode(text)) is the text PostgreSQL printed, and so is Encode of
// the typed value after a trip through JSON (what pg_flo_postgres gets).
func TestEncodeDecodeIdentity(t *testing.T) {
	samples := serverSamples(t)
	covered := map[string]bool{}
	for _, s := range samples {
		covered[s.col.Type] = true
		name := s.col.Type + " " + s.expr
		typed, err := Decode(s.text, s.col)
		if err != nil {
			t.Errorf("%s: Decode(%q): %v", name, s.text, err)
			continue
		}
		back, err := Encode(typed, s.col)
		if err != nil || back != s.text {
			t.Errorf("%s: Encode(Decode(%q)) = %q, %v", name, s.text, back, err)
			continue
		}
		if jsonNullDocument(s) {
			continue
		}
		wire := AppendJSON(nil, typed)
		if !json.Valid(wire) {
			t.Errorf("%s: typed JSON %s is not valid", name, wire)
			continue
		}
		if strings.ContainsAny(string(wire), "\n") {
			t.Errorf("%s: typed JSON %q holds a line break", name, wire)
		}
		parsed, err := parseJSONValue(wire)
		if err != nil {
			t.Fatal(err)
		}
		viaJSON, err := Encode(parsed, s.col)
		lineBreakJSON := (s.col.Type == "json" || s.col.Type == "_json") && strings.ContainsAny(s.text, "\n\r")
		switch {
		case err != nil:
			t.Errorf("%s: Encode(%s) after JSON: %v", name, wire, err)
		case viaJSON != s.text && !lineBreakJSON && !nonCanonicalJSON(s):
			t.Errorf("%s: Encode(%s) after JSON = %q, want %q", name, wire, viaJSON, s.text)
		}
		raw, err := Encode(json.RawMessage(wire), s.col)
		if err != nil || (raw != s.text && !lineBreakJSON) {
			t.Errorf("%s: Encode(json.RawMessage(%s)) = %q, %v; want %q", name, wire, raw, err, s.text)
		}
		if fast, err := EncodeJSON(wire, s.col); err != nil || fast != raw {
			t.Errorf("%s: EncodeJSON(%s) = %q, %v; want %q as Encode gives", name, wire, fast, err, raw)
		}
	}
	var missing []string
	for _, typ := range builtinTypeNames(t) {
		if !covered[typ] && !slices.Contains(noTextInput, strings.TrimPrefix(typ, "_")) {
			missing = append(missing, typ)
		}
	}
	if len(missing) > 0 {
		t.Errorf("built-in types without a sample: %s", strings.Join(missing, ", "))
	}
}

// nonCanonicalJSON reports samples of type json whose text is not jsonb's
// canonical form: once parsed into maps and lists (not kept as raw JSON),
// their whitespace, key order and duplicate keys are gone.
func nonCanonicalJSON(s sample) bool {
	if s.col.Type != "json" && s.col.Type != "_json" {
		return false
	}
	return true
}

// builtinTypeNames lists every built-in base, range and multirange type of
// the server and its array type.
func builtinTypeNames(t *testing.T) []string {
	t.Helper()
	dsn := pg.NewDatabase(t)
	var names []string
	rows := testenvQuery(t, dsn, `SELECT typname FROM pg_type t
		WHERE oid < 16384 AND typtype IN ('b','r','m') AND typnamespace = 'pg_catalog'::regnamespace
		AND (typelem = 0 OR typlen > 0 OR typname IN ('int2vector','oidvector'))
		UNION SELECT a.typname FROM pg_type t JOIN pg_type a ON a.oid = t.typarray
		WHERE t.oid < 16384 AND t.typtype IN ('b','r','m') AND t.typnamespace = 'pg_catalog'::regnamespace
		AND (t.typelem = 0 OR t.typlen > 0 OR t.typname IN ('int2vector','oidvector'))`)
	for _, r := range rows {
		names = append(names, r[0])
	}
	slices.Sort(names)
	return names
}

func TestDecodeTypedForms(t *testing.T) {
	cases := []struct {
		typ  string
		oid  uint32
		text string
		want string // the typed value as JSON
	}{
		{"int8", 20, "9007199254740993", `9007199254740993`},
		{"numeric", 1700, "1.50", `1.50`},
		{"numeric", 1700, "NaN", `"NaN"`},
		{"float8", 701, "-Infinity", `"-Infinity"`},
		{"float8", 701, "1e+100", `1e+100`},
		{"bool", 16, "t", `true`},
		{"bytea", 17, `\x00ff`, `"AP8="`},
		{"timestamptz", 1184, "2026-11-26 12:00:00.123456+00", `"2026-11-26T12:00:00.123456Z"`},
		{"timestamptz", 1184, "2026-11-26 12:00:00+05:30", `"2026-11-26T12:00:00+05:30"`},
		{"timestamptz", 1184, "0044-03-15 12:00:00+00 BC", `"-0043-03-15T12:00:00Z"`},
		{"timestamp", 1114, "infinity", `"infinity"`},
		{"date", 1082, "0001-01-01 BC", `"0000-01-01"`},
		{"timetz", 1266, "12:00:00+02", `"12:00:00+02:00"`},
		{"interval", 1186, "1 year 2 mons -3 days +04:05:06.5", `"P1Y2M-3DT4H5M6.5S"`},
		{"interval", 1186, "-00:00:00.5", `"PT-0.5S"`},
		{"interval", 1186, "00:00:00", `"PT0S"`},
		{"jsonb", 3802, `{"a": [1, 2.50]}`, `{"a": [1, 2.50]}`},
		{"json", 114, "{\n\"a\": 1}", `{"a":1}`},
		{"_int4", 1007, "{1,NULL,3}", `[1,null,3]`},
		{"_text", 1009, `{"a b",NULL,"NULL"}`, `["a b",null,"NULL"]`},
		{"_int4", 1007, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{"_int4", 1007, "[0:1]={1,2}", `{"lengths":[2],"lower_bounds":[0],"values":[1,2]}`},
		{"_jsonb", 3807, `{"[1, 2]","{}"}`, `[[1, 2],{}]`},
		{"int4range", 3904, "[1,10)", `{"lower":1,"lower_inc":true,"upper":10,"upper_inc":false}`},
		{"int4range", 3904, "(,5)", `{"lower":null,"lower_inc":false,"upper":5,"upper_inc":false}`},
		{"int4range", 3904, "empty", `{"empty":true}`},
		{"int4multirange", 4451, "{[1,3),[5,7)}", `[{"lower":1,"lower_inc":true,"upper":3,"upper_inc":false},{"lower":5,"lower_inc":true,"upper":7,"upper_inc":false}]`},
		{"mood", 16390, "happy", `"happy"`},
		{"_mood", 16389, "{happy,sad}", `["happy","sad"]`},
		{"_weird", 16400, "{ a }", `"{ a }"`},
		{"uuid", 2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
	}
	for _, tc := range cases {
		col := event.Column{Name: "c", Type: tc.typ, OID: tc.oid}
		typed, err := Decode(tc.text, col)
		if err != nil {
			t.Errorf("Decode(%q, %s): %v", tc.text, tc.typ, err)
			continue
		}
		if got := string(AppendJSON(nil, typed)); got != tc.want {
			t.Errorf("Decode(%q, %s) = %s, want %s", tc.text, tc.typ, got, tc.want)
		}
		if back, err := Encode(typed, col); err != nil || back != tc.text {
			t.Errorf("Encode(Decode(%q, %s)) = %q, %v", tc.text, tc.typ, back, err)
		}
	}
}

func TestDecodeRejectsMalformedText(t *testing.T) {
	cases := []struct{ typ, text string }{
		{"int4", "1.5"}, {"int8", ""}, {"bool", "true"}, {"numeric", "1e"}, {"float8", ".5"},
		{"date", "26/11/2026"}, {"timestamptz", "2026-11-26 12:00:00"}, {"interval", "1 fortnight"},
		{"json", "{bad"}, {"_int4", "{1,2"}, {"_int4", "{{1},{2,3}}"}, {"_int4", "{1,x}"},
		{"int4range", "[1,2"}, {"bytea", `\xZZ`}, {"int4multirange", "{[1,2)"},
	}
	for _, tc := range cases {
		col := event.Column{Name: "c", Type: tc.typ}
		if v, err := Decode(tc.text, col); err == nil {
			t.Errorf("Decode(%q, %s) = %#v, want an error", tc.text, tc.typ, v)
		} else if !strings.Contains(err.Error(), tc.typ) {
			t.Errorf("Decode(%q, %s) error %q does not name the type", tc.text, tc.typ, err)
		}
	}
}

func TestEncodeAcceptsOtherParsers(t *testing.T) {
	cases := []struct {
		typ  string
		v    any
		want string
	}{
		{"int8", float64(42), "42"},
		{"int8", int64(-7), "-7"},
		{"int4", "12", "12"},
		{"float8", 0.1, "0.1"},
		{"numeric", 2.5, "2.5"},
		{"bool", "true", "t"},
		{"bytea", `\x0A0b`, `\x0a0b`},
		{"bytea", []byte{1, 2}, `\x0102`},
		{"timestamptz", "2026-11-26 12:00:00+00", "2026-11-26 12:00:00+00"},
		{"timestamptz", "2026-11-26T14:00:00+02:00", "2026-11-26 14:00:00+02"},
		{"interval", "1 day", "1 day"},
		{"jsonb", map[string]any{"b": json.Number("1"), "aa": []any{true, nil}}, `{"b": 1, "aa": [true, null]}`},
		{"jsonb", json.Number("1e3"), "1000"},
		{"_int4", []any{float64(1), nil}, "{1,NULL}"},
		{"_text", "{a,b}", "{a,b}"},
		{"text", json.Number("5"), "5"},
	}
	for _, tc := range cases {
		got, err := Encode(tc.v, event.Column{Name: "c", Type: tc.typ})
		if err != nil || got != tc.want {
			t.Errorf("Encode(%#v, %s) = %q, %v; want %q", tc.v, tc.typ, got, err, tc.want)
		}
	}
	if _, err := Encode(nil, event.Column{Type: "int4"}); err != ErrNull {
		t.Errorf("Encode(nil) error = %v, want ErrNull", err)
	}
	for _, bad := range []struct {
		typ string
		v   any
	}{{"int4", 1.5}, {"int4", "x"}, {"bool", 3.0}, {"_int4", []any{[]any{1.0}, 2.0}}, {"timestamptz", 5.0}} {
		if got, err := Encode(bad.v, event.Column{Type: bad.typ}); err == nil {
			t.Errorf("Encode(%#v, %s) = %q, want an error", bad.v, bad.typ, got)
		}
	}
}

// TestAppendTypedMatchesDecode checks the fast path against Decode+AppendJSON.
func TestAppendTypedMatchesDecode(t *testing.T) {
	for _, s := range serverSamples(t) {
		typed, err := Decode(s.text, s.col)
		if err != nil {
			t.Fatal(err)
		}
		want := AppendJSON(nil, typed)
		got, err := AppendTyped(nil, s.text, s.col)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s %s: AppendTyped = %s, %v; want %s", s.col.Type, s.expr, got, err, want)
		}
	}
}
