package ddl

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"ALTER TABLE t ADD c int", []string{"ALTER TABLE t ADD c int"}},
		{"ALTER TABLE t ADD c int; ALTER TABLE u DROP d;", []string{"ALTER TABLE t ADD c int", "ALTER TABLE u DROP d"}},
		{"ALTER TABLE t ADD c text DEFAULT 'a;b'; SELECT 1", []string{"ALTER TABLE t ADD c text DEFAULT 'a;b'", "SELECT 1"}},
		{`ALTER TABLE "x;y" ADD c int -- comment; not a split
; ;`, []string{`ALTER TABLE "x;y" ADD c int -- comment; not a split`}},
		{"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; COMMENT ON TABLE t IS E'it\\'s;'",
			[]string{"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql", "COMMENT ON TABLE t IS E'it\\'s;'"}},
		{"/* a; /* nested; */ b; */ ALTER TABLE t ADD c int", []string{"/* a; /* nested; */ b; */ ALTER TABLE t ADD c int"}},
		{"  ;; -- only a comment", nil},
	} {
		if got := Split(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Split(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestTable(t *testing.T) {
	for _, c := range []struct {
		stmt, schema, name string
		ok                 bool
	}{
		{"ALTER TABLE users ADD COLUMN age int", "", "users", true},
		{"alter table if exists only public.users rename to people", "public", "users", true},
		{`ALTER TABLE "My Schema"."Order ""Items""" DROP x`, "My Schema", `Order "Items"`, true},
		{"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix ON ONLY s.t USING btree (a)", "s", "t", true},
		{"CREATE INDEX ON t (a)", "", "t", true},
		{"CREATE TABLE IF NOT EXISTS s.n (id int)", "s", "n", true},
		{"CREATE UNLOGGED TABLE n (id int)", "", "n", true},
		{"DROP TABLE IF EXISTS a, b", "", "a", true},
		{"COMMENT ON TABLE s.t IS 'x'", "s", "t", true},
		{"COMMENT ON COLUMN s.t.c IS 'x'", "s", "t", true},
		{"COMMENT ON COLUMN t.c IS 'x'", "", "t", true},
		{"CREATE TRIGGER tr AFTER INSERT ON s.t FOR EACH ROW EXECUTE FUNCTION f()", "s", "t", true},
		{"DROP INDEX CONCURRENTLY ix", "", "", false},
		{"GRANT SELECT ON t TO x", "", "", false},
	} {
		n, ok := Table(c.stmt)
		if ok != c.ok || n.Schema != c.schema || n.Name != c.name {
			t.Errorf("Table(%q) = %+v, %v; want %s.%s, %v", c.stmt, n, ok, c.schema, c.name, c.ok)
		}
	}
}

func TestNeedsNoTransaction(t *testing.T) {
	for stmt, want := range map[string]bool{
		"CREATE INDEX CONCURRENTLY ix ON t (a)":         true,
		"create unique index concurrently on t(a)":      true,
		"DROP INDEX CONCURRENTLY IF EXISTS ix":          true,
		"REINDEX TABLE CONCURRENTLY t":                  true,
		"ALTER TABLE p DETACH PARTITION c CONCURRENTLY": true,
		"VACUUM t": true,
		"REFRESH MATERIALIZED VIEW CONCURRENTLY mv":                  false,
		"CREATE INDEX ix ON t (a)":                                   false,
		`ALTER TABLE t ADD "concurrently" int`:                       false,
		"COMMENT ON TABLE t IS 'built concurrently'":                 false,
		"ALTER TABLE t ADD c text DEFAULT $$concurrently$$":          false,
		"ALTER TABLE t ADD c int /* CONCURRENTLY */ -- concurrently": false,
	} {
		if got := NeedsNoTransaction(stmt); got != want {
			t.Errorf("NeedsNoTransaction(%q) = %v", stmt, got)
		}
	}
}

func TestRewrite(t *testing.T) {
	cols := map[string]string{"email": "contact_email", "name": "full name"}
	for _, c := range []struct {
		stmt string
		r    Rename
		want string
	}{
		{"ALTER TABLE users ADD COLUMN age int", Rename{Schema: "crm", Table: "customers"},
			`ALTER TABLE "crm"."customers" ADD COLUMN age int`},
		{"ALTER TABLE IF EXISTS ONLY public.users ALTER COLUMN email TYPE varchar(200), RENAME name TO nick",
			Rename{Schema: "public", Table: "customers", Columns: cols},
			`ALTER TABLE IF EXISTS ONLY "public"."customers" ALTER COLUMN "contact_email" TYPE varchar(200), RENAME "full name" TO nick`},
		{"ALTER TABLE users DROP COLUMN IF EXISTS email, ADD COLUMN IF NOT EXISTS name text DEFAULT 'email'",
			Rename{Columns: cols},
			`ALTER TABLE users DROP COLUMN IF EXISTS "contact_email", ADD COLUMN IF NOT EXISTS "full name" text DEFAULT 'email'`},
		{"ALTER TABLE users ADD CONSTRAINT email CHECK (length(email) > 0), RENAME COLUMN x TO email",
			Rename{Columns: cols},
			`ALTER TABLE users ADD CONSTRAINT email CHECK (length(email) > 0), RENAME COLUMN x TO "contact_email"`},
		{"ALTER TABLE users RENAME TO people", Rename{Schema: "s", Table: "t", Columns: cols},
			`ALTER TABLE "s"."t" RENAME TO people`},
		{"CREATE INDEX CONCURRENTLY users_email ON users USING btree (email, lower(name))", Rename{Schema: "s", Table: "customers", Columns: cols},
			`CREATE INDEX CONCURRENTLY users_email ON "s"."customers" USING btree ("contact_email", lower("full name"))`},
		{"DROP INDEX ix", Rename{Schema: "s", Table: "t"}, "DROP INDEX ix"},
		{"COMMENT ON COLUMN users.email IS 'x'", Rename{Schema: "s", Table: "t"}, `COMMENT ON COLUMN "s"."t".email IS 'x'`},
	} {
		if got := Rewrite(c.stmt, c.r); got != c.want {
			t.Errorf("Rewrite(%q)\n got %s\nwant %s", c.stmt, got, c.want)
		}
	}
}

func TestTokenizeUnterminated(t *testing.T) {
	for _, s := range []string{"'abc", `"abc`, "$a$ x", "E'\\", "U&\"x", "$"} {
		toks := Tokenize(s)
		if len(toks) == 0 || toks[len(toks)-1].End > len(s) {
			t.Errorf("Tokenize(%q) = %+v", s, toks)
		}
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"ALTER TABLE t ADD c int; x", "'a''b' E'\\'' $q$ $ $q$", `"a""b".c`, "/* /* */ */ --x\n1.5e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		prev := 0
		for _, tok := range Tokenize(s) {
			if tok.Start < prev || tok.End <= tok.Start || tok.End > len(s) {
				t.Fatalf("bad token %+v in %q", tok, s)
			}
			prev = tok.End
		}
		_ = Split(s)
		_ = Rewrite(s, Rename{Schema: "a", Table: "b", Columns: map[string]string{"c": "d"}})
	})
}

func TestRenameColumns(t *testing.T) {
	cols := map[string]string{"email": "contact", "n": "count"}
	for in, want := range map[string]string{
		"CHECK ((length(email) > n))":                 `CHECK ((length("contact") > "count"))`,
		"PRIMARY KEY (id, email)":                     `PRIMARY KEY (id, "contact")`,
		"CHECK ((n(email) > 0))":                      `CHECK ((n("contact") > 0))`,
		"CHECK ((t.email = 'email'))":                 `CHECK ((t.email = 'email'))`,
		`FOREIGN KEY ("email") REFERENCES s.u(email)`: `FOREIGN KEY ("contact") REFERENCES s.u("contact")`,
	} {
		if got := RenameColumns(in, cols); got != want {
			t.Errorf("RenameColumns(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestReplayedAndMovesTable(t *testing.T) {
	for stmt, want := range map[string]bool{
		"ALTER TABLE t ADD c int": true, "DO $$BEGIN END$$": true, "CREATE INDEX ON t (a)": true, "COMMENT ON TABLE t IS 'x'": true,
		"INSERT INTO t VALUES (1)": false, "update t set a = 1": false, "SET search_path = x": false, "SELECT 1": false,
		"BEGIN": false, "COMMIT": false, "WITH x AS (DELETE FROM t) SELECT 1": false, "TRUNCATE t": false,
	} {
		if got := Replayed(stmt); got != want {
			t.Errorf("Replayed(%q) = %v", stmt, got)
		}
	}
	for stmt, want := range map[string]bool{
		"ALTER TABLE t RENAME TO u": true, "ALTER TABLE IF EXISTS s.t SET SCHEMA x": true,
		"ALTER TABLE t RENAME COLUMN a TO b": false, "ALTER TABLE t RENAME a TO b": false, "ALTER TABLE t ADD c int": false,
	} {
		if got := MovesTable(stmt); got != want {
			t.Errorf("MovesTable(%q) = %v", stmt, got)
		}
	}
}
