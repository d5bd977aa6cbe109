// Package tests holds pgflo's end-to-end tests: the built binary runs as
// replicator and worker processes against a throwaway PostgreSQL cluster and
// an embedded JetStream, and the tests compare what arrives with what was
// written on the source.
package tests

import (
	"fmt"
	"os"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) {
	var err error
	if pg, err = testenv.StartPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
