package pgvalue

import (
	"encoding/binary"
	"errors"
	"slices"
	"unsafe"
)

// COPY's text format escapes, both ways. COPY ... TO writes a backslash
// doubled and \b \f \n \r \t \v for those bytes, every other byte as it is;
// COPY ... FROM reads those, \digits (octal) and \xhex, and any other
// escaped byte as itself.

// copyEscapes maps each byte COPY's text format escapes to the letter
// following its backslash, and every other byte to 0.
var copyEscapes = [256]byte{'\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

// AppendCopyEscaped appends s as a COPY text field, byte for byte what
// COPY ... TO writes for it.
func AppendCopyEscaped(dst []byte, s string) []byte {
	// appendEscaped only reads s: its bytes are lent as they are.
	return appendEscaped(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

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

// AppendCopyUnescaped appends field, a COPY text field that is not \N,
// with its escapes decoded.
func AppendCopyUnescaped(b, field []byte) ([]byte, error) {
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i >= len(field) {
			return b, errors.New("COPY field ends with a lone backslash")
		}
		switch c = field[i]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'v':
			b = append(b, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(field) && field[i+1] >= '0' && field[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(field[i]-'0')
			}
			b = append(b, byte(v))
		case 'x':
			v, n := byte(0), 0
			for ; n < 2 && i+1 < len(field) && hexValues[field[i+1]] != 0xff; n++ {
				i++
				v = v*16 + hexValues[field[i]]
			}
			if n == 0 {
				b = append(b, 'x')
			} else {
				b = append(b, v)
			}
		default:
			b = append(b, c) // any other escaped byte stands for itself
		}
	}
	return b, nil
}
