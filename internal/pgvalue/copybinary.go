package pgvalue

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// COPY's binary format: a header, then tuples (an int16 field count, then
// per field an int32 length, -1 for NULL, and the data), then a trailer.

// CopyBinaryHeader starts a COPY binary stream: the signature, no flags, no
// header extension.
var CopyBinaryHeader = []byte("PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00")

// CopyBinaryTrailer ends a COPY binary stream: a field count of -1.
var CopyBinaryTrailer = []byte{0xff, 0xff}

// RowError says where in the rows a value or a tuple could not be read. It
// never quotes the data: rows can hold anything.
type RowError struct {
	Row, Column int // 0-based; -1 when not known where the error was found
	Err         error
}

func (e *RowError) Error() string {
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

func (e *RowError) Unwrap() error { return e.Err }

var (
	// ErrTruncated is wrapped in the errors of rows that end inside a
	// tuple: a reader of a stream waits for more instead of failing.
	ErrTruncated = errors.New("tuple is truncated")
	errTrailer   = errors.New("the trailer (field count -1) where a tuple was expected")
	errLength    = errors.New("negative field length other than -1 (NULL)")
	errTrailing  = errors.New("bytes after the tuple's last field")
)

// NextTuple splits the first tuple off rows: binary COPY tuples as they
// follow the file header (an int16 field count, which must equal ncols,
// then per field an int32 length, -1 for NULL, and the data). It errors on
// a truncated tuple, a wrong field count, a negative length other than -1,
// or the trailer (a count of -1), which ends a stream but is no tuple.
func NextTuple(rows []byte, ncols int) (tuple, rest []byte, err error) {
	if len(rows) < 2 {
		return nil, rows, &RowError{Row: -1, Column: -1, Err: ErrTruncated}
	}
	switch n := int16(binary.BigEndian.Uint16(rows)); {
	case n == -1:
		return nil, rows, &RowError{Row: -1, Column: -1, Err: errTrailer}
	case int(n) != ncols:
		return nil, rows, &RowError{Row: -1, Column: -1, Err: fmt.Errorf("tuple has %d fields, not the %d columns", n, ncols)}
	}
	i := 2
	for col := range ncols {
		if len(rows)-i < 4 {
			return nil, rows, &RowError{Row: -1, Column: col, Err: ErrTruncated}
		}
		n := int32(binary.BigEndian.Uint32(rows[i:]))
		i += 4
		switch {
		case n == -1:
		case n < 0:
			return nil, rows, &RowError{Row: -1, Column: col, Err: errLength}
		case int(n) > len(rows)-i:
			return nil, rows, &RowError{Row: -1, Column: col, Err: ErrTruncated}
		default:
			i += int(n)
		}
	}
	return rows[:i:i], rows[i:], nil
}

// CountTuples returns how many whole tuples rows holds, erroring like NextTuple
// (with the row the error is in).
func CountTuples(rows []byte, ncols int) (int, error) {
	n := 0
	for len(rows) > 0 {
		var err error
		if _, rows, err = NextTuple(rows, ncols); err != nil {
			err.(*RowError).Row = n
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
		return &RowError{Row: -1, Column: -1, Err: ErrTruncated}
	}
	ncols := int(int16(binary.BigEndian.Uint16(tuple)))
	if ncols < 0 {
		return &RowError{Row: -1, Column: -1, Err: errTrailer}
	}
	i := 2
	for col := range ncols {
		if len(tuple)-i < 4 {
			return &RowError{Row: -1, Column: col, Err: ErrTruncated}
		}
		n := int32(binary.BigEndian.Uint32(tuple[i:]))
		i += 4
		var data []byte
		switch {
		case n == -1:
		case n < 0:
			return &RowError{Row: -1, Column: col, Err: errLength}
		case int(n) > len(tuple)-i:
			return &RowError{Row: -1, Column: col, Err: ErrTruncated}
		default:
			data = tuple[i : i+int(n) : i+int(n)] // non-nil even when empty: tuple is not nil
			i += int(n)
		}
		if err := fn(col, data); err != nil {
			return err
		}
	}
	if i != len(tuple) {
		return &RowError{Row: -1, Column: -1, Err: errTrailing}
	}
	return nil
}
