package chaos

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// snapshotComplete reports whether the current replicator logged the end of
// the copy (an earlier one may have; the copy's record is the state bucket,
// but the log line is enough to place faults before or after it).
func (e *env) snapshotComplete() bool {
	for _, p := range e.replicator.all {
		if strings.Contains(p.Log(), "snapshot complete") {
			return true
		}
	}
	return false
}

// fingerprintSQL is a cheap digest of a table, polled while waiting; the
// full digest (digestSQL) is taken once they agree.
const (
	fingerprintSQL = "SELECT count(*)::text || ' ' || coalesce(sum(hashtext(x::text)::bigint), 0)::text FROM %s x"
	digestSQL      = "SELECT count(*)::text || ' rows, md5 ' || md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM (SELECT x::text AS r FROM %s x) s"
)

// digests returns query's single text answer for every table, on dsn.
func digests(dsn, query string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var out []string
	for _, table := range tables {
		var d string
		if err := conn.QueryRow(ctx, fmt.Sprintf(query, pgx.Identifier{table}.Sanitize())).Scan(&d); err != nil {
			return nil, fmt.Errorf("digest of %s: %w", table, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// stuckAfter is how long the target may stay unchanged, and different from
// the source, before the campaign stops waiting for it: the pipeline is
// stuck, not slow.
const stuckAfter = 90 * time.Second

// converge waits until every table's fingerprint is the same on both sides
// and stays so for a few seconds (a late change would show), calling pause
// between polls. It reports whether that happened within timeout, and if not
// why it stopped waiting.
func (e *env) converge(timeout time.Duration, pause func()) (bool, string) {
	deadline := time.Now().Add(timeout)
	var equalSince, changedAt time.Time
	last := ""
	for time.Now().Before(deadline) {
		src, err1 := digests(e.sourceDB, fingerprintSQL)
		dst, err2 := digests(e.targetDB, fingerprintSQL)
		target := strings.Join(dst, ",")
		if target != last {
			last, changedAt = target, time.Now()
		}
		if err1 == nil && err2 == nil && strings.Join(src, ",") == target {
			if equalSince.IsZero() {
				equalSince = time.Now()
			}
			if time.Since(equalSince) >= 3*time.Second {
				return true, ""
			}
		} else {
			equalSince = time.Time{}
			if time.Since(changedAt) > stuckAfter {
				return false, fmt.Sprintf("the target stopped changing for %v; the worker's last error: %s", stuckAfter, e.lastError(e.worker))
			}
		}
		pause()
	}
	return false, fmt.Sprintf("still different after %v; the worker's last error: %s", timeout, e.lastError(e.worker))
}

// lastError is the last error line p's current process logged, "none" when
// there is none.
func (e *env) lastError(p *process) string {
	log := p.current.Log()
	i := strings.LastIndex(log, "level=error")
	if i < 0 {
		return "none"
	}
	return firstLine(log[i:])
}

var (
	skippedRe = regexp.MustCompile(`Skipped (\d+) of \d+ changes already applied`)
	lateRe    = regexp.MustCompile(`Skipped (\d+) snapshot rows taken before`)
)

// finalChecks fills the report's digests, differences, order check and
// duplicate counts.
func (e *env) finalChecks(rep *Report, converged bool) error {
	src, err := digests(e.sourceDB, digestSQL)
	if err != nil {
		return fmt.Errorf("source digests: %w", err)
	}
	dst, err := digests(e.targetDB, digestSQL)
	if err != nil {
		return fmt.Errorf("target digests: %w", err)
	}
	for i, table := range tables {
		rep.Tables = append(rep.Tables, TableDigest{Table: table, Source: src[i], Target: dst[i]})
	}
	if !converged {
		diffs, err := e.differences()
		if err != nil {
			return err
		}
		rep.Differences = append(rep.Differences, diffs...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.targetDB)
	if err != nil {
		return fmt.Errorf("connect to the target: %w", err)
	}
	defer conn.Close(context.Background())
	// Every version of a row has its own counter (a new value of the
	// source's sequence at each write), so on the target a row's counters
	// in the order written must only grow, and a version written twice is
	// the same (id, counter) twice.
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) - count(DISTINCT (id, counter)) FROM chaos_audit`).Scan(&rep.RowVersions, &rep.Duplicates); err != nil {
		return fmt.Errorf("count row versions: %w", err)
	}
	const backwardsSQL = `SELECT id, prev, counter FROM (
  SELECT id, counter, lag(counter) OVER (PARTITION BY id ORDER BY seq) AS prev FROM chaos_audit) s
WHERE counter < prev`
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ("+backwardsSQL+") b").Scan(&rep.OrderViolations); err != nil {
		return fmt.Errorf("order check: %w", err)
	}
	rows, err := conn.Query(ctx, backwardsSQL+" ORDER BY id LIMIT 10")
	if err != nil {
		return fmt.Errorf("order check: %w", err)
	}
	for rows.Next() {
		var id, prev, counter int64
		if err := rows.Scan(&id, &prev, &counter); err != nil {
			return fmt.Errorf("order check: %w", err)
		}
		rep.Backwards = append(rep.Backwards, fmt.Sprintf("%d: %d → %d", id, prev, counter))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("order check: %w", err)
	}

	for _, p := range e.worker.all {
		log := p.Log()
		rep.SkippedChanges += sumMatches(skippedRe, log)
		rep.LateSnapshotRows += sumMatches(lateRe, log)
		rep.RereadBatches += strings.Count(log, "rejected downstream")
	}
	for _, p := range e.replicator.all {
		rep.ResentBatches += strings.Count(p.Log(), "rejected downstream")
	}
	return nil
}

func sumMatches(re *regexp.Regexp, log string) int64 {
	var n int64
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

// differences compares acct row by row (and hist by count) and describes
// what the target lacks, has in excess or has in another version.
func (e *env) differences() ([]string, error) {
	const rowsSQL = "SELECT id, counter, md5(x::text) FROM acct x"
	src, err := rowVersions(e.sourceDB, rowsSQL)
	if err != nil {
		return nil, fmt.Errorf("source rows: %w", err)
	}
	dst, err := rowVersions(e.targetDB, rowsSQL)
	if err != nil {
		return nil, fmt.Errorf("target rows: %w", err)
	}
	var missing, extra, changed []string
	for id, s := range src {
		d, ok := dst[id]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%d (counter %d)", id, s.counter))
		case d.counter != s.counter:
			changed = append(changed, fmt.Sprintf("%d (counter %d on the source, %d on the target)", id, s.counter, d.counter))
		case d.hash != s.hash:
			changed = append(changed, fmt.Sprintf("%d (counter %d, other values differ)", id, s.counter))
		}
	}
	for id, d := range dst {
		if _, ok := src[id]; !ok {
			extra = append(extra, fmt.Sprintf("%d (counter %d)", id, d.counter))
		}
	}
	var out []string
	for _, l := range []struct {
		what string
		ids  []string
	}{{"acct rows missing on the target", missing}, {"acct rows only on the target", extra}, {"acct rows in another version on the target", changed}} {
		if len(l.ids) == 0 {
			continue
		}
		sort.Strings(l.ids)
		out = append(out, fmt.Sprintf("%d %s, e.g. %s", len(l.ids), l.what, strings.Join(l.ids[:min(5, len(l.ids))], ", ")))
	}
	return out, nil
}

type rowVersion struct {
	counter int64
	hash    string
}

func rowVersions(dsn, query string) (map[int64]rowVersion, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	out := map[int64]rowVersion{}
	for rows.Next() {
		var id int64
		var v rowVersion
		if err := rows.Scan(&id, &v.counter, &v.hash); err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, rows.Err()
}
