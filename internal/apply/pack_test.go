package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/testenv"
)

// snapshotLSN is the LSN of the test packs' snapshot.
const snapshotLSN = pglogrepl.LSN(0x1000)

// copyPacks reads a table of the source as pg_flo_replicator's snapshot
// does (COPY (SELECT columns FROM table) TO STDOUT, text format, in a
// session with the text form settings) and cuts its rows into packs of at
// most size rows: one change per pack, positions counted from pos.
func copyPacks(t *testing.T, dsn, table string, size int, pos *int64) []*Change {
	t.Helper()
	return copyPacksAs(t, dsn, table, size, pos, false)
}

// copyPacksAs is copyPacks reading binary COPY into binary packs when
// binary is set.
func copyPacksAs(t *testing.T, dsn, table string, size int, pos *int64, binary bool) []*Change {
	t.Helper()
	var cols []event.Column
	var list []string
	for i, r := range testenv.QueryRows(t, dsn, `SELECT a.attname, ty.typname, ty.oid FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`, table) {
		oid, _ := strconv.ParseUint(r[2], 10, 32)
		cols = append(cols, event.Column{Name: r[0], Type: r[1], OID: uint32(oid), Key: i == 0})
		list = append(list, pgx.Identifier{r[0]}.Sanitize())
	}
	query := fmt.Sprintf("SELECT %s FROM %s ORDER BY 1", strings.Join(list, ", "), table)
	out := typestest.CopyOut(t, typestest.Connect(t, dsn), query, binary)
	header := copypack.NewHeader("public", table, cols, snapshotLSN)
	var rows [][]byte
	if binary {
		header = copypack.NewBinaryHeader("public", table, cols, snapshotLSN)
		for len(out) > 0 {
			tuple, rest, err := pgvalue.NextTuple(out, len(cols))
			if err != nil {
				t.Fatal(err)
			}
			rows, out = append(rows, tuple), rest
		}
	} else {
		rows = bytes.SplitAfter(out, []byte{'\n'})
		rows = rows[:len(rows)-1] // after the last newline
	}
	head := copypack.AppendHeader(nil, header)
	var changes []*Change
	for len(rows) > 0 {
		n := min(size, len(rows))
		body := slices.Concat(append([][]byte{head}, rows[:n]...)...)
		ch := &Change{}
		if err := DecodePack(body, ch); err != nil {
			t.Fatal(err)
		}
		if ch.Pack.N != n || ch.Pack.Binary != binary {
			t.Fatalf("pack of %d rows holds %d (binary %v)", n, ch.Pack.N, ch.Pack.Binary)
		}
		ch.Pos = *pos
		*pos += int64(n)
		changes = append(changes, ch)
		rows = rows[n:]
	}
	return changes
}

// numbered sets the changes' positions in the batch.
func numbered(changes []*Change) []*Change {
	for i, ch := range changes {
		ch.Index = i
	}
	return changes
}

// mixedTable holds hundreds of rows with what COPY's text form escapes
// (tabs, newlines, carriage returns, backslashes), NULLs, arrays, bytea,
// numeric and timestamptz values.
const mixedTable = `CREATE TABLE mixed (id int8 PRIMARY KEY, t text, n numeric, ts timestamptz, b bytea, tags text[], nums int4[], doc jsonb)`

const mixedRows = `INSERT INTO mixed SELECT i,
	CASE WHEN i % 7 = 0 THEN NULL ELSE E'row ' || i || E'\ttab\nnewline\r\\back\\\\slash \\N "q" é' END,
	CASE i % 5 WHEN 0 THEN 'NaN'::numeric WHEN 1 THEN NULL ELSE (i * 1234567.890123)::numeric END,
	CASE i % 9 WHEN 0 THEN 'infinity'::timestamptz WHEN 1 THEN NULL ELSE '2026-01-01 00:00+00'::timestamptz + i * interval '1 hour 1.5 seconds' END,
	CASE WHEN i % 11 = 0 THEN NULL ELSE decode(lpad(to_hex(i), 8, '0') || '5c090a00', 'hex') END,
	ARRAY['a' || i, NULL, E'tab\there', 'quote"', E'back\\slash', 'x,y', ''],
	CASE WHEN i % 13 = 0 THEN '{}'::int4[] ELSE ARRAY[i, NULL, -i] END,
	jsonb_build_object('i', i, 's', E'line\nbreak\t\\', 'n', NULL)
	FROM generate_series(1, 700) i`

// The mixed table on the target: other column order, a column of its own.
const mixedTarget = `CREATE TABLE mixed (extra text DEFAULT 'target', doc jsonb, nums int4[], tags text[], b bytea, ts timestamptz, n numeric, t text, id int8 PRIMARY KEY)`

const mixedDigest = `SELECT count(*) || ':' || md5(coalesce(string_agg(concat_ws('|', id, t, n, ts, b, tags, nums, doc), E'\n' ORDER BY id), '')) FROM mixed`

func packSource(t *testing.T) (src string, packs []*Change) {
	t.Helper()
	src = pg.NewDatabase(t)
	testenv.Exec(t, src, typestest.Types)
	testenv.Exec(t, src, typestest.Table("types"))
	testenv.Exec(t, src, typestest.Rows("types"))
	testenv.Exec(t, src, mixedTable)
	testenv.Exec(t, src, mixedRows)
	testenv.Exec(t, src, "CREATE TABLE log (id int8, t text); INSERT INTO log SELECT i % 50, E'l\\t' || i FROM generate_series(1, 300) i")
	var pos int64
	packs = append(packs, copyPacks(t, src, "types", 2, &pos)...)
	packs = append(packs, copyPacks(t, src, "mixed", 128, &pos)...)
	packs = append(packs, copyPacks(t, src, "log", 100, &pos)...)
	return src, numbered(packs)
}

func packTarget(t *testing.T) string {
	t.Helper()
	dst := pg.NewDatabase(t)
	testenv.Exec(t, dst, typestest.Types)
	testenv.Exec(t, dst, typestest.Table("types"))
	testenv.Exec(t, dst, mixedTarget)
	testenv.Exec(t, dst, "CREATE TABLE log (t text, id int8)")
	return dst
}

// packDigests digest the pack tables.
var packDigests = []string{typestest.Digest("types"), mixedDigest,
	"SELECT count(*) || ':' || md5(string_agg(id || '|' || t, E'\n' ORDER BY id, t)) FROM log"}

// sameTables compares the tables of source and target by the digest
// queries (all the pack tables by default).
func sameTables(t *testing.T, src, dst string, queries ...string) {
	t.Helper()
	if len(queries) == 0 {
		queries = packDigests
	}
	for _, q := range queries {
		want := testenv.QueryRows(t, src, q)[0][0]
		if got := testenv.QueryRows(t, dst, q)[0][0]; got != want {
			t.Fatalf("%s:\ntarget %s\nsource %s", q, got, want)
		}
	}
}

// Packs of several tables (all types; escapes, NULLs, arrays, bytea,
// numeric, timestamptz; a table without key) go to the target with COPY
// as they are, one COPY per table; without COPY (copy_min_rows 0) they are
// applied as their rows' INSERTs, with the same result.
func TestPacksAreCopiedAsTheyAre(t *testing.T) {
	src, packs := packSource(t)
	rowsTotal := rowsOf(packs)
	if rowsTotal != 5+700+300 || len(packs) != 3+6+3 {
		t.Fatalf("%d rows in %d packs", rowsTotal, len(packs))
	}
	// copy_min_rows 64: the types table's 5 rows are upserted; the next
	// tables' runs are copied all the same.
	for copyMin, wantCopied := range map[int]int{0: 0, 1: rowsTotal, 64: 1000} {
		t.Run(fmt.Sprintf("copy_min_%d", copyMin), func(t *testing.T) {
			dst := packTarget(t)
			a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = copyMin })
			res := apply(t, a, packs...)
			if res.Applied != rowsTotal || res.Skipped != 0 || res.PackRows != wantCopied || res.Serial {
				t.Fatalf("result %+v, want %d rows applied, %d copied", res, rowsTotal, wantCopied)
			}
			sameTables(t, src, dst)
			if got := rows(t, dst, "SELECT count(DISTINCT extra) || extra FROM mixed GROUP BY extra"); got != "1target" {
				t.Fatalf("target's own column: %s", got)
			}
			if got := rows(t, dst, "SELECT commit_lsn, tx_pos, events, snapshot_rows FROM pgflo.progress"); got != "0/0|-1|0|"+strconv.Itoa(rowsTotal) {
				t.Fatalf("progress: %s", got)
			}
		})
	}
}

// A pack delivered again (a redone snapshot chunk, a lost acknowledgement)
// makes COPY hit existing rows: it is rolled back and the rows upserted,
// without error or duplicates; COPY is not tried on the table for a while.
func TestPacksDeliveredAgainAreUpserted(t *testing.T) {
	src, packs := packSource(t)
	packs = packs[3:9] // the mixed table
	dst := packTarget(t)
	a, log := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	if res := apply(t, a, packs...); res.PackRows != 700 {
		t.Fatalf("first delivery: %+v", res)
	}
	// The target drifted meanwhile; the snapshot rows win.
	testenv.Exec(t, dst, "UPDATE mixed SET t = 'drift', extra = 'kept' WHERE id = 1")
	for i := 0; i < 2; i++ {
		res := apply(t, a, packs...)
		if res.PackRows != 0 || res.Applied != 700 || res.Skipped != 0 {
			t.Fatalf("delivery %d: %+v", i+2, res)
		}
		sameTables(t, src, dst, mixedDigest)
	}
	if got := rows(t, dst, "SELECT count(*) FILTER (WHERE extra = 'kept') FROM mixed"); got != "1" {
		t.Fatalf("the target's own column was overwritten: %s", got)
	}
	if n := a.noCopyBatches[TableName{Schema: "public", Name: "mixed"}]; n != noCopyAfterConflict-2 {
		t.Fatalf("COPY back-off at %d", n)
	}
	if len(log.warns) > 0 {
		t.Fatalf("warnings %q", log.warns)
	}
	// Part of a pack again, after new packs: the new ones are copied, the
	// old one conflicts and the whole run is upserted.
	b, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	testenv.Exec(t, src, "INSERT INTO mixed SELECT i, 'new ' || i FROM generate_series(701, 900) i")
	testenv.Exec(t, src, "DELETE FROM mixed WHERE id <= 700")
	var pos int64
	fresh := copyPacks(t, src, "mixed", 100, &pos)
	if res := apply(t, b, numbered(append(fresh, packs[0]))...); res.PackRows != 0 || res.Applied != 328 {
		t.Fatalf("mixed run: %+v", res)
	}
	if got := rows(t, dst, "SELECT count(*), count(*) FILTER (WHERE t LIKE 'new %') FROM mixed"); got != "900|200" {
		t.Fatalf("target: %s", got)
	}
}

// usersSourceAndTarget makes a source database whose users table holds 400
// rows (bio as the SQL expression of i given) and a target database with
// the table empty.
func usersSourceAndTarget(t *testing.T, bio string) (src, dst string) {
	t.Helper()
	const table = "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)"
	src, dst = pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, src, table+"; INSERT INTO users SELECT i, 'e' || i, i, "+bio+" FROM generate_series(1, 400) i")
	testenv.Exec(t, dst, table)
	return src, dst
}

// Changes after packs in the batch apply after the packs' rows, in the same
// transaction: UPDATEs and DELETEs of the packs' keys, more INSERTs; packs
// after other changes are applied through the planner, in order.
func TestPacksThenChangesOfTheirRows(t *testing.T) {
	src, dst := usersSourceAndTarget(t, "CASE WHEN i % 3 = 0 THEN NULL ELSE E'bio\\n' || i END")
	a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	var pos int64
	packs := copyPacks(t, src, "users", 150, &pos)
	var s stream
	after := s.tx(upd("users", "5", "changed", "-5"), del("users", "6"), ins("users", "1000", "new", "1"),
		ch(event.Update, "users", row("id", "2000", "email", "moved", "n", "7", "bio", null), row("id", "7")), del("users", "400"))
	for _, c := range after {
		c.CommitLSN += snapshotLSN
		c.LSN += snapshotLSN
	}
	batch := numbered(append(append([]*Change{}, packs...), after...))
	res := apply(t, a, batch...)
	if res.PackRows != 400 || res.Applied != 405 {
		t.Fatalf("result %+v", res)
	}
	want := "399|5:changed:-5|1000:new:1|2000:moved:7"
	got := rows(t, dst, "SELECT count(*), string_agg(id || ':' || email || ':' || n, '|' ORDER BY id) FILTER (WHERE id IN (5, 6, 7, 400, 1000, 2000)) FROM users")
	if got != want {
		t.Fatalf("target: %s, want %s", got, want)
	}

	// Packs after other changes (and an UPDATE of their rows after them):
	// planned as their rows' INSERTs, in the batch's order.
	dst2 := pg.NewDatabase(t)
	testenv.Exec(t, dst2, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	b, _ := connectApplier(t, dst2, func(c *Config) { c.CopyMinRows = 64 })
	pos = 0
	packs = copyPacks(t, src, "users", 150, &pos)
	// (first committed before the packs' snapshot was taken: else the
	// packs would be late, see TestLateSnapshotRowsNeverOverwriteNewerChanges.)
	first := s.tx(ins("users", "1", "before", "0"))
	last := s.tx(upd("users", "2", "after", "2"), del("users", "3"))
	for _, c := range last {
		c.CommitLSN += snapshotLSN
		c.LSN += snapshotLSN
	}
	batch = numbered(append(append(append([]*Change{}, first...), packs...), last...))
	res = apply(t, b, batch...)
	if res.PackRows != 0 || res.Applied != 403 {
		t.Fatalf("result %+v", res)
	}
	if got := rows(t, dst2, "SELECT count(*), string_agg(id || ':' || email, '|' ORDER BY id) FILTER (WHERE id <= 3) FROM users"); got != "399|1:e1|2:after" {
		t.Fatalf("target: %s", got)
	}
}

// Snapshot rows that arrive after the group applied changes streamed after
// their snapshot — a batch delivered again, or the copy of a replicator that
// lost its group to another — never overwrite those changes nor bring back
// deleted rows: packs at the head of a batch, packs and snapshot events
// after streamed changes in the same batch, and snapshot events are all
// skipped, and the user is told. Rows of a newer snapshot still apply.
func TestLateSnapshotRowsNeverOverwriteNewerChanges(t *testing.T) {
	src, dst := usersSourceAndTarget(t, "NULL")
	a, log := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	var pos int64
	packs := copyPacks(t, src, "users", 100, &pos)
	if res := apply(t, a, numbered(packs)...); res.PackRows != 400 {
		t.Fatalf("the copy: %+v", res)
	}
	s := stream{lsn: snapshotLSN}
	newer := s.tx(upd("users", "1", "streamed", "-1"), del("users", "2"), del("users", "350"))
	apply(t, a, newer...)
	const want = "398|1:streamed:-1|3:e3:3"
	target := func() string {
		return rows(t, dst, "SELECT count(*), string_agg(id || ':' || email || ':' || n, '|' ORDER BY id) FILTER (WHERE id IN (1, 2, 3, 350)) FROM users")
	}

	// The copy's packs again, alone: skipped whole.
	if res := apply(t, a, numbered(packs)...); res.Applied != 0 || res.Skipped != 400 {
		t.Fatalf("late packs: %+v", res)
	}
	if got := target(); got != want {
		t.Fatalf("after late packs: %s, want %s", got, want)
	}
	if len(log.warns) != 1 || !strings.Contains(log.warns[0], "Skipped 400 snapshot rows") {
		t.Fatalf("warnings %q", log.warns)
	}
	// Streamed changes, then late packs and a late snapshot event, in one
	// batch: the batch's own changes make them late too.
	more := s.tx(upd("users", "3", "again", "-3"))
	late := ins("users", "1", "stale", "1")
	late.Snapshot, late.CommitLSN, late.LSN, late.Pos = true, snapshotLSN, snapshotLSN, 0
	batch := numbered(slices.Concat(more, packs[:1], []*Change{late}))
	b, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	if res := apply(t, b, batch...); res.Applied != 1 || res.Skipped != 101 {
		t.Fatalf("streamed then late: %+v", res)
	}
	if got := target(); got != "398|1:streamed:-1|3:again:-3" {
		t.Fatalf("after a batch of streamed then late rows: %s", got)
	}
	// A snapshot event alone, late: skipped.
	late.Index = 0
	if res := apply(t, b, late); res.Applied != 0 || res.Skipped != 1 {
		t.Fatalf("late snapshot event: %+v", res)
	}
	// A newer snapshot (a new slot's copy) applies.
	fresh := ins("users", "2", "fresh", "2")
	fresh.Snapshot, fresh.CommitLSN, fresh.LSN, fresh.Pos = true, s.lsn+0x1000, s.lsn+0x1000, 0
	if res := apply(t, b, fresh); res.Applied != 1 {
		t.Fatalf("newer snapshot row: %+v", res)
	}
	if got := rows(t, dst, "SELECT email FROM users WHERE id = 2"); got != "fresh" {
		t.Fatalf("newer snapshot row on the target: %q", got)
	}
}

// A pack with a column the target lacks fails as an INSERT event with that
// column does: naming the table, the column, the key and the LSN.
func TestPackColumnMissingOnTarget(t *testing.T) {
	src := pg.NewDatabase(t)
	testenv.Exec(t, src, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text); INSERT INTO users SELECT i, 'e', i FROM generate_series(1, 100) i")
	dst := pg.NewDatabase(t)
	testenv.Exec(t, dst, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4)")
	a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 10 })
	var pos int64
	packs := copyPacks(t, src, "users", 100, &pos)
	_, packErr := a.Apply(context.Background(), packs)
	var ce *ChangeError
	if !errors.As(packErr, &ce) {
		t.Fatalf("error %v (%T), want a *ChangeError", packErr, packErr)
	}
	for _, want := range []string{`apply INSERT to "public"."users" key (id)=(1) at LSN 0/1000`, `column "bio" of the event does not exist in target table "public"."users"`} {
		if !strings.Contains(packErr.Error(), want) {
			t.Errorf("error %q does not name %q", packErr, want)
		}
	}
	// The same row as an INSERT event.
	ev := ins("users", "1", "e", "1")
	ev.Snapshot, ev.LSN, ev.CommitLSN = true, snapshotLSN, snapshotLSN
	_, evErr := a.Apply(context.Background(), []*Change{ev})
	if evErr == nil || evErr.Error() != packErr.Error() {
		t.Fatalf("event error %v\npack error  %v", evErr, packErr)
	}
	if n := testenv.QueryInt(t, dst, "SELECT count(*) FROM users"); n != 0 {
		t.Fatalf("%d rows written", n)
	}
}

// A pack whose rows are not what its header says fails the batch, naming
// the table and the row, and writes nothing.
func TestMalformedPack(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE users (id int8 PRIMARY KEY, email text, n int4, bio text)")
	a, _ := connectApplier(t, dsn, func(c *Config) { c.CopyMinRows = 1 })
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "users", usersCols, snapshotLSN))
	body = append(body, "1\ta\t1\t\\N\n2\tb\t2\n"...)
	pack := &Change{}
	if err := DecodePack(body, pack); err != nil {
		t.Fatal(err)
	}
	_, err := a.Apply(context.Background(), []*Change{pack})
	if err == nil || !errors.Is(err, copypack.ErrMalformed) || !strings.Contains(err.Error(), `"public"."users"`) || !strings.Contains(err.Error(), "row 1 of public.users") {
		t.Fatalf("error %v", err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM users"); n != 0 {
		t.Fatalf("%d rows written", n)
	}
}

// Packs handed over while the batch is decoded stream into one COPY; a
// decoding failure later rolls them back.
func TestPacksStreamWhileDecoded(t *testing.T) {
	src, packs := packSource(t)
	dst := packTarget(t)
	a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64 })
	feed := func(fail bool) *Batch {
		f := NewBatch(len(packs) + 1)
		go func() {
			for _, p := range packs {
				f.Add(p)
				time.Sleep(5 * time.Millisecond)
			}
			if fail {
				f.Fail(errors.New("message 12 is not an event"))
			} else {
				var s stream
				u := s.tx(&Change{Event: event.Event{V: 1, Op: event.Delete, Schema: "public", Table: "mixed", Old: row("id", "1")}})[0]
				u.Index = len(packs)
				u.CommitLSN += snapshotLSN
				f.Add(u)
			}
		}()
		return f
	}
	if _, err := a.ApplyBatch(context.Background(), feed(true)); err == nil || err.Error() != "message 12 is not an event" {
		t.Fatalf("error %v", err)
	}
	if n := testenv.QueryInt(t, dst, "SELECT (SELECT count(*) FROM mixed) + (SELECT count(*) FROM types) + (SELECT count(*) FROM log)"); n != 0 {
		t.Fatalf("%d rows of a failed batch were committed", n)
	}
	res, err := a.ApplyBatch(context.Background(), feed(false))
	if err != nil || res.PackRows != 1000 || res.Applied != 1006 {
		t.Fatalf("result %+v, error %v", res, err)
	}
	testenv.Exec(t, src, "DELETE FROM mixed WHERE id = 1")
	sameTables(t, src, dst)
}

// With copy_connections, a run of packs is written in shares, the first in
// the batch's transaction and the others on side connections at once; a
// run delivered again conflicts everywhere and is upserted, and a run where
// only some shares conflict ends equal to the source all the same.
func TestPacksCopiedOverSeveralConnections(t *testing.T) {
	src, packs := packSource(t)
	packs = packs[3:9] // the mixed table, 700 rows in 6 packs
	dst := packTarget(t)
	a, log := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64; c.CopyConnections = 3 })
	if res := apply(t, a, packs...); res.PackRows != 700 || res.Applied != 700 {
		t.Fatalf("first delivery: %+v", res)
	}
	sameTables(t, src, dst, mixedDigest)
	if len(a.side) != 2 {
		t.Fatalf("%d side connections, want 2", len(a.side))
	}
	// Delivered again: every share conflicts and is upserted.
	testenv.Exec(t, dst, "UPDATE mixed SET t = 'drift' WHERE id = 1")
	if res := apply(t, a, packs...); res.PackRows != 0 || res.Applied != 700 {
		t.Fatalf("second delivery: %+v", res)
	}
	sameTables(t, src, dst, mixedDigest)
	// Only the last pack's rows exist: the other shares are copied, the
	// conflicting one upserted.
	b, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64; c.CopyConnections = 3 })
	last := packs[len(packs)-1]
	testenv.Exec(t, dst, fmt.Sprintf("DELETE FROM mixed WHERE id NOT IN (SELECT id FROM mixed ORDER BY id DESC LIMIT %d)", last.Pack.N))
	res := apply(t, b, packs...)
	if res.Applied != 700 || res.PackRows == 0 || res.PackRows == 700 {
		t.Fatalf("partly present: %+v", res)
	}
	sameTables(t, src, dst, mixedDigest)
	if len(log.warns) > 0 {
		t.Fatalf("warnings %q", log.warns)
	}
	if n := int(split(packs, 3)[0][0].Pack.N); n == 0 {
		t.Fatal("empty share")
	}
}

// A side connection that waits too long for a lock hands its packs to the
// batch's own transaction, which waits as long as it must.
func TestPacksCopiedPastALock(t *testing.T) {
	defer func(s string) { sideLockTimeout = s }(sideLockTimeout)
	sideLockTimeout = "100ms"
	src, packs := packSource(t)
	packs = packs[3:9]
	dst := packTarget(t)
	a, _ := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 64; c.CopyConnections = 3 })
	holdLock(t, dst, "LOCK TABLE mixed IN SHARE MODE", 500*time.Millisecond)
	if res := apply(t, a, packs...); res.Applied != 700 || res.PackRows == 700 {
		t.Fatalf("applied %+v; want 700 rows, the side connections' not copied by them", res)
	}
	sameTables(t, src, dst, mixedDigest)
}

func TestSplitShares(t *testing.T) {
	mk := func(sizes ...int) []*Change {
		var out []*Change
		for _, n := range sizes {
			out = append(out, &Change{Pack: &copypack.Pack{N: n}})
		}
		return out
	}
	for _, c := range []struct {
		sizes []int
		n     int
		want  []int // packs per share
	}{
		{[]int{100, 100, 100, 100}, 2, []int{2, 2}},
		{[]int{100, 100, 100, 100}, 4, []int{1, 1, 1, 1}},
		{[]int{100, 100, 100}, 4, []int{1, 1, 1}},
		{[]int{1000, 10, 10, 10}, 2, []int{1, 3}},
		{[]int{10, 10, 10, 1000}, 2, []int{3, 1}},
		{[]int{5}, 3, []int{1}},
	} {
		got := split(mk(c.sizes...), c.n)
		var shape []int
		total := 0
		for _, g := range got {
			shape = append(shape, len(g))
			total += len(g)
		}
		if fmt.Sprint(shape) != fmt.Sprint(c.want) || total != len(c.sizes) {
			t.Errorf("split(%v, %d) = %v, want %v", c.sizes, c.n, shape, c.want)
		}
	}
}

// A table that schema sync creates in the batch's own transaction is not
// visible to the side connections yet: their shares are written in that
// transaction instead, and COPY stays on for the next batches.
func TestPacksIntoATableCreatedInTheBatch(t *testing.T) {
	src, packs := packSource(t)
	packs = packs[3:9] // the mixed table
	dst := pg.NewDatabase(t)
	created := 0
	a, log := connectApplier(t, dst, func(c *Config) {
		c.CopyMinRows, c.CopyConnections = 64, 3
		c.CreateTable = func(ctx context.Context, conn *pgx.Conn, ch *Change) error {
			created++
			_, err := conn.Exec(ctx, mixedTable)
			return err
		}
	})
	res := apply(t, a, packs...)
	// The first share went to COPY in the batch's transaction, the others
	// were upserted there.
	if created != 1 || res.Applied != 700 || res.PackRows == 0 || res.PackRows == 700 {
		t.Fatalf("created %d tables, result %+v", created, res)
	}
	sameTables(t, src, dst, mixedDigest)
	if n := a.noCopyBatches[TableName{Schema: "public", Name: "mixed"}]; n != 0 {
		t.Fatalf("COPY off for %d batches after the table was created", n)
	}
	if len(log.warns) > 0 {
		t.Fatalf("warnings %q", log.warns)
	}
}

// Packs of a table whose every column type has a binary conversion (the
// mixed table) go to COPY in binary, serially and in shares; with
// TextCopy, or for a table with other types, as text. The target
// ends equal to the source either way.
func TestPacksCopiedInBinary(t *testing.T) {
	src, packs := packSource(t)
	for _, tc := range []struct {
		name   string
		conns  int
		binary bool
	}{{"serial", 1, true}, {"shares", 3, true}, {"text", 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dst := packTarget(t)
			a, log := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 1; c.CopyConnections = tc.conns; c.TextCopy = !tc.binary })
			if res := apply(t, a, packs...); res.PackRows != 1005 || res.Applied != 1005 {
				t.Fatalf("applied %+v", res)
			}
			sameTables(t, src, dst)
			want := map[string]string{`"public"."types"`: "text", `"public"."mixed"`: "binary", `"public"."log"`: "binary"}
			for table, format := range want {
				if !tc.binary {
					format = "text"
				}
				if !logged(log.debugs, "into "+table+" with COPY ("+format+")") {
					t.Errorf("%s not written with COPY (%s): %q", table, format, log.debugs)
				}
			}
			if len(log.infos) > 0 {
				t.Errorf("told %q", log.infos)
			}
		})
	}
}

// A value the conversion declines (a timestamp beyond the years it reads)
// ends the binary COPY before its pack: the rows before it are in, the rest
// go as text, the user is told which column, and nothing is lost, serially
// and in shares.
func TestPacksDeclinedByTheConversionGoAsText(t *testing.T) {
	src := pg.NewDatabase(t)
	const table = "CREATE TABLE far (id int8 PRIMARY KEY, ts timestamp, note text)"
	testenv.Exec(t, src, table)
	testenv.Exec(t, src, `INSERT INTO far SELECT i, CASE WHEN i = 250 THEN '294276-12-31 23:59:59'::timestamp
		ELSE '2026-01-01'::timestamp + i * interval '1 minute' END, 'row ' || i FROM generate_series(1, 400) i`)
	var pos int64
	packs := numbered(copyPacks(t, src, "far", 100, &pos))
	digest := "SELECT md5(string_agg(far::text, ',' ORDER BY id)) FROM far"
	// from 2: the declined value is in the run's first pack.
	for _, tc := range []struct{ conns, from int }{{1, 0}, {4, 0}, {1, 2}} {
		t.Run(fmt.Sprintf("connections_%d_from_%d", tc.conns, tc.from), func(t *testing.T) {
			run := numbered(packs[tc.from:])
			dst := pg.NewDatabase(t)
			testenv.Exec(t, dst, table)
			a, log := connectApplier(t, dst, func(c *Config) { c.CopyMinRows = 1; c.CopyConnections = tc.conns })
			res := apply(t, a, run...)
			if res.Applied != rowsOf(run) {
				t.Fatalf("applied %+v", res)
			}
			if tc.from > 0 {
				sameTables(t, src, dst, digest+" WHERE id > 200")
			} else {
				sameTables(t, src, dst, digest)
			}
			if len(log.infos) != 1 || !strings.Contains(log.infos[0], `go to COPY as text from now on`) ||
				!strings.Contains(log.infos[0], `column "ts"`) || strings.Contains(log.infos[0], "294276") {
				t.Fatalf("told %q; want one message naming the column, not the value", log.infos)
			}
			// The next snapshot rows of the table go as text at once.
			testenv.Exec(t, dst, "TRUNCATE far")
			if res := apply(t, a, run...); res.PackRows != rowsOf(run) {
				t.Fatalf("applied again %+v", res)
			}
			if !logged(log.debugs, `into "public"."far" with COPY (text)`) || len(log.infos) != 1 {
				t.Fatalf("second time: %q %q", log.debugs, log.infos)
			}
		})
	}
}

// Packs of binary tuples (the replicator read the source with binary COPY)
// go to a binary COPY as they are where the target's columns have the
// source's types, as rendered COPY text where one does not or with
// TextCopy, and as their rows' upserts without COPY; serially and in
// shares, the target ends equal to the source.
func TestBinaryPacks(t *testing.T) {
	src, _ := packSource(t)
	var pos int64
	packs := copyPacksAs(t, src, "mixed", 128, &pos, true)
	packs = numbered(append(packs, copyPacksAs(t, src, "log", 100, &pos, true)...))
	for _, tc := range []struct {
		name           string
		conns, copyMin int
		binary         bool
		logTarget      string // the log table on the target
		mixed, log     string // how each table's rows went to COPY
	}{
		{"serial", 1, 1, true, "", "binary, as they came", "binary, as they came"},
		{"shares", 3, 1, true, "", "binary, as they came", "binary, as they came"},
		{"other_type", 1, 1, true, "CREATE TABLE log (t text, id numeric)", "binary, as they came", "text, rendered from binary"},
		{"text_copy", 3, 1, false, "", "text, rendered from binary", "text, rendered from binary"},
		{"upserts", 1, 0, true, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := packTarget(t)
			if tc.logTarget != "" {
				testenv.Exec(t, dst, "DROP TABLE log; "+tc.logTarget)
			}
			a, log := connectApplier(t, dst, func(c *Config) {
				c.CopyMinRows, c.CopyConnections, c.TextCopy = tc.copyMin, tc.conns, !tc.binary
			})
			res := apply(t, a, packs...)
			if res.Applied != 1000 || (tc.copyMin > 0) != (res.PackRows == 1000) {
				t.Fatalf("applied %+v", res)
			}
			sameTables(t, src, dst, packDigests[1:]...)
			for table, format := range map[string]string{`"public"."mixed"`: tc.mixed, `"public"."log"`: tc.log} {
				if format != "" && !logged(log.debugs, "into "+table+" with COPY ("+format+")") {
					t.Errorf("%s not written with COPY (%s): %q", table, format, log.debugs)
				}
			}
		})
	}
}

func logged(lines []string, part string) bool {
	for _, l := range lines {
		if strings.Contains(l, part) {
			return true
		}
	}
	return false
}

// The rows of a pack that came as one message each name their own message
// once expanded; a pack that came as one message names it for every row.
func TestExpandedRowsNameTheirMessage(t *testing.T) {
	cols := []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "v", Type: "text", OID: 25}}
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", "t", cols, snapshotLSN))
	body = append(body, "1\ta\n2\tb\n3\tc\n"...)
	for _, rowMessages := range []bool{false, true} {
		ch := &Change{Index: 5, Pos: 10, RowMessages: rowMessages}
		if err := DecodePack(body, ch); err != nil {
			t.Fatal(err)
		}
		rows, err := ch.expand()
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			want := 5
			if rowMessages {
				want += i
			}
			if r.Index != want || r.Pos != int64(10+i) {
				t.Errorf("row messages %v, row %d: index %d, position %d; want %d, %d", rowMessages, i, r.Index, r.Pos, want, 10+i)
			}
		}
	}
}
