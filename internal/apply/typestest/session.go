package typestest

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
)

// Connect opens a session with the text form settings the replicator and
// pg_flo_postgres pin (event.TextFormSettings), closed when the test ends.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range event.TextFormSettings() {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Column is one column of a table: its name and type OID.
type Column struct {
	Name string
	OID  uint32
}

// Columns returns the columns of a table, in attribute order.
func Columns(t testing.TB, conn *pgx.Conn, table string) []Column {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT attname, atttypid FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Column, error) {
		var c Column
		return c, r.Scan(&c.Name, &c.OID)
	})
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

// CopyOut returns a query's rows as COPY ... TO STDOUT writes them: COPY
// text, or with binary the binary tuples (the stream without its header
// and trailer, as a binary copy pack holds them).
func CopyOut(t testing.TB, conn *pgx.Conn, query string, binaryFormat bool) []byte {
	t.Helper()
	sql := "COPY (" + query + ") TO STDOUT"
	if binaryFormat {
		sql += " WITH (FORMAT binary)"
	}
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(context.Background(), &buf, sql); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if !binaryFormat {
		return b
	}
	const sig = "PGCOPY\n\xff\r\n\x00"
	if len(b) < 19 || string(b[:11]) != sig {
		t.Fatalf("binary COPY stream does not start with the signature")
	}
	b = b[19+binary.BigEndian.Uint32(b[15:]):] // flags, then the header extension's length and the extension
	if !bytes.HasSuffix(b, []byte{0xff, 0xff}) {
		t.Fatalf("binary COPY stream does not end with the trailer")
	}
	return b[:len(b)-2]
}
