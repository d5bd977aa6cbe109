package tablefile

import (
	"errors"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	var keys []Key
	for _, name := range []string{"users", "sales.users", "orders"} {
		k, err := ParseKey(name)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for _, tc := range []struct {
		schema, table string
		want          int
	}{{"public", "users", 0}, {"sales", "users", 1}, {"sales", "orders", 2}, {"public", "items", -1}} {
		if got := Match(keys, tc.schema, tc.table); got != tc.want {
			t.Errorf("Match(%s.%s) = %d, want %d", tc.schema, tc.table, got, tc.want)
		}
	}
	for _, bad := range []string{"", "sales.", ".users"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestErrorsPointAtLines(t *testing.T) {
	doc, err := Parse([]byte("users:\n  a: 1\n  b: 2\n"), "f.yaml", "routing")
	if err != nil {
		t.Fatal(err)
	}
	entry := doc.Root.Content[1]
	field := FieldErrorf(entry.Content[2], "b", "bad value")
	err = doc.Wrap(field, entry, "table users")
	if got := err.Error(); got != "f.yaml:3: table users: field b: bad value" {
		t.Errorf("Wrap = %q", got)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "b" {
		t.Errorf("the FieldError is not in the chain: %v", err)
	}
	inline, err := Inline(map[string]any{"users": map[string]any{"a": 1}}, "pg_flo_route.routes", "routing")
	if err != nil {
		t.Fatal(err)
	}
	if got := inline.Errorf(inline.Root, "x").Error(); got != "pg_flo_route.routes: x" {
		t.Errorf("inline error = %q, want no line", got)
	}
	if _, err := Parse(nil, "f.yaml", "routing"); err == nil || !strings.Contains(err.Error(), "f.yaml: empty routing") {
		t.Errorf("empty file error = %v", err)
	}
}
