package testenv

import (
	"fmt"
	"os"
	"testing"
)

// RunWithPostgres is the body of a TestMain for a package whose tests share one
// PostgreSQL cluster: it starts the cluster (StartPostgres), stores it in *pg,
// runs the tests and stops the cluster, returning the exit code for os.Exit.
// If the cluster does not start, the error goes to stderr, no test runs and the
// code is 1; an error stopping it goes to stderr without changing the code.
//
//	var pg *testenv.Postgres
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }
//
// Packages where only some tests need PostgreSQL can instead start the cluster
// on first use and stop it, if started, after m.Run.
func RunWithPostgres(m *testing.M, pg **Postgres) int {
	p, err := StartPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*pg = p
	code := m.Run()
	if err := p.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}
