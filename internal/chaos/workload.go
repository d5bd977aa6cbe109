package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// sourceSQL is the schema of the source and the target. acct.counter takes
// a new value of the sequence ctr at every write of the row, so on the source
// a row's counter only ever grows — across key changes, whose new keys come
// from ids and are never reused — and every version of a row is one
// (id, counter) pair. big is stored out of line (TOAST) and left unchanged
// by most updates. hist is appended to and truncated.
const sourceSQL = `
CREATE SEQUENCE ctr;
CREATE SEQUENCE ids START 10000001;
CREATE TABLE acct (id bigint PRIMARY KEY, counter bigint NOT NULL DEFAULT nextval('ctr'), note text, big text);
ALTER TABLE acct ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE hist (id bigserial PRIMARY KEY, acct_id bigint, counter bigint, note text);
`

// auditSQL records on the target every version of an acct row written, in
// the order written: the order check reads it, and a version written twice
// is a duplicate delivery that reached the rows.
const auditSQL = `
CREATE TABLE chaos_audit (seq bigserial PRIMARY KEY, id bigint NOT NULL, counter bigint NOT NULL);
CREATE FUNCTION chaos_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chaos_audit (id, counter) VALUES (NEW.id, NEW.counter);
  RETURN NULL;
END $$;
CREATE TRIGGER chaos_audit AFTER INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION chaos_audit();
`

// tables are the replicated tables, compared at the end.
var tables = []string{"acct", "hist"}

// initialRowsSQL fills acct before the copy: every tenth row has a TOASTed
// big of 6400 bytes.
const initialRowsSQL = `INSERT INTO acct (id, note, big)
SELECT g, 'n' || g, CASE WHEN mod(g, 10) = 0 THEN repeat(md5(g::text), 200) END FROM generate_series(1, %d) g`

// writer is the campaign's workload: small transactions of every kind of
// change, one after another on one connection straight to the source (not
// through a proxy), and now and then a large transaction, a TRUNCATE of hist
// or an ALTER TABLE ADD COLUMN. It survives the source's crashes by
// reconnecting; a transaction that fails is not retried (the source is the
// truth the target is compared with, whatever committed).
type writer struct {
	dsn      string
	rows     int
	rng      *rand.Rand
	logf     func(format string, args ...any)
	inserted int64 // rows inserted into acct, for picking ids

	stop      chan struct{}
	done      sync.WaitGroup
	committed atomic.Int64
	failed    atomic.Int64
	counts    map[string]int64 // committed transactions by kind; read after finish
}

// writerPace is the pause between two small transactions: about 40 a
// second, a steady stream a 2-core machine applies while faults happen.
const writerPace = 25 * time.Millisecond

func startWriter(dsn string, rows int, seed int64, logf func(string, ...any)) *writer {
	w := &writer{dsn: dsn, rows: rows, rng: rand.New(rand.NewSource(seed)), logf: logf,
		stop: make(chan struct{}), counts: map[string]int64{}}
	w.done.Add(1)
	go w.run()
	return w
}

// finish stops the writer and waits for its last transaction.
func (w *writer) finish() {
	close(w.stop)
	w.done.Wait()
}

func (w *writer) run() {
	defer w.done.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	start := time.Now()
	nextLarge := start.Add(w.every(10, 25))
	nextTruncate := start.Add(w.every(15, 40))
	nextAlter := start.Add(w.every(20, 50))
	columns := 0
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(writerPace):
		}
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := pgx.Connect(ctx, w.dsn)
			cancel()
			if err != nil {
				// The source is down (a crash fault): try again soon.
				time.Sleep(200 * time.Millisecond)
				continue
			}
			conn = c
		}
		now := time.Now()
		var kind string
		var stmts []stmt
		switch {
		case now.After(nextLarge):
			nextLarge = now.Add(w.every(10, 25))
			kind, stmts = w.large()
		case now.After(nextTruncate):
			nextTruncate = now.Add(w.every(15, 40))
			kind, stmts = "truncate", []stmt{{sql: "TRUNCATE hist"}}
		case now.After(nextAlter):
			nextAlter = now.Add(w.every(20, 50))
			columns++
			table := tables[w.rng.Intn(len(tables))]
			kind, stmts = "alter", []stmt{{sql: fmt.Sprintf("ALTER TABLE %s ADD COLUMN x%d text DEFAULT 'd%d'", table, columns, columns)}}
		default:
			kind, stmts = w.small()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.exec(ctx, conn, stmts)
		cancel()
		if err != nil {
			w.failed.Add(1)
			if conn.IsClosed() || ctx.Err() != nil {
				conn.Close(context.Background())
				conn = nil
			}
			continue
		}
		w.committed.Add(1)
		w.counts[kind]++
		if kind == "insert" {
			w.inserted += int64(stmts[0].args[2].(int))
		}
	}
}

// every draws the time to the next periodic change, lo to hi seconds.
func (w *writer) every(lo, hi int) time.Duration {
	return time.Duration(lo+w.rng.Intn(hi-lo+1)) * time.Second
}

type stmt struct {
	sql  string
	args []any
}

// exec runs stmts in one transaction.
func (w *writer) exec(ctx context.Context, conn *pgx.Conn, stmts []stmt) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it does nothing
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("%s: %w", s.sql, err)
		}
	}
	return tx.Commit(ctx)
}

// someID draws a key to look the next existing acct row up from: among the
// initial rows mostly, else among those inserted since.
func (w *writer) someID() int64 {
	if w.inserted == 0 || w.rng.Intn(10) < 7 {
		return 1 + w.rng.Int63n(int64(w.rows))
	}
	return 10000001 + w.rng.Int63n(w.inserted)
}

const (
	updateSQL = `UPDATE acct SET counter = nextval('ctr'), note = $3
WHERE id IN (SELECT id FROM acct WHERE id >= $1 ORDER BY id LIMIT $2)`
	insertSQL = `INSERT INTO acct (id, note, big)
SELECT nextval('ids'), 'i', CASE WHEN $1 THEN repeat(md5(random()::text), 150) || $2::text END FROM generate_series(1, $3::int)`
	deleteSQL = `DELETE FROM acct WHERE id = (SELECT id FROM acct WHERE id >= $1 ORDER BY id LIMIT 1)`
	// rekeySQL changes the key of a row with a TOASTed big and leaves big
	// unchanged: the new row carries the old row's out-of-line value.
	rekeySQL = `UPDATE acct SET id = nextval('ids'), counter = nextval('ctr')
WHERE id = (SELECT id FROM acct WHERE id >= $1 AND big IS NOT NULL ORDER BY id LIMIT 1)`
	histSQL = `INSERT INTO hist (acct_id, counter, note) VALUES ($1, $2, 'h')`
)

// small is one transaction of the steady workload: updates (TOASTed big
// unchanged), inserts (some with a TOASTed big), a delete or a key change,
// and a hist row.
func (w *writer) small() (string, []stmt) {
	var kind string
	var s []stmt
	switch p := w.rng.Intn(100); {
	case p < 55:
		kind = "update"
		s = append(s, stmt{updateSQL, []any{w.someID(), 1 + w.rng.Intn(5), fmt.Sprintf("u%d", w.rng.Intn(1000))}})
	case p < 75:
		kind = "insert"
		s = append(s, stmt{insertSQL, []any{w.rng.Intn(5) == 0, fmt.Sprint(w.rng.Int63()), 1 + w.rng.Intn(3)}})
	case p < 88:
		kind = "delete"
		s = append(s, stmt{deleteSQL, []any{w.someID()}})
	default:
		kind = "rekey"
		s = append(s, stmt{rekeySQL, []any{w.someID()}})
	}
	s = append(s, stmt{histSQL, []any{w.someID(), w.rng.Int63n(1 << 40)}})
	return kind, s
}

// large is a large transaction: one update of about 2,500 acct rows, or
// 20,000 inserts into hist — either is cut into many pieces by the
// replicator and applied as one by the target.
func (w *writer) large() (string, []stmt) {
	if w.rng.Intn(2) == 0 {
		return "large-update", []stmt{{`UPDATE acct SET counter = nextval('ctr'), note = 'bulk' WHERE id % 20 = $1`, []any{w.rng.Intn(20)}}}
	}
	return "large-hist", []stmt{{`INSERT INTO hist (acct_id, counter, note) SELECT g, g, 'bulk' FROM generate_series(1, 20000) g`, nil}}
}
