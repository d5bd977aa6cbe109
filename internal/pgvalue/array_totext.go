package pgvalue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

var (
	errBinaryArray = errors.New("malformed array binary value")
	errElemType    = errors.New("array's element type is not the column's")
)

// appendArray writes what array_out writes for the binary array b (int32
// dimensions, int32 has-nulls flag, element type OID, per dimension its
// length and lower bound, then each element's int32 length, -1 for NULL,
// and data, in row-major order): "[lb:ub]...=" when a lower bound is not
// 1, nested braces per dimension, elements separated by ',', NULL for a
// NULL element, and an element double-quoted, with '"' and '\' escaped,
// when array_in would not read it back bare. On error, dst may have grown.
func renderArray(dst, b []byte, elem binaryKind, elemOID uint32) ([]byte, error) {
	if len(b) < 12 {
		return dst, errBinaryArray
	}
	ndim := int32(binary.BigEndian.Uint32(b))
	flags := int32(binary.BigEndian.Uint32(b[4:]))
	if ndim < 0 || ndim > maxDims || flags&^1 != 0 {
		return dst, errBinaryArray
	}
	if binary.BigEndian.Uint32(b[8:]) != elemOID {
		return dst, errElemType
	}
	if len(b) < 12+8*int(ndim) {
		return dst, errBinaryArray
	}
	var dims, lbs [maxDims]int32
	nitems := 1
	decorated := false
	for d := range int(ndim) {
		dims[d] = int32(binary.BigEndian.Uint32(b[12+8*d:]))
		lbs[d] = int32(binary.BigEndian.Uint32(b[16+8*d:]))
		if dims[d] < 0 || int64(lbs[d])+int64(dims[d]) > math.MaxInt32 {
			return dst, errBinaryArray // array_recv's ArrayGetNItems and ArrayCheckBounds
		}
		decorated = decorated || lbs[d] != 1
		// Every element takes at least its length's four bytes, which
		// bounds the product long before it could overflow.
		if nitems *= int(dims[d]); nitems > len(b)/4 {
			return dst, errBinaryArray
		}
	}
	b = b[12+8*int(ndim):]
	if ndim == 0 || nitems == 0 {
		// array_recv makes any array without elements the empty array.
		if len(b) != 0 {
			return dst, errBinaryArray
		}
		return append(dst, '{', '}'), nil
	}
	if decorated {
		for d := range int(ndim) {
			dst = append(dst, '[')
			dst = strconv.AppendInt(dst, int64(lbs[d]), 10)
			dst = append(dst, ':')
			dst = strconv.AppendInt(dst, int64(lbs[d])+int64(dims[d])-1, 10)
			dst = append(dst, ']')
		}
		dst = append(dst, '=')
	}
	for range ndim {
		dst = append(dst, '{')
	}
	var idx [maxDims]int32
	for i := range nitems {
		if len(b) < 4 {
			return dst, errBinaryArray
		}
		n := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		switch {
		case n == -1:
			dst = append(dst, "NULL"...)
		case n < 0 || int(n) > len(b):
			return dst, errBinaryArray
		default:
			at := len(dst)
			var err error
			if dst, err = renderScalar(dst, elem, b[:n]); err != nil {
				return dst, fmt.Errorf("array element %d: %w", i+1, err)
			}
			dst = quoteElement(dst, at, ',')
			b = b[n:]
		}
		// Close the dimensions this element ends, and open the ones the
		// next begins.
		d := int(ndim) - 1
		for ; d >= 0; d-- {
			if idx[d]++; idx[d] < dims[d] {
				dst = append(dst, ',')
				break
			}
			idx[d] = 0
			dst = append(dst, '}')
		}
		for e := d + 1; d >= 0 && e < int(ndim); e++ {
			dst = append(dst, '{')
		}
	}
	if len(b) != 0 {
		return dst, errBinaryArray
	}
	return dst, nil
}
