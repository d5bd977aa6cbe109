// Package testenv provides helpers for tests that run against real servers: a
// throwaway PostgreSQL cluster per test package, an embedded NATS JetStream
// server per test (or a cluster of nats-server processes, StartNATSCluster,
// for tests that kill its nodes), the built pgflo binary and its subprocesses,
// and polling.
//
// It exists because pgflo's guarantees (no loss, order, restart anywhere) can only
// be shown against the real thing; nothing here mocks a server.
//
// A test package that needs PostgreSQL starts one cluster in TestMain and gives
// each test its own database:
//
//	var pg *testenv.Postgres
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pg.NewDatabase(t)
//		testenv.Exec(t, dsn, "CREATE TABLE t (id int PRIMARY KEY)")
//		js := testenv.StartNATS(t)
//		p := testenv.StartProcess(t, "replicator", testenv.Binary(t), "run", cfg)
//		testenv.Eventually(t, 10*time.Second, "rows replicated", func() bool { ... })
//	}
//
// Servers and subprocesses are children of the test process and get SIGKILL if
// it dies (Linux parent-death signal), so a crashed or timed-out test run does not
// leave them behind.
package testenv
