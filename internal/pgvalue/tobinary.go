package pgvalue

// Text to binary: rows of COPY's text format into COPY's binary format, and
// single values into their binary form, for columns of common built-in
// types.
//
// Snapshot rows travel as the source's COPY text (internal/copypack), and
// the target's COPY FROM parsing that text is what bounds an initial sync:
// the text input functions of timestamps, uuids, numerics and jsonb cost
// the target's server process about half again what their binary receive
// functions do (3.0 s against 2.0 s for the benchmarks' million mixed rows).
// Reading the text back into binary here, where it is cheap (no general
// date parser, no per-value function call), moves that work off the
// target.
//
// The conversion is strict: it accepts exactly the text a type's output
// function writes under the sessions' pinned settings
// (event.TextFormSettings: ISO dates, hex bytea, UTC) and rejects anything
// else, so every value it converts is the value the target's text input
// would have read. What it rejects (another form, a value out of its
// range) is not an error of the data: the caller writes those rows as text
// and lets the target decide, as before.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// errNotConvertible marks a value the conversion to binary does not read
// (see above); it is wrapped with where the value is.
var errNotConvertible = errors.New("not in the form this conversion reads")

// scratch is the room a conversion of rows reuses: for a field with COPY
// escapes decoded, and for an array element with its quoting undone.
type scratch struct {
	field, elem []byte
}

// TextToBinary converts COPY text rows of the columns it was made for to
// binary tuples. It holds no state: one TextToBinary serves any number of
// goroutines.
type TextToBinary struct {
	cols []column
}

// TextToBinaryFor returns the conversion of rows whose columns have the
// type OIDs oids (as pg_attribute.atttypid on the target). ok is false,
// with the index of the first column it cannot convert, when some type has
// no conversion.
func TextToBinaryFor(oids []uint32) (r *TextToBinary, unsupported int, ok bool) {
	cols, unsupported, ok := columnsFor(oids)
	if !ok {
		return nil, unsupported, false
	}
	return &TextToBinary{cols: cols}, -1, true
}

// Append appends the binary tuples of the text rows lines (each ending in
// '\n', as COPY ... TO STDOUT writes them) to dst. On error dst is returned
// as it was, with a *RowError.
func (r *TextToBinary) Append(dst, lines []byte) ([]byte, error) {
	start := len(dst)
	var s scratch
	for row := 0; len(lines) > 0; row++ {
		nl := bytes.IndexByte(lines, '\n')
		if nl < 0 {
			return dst[:start], &RowError{Row: row, Column: 0, Err: errors.New("row does not end with a newline")}
		}
		line := lines[:nl]
		lines = lines[nl+1:]
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.cols)))
		for j := range r.cols {
			c := &r.cols[j]
			end := bytes.IndexByte(line, '\t')
			last := end < 0
			if last {
				end = len(line)
			}
			if last != (j == len(r.cols)-1) {
				return dst[:start], &RowError{Row: row, Column: j, Err: fmt.Errorf("row has a different number of fields than the %d columns", len(r.cols))}
			}
			field := line[:end]
			if !last {
				line = line[end+1:]
			}
			if len(field) == 2 && field[0] == '\\' && field[1] == 'N' {
				dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // NULL: length -1
				continue
			}
			if c.kind == binBytea && len(field) > 2 && field[0] == '\\' && field[1] == '\\' && field[2] == 'x' {
				// bytea's hex form comes with its backslash escaped by
				// COPY ("\\x00ff"), undone by skipping it: hex digits
				// need no escaping, any other backslash is declined.
				field = field[1:]
			} else if bytes.IndexByte(field, '\\') >= 0 {
				var err error
				if s.field, err = AppendCopyUnescaped(s.field[:0], field); err != nil {
					return dst[:start], &RowError{Row: row, Column: j, Err: err}
				}
				field = s.field
			}
			at := len(dst)
			dst = append(dst, 0, 0, 0, 0)
			var err error
			if c.kind == binArray {
				dst, err = appendBinaryArray(dst, field, c.elem, c.elemOID, &s)
			} else {
				dst, err = appendBinaryScalar(dst, c.kind, field)
			}
			if err != nil {
				return dst[:start], &RowError{Row: row, Column: j, Err: err}
			}
			binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		}
	}
	return dst, nil
}

// ScalarToBinary converts single values of one scalar type, as the type's
// output function writes them (no COPY escapes), to the type's binary form:
// the elements of an array parameter (internal/apply's set statements take
// one array of a column's values). The same strictness holds as for rows:
// a value in another form is declined with an error, and the caller sends
// it as text. A ScalarToBinary holds no state.
type ScalarToBinary struct{ kind binaryKind }

// ScalarToBinaryFor returns the conversion of values of type oid; ok is
// false for arrays and for types without one.
func ScalarToBinaryFor(oid uint32) (v ScalarToBinary, ok bool) {
	k, ok := binaryKinds[oid]
	return ScalarToBinary{kind: k}, ok
}

// Append appends the binary form of text (without a length word) to dst. On
// error dst is returned as it was.
func (v ScalarToBinary) Append(dst []byte, text string) ([]byte, error) {
	// The conversions only read their input, so the string's bytes are
	// lent to them as they are.
	b := unsafe.Slice(unsafe.StringData(text), len(text))
	out, err := appendBinaryScalar(dst, v.kind, b)
	if err != nil {
		return dst, err
	}
	return out, nil
}
