package pgvalue

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// appendText appends the output function's text of data.
func (c *column) appendText(dst, data []byte) ([]byte, error) {
	if c.kind == binArray {
		return renderArray(dst, data, c.elem, c.elemOID)
	}
	return renderScalar(dst, c.kind, data)
}

// appendCopyText appends the text of data as a COPY text field. Only the
// text types' and arrays' text can hold bytes COPY escapes, and bytea's its
// leading backslash: the other types' text is appended as it is.
func (c *column) appendCopyText(dst, data []byte) ([]byte, error) {
	switch c.kind {
	case binText:
		return appendEscaped(dst, data), nil
	case binJSONB:
		if len(data) == 0 || data[0] != 1 {
			return dst, errJSONBVersion
		}
		return appendEscaped(dst, data[1:]), nil
	case binBytea:
		return appendHex(append(dst, '\\', '\\', 'x'), data), nil
	case binArray:
		start := len(dst)
		dst, err := renderArray(dst, data, c.elem, c.elemOID)
		if err != nil || !c.escapes {
			return dst, err
		}
		return escapeTail(dst, start), nil
	}
	return renderScalar(dst, c.kind, data)
}

var (
	errSize         = errors.New("binary value has the wrong size for its type")
	errJSONBVersion = errors.New("jsonb binary value is not of version 1")
	errNumeric      = errors.New("malformed numeric binary value")
)

// appendScalar appends the text of one value of a type that is not an
// array. On error, dst may have grown.
func renderScalar(dst []byte, k binaryKind, b []byte) ([]byte, error) {
	switch k {
	case binText:
		return append(dst, b...), nil
	case binJSONB:
		// A version byte, then the text jsonb_out writes.
		if len(b) == 0 || b[0] != 1 {
			return dst, errJSONBVersion
		}
		return append(dst, b[1:]...), nil
	case binBool:
		if len(b) != 1 {
			return dst, errSize
		}
		if b[0] != 0 { // boolrecv reads any non-zero byte as true
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case binInt2:
		if len(b) != 2 {
			return dst, errSize
		}
		return strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(b))), 10), nil
	case binInt4:
		if len(b) != 4 {
			return dst, errSize
		}
		return strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(b))), 10), nil
	case binInt8:
		if len(b) != 8 {
			return dst, errSize
		}
		return strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(b)), 10), nil
	case binFloat4:
		if len(b) != 4 {
			return dst, errSize
		}
		return appendFloat(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(b))), 32), nil
	case binFloat8:
		if len(b) != 8 {
			return dst, errSize
		}
		return appendFloat(dst, math.Float64frombits(binary.BigEndian.Uint64(b)), 64), nil
	case binNumeric:
		return appendNumeric(dst, b)
	case binUUID:
		if len(b) != 16 {
			return dst, errSize
		}
		return appendUUID(dst, b), nil
	case binBytea:
		return appendHex(append(dst, '\\', 'x'), b), nil
	case binDate:
		return appendDate(dst, b)
	case binTime:
		return appendTime(dst, b)
	case binTimestamp:
		return appendTimestamp(dst, b, false)
	case binTimestamptz:
		return appendTimestamp(dst, b, true)
	}
	return dst, errors.New("no rendering for the type") // unreachable: For admits only the kinds above
}

const hexDigits = "0123456789abcdef"

// appendHex appends b in lowercase hex, as byteaout's hex form does.
func appendHex(dst, b []byte) []byte {
	at := len(dst)
	dst = append(dst, make([]byte, 2*len(b))...) // no allocation: append of make is grown in place
	out := dst[at:]
	for i, c := range b {
		out[2*i] = hexDigits[c>>4]
		out[2*i+1] = hexDigits[c&0xf]
	}
	return dst
}

// appendUUID writes uuid_out's 8-4-4-4-12 lowercase hex form.
func appendUUID(dst, b []byte) []byte {
	var u [36]byte
	j := 0
	for i, c := range b[:16] {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			u[j] = '-'
			j++
		}
		u[j] = hexDigits[c>>4]
		u[j+1] = hexDigits[c&0xf]
		j += 2
	}
	return append(dst, u[:]...)
}

// appendNumeric writes what numeric_out writes (get_str_from_var): an
// optional '-', the integer part without leading zeros ("0" if none), and
// when the display scale is above 0 a '.' and exactly that many digits
// (digits beyond it truncated, as numeric_recv does).
func appendNumeric(dst, b []byte) ([]byte, error) {
	if len(b) < 8 {
		return dst, errNumeric
	}
	ndigits := int(int16(binary.BigEndian.Uint16(b)))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(int16(binary.BigEndian.Uint16(b[6:])))
	if ndigits < 0 || len(b) != 8+2*ndigits || dscale < 0 || dscale > numericMaxScale {
		return dst, errNumeric
	}
	switch sign {
	case numericNaN:
		return append(dst, "NaN"...), nil
	case numericPInf:
		return append(dst, "Infinity"...), nil
	case numericNInf:
		return append(dst, "-Infinity"...), nil
	case numericPos, numericNeg:
	default:
		return dst, errNumeric
	}
	digits := b[8:]
	for i := 0; i < len(digits); i += 2 {
		if binary.BigEndian.Uint16(digits[i:]) > 9999 {
			return dst, errNumeric
		}
	}
	// The server strips leading zero digits on receipt (never present in
	// what it sends); stripping them here keeps the integer part's zeros
	// suppressed as numeric_out would.
	for len(digits) >= 2 && digits[0] == 0 && digits[1] == 0 {
		digits = digits[2:]
		weight--
	}
	nd := len(digits) / 2
	if nd == 0 {
		weight = 0 // zero, as the server stores it
	}
	digit := func(d int) int {
		if d < 0 || d >= nd {
			return 0
		}
		return int(binary.BigEndian.Uint16(digits[2*d:]))
	}
	start := len(dst)
	if sign == numericNeg {
		dst = append(dst, '-')
	}
	d := 0
	if weight < 0 {
		d = weight + 1
		dst = append(dst, '0')
	} else {
		for ; d <= weight; d++ {
			v := digit(d)
			if d == 0 {
				// The first digit without its leading zeros.
				dst = strconv.AppendInt(dst, int64(v), 10)
				continue
			}
			dst = appendFourDigits(dst, v)
		}
	}
	if dscale > 0 {
		dst = append(dst, '.')
		end := len(dst) + dscale
		for i := 0; i < dscale; i += 4 {
			dst = appendFourDigits(dst, digit(d))
			d++
		}
		dst = dst[:end]
	}
	// A negative value whose shown digits are all zero (which the server
	// never sends: it stores zero as positive) reads back as zero.
	if sign == numericNeg && !hasNonZeroDigit(dst[start+1:]) {
		copy(dst[start:], dst[start+1:])
		dst = dst[:len(dst)-1]
	}
	return dst, nil
}

func appendFourDigits(dst []byte, v int) []byte {
	return append(dst, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}

func hasNonZeroDigit(b []byte) bool {
	for _, c := range b {
		if c >= '1' && c <= '9' {
			return true
		}
	}
	return false
}
