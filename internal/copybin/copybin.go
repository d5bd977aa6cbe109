// Package copybin turns rows of COPY's text format into COPY's binary format
// for columns of common built-in types.
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
package copybin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pgflo/pgflo/internal/builtin"
	"github.com/pgflo/pgflo/internal/copypack"
)

// Header starts a COPY binary stream: the signature, no flags, no header
// extension.
var Header = []byte("PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00")

// Trailer ends a COPY binary stream: a field count of -1.
var Trailer = []byte{0xff, 0xff}

// errNotConvertible marks a value the conversion does not read (see the
// package comment); it is wrapped with where the value is.
var errNotConvertible = errors.New("not in the form this conversion reads")

// convert appends the binary form of one value's text to dst.
type convert func(dst, text []byte, s *scratch) ([]byte, error)

// scratch is the room a conversion of rows reuses: for a field with COPY
// escapes decoded, and for an array element with its quoting undone.
type scratch struct {
	field, elem []byte
}

// Rows converts rows of the columns it was made for. It holds no state: one
// Rows serves any number of goroutines.
type Rows struct {
	conv []convert
	// bytea marks bytea columns: their hex form comes with its backslash
	// escaped by COPY ("\\x00ff"), which is undone by skipping it.
	bytea []bool
}

// For returns the conversion of rows whose columns have the type OIDs oids
// (as pg_attribute.atttypid on the target). ok is false, with the index of
// the first column it cannot convert, when some type has no conversion.
func For(oids []uint32) (r *Rows, unsupported int, ok bool) {
	r = &Rows{conv: make([]convert, len(oids)), bytea: make([]bool, len(oids))}
	for i, oid := range oids {
		r.bytea[i] = oid == builtin.Bytea
		c, ok := converterFor(oid)
		if !ok {
			return nil, i, false
		}
		r.conv[i] = c
	}
	return r, -1, true
}

// ConvertError says which row and column of the text could not be
// converted.
type ConvertError struct {
	Row, Column int // 0-based: the row within the text, the column within the row
	Err         error
}

func (e *ConvertError) Error() string {
	return fmt.Sprintf("row %d, column %d: %v", e.Row+1, e.Column+1, e.Err)
}

func (e *ConvertError) Unwrap() error { return e.Err }

// Append appends the binary tuples of the text rows lines (each ending in
// '\n', as COPY ... TO STDOUT writes them) to dst. On error dst is returned
// as it was, with a *ConvertError.
func (r *Rows) Append(dst, lines []byte) ([]byte, error) {
	start := len(dst)
	var s scratch
	for row := 0; len(lines) > 0; row++ {
		nl := bytes.IndexByte(lines, '\n')
		if nl < 0 {
			return dst[:start], &ConvertError{Row: row, Column: 0, Err: errors.New("row does not end with a newline")}
		}
		line := lines[:nl]
		lines = lines[nl+1:]
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.conv)))
		for j, conv := range r.conv {
			end := bytes.IndexByte(line, '\t')
			last := end < 0
			if last {
				end = len(line)
			}
			if last != (j == len(r.conv)-1) {
				return dst[:start], &ConvertError{Row: row, Column: j, Err: fmt.Errorf("row has a different number of fields than the %d columns", len(r.conv))}
			}
			field := line[:end]
			if !last {
				line = line[end+1:]
			}
			if len(field) == 2 && field[0] == '\\' && field[1] == 'N' {
				dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // NULL: length -1
				continue
			}
			if r.bytea[j] && len(field) > 2 && field[0] == '\\' && field[1] == '\\' && field[2] == 'x' {
				field = field[1:] // hex digits need no escaping: any other backslash is declined
			} else if bytes.IndexByte(field, '\\') >= 0 {
				var err error
				if s.field, err = copypack.AppendUnescaped(s.field[:0], field); err != nil {
					return dst[:start], &ConvertError{Row: row, Column: j, Err: err}
				}
				field = s.field
			}
			at := len(dst)
			dst = append(dst, 0, 0, 0, 0)
			var err error
			if dst, err = conv(dst, field, &s); err != nil {
				return dst[:start], &ConvertError{Row: row, Column: j, Err: err}
			}
			binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		}
	}
	return dst, nil
}
