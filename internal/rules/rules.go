// Package rules is pg_flo's rules engine, rebuilt: transform rules (regex,
// mask) and filter rules (eq, ne, gt, lt, gte, lte, contains) per table and
// per operation, read from pg_flo's rules file unchanged (docs/rules.md).
// It works on raw and typed change events alike: values are compared and
// transformed in their PostgreSQL text form and written back in the
// event's own form.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/tablefile"
)

// Set is a loaded rules file: the rules of each table, in file order.
type Set struct {
	source string
	keys   []tablefile.Key
	rules  [][]*rule // rules[i] are the rules of keys[i]
}

type ruleKind int

const (
	transformRule ruleKind = iota
	filterRule
)

type transformKind int

const (
	regexTransform transformKind = iota
	maskTransform
)

// rule is one compiled rule.
type rule struct {
	index  int // 1-based position in its table's list
	kind   ruleKind
	column string
	ops    opSet
	// allowEmptyDeletes lets a DELETE whose old row lacks the column through
	// a filter.
	allowEmptyDeletes bool

	transform transformKind
	pattern   *regexp.Regexp
	replace   string
	maskChar  string

	operator string
	value    string // the filter value as text
}

// opSet is a set of DML operations.
type opSet uint8

const (
	opInsert opSet = 1 << iota
	opUpdate
	opDelete
	allDML = opInsert | opUpdate | opDelete
)

func opBit(op event.Op) opSet {
	switch op {
	case event.Insert:
		return opInsert
	case event.Update:
		return opUpdate
	case event.Delete:
		return opDelete
	}
	return 0
}

// Result is what applying the rules to an event decided.
type Result int

// The outcomes of Apply.
const (
	// Keep: the event goes on (possibly transformed).
	Keep Result = iota
	// Drop: a filter was false; the event is removed.
	Drop
)

// RuleError is a rule that could not be evaluated on an event: the event
// is left unchanged (not dropped, not half-transformed).
type RuleError struct {
	Source string // the rules file, or the config field of inline rules
	Table  string // the table key the rule is listed under
	Rule   int    // the rule's 1-based position in that table's list
	Column string
	Err    error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("%s: table %s rule %d (column %q): %v", e.Source, e.Table, e.Rule, e.Column, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Apply runs the rules of the event's table on it, in file order. A filter
// that is false stops and returns Drop. On an error the event is as it was.
func (s *Set) Apply(ev *change.Event) (Result, error) {
	bit := opBit(ev.Op)
	if bit == 0 {
		return Keep, nil // TRUNCATE and DDL carry no rows
	}
	i := tablefile.Match(s.keys, ev.Schema, ev.Table)
	if i < 0 {
		return Keep, nil
	}
	pending := make([]edit, 0, 4)
	for _, r := range s.rules[i] {
		if r.ops&bit == 0 {
			continue
		}
		res, edits, err := r.apply(ev, pending)
		if err != nil {
			return Keep, &RuleError{Source: s.source, Table: s.keys[i].Name, Rule: r.index, Column: r.column, Err: err}
		}
		if res == Drop {
			return Drop, nil
		}
		pending = edits
	}
	for _, e := range pending {
		e.row(ev)[e.index].Value = e.value
	}
	if len(pending) > 0 {
		ev.MarkEdited()
	}
	return Keep, nil
}

// edit is a transformed value, applied once every rule passed so that an
// error leaves the event untouched.
type edit struct {
	old   bool // in the old row, else in new
	index int
	value []byte
	text  string
}

func (e edit) row(ev *change.Event) event.RawRow {
	if e.old {
		return ev.Old
	}
	return ev.New
}

// current returns the column's text in a row (old or new) as the rules so
// far left it.
func current(ev *change.Event, old bool, i int, col event.Column, pending []edit) (string, bool, error) {
	for j := len(pending) - 1; j >= 0; j-- {
		if e := pending[j]; e.old == old && e.index == i {
			return e.text, true, nil
		}
	}
	row := ev.New
	if old {
		row = ev.Old
	}
	return ev.Text(row[i], col)
}

// apply evaluates the rule on ev, after the edits pending from the rules
// before it, and returns them with its own. A filter reads the row the
// change produced (new; old for DELETE, and for an UPDATE's unchanged TOAST
// column); a transform rewrites every row holding the column (new and old),
// so a masked key is masked alike in both.
func (r *rule) apply(ev *change.Event, pending []edit) (Result, []edit, error) {
	col, known := ev.Column(r.column)
	if !known {
		return Keep, nil, fmt.Errorf("the table has no column %q", r.column)
	}
	if r.kind == filterRule {
		old := ev.Op == event.Delete
		row := ev.New
		if old {
			row = ev.Old
		}
		i := row.Index(r.column)
		if i < 0 && ev.Op == event.Update {
			// An unchanged TOAST value: the old row has it with REPLICA
			// IDENTITY FULL.
			old, row = true, ev.Old
			i = row.Index(r.column)
		}
		if i < 0 {
			if ev.Op == event.Delete && r.allowEmptyDeletes {
				return Keep, pending, nil
			}
			return Drop, nil, nil
		}
		text, ok, err := current(ev, old, i, col, pending)
		if err != nil {
			return Keep, nil, err
		}
		if !ok {
			return Drop, nil, nil // NULL compares false
		}
		pass, err := r.test(text, col)
		if err != nil {
			return Keep, nil, err
		}
		if !pass {
			return Drop, nil, nil
		}
		return Keep, pending, nil
	}
	for _, old := range []bool{false, true} {
		row := ev.New
		if old {
			row = ev.Old
		}
		i := row.Index(r.column)
		if i < 0 {
			continue
		}
		text, ok, err := current(ev, old, i, col, pending)
		if err != nil {
			return Keep, nil, err
		}
		if !ok {
			continue // NULL stays NULL
		}
		out := r.transformText(text)
		if out == text {
			continue
		}
		if !ev.Typed {
			if _, err := pgvalue.Decode(out, col); err != nil {
				return Keep, nil, fmt.Errorf("%s result is not a valid %s: %w", r.transformName(), col.Type, err)
			}
		}
		value, err := ev.Value(out, col)
		if err != nil {
			return Keep, nil, fmt.Errorf("%s result is not a valid %s: %w", r.transformName(), col.Type, err)
		}
		pending = append(pending, edit{old: old, index: i, value: value, text: out})
	}
	return Keep, pending, nil
}

func (r *rule) transformName() string {
	if r.transform == maskTransform {
		return "mask"
	}
	return "regex"
}

func (r *rule) transformText(s string) string {
	if r.transform == regexTransform {
		return replaceAll(r.pattern, s, r.replace)
	}
	return Mask(s, r.maskChar)
}

// replaceAll is regexp's ReplaceAllString (with $1 expansion), cheaper in
// the common cases of pg_flo's rules: no match at all, or one match
// covering the whole value (an anchored pattern), after which ReplaceAll
// finds nothing more (an empty match right after a match does not count).
func replaceAll(re *regexp.Regexp, s, template string) string {
	m := re.FindStringSubmatchIndex(s)
	if m == nil {
		return s
	}
	if m[0] == 0 && m[1] == len(s) {
		return string(re.ExpandString(make([]byte, 0, len(template)+len(s)), template, s, m))
	}
	return re.ReplaceAllString(s, template)
}

// Mask keeps the first and the last character of s and replaces each one
// between with maskChar; strings of two characters or fewer are returned
// as they are. Characters are Unicode code points, never bytes, so the
// result is valid UTF-8.
func Mask(s, maskChar string) string {
	n := utf8.RuneCountInString(s)
	if n <= 2 {
		return s
	}
	_, firstSize := utf8.DecodeRuneInString(s)
	_, lastSize := utf8.DecodeLastRuneInString(s)
	var b strings.Builder
	b.Grow(firstSize + lastSize + (n-2)*len(maskChar))
	b.WriteString(s[:firstSize])
	for i := 0; i < n-2; i++ {
		b.WriteString(maskChar)
	}
	b.WriteString(s[len(s)-lastSize:])
	return b.String()
}

// test evaluates a filter on a non-NULL value.
func (r *rule) test(text string, col event.Column) (bool, error) {
	if r.operator == "contains" {
		return strings.Contains(text, r.value), nil
	}
	if r.operator == "eq" || r.operator == "ne" {
		eq, err := pgvalue.Equal(text, r.value, col)
		if err != nil {
			return false, err
		}
		return eq == (r.operator == "eq"), nil
	}
	c, err := pgvalue.Compare(text, r.value, col)
	if errors.Is(err, pgvalue.ErrNotOrdered) {
		return false, fmt.Errorf("operator %s does not apply to type %s (use eq, ne or contains)", r.operator, col.Type)
	}
	if err != nil {
		return false, err
	}
	switch r.operator {
	case "gt":
		return c > 0, nil
	case "lt":
		return c < 0, nil
	case "gte":
		return c >= 0, nil
	default: // lte
		return c <= 0, nil
	}
}
