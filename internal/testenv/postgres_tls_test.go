package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A TLS cluster serves its own DSN over TLS, with the client certificate,
// and refuses plain TCP connections.
func TestPostgresTLSAcceptsOnlyTLS(t *testing.T) {
	p, err := StartPostgresTLS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	dsn := p.NewDatabase(t)
	if !strings.Contains(dsn, "sslmode=verify-full") {
		t.Fatalf("DSN %s does not verify the server", dsn)
	}
	if got := QueryRows(t, dsn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got[0][0] != "t" {
		t.Fatalf("pg_stat_ssl.ssl = %s, want t", got[0][0])
	}

	// A user with a password needs it and its own certificate.
	Exec(t, dsn, "CREATE ROLE app LOGIN PASSWORD 'app-pw'")
	cert, key, err := p.TLS().IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	appDSN := p.TLSDSN("postgres", "app", cert, key)
	for _, c := range []struct {
		name, dsn, wantErr string
	}{
		{"plain TCP", strings.Replace(dsn, "sslmode=verify-full", "sslmode=disable", 1), "no pg_hba.conf entry"},
		{"postgres's certificate for app", p.TLSDSN("postgres", "app", p.TLS().ClientCert, p.TLS().ClientKey) + "&password=app-pw", `authentication failed for user "app"`},
		{"app without password", appDSN, "password authentication failed"},
		{"app", appDSN + "&password=app-pw", ""},
	} {
		conn, err := pgx.Connect(context.Background(), c.dsn)
		if err == nil {
			conn.Close(context.Background())
		}
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
}
