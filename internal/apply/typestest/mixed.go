package typestest

import (
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MixedTable is the DDL of the benchmarks' mixed-type table (bigint PK,
// int, text, numeric, timestamptz, bool, jsonb, uuid, bytea, text[]), named
// name.
func MixedTable(name string) string {
	return `CREATE TABLE ` + pgx.Identifier{name}.Sanitize() + ` (
	id     bigint PRIMARY KEY,
	n      int NOT NULL,
	s      text,
	amount numeric(16,4),
	ts     timestamptz NOT NULL,
	flag   bool,
	doc    jsonb,
	uid    uuid,
	blob   bytea,
	tags   text[]
)`
}

// MixedFill inserts rows 1..rows into the mixed table: distinct values, some
// NULLs, and text that COPY and JSON have to escape (tabs, quotes,
// backslashes).
func MixedFill(name string, rows int) string {
	return fmt.Sprintf(`INSERT INTO %s
SELECT g,
	(g::bigint * 7919 %% 2000003 - 1000000)::int,
	CASE WHEN g %% 10 = 0 THEN NULL
	     WHEN g %% 10 = 1 THEN E'tab\there, quote " and backslash \\ in row ' || g
	     ELSE 'row ' || g || ' ' || md5(g::text) END,
	round(g * 3.14159::numeric / 7, 4) * CASE WHEN g %% 2 = 0 THEN 1 ELSE -1 END,
	timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 seconds',
	CASE WHEN g %% 7 = 0 THEN NULL ELSE g %% 2 = 0 END,
	jsonb_build_object('id', g, 'name', 'item ' || g, 'tags', jsonb_build_array('a', g %% 5), 'ok', g %% 3 = 0),
	md5(g::text || 'u')::uuid,
	decode(md5(g::text), 'hex'),
	ARRAY['t' || g %% 10, CASE WHEN g %% 4 = 0 THEN NULL ELSE 'q"' || g END, 'x,y']
FROM generate_series(1, %d) g`, pgx.Identifier{name}.Sanitize(), rows)
}
