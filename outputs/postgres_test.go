package outputs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/testenv"
)

var pg *testenv.Postgres

func TestMain(m *testing.M) { os.Exit(testenv.RunWithPostgres(m, &pg)) }

func TestPGOutputConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"group: g", "dsn"},
		{"dsn: postgres://u@h/db\ngroup: ' '", "field group: must not be empty"},
		{"dsn: postgres://u@h/db\ngroup: g\nsync_schema: true", "field source_dsn: required with sync_schema: true"},
		{"dsn: postgres://u@h/db\ngroup: g\nprogress_table: a.b.c", "field progress_table"},
		{"dsn: postgres://u@h/db\ngroup: g\ncopy_min_rows: -1", "field copy_min_rows"},
		{"dsn: postgres://u@h/db\ngroup: g\nretries: -2", "field retries"},
		{"dsn: postgres://u@h/db\ngroup: g\non_error: skip", "field on_error"},
		{"dsn: postgres://u@h/db\ngroup: g\nschema_mapping: {public: ''}", "field schema_mapping"},
		{"dsn: postgres://u@h/db\ngroup: g\nkey_columns: [{table: users, columns: []}]", "field key_columns[0].columns"},
		{"dsn: postgres://u@h/db\ngroup: g\nkey_columns: [{table: '', columns: [a]}]", "field key_columns[0].table"},
	} {
		conf, err := pgOutputSpec().ParseYAML(c.yaml, nil)
		if err == nil {
			_, _, err = newPGOutput(conf, service.MockResources())
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %q", c.yaml, err, c.want)
		}
	}
}

func TestPGOutputLintRules(t *testing.T) {
	for yaml, want := range map[string]string{
		"pg_flo_postgres:\n  dsn: x\n":                                  "field group is required",
		"pg_flo_postgres:\n  dsn: x\n  group: g\n  sync_schema: true\n": "field source_dsn is required",
	} {
		err := service.NewStreamBuilder().AddOutputYAML(yaml)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}

// pgTestOutput builds and connects a pg_flo_postgres output.
func pgTestOutput(t *testing.T, yaml string) *pgOutput {
	t.Helper()
	conf, err := pgOutputSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	out, _, err := newPGOutput(conf, service.MockResources())
	if err != nil {
		t.Fatalf("new output: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = out.Close(context.Background()) })
	return out
}

var pgTestColumns = []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "v", Type: "text", OID: 25}}

// pgTestEvent is a change event message as pg_flo_worker hands it on.
func pgTestEvent(op event.Op, table, tx string, pos int, id int, v string) *service.Message {
	lsn, _ := pglogrepl.ParseLSN(tx)
	ev := &event.Event{Op: op, Schema: "public", Table: table, LSN: lsn - 0x80 + pglogrepl.LSN(pos), CommitLSN: lsn, Columns: pgTestColumns}
	row := event.Row{{Name: "id", Text: strconv.Itoa(id)}, {Name: "v", Text: v}}
	switch op {
	case event.Delete:
		ev.Old = row[:1]
	case event.Update:
		ev.New, ev.Old = row, row[:1]
	default:
		ev.New = row
	}
	msg := service.NewMessage(ev.AppendJSON(nil))
	msg.MetaSet(event.MetaOp, string(op))
	msg.MetaSet(event.MetaSchema, ev.Schema)
	msg.MetaSet(event.MetaTable, ev.Table)
	msg.MetaSet(event.MetaTx, tx)
	msg.MetaSet(event.MetaTxPos, strconv.Itoa(pos))
	return msg
}

func pgRows(t *testing.T, dsn, sql string) string {
	t.Helper()
	var out []string
	for _, r := range testenv.QueryRows(t, dsn, sql) {
		out = append(out, strings.Join(r, "|"))
	}
	return strings.Join(out, "\n")
}

func TestPGOutputAppliesBatchesOnce(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text); CREATE TABLE copies (id int8 PRIMARY KEY, v text)")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g1", dsn))
	ctx := context.Background()
	batch := service.MessageBatch{
		pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "a"),
		pgTestEvent(event.Insert, "items", "0/1000", 1, 2, "b"),
		pgTestEvent(event.Update, "items", "0/2000", 0, 1, "a2"),
		pgTestEvent(event.Delete, "items", "0/2000", 1, 2, ""),
	}
	// routed by metadata: the event says items, the metadata copies
	routed := pgTestEvent(event.Insert, "items", "0/2000", 2, 9, "routed")
	routed.MetaSet(event.MetaTable, "copies")
	batch = append(batch, routed)
	if err := out.WriteBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// delivered again (a lost ack): applied once
	if err := out.WriteBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got := pgRows(t, dsn, "SELECT 'items', id, v FROM items UNION ALL SELECT 'copies', id, v FROM copies ORDER BY 1, 2"); got != "copies|9|routed\nitems|1|a2" {
		t.Fatalf("target:\n%s", got)
	}
	if got := pgRows(t, dsn, "SELECT commit_lsn, tx_pos, events FROM pgflo.progress WHERE group_name = 'g1'"); got != "0/2000|2|5" {
		t.Fatalf("progress: %s", got)
	}
}

func TestPGOutputReportsChangeErrors(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text CHECK (v <> 'bad'))")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g1", dsn))
	err := out.WriteBatch(context.Background(), service.MessageBatch{
		pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "ok"),
		pgTestEvent(event.Insert, "items", "0/1000", 1, 2, "bad"),
	})
	if err == nil || !strings.Contains(err.Error(), `apply INSERT to "public"."items" key (id)=(2) at LSN 0/F81`) {
		t.Fatalf("error %v", err)
	}
	// Not a change event: the batch fails, naming the message.
	err = out.WriteBatch(context.Background(), service.MessageBatch{service.NewMessage([]byte(`{"hello":1}`))})
	if err == nil || !strings.Contains(err.Error(), "message 0 of the batch: decode change event") {
		t.Fatalf("error %v", err)
	}
	flagged := pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "ok")
	flagged.SetError(errors.New("malformed pack"))
	err = out.WriteBatch(context.Background(), service.MessageBatch{flagged})
	if err == nil || !strings.Contains(err.Error(), "malformed pack") {
		t.Fatalf("error %v", err)
	}
}

func TestPGOutputReconnects(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text)")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: recon", dsn))
	testenv.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgflo pg_flo_postgres recon'")
	time.Sleep(100 * time.Millisecond)
	batch := service.MessageBatch{pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "a")}
	ctx := context.Background()
	if err := out.WriteBatch(ctx, batch); !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("error %v, want ErrNotConnected", err)
	}
	if err := out.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := out.WriteBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM items"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}

// The output runs in a Benthos stream: batching policy and acks.
func TestPGOutputInAStream(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text)")
	b := service.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: WARN"); err != nil {
		t.Fatal(err)
	}
	produce, err := b.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddOutputYAML(fmt.Sprintf("pg_flo_postgres:\n  dsn: %q\n  group: s\n  batching: {count: 3}", dsn)); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	// Each produce waits for its ack, which comes once the output's batch
	// of three is written.
	acks := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			acks <- produce(ctx, service.MessageBatch{pgTestEvent(event.Insert, "items", "0/1000", i, i, "x")})
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-acks; err != nil {
			t.Fatal(err)
		}
	}
	if got := pgRows(t, dsn, "SELECT count(*), max(batches) FROM items, pgflo.progress"); got != "3|1" {
		t.Fatalf("rows and batches: %s", got)
	}
	if err := stream.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
}

// pgTestPack is a pack message of snapshot rows as pg_flo_replicator emits
// it: rows ids from..to of table, at position pos of the snapshot, with
// text that COPY escapes and a NULL every tenth row.
func pgTestPack(table string, from, to, pos int) *service.Message {
	body := copypack.AppendHeader(nil, copypack.NewHeader("public", table, pgTestColumns, 0x1000))
	for id := from; id <= to; id++ {
		if id%10 == 0 {
			body = fmt.Appendf(body, "%d\t\\N\n", id)
		} else {
			body = fmt.Appendf(body, "%d\tv%d\\ttab\\nnewline\\\\back\n", id, id)
		}
	}
	msg := service.NewMessage(body)
	msg.MetaSet(event.MetaOp, string(event.Insert))
	msg.MetaSet(event.MetaSchema, "public")
	msg.MetaSet(event.MetaTable, table)
	msg.MetaSet(event.MetaLSN, "0/1000")
	msg.MetaSet(event.MetaTx, "0/1000")
	msg.MetaSet(event.MetaTxPos, strconv.Itoa(pos))
	msg.MetaSet(event.MetaPackRows, strconv.Itoa(to-from+1))
	return msg
}

// Pack messages are written with COPY as they are; events after them in the
// batch apply after them; packs delivered again are upserted.
func TestPGOutputAppliesPacks(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text); CREATE TABLE copies (v text, id int8 PRIMARY KEY)")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g1", dsn))
	ctx := context.Background()
	packs := func(table string) service.MessageBatch {
		return service.MessageBatch{pgTestPack(table, 1, 100, 0), pgTestPack(table, 101, 200, 100), pgTestPack(table, 201, 300, 200)}
	}
	batch := append(packs("items"),
		pgTestEvent(event.Update, "items", "0/2000", 0, 5, "changed"),
		pgTestEvent(event.Delete, "items", "0/2000", 1, 6, ""))
	res, err := out.applyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.PackRows != 300 {
		t.Fatalf("%d rows of packs written with COPY, want 300", res.PackRows)
	}
	want := "299|269|0|v1\ttab\nnewline\\back|changed"
	if got := pgRows(t, dsn, "SELECT count(*), count(v), count(*) FILTER (WHERE id = 6), "+
		"(SELECT v FROM items WHERE id = 1), (SELECT v FROM items WHERE id = 5) FROM items"); got != want {
		t.Fatalf("target: %q, want %q", got, want)
	}
	if got := pgRows(t, dsn, "SELECT commit_lsn, tx_pos, events, snapshot_rows FROM pgflo.progress WHERE group_name = 'g1'"); got != "0/2000|1|2|300" {
		t.Fatalf("progress: %s", got)
	}
	// Packs of a table delivered twice: the second time COPY hits the rows
	// and they are upserted. (Another group's: this one applied changes
	// after the packs' snapshot, which makes them late, see
	// internal/apply's TestLateSnapshotRowsNeverOverwriteNewerChanges.)
	other := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g2", dsn))
	packRows := 0
	for i := 0; i < 2; i++ {
		res, err := other.applyBatch(ctx, packs("copies"))
		if err != nil {
			t.Fatal(err)
		}
		packRows += res.PackRows
	}
	if packRows != 300 {
		t.Fatalf("%d rows of packs written with COPY, want 300", packRows)
	}
	if got := pgRows(t, dsn, "SELECT count(*), count(DISTINCT id), count(v) FROM copies"); got != "300|300|270" {
		t.Fatalf("copies: %s", got)
	}
	// A pack whose metadata got lost is still read as one.
	lost := pgTestPack("items", 301, 310, 300)
	lost.MetaDelete(event.MetaPackRows)
	if err := other.WriteBatch(ctx, service.MessageBatch{lost}); err != nil {
		t.Fatal(err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM items"); n != 309 {
		t.Fatalf("%d rows", n)
	}
}

func TestPGOutputRejectsBadPacks(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text); CREATE TABLE narrow (id int8 PRIMARY KEY)")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g1", dsn))
	ctx := context.Background()
	miscounted := pgTestPack("items", 1, 3, 0)
	miscounted.MetaSet(event.MetaPackRows, "4")
	err := out.WriteBatch(ctx, service.MessageBatch{pgTestEvent(event.Insert, "items", "0/900", 0, 9, ""), miscounted})
	if err == nil || !strings.Contains(err.Error(), "message 1 of the batch: malformed copy pack: metadata pg_flo_pack_rows=\"4\", the pack holds 3 rows") {
		t.Fatalf("error %v", err)
	}
	notPack := service.NewMessage([]byte("{\"v\":1}\n1\n"))
	notPack.MetaSet(event.MetaPackRows, "1")
	err = out.WriteBatch(ctx, service.MessageBatch{notPack})
	if err == nil || !strings.Contains(err.Error(), "message 0 of the batch: malformed copy pack") {
		t.Fatalf("error %v", err)
	}
	// The target lacks a column of the pack: the error names it, as for an
	// INSERT event.
	err = out.WriteBatch(ctx, service.MessageBatch{pgTestPack("narrow", 1, 100, 0)})
	if err == nil || !strings.Contains(err.Error(), `apply INSERT to "public"."narrow" key (id)=(1) at LSN 0/1000`) ||
		!strings.Contains(err.Error(), `column "v" of the event does not exist in target table "public"."narrow"`) {
		t.Fatalf("error %v", err)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM narrow)"); n != 0 {
		t.Fatalf("%d rows", n)
	}
}

// With on_error: dead_letter a change the target can never apply, or a
// message that is not a change event, is reported alone in a batch error
// (a deadletter.Rejection naming it) and nothing of the batch is committed;
// a transient failure is not. With stop the error names the stream
// sequence.
func TestPGOutputReportsRejections(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int8 PRIMARY KEY, v text CHECK (v <> 'bad'))")
	out := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g1\non_error: dead_letter", dsn))
	// As pg_flo_worker does: index the batch before the output sees it.
	rejection := func(batch service.MessageBatch) (int, *deadletter.Rejection) {
		t.Helper()
		index := batch.Index()
		err := out.WriteBatch(context.Background(), batch)
		var batchErr *service.BatchError
		if !errors.As(err, &batchErr) || batchErr.IndexedErrors() != 1 {
			t.Fatalf("error %v, want a batch error naming one message", err)
		}
		at, rej := -1, (*deadletter.Rejection)(nil)
		batchErr.WalkMessagesIndexedBy(index, func(i int, _ *service.Message, err error) bool {
			if err != nil && errors.As(err, &rej) {
				at = i
			}
			return true
		})
		return at, rej
	}

	bad := pgTestEvent(event.Insert, "items", "0/1000", 2, 3, "bad")
	bad.MetaSetMut("pg_flo_stream_seq", "7")
	batch := service.MessageBatch{
		pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "ok"),
		pgTestEvent(event.Insert, "items", "0/1000", 1, 2, "ok"),
		bad,
	}
	index, rej := rejection(batch)
	if index != 2 || rej.Reason != deadletter.ReasonTarget || rej.Key != "(id)=(3)" || rej.Table != `"public"."items"` || rej.LSN == "" ||
		!strings.Contains(rej.Err.Error(), "SQLSTATE 23514") || !strings.Contains(rej.Err.Error(), "stream sequence 7") {
		t.Fatalf("message %d rejected: %+v", index, rej)
	}
	if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM items"); n != 0 {
		t.Fatalf("%d rows committed by a rejected batch", n)
	}

	// Not a change event, though its metadata names one.
	garbage := service.NewMessage([]byte(`{"hello":1}`))
	garbage.MetaSetMut(event.MetaSchema, "public")
	garbage.MetaSetMut(event.MetaTable, "items")
	garbage.MetaSetMut(event.MetaLSN, "0/1001")
	garbage.MetaSetMut("pg_flo_stream_seq", "8")
	batch = service.MessageBatch{pgTestEvent(event.Insert, "items", "0/1000", 0, 1, "ok"), garbage}
	if index, rej = rejection(batch); index != 1 || rej.Reason != deadletter.ReasonDecode || rej.Table != `"public"."items"` || rej.LSN != "0/1001" ||
		!strings.HasSuffix(rej.Err.Error(), `(table "public"."items", LSN 0/1001, stream sequence 8)`) {
		t.Fatalf("message %d rejected: %+v", index, rej)
	}

	// What the batch holds once the rejected change is left out applies.
	if err := out.WriteBatch(context.Background(), batch[:1]); err != nil {
		t.Fatal(err)
	}
	// A replayed change is applied though the progress table is past it.
	replayed := pgTestEvent(event.Insert, "items", "0/900", 0, 9, "replayed")
	replayed.MetaSetMut(deadletter.MetaReplay, "1")
	if err := out.WriteBatch(context.Background(), service.MessageBatch{replayed}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.QueryRows(t, dsn, "SELECT id::text FROM items ORDER BY id"); len(got) != 2 || got[1][0] != "9" {
		t.Fatalf("target rows %v, want 1 and the replayed 9", got)
	}

	stop := pgTestOutput(t, fmt.Sprintf("dsn: %q\ngroup: g2", dsn))
	err := stop.WriteBatch(context.Background(), service.MessageBatch{bad})
	var batchErr *service.BatchError
	if err == nil || errors.As(err, &batchErr) || !strings.Contains(err.Error(), "key (id)=(3)") || !strings.Contains(err.Error(), "(stream sequence 7)") {
		t.Fatalf("on_error: stop: error %v", err)
	}
}

// packRow finds the row of a pack of snapshot rows a rejected change is,
// from the pack's first position.
func TestPGOutputPackRow(t *testing.T) {
	pack := service.NewMessage(nil)
	pack.MetaSetMut(event.MetaPackRows, "1024")
	pack.MetaSetMut(event.MetaTxPos, "2048")
	noPos := service.NewMessage(nil)
	noPos.MetaSetMut(event.MetaPackRows, "1024")
	plain := service.NewMessage(nil)
	plain.MetaSetMut(event.MetaTxPos, "7")
	for _, tc := range []struct {
		msg  *service.Message
		pos  int64
		want int
	}{
		{pack, 2048, 0}, {pack, 2548, 500}, {pack, 3071, 1023}, {pack, 3072, -1}, {pack, 2047, -1},
		{noPos, 5, -1}, {plain, 7, -1},
	} {
		if got := packRow(tc.msg, tc.pos); got != tc.want {
			t.Errorf("packRow(pos %d) = %d, want %d", tc.pos, got, tc.want)
		}
	}
}
