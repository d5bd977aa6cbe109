package pgcodec

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

func testenvQuery(t *testing.T, dsn, sql string) [][]string {
	t.Helper()
	return testenv.QueryRows(t, dsn, sql)
}
