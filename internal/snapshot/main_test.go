package snapshot

import (
	"os"
	"testing"

	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }
