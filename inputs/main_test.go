package inputs

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

// The package's PostgreSQL cluster starts on first use, so tests that need
// only JetStream do not pay for it.
var (
	pgOnce    sync.Once
	pgCluster *testenv.Postgres
	pgErr     error
)

func sharedPostgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	pgOnce.Do(func() { pgCluster, pgErr = testenv.StartPostgres() })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pgCluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgCluster != nil {
		if err := pgCluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}
