// Package pgdsn handles PostgreSQL connection strings safely: parsing them
// with pgx's rules and printing them without their password, so no error or
// log line of pgflo ever carries a secret.
package pgdsn

import (
	"net/url"
	"regexp"
	"strings"
)

const mask = "xxxxx"

// keywordPassword matches password=… in keyword/value connection strings,
// quoted or not.
var keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact returns dsn with its password replaced, for URL
// (postgres://user:secret@host/db?password=…) and keyword/value forms alike.
func Redact(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// An unparsable URL may still hold a password: drop everything
			// between the scheme and the last '@'.
			scheme, rest, _ := strings.Cut(dsn, "://")
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				return scheme + "://" + mask + "@" + rest[at+1:]
			}
			return scheme + "://" + rest
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), mask)
			}
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", mask)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return keywordPassword.ReplaceAllString(dsn, "${1}"+mask)
}

// RedactIn removes every occurrence of the DSN's password from text (an error
// message from a driver, for instance), in case the text quotes it.
func RedactIn(text, password string) string {
	if password == "" {
		return text
	}
	return strings.ReplaceAll(text, password, mask)
}
