package tests

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/testenv"
)

// End-to-end tests of pg_flo_postgres: source → pg_flo_replicator →
// JetStream → pg_flo_worker → pg_flo_postgres → target, as two processes
// of the built binary, compared table by table with digests.

// digest is the md5 of a table's rows in their text form, in a fixed order
// (rows sorted by their text: tables without key compare too, duplicates
// included).
func digest(t *testing.T, dsn, table string) string {
	t.Helper()
	return testenv.QueryRows(t, dsn, fmt.Sprintf(
		"SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) || ' ' || count(*) FROM (SELECT x::text AS r FROM %s x) s",
		pgx.Identifier{"public", table}.Sanitize()))[0][0]
}

// waitDigestsEqual waits until every table has the same digest on source
// and target, and fails with the differing tables otherwise.
func waitDigestsEqual(t *testing.T, source, target string, tables []string, timeout time.Duration) {
	t.Helper()
	var diff []string
	deadline := time.Now().Add(timeout)
	for {
		diff = diff[:0]
		for _, table := range tables {
			if !tableExists(t, target, table) {
				diff = append(diff, table+": missing on the target")
				continue
			}
			if s, d := digest(t, source, table), digest(t, target, table); s != d {
				diff = append(diff, fmt.Sprintf("%s: source %s, target %s", table, s, d))
			}
		}
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the target differs from the source:\n%s", timeout, strings.Join(diff, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tableExists(t *testing.T, dsn, table string) bool {
	return testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table) == 1
}

// postgresOutput is the worker's output YAML writing to target.
func postgresOutput(target, group, extra string) string {
	return fmt.Sprintf("pg_flo_postgres:\n    dsn: %q\n    group: %s\n%s", target, group, extra)
}

const mixedTablesSQL = `
CREATE TABLE mixed (id bigint PRIMARY KEY, n int NOT NULL, s text, big text, amount numeric(14,4), at timestamptz,
                    tags text[], doc jsonb, flag bool);
ALTER TABLE mixed ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO mixed SELECT g, g, 'row ' || g || E'\ttab\\back', CASE WHEN g % 10 = 0 THEN repeat('T', 5000) || g END,
       g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute', ARRAY['a' || g, NULL, 'b,c'],
       jsonb_build_object('g', g), g % 2 = 0
FROM generate_series(1, 3000) g;
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
INSERT INTO nokey SELECT g % 50, 'b' || g FROM generate_series(1, 300) g;
CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 20) g;
`

// mixedWorkload changes every table in every way the output handles:
// inserts, updates, key changes, deletes, TRUNCATE, TOASTed values updated
// and left unchanged, rows of a table without key.
var mixedWorkload = []string{
	"INSERT INTO mixed (id, n, s, tags) SELECT g, g, 'new ' || g, '{}' FROM generate_series(3001, 3500) g",
	"UPDATE mixed SET n = n + 1, s = s || '+' WHERE id % 3 = 0",
	"UPDATE mixed SET big = repeat('U', 6000) || id WHERE id % 7 = 0",
	"UPDATE mixed SET n = n * 2, flag = NOT flag WHERE id % 10 = 0",
	"BEGIN; UPDATE mixed SET id = id + 100000 WHERE id % 11 = 0; UPDATE mixed SET s = 'moved' WHERE id > 100000; COMMIT",
	"DELETE FROM mixed WHERE id % 13 = 0",
	"BEGIN; DELETE FROM mixed WHERE id = 5; INSERT INTO mixed (id, n, s) VALUES (5, -5, 'again'); UPDATE mixed SET amount = 'NaN' WHERE id = 5; COMMIT",
	"UPDATE nokey SET b = b || '!' WHERE a = 7",
	"DELETE FROM nokey WHERE ctid = (SELECT ctid FROM nokey WHERE a = 8 LIMIT 1)",
	"INSERT INTO nokey VALUES (1, 'b1'), (1, 'b1')",
	"TRUNCATE small",
	"INSERT INTO small SELECT g, 'w' || g FROM generate_series(5, 9) g",
	"UPDATE types SET c_text = c_text || '!', c_int4 = coalesce(c_int4, 0) / 2",
	"INSERT INTO types SELECT id + 100, c_bool, c_int2, c_int4, c_int8, c_oid, c_numeric, c_numeric_ps, c_float4, c_float8, c_money, c_text, c_varchar, c_char, c_qchar, c_name, c_bytea, c_uuid, c_json, c_jsonb, c_jsonpath, c_xml, c_date, c_time, c_timetz, c_timestamp, c_timestamptz, c_interval, c_bit, c_varbit, c_inet, c_cidr, c_macaddr, c_macaddr8, c_point, c_line, c_lseg, c_box, c_path, c_polygon, c_circle, c_tsvector, c_tsquery, c_pg_lsn, c_int4range, c_int8range, c_numrange, c_tsrange, c_tstzrange, c_daterange, c_int4multirange, c_datemultirange, c_enum, c_domain, c_domain_text, c_composite, c_floatrange, a_int4, a_int8, a_text, a_numeric, a_float8, a_bool, a_bytea, a_timestamptz, a_date, a_interval, a_uuid, a_jsonb, a_json, a_inet, a_bit, a_varbit, a_point, a_box, a_int4range, a_enum, a_composite, a_char, a_money, a_xml, a_tsvector, a_int4_2d, a_text_2d FROM types",
	"DELETE FROM types WHERE id = 3",
}

// copy_and_stream of a mixed table, a table without key, a small table and
// the all-types table, then a workload of every kind of change: the target
// (created by sync_schema) ends equal to the source, table by table —
// through JetStream, and in one process (replicator → pg_flo_postgres).
func TestPostgresCopyAndStreamConverges(t *testing.T) {
	t.Run("through JetStream", func(t *testing.T) { copyAndStreamConverges(t, false) })
	t.Run("one process", func(t *testing.T) { copyAndStreamConverges(t, true) })
}

func copyAndStreamConverges(t *testing.T, oneProcess bool) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, mixedTablesSQL)
	testenv.Exec(t, source, typestest.Types)
	testenv.Exec(t, source, typestest.Table("types"))
	testenv.Exec(t, source, typestest.Rows("types"))
	tables := []string{"mixed", "nokey", "small", "types"}

	p := newPipeline(t, source, "pgout")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [%s]", p.nats.URL(), strings.Join(tables, ", "))
	output := postgresOutput(target, "pgout", fmt.Sprintf("    sync_schema: true\n    source_dsn: %q\n", source))
	if oneProcess {
		p.replicatorOutput = output
		p.startReplicator()
	} else {
		p.startReplicator()
		p.startWorker(output)
	}
	waitDigestsEqual(t, source, target, tables, 120*time.Second)

	for _, sql := range mixedWorkload {
		testenv.Exec(t, source, sql)
	}
	waitDigestsEqual(t, source, target, tables, 120*time.Second)
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM mixed WHERE big IS NOT NULL"); n < 300 {
		t.Fatalf("only %d TOASTed values on the target", n)
	}
}

// workloadWriter keeps committing small transactions on the source and
// counts the change events they make, so a test knows how many changes the
// target must have applied exactly once.
type workloadWriter struct {
	events atomic.Int64
	stop   atomic.Bool
	wg     sync.WaitGroup
}

func startWorkloadWriter(t *testing.T, dsn string) *workloadWriter {
	t.Helper()
	w := &workloadWriter{}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer conn.Close(context.Background())
		ctx := context.Background()
		rng := rand.New(rand.NewSource(7))
		next := 100000
		for !w.stop.Load() {
			next++
			id := 1 + rng.Intn(next-99000)
			// One transaction: an insert into each table, an update and a
			// delete of mixed (each may find no row).
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Errorf("workload: %v", err)
				return
			}
			var n int64
			for _, sql := range []string{
				fmt.Sprintf("INSERT INTO mixed (id, n, s) VALUES (%d, 1, 'w')", next),
				fmt.Sprintf("INSERT INTO nokey VALUES (%d, 'w%d')", next%50, next),
				fmt.Sprintf("UPDATE mixed SET n = n + 1, s = s || '.' WHERE id = %d", 99000+id),
				fmt.Sprintf("DELETE FROM mixed WHERE id = %d", 99000+id+7),
			} {
				tag, err := tx.Exec(ctx, sql)
				if err != nil {
					t.Errorf("workload: %v", err)
					return
				}
				n += tag.RowsAffected()
			}
			if err := tx.Commit(ctx); err != nil {
				t.Errorf("workload: %v", err)
				return
			}
			w.events.Add(n)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// finish stops the writer and returns the number of change events it made.
func (w *workloadWriter) finish() int64 {
	w.stop.Store(true)
	w.wg.Wait()
	return w.events.Load()
}

// The worker is killed (kill -9) twice and the target PostgreSQL restarted
// while changes flow: the target still ends equal to the source, and the
// progress table counts every change exactly once (a change applied twice
// would also show as a duplicate row of the table without key).
func TestPostgresSurvivesWorkerKillAndTargetRestart(t *testing.T) {
	tpg, err := testenv.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tpg.Stop() })
	source, target := pg.NewDatabase(t), tpg.NewDatabase(t)
	testenv.Exec(t, source, mixedTablesSQL)
	tables := []string{"mixed", "nokey", "small"}
	// The target starts as a copy: this group streams only.
	testenv.Exec(t, target, mixedTablesSQL)

	p := newPipeline(t, source, "crash")
	p.startReplicator()
	output := postgresOutput(target, "crash", "")
	p.startWorker(output)
	w := startWorkloadWriter(t, source)
	progressed := func(what string) {
		t.Helper()
		before := testenv.QueryInt(t, target, "SELECT events FROM pgflo.progress WHERE group_name = 'crash'")
		testenv.Eventually(t, 60*time.Second, what, func() bool {
			return testenv.QueryInt(t, target, "SELECT events FROM pgflo.progress WHERE group_name = 'crash'") > before+50
		})
	}
	testenv.Eventually(t, 60*time.Second, "the progress row", func() bool {
		return testenv.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgflo' AND tablename = 'progress'") == 1
	})
	progressed("changes applied")

	p.worker.Kill()
	time.Sleep(500 * time.Millisecond)
	p.startWorker(output)
	progressed("changes applied after the first kill")

	if err := tpg.Restart(); err != nil {
		t.Fatal(err)
	}
	progressed("changes applied after the target restarted")

	p.worker.Kill()
	p.startWorker(output)
	if err := tpg.StopServer(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := tpg.StartServer(); err != nil {
		t.Fatal(err)
	}
	progressed("changes applied after the target was down")

	events := w.finish()
	waitDigestsEqual(t, source, target, tables, 120*time.Second)
	applied := testenv.QueryInt(t, target, "SELECT events FROM pgflo.progress WHERE group_name = 'crash'")
	if applied != events {
		t.Fatalf("the progress table counts %d applied changes; the workload made %d", applied, events)
	}
	t.Logf("%d changes applied exactly once across 2 kills and 2 target restarts", events)
}

// With track_ddl, columns are added, renamed, retyped and dropped (and an
// index built concurrently) while changes flow: the target follows, and its
// columns and rows end equal to the source's.
func TestPostgresFollowsDDL(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, mixedTablesSQL)
	tables := []string{"mixed", "nokey", "small"}
	p := newPipeline(t, source, "ddl")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [%s]\n    track_ddl: true", p.nats.URL(), strings.Join(tables, ", "))
	p.startReplicator()
	p.startWorker(postgresOutput(target, "ddl", fmt.Sprintf("    sync_schema: true\n    source_dsn: %q\n", source)))
	w := startWorkloadWriter(t, source)
	waitDigestsEqual(t, source, target, []string{"small"}, 60*time.Second)

	for _, sql := range []string{
		"ALTER TABLE mixed ADD COLUMN extra text DEFAULT 'x'",
		"UPDATE mixed SET extra = 'set ' || id WHERE id % 5 = 0",
		"ALTER TABLE mixed RENAME COLUMN extra TO extra2",
		"UPDATE mixed SET extra2 = extra2 || '!' WHERE id % 4 = 0",
		"ALTER TABLE mixed ALTER COLUMN n TYPE bigint",
		"UPDATE mixed SET n = n + 5000000000 WHERE id % 6 = 0",
		"ALTER TABLE mixed DROP COLUMN flag",
		"CREATE INDEX CONCURRENTLY mixed_s ON mixed (s)",
		"ALTER TABLE small ADD COLUMN w int, ADD COLUMN z text; INSERT INTO small VALUES (100, 'v', 1, 'z')",
	} {
		testenv.Exec(t, source, sql)
		time.Sleep(300 * time.Millisecond)
	}
	w.finish()
	waitDigestsEqual(t, source, target, tables, 120*time.Second)
	columns := func(dsn string) string {
		return testenv.QueryRows(t, dsn, `SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' ORDER BY table_name, ordinal_position)
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('mixed', 'small')`)[0][0]
	}
	if s, d := columns(source), columns(target); s != d {
		t.Fatalf("columns differ:\nsource %s\ntarget %s", s, d)
	}
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM pg_indexes WHERE indexname = 'mixed_s'"); n != 1 {
		t.Fatalf("index mixed_s not replayed")
	}
}

// A change the target refuses stops the output with a message naming the
// table, the key and the LSN; nothing after it is applied; once the user
// fixes the target, it resumes with nothing lost.
func TestPostgresConstraintViolationStopsThenResumes(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, "CREATE TABLE small (id int PRIMARY KEY, v text)")
	testenv.Exec(t, target, "CREATE TABLE small (id int PRIMARY KEY, v text CHECK (v <> 'forbidden'))")
	p := newPipeline(t, source, "refuse")
	p.startReplicator()
	p.startWorker(postgresOutput(target, "refuse", ""))
	testenv.Exec(t, source, "INSERT INTO small VALUES (1, 'ok')")
	testenv.Eventually(t, 60*time.Second, "the first row applied", func() bool {
		return testenv.QueryInt(t, target, "SELECT count(*) FROM small") == 1
	})
	testenv.Exec(t, source, "INSERT INTO small VALUES (2, 'forbidden')")
	lsn := testenv.QueryRows(t, source, "SELECT pg_current_wal_lsn()::text")[0][0]
	testenv.Exec(t, source, "INSERT INTO small VALUES (3, 'after')")
	testenv.Eventually(t, 60*time.Second, "the refusal in the worker's log", func() bool {
		// (logfmt escapes the quotes of "public"."small")
		return strings.Contains(p.worker.Log(), `apply INSERT to \"public\".\"small\" key (id)=(2) at LSN`)
	})
	if got := testenv.QueryRows(t, target, "SELECT id FROM small ORDER BY id"); len(got) != 1 || got[0][0] != "1" {
		t.Fatalf("target rows %v: the change after the refused one was applied", got)
	}
	t.Logf("refused before %s; the user drops the constraint and restarts the worker", lsn)
	testenv.Exec(t, target, "ALTER TABLE small DROP CONSTRAINT small_v_check")
	// A worker whose batch is being refused stops on SIGTERM by itself.
	if err := p.worker.Stop(); err != nil {
		t.Fatal(err)
	}
	p.startWorker(postgresOutput(target, "refuse", ""))
	waitDigestsEqual(t, source, target, []string{"small"}, 60*time.Second)
}

// Routing into PostgreSQL: users becomes customers and email contact_email.
// Schema sync creates customers from the source's users (found through the
// route's pg_flo_source_table metadata), the copy and the changes land in it,
// and DDL naming the renamed column is replayed with the target's name.
func TestPostgresRoutedTableWithDDL(t *testing.T) {
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, `CREATE TABLE users (id int PRIMARY KEY, email text, age int);
		INSERT INTO users SELECT g, 'u' || g || '@example.com', g % 90 FROM generate_series(1, 2000) g`)
	p := newPipeline(t, source, "routed")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [users]\n    track_ddl: true", p.nats.URL())
	p.workerProcessors = `    - pg_flo_route:
        routes:
          users:
            destination_table: customers
            column_mappings:
              - {source: email, destination: contact_email}
            operations: [INSERT, UPDATE, DELETE, DDL]
`
	p.startReplicator()
	p.startWorker(postgresOutput(target, "routed", fmt.Sprintf("    sync_schema: true\n    source_dsn: %q\n", source)))
	// What the target must hold: the source's rows under the target's names.
	routed := func(dsn, table, email string) string {
		return testenv.QueryRows(t, dsn, fmt.Sprintf(`SELECT count(*) || ':' || md5(coalesce(string_agg(concat_ws('|', id, %s, age), ',' ORDER BY id), '')) FROM %s`, email, table))[0][0]
	}
	waitRouted := func(what string) {
		t.Helper()
		testenv.Eventually(t, 90*time.Second, what, func() bool {
			return tableExists(t, target, "customers") && routed(source, "users", "email") == routed(target, "customers", "contact_email")
		})
	}
	waitRouted("the copy in customers")
	testenv.Exec(t, source, "UPDATE users SET email = upper(email) WHERE id % 3 = 0; DELETE FROM users WHERE id % 7 = 0")
	testenv.Exec(t, source, "ALTER TABLE users ALTER COLUMN email TYPE varchar(200)")
	testenv.Exec(t, source, "INSERT INTO users VALUES (5001, repeat('x', 150), 30)")
	testenv.Exec(t, source, "CREATE INDEX users_email ON users (email)")
	// A row after the index: once it is in customers, so is the index (the
	// DDL is applied in commit order, before it).
	testenv.Exec(t, source, "INSERT INTO users VALUES (5002, 'last@example.com', 31)")
	waitRouted("the changes and the DDL in customers")
	if got := testenv.QueryRows(t, target, `SELECT data_type || coalesce('(' || character_maximum_length || ')', '')
		FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'contact_email'`)[0][0]; got != "character varying(200)" {
		t.Fatalf("customers.contact_email is %s after the type change", got)
	}
	if n := testenv.QueryInt(t, target, `SELECT count(*) FROM pg_indexes WHERE tablename = 'customers' AND indexdef LIKE '%contact_email%'`); n != 1 {
		t.Fatalf("the index on the renamed column was not replayed (%d)", n)
	}
	if tableExists(t, target, "users") {
		t.Fatal("a table users was created on the target")
	}
}
