package pgdsn

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzRedact: any string redacts on one line without panicking, and a
// password written after other settings into either form of DSN — however
// pgx then judges the DSN — shows neither in Redact nor in ParseError.
func FuzzRedact(f *testing.F) {
	for _, seed := range [][2]string{
		{"host=h password='se cret' dbname=db", "se cret"},
		{"postgres://u:secret@h:5432/db?sslmode=disable", "pw #1: 'x\\"},
		{"host=h password='unterminated", "p'w"},
		{"postgresql://u:se%zz@h/db", "a\nb"},
		{"port=abc password=x", "\\'"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, dsn, password string) {
		if out := Redact(dsn); strings.ContainsAny(out, "\r\n") {
			t.Fatalf("Redact(%q) = %q: not one line", dsn, out)
		}
		// The password goes after dsn; a dsn with quotes or a password
		// of its own would decide what pgx takes for the password. The
		// password is marked, so that no word of an error passes for it.
		password = "Zq" + password + "9#"
		if strings.Contains(dsn, password) || strings.ContainsAny(dsn, `'\`) || strings.Contains(strings.ToLower(dsn), "password") {
			return
		}
		keyword := dsn + " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + "' dbname=d"
		uri := (&url.URL{Scheme: "postgres", User: url.UserPassword("u", password), Host: "h", Path: "/d"}).String()
		dsns := []string{keyword, uri}
		if !strings.ContainsAny(password, " \t\r\n\v\f'\\") {
			dsns = append(dsns, "host=h password="+password)
		}
		for _, d := range dsns {
			shown := Redact(d)
			if _, err := pgconn.ParseConfig(d); err != nil {
				shown += ": " + ParseError(err)
			}
			if strings.Contains(shown, password) {
				t.Fatalf("%q shows the password %q: %q", d, password, shown)
			}
		}
	})
}
