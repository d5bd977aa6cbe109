// Package change reads a change event (raw or typed, docs/event.md and
// docs/decode.md) into a form that the worker's processors (pg_flo_decode,
// pg_flo_rules, pg_flo_route) edit, and writes it back. Members nobody edits
// are kept as their raw JSON, so a read and a write cost little more than a
// scan of the document; a value is unescaped or decoded only when a
// processor asks for it.
package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// Event is a change event being edited. Columns, rows and the routing
// fields are parsed; lsn, commit_lsn, xid, commit_time and snapshot are kept
// as raw JSON.
type Event struct {
	Op     event.Op
	Schema string
	Table  string
	// Typed is set on events pg_flo_decode wrote: their row values are typed
	// JSON (docs/decode.md) instead of PostgreSQL text.
	Typed bool
	// Columns may be shared with other events of the same table: replace
	// the slice to change it, never its elements in place.
	Columns []event.Column
	// New and Old are nil for a JSON null.
	New, Old       Row
	UnchangedToast []string

	// raw holds the kept members in wire order, each as `"name":value`.
	raw [][]byte
	// columnsJSON is the columns array as read and columnsRead the columns
	// it holds; the array is written again while Columns still equal them.
	columnsJSON []byte
	columnsRead []event.Column
	// edits counts MarkEdited calls, so a processor knows whether it has
	// anything to write.
	edits int
}

// MarkEdited records that the event changed since it was read (or last
// written); Edits counts such changes.
func (e *Event) MarkEdited() { e.edits++ }

// Edits returns how often the event was marked edited.
func (e *Event) Edits() int { return e.edits }

// Row is a row's values in document order.
type Row []Field

// Field is one column's value as raw JSON: a string or null in a raw event,
// any JSON value in a typed one.
type Field struct {
	Name  string
	Value []byte
	// nameJSON is the name's JSON token as read, written again while Name
	// is unchanged.
	nameJSON []byte
}

// Null reports whether the value is SQL NULL.
func (f Field) Null() bool { return string(f.Value) == "null" }

// Index returns the position of the named column in the row, or -1.
func (r Row) Index(name string) int {
	for i := range r {
		if r[i].Name == name {
			return i
		}
	}
	return -1
}

// Column returns the named column's description and whether the event has it.
func (e *Event) Column(name string) (event.Column, bool) {
	for _, c := range e.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return event.Column{}, false
}

// ErrNotChangeEvent wraps every parse error: the message is not a change event
// this build reads.
var ErrNotChangeEvent = errors.New("not a pgflo change event")

// Parse reads a change event. data must stay unchanged while the event is
// in use: raw members and values point into it. cache (may be nil) keeps
// what events of the same tables share, so reading them allocates less.
func Parse(data []byte, cache *Cache) (*Event, error) {
	p := parser{data: data, cache: cache}
	ev, err := p.event()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotChangeEvent, err)
	}
	return ev, nil
}

// Text returns a value's PostgreSQL text form (ok false for NULL), decoding
// a typed value with pgvalue. The string may share the event's bytes (see
// borrowText): copy it to keep it beyond the event.
func (e *Event) Text(f Field, col event.Column) (text string, ok bool, err error) {
	if f.Null() {
		return "", false, nil
	}
	if !e.Typed || pgvalue.TypedAsText(col) && f.Value[0] == '"' {
		s, err := borrowText(f.Value)
		if err != nil {
			return "", false, fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", f.Name, err)
		}
		return s, true, nil
	}
	s, err := pgvalue.EncodeJSON(f.Value, col)
	if err != nil {
		return "", false, fmt.Errorf("column %q: %w", f.Name, err)
	}
	return s, true, nil
}

// Value returns the JSON value that stores text in this event's form: a
// JSON string for raw events, the typed value for typed ones.
func (e *Event) Value(text string, col event.Column) ([]byte, error) {
	buf := make([]byte, 0, len(text)+len(text)/8+8)
	if !e.Typed {
		return event.AppendJSONString(buf, text), nil
	}
	return pgvalue.AppendTyped(buf, text, col)
}

// Decode turns a raw event into a typed one (pg_flo_decode). A typed event
// is left as it is; on an error the event is unchanged.
func (e *Event) Decode() error {
	if e.Typed {
		return nil
	}
	size := 0
	for _, row := range []Row{e.New, e.Old} {
		for _, f := range row {
			size += len(f.Value) + 8
		}
	}
	buf := make([]byte, 0, size)
	var endsArray [64]int
	ends := endsArray[:0] // where each non-NULL value's typed JSON ends in buf
	for _, row := range []Row{e.New, e.Old} {
		for i := range row {
			f := &row[i]
			if f.Null() {
				continue
			}
			col, _ := e.Column(f.Name)
			if pgvalue.TypedAsText(col) && f.Value[0] == '"' {
				// The typed value is the same JSON string.
				buf = append(buf, f.Value...)
				ends = append(ends, len(buf))
				continue
			}
			text, err := borrowText(f.Value)
			if err != nil {
				return fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", f.Name, err)
			}
			if buf, err = pgvalue.AppendTyped(buf, text, col); err != nil {
				return fmt.Errorf("column %q: %w", f.Name, err)
			}
			ends = append(ends, len(buf))
		}
	}
	start := 0
	for _, row := range []Row{e.New, e.Old} {
		for i := range row {
			if row[i].Null() {
				continue
			}
			end := ends[0]
			ends = ends[1:]
			row[i].Value = buf[start:end:end]
			start = end
		}
	}
	e.Typed = true
	e.MarkEdited()
	return nil
}

// AppendJSON appends the event's wire form, members in the order
// internal/event writes them (so event.Peek reads it fast), "typed" last.
func (e *Event) AppendJSON(buf []byte) []byte {
	buf = append(buf, `{"v":1,"op":`...)
	buf = event.AppendJSONString(buf, string(e.Op))
	buf = append(buf, `,"schema":`...)
	buf = event.AppendJSONString(buf, e.Schema)
	buf = append(buf, `,"table":`...)
	buf = event.AppendJSONString(buf, e.Table)
	for _, m := range e.raw {
		buf = append(buf, ',')
		buf = append(buf, m...)
	}
	buf = append(buf, `,"columns":`...)
	if e.columnsJSON != nil && (len(e.Columns) > 0 && &e.Columns[0] == &e.columnsRead[0] && len(e.Columns) == len(e.columnsRead) || slices.Equal(e.Columns, e.columnsRead)) {
		buf = append(buf, e.columnsJSON...)
	} else {
		buf = event.AppendColumns(buf, e.Columns)
	}
	buf = append(buf, `,"new":`...)
	buf = e.New.appendJSON(buf)
	buf = append(buf, `,"old":`...)
	buf = e.Old.appendJSON(buf)
	buf = append(buf, `,"unchanged_toast":`...)
	buf = event.AppendStrings(buf, e.UnchangedToast)
	if e.Typed {
		buf = append(buf, `,"typed":true`...)
	}
	return append(buf, '}')
}

func (r Row) appendJSON(buf []byte) []byte {
	if r == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '{')
	for i, f := range r {
		if i > 0 {
			buf = append(buf, ',')
		}
		if n := len(f.nameJSON); n >= 2 && string(f.nameJSON[1:n-1]) == f.Name {
			buf = append(buf, f.nameJSON...)
		} else {
			buf = event.AppendJSONString(buf, f.Name)
		}
		buf = append(buf, ':')
		buf = append(buf, f.Value...)
	}
	return append(buf, '}')
}

// borrowText reads a JSON string like unquote, but without a copy when it
// holds no escapes: the string shares v's bytes, so it must not outlive a
// change of them (events' values never change in place).
func borrowText(v []byte) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 {
		inner := v[1 : len(v)-1]
		if len(inner) == 0 {
			return "", nil
		}
		return unsafe.String(&inner[0], len(inner)), nil
	}
	return unquote(v)
}

// unquote reads a JSON string; other JSON values are an error.
func unquote(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("not a JSON string")
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}
