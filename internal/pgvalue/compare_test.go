package pgvalue

import (
	"errors"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

func TestCompare(t *testing.T) {
	cases := []struct {
		typ  string
		a, b string
		want int
	}{
		{"int8", "9007199254740993", "9007199254740992", 1},
		{"int4", "-5", "3", -1},
		{"numeric", "12345678901234567890.000000001", "12345678901234567890", 1},
		{"numeric", "1.50", "1.5", 0},
		{"numeric", "NaN", "Infinity", 1},
		{"numeric", "NaN", "NaN", 0},
		{"numeric", "-Infinity", "-1e300", -1},
		{"numeric", "100.5", "1e2", 1},
		{"float8", "NaN", "Infinity", 1},
		{"float8", "-0", "0", 0},
		{"bool", "f", "true", -1},
		{"timestamptz", "2026-01-01 01:00:00+02", "2026-01-01T00:00:00Z", -1},
		{"timestamptz", "2026-01-01 00:00:00+00", "2026-01-01T00:00:00", 0}, // no offset: UTC
		{"timestamptz", "infinity", "294276-12-31T23:59:59Z", 1},
		{"timestamp", "0044-03-15 12:00:00 BC", "0001-01-01T00:00:00", -1},
		{"date", "2000-03-01", "2000-02-29", 1},
		{"date", "-infinity", "4713-01-01 BC", -1},
		{"time", "24:00:00", "23:59:59.999999", 1},
		{"timetz", "12:00:00+02", "10:00:00Z", 0},
		{"interval", "1 mon", "30 days", 0},
		{"interval", "P1Y", "360 days 00:00:01", -1},
		{"uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc999c0b4ef8bb6d6bb9bd380a11}", 0},
		{"text", "B", "a", -1},
		{"mood", "happy", "sad", -1},
	}
	for _, tc := range cases {
		col := event.Column{Name: "c", Type: tc.typ}
		got, err := Compare(tc.a, tc.b, col)
		if err != nil || got != tc.want {
			t.Errorf("Compare(%q, %q, %s) = %d, %v; want %d", tc.a, tc.b, tc.typ, got, err, tc.want)
		}
	}
	for _, typ := range []string{"jsonb", "_int4", "int4range", "box"} {
		if _, err := Compare("x", "x", event.Column{Type: typ}); !errors.Is(err, ErrNotOrdered) {
			t.Errorf("Compare on %s: error %v, want ErrNotOrdered", typ, err)
		}
	}
	if eq, err := Equal("{1,2}", "{1,2}", event.Column{Type: "_int4"}); err != nil || !eq {
		t.Errorf("Equal on arrays = %v, %v", eq, err)
	}
	if _, err := Compare("5", "abc", event.Column{Type: "int4"}); err == nil {
		t.Error("Compare with a non-number accepted")
	}
}
