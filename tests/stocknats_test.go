package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pgflo/pgflo/internal/testenv"
)

// wideRowBytes is the size of each wide row's random (incompressible) bytea:
// one row's change event (hex in JSON, twice the bytes) just fits a stock
// server's 1 MiB max payload, two do not.
const wideRowBytes = 440 << 10

// wideRowsSQL creates the table wide holding rows of wideRowBytes random bytes.
const wideRowsSQL = `
CREATE TABLE wide (id int PRIMARY KEY, n int NOT NULL, payload bytea NOT NULL);
ALTER TABLE wide ALTER COLUMN payload SET STORAGE EXTERNAL;
`

// wideRows is the INSERT of rows first..last of wide.
func wideRows(first, last int) string {
	return fmt.Sprintf(`INSERT INTO wide SELECT g, g, (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')
FROM generate_series(1, %d) i) FROM generate_series(%d, %d) g`, wideRowBytes/16, first, last)
}

// Against a stock nats-server (default configuration: 1 MiB max payload), a
// copy_and_stream of wide rows, then one large transaction rewriting every
// row and adding more, arrive whole: pg_flo_jetstream fits its packs under
// the server's limit, and the target ends equal to the source.
func TestStockNATSServerWideRows(t *testing.T) {
	c := testenv.StartNATSCluster(t, 1, testenv.NATSStockMaxPayload())
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	maxPayload := nc.MaxPayload()
	nc.Close()
	if maxPayload != 1<<20 {
		t.Fatalf("the stock server's max payload is %d, want nats-server's default 1 MiB", maxPayload)
	}

	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, wideRowsSQL)
	testenv.Exec(t, source, wideRows(1, 40))
	testenv.Exec(t, target, wideRowsSQL)

	copyAndStreamVia(t, c.URLs(), source, target, "stocknats", "wide")
	waitDigestsEqual(t, source, target, []string{"wide"}, 180*time.Second)

	// One transaction: every row rewritten (a new payload for each), then
	// more rows — about 45 MiB of change events to pack under 1 MiB.
	testenv.Exec(t, source, fmt.Sprintf(`BEGIN;
UPDATE wide SET n = n + 1, payload = (SELECT decode(string_agg(md5(random()::text || id || i), ''), 'hex') FROM generate_series(1, %d) i);
%s;
COMMIT`, wideRowBytes/16, wideRows(41, 52)))
	waitDigestsEqual(t, source, target, []string{"wide"}, 180*time.Second)
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM wide WHERE n = id + 1 AND length(payload) = $1", wideRowBytes); n != 40 {
		t.Fatalf("%d rewritten rows of %d bytes on the target, want 40", n, wideRowBytes)
	}
}

// Against a server whose max payload (128 KiB) is below the size of the
// replicator's copy packs (up to 512 KiB of rows), pg_flo_jetstream cuts
// each copy pack into packs of whole rows that fit: the snapshot arrives
// whole, and the changes after it too.
func TestSnapshotUnderSmallMaxPayload(t *testing.T) {
	small := testenv.StartNATS(t, testenv.WithMaxPayload(128<<10))
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, accountsSQL)
	testenv.Exec(t, source, "INSERT INTO accounts (id, balance, note) SELECT g, g, md5(g::text) || md5((g + 1)::text) || md5((g * 7)::text) FROM generate_series(1, 40000) g")
	testenv.Exec(t, target, accountsSQL)

	copyAndStreamVia(t, small.URL(), source, target, "smallpayload", "accounts")
	waitDigestsEqual(t, source, target, []string{"accounts"}, 120*time.Second)
	testenv.Exec(t, source, "UPDATE accounts SET balance = balance + 1, note = repeat(note, 3) WHERE id % 3 = 0")
	waitDigestsEqual(t, source, target, []string{"accounts"}, 120*time.Second)
}

// copyAndStreamVia starts group's replicator (copy_and_stream of table) and
// its worker into target, both through the NATS at url; their logs are
// shown when the test fails.
func copyAndStreamVia(t *testing.T, url, source, target, group, table string) {
	t.Helper()
	p := newPipeline(t, source, group)
	p.urls = url
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [%s]", url, table)
	p.startReplicator()
	p.startWorker(postgresOutput(target, p.group, ""))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replicator:\n%s\nworker:\n%s", infoLines(p.replicator.Log()), infoLines(p.worker.Log()))
		}
	})
}
