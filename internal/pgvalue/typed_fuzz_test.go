package pgvalue

import (
	"reflect"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

// FuzzParseArray checks the array literal parser on any input: no panic,
// and what it accepts formats to a literal that parses to the same array
// and formats to itself (array_out's form is a fixed point).
func FuzzParseArray(f *testing.F) {
	for _, seed := range []string{"{}", "{1,2,NULL}", `{"a b","c,d","e\"f","g\\h","NULL",""}`, "{{1,2},{3,4}}",
		"[0:1]={1,2}", "[2:2][3:4]={{5,NULL}}", `{"(1,1),(0,0)";"(2,2),(1,1)"}`, "{{{1}},{{2}}}", `{"\\\\x00",NULL}`} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, s string, semicolon bool) {
		delim := byte(',')
		if semicolon {
			delim = ';'
		}
		a, err := parseArray(s, delim)
		if err != nil {
			return
		}
		formatted := a.format(nil, delim)
		again, err := parseArray(string(formatted), delim)
		if err != nil {
			t.Fatalf("parse(%q) ok, but its format %q does not parse: %v", s, formatted, err)
		}
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("parse(%q) = %+v, parse(format) = %+v", s, a, again)
		}
		if twice := again.format(nil, delim); string(twice) != string(formatted) {
			t.Fatalf("format is not a fixed point: %q then %q", formatted, twice)
		}
		col := event.Column{Name: "c", Type: "_text", OID: 1009}
		if delim == ',' {
			typed, err := Decode(string(formatted), col)
			if err != nil {
				t.Fatalf("Decode(%q): %v", formatted, err)
			}
			if back, err := Encode(typed, col); err != nil || back != string(formatted) {
				t.Fatalf("Encode(Decode(%q)) = %q, %v", formatted, back, err)
			}
		}
	})
}

// FuzzParseRange does the same for range and multirange literals.
func FuzzParseRange(f *testing.F) {
	for _, seed := range []string{"empty", "[1,10)", "(,5]", "(,)", `["2026-01-01 00:00:00","2026-02-01 00:00:00")`,
		`["a""b","c\\d"]`, `("",)`, "{}", "{[1,3),[5,7)}", `{["a,b",c)}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := parseRange(s); err == nil {
			formatted := r.format(nil)
			again, err := parseRange(string(formatted))
			if err != nil {
				t.Fatalf("parse(%q) ok, but its format %q does not parse: %v", s, formatted, err)
			}
			if !reflect.DeepEqual(r, again) {
				t.Fatalf("parse(%q) = %+v, parse(format) = %+v", s, r, again)
			}
			if twice := again.format(nil); string(twice) != string(formatted) {
				t.Fatalf("format is not a fixed point: %q then %q", formatted, twice)
			}
		}
		if parts, err := splitMultirange(s); err == nil {
			for _, part := range parts {
				if _, err := parseRange(part); err != nil {
					t.Fatalf("splitMultirange(%q) gave %q, which does not parse: %v", s, part, err)
				}
			}
		}
		// Decode of any text must not panic, whatever the element type.
		for _, typ := range []string{"int4range", "tsrange", "numrange", "int4multirange"} {
			_, _ = Decode(s, event.Column{Name: "c", Type: typ})
		}
	})
}
