package copybin

import (
	"encoding/binary"

	"github.com/pgflo/pgflo/internal/builtin"
)

// zeroHeader is room for the largest array header, filled in later.
var zeroHeader [12 + 8*builtin.MaxDims]byte

// convertArray reads what array_out writes for elements of type elem: an
// optional "[lower:upper]..." decoration (only when a lower bound is not
// 1), then nested braces of elements separated by commas. An element is
// NULL, a double-quoted string with backslash escapes, or a bare word that
// needs no quoting. The binary form: dimensions, a has-nulls flag, the
// element type, each dimension's length and lower bound, then the elements
// with their lengths.
func convertArray(dst, b []byte, elem uint32, conv convert, s *scratch) ([]byte, error) {
	p := arrayParser{b: b, conv: conv, s: s}
	var lower [builtin.MaxDims]int64
	decorated := 0
	for p.i < len(b) && b[p.i] == '[' {
		if decorated == builtin.MaxDims {
			return dst, errNotConvertible
		}
		lo, hi, ok := p.bounds()
		if !ok {
			return dst, errNotConvertible
		}
		lower[decorated] = lo
		p.lens[decorated] = hi - lo + 1
		decorated++
	}
	if decorated > 0 {
		if p.i >= len(b) || b[p.i] != '=' {
			return dst, errNotConvertible
		}
		p.i++
	}
	for p.ndim < len(b)-p.i && b[p.i+p.ndim] == '{' {
		p.ndim++
	}
	if p.ndim == 0 || p.ndim > builtin.MaxDims || (decorated > 0 && decorated != p.ndim) {
		return dst, errNotConvertible
	}
	at := len(dst)
	if string(b[p.i:]) == "{}" && decorated == 0 {
		dst = binary.BigEndian.AppendUint32(dst, 0) // no dimensions
		dst = binary.BigEndian.AppendUint32(dst, 0)
		return binary.BigEndian.AppendUint32(dst, elem), nil
	}
	if decorated == 0 {
		for d := range p.ndim {
			lower[d] = 1
			p.lens[d] = -1 // learnt from the first sub-array
		}
	}
	// The header's fields are filled once the elements are read.
	dst = append(dst, zeroHeader[:12+8*p.ndim]...)
	p.dst = dst
	if !p.level(0) || p.i != len(b) {
		return dst[:at], errNotConvertible
	}
	dst = p.dst
	binary.BigEndian.PutUint32(dst[at:], uint32(p.ndim))
	if p.hasNull {
		binary.BigEndian.PutUint32(dst[at+4:], 1)
	}
	binary.BigEndian.PutUint32(dst[at+8:], elem)
	for d := range p.ndim {
		if lower[d] < -1<<31 || lower[d]+p.lens[d] > 1<<31 {
			return dst[:at], errNotConvertible
		}
		binary.BigEndian.PutUint32(dst[at+12+8*d:], uint32(p.lens[d]))
		binary.BigEndian.PutUint32(dst[at+16+8*d:], uint32(int32(lower[d])))
	}
	return dst, nil
}

type arrayParser struct {
	b       []byte
	i       int
	ndim    int
	lens    [builtin.MaxDims]int64 // each dimension's length; -1 until known
	hasNull bool
	conv    convert
	dst     []byte
	s       *scratch
}

// bounds reads "[lower:upper]".
func (p *arrayParser) bounds() (lo, hi int64, ok bool) {
	p.i++ // '['
	if lo, ok = p.int(); !ok || p.i >= len(p.b) || p.b[p.i] != ':' {
		return 0, 0, false
	}
	p.i++
	if hi, ok = p.int(); !ok || p.i >= len(p.b) || p.b[p.i] != ']' || hi < lo {
		return 0, 0, false
	}
	p.i++
	return lo, hi, true
}

func (p *arrayParser) int() (int64, bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	v, ok := parseInt(p.b[start:p.i], 32)
	return v, ok
}

// level reads one brace-enclosed level at depth d: sub-arrays above the
// innermost dimension, elements at it. Every sub-array of a depth must have
// the same length.
func (p *arrayParser) level(d int) bool {
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.i++
	n := int64(0)
	for {
		if d < p.ndim-1 {
			if !p.level(d + 1) {
				return false
			}
		} else if !p.element() {
			return false
		}
		n++
		if p.i >= len(p.b) {
			return false
		}
		c := p.b[p.i]
		p.i++
		if c == '}' {
			break
		}
		if c != ',' {
			return false
		}
	}
	if p.lens[d] < 0 {
		p.lens[d] = n
	}
	return p.lens[d] == n
}

// element reads one element and appends its length and binary form.
func (p *arrayParser) element() bool {
	var text []byte
	if p.i < len(p.b) && p.b[p.i] == '"' {
		p.i++
		start := p.i
		escaped := false
		for ; p.i < len(p.b) && p.b[p.i] != '"'; p.i++ {
			if p.b[p.i] == '\\' {
				escaped = true
				p.i++
			}
		}
		if p.i >= len(p.b) {
			return false
		}
		text = p.b[start:p.i]
		p.i++
		if escaped {
			el := p.s.elem[:0]
			for j := 0; j < len(text); j++ {
				if text[j] == '\\' {
					j++
				}
				el = append(el, text[j])
			}
			p.s.elem = el
			text = el
		}
	} else {
		start := p.i
		for ; p.i < len(p.b); p.i++ {
			c := p.b[p.i]
			if c == ',' || c == '}' {
				break
			}
			if c == '"' || c == '\\' || c == '{' || isArraySpace(c) {
				return false // array_out would have quoted it
			}
		}
		text = p.b[start:p.i]
		if len(text) == 0 {
			return false
		}
		if len(text) == 4 && (text[0]|0x20) == 'n' && (text[1]|0x20) == 'u' && (text[2]|0x20) == 'l' && (text[3]|0x20) == 'l' {
			p.hasNull = true
			p.dst = binary.BigEndian.AppendUint32(p.dst, 0xffffffff)
			return true
		}
	}
	at := len(p.dst)
	p.dst = append(p.dst, 0, 0, 0, 0)
	var err error
	if p.dst, err = p.conv(p.dst, text, p.s); err != nil {
		return false
	}
	binary.BigEndian.PutUint32(p.dst[at:], uint32(len(p.dst)-at-4))
	return true
}

// isArraySpace is the server's array_isspace.
func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
