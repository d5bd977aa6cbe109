package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// sslModes are libpq's (and pgx's) sslmode values.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// pgTLSSettings are TLS to one PostgreSQL server, named as libpq's
// connection keywords behind prefix ("", "target-" or "source-"); pg_flo had
// none. Left empty, pgx's defaults apply: the PGSSLMODE, PGSSLROOTCERT,
// PGSSLCERT and PGSSLKEY environment variables, else sslmode=prefer.
func pgTLSSettings(prefix, server string) []setting {
	return []setting{
		{prefix + "sslmode", kindString, "", server + " TLS mode: disable, allow, prefer, require, verify-ca or verify-full"},
		{prefix + "sslrootcert", kindString, "", "CA certificate file (PEM) verifying the " + server + " server (verify-ca, verify-full)"},
		{prefix + "sslcert", kindString, "", "client certificate file (PEM) presented to the " + server + " server"},
		{prefix + "sslkey", kindString, "", "private key file (PEM) of --" + prefix + "sslcert"},
	}
}

// init adds the TLS settings to pg_flo's lists: the replicator's source,
// the postgres sink's target and schema-sync source. (They are kept here,
// next to their use, rather than in the lists' literals.)
func init() {
	replicatorSettings = append(replicatorSettings, pgTLSSettings("", "source")...)
	sinkSettings["postgres"] = append(sinkSettings["postgres"],
		append(pgTLSSettings("target-", "target"), pgTLSSettings("source-", "schema-sync source")...)...)
}

// withPGTLS appends the TLS settings behind prefix to a keyword/value DSN,
// checking them first so that a typo fails here, naming its flag, rather
// than at the first connection.
func withPGTLS(dsn string, s Settings, prefix string) (string, error) {
	mode := s.String(prefix + "sslmode")
	if mode != "" && !slices.Contains(sslModes, mode) {
		return "", fmt.Errorf("--%ssslmode: %q is not one of %s", prefix, mode, strings.Join(sslModes, ", "))
	}
	cert, key := s.String(prefix+"sslcert"), s.String(prefix+"sslkey")
	if (cert == "") != (key == "") {
		return "", fmt.Errorf("--%ssslcert and --%ssslkey go together", prefix, prefix)
	}
	for _, keyword := range []string{"sslmode", "sslrootcert", "sslcert", "sslkey"} {
		if v := s.String(prefix + keyword); v != "" {
			dsn += " " + keyword + "=" + quoteDSNValue(v)
		}
	}
	return dsn, nil
}

// literalDSN is a DSN as a YAML literal block scalar, whose text YAML takes
// as it is: the password Benthos pastes into its ${…} reference before
// parsing may hold " #" or ": ", which would cut or break a plain scalar.
func literalDSN(dsn string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.LiteralStyle, Value: dsn}
}

// checkPasswords rejects secrets no config text can carry: Benthos pastes
// them into the YAML, where a line break (also U+2028, U+2029) would end
// the DSN's literal block or the NATS field's quotes, and YAML refuses other
// control characters (a tab aside) and invalid UTF-8.
func checkPasswords(s Settings, names ...string) error {
	for _, name := range names {
		v := s.String(name)
		bad := !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool {
			return r == '\u2028' || r == '\u2029' || unicode.IsControl(r) && r != '\t'
		}) >= 0
		if bad {
			return fmt.Errorf("--%s holds a line break, a control character or invalid UTF-8, which pgflo cannot pass through its config", name)
		}
	}
	return nil
}
