package copybin

import "unsafe"

// Value converts single values of one scalar type, as the type's output
// function writes them (no COPY escapes), to the type's binary form: the
// elements of an array parameter (internal/apply's set statements take one
// array of a column's values). The same strictness holds as for rows: a
// value in another form is declined with an error, and the caller sends it
// as text. A Value holds no state.
type Value struct{ conv convert }

// ValueFor returns the conversion of values of type oid; ok is false for
// arrays and for types without one.
func ValueFor(oid uint32) (v Value, ok bool) {
	c, ok := scalars[oid]
	return Value{conv: c}, ok
}

// Append appends the binary form of text (without a length word) to dst. On
// error dst is returned as it was.
func (v Value) Append(dst []byte, text string) ([]byte, error) {
	// The conversions only read their input, so the string's bytes are
	// lent to them as they are; scalars use no scratch room.
	b := unsafe.Slice(unsafe.StringData(text), len(text))
	out, err := v.conv(dst, b, nil)
	if err != nil {
		return dst, err
	}
	return out, nil
}
