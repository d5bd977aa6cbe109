// Package tests holds pgflo's end-to-end tests: the built binary runs as
// replicator and worker processes against a throwaway PostgreSQL cluster and
// an embedded JetStream, and the tests compare what arrives with what was
// written on the source.
package tests

import (
	"os"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }
