package benchkit

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ExecAll runs stmts in order on one connection to dsn; an error names the
// failing statement by its first line.
func ExecAll(ctx context.Context, dsn string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			first, _, _ := strings.Cut(s, "\n")
			return fmt.Errorf("%s: %w", first, err)
		}
	}
	return nil
}

// QueryRow scans the one row of sql on dsn into dest.
func QueryRow(ctx context.Context, dsn, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// IndentFields turns "a: 1, b: 2" (the benchmarks' --…-fields flags) into
// YAML lines of a component's fields.
func IndentFields(fields string) string {
	var out strings.Builder
	for f := range strings.SplitSeq(fields, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out.WriteString("    " + f + "\n")
		}
	}
	return out.String()
}

// QuietProcess is the top of a pgflo process's config in a benchmark: no
// HTTP server (several processes run side by side) and INFO logs, which
// hold a replicator's snapshot progress for a failure's report.
const QuietProcess = "http:\n  enabled: false\nlogger:\n  level: INFO\n  format: logfmt\n"
