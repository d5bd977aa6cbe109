package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pgflo/pgflo/internal/testenv"
)

// wideRowBytes is the size of each wide row's random (incompressible) bytea:
// two rows' change events (hex in JSON, twice the bytes) exceed a stock
// server's 1 MiB max payload, and so do two rows of a copy pack.
const wideRowBytes = 300 << 10

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
	testenv.Exec(t, source, wideRows(1, 120))
	testenv.Exec(t, target, wideRowsSQL)

	p := newPipeline(t, source, "stocknats")
	p.urls = c.URLs()
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [wide]", c.URLs())
	p.startReplicator()
	p.startWorker(postgresOutput(target, p.group, ""))
	defer func() {
		if t.Failed() {
			t.Logf("replicator:\n%s\nworker:\n%s", infoLines(p.replicator.Log()), infoLines(p.worker.Log()))
		}
	}()
	waitDigestsEqual(t, source, target, []string{"wide"}, 180*time.Second)

	// One transaction: every row rewritten (a new payload for each), then
	// more rows — about 50 MiB of change events to pack under 1 MiB.
	testenv.Exec(t, source, fmt.Sprintf(`BEGIN;
UPDATE wide SET n = n + 1, payload = (SELECT decode(string_agg(md5(random()::text || id || i), ''), 'hex') FROM generate_series(1, %d) i);
%s;
COMMIT`, wideRowBytes/16, wideRows(121, 160)))
	waitDigestsEqual(t, source, target, []string{"wide"}, 180*time.Second)
	if n := testenv.QueryInt(t, target, "SELECT count(*) FROM wide WHERE n = id + 1 AND length(payload) = $1", wideRowBytes); n != 120 {
		t.Fatalf("%d rewritten rows of %d bytes on the target, want 120", n, wideRowBytes)
	}
}
