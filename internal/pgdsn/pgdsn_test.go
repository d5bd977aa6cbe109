package pgdsn

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"postgresql://u:secret@h/db?sslmode=disable&password=other", "postgresql://u:xxxxx@h/db?password=xxxxx&sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"host=h user=u password=secret dbname=db", "host=h user=u password=xxxxx dbname=db"},
		{"host=h password='se cret' dbname=db", "host=h password=xxxxx dbname=db"},
		{"postgres://u:se%zz@h/db", "postgres://xxxxx@h/db"},
	}
	for _, c := range cases {
		got := Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "cret") {
			t.Errorf("Redact(%q) leaks the password: %q", c.in, got)
		}
	}
}

// A connection string pgx rejects gives pgx's reason, on one line, and no
// part of the password, even where pgx's own text shows some of it.
func TestParseError(t *testing.T) {
	cases := []struct{ dsn, want string }{
		{"host=h password='sec ret", "unterminated quoted string"},
		{"host=h port=abc password=secret", "invalid port"},
		{"postgres://u:secret@h:badport/db", "invalid port"},
		{"postgres://u:sec%zzret@h/db", "invalid percent-encoded token in password"},
		{"postgres://u:secret@h/db?sslmode=bogus", "sslmode is invalid"},
		{"host=h sslmode=verify-full sslrootcert=/nonexistent password=secret", "unable to read CA file"},
		{"host=h sslcert=/tmp/x password=secret", `both "sslcert" and "sslkey" are required`},
	}
	for _, c := range cases {
		_, err := pgconn.ParseConfig(c.dsn)
		if err == nil {
			t.Fatalf("%q parsed", c.dsn)
		}
		got := Redact(c.dsn) + ": " + ParseError(err)
		if !strings.Contains(got, c.want) || strings.Contains(got, "ret") || strings.Contains(got, "\n") {
			t.Errorf("%q: %q, want %q on one line without the password", c.dsn, got, c.want)
		}
	}
}
