package pgvalue

import "encoding/binary"

// zeroHeader is room for the largest array header, filled in later.
var zeroHeader [12 + 8*maxDims]byte

// appendBinaryArray appends the binary form of an array literal of
// elements of kind elem (type elemOID): dimensions, a has-nulls flag, the
// element type, each dimension's length and lower bound, then the elements
// with their lengths.
func appendBinaryArray(dst, b []byte, elem binaryKind, elemOID uint32, s *scratch) ([]byte, error) {
	p := arrayScanner{b: b, delim: ',', unquoted: s.elem, toBinary: true, binary: elem}
	if p.begin() != nil || p.plus {
		return dst, errNotConvertible
	}
	at := len(dst)
	if p.ndim == 0 {
		dst = binary.BigEndian.AppendUint32(dst, 0) // no dimensions
		dst = binary.BigEndian.AppendUint32(dst, 0)
		return binary.BigEndian.AppendUint32(dst, elemOID), nil
	}
	// The header's fields are filled once the elements are read.
	p.dst = append(dst, zeroHeader[:12+8*p.ndim]...)
	err := p.elements()
	s.elem = p.unquoted // kept for the next array
	if err != nil {
		return dst[:at], errNotConvertible
	}
	dst = p.dst
	binary.BigEndian.PutUint32(dst[at:], uint32(p.ndim))
	if p.hasNull {
		binary.BigEndian.PutUint32(dst[at+4:], 1)
	}
	binary.BigEndian.PutUint32(dst[at+8:], elemOID)
	for d := range p.ndim {
		if p.lower[d] < -1<<31 || p.lower[d] > 1<<31-p.lens[d] { // the bounds must fit int32
			return dst[:at], errNotConvertible
		}
		binary.BigEndian.PutUint32(dst[at+12+8*d:], uint32(p.lens[d]))
		binary.BigEndian.PutUint32(dst[at+16+8*d:], uint32(int32(p.lower[d])))
	}
	return dst, nil
}
