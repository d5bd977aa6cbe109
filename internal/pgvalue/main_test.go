package pgvalue

import (
	"os"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }

func testenvQuery(t *testing.T, dsn, sql string) [][]string {
	t.Helper()
	return testenv.QueryRows(t, dsn, sql)
}
