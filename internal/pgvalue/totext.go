package pgvalue

// Binary to text: rows of COPY's binary format rendered as their text
// form, for columns of common built-in types: the inverse of TextToBinary.
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

import (
	"encoding/binary"
	"fmt"
)

// BinaryToTextSupported reports whether values of type oid are converted
// between text and binary here (by BinaryToText and TextToBinary).
func BinaryToTextSupported(oid uint32) bool {
	_, ok := columnFor(oid)
	return ok
}

// BinaryToText renders binary tuples of columns with fixed type OIDs. It
// holds no state: one BinaryToText serves any number of goroutines.
type BinaryToText struct {
	cols []column
}

// BinaryToTextFor returns the renderer for columns of the type OIDs oids
// (as pg_attribute.atttypid). ok is false, with the index of the first
// column it cannot render, when some type is not supported.
func BinaryToTextFor(oids []uint32) (r *BinaryToText, unsupported int, ok bool) {
	cols, unsupported, ok := columnsFor(oids)
	if !ok {
		return nil, unsupported, false
	}
	return &BinaryToText{cols: cols}, -1, true
}

// AppendText appends the text output form of column col's binary value
// data (never NULL) to dst. On error dst is returned as it was.
func (r *BinaryToText) AppendText(dst []byte, col int, data []byte) ([]byte, error) {
	if col < 0 || col >= len(r.cols) {
		return dst, &RowError{Row: -1, Column: col, Err: fmt.Errorf("no column %d of %d", col+1, len(r.cols))}
	}
	out, err := r.cols[col].appendText(dst, data)
	if err != nil {
		return dst, &RowError{Row: -1, Column: col, Err: err}
	}
	return out, nil
}

// AppendCopyText appends whole tuples as COPY text rows, byte for byte what
// COPY ... TO STDOUT (text format) writes for the same rows: fields
// separated by '\t', \N for NULL, each row ending in '\n', and COPY's
// escapes (a backslash doubled, \b \f \n \r \t \v for those bytes, every
// other byte as it is). On error dst is returned as it was.
func (r *BinaryToText) AppendCopyText(dst, tuples []byte) ([]byte, error) {
	start := len(dst)
	ncols := len(r.cols)
	// The tuples are read as NextTuple reads them, while they are rendered:
	// a second pass over them would cost a tenth of the time.
	for row := 0; len(tuples) > 0; row++ {
		if len(tuples) < 2 {
			return dst[:start], &RowError{Row: row, Column: -1, Err: ErrTruncated}
		}
		switch n := int16(binary.BigEndian.Uint16(tuples)); {
		case n == -1:
			return dst[:start], &RowError{Row: row, Column: -1, Err: errTrailer}
		case int(n) != ncols:
			return dst[:start], &RowError{Row: row, Column: -1, Err: fmt.Errorf("tuple has %d fields, not the %d columns", n, ncols)}
		}
		i := 2
		for col := range r.cols {
			if col > 0 {
				dst = append(dst, '\t')
			}
			if len(tuples)-i < 4 {
				return dst[:start], &RowError{Row: row, Column: col, Err: ErrTruncated}
			}
			n := int32(binary.BigEndian.Uint32(tuples[i:]))
			i += 4
			switch {
			case n == -1:
				dst = append(dst, '\\', 'N')
				continue
			case n < 0:
				return dst[:start], &RowError{Row: row, Column: col, Err: errLength}
			case int(n) > len(tuples)-i:
				return dst[:start], &RowError{Row: row, Column: col, Err: ErrTruncated}
			}
			data := tuples[i : i+int(n)]
			i += int(n)
			var err error
			if dst, err = r.cols[col].appendCopyText(dst, data); err != nil {
				return dst[:start], &RowError{Row: row, Column: col, Err: err}
			}
		}
		dst = append(dst, '\n')
		tuples = tuples[i:]
	}
	return dst, nil
}
