package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// NullText is how QueryRows renders SQL NULL. No PostgreSQL text output looks
// like it, so a NULL and the string "NULL" (or an empty string) stay distinct.
const NullText = "<NULL>"

// sqlTimeout bounds each helper call, so a stuck query fails the test instead of
// hanging it until the go test timeout.
const sqlTimeout = 60 * time.Second

// connect opens a short-lived connection for one helper call.
func connect(ctx context.Context, t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	return conn
}

// Exec runs sql with args on a new connection and fails the test on error. With
// no args, sql may hold several statements separated by semicolons (it is sent
// with the simple query protocol).
func Exec(t testing.TB, dsn string, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn := connect(ctx, t, dsn)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// QueryRows runs a query on a new connection and returns every row with each
// column in PostgreSQL's text output form (what psql shows), NULL as NullText.
// Text form makes rows from different databases comparable value by value,
// whatever Go type a driver would pick. It fails the test on error.
func QueryRows(t testing.TB, dsn string, sql string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn := connect(ctx, t, dsn)
	defer conn.Close(context.Background())

	// Ask the server for text results for every column.
	qargs := append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)
	rows, err := conn.Query(ctx, sql, qargs...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	defer rows.Close()
	out := [][]string{}
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			if v == nil {
				row[i] = NullText
			} else {
				row[i] = string(v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return out
}

// QueryInt runs a query that returns one integer (a count, a max, an id) on a new
// connection and returns it. It fails the test on error, no row or NULL.
func QueryInt(t testing.TB, dsn string, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn := connect(ctx, t, dsn)
	defer conn.Close(context.Background())
	var v *int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	if v == nil {
		t.Fatalf("query %q: got NULL, want an integer", sql)
	}
	return *v
}
