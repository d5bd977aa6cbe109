package testenv

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pgHBATLS admits TCP clients over TLS only, each with a client certificate
// of the test CA whose common name is its user: `postgres` by the
// certificate alone, every other user by certificate and password (SCRAM).
// The `replication` lines are for physical replication; logical replication
// connections (replication=database) match the `all` lines. The unix socket
// stays open to trust, for nothing but a test's own debugging.
const pgHBATLS = `# pgflo test harness: TLS with client certificates only
local     all          all                      trust
hostssl   all          postgres   127.0.0.1/32  cert
hostssl   replication  postgres   127.0.0.1/32  cert
hostssl   all          all        127.0.0.1/32  scram-sha-256 clientcert=verify-full
hostssl   replication  all        127.0.0.1/32  scram-sha-256 clientcert=verify-full
`

// StartPostgresTLS is StartPostgres for a cluster that takes TCP connections
// over TLS only (ssl = on, a server certificate for localhost and 127.0.0.1
// signed by a fresh CA), and only from clients presenting a certificate of
// that CA for their user (pgHBATLS). Its DSN and AdminDSN connect with
// sslmode=verify-full as `postgres`; TLS returns the CA and certificates,
// whose IssueClient makes certificates for other users. It logs every
// connection (log_connections), so a test can read from LogFile that a
// client used TLS.
func StartPostgresTLS() (*Postgres, error) {
	return startPostgres(func(p *Postgres) error {
		dir := filepath.Join(p.dir, "tls")
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("create TLS dir: %w", err)
		}
		files, err := NewTLSFiles(dir, "postgres")
		if err != nil {
			return err
		}
		quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
		settings := "\n# pgflo test harness: TLS\nssl = on\nssl_cert_file = " + quote(files.ServerCert) +
			"\nssl_key_file = " + quote(files.ServerKey) + "\nssl_ca_file = " + quote(files.CA) +
			"\nlog_connections = on\n"
		conf, err := os.OpenFile(filepath.Join(p.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("write postgresql.conf: %w", err)
		}
		_, err = conf.WriteString(settings)
		if closeErr := conf.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("write postgresql.conf: %w", err)
		}
		if err := os.WriteFile(filepath.Join(p.dataDir, "pg_hba.conf"), []byte(pgHBATLS), 0o600); err != nil {
			return fmt.Errorf("write pg_hba.conf: %w", err)
		}
		// The server reads its key and certificates as the user it runs
		// as, and refuses a key others can read.
		if err := p.chownToRunAs(); err != nil {
			return err
		}
		p.tls = &files
		return nil
	})
}

// TLS returns the CA and certificates of a StartPostgresTLS cluster, nil
// for others.
func (p *Postgres) TLS() *TLSFiles { return p.tls }

// TLSDSN returns a URL DSN for user on database db, over TLS with
// sslmode=verify-full against the cluster's CA and the client certificate
// cert and its key (see TLSFiles.IssueClient). A user other than postgres
// also needs a password, which the caller adds (pgconn takes
// PGPASSWORD, or a password in the URL).
func (p *Postgres) TLSDSN(db, user, cert, key string) string {
	q := url.Values{}
	q.Set("sslmode", "verify-full")
	if p.tls != nil {
		q.Set("sslrootcert", p.tls.CA)
	}
	q.Set("sslcert", cert)
	q.Set("sslkey", key)
	return fmt.Sprintf("postgres://%s@127.0.0.1:%s/%s?%s", url.PathEscape(user), strconv.Itoa(p.port), urlPathEscape(db), q.Encode())
}
