// Package bintext renders rows of COPY's binary format as their text form,
// for columns of common built-in types: the inverse of internal/copybin.
//
// A snapshot can read its source with binary COPY, which spares the
// source's server process the text output functions of timestamps,
// numerics, floats and arrays; the events it sends still carry every value
// in its text form, so that form is written here instead, where it is
// cheap: a switch per value appending into the caller's buffer, no
// allocation.
//
// The rendering is byte for byte what the type's output function writes
// under the sessions' pinned settings (event.TextFormSettings: DateStyle
// ISO, UTC, hex bytea, extra_float_digits 3), and AppendCopyText what
// COPY ... TO STDOUT writes in text format: a value renders the same
// whether its row was read as text or as binary. Binary data the server's
// receive function would reject (a wrong length, a date out of range, an
// array of another element type) is an error, never a guess.
package bintext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Error says where in the rows a value or a tuple could not be read. It
// never quotes the data: rows can hold anything.
type Error struct {
	Row, Column int // 0-based; -1 when not known where the error was found
	Err         error
}

func (e *Error) Error() string {
	switch {
	case e.Row >= 0 && e.Column >= 0:
		return fmt.Sprintf("row %d, column %d: %v", e.Row+1, e.Column+1, e.Err)
	case e.Row >= 0:
		return fmt.Sprintf("row %d: %v", e.Row+1, e.Err)
	case e.Column >= 0:
		return fmt.Sprintf("column %d: %v", e.Column+1, e.Err)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

var (
	// ErrTruncated is wrapped in the errors of rows that end inside a
	// tuple: a reader of a stream waits for more instead of failing.
	ErrTruncated = errors.New("tuple is truncated")
	errTrailer   = errors.New("the trailer (field count -1) where a tuple was expected")
	errLength    = errors.New("negative field length other than -1 (NULL)")
	errTrailing  = errors.New("bytes after the tuple's last field")
)

// Supported reports whether values of type oid are rendered here.
func Supported(oid uint32) bool {
	_, ok := columnFor(oid)
	return ok
}

// Rows renders binary tuples of columns with fixed type OIDs. It holds no
// state after For: one Rows serves any number of goroutines.
type Rows struct {
	cols []column
}

// For returns the renderer for columns of the type OIDs oids (as
// pg_attribute.atttypid). ok is false, with the index of the first column
// it cannot render, when some type is not supported.
func For(oids []uint32) (r *Rows, unsupported int, ok bool) {
	r = &Rows{cols: make([]column, len(oids))}
	for i, oid := range oids {
		c, ok := columnFor(oid)
		if !ok {
			return nil, i, false
		}
		r.cols[i] = c
	}
	return r, -1, true
}

// NextTuple splits the first tuple off rows: binary COPY tuples as they
// follow the file header (an int16 field count, which must equal ncols,
// then per field an int32 length, -1 for NULL, and the data). It errors on
// a truncated tuple, a wrong field count, a negative length other than -1,
// or the trailer (a count of -1), which ends a stream but is no tuple.
func NextTuple(rows []byte, ncols int) (tuple, rest []byte, err error) {
	if len(rows) < 2 {
		return nil, rows, &Error{Row: -1, Column: -1, Err: ErrTruncated}
	}
	switch n := int16(binary.BigEndian.Uint16(rows)); {
	case n == -1:
		return nil, rows, &Error{Row: -1, Column: -1, Err: errTrailer}
	case int(n) != ncols:
		return nil, rows, &Error{Row: -1, Column: -1, Err: fmt.Errorf("tuple has %d fields, not the %d columns", n, ncols)}
	}
	i := 2
	for col := range ncols {
		if len(rows)-i < 4 {
			return nil, rows, &Error{Row: -1, Column: col, Err: ErrTruncated}
		}
		n := int32(binary.BigEndian.Uint32(rows[i:]))
		i += 4
		switch {
		case n == -1:
		case n < 0:
			return nil, rows, &Error{Row: -1, Column: col, Err: errLength}
		case int(n) > len(rows)-i:
			return nil, rows, &Error{Row: -1, Column: col, Err: ErrTruncated}
		default:
			i += int(n)
		}
	}
	return rows[:i:i], rows[i:], nil
}

// Count returns how many whole tuples rows holds, erroring like NextTuple
// (with the row the error is in).
func Count(rows []byte, ncols int) (int, error) {
	n := 0
	for len(rows) > 0 {
		var err error
		if _, rows, err = NextTuple(rows, ncols); err != nil {
			err.(*Error).Row = n
			return n, err
		}
		n++
	}
	return n, nil
}

// EachField calls fn for every field of one tuple (as NextTuple returned
// it): data is nil for NULL and non-nil (possibly empty) otherwise. An
// error of fn is returned as it is.
func EachField(tuple []byte, fn func(col int, data []byte) error) error {
	if len(tuple) < 2 {
		return &Error{Row: -1, Column: -1, Err: ErrTruncated}
	}
	ncols := int(int16(binary.BigEndian.Uint16(tuple)))
	if ncols < 0 {
		return &Error{Row: -1, Column: -1, Err: errTrailer}
	}
	i := 2
	for col := range ncols {
		if len(tuple)-i < 4 {
			return &Error{Row: -1, Column: col, Err: ErrTruncated}
		}
		n := int32(binary.BigEndian.Uint32(tuple[i:]))
		i += 4
		var data []byte
		switch {
		case n == -1:
		case n < 0:
			return &Error{Row: -1, Column: col, Err: errLength}
		case int(n) > len(tuple)-i:
			return &Error{Row: -1, Column: col, Err: ErrTruncated}
		default:
			data = tuple[i : i+int(n) : i+int(n)] // non-nil even when empty: tuple is not nil
			i += int(n)
		}
		if err := fn(col, data); err != nil {
			return err
		}
	}
	if i != len(tuple) {
		return &Error{Row: -1, Column: -1, Err: errTrailing}
	}
	return nil
}

// AppendText appends the text output form of column col's binary value
// data (never NULL) to dst. On error dst is returned as it was.
func (r *Rows) AppendText(dst []byte, col int, data []byte) ([]byte, error) {
	if col < 0 || col >= len(r.cols) {
		return dst, &Error{Row: -1, Column: col, Err: fmt.Errorf("no column %d of %d", col+1, len(r.cols))}
	}
	out, err := r.cols[col].appendText(dst, data)
	if err != nil {
		return dst, &Error{Row: -1, Column: col, Err: err}
	}
	return out, nil
}

// AppendCopyText appends whole tuples as COPY text rows, byte for byte what
// COPY ... TO STDOUT (text format) writes for the same rows: fields
// separated by '\t', \N for NULL, each row ending in '\n', and COPY's
// escapes (a backslash doubled, \b \f \n \r \t \v for those bytes, every
// other byte as it is). On error dst is returned as it was.
func (r *Rows) AppendCopyText(dst, tuples []byte) ([]byte, error) {
	start := len(dst)
	ncols := len(r.cols)
	// The tuples are read as NextTuple reads them, while they are rendered:
	// a second pass over them would cost a tenth of the time.
	for row := 0; len(tuples) > 0; row++ {
		if len(tuples) < 2 {
			return dst[:start], &Error{Row: row, Column: -1, Err: ErrTruncated}
		}
		switch n := int16(binary.BigEndian.Uint16(tuples)); {
		case n == -1:
			return dst[:start], &Error{Row: row, Column: -1, Err: errTrailer}
		case int(n) != ncols:
			return dst[:start], &Error{Row: row, Column: -1, Err: fmt.Errorf("tuple has %d fields, not the %d columns", n, ncols)}
		}
		i := 2
		for col := range r.cols {
			if col > 0 {
				dst = append(dst, '\t')
			}
			if len(tuples)-i < 4 {
				return dst[:start], &Error{Row: row, Column: col, Err: ErrTruncated}
			}
			n := int32(binary.BigEndian.Uint32(tuples[i:]))
			i += 4
			switch {
			case n == -1:
				dst = append(dst, '\\', 'N')
				continue
			case n < 0:
				return dst[:start], &Error{Row: row, Column: col, Err: errLength}
			case int(n) > len(tuples)-i:
				return dst[:start], &Error{Row: row, Column: col, Err: ErrTruncated}
			}
			data := tuples[i : i+int(n)]
			i += int(n)
			var err error
			if dst, err = r.cols[col].appendCopyText(dst, data); err != nil {
				return dst[:start], &Error{Row: row, Column: col, Err: err}
			}
		}
		dst = append(dst, '\n')
		tuples = tuples[i:]
	}
	return dst, nil
}

// copyEscapes maps each byte COPY's text format escapes to the letter
// following its backslash, and every other byte to 0.
var copyEscapes = [256]byte{'\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

// appendEscaped appends s with COPY's escapes. Most text has none: it is
// scanned a word at a time.
func appendEscaped(dst, s []byte) []byte {
	done := 0 // s[:done] is in dst
	for i := 0; i < len(s); {
		if len(s)-i >= 8 && !mayNeedEscape(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
			continue
		}
		if e := copyEscapes[s[i]]; e != 0 {
			dst = append(dst, s[done:i]...)
			dst = append(dst, '\\', e)
			done = i + 1
		}
		i++
	}
	return append(dst, s[done:]...)
}

// mayNeedEscape reports whether any byte of the word w is below 14 (from
// \b to \r, and some that need nothing) or a backslash: the bit tricks of
// "Bit Twiddling Hacks" (hasless, haszero), exact about whether any byte
// matches.
func mayNeedEscape(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (w - ones*14) &^ w & highs
	bs := w ^ (ones * '\\')
	backslash := (bs - ones) &^ bs & highs
	return below|backslash != 0
}

// escapeTail applies COPY's escapes to dst[start:] where it lies, growing
// it backwards so that no room is needed beside it.
func escapeTail(dst []byte, start int) []byte {
	n := 0
	for _, c := range dst[start:] {
		if copyEscapes[c] != 0 {
			n++
		}
	}
	if n == 0 {
		return dst
	}
	end := len(dst)
	dst = slices.Grow(dst, n)[:end+n]
	w := end + n - 1
	for i := end - 1; i >= start && w > i; i-- {
		c := dst[i]
		if e := copyEscapes[c]; e != 0 {
			dst[w] = e
			dst[w-1] = '\\'
			w -= 2
		} else {
			dst[w] = c
			w--
		}
	}
	return dst
}
