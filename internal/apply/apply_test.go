package apply

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/testenv"
)

// BatchOf returns a batch of changes already decoded.
func BatchOf(changes []*Change) *Batch {
	b := NewBatch(len(changes))
	b.changes = append(b.changes, changes...)
	return b
}

// Apply applies changes already decoded (see ApplyBatch).
func (a *Applier) Apply(ctx context.Context, changes []*Change) (Result, error) {
	return a.ApplyBatch(ctx, BatchOf(changes))
}

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }

// testLogger records warnings, so tests can check what the user is told.
type testLogger struct {
	t      *testing.T
	warns  []string
	infos  []string
	debugs []string
}

func (l *testLogger) Debugf(f string, a ...any) {
	l.debugs = append(l.debugs, fmt.Sprintf(f, a...))
	l.t.Logf("DEBUG "+f, a...)
}
func (l *testLogger) Infof(f string, a ...any) {
	l.infos = append(l.infos, fmt.Sprintf(f, a...))
	l.t.Logf("INFO "+f, a...)
}
func (l *testLogger) Warnf(f string, a ...any) {
	l.warns = append(l.warns, fmt.Sprintf(f, a...))
	l.t.Logf("WARN "+f, a...)
}

func connectApplier(t *testing.T, dsn string, mod func(*Config)) (*Applier, *testLogger) {
	t.Helper()
	log := &testLogger{t: t}
	cfg := Config{DSN: dsn, Group: "g", Progress: TableName{Schema: "pgflo", Name: "progress"}, CopyMinRows: 4, Retries: 3, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	a, err := Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a, log
}

func apply(t *testing.T, a *Applier, changes ...*Change) Result {
	t.Helper()
	res, err := a.Apply(context.Background(), changes)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

// null stands for SQL NULL in row().
const null = "\x00NULL"

// row builds a row from name, value pairs.
func row(kv ...string) event.Row {
	r := event.Row{}
	for i := 0; i < len(kv); i += 2 {
		v := event.Value{Name: kv[i], Text: kv[i+1]}
		if kv[i+1] == null {
			v = event.Value{Name: kv[i], Null: true}
		}
		r = append(r, v)
	}
	return r
}

// stream hands out stream positions: each tx call is one source
// transaction with a higher commit LSN.
type stream struct{ lsn pglogrepl.LSN }

func (s *stream) tx(changes ...*Change) []*Change {
	s.lsn += 0x100
	for i, ch := range changes {
		ch.CommitLSN = s.lsn
		ch.LSN = s.lsn - 0x80 + pglogrepl.LSN(i)
		ch.Pos = int64(i)
		ch.Index = i
	}
	return changes
}

var usersCols = []event.Column{
	{Name: "id", Type: "int8", OID: 20, Key: true},
	{Name: "email", Type: "text", OID: 25},
	{Name: "n", Type: "int4", OID: 23},
	{Name: "bio", Type: "text", OID: 25},
}

func ch(op event.Op, table string, newRow, oldRow event.Row, toast ...string) *Change {
	c := &Change{Event: event.Event{V: 1, Op: op, Schema: "public", Table: table, Columns: usersCols, New: newRow, Old: oldRow, UnchangedToast: toast}}
	return c
}

func ins(table, id, email, n string) *Change {
	return ch(event.Insert, table, row("id", id, "email", email, "n", n, "bio", null), nil)
}

func upd(table, id, email, n string) *Change {
	return ch(event.Update, table, row("id", id, "email", email, "n", n, "bio", null), row("id", id))
}

func del(table, id string) *Change { return ch(event.Delete, table, nil, row("id", id)) }

func rows(t *testing.T, dsn, sql string) string {
	t.Helper()
	var lines []string
	for _, r := range testenv.QueryRows(t, dsn, sql) {
		lines = append(lines, strings.Join(r, "|"))
	}
	return strings.Join(lines, "\n")
}

func TestApplySemantics(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text UNIQUE, n int4, bio text, extra text DEFAULT 'target only')")
	a, log := connectApplier(t, dsn, nil)
	var s stream
	big := strings.Repeat("TOASTed ", 5000)

	apply(t, a, s.tx(
		ins("users", "1", "a@x", "1"), ins("users", "2", "b@x", "2"), ins("users", "3", "c@x", "3"),
		ch(event.Insert, "users", row("id", "4", "email", "d@x", "n", "4", "bio", big), nil),
		ins("users", "5", "e@x", "5"),
	)...)
	testenv.Exec(t, dsn, "UPDATE users SET extra = 'kept' WHERE id = 1")
	apply(t, a, s.tx(
		upd("users", "1", "a2@x", "10"),
		// key change 2 → 20
		ch(event.Update, "users", row("id", "20", "email", "b@x", "n", "2", "bio", null), row("id", "2")),
		del("users", "3"),
		// unchanged TOAST: bio absent from new, must be kept
		ch(event.Update, "users", row("id", "4", "email", "d2@x", "n", "40"), row("id", "4"), "bio"),
		ins("users", "6", "f@x", "6"),
		// an UPDATE of a row missing on the target is an upsert
		upd("users", "7", "g@x", "7"),
		// insert, update and delete of one key in one batch: nothing
		ins("users", "8", "h@x", "8"), upd("users", "8", "h2@x", "8"), del("users", "8"),
		// delete then insert again
		del("users", "5"), ins("users", "5", "e2@x", "50"),
	)...)
	got := rows(t, dsn, "SELECT id, email, n, coalesce(length(bio), -1), extra FROM users ORDER BY id")
	want := strings.Join([]string{
		"1|a2@x|10|-1|kept", "4|d2@x|40|40000|target only", "5|e2@x|50|-1|target only",
		"6|f@x|6|-1|target only", "7|g@x|7|-1|target only", "20|b@x|2|-1|target only",
	}, "\n")
	if got != want {
		t.Fatalf("target:\n%s\nwant:\n%s", got, want)
	}
	if len(log.warns) > 0 {
		t.Errorf("unexpected warnings: %q", log.warns)
	}

	// TRUNCATE
	apply(t, a, s.tx(ch(event.Truncate, "users", nil, nil), ins("users", "9", "i@x", "9"))...)
	if got := rows(t, dsn, "SELECT id FROM users"); got != "9" {
		t.Fatalf("after truncate: %s", got)
	}
}

func TestUnchangedToastOfMissingRowWarns(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, log := connectApplier(t, dsn, nil)
	var s stream
	apply(t, a, s.tx(ch(event.Update, "users", row("id", "1", "email", "x", "n", "1"), row("id", "1"), "bio"))...)
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM users"); n != 0 {
		t.Fatalf("a row without its TOASTed value was written: %d rows", n)
	}
	if len(log.warns) != 1 || !strings.Contains(log.warns[0], "found no row") || !strings.Contains(log.warns[0], "(id)=(1)") {
		t.Fatalf("warnings %q", log.warns)
	}
}

func TestReplicaIdentityFullFillsUnchangedToast(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	// The row is missing on the target, but the whole old row came along.
	apply(t, a, s.tx(ch(event.Update, "users", row("id", "1", "email", "x", "n", "1"),
		row("id", "1", "email", "old", "n", "0", "bio", "long bio"), "bio"))...)
	if got := rows(t, dsn, "SELECT id, email, bio FROM users"); got != "1|x|long bio" {
		t.Fatalf("target: %s", got)
	}
}

func TestProgressSkipsAppliedChanges(t *testing.T) {
	dsn := pg.NewDatabase(t)
	// No key: a change applied twice would show as a duplicate row.
	testenv.Exec(t, dsn, "CREATE TABLE log (id int8, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	tx1 := s.tx(ins("log", "1", "a", "1"), ins("log", "2", "b", "2"), ins("log", "3", "c", "3"))
	tx2 := s.tx(ins("log", "4", "d", "4"), ins("log", "5", "e", "5"))
	apply(t, a, tx1[:2]...)
	// The first batch again, then the rest of tx1 with part of it, then tx2.
	if res := apply(t, a, tx1[:2]...); res.Skipped != 2 || res.Applied != 0 {
		t.Fatalf("replayed batch: %+v", res)
	}
	if res := apply(t, a, tx1...); res.Skipped != 2 || res.Applied != 1 {
		t.Fatalf("overlapping batch: %+v", res)
	}
	// A new connection (a restart) knows the progress too.
	b, _ := connectApplier(t, dsn, nil)
	if res := apply(t, b, append(tx1, tx2...)...); res.Skipped != 3 || res.Applied != 2 {
		t.Fatalf("after restart: %+v", res)
	}
	if got := rows(t, dsn, "SELECT id FROM log ORDER BY id"); got != "1\n2\n3\n4\n5" {
		t.Fatalf("target:\n%s", got)
	}
	if got := rows(t, dsn, "SELECT commit_lsn, tx_pos, events FROM pgflo.progress WHERE group_name = 'g'"); got != event.FormatLSN(s.lsn)+"|1|5" {
		t.Fatalf("progress row: %s", got)
	}
	// Snapshot rows carry their snapshot's LSN, not a stream position: one
	// of a snapshot after the recorded position is applied, however often.
	snap := ins("log", "6", "f", "6")
	snap.Snapshot, snap.CommitLSN, snap.LSN, snap.Pos = true, s.lsn+0x10, s.lsn+0x10, 0
	if res := apply(t, b, snap); res.Applied != 1 {
		t.Fatalf("snapshot row: %+v", res)
	}
}

// A batch that does not start with inserts is planned while its
// transaction begins, before the group's position is read: delivered again,
// it must still be skipped for what it applied, DDL included.
func TestProgressSkipsAppliedUpdatesPlannedEarly(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	apply(t, a, s.tx(ins("users", "1", "a", "1"), ins("users", "2", "b", "1"))...)
	// n counts the times an UPDATE ran: applied twice, it would show.
	testenv.Exec(t, dsn, `CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN NEW.n := OLD.n + 1; RETURN NEW; END $$`)
	testenv.Exec(t, dsn, "CREATE TRIGGER bump BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION bump()")
	tx1 := s.tx(upd("users", "1", "x", "0"), upd("users", "2", "y", "0"))
	tx2 := s.tx(ddlChange("users", "ALTER TABLE users ADD COLUMN age int", "ALTER TABLE"), del("users", "2"))
	tx3 := s.tx(upd("users", "1", "z", "0"))
	apply(t, a, tx1...)
	if res := apply(t, a, tx1...); res.Skipped != 2 || res.Applied != 0 {
		t.Fatalf("replayed batch of updates: %+v", res)
	}
	apply(t, a, tx2...)
	if res := apply(t, a, slices.Concat(tx1, tx2, tx3)...); res.Skipped != 4 || res.Applied != 1 {
		t.Fatalf("replayed batch with DDL: %+v", res)
	}
	if got := rows(t, dsn, "SELECT id, email, n, age FROM users ORDER BY id"); got != "1|z|3|<NULL>" {
		t.Fatalf("target:\n%s", got)
	}
}

func TestConstraintViolationNamesTableKeyAndLSN(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4 CHECK (n >= 0), bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	batch := s.tx(ins("users", "1", "a", "1"), ins("users", "2", "b", "-5"), ins("users", "3", "c", "3"))
	_, err := a.Apply(context.Background(), batch)
	var ce *ChangeError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *ChangeError", err, err)
	}
	msg := err.Error()
	for _, want := range []string{`"public"."users"`, "(id)=(2)", "LSN " + event.FormatLSN(batch[1].LSN), "users_n_check", "SQLSTATE 23514"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM users"); n != 0 {
		t.Fatalf("%d rows written by a failed batch", n)
	}
	// The user fixes the target; the same batch then goes through.
	testenv.Exec(t, dsn, "ALTER TABLE users DROP CONSTRAINT users_n_check")
	if res := apply(t, a, batch...); res.Applied != 3 {
		t.Fatalf("after the fix: %+v", res)
	}
}

func TestSerialFallbackForUniqueSwap(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text UNIQUE, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	apply(t, a, s.tx(ins("users", "1", "a", "1"), ins("users", "2", "b", "2"))...)
	// Two rows swap their unique emails through a temporary value, which
	// only works in the source's order.
	res := apply(t, a, s.tx(upd("users", "1", "tmp", "1"), upd("users", "2", "a", "2"), upd("users", "1", "b", "1"))...)
	if !res.Serial {
		t.Errorf("expected the serial fallback: %+v", res)
	}
	if got := rows(t, dsn, "SELECT id, email FROM users ORDER BY id"); got != "1|b\n2|a" {
		t.Fatalf("target:\n%s", got)
	}
}

func TestTableWithoutKey(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE log (id int8, email text, n int4, bio text)")
	a, log := connectApplier(t, dsn, nil)
	var s stream
	full := func(id, email, n string) event.Row { return row("id", id, "email", email, "n", n, "bio", null) }
	apply(t, a, s.tx(ins("log", "1", "a", "1"), ins("log", "1", "a", "1"), ins("log", "2", "b", "2"), ins("log", "3", "c", "3"), ins("log", "4", "d", "4"))...)
	apply(t, a, s.tx(
		// one of the two identical rows changes, the other stays
		ch(event.Update, "log", full("1", "a2", "1"), full("1", "a", "1")),
		ch(event.Delete, "log", nil, full("2", "b", "2")),
		ch(event.Update, "log", full("3", "c", "30"), full("3", "c", "3")),
		ins("log", "5", "e", "5"),
	)...)
	if got := rows(t, dsn, "SELECT id, email, n FROM log ORDER BY id, email"); got != "1|a|1\n1|a2|1\n3|c|30\n4|d|4\n5|e|5" {
		t.Fatalf("target:\n%s", got)
	}
	if len(log.warns) != 1 || !strings.Contains(log.warns[0], "no primary key") {
		t.Fatalf("warnings %q", log.warns)
	}
	// Without the old row, an UPDATE cannot be applied: a clear error.
	_, err := a.Apply(context.Background(), s.tx(ch(event.Update, "log", full("4", "x", "4"), nil)))
	if err == nil || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("error %v", err)
	}
}

func TestForeignKeysKeepSourceOrder(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, `CREATE TABLE parent (id int8 PRIMARY KEY, email text, n int4, bio text);
		CREATE TABLE child (id int8 PRIMARY KEY, email text, n int4 REFERENCES parent, bio text)`)
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	apply(t, a, s.tx(ins("parent", "1", "p", "0"), ins("child", "1", "c", "1"))...)
	res := apply(t, a, s.tx(
		del("child", "1"), del("parent", "1"),
		ins("parent", "2", "p", "0"), ins("child", "2", "c", "2"),
		ins("parent", "3", "p", "0"), ins("child", "3", "c", "3"),
	)...)
	if res.Serial {
		t.Errorf("set apply should have kept the order: %+v", res)
	}
	if got := rows(t, dsn, "SELECT 'p' || id FROM parent UNION ALL SELECT 'c' || id || '>' || n FROM child ORDER BY 1"); got != "c2>2\nc3>3\np2\np3" {
		t.Fatalf("target:\n%s", got)
	}
}

func TestCopyFallsBackToUpsertOnConflict(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) { c.CopyMinRows = 2 })
	var s stream
	mk := func(from, to int, email string) []*Change {
		var out []*Change
		for i := from; i <= to; i++ {
			c := ins("users", strconv.Itoa(i), email, strconv.Itoa(i))
			c.New[3] = event.Value{Name: "bio", Text: "tab\there\nnl \\ back"}
			out = append(out, c)
		}
		return out
	}
	apply(t, a, s.tx(mk(1, 10, "first")...)...)
	apply(t, a, s.tx(mk(5, 15, "second")...)...) // conflicts with 5..10
	if got := rows(t, dsn, "SELECT count(*), count(*) FILTER (WHERE email = 'second'), count(DISTINCT bio), min(bio) FROM users"); got != "15|11|1|tab\there\nnl \\ back" {
		t.Fatalf("target: %q", got)
	}
}

func TestSchemaMappingAndKeyColumns(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE SCHEMA replica; CREATE TABLE replica.users (id int8, email text NOT NULL UNIQUE, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) {
		c.SchemaMapping = map[string]string{"public": "replica"}
		c.KeyColumns = map[string][]string{"replica.users": {"email"}}
	})
	var s stream
	apply(t, a, s.tx(ins("users", "1", "a", "1"), ins("users", "2", "a", "2"))...)
	if got := rows(t, dsn, "SELECT id, email FROM replica.users"); got != "2|a" {
		t.Fatalf("target: %s", got)
	}
}

// A random workload on two tables, applied in random batches, leaves the
// target equal to a model that applies the same changes one by one.
func TestRandomWorkloadMatchesModel(t *testing.T) {
	t.Run("one connection", func(t *testing.T) { randomWorkload(t, 1) })
	t.Run("split over three", func(t *testing.T) {
		defer func(n int) { splitMinRows = n }(splitMinRows)
		splitMinRows = 2
		if side := randomWorkload(t, 3); side == 0 {
			t.Fatal("no rows were applied on side connections")
		}
	})
}

// randomWorkload applies a random stream of changes to two tables in random
// batches and compares the target with a model of the rows; it returns how
// many rows side connections applied.
func randomWorkload(t *testing.T, conns int) (sideRows int) {
	// Small chunks: changes of one key are planned in different chunks too.
	defer func(n int) { planChunk = n }(planChunk)
	planChunk = 5
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, `CREATE TABLE a (id int8 PRIMARY KEY, email text, n int4, bio text);
		CREATE TABLE b (id int8 PRIMARY KEY, email text, n int4, bio text)`)
	ap, _ := connectApplier(t, dsn, func(c *Config) { c.CopyMinRows = 3; c.ApplyConnections = conns })
	rng := rand.New(rand.NewPCG(1, 2))
	type rec struct{ email, n, bio string }
	model := map[string]map[string]rec{"a": {}, "b": {}}
	var s stream
	var pending []*Change
	for i := 0; i < 3000; i++ {
		if i == 1500 {
			planChunk = 1024
		}
		table := []string{"a", "b"}[rng.IntN(2)]
		m := model[table]
		id := strconv.Itoa(rng.IntN(40))
		r, exists := m[id]
		var c *Change
		switch op := rng.IntN(10); {
		case !exists:
			r = rec{email: "e" + strconv.Itoa(i), n: strconv.Itoa(i), bio: "bio" + strconv.Itoa(i)}
			c = ch(event.Insert, table, row("id", id, "email", r.email, "n", r.n, "bio", r.bio), nil)
			m[id] = r
		case op < 4:
			r.email, r.n = "u"+strconv.Itoa(i), strconv.Itoa(i)
			c = ch(event.Update, table, row("id", id, "email", r.email, "n", r.n), row("id", id), "bio")
			m[id] = r
		case op < 6:
			r.bio = "b" + strconv.Itoa(i)
			c = ch(event.Update, table, row("id", id, "email", r.email, "n", r.n, "bio", r.bio), row("id", id))
			m[id] = r
		case op < 8:
			to := strconv.Itoa(40 + rng.IntN(40))
			if _, taken := m[to]; taken {
				continue
			}
			delete(m, id)
			m[to] = r
			if rng.IntN(2) == 0 {
				c = ch(event.Update, table, row("id", to, "email", r.email, "n", r.n, "bio", r.bio), row("id", id))
			} else {
				c = ch(event.Update, table, row("id", to, "email", r.email, "n", r.n), row("id", id), "bio")
			}
		default:
			delete(m, id)
			c = del(table, id)
		}
		pending = append(pending, c)
		if rng.IntN(8) == 0 {
			batch := s.tx(pending...)
			pending = nil
			for len(batch) > 0 {
				n := 1 + rng.IntN(len(batch))
				sideRows += apply(t, ap, batch[:n]...).SideRows
				batch = batch[n:]
			}
		}
	}
	sideRows += apply(t, ap, s.tx(pending...)...).SideRows
	for table, m := range model {
		var want []string
		for id, r := range m {
			want = append(want, fmt.Sprintf("%s|%s|%s|%s", id, r.email, r.n, r.bio))
		}
		sort.Strings(want)
		gotRows := strings.Split(rows(t, dsn, "SELECT id::text, email, n, bio FROM "+table), "\n")
		sort.Strings(gotRows)
		if got := strings.Join(gotRows, "\n"); got != strings.Join(want, "\n") {
			t.Fatalf("table %s:\n%s\nwant:\n%s", table, got, strings.Join(want, "\n"))
		}
	}
	return sideRows
}

// holdLock runs sql (taking locks) in a transaction of another session and
// commits it after d, in the background; the test's end waits for that.
func holdLock(t *testing.T, dsn, sql string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, sql)
	}
	if err != nil {
		_ = conn.Close(ctx)
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() {
		time.Sleep(d)
		released <- tx.Commit(ctx)
	}()
	t.Cleanup(func() {
		if err := <-released; err != nil {
			t.Errorf("release the lock: %v", err)
		}
		_ = conn.Close(ctx)
	})
}

// TestSplitOnlyWhereRowsMeetByKey: a statement is split over connections
// only for a table whose rows cannot conflict but by key; a side
// connection's failure makes the batch apply on one connection.
func TestSplitOnlyWhereRowsMeetByKey(t *testing.T) {
	defer func(n int) { splitMinRows = n }(splitMinRows)
	splitMinRows = 2
	defer func(s string) { sideLockTimeout = s }(sideLockTimeout)
	sideLockTimeout = "100ms"
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, `CREATE TABLE plain (id int8 PRIMARY KEY, email text, n int4, bio text);
		CREATE TABLE uniq (id int8 PRIMARY KEY, email text UNIQUE, n int4, bio text);
		CREATE TABLE parent (id int8 PRIMARY KEY, email text, n int4, bio text);
		CREATE TABLE child (id int8 PRIMARY KEY REFERENCES parent, email text, n int4, bio text)`)
	a, log := connectApplier(t, dsn, func(c *Config) { c.ApplyConnections = 2; c.CopyMinRows = 0 })
	var s stream
	upserts := func(table string) []*Change {
		var out []*Change
		for i := 1; i <= 40; i++ {
			out = append(out, upd(table, strconv.Itoa(i), "e"+strconv.Itoa(i), strconv.Itoa(i)))
		}
		return s.tx(out...)
	}
	for _, table := range []string{"uniq", "parent", "child"} {
		if res := apply(t, a, upserts(table)...); res.SideRows != 0 {
			t.Errorf("%s: %d rows applied on side connections, want none", table, res.SideRows)
		}
	}
	if res := apply(t, a, upserts("plain")...); res.SideRows == 0 {
		t.Error("plain: no rows applied on side connections")
	}

	// A row locked by another session: the side connection holding it in
	// its part gives up after its lock timeout, and the batch is applied on
	// the main connection (which waits for the lock).
	holdLock(t, dsn, "SELECT * FROM plain FOR UPDATE", 500*time.Millisecond)
	var changes []*Change
	for i := 1; i <= 40; i++ {
		changes = append(changes, upd("plain", strconv.Itoa(i), "locked"+strconv.Itoa(i), "0"))
	}
	if res := apply(t, a, s.tx(changes...)...); res.SideRows != 0 || res.Applied != 40 {
		t.Errorf("locked rows: applied %d, %d on side connections; want 40 on the main one", res.Applied, res.SideRows)
	}
	if got := rows(t, dsn, "SELECT count(*) FROM plain WHERE email LIKE 'locked%'"); got != "40" {
		t.Errorf("%s rows updated, want 40", got)
	}

	// UPDATEs without their unchanged TOAST values of rows the target
	// lacks are reported from every part.
	changes = nil
	for i := 1001; i <= 1040; i++ {
		changes = append(changes, ch(event.Update, "plain", row("id", strconv.Itoa(i), "email", "x", "n", "1"), row("id", strconv.Itoa(i)), "bio"))
	}
	log.warns = nil
	if res := apply(t, a, s.tx(changes...)...); res.SideRows == 0 {
		t.Errorf("partial updates: none on side connections (%+v)", res)
	}
	missed := 0
	for _, w := range log.warns {
		var n, of int
		if _, err := fmt.Sscanf(w, "%d of %d UPDATEs", &n, &of); err == nil {
			missed += n
		}
	}
	if missed != 40 {
		t.Errorf("warnings count %d UPDATEs that found no row, want 40: %q", missed, log.warns)
	}

	// After DDL in the batch (its lock held until the batch commits) the
	// rest of the batch stays on the main connection.
	changes = []*Change{ddlChange("plain", "ALTER TABLE plain ADD COLUMN age int", "ALTER TABLE")}
	for i := 1; i <= 40; i++ {
		changes = append(changes, upd("plain", strconv.Itoa(i), "ddl"+strconv.Itoa(i), "0"))
	}
	log.debugs = nil
	if res := apply(t, a, s.tx(changes...)...); res.SideRows != 0 || len(log.debugs) > 0 {
		t.Errorf("after DDL: %d rows on side connections (%q); want none, without trying", res.SideRows, log.debugs)
	}
	if got := rows(t, dsn, "SELECT count(*) FROM plain WHERE email LIKE 'ddl%' AND age IS NULL"); got != "40" {
		t.Errorf("%s rows updated after DDL, want 40", got)
	}
}

func TestLostConnectionIsReported(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) { c.ApplicationName = "pgflo-lost-conn" })
	testenv.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgflo-lost-conn'")
	time.Sleep(100 * time.Millisecond)
	var s stream
	_, err := a.Apply(context.Background(), s.tx(ins("users", "1", "a", "1")))
	if !errors.Is(err, ErrConnection) {
		t.Fatalf("error %v, want ErrConnection", err)
	}
}

// sourceChanges reads every row of a table as INSERT changes.
func sourceChanges(t *testing.T, dsn, table string) []*Change {
	t.Helper()
	var out []*Change
	for _, ev := range typestest.InsertEvents(t, dsn, "public", table) {
		out = append(out, &Change{Event: ev})
	}
	return out
}

func TestAllTypesRoundTrip(t *testing.T) {
	for _, copyMin := range []int{0, 1} {
		t.Run(fmt.Sprintf("copy_min_%d", copyMin), func(t *testing.T) {
			src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
			for _, dsn := range []string{src, dst} {
				testenv.Exec(t, dsn, typestest.Types)
				testenv.Exec(t, dsn, typestest.Table("types"))
			}
			testenv.Exec(t, src, typestest.Rows("types"))
			a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = copyMin })
			var s stream
			apply(t, a, s.tx(sourceChanges(t, src, "types")...)...)
			want := testenv.QueryRows(t, src, typestest.Digest("types"))[0][0]
			if got := testenv.QueryRows(t, dst, typestest.Digest("types"))[0][0]; got != want {
				t.Fatalf("digest %s, source %s\nsource:\n%s\ntarget:\n%s", got, want,
					rows(t, src, "SELECT t::text FROM types t WHERE id < 5 ORDER BY id"), rows(t, dst, "SELECT t::text FROM types t WHERE id < 5 ORDER BY id"))
			}
			// Updates through the upsert: every row takes another row's values.
			testenv.Exec(t, src, "UPDATE types SET id = -id")
			testenv.Exec(t, src, "UPDATE types SET id = CASE -id WHEN 5 THEN 1 ELSE -id + 1 END")
			var updates []*Change
			for _, c := range sourceChanges(t, src, "types") {
				c.Op = event.Update
				c.Old = event.Row{c.New[0]}
				updates = append(updates, c)
			}
			apply(t, a, s.tx(updates...)...)
			want = testenv.QueryRows(t, src, typestest.Digest("types"))[0][0]
			if got := testenv.QueryRows(t, dst, typestest.Digest("types"))[0][0]; got != want {
				t.Fatalf("after updates: digest %s, source %s", got, want)
			}
		})
	}
}

func ddlChange(table, command, tag string) *Change {
	return &Change{Event: event.Event{V: 1, Op: event.DDL, Schema: "public", Table: table,
		Columns: []event.Column{{Name: event.DDLCommandColumn, Type: "text", OID: 25}, {Name: event.DDLTagColumn, Type: "text", OID: 25}},
		New:     row(event.DDLCommandColumn, command, event.DDLTagColumn, tag)}}
}

func TestDDLReplayFollowsTheStream(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	withAge := func(id, age string) *Change {
		c := ins("users", id, "x", "1")
		c.New = append(c.New, event.Value{Name: "age", Text: age})
		return c
	}
	apply(t, a, s.tx(
		ins("users", "1", "a", "1"),
		ddlChange("users", "ALTER TABLE users ADD COLUMN age int", "ALTER TABLE"),
		withAge("2", "42"),
	)...)
	// rename, type change and drop, each followed by changes of the new shape
	renamed := func(id string) *Change {
		c := &Change{Event: event.Event{V: 1, Op: event.Insert, Schema: "public", Table: "users",
			New: row("id", id, "mail", "m"+id, "n", "1.5", "age", "7")}}
		return c
	}
	apply(t, a, s.tx(
		ddlChange("users", `ALTER TABLE public.users RENAME COLUMN email TO mail`, "ALTER TABLE"),
		ddlChange("users", "ALTER TABLE users ALTER COLUMN n TYPE numeric USING n::numeric", "ALTER TABLE"),
		ddlChange("users", "alter table users drop column bio", "ALTER TABLE"),
		renamed("3"),
	)...)
	if got := rows(t, dsn, "SELECT id, mail, n, age FROM users ORDER BY id"); got != "1|a|1|<NULL>\n2|x|1|42\n3|m3|1.5|7" {
		t.Fatalf("target:\n%s", got)
	}
}

func TestDDLConcurrentlyRunsOutsideTheTransaction(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	batch := s.tx(
		ins("users", "1", "a", "1"),
		ddlChange("users", "CREATE INDEX CONCURRENTLY users_email ON users (email)", "CREATE INDEX"),
		ins("users", "2", "b", "2"),
	)
	apply(t, a, batch...)
	if got := rows(t, dsn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email'"); got != "CREATE INDEX users_email ON public.users USING btree (email)" {
		t.Fatalf("index: %q", got)
	}
	if got := rows(t, dsn, "SELECT tx_pos, events, pending_tx_pos FROM pgflo.progress"); got != "2|3|<NULL>" {
		t.Fatalf("progress: %s", got)
	}
	// A crash after the index was built but before its position was
	// recorded: the replay finds the index there and goes on.
	testenv.Exec(t, dsn, "UPDATE pgflo.progress SET tx_pos = 0, pending_commit_lsn = commit_lsn, pending_tx_pos = 1, events = 1")
	b, log := connectApplier(t, dsn, nil)
	if res := apply(t, b, batch...); res.Applied != 2 || res.Skipped != 1 {
		t.Fatalf("replay: %+v", res)
	}
	if len(log.warns) != 1 || !strings.Contains(log.warns[0], "already been replayed") {
		t.Fatalf("warnings %q", log.warns)
	}
	// Without the pending mark the same failure is an error.
	testenv.Exec(t, dsn, "UPDATE pgflo.progress SET tx_pos = 0")
	c, _ := connectApplier(t, dsn, nil)
	if _, err := c.Apply(context.Background(), batch); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("error %v", err)
	}
}

func TestDDLRewrittenForRoutingAndSchemaMapping(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE SCHEMA replica; CREATE TABLE replica.customers (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) { c.SchemaMapping = map[string]string{"public": "replica"} })
	var s stream
	// routing renamed users to customers; the statement still names users
	// (the query text holds every statement; its data changes arrive as
	// events of their own and are not replayed)
	apply(t, a, s.tx(ddlChange("customers", "BEGIN; ALTER TABLE users ADD COLUMN age int; INSERT INTO users (id) VALUES (1); ALTER TABLE users ADD COLUMN b text; COMMIT", "ALTER TABLE"))...)
	if got := rows(t, dsn, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'customers'"); got != "id,email,n,bio,age,b" {
		t.Fatalf("columns: %q", got)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM replica.customers"); n != 0 {
		t.Fatalf("the INSERT of the DDL query was replayed")
	}
	// Several tables in one query: each statement names its own; the one
	// named like the event's table is rewritten.
	testenv.Exec(t, dsn, "CREATE TABLE replica.other (id int)")
	apply(t, a, s.tx(ddlChange("customers", "ALTER TABLE customers ADD COLUMN c int; ALTER TABLE replica.other ADD COLUMN x int", "ALTER TABLE"))...)
	if got := rows(t, dsn, "SELECT count(*) FROM information_schema.columns WHERE (table_name, column_name) IN (('customers', 'c'), ('other', 'x'))"); got != "2" {
		t.Fatalf("columns added: %s", got)
	}
}

func TestDDLFailureStops(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	batch := s.tx(ins("users", "1", "a", "1"), ddlChange("users", "ALTER TABLE users DROP COLUMN nope", "ALTER TABLE"))
	_, err := a.Apply(context.Background(), batch)
	if err == nil || !strings.Contains(err.Error(), `column "nope" of relation "users" does not exist`) || !strings.Contains(err.Error(), "apply DDL to") {
		t.Fatalf("error %v", err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM users"); n != 0 {
		t.Fatalf("the batch was half applied: %d rows", n)
	}
}

// Events after pg_flo_decode carry typed JSON values; encoded back, they
// write exactly the source's values.
func TestTypedEventsRoundTrip(t *testing.T) {
	src, dst := pg.NewDatabase(t), pg.NewDatabase(t)
	for _, dsn := range []string{src, dst} {
		testenv.Exec(t, dsn, typestest.Types)
		testenv.Exec(t, dsn, typestest.Table("types"))
	}
	testenv.Exec(t, src, typestest.Rows("types"))
	// A json document that is JSON null has the typed form null, the same as
	// SQL NULL (a limit of docs/decode.md's form, not of this output).
	testenv.Exec(t, src, "UPDATE types SET c_json = '{}' WHERE c_json::text = 'null'")
	// The columns' types, as the replicator describes them.
	types := map[string]event.Column{}
	for _, r := range testenv.QueryRows(t, src, `SELECT attname, t.typname, t.oid FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE attrelid = 'types'::regclass AND attnum > 0`) {
		oid, _ := strconv.ParseUint(r[2], 10, 32)
		types[r[0]] = event.Column{Name: r[0], Type: r[1], OID: uint32(oid)}
	}
	var batch []*Change
	for _, ev := range typestest.InsertEvents(t, src, "public", "types") {
		for i := range ev.Columns {
			ev.Columns[i].Type, ev.Columns[i].OID = types[ev.Columns[i].Name].Type, types[ev.Columns[i].Name].OID
		}
		raw, _ := ev.MarshalJSON()
		parsed, err := change.Parse(raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := parsed.Decode(); err != nil {
			t.Fatal(err)
		}
		typed := parsed.AppendJSON(nil)
		var back event.Event
		var dec event.Decoder
		if err := dec.Decode(typed, &back, pgvalue.EncodeJSON); err != nil {
			t.Fatalf("%v\n%s", err, typed)
		}
		for i, v := range back.New {
			if v != ev.New[i] {
				t.Errorf("column %s: %q came back as %q (typed %s)", v.Name, ev.New[i].Text, v.Text, typed)
			}
		}
		batch = append(batch, &Change{Event: back})
	}
	a, _ := connectApplier(t, dst, nil)
	var s stream
	apply(t, a, s.tx(batch...)...)
	want := testenv.QueryRows(t, src, typestest.Digest("types"))[0][0]
	if got := testenv.QueryRows(t, dst, typestest.Digest("types"))[0][0]; got != want {
		t.Fatalf("digest %s, source %s", got, want)
	}
}

// A leading run of inserts is written with COPY as it is decoded; changes
// already applied are left out of it, and a decoding failure later in the
// batch rolls all of it back.
func TestStreamedInserts(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) { c.CopyMinRows = 3 })
	var s stream
	var batch []*Change
	for i := 1; i <= 10; i++ {
		batch = append(batch, ins("users", strconv.Itoa(i), "e", strconv.Itoa(i)))
	}
	batch = append(batch, upd("users", "1", "changed", "1"))
	batch = s.tx(batch...)
	apply(t, a, batch[:6]...)
	if res := apply(t, a, batch...); res.Applied != 5 || res.Skipped != 6 {
		t.Fatalf("result %+v", res)
	}
	if got := rows(t, dsn, "SELECT count(*), min(email), max(email), (SELECT events FROM pgflo.progress) FROM users"); got != "10|changed|e|11" {
		t.Fatalf("target: %s", got)
	}

	f := NewBatch(5)
	go func() {
		more := s.tx(ins("users", "20", "x", "1"), ins("users", "21", "x", "1"), ins("users", "22", "x", "1"), ins("users", "23", "x", "1"))
		for _, ch := range more {
			f.Add(ch)
			time.Sleep(10 * time.Millisecond)
		}
		f.Fail(errors.New("message 4 is not an event"))
	}()
	if _, err := a.ApplyBatch(context.Background(), f); err == nil || err.Error() != "message 4 is not an event" {
		t.Fatalf("error %v", err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM users WHERE id >= 20"); n != 0 {
		t.Fatalf("%d rows of a failed batch were committed", n)
	}
}

// A failure in one chunk while the planner needs the next chunk's table
// ends cleanly with the error.
func TestChunkFailureWhilePlanningAhead(t *testing.T) {
	defer func(n int) { planChunk = n }(planChunk)
	planChunk = 2
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, `CREATE TABLE a (id int8 PRIMARY KEY, email text, n int4 CHECK (n >= 0), bio text);
		CREATE TABLE b (id int8 PRIMARY KEY, email text, n int4, bio text); CREATE TABLE c (LIKE b INCLUDING ALL)`)
	ap, _ := connectApplier(t, dsn, nil)
	var s stream
	done := make(chan error, 1)
	go func() {
		_, err := ap.Apply(context.Background(), s.tx(ins("a", "1", "x", "1"), ins("a", "2", "x", "-1"), ins("b", "1", "x", "1"), ins("c", "1", "x", "1")))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "(id)=(2)") {
			t.Fatalf("error %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Apply did not return")
	}
}

// Each partition of a partitioned group records its position in a row of its
// own: a change of partition 1 that comes before what partition 0 applied
// is applied, and each partition skips what it applied itself.
func TestProgressRowPerPartition(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE log (id int8, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	tx1 := s.tx(ins("log", "1", "a", "1"))
	tx2 := s.tx(ins("log", "2", "b", "2"))
	a.UsePartition("0")
	apply(t, a, tx2...)
	a.UsePartition("1")
	if res := apply(t, a, tx1...); res.Applied != 1 {
		t.Fatalf("partition 1's earlier change: %+v", res)
	}
	if res := apply(t, a, tx1...); res.Skipped != 1 {
		t.Fatalf("partition 1's change again: %+v", res)
	}
	a.UsePartition("0")
	if res := apply(t, a, tx2...); res.Skipped != 1 {
		t.Fatalf("partition 0's change again: %+v", res)
	}
	if got := rows(t, dsn, "SELECT group_name, commit_lsn, events FROM pgflo.progress ORDER BY group_name"); got != "g|0/0|0\ng/p0|"+event.FormatLSN(tx2[0].CommitLSN)+"|1\ng/p1|"+event.FormatLSN(tx1[0].CommitLSN)+"|1" {
		t.Fatalf("progress rows:\n%s", got)
	}
	if got := rows(t, dsn, "SELECT id FROM log ORDER BY id"); got != "1\n2" {
		t.Fatalf("target:\n%s", got)
	}
}

// A column added to a target table after the applier read it (DDL replayed
// by another process, such as the worker of another partition) is found by
// reading the table again, without falling back to change-by-change apply.
func TestColumnAddedBehindTheAppliersBack(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, nil)
	var s stream
	apply(t, a, s.tx(upd("users", "1", "a", "1"))...)
	testenv.Exec(t, dsn, "ALTER TABLE users ADD COLUMN extra text")
	change := upd("users", "2", "b", "2")
	change.Columns = append(append([]event.Column{}, usersCols...), event.Column{Name: "extra", Type: "text", OID: 25})
	change.New = append(change.New, event.Value{Name: "extra", Text: "x"})
	if res := apply(t, a, s.tx(change)...); res.Applied != 1 || res.Serial {
		t.Fatalf("change with the new column: %+v", res)
	}
	if got := rows(t, dsn, "SELECT id, coalesce(extra, '-') FROM users ORDER BY id"); got != "1|-\n2|x" {
		t.Fatalf("target:\n%s", got)
	}
}

// A key change whose unchanged TOAST value only the target holds is applied
// in place. Replayed (a snapshot resumed under a newer snapshot, then the
// stream from the older consistent point), it can meet a target that already
// holds the row at its new key, copied by a redone chunk: the move replaces
// it, as an upsert would, instead of failing on the key on every retry.
func TestKeyChangeInPlaceReplayedOverNewerVersion(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, log := connectApplier(t, dsn, nil)
	var s stream
	big := strings.Repeat("TOASTed ", 5000)
	testenv.Exec(t, dsn, "INSERT INTO users VALUES (2, 'b@x', 2, $1), (20, 'newer@x', 3, $1 || 'newer'), (3, 'c@x', 3, $1)", big)

	apply(t, a, s.tx(
		// replayed: 20 already holds a newer version of the row
		ch(event.Update, "users", row("id", "20", "email", "b2@x", "n", "2"), row("id", "2"), "bio"),
		// not replayed: moved in place
		ch(event.Update, "users", row("id", "30", "email", "c2@x", "n", "30"), row("id", "3"), "bio"),
	)...)
	got := rows(t, dsn, "SELECT id, email, n, length(bio) FROM users ORDER BY id")
	want := "20|b2@x|2|40000\n30|c2@x|30|40000"
	if got != want {
		t.Fatalf("target:\n%s\nwant:\n%s", got, want)
	}
	if len(log.warns) > 0 {
		t.Errorf("unexpected warnings: %q", log.warns)
	}
}
