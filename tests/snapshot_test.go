package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

const bigTableSQL = `
CREATE TABLE big (id bigint PRIMARY KEY, n int, t text, amount numeric(12,3), at timestamptz, flag bool,
                  doc jsonb, u uuid, raw bytea, tags text[]);
INSERT INTO big SELECT g, g %% 1000, 'row ' || g || E'\ttab', g * 1.5, '2026-01-01'::timestamptz + g * interval '1 second',
       g %% 2 = 0, jsonb_build_object('g', g, 's', 'x"y'), md5(g::text)::uuid, decode(md5(g::text), 'hex'),
       ARRAY['a' || g, 'b,c', NULL]
FROM generate_series(1, %d) g;
ALTER TABLE big ALTER COLUMN doc SET STORAGE EXTERNAL;`

// taggedEvent is an output line: the event and the pg_flo_tx the worker
// added to it (see tagTx).
type taggedEvent struct {
	event.Event
	Tx string
}

// tagTx is a worker processor copying the pg_flo_tx metadata into the body,
// so tests can tell which snapshot run and chunk an event came from.
const tagTx = "    - mapping: |\n        root = this\n        root.tx = @pg_flo_tx"

func readTagged(t *testing.T, path string) []taggedEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		return nil
	}
	var out []taggedEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		ev, err := eventtest.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("output line %d: %v", len(out)+1, err)
		}
		var tag struct {
			Tx string `json:"tx"`
		}
		_ = json.Unmarshal(sc.Bytes(), &tag)
		out = append(out, taggedEvent{Event: *ev, Tx: tag.Tx})
	}
	return out
}

// replica replays change events in order, as an idempotent apply would, and
// renders the resulting tables like QueryRows does.
type replica struct {
	keyed map[string]map[string]event.Row // table → key → row
	full  map[string]map[string]int       // table → whole row → count (no key)
	cols  map[string][]event.Column
}

func newReplica() *replica {
	return &replica{keyed: map[string]map[string]event.Row{}, full: map[string]map[string]int{}, cols: map[string][]event.Column{}}
}

func rowText(cols []event.Column, row event.Row, onlyKey bool) string {
	var parts []string
	for _, c := range cols {
		if onlyKey && !c.Key {
			continue
		}
		v, ok := row.Get(c.Name)
		switch {
		case !ok:
			parts = append(parts, "<absent>")
		case v.Null:
			parts = append(parts, testenv.NullText)
		default:
			parts = append(parts, v.Text)
		}
	}
	return strings.Join(parts, "\x1f")
}

func allKey(cols []event.Column) bool {
	for _, c := range cols {
		if !c.Key {
			return false
		}
	}
	return true
}

func (r *replica) apply(ev event.Event) {
	table := ev.Table
	r.cols[table] = ev.Columns
	if allKey(ev.Columns) { // REPLICA IDENTITY FULL: a multiset of rows
		m := r.full[table]
		if m == nil {
			m = map[string]int{}
			r.full[table] = m
		}
		switch ev.Op {
		case event.Insert:
			m[rowText(ev.Columns, ev.New, false)]++
		case event.Update:
			m[rowText(ev.Columns, ev.Old, false)]--
			m[rowText(ev.Columns, ev.New, false)]++
		case event.Delete:
			m[rowText(ev.Columns, ev.Old, false)]--
		case event.Truncate:
			r.full[table] = map[string]int{}
		}
		return
	}
	m := r.keyed[table]
	if m == nil {
		m = map[string]event.Row{}
		r.keyed[table] = m
	}
	switch ev.Op {
	case event.Insert:
		m[rowText(ev.Columns, ev.New, true)] = ev.New
	case event.Update:
		oldKey := rowText(ev.Columns, ev.Old, true)
		prev := m[oldKey]
		delete(m, oldKey)
		row := append(event.Row{}, ev.New...)
		for _, name := range ev.UnchangedToast {
			if v, ok := prev.Get(name); ok {
				row = append(row, v)
			}
		}
		m[rowText(ev.Columns, ev.New, true)] = row
	case event.Delete:
		delete(m, rowText(ev.Columns, ev.Old, true))
	case event.Truncate:
		r.keyed[table] = map[string]event.Row{}
	}
}

// rows renders a table of the replica as sorted lines.
func (r *replica) rows(table string) []string {
	cols := r.cols[table]
	var out []string
	for _, row := range r.keyed[table] {
		out = append(out, rowText(cols, row, false))
	}
	for row, n := range r.full[table] {
		for i := 0; i < n; i++ {
			out = append(out, row)
		}
	}
	sort.Strings(out)
	return out
}

func sourceRows(t *testing.T, dsn, table string) []string {
	t.Helper()
	var out []string
	for _, row := range testenv.QueryRows(t, dsn, "SELECT * FROM "+table) {
		out = append(out, strings.Join(row, "\x1f"))
	}
	sort.Strings(out)
	return out
}

// sameRows compares a replica table with the source, describing the first
// difference.
func sameRows(got, want []string) (bool, string) {
	if len(got) != len(want) {
		return false, fmt.Sprintf("%d rows, source has %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return false, fmt.Sprintf("row %d differs:\n  replica %q\n  source  %q", i, got[i], want[i])
		}
	}
	return true, ""
}

func snapshotState(t *testing.T, natsURL, group string) *state.Snapshot {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, jsproto.StateBucket(group))
	if err != nil {
		return nil
	}
	entry, err := kv.Get(ctx, state.SnapshotKey)
	if err != nil {
		return nil
	}
	var snap state.Snapshot
	if err := json.Unmarshal(entry.Value(), &snap); err != nil {
		t.Fatal(err)
	}
	return &snap
}

// waitReplicaEquals replays the output until every table equals the source.
func waitReplicaEquals(t *testing.T, p *pipeline, tables []string, timeout time.Duration) []taggedEvent {
	t.Helper()
	var events []taggedEvent
	var diff string
	deadline := time.Now().Add(timeout)
	for {
		events = readTagged(t, p.output)
		r := newReplica()
		for _, ev := range events {
			r.apply(ev.Event)
		}
		ok := true
		for _, table := range tables {
			same, d := sameRows(r.rows(table), sourceRows(t, p.dsn, table))
			if !same {
				ok, diff = false, table+": "+d
				break
			}
		}
		if ok {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the replayed output does not equal the source (%d events): %s", timeout, len(events), diff)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// copy_and_stream of a big mixed-type table, an empty one and one without a
// primary key, while a writer keeps changing them: every snapshot row arrives
// once, every later change arrives, and replaying the output reproduces the
// source.
func TestCopyAndStreamWhileWriting(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, fmt.Sprintf(bigTableSQL, 200000))
	testenv.Exec(t, dsn, `CREATE TABLE empty (id int PRIMARY KEY, v text);
		CREATE TABLE nopk (a int, b text); ALTER TABLE nopk REPLICA IDENTITY FULL;
		INSERT INTO nopk SELECT g % 100, 'b' || g FROM generate_series(1, 1000) g;
		ALTER TABLE nopk ADD COLUMN dropped int; ALTER TABLE nopk DROP COLUMN dropped;`)
	p := newPipeline(t, dsn, "snap")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [big, empty, nopk]\n    copy_chunk_pages: 200\n    max_copy_workers: 3\n    max_copy_workers_per_table: 2", p.nats.URL())
	p.workerProcessors = tagTx

	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(1))
		next := 300000
		for !stop.Load() {
			id := 1 + rng.Intn(200000)
			var sql string
			switch rng.Intn(6) {
			case 0:
				next++
				sql = fmt.Sprintf("INSERT INTO big (id, n, t, tags) VALUES (%d, 1, 'new', '{x,NULL}')", next)
			case 1:
				sql = fmt.Sprintf("UPDATE big SET n = n + 1, t = t || '+', doc = doc || '{\"u\": 1}' WHERE id = %d", id)
			case 2:
				sql = fmt.Sprintf("DELETE FROM big WHERE id = %d", id)
			case 3:
				sql = fmt.Sprintf("INSERT INTO empty VALUES (%d, 'v') ON CONFLICT (id) DO UPDATE SET v = empty.v || 'w'", rng.Intn(50))
			case 4:
				sql = fmt.Sprintf("UPDATE nopk SET b = b || '!' WHERE a = %d AND b LIKE 'b1%%'", rng.Intn(100))
			default:
				sql = fmt.Sprintf("BEGIN; DELETE FROM nopk WHERE ctid = (SELECT ctid FROM nopk WHERE a = %d LIMIT 1); INSERT INTO nopk VALUES (%d, 'n'); COMMIT", rng.Intn(100), rng.Intn(100))
			}
			testenv.Exec(t, dsn, sql)
			writes.Add(1)
		}
	}()

	p.startReplicatorNoWait()
	p.startWorker("")
	// Keep writing while the copy runs and a little after it is done.
	testenv.Eventually(t, 120*time.Second, "snapshot complete", func() bool {
		s := snapshotState(t, p.nats.URL(), p.group)
		return s != nil && s.Complete
	})
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d writes during the copy", writes.Load())

	events := waitReplicaEquals(t, p, []string{"big", "empty", "nopk"}, 120*time.Second)
	snapshotIDs := map[string]int{}
	counts := map[event.Op]int{}
	for _, ev := range events {
		counts[ev.Op]++
		if ev.Snapshot {
			if ev.Op != event.Insert || !strings.HasPrefix(ev.Tx, "snapshot.") {
				t.Fatalf("snapshot event %s with tx %q", ev.Op, ev.Tx)
			}
			if ev.Table == "big" {
				v, _ := ev.New.Get("id")
				snapshotIDs[v.Text]++
			}
		}
	}
	for id, n := range snapshotIDs {
		if n != 1 {
			t.Fatalf("snapshot row big.id=%s arrived %d times", id, n)
		}
	}
	if len(snapshotIDs) < 199000 {
		t.Fatalf("only %d snapshot rows of big", len(snapshotIDs))
	}
	if counts[event.Update] == 0 || counts[event.Delete] == 0 {
		t.Fatalf("no streamed changes in the output: %v", counts)
	}
	t.Logf("output: %v, %d snapshot rows of big", counts, len(snapshotIDs))
}

// copy mode copies the tables and then ends: the replicator exits by itself.
func TestCopyModeEnds(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 5000) g")
	p := newPipeline(t, dsn, "copyonly")
	p.replicatorExtra = fmt.Sprintf("    mode: copy\n    nats:\n      url: %s\n    copy_chunk_pages: 5", p.nats.URL())
	p.startReplicatorNoWait()
	p.startWorker("")
	done := make(chan error, 1)
	go func() { done <- p.replicator.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("replicator in copy mode exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("replicator in copy mode did not end by itself")
	}
	waitReplicaEquals(t, p, []string{"items"}, 30*time.Second)
	if n := len(p.events()); n != 5000 {
		t.Fatalf("%d events, want exactly the 5000 rows", n)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots"); n != 0 {
		t.Errorf("copy mode created %d slots", n)
	}
	if s := snapshotState(t, p.nats.URL(), p.group); s == nil || !s.Complete {
		t.Errorf("snapshot state %+v, want complete", s)
	}
}

// kill -9 of the replicator halfway through a copy: the restart copies only
// the unfinished chunks and the output still replays to the source. Rows
// with a TOASTed value, in the last chunk, are moved into a chunk copied
// before the kill by UPDATEs that leave that value out: the restart reads
// them again by key.
func TestSnapshotResumesByChunk(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, fmt.Sprintf(bigTableSQL, 200000))
	testenv.Exec(t, dsn, `INSERT INTO big (id, n, doc) SELECT g, 0, jsonb_build_object('pad', repeat('p', 4000)) FROM generate_series(300001, 300100) g`)
	p := newPipeline(t, dsn, "resume")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    copy_chunk_pages: 100\n    max_copy_workers: 1\n    max_batch_events: 1024", p.nats.URL())
	p.workerProcessors = tagTx
	p.startReplicatorNoWait()
	p.startWorker("")

	var before *state.Snapshot
	testenv.Eventually(t, 120*time.Second, "a few chunks done", func() bool {
		before = snapshotState(t, p.nats.URL(), p.group)
		return before != nil && len(before.Tables) == 1 && len(before.Tables[0].Done) >= 5
	})
	p.replicator.Kill()
	before = snapshotState(t, p.nats.URL(), p.group)
	total := len(before.Tables[0].Chunks)
	doneBefore := append([]int{}, before.Tables[0].Done...)
	if before.Complete || len(doneBefore) >= total {
		t.Fatalf("the copy finished before the kill (%d of %d chunks): make it slower", len(doneBefore), total)
	}
	t.Logf("killed with %d of %d chunks done", len(doneBefore), total)

	// Room in the first chunk copied, and only there (and on the last
	// page): the TOASTed rows' new versions land in it.
	first := before.Tables[0].Chunks[0]
	if !slices.Contains(doneBefore, first.ID) {
		t.Fatalf("chunk %d, the table's first, was not copied before the kill", first.ID)
	}
	inFirst := fmt.Sprintf("ctid >= '(%d,0)' AND ctid < '(%d,0)'", first.FirstPage, first.FirstPage+20)
	testenv.Exec(t, dsn, "DELETE FROM big WHERE "+inFirst)
	testenv.Exec(t, dsn, "VACUUM big")
	testenv.Exec(t, dsn, "UPDATE big SET n = n + 1 WHERE id > 300000")
	moved := testenv.QueryInt(t, dsn, "SELECT count(*) FROM big WHERE id > 300000 AND "+inFirst)
	if moved == 0 {
		t.Fatal("setup: no TOASTed row moved into the first chunk")
	}
	t.Logf("%d rows with a TOASTed value moved into chunk %d, copied before the kill", moved, first.ID)

	testenv.Exec(t, dsn, "UPDATE big SET n = -1 WHERE id % 1000 = 0; DELETE FROM big WHERE id % 997 = 0; INSERT INTO big (id) VALUES (900001)")
	testenv.Exec(t, dsn, "UPDATE big SET n = -2 WHERE id % 1000 = 0")
	p.startReplicatorNoWait()
	testenv.Eventually(t, 120*time.Second, "snapshot complete after the restart", func() bool {
		s := snapshotState(t, p.nats.URL(), p.group)
		return s != nil && s.Complete
	})
	events := waitReplicaEquals(t, p, []string{"big"}, 120*time.Second)

	// No row goes back: the changes committed before the restart reach the
	// output before the chunks copied after it, so a row that was -2 is
	// never -1 again (the chunks copied after the restart already hold -2).
	latest := map[string]string{}
	for _, ev := range events {
		v, ok := ev.New.Get("n")
		if !ok {
			continue
		}
		k := keyOf(ev.Event)
		if latest[k] == "-2" && v.Text == "-1" {
			t.Errorf("row %s went back from n = -2 to -1 (%s event at %s)", k, ev.Op, event.FormatLSN(ev.LSN))
		}
		latest[k] = v.Text
	}

	// Chunks finished before the kill were not copied again: their events
	// all come from the first run.
	runsOfChunk := map[string]map[string]bool{}
	rereads := 0
	for _, ev := range events {
		if !ev.Snapshot {
			continue
		}
		parts := strings.Split(ev.Tx, ".") // snapshot.<run>.<chunk>, or keys<table>
		if len(parts) != 3 {
			t.Fatalf("snapshot event with tx %q", ev.Tx)
		}
		if strings.HasPrefix(parts[2], "keys") {
			rereads++
			continue
		}
		if runsOfChunk[parts[2]] == nil {
			runsOfChunk[parts[2]] = map[string]bool{}
		}
		runsOfChunk[parts[2]][parts[1]] = true
	}
	runs := map[string]bool{}
	for _, id := range doneBefore {
		r := runsOfChunk[fmt.Sprint(id)]
		if len(r) != 1 {
			t.Errorf("chunk %d, done before the kill, was copied by %d runs", id, len(r))
		}
		for run := range r {
			runs[run] = true
		}
	}
	if len(runs) != 1 {
		t.Errorf("chunks done before the kill come from %d runs, want the first only", len(runs))
	}
	if len(runsOfChunk) != total {
		t.Errorf("output holds %d chunks, plan has %d", len(runsOfChunk), total)
	}
	if int64(rereads) < moved {
		t.Errorf("%d rows were read again by key, %d moved into a copied chunk", rereads, moved)
	}
	t.Logf("%d rows read again by key", rereads)
}

// Copy modes check SELECT privilege and create nothing when it is missing.
func TestSnapshotNeedsSelect(t *testing.T) {
	dsn := pg.NewDatabase(t)
	db := testenv.QueryRows(t, dsn, "SELECT current_database()")[0][0]
	testenv.Exec(t, dsn, `CREATE TABLE secret (id int PRIMARY KEY);
		DO $$ BEGIN CREATE ROLE copier LOGIN REPLICATION PASSWORD 'c0pier-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		GRANT CREATE ON DATABASE `+pgx.Identifier{db}.Sanitize()+` TO copier;`)
	p := newPipeline(t, strings.Replace(dsn, "postgres@", "copier:c0pier-pw@", 1), "noselect")
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [secret]", p.nats.URL())
	p.startReplicatorNoWait()
	testenv.Eventually(t, 30*time.Second, "the error in the replicator's log", func() bool {
		return strings.Contains(p.replicator.Log(), `has no SELECT privilege on public.secret`)
	})
	if strings.Contains(p.replicator.Log(), "c0pier-pw") {
		t.Error("the log shows the password")
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots") + testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_publication"); n != 0 {
		t.Errorf("%d slots or publications were created", n)
	}
}
