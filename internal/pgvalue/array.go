package pgvalue

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Array literals, as array_out writes them: an optional "[lower:upper]..."
// decoration (only when a lower bound is not 1), then nested braces of
// elements separated by a delimiter (',' for every type but box, ';'). An
// element is NULL, a double-quoted string with '"' and '\' escaped, or a
// bare word that needs no quoting.

var (
	errArray      = errors.New("not an array literal")
	errArrayShape = errors.New("array is not rectangular, or not of its bounds")
)

// arrayScanner reads one array literal: begin reads its shape up to the
// first element, elements the rest.
type arrayScanner struct {
	b     []byte
	i     int
	delim byte
	// ndim is the number of dimensions, 0 for the empty array; lens and
	// lower are each one's length (-1 until the first sub-array of the
	// dimension closes) and lower bound.
	ndim        int
	lens, lower [maxDims]int64
	// unquoted is room for an element whose escapes are undone.
	unquoted []byte
	plus     bool // a bound was written with a '+'
	// Where the elements go (see emit): as binary, elements of kind
	// binary, appended to dst; or else their texts, nil for NULL.
	toBinary bool
	binary   binaryKind
	dst      []byte
	hasNull  bool
	texts    []*string
}

// begin reads the decoration and the opening braces: ndim is known after
// it.
func (p *arrayScanner) begin() error {
	b := p.b
	decorated := 0
	for p.i < len(b) && b[p.i] == '[' {
		if decorated == maxDims {
			return errArray
		}
		lo, hi, ok := p.bounds()
		if !ok {
			return errArray
		}
		p.lower[decorated] = lo
		p.lens[decorated] = hi - lo + 1
		decorated++
	}
	if decorated > 0 {
		if p.i >= len(b) || b[p.i] != '=' {
			return errArray
		}
		p.i++
	}
	for p.ndim < len(b)-p.i && b[p.i+p.ndim] == '{' {
		p.ndim++
	}
	if p.ndim == 0 || p.ndim > maxDims || (decorated > 0 && decorated != p.ndim) {
		return errArray
	}
	if decorated == 0 {
		if string(b[p.i:]) == "{}" {
			p.ndim, p.i = 0, len(b)
			return nil
		}
		for d := range p.ndim {
			p.lower[d] = 1
			p.lens[d] = -1 // learnt from the first sub-array
		}
	}
	return nil
}

// elements reads the elements in row-major order and emits each. Every
// sub-array of a dimension must have the same length.
func (p *arrayScanner) elements() error {
	if p.ndim == 0 {
		return nil
	}
	if err := p.level(0); err != nil {
		return err
	}
	if p.i != len(p.b) {
		return errArray
	}
	return nil
}

// bounds reads "[lower:upper]".
func (p *arrayScanner) bounds() (lo, hi int64, ok bool) {
	p.i++ // '['
	if lo, ok = p.int(); !ok || p.i >= len(p.b) || p.b[p.i] != ':' {
		return 0, 0, false
	}
	p.i++
	// hi-lo+1 elements need as many bytes (the difference is exact as
	// uint64 when hi >= lo).
	if hi, ok = p.int(); !ok || p.i >= len(p.b) || p.b[p.i] != ']' || hi < lo || uint64(hi)-uint64(lo) >= uint64(len(p.b)) {
		return 0, 0, false
	}
	p.i++
	return lo, hi, true
}

// int reads a bound: array_in's strtol takes a '+' too, which array_out
// never writes (plus records it), and a bound beyond int32, which the
// server rejects.
func (p *arrayScanner) int() (int64, bool) {
	if p.i < len(p.b) && p.b[p.i] == '+' {
		p.plus = true
		p.i++
	}
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' && !p.plus {
		p.i++
	}
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return parseInt(p.b[start:p.i], 64)
}

// level reads one brace-enclosed level at depth d: sub-arrays above the
// innermost dimension, elements at it.
func (p *arrayScanner) level(d int) error {
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return errArrayShape
	}
	p.i++
	n := int64(0)
	for {
		if d < p.ndim-1 {
			if err := p.level(d + 1); err != nil {
				return err
			}
		} else if err := p.element(); err != nil {
			return err
		}
		n++
		if p.i >= len(p.b) {
			return errArray
		}
		c := p.b[p.i]
		p.i++
		if c == '}' {
			break
		}
		if c != p.delim {
			return errArray
		}
	}
	if p.lens[d] < 0 {
		p.lens[d] = n
	}
	if p.lens[d] != n {
		return errArrayShape
	}
	return nil
}

// element reads one element and emits it.
func (p *arrayScanner) element() error {
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
			return errArray
		}
		text := p.b[start:p.i]
		p.i++
		if escaped {
			el := p.unquoted[:0]
			for j := 0; j < len(text); j++ {
				if text[j] == '\\' {
					j++
				}
				el = append(el, text[j])
			}
			p.unquoted = el
			text = el
		}
		return p.emit(text, false)
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		if c == p.delim || c == '}' {
			break
		}
		if c == '"' || c == '\\' || c == '{' || isArraySpace(c) {
			return errArray // array_out would have quoted it
		}
	}
	text := p.b[start:p.i]
	if len(text) == 0 {
		return errArray
	}
	return p.emit(text, isNullWord(text))
}

// emit appends an element's binary form, with its length, to dst, or its
// text to texts; text is only valid until the next element.
func (p *arrayScanner) emit(text []byte, null bool) error {
	if !p.toBinary {
		var e *string
		if !null {
			s := string(text)
			e = &s
		}
		p.texts = append(p.texts, e)
		return nil
	}
	if null {
		p.hasNull = true
		p.dst = binary.BigEndian.AppendUint32(p.dst, 0xffffffff)
		return nil
	}
	at := len(p.dst)
	p.dst = append(p.dst, 0, 0, 0, 0)
	var err error
	if p.dst, err = appendBinaryScalar(p.dst, p.binary, text); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(p.dst[at:], uint32(len(p.dst)-at-4))
	return nil
}

// isNullWord reports whether an unquoted element is NULL, in any case.
func isNullWord(b []byte) bool {
	return len(b) == 4 && (b[0]|0x20) == 'n' && (b[1]|0x20) == 'u' && (b[2]|0x20) == 'l' && (b[3]|0x20) == 'l'
}

// isArraySpace is the server's array_isspace.
func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// quoteElement double-quotes the element text dst[at:] where it lies, as
// array_out does when the text is empty, is NULL in any case, or holds '"',
// '\\', '{', '}', the delimiter or array_isspace's white space; inside the
// quotes '"' and '\\' get a backslash.
func quoteElement(dst []byte, at int, delim byte) []byte {
	el := dst[at:]
	need := len(el) == 0 || isNullWord(el)
	escapes := 0
	for _, c := range el {
		if c == delim {
			need = true
		}
		switch arrayChars[c] {
		case arrayQuote:
			need = true
		case arrayEscape:
			need = true
			escapes++
		}
	}
	if !need {
		return dst
	}
	end := len(dst)
	grow := 2 + escapes
	dst = slices.Grow(dst, grow)[:end+grow]
	w := end + grow - 1
	dst[w] = '"'
	w--
	for i := end - 1; i >= at; i-- {
		c := dst[i]
		dst[w] = c
		w--
		if arrayChars[c] == arrayEscape {
			dst[w] = '\\'
			w--
		}
	}
	dst[at] = '"'
	return dst
}

// arrayChars classes the bytes array_out looks for in an element's text.
const (
	arrayQuote  = 1 // the element must be quoted
	arrayEscape = 2 // and the byte escaped inside the quotes
)

var arrayChars = [256]byte{
	'"': arrayEscape, '\\': arrayEscape,
	'{': arrayQuote, '}': arrayQuote,
	' ': arrayQuote, '\t': arrayQuote, '\n': arrayQuote, '\r': arrayQuote, '\v': arrayQuote, '\f': arrayQuote,
}
