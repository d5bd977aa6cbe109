package event

import (
	"bytes"
	"errors"
	"slices"
	"unicode/utf8"
	"unsafe"
)

// RawEvent is a change event as the processors edit it (Decoder.DecodeRaw):
// the routing members, columns and rows are read, but row values stay
// JSON, and lsn, commit_lsn, xid, commit_time, snapshot and unknown
// members are kept as they came, so an event written back unedited costs
// little more than a copy.
type RawEvent struct {
	Op     Op
	Schema string
	Table  string
	// Typed is set on events pg_flo_decode wrote: their row values are typed
	// JSON (docs/decode.md) instead of PostgreSQL text.
	Typed bool
	// Columns may be shared with other events of the same table: replace
	// the slice to change it, never its elements in place.
	Columns []Column
	// New and Old are nil for a JSON null.
	New, Old       RawRow
	UnchangedToast []string

	// kept holds the members kept as they came, in wire order, each as
	// `"name":value`.
	kept [][]byte
	// columnsJSON is the columns array as read and columnsRead the columns
	// it holds; the array is written again while Columns still equal them.
	columnsJSON []byte
	columnsRead []Column
}

// RawRow is a row's values in document order.
type RawRow []RawField

// RawField is one column's value as JSON: a string or null in a raw event,
// any JSON value in a typed one.
type RawField struct {
	Name  string
	Value []byte
	// nameJSON is the name's JSON string as read, written again while Name
	// is unchanged.
	nameJSON []byte
}

// Null reports whether the value is SQL NULL.
func (f RawField) Null() bool { return string(f.Value) == "null" }

// Text returns the string a JSON string value holds. Without escapes the
// string shares the value's bytes (no copy), so it must not outlive a
// change of them (decoded events' values are never changed in place).
func (f RawField) Text() (string, error) {
	v := f.Value
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errNotString
	}
	if inner := v[1 : len(v)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		// The usual case, read (and checked) by the decoder already.
		if len(inner) == 0 {
			return "", nil
		}
		return unsafe.String(&inner[0], len(inner)), nil
	}
	s := scanner{data: v}
	raw, _, err := s.span()
	if err != nil || s.i != len(v) {
		return "", errNotString
	}
	return unquote(raw), nil
}

var errNotString = errors.New("not a JSON string")

// Index returns the position of the named column in the row, or -1.
func (r RawRow) Index(name string) int {
	for i := range r {
		if r[i].Name == name {
			return i
		}
	}
	return -1
}

// AppendJSON appends the event's wire form, members in the order Event
// writes them (so Peek reads it fast), "typed" last.
func (e *RawEvent) AppendJSON(buf []byte) []byte {
	buf = appendHead(buf, e.Op, e.Schema, e.Table)
	for _, m := range e.kept {
		buf = append(buf, ',')
		buf = append(buf, m...)
	}
	buf = append(buf, `,"columns":`...)
	if e.columnsJSON != nil && (len(e.Columns) > 0 && &e.Columns[0] == &e.columnsRead[0] && len(e.Columns) == len(e.columnsRead) || slices.Equal(e.Columns, e.columnsRead)) {
		buf = append(buf, e.columnsJSON...)
	} else {
		buf = AppendColumns(buf, e.Columns)
	}
	buf = append(buf, `,"new":`...)
	buf = e.New.appendJSON(buf)
	buf = append(buf, `,"old":`...)
	buf = e.Old.appendJSON(buf)
	buf = append(buf, `,"unchanged_toast":`...)
	buf = AppendStrings(buf, e.UnchangedToast)
	if e.Typed {
		buf = append(buf, `,"typed":true`...)
	}
	return append(buf, '}')
}

func (r RawRow) appendJSON(buf []byte) []byte {
	if r == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '{')
	for i, f := range r {
		if i > 0 {
			buf = append(buf, ',')
		}
		// The name as it was read, while it is unchanged.
		if n := len(f.nameJSON); n >= 2 && string(f.nameJSON[1:n-1]) == f.Name {
			buf = append(buf, f.nameJSON...)
		} else {
			buf = AppendJSONString(buf, f.Name)
		}
		buf = append(buf, ':')
		buf = append(buf, f.Value...)
	}
	return append(buf, '}')
}
