package apply

import (
	"slices"
	"strconv"
	"strings"
)

// The statements below take values as text and cast them to the column's
// type, so the server's own input functions parse PostgreSQL's text form:
// every type round-trips exactly. Set statements take one array parameter
// per column and read the rows with unnest: a text[], or an array of the
// column's own type for the types converted here (see typedParams); the
// cast to the column's type is then a no-op. Identifiers are always quoted.

// unnestFrom writes `unnest($1::text[], …) AS v(c0, …)` for the values of
// columns cols, parameters numbered from 1: typed[i] makes the i-th an
// array of its column's type.
func unnestFrom(b *strings.Builder, t *Table, cols []int, typed []bool) {
	n := len(cols)
	b.WriteString("unnest(")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(1 + i))
		b.WriteString("::")
		if typed[i] {
			b.WriteString(t.Columns[c].CastType)
			b.WriteString("[]")
		} else {
			b.WriteString("text[]")
		}
	}
	b.WriteString(") AS v(")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("c")
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteString(")")
}

// castValue writes `v.c<i>::<type>`.
func castValue(b *strings.Builder, i int, c *Column) {
	b.WriteString("v.c")
	b.WriteString(strconv.Itoa(i))
	b.WriteString("::")
	b.WriteString(c.CastType)
}

func columnList(b *strings.Builder, t *Table, cols []int) {
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Columns[c].ident)
	}
}

// overriding reports whether inserting cols needs OVERRIDING SYSTEM VALUE.
func overriding(t *Table, cols []int) bool {
	if !t.alwaysIdentity {
		return false
	}
	for _, c := range cols {
		if t.Columns[c].Identity == 'a' {
			return true
		}
	}
	return false
}

// keyMatch writes `t.k1 = v.c<j>::type AND …` where the key's values are
// the parameters at positions keyAt (index into the unnest columns).
func keyMatch(b *strings.Builder, t *Table, keyAt []int) {
	for i, k := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.WriteString(t.Columns[k].ident)
		b.WriteString(" = ")
		castValue(b, keyAt[i], &t.Columns[k])
	}
}

// upsertSQL inserts rows of cols; on a key conflict the row's other columns
// are overwritten (the event's row wins). A table without key gets a plain
// INSERT.
func upsertSQL(t *Table, cols []int, typed []bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(t.ident)
	b.WriteString(" AS t (")
	columnList(&b, t, cols)
	b.WriteString(")")
	if overriding(t, cols) {
		b.WriteString(" OVERRIDING SYSTEM VALUE")
	}
	b.WriteString(" SELECT ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		castValue(&b, i, &t.Columns[c])
	}
	b.WriteString(" FROM ")
	unnestFrom(&b, t, cols, typed)
	if !t.HasKey() {
		return b.String()
	}
	b.WriteString(" ON CONFLICT (")
	columnList(&b, t, t.Key)
	b.WriteString(")")
	first := true
	for _, c := range cols {
		if isKey(t, c) {
			continue
		}
		if first {
			b.WriteString(" DO UPDATE SET ")
			first = false
		} else {
			b.WriteString(", ")
		}
		b.WriteString(t.Columns[c].ident)
		b.WriteString(" = EXCLUDED.")
		b.WriteString(t.Columns[c].ident)
	}
	if first {
		b.WriteString(" DO NOTHING")
	}
	return b.String()
}

func isKey(t *Table, c int) bool {
	for _, k := range t.Key {
		if k == c {
			return true
		}
	}
	return false
}

// updateSQL updates the rows found by the key (parameters 1..len(Key): the
// old key) setting cols (the following parameters; typed as for
// unnestFrom). Used for rows whose unchanged TOAST values are not known,
// which must not be inserted.
func updateSQL(t *Table, cols []int, typed []bool) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.ident)
	b.WriteString(" AS t SET ")
	n := len(t.Key)
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Columns[c].ident)
		b.WriteString(" = ")
		castValue(&b, n+i, &t.Columns[c])
	}
	b.WriteString(" FROM ")
	unnestFrom(&b, t, append(slices.Clip(t.Key), cols...), typed)
	b.WriteString(" WHERE ")
	keyMatch(&b, t, seq(n))
	return b.String()
}

// deleteSQL deletes the rows whose key is in the parameters (typed as for
// unnestFrom).
func deleteSQL(t *Table, typed []bool) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.ident)
	b.WriteString(" AS t USING ")
	unnestFrom(&b, t, t.Key, typed)
	b.WriteString(" WHERE ")
	keyMatch(&b, t, seq(len(t.Key)))
	return b.String()
}

// freeNewKeySQL deletes the rows at the new keys (the second half of the
// parameters, typed as for unnestFrom) of rows whose old key (the first
// half) is still taken on the target (see stepFreeNewKey).
func freeNewKeySQL(t *Table, typed []bool) string {
	n := len(t.Key)
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.ident)
	b.WriteString(" AS t USING ")
	unnestFrom(&b, t, append(slices.Clip(t.Key), t.Key...), typed)
	b.WriteString(" WHERE ")
	newKeyAt := make([]int, n)
	for i := range newKeyAt {
		newKeyAt[i] = n + i
	}
	keyMatch(&b, t, newKeyAt)
	b.WriteString(" AND EXISTS (SELECT 1 FROM ")
	b.WriteString(t.ident)
	b.WriteString(" AS o WHERE ")
	for i, k := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("o.")
		b.WriteString(t.Columns[k].ident)
		b.WriteString(" = ")
		castValue(&b, i, &t.Columns[k])
	}
	b.WriteString(")")
	return b.String()
}

// matchOne writes the condition picking one row of a table without key by
// the values of match (parameters from first on): text comparison, which
// every type supports (json, point and xml have no equality operator) and
// which is exact because both sides go through the column type's output
// function in this session.
func matchOne(b *strings.Builder, t *Table, match []int, first int) {
	b.WriteString("(tableoid, ctid) = (SELECT tableoid, ctid FROM ")
	b.WriteString(t.ident)
	b.WriteString(" AS t WHERE ")
	for i, c := range match {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.WriteString(t.Columns[c].ident)
		b.WriteString("::text IS NOT DISTINCT FROM $")
		b.WriteString(strconv.Itoa(first + i))
		b.WriteString("::text::")
		b.WriteString(t.Columns[c].CastType)
		b.WriteString("::text")
	}
	b.WriteString(" LIMIT 1)")
}

// matchDeleteSQL deletes one row equal to the old values of match.
func matchDeleteSQL(t *Table, match []int) string {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(t.ident)
	b.WriteString(" WHERE ")
	matchOne(&b, t, match, 1)
	return b.String()
}

// matchUpdateSQL updates one row equal to the old values of match (the
// first parameters) to the values of cols (the following ones).
func matchUpdateSQL(t *Table, match, cols []int) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.ident)
	b.WriteString(" SET ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Columns[c].ident)
		b.WriteString(" = $")
		b.WriteString(strconv.Itoa(len(match) + i + 1))
		b.WriteString("::text::")
		b.WriteString(t.Columns[c].CastType)
	}
	b.WriteString(" WHERE ")
	matchOne(&b, t, match, 1)
	return b.String()
}

// copySQL is the COPY statement loading rows of cols (text format; see
// copyStatement).
func copySQL(t *Table, cols []int) string {
	var b strings.Builder
	b.WriteString("COPY ")
	b.WriteString(t.ident)
	b.WriteString(" (")
	columnList(&b, t, cols)
	b.WriteString(") FROM STDIN")
	return b.String()
}

// truncateSQL truncates tables in one statement, as the source did (a
// TRUNCATE of tables linked by foreign keys must name them all at once).
func truncateSQL(tables []*Table) string {
	var b strings.Builder
	b.WriteString("TRUNCATE ")
	for i, t := range tables {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.ident)
	}
	return b.String()
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
