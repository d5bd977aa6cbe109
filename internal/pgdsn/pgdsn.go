// Package pgdsn handles PostgreSQL connection strings safely: parsing them
// with pgx's rules and printing them without their password, so no error or
// log line of pgflo ever carries a secret.
package pgdsn

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

const mask = "xxxxx"

// keywordPassword matches password=… in keyword/value connection strings,
// quoted or not; an unterminated quote runs to the end, as pgx reads it.
var keywordPassword = regexp.MustCompile(`(?is)(password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|\\?$)|\S+)`)

// urlPassword is keywordPassword inside a URL, where & ends a value.
var urlPassword = regexp.MustCompile(`(?is)(password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|\\?$)|[^&\s]+)`)

// oneLine keeps a DSN that holds line breaks on one line of a log.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// Redact returns dsn with its password replaced, for URL
// (postgres://user:secret@host/db?password=…) and keyword/value forms alike,
// on one line.
func Redact(dsn string) string { return oneLine.Replace(redact(dsn)) }

func redact(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// An unparsable URL may still hold a password: drop everything
			// between the scheme and the last '@'.
			// The rest is no URL: mask a password=… in it as well.
			scheme, rest, _ := strings.Cut(dsn, "://")
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				rest = mask + "@" + rest[at+1:]
			}
			return scheme + "://" + keywordPassword.ReplaceAllString(rest, "${1}"+mask)
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), mask)
			}
		}
		if q, err := url.ParseQuery(u.RawQuery); err == nil {
			masked := false
			for key := range q {
				if strings.Contains(strings.ToLower(key), "password") {
					q[key], masked = []string{mask}, true
				}
			}
			if masked {
				u.RawQuery = q.Encode()
			}
		}
		// What the query parser did not take for a password may still
		// read as one (pgx rejects such a URL, and its error quotes it).
		return urlPassword.ReplaceAllString(u.String(), "${1}"+mask)
	}
	return keywordPassword.ReplaceAllString(dsn, "${1}"+mask)
}

// RedactIn removes every occurrence of the DSN's password from text (an error
// message from a driver, for instance), in case the text quotes it, and
// puts the text on one line: pgx lists each failed address of a connection
// attempt on a line of its own.
func RedactIn(text, password string) string {
	if password != "" {
		text = strings.ReplaceAll(text, password, mask)
	}
	return driverLines.Replace(text)
}

// driverLines joins the lines of a driver's error text.
var driverLines = strings.NewReplacer(":\n\t", ": ", "\n\t", "; ", "\r\n", "; ", "\n", "; ", "\r", "; ")

// ParseError is why pgx could not parse a connection string, without the
// string: pgx's error quotes it, masking the password only where it can
// tell it apart (not in `password='unterminated…`). The caller names the
// DSN with Redact.
func ParseError(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "invalid connection string"
	}
	// pgx writes "cannot parse `<dsn>`: <reason>", the reason last.
	text := pe.Error()
	if i := strings.LastIndex(text, "`: "); i >= 0 {
		// Some reasons quote a piece of the DSN: mask it there as well.
		return oneLine.Replace(keywordPassword.ReplaceAllString(text[i+3:], "${1}"+mask))
	}
	return "invalid connection string"
}
