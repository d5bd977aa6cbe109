package apply

import (
	"slices"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// A set statement's rows go in key order (integers as numbers), with their
// changes, unless another unique index could make the order matter.
func TestSortByKey(t *testing.T) {
	keyed := func(oids ...uint32) *Table {
		tb := &Table{}
		for i, oid := range oids {
			tb.Columns = append(tb.Columns, Column{Name: string(rune('a' + i)), TypeOID: oid})
			tb.Key = append(tb.Key, i)
		}
		return tb
	}
	stepOf := func(tb *Table, keys ...[]string) *step {
		s := &step{kind: stepUpsert, table: tb}
		for i, k := range keys {
			e := &entry{change: &Change{Index: i}}
			for _, v := range k {
				e.key = append(e.key, event.Value{Text: v})
			}
			s.rows = append(s.rows, e)
			s.changes = append(s.changes, e.change)
		}
		return s
	}
	order := func(s *step) (keys []string, changes []int) {
		for i, e := range s.rows {
			var k string
			for _, v := range e.key {
				k += v.Text + "/"
			}
			keys = append(keys, k)
			if s.changes[i] != e.change {
				t.Fatalf("change %d is not its row's", i)
			}
			changes = append(changes, e.change.Index)
		}
		return keys, changes
	}
	for _, c := range []struct {
		name string
		tb   *Table
		keys [][]string
		want []string
	}{
		{"int8", keyed(pgvalue.Int8OID), [][]string{{"10"}, {"9"}, {"-1"}, {"100"}, {"-20"}},
			[]string{"-20/", "-1/", "9/", "10/", "100/"}},
		{"text", keyed(pgvalue.TextOID), [][]string{{"b"}, {"a"}, {"ab"}},
			[]string{"a/", "ab/", "b/"}},
		{"int4 and text", keyed(pgvalue.Int4OID, pgvalue.TextOID), [][]string{{"2", "a"}, {"10", "b"}, {"10", "a"}},
			[]string{"10/a/", "10/b/", "2/a/"}},
		{"not an integer's text", keyed(pgvalue.Int8OID), [][]string{{"2"}, {"x"}, {"1"}},
			[]string{"2/", "x/", "1/"}},
		{"another unique index", func() *Table { tb := keyed(pgvalue.Int8OID); tb.OtherUnique = true; return tb }(), [][]string{{"2"}, {"1"}},
			[]string{"2/", "1/"}},
	} {
		s := stepOf(c.tb, c.keys...)
		sortByKey(s)
		keys, changes := order(s)
		if !slices.Equal(keys, c.want) {
			t.Errorf("%s: rows in order %v, want %v", c.name, keys, c.want)
		}
		if len(changes) != len(c.keys) {
			t.Errorf("%s: %d changes for %d rows", c.name, len(changes), len(c.keys))
		}
	}
}
