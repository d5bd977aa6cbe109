package inputs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/apply/typestest"
	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/event/eventtest"
	"github.com/pgflo/pgflo/internal/packmsg"
	"github.com/pgflo/pgflo/internal/testenv"
)

func newTestReplicator(t *testing.T, yaml string) (*replicatorInput, error) {
	t.Helper()
	conf, err := replicatorSpec().ParseYAML(yaml, nil)
	if err != nil {
		return nil, err
	}
	return newReplicatorInput(conf, service.MockResources())
}

func connectReplicator(t *testing.T, yaml string, adjust ...func(*replicatorInput)) (*replicatorInput, error) {
	t.Helper()
	in, err := newTestReplicator(t, yaml)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, f := range adjust {
		f(in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = in.Connect(ctx)
	if err == nil {
		t.Cleanup(func() { _ = in.Close(context.Background()) })
	}
	return in, err
}

func slotLSN(t *testing.T, dsn, slot string) pglogrepl.LSN {
	t.Helper()
	rows := testenv.QueryRows(t, dsn, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot)
	if len(rows) != 1 {
		t.Fatalf("slot %s not found", slot)
	}
	lsn, err := pglogrepl.ParseLSN(rows[0][0])
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func readBatch(t *testing.T, in *replicatorInput) (service.MessageBatch, service.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	batch, ack, err := in.ReadBatch(ctx)
	if err != nil {
		t.Fatalf("read batch: %v", err)
	}
	return batch, ack
}

// The slot's confirmed position must never pass a change the pipeline has
// not acknowledged, however long the output takes, and must move once it does.
func TestReplicatorConfirmsOnlyAcknowledged(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)")
	in, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: ack-test\nstatus_interval: 100ms\n", dsn))
	if err != nil {
		t.Fatal(err)
	}
	slot := "pg_flo_ack_test_publication"

	testenv.Exec(t, dsn, "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
	batch, ack := readBatch(t, in)
	if len(batch) != 2 {
		t.Fatalf("got %d messages, want 2", len(batch))
	}
	b, _ := batch[0].AsBytes()
	ev, err := eventtest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// More traffic after it, which the slot may not be confirmed past either.
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (3, 'three')")
	// Unacknowledged: keepalives and status updates go on (every 100ms), the
	// slot stays before the transaction's commit.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := slotLSN(t, dsn, slot); got > ev.CommitLSN {
			t.Fatalf("slot confirmed %s, past the unacknowledged transaction committed at %s", got, ev.CommitLSN)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := ack(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "slot confirmed past the acknowledged transaction", func() bool {
		return slotLSN(t, dsn, slot) > ev.CommitLSN
	})
	// The later transaction is still unacknowledged (not even read).
	second, ack2 := readBatch(t, in)
	b2, _ := second[0].AsBytes()
	ev2, err := eventtest.Decode(b2)
	if err != nil {
		t.Fatal(err)
	}
	if got := slotLSN(t, dsn, slot); got > ev2.CommitLSN {
		t.Fatalf("slot confirmed %s, past the unread transaction committed at %s", got, ev2.CommitLSN)
	}
	_ = ack2(context.Background(), nil)

	// Messages carry the event and its metadata.
	if ev.Op != event.Insert || ev.Table != "items" || ev.New[0].Text != "1" {
		t.Errorf("unexpected event %s", b)
	}
	for key, want := range map[string]string{event.MetaOp: "INSERT", event.MetaSchema: "public", event.MetaTable: "items", event.MetaLSN: ev.LSN.String(), event.MetaTx: ev.CommitLSN.String(), event.MetaTxPos: "0"} {
		if got, _ := batch[0].MetaGet(key); got != want {
			t.Errorf("metadata %s = %q, want %q", key, got, want)
		}
	}
}

// A restart resumes at the confirmed position: what was read but not
// acknowledged is delivered again.
func TestReplicatorRedeliversUnacknowledgedAfterRestart(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY)")
	cfg := fmt.Sprintf("dsn: %q\ngroup: redeliver\nstatus_interval: 100ms\n", dsn)
	in, err := connectReplicator(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (1)")
	_, ack := readBatch(t, in)
	_ = ack(context.Background(), nil)
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (2)")
	readBatch(t, in) // read, never acknowledged
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	again, err := connectReplicator(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := readBatch(t, again)
	b, _ := batch[0].AsBytes()
	if len(batch) != 1 || !strings.Contains(string(b), `"new":{"id":"2"}`) {
		t.Fatalf("after restart got %d messages, first %s; want only the unacknowledged insert of id 2", len(batch), b)
	}
}

func TestReplicatorConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`dsn: postgres://x@localhost/db`, "group"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nmode: copy", "field nats.url: mode copy"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nnats_url: nats://a:4222\nnats:\n  url: nats://a:4222", "fields nats_url and nats.url are both set"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nnats:\n  url: nats://a:4222\n  token: t\n  nkey_file: u.nk", "field nats: user/password, token, creds_file and nkey_file are mutually exclusive"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nnats:\n  password: p", "field nats.url: must be set"},
		{"dsn: postgres://x@localhost/db\ngroup: Upper", `field slot: "pg_flo_Upper_publication" is not a valid replication slot name`},
		{"dsn: postgres://x@localhost/db\ngroup: g\nmax_copy_workers: -1", "field max_copy_workers"},
		{"dsn: postgres://x@localhost/db\ngroup: g\ntables: [a.b.c]", "field tables[0]"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nstatus_interval: 1ms", "field status_interval"},
		{"dsn: postgres://x@localhost/db\ngroup: g\nslot_retained_wal_warning: lots", "field slot_retained_wal_warning: \"lots\" is not a size"},
	} {
		_, err := newTestReplicator(t, c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to mention %q", c.yaml, err, c.want)
		}
	}
}

// nats_url, the old name of nats.url, still works: it stands for nats.url.
func TestReplicatorNATSURLStandsForNATSURL(t *testing.T) {
	for _, yaml := range []string{
		"dsn: postgres://x@localhost/db\ngroup: g\nmode: copy\nnats_url: nats://a:4222,nats://b:4222",
		"dsn: postgres://x@localhost/db\ngroup: g\nmode: copy\nnats:\n  url: nats://a:4222,nats://b:4222",
	} {
		in, err := newTestReplicator(t, yaml)
		if err != nil {
			t.Fatalf("config %q: %v", yaml, err)
		}
		if in.stateConn == nil || in.stateConn.URL != "nats://a:4222,nats://b:4222" || in.stateConn.Name != "pgflo replicator g state" {
			t.Errorf("config %q: state connection %+v", yaml, in.stateConn)
		}
	}
}

func TestReplicatorSourceErrors(t *testing.T) {
	pg := sharedPostgres(t)
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE present (id int PRIMARY KEY)")

	t.Run("unknown table creates nothing", func(t *testing.T) {
		_, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: unknown\ntables: [present, missing, other.gone]\n", dsn))
		if err == nil || !strings.Contains(err.Error(), "public.missing, other.gone") || !strings.Contains(err.Error(), "table not found") {
			t.Fatalf("error %v, want it to name public.missing and other.gone", err)
		}
		if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_publication"); n != 0 {
			t.Errorf("%d publications were created", n)
		}
		if n := testenv.QueryInt(t, dsn, "SELECT count(*) FROM pg_replication_slots"); n != 0 {
			t.Errorf("%d slots were created", n)
		}
	})

	t.Run("missing REPLICATION attribute", func(t *testing.T) {
		testenv.Exec(t, dsn, "DO $$ BEGIN CREATE ROLE plain_user LOGIN PASSWORD 'pl41n-s3cret'; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
		userDSN := strings.Replace(dsn, "postgres@", "plain_user:pl41n-s3cret@", 1)
		_, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: norepl\n", userDSN))
		if err == nil || !strings.Contains(err.Error(), "REPLICATION") || !strings.Contains(err.Error(), "plain_user") {
			t.Fatalf("error %v, want it to name the role and the REPLICATION attribute", err)
		}
		if strings.Contains(err.Error(), "pl41n-s3cret") {
			t.Errorf("error leaks the password: %v", err)
		}
	})

	t.Run("unreachable host, password redacted", func(t *testing.T) {
		port, _ := testenv.FreePort()
		bad := fmt.Sprintf("postgres://someone:v3ry-s3cret@127.0.0.1:%d/db?sslmode=disable", port)
		_, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: unreachable\n", bad))
		if err == nil || !strings.Contains(err.Error(), "connect to source postgres://someone:xxxxx@127.0.0.1") {
			t.Fatalf("error %v, want it to name the redacted DSN", err)
		}
		if strings.Contains(err.Error(), "v3ry-s3cret") {
			t.Errorf("error leaks the password: %v", err)
		}
	})

	t.Run("wal_level not logical", func(t *testing.T) {
		replica, err := testenv.StartPostgres()
		if err != nil {
			t.Fatal(err)
		}
		defer replica.Stop()
		testenv.Exec(t, replica.AdminDSN(), "ALTER SYSTEM SET wal_level = replica")
		if err := replica.Restart(); err != nil {
			t.Fatal(err)
		}
		_, err = connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: wal\n", replica.AdminDSN()))
		if err == nil || !strings.Contains(err.Error(), `wal_level is "replica", it must be "logical"`) {
			t.Fatalf("error %v, want it to explain wal_level", err)
		}
	})
}

func readEvents(t *testing.T, in *replicatorInput, want int) []event.Event {
	t.Helper()
	var out []event.Event
	for len(out) < want {
		batch, ack := readBatch(t, in)
		for _, msg := range batch {
			b, _ := msg.AsBytes()
			ev, err := eventtest.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, *ev)
		}
		_ = ack(context.Background(), nil)
	}
	return out
}

// DDL on published tables arrives as DDL events in commit order with the
// rows, per group: another group's tables are not captured.
func TestReplicatorCapturesDDL(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE other (id int PRIMARY KEY)")
	a, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: ddl_a\ntables: [items]\ntrack_ddl: true\n", dsn))
	if err != nil {
		t.Fatal(err)
	}
	b, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: ddl_b\ntables: [other]\ntrack_ddl: true\n", dsn))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (1, 'one')")
	testenv.Exec(t, dsn, "ALTER TABLE items ADD COLUMN extra text; ALTER TABLE items RENAME COLUMN name TO title")
	testenv.Exec(t, dsn, "BEGIN; INSERT INTO items VALUES (2, 'two', 'x'); ALTER TABLE items ALTER COLUMN extra TYPE varchar(10); INSERT INTO items VALUES (3, 'three', 'y'); COMMIT")
	testenv.Exec(t, dsn, "ALTER TABLE other ADD COLUMN z int")

	got := readEvents(t, a, 5)
	var ops []string
	for _, ev := range got {
		ops = append(ops, string(ev.Op))
	}
	if strings.Join(ops, ",") != "INSERT,DDL,INSERT,DDL,INSERT" {
		t.Fatalf("group a got %v", ops)
	}
	ddl := got[1]
	if cmd, _ := ddl.New.Get("ddl_command"); ddl.Table != "items" || !strings.Contains(cmd.Text, "ADD COLUMN extra") || !strings.Contains(cmd.Text, "RENAME COLUMN") {
		t.Errorf("first DDL event %+v", ddl)
	}
	if tag, _ := got[3].New.Get("command_tag"); tag.Text != "ALTER TABLE" || got[3].CommitLSN != got[2].CommitLSN {
		t.Errorf("second DDL event %+v, want ALTER TABLE in the same transaction as the insert before it", got[3])
	}
	if last := got[4]; len(last.Columns) != 3 || last.Columns[1].Name != "title" || last.Columns[2].Type != "varchar" {
		t.Errorf("the insert after the DDL has columns %+v", last.Columns)
	}
	other := readEvents(t, b, 1)
	if other[0].Op != event.DDL || other[0].Table != "other" {
		t.Errorf("group b got %+v", other[0])
	}
}

// A copy emits snapshot rows as packs (snapshot_packs: keep, the default) or,
// with snapshot_packs: expand, as one event message per row; expanded, the packs are
// byte for byte those events, with the same metadata.
func TestReplicatorSnapshotPacks(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	nats := testenv.StartNATS(t)
	testenv.Exec(t, dsn, `CREATE TABLE items (id int PRIMARY KEY, note text, tags text[]);
		INSERT INTO items SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'tab	and \ and "q" ' || i END, ARRAY['a', i::text]
		FROM generate_series(1, 2500) i`)
	packed := readSnapshot(t, dsn, nats.URL(), "packs_on", "tables: [items]\nsnapshot_packs: keep\n")
	plain := readSnapshot(t, dsn, nats.URL(), "packs_off", "tables: [items]\nsnapshot_packs: expand\n")
	if len(packed.formats) == 0 || len(plain.formats) != 0 {
		t.Fatalf("pack messages: %d with snapshot_packs, %d without", len(packed.formats), len(plain.formats))
	}
	if packed.formats[copypack.FormatBinary] == 0 {
		t.Errorf("pack formats %v: the table's types are all read in binary", packed.formats)
	}
	if len(packed.rows) != 2500 || len(plain.rows) != 2500 {
		t.Fatalf("rows: %d packed, %d plain; want 2500", len(packed.rows), len(plain.rows))
	}
	sameSnapshotEvents(t, packed.rows, plain.rows)
}

// Tables whose every column has a type pgvalue renders are read with binary
// COPY, the others as text; either way the
// events are byte for byte those of a copy read as text, every value of the
// all-types table included.
func TestReplicatorBinarySnapshotPacks(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	nats := testenv.StartNATS(t)
	testenv.Exec(t, dsn, `CREATE TABLE mixed (id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8,
			n numeric, t text, vc varchar(40), c char(8), j json, jb jsonb, u uuid, by bytea,
			d date, tm time, ts timestamp, tz timestamptz, at text[], an numeric[], atz timestamptz[], ai int4[][]);
		INSERT INTO mixed SELECT g, g % 3 = 0, (g * 7919 % 65536 - 32768)::int2, (g::int8 * 104729 % 4294967296 - 2147483648)::int4,
			((random() - 0.5) * 10 ^ (g % 76 - 38))::float4, ((random() - 0.5) * 10 ^ (g % 600 - 300))::float8,
			round(((random() - 0.5) * 10 ^ (g % 60 - 30))::numeric, g % 40),
			CASE WHEN g % 5 = 0 THEN NULL ELSE E'text \\ \t \n ' || g END, 'v' || g, 'c' || g % 100,
			json_build_object('g', g, 's', E'q"\\'), jsonb_build_object('g', g, 'f', random()),
			gen_random_uuid(), decode(md5(g::text), 'hex'),
			date '4712-01-01 BC' + (random() * 106000000)::int, time '00:00' + random() * interval '24 hours',
			timestamp '4712-01-01 00:00 BC' + random() * interval '298000 years',
			timestamptz '4712-01-01 00:00+00 BC' + random() * interval '298000 years',
			ARRAY['a' || g, NULL, E'"q" \\ {x}', '', 'NULL'], ARRAY[round(random()::numeric * 1000, g % 5), 'NaN', NULL],
			ARRAY[now() - random() * interval '100 years', 'infinity'],
			CASE WHEN g % 2 = 0 THEN ARRAY[[g, -g], [NULL, 0]] ELSE '[0:0][-3:-2]={{1,2}}'::int4[] END
		FROM generate_series(1, 3000) g;
		INSERT INTO mixed (id, f4, f8, n, d, ts, tz) VALUES (-1, 'NaN', '-Infinity', 'Infinity', 'infinity', '-infinity', 'infinity'),
			(-2, '-0', '-0', '-Infinity', '0001-01-01 BC', '294276-12-31 23:59:59.999999', '4713-11-24 00:00+00 BC');`)
	// The all-types table's edge values: its columns of the types read in
	// binary as a table of their own, and the whole table (as text).
	testenv.Exec(t, dsn, typestest.Types+typestest.Table("alltypes")+";"+typestest.Rows("alltypes")+`;
		CREATE TABLE allbin AS SELECT id, c_bool, c_int2, c_int4, c_int8, c_numeric, c_numeric_ps, c_float4, c_float8,
			c_text, c_varchar, c_char, c_bytea, c_uuid, c_json, c_jsonb, c_date, c_time, c_timestamp, c_timestamptz,
			a_int4, a_int8, a_text, a_numeric, a_float8, a_bool, a_bytea, a_timestamptz, a_date, a_uuid, a_jsonb, a_json,
			a_char, a_int4_2d, a_text_2d FROM alltypes;
		ALTER TABLE allbin ADD PRIMARY KEY (id)`)
	tables := "tables: [mixed, alltypes, allbin]\n"
	binary := readSnapshot(t, dsn, nats.URL(), "bin_on", tables)
	text := readSnapshot(t, dsn, nats.URL(), "bin_off", tables, func(in *replicatorInput) { in.conf.Copy.TextOnly = true })
	if binary.formats[copypack.FormatBinary] == 0 || binary.formats[copypack.Format] == 0 {
		t.Errorf("pack formats %v: mixed is read in binary, the all-types table as text", binary.formats)
	}
	if text.formats[copypack.FormatBinary] != 0 {
		t.Errorf("pack formats %v read as text only", text.formats)
	}
	if len(binary.rows) != len(text.rows) || len(binary.rows) < 3012 {
		t.Fatalf("rows: %d binary, %d text", len(binary.rows), len(text.rows))
	}
	sameSnapshotEvents(t, binary.rows, text.rows)
}

// snapshotRead is what a copy emitted: its rows, packs expanded, and how
// many pack messages of each body format it had.
type snapshotRead struct {
	rows    service.MessageBatch
	formats map[string]int
}

// readSnapshot runs a copy of group (config: more of the replicator's
// fields) to its end.
func readSnapshot(t *testing.T, dsn, natsURL, group, config string, adjust ...func(*replicatorInput)) snapshotRead {
	t.Helper()
	in, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: %s\nmode: copy\nnats:\n  url: %q\n%s", dsn, group, natsURL, config), adjust...)
	if err != nil {
		t.Fatal(err)
	}
	out := snapshotRead{formats: map[string]int{}}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		batch, ack, err := in.ReadBatch(ctx)
		cancel()
		if err == service.ErrEndOfInput {
			return out
		}
		if err != nil {
			t.Fatalf("read batch: %v", err)
		}
		for _, m := range batch {
			if packmsg.Rows(m) == 0 {
				out.rows = append(out.rows, m)
				continue
			}
			body, _ := m.AsBytes()
			p, err := copypack.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			out.formats[p.Format]++
			rows, err := packmsg.ExpandOne(m)
			if err != nil {
				t.Fatal(err)
			}
			out.rows = append(out.rows, rows...)
		}
		if err := ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// sameSnapshotEvents checks that two copies' snapshot rows are the same
// events (apart from the WAL position each copy ran at) with the same
// metadata, matched by table and key.
func sameSnapshotEvents(t *testing.T, got, want service.MessageBatch) {
	t.Helper()
	key := func(m *service.Message) string {
		b, _ := m.AsBytes()
		ev, err := eventtest.Decode(b)
		if err != nil || !ev.Snapshot || ev.Op != event.Insert {
			t.Fatalf("not a snapshot insert (%v): %s", err, b)
		}
		id, _ := ev.New.Get("id")
		return ev.Table + "/" + id.Text
	}
	byKey := map[string]*service.Message{}
	for _, m := range want {
		byKey[key(m)] = m
	}
	for _, m := range got {
		k := key(m)
		w := byKey[k]
		if w == nil {
			t.Fatalf("row %s missing in the other copy", k)
		}
		// The two copies ran at different WAL positions: compare the rest.
		gb, _ := m.AsBytes()
		wb, _ := w.AsBytes()
		gl, _ := m.MetaGet(event.MetaLSN)
		wl, _ := w.MetaGet(event.MetaLSN)
		if strings.ReplaceAll(string(gb), gl, "X") != strings.ReplaceAll(string(wb), wl, "X") {
			t.Fatalf("row %s:\n got  %s\n want %s", k, gb, wb)
		}
		for _, name := range []string{event.MetaOp, event.MetaSchema, event.MetaTable} {
			g, _ := m.MetaGet(name)
			w, _ := w.MetaGet(name)
			if g != w || g == "" {
				t.Fatalf("row %s: metadata %s = %q, want %q", k, name, g, w)
			}
		}
		if _, ok := m.MetaGet(event.MetaPackRows); ok {
			t.Fatalf("row %s: expanded row keeps %s", k, event.MetaPackRows)
		}
	}
}

// A batch the pipeline rejects is delivered again, unchanged and before
// anything newer; the slot moves only once it is acknowledged.
func TestReplicatorRedeliversRejectedBatch(t *testing.T) {
	dsn := sharedPostgres(t).NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY)")
	in, err := connectReplicator(t, fmt.Sprintf("dsn: %q\ngroup: nack\nstatus_interval: 100ms\n", dsn))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (1), (2)")
	first, ack := readBatch(t, in)
	body := func(b service.MessageBatch) string {
		var s []string
		for _, m := range b {
			data, _ := m.AsBytes()
			s = append(s, string(data))
		}
		return strings.Join(s, "\n")
	}
	want := body(first)
	before := slotLSN(t, dsn, "pg_flo_nack_publication")
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (3)")
	for i := 0; i < 2; i++ {
		if err := ack(context.Background(), errors.New("output down")); err != nil {
			t.Fatal(err)
		}
		var again service.MessageBatch
		again, ack = readBatch(t, in)
		if got := body(again); got != want {
			t.Fatalf("delivery %d after a nack:\n%s\nwant\n%s", i+2, got, want)
		}
	}
	if got := slotLSN(t, dsn, "pg_flo_nack_publication"); got != before {
		t.Fatalf("slot moved to %s before the batch was acknowledged (was %s)", got, before)
	}
	if err := ack(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	next, ack := readBatch(t, in)
	if len(next) != 1 || !strings.Contains(body(next), `"id":"3"`) {
		t.Fatalf("after the ack: %s", body(next))
	}
	_ = ack(context.Background(), nil)
}

// max_copy_workers: 0 copies a chunk per core of this machine, 2 to 4.
func TestDefaultCopyWorkers(t *testing.T) {
	for cpus, want := range map[int]int{1: 2, 2: 2, 3: 3, 4: 4, 64: 4} {
		if got := defaultCopyWorkers(cpus); got != want {
			t.Errorf("%d cores: %d copy workers, want %d", cpus, got, want)
		}
	}
}
