package pgvalue

import (
	"encoding/binary"
	"math"
	"strconv"
	"unsafe"
)

// appendBinaryScalar appends the binary form of the text b of a value of kind k,
// which is not an array.
func appendBinaryScalar(dst []byte, k binaryKind, b []byte) ([]byte, error) {
	switch k {
	case binBool:
		return convertBool(dst, b)
	case binBytea:
		return convertBytea(dst, b)
	case binInt2:
		return convertInt(dst, b, 16)
	case binInt4:
		return convertInt(dst, b, 32)
	case binInt8:
		return convertInt(dst, b, 64)
	case binText:
		// text, varchar, char(n) and json receive their text as it is (the
		// server applies the column's length as its text input does).
		return append(dst, b...), nil
	case binJSONB:
		// jsonb's binary form is a version byte and the JSON text, which
		// the server parses as its text input does.
		return append(append(dst, 1), b...), nil
	case binFloat4:
		return convertFloat(dst, b, 32)
	case binFloat8:
		return convertFloat(dst, b, 64)
	case binNumeric:
		return convertNumeric(dst, b)
	case binUUID:
		return convertUUID(dst, b)
	case binDate:
		return convertDate(dst, b)
	case binTime:
		return convertTime(dst, b)
	case binTimestamp:
		return convertTimestamp(dst, b, false)
	case binTimestamptz:
		return convertTimestamp(dst, b, true)
	}
	return dst, errNotConvertible // arrays are converted by appendBinaryArray
}

func convertBool(dst, b []byte) ([]byte, error) {
	if len(b) == 1 {
		switch b[0] {
		case 't':
			return append(dst, 1), nil
		case 'f':
			return append(dst, 0), nil
		}
	}
	return dst, errNotConvertible
}

// convertBytea reads the hex form (\x followed by pairs of hex digits).
func convertBytea(dst, b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != '\\' || b[1] != 'x' || len(b)%2 != 0 {
		return dst, errNotConvertible
	}
	var bad byte
	for i := 2; i < len(b); i += 2 {
		hi, lo := hexValues[b[i]], hexValues[b[i+1]]
		bad |= hi | lo
		dst = append(dst, hi<<4|lo)
	}
	if bad&0xf0 != 0 {
		return dst, errNotConvertible
	}
	return dst, nil
}

// hexValues maps a hex digit to its value and anything else to 0xff.
var hexValues = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 10; i++ {
		t['0'+i] = byte(i)
	}
	for i := 0; i < 6; i++ {
		t['a'+i] = byte(10 + i)
		t['A'+i] = byte(10 + i)
	}
	return t
}()

// uuidDigits are where the pairs of hex digits of a uuid's text start.
var uuidDigits = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// convertUUID reads the 8-4-4-4-12 hex form uuid_out writes.
func convertUUID(dst, b []byte) ([]byte, error) {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return dst, errNotConvertible
	}
	var u [16]byte
	var bad byte
	for i, at := range uuidDigits {
		hi, lo := hexValues[b[at]], hexValues[b[at+1]]
		bad |= hi | lo
		u[i] = hi<<4 | lo
	}
	if bad&0xf0 != 0 {
		return dst, errNotConvertible
	}
	return append(dst, u[:]...), nil
}

// parseInt reads an optional '-' and decimal digits into a signed integer of
// bits bits.
func parseInt(b []byte, bits int) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 { // 19 digits cannot overflow a uint64
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	limit := uint64(1) << (bits - 1)
	if neg {
		if u > limit {
			return 0, false
		}
		return int64(-u), true // -(1<<63) wraps to itself, as it should
	}
	if u >= limit {
		return 0, false
	}
	return int64(u), true
}

func convertInt(dst, b []byte, bits int) ([]byte, error) {
	v, ok := parseInt(b, bits)
	if !ok {
		return dst, errNotConvertible
	}
	switch bits {
	case 16:
		return binary.BigEndian.AppendUint16(dst, uint16(v)), nil
	case 32:
		return binary.BigEndian.AppendUint32(dst, uint32(v)), nil
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v)), nil
}

// convertFloat reads what float4out/float8out write: NaN, Infinity,
// -Infinity, or a decimal number with an optional exponent. strconv rounds
// correctly, as the server's strtod does; a value out of the type's range,
// or a non-zero one that would round to zero, is left to the server (which
// rejects both).
func convertFloat(dst, b []byte, bits int) ([]byte, error) {
	var f float64
	switch string(b) {
	case "NaN":
		f = math.NaN()
	case "Infinity":
		f = math.Inf(1)
	case "-Infinity":
		f = math.Inf(-1)
	default:
		nonZero, ok := decimalSyntax(b)
		if !ok {
			return dst, errNotConvertible
		}
		var err error
		if f, err = strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), bits); err != nil || (f == 0 && nonZero) {
			return dst, errNotConvertible
		}
	}
	if bits == 32 {
		return binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(f))), nil
	}
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f)), nil
}

// decimalSyntax checks b is [-]digits[.digits][e[+-]digits] and reports
// whether its mantissa has a non-zero digit.
func decimalSyntax(b []byte) (nonZero, ok bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		digits++
		nonZero = nonZero || b[i] != '0'
	}
	if digits == 0 {
		return false, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		frac := 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			frac++
			nonZero = nonZero || b[i] != '0'
		}
		if frac == 0 {
			return false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			exp++
		}
		if exp == 0 {
			return false, false
		}
	}
	return nonZero, i == len(b)
}

// convertNumeric reads what numeric_out writes: NaN, Infinity, -Infinity,
// or [-]digits[.digits] (never an exponent). The server applies the
// column's precision and scale as its text input does.
func convertNumeric(dst, b []byte) ([]byte, error) {
	switch string(b) {
	case "NaN":
		return appendNumericHeader(dst, 0, 0, numericNaN, 0), nil
	case "Infinity":
		return appendNumericHeader(dst, 0, 0, numericPInf, 0), nil
	case "-Infinity":
		return appendNumericHeader(dst, 0, 0, numericNInf, 0), nil
	}
	sign := uint16(numericPos)
	if len(b) > 0 && b[0] == '-' {
		sign = numericNeg
		b = b[1:]
	}
	intPart, frac := b, []byte(nil)
	for i, c := range b {
		if c == '.' {
			intPart, frac = b[:i], b[i+1:]
			if len(frac) == 0 {
				return dst, errNotConvertible
			}
			break
		}
	}
	if len(intPart) == 0 || !allDigits(intPart) || !allDigits(frac) || len(frac) > numericMaxScale {
		return dst, errNotConvertible
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart) == 1 && intPart[0] == '0' {
		intPart = intPart[:0]
	}
	// Group the digits in fours aligned on the decimal point: the integer
	// part padded on the left, the fraction on the right.
	intGroups := (len(intPart) + 3) / 4
	fracGroups := (len(frac) + 3) / 4
	if intGroups > 0x7FFF {
		return dst, errNotConvertible
	}
	at := len(dst)
	dst = appendNumericHeader(dst, 0, 0, sign, uint16(len(frac)))
	weight := intGroups - 1
	n := 0
	lead := true // skipping leading zero groups
	group := func(g uint16) {
		if lead && g == 0 {
			weight--
			return
		}
		lead = false
		dst = binary.BigEndian.AppendUint16(dst, g)
		n++
	}
	first := len(intPart) - (intGroups-1)*4 // digits in the first integer group
	for i := 0; i < intGroups; i++ {
		lo, hi := 0, first
		if i > 0 {
			lo, hi = first+(i-1)*4, first+i*4
		}
		group(digitsValue(intPart[lo:hi], 0))
	}
	for i := 0; i < fracGroups; i++ {
		lo, hi := i*4, min(i*4+4, len(frac))
		group(digitsValue(frac[lo:hi], 4-(hi-lo)))
	}
	// Trailing zero groups carry nothing (the display scale keeps them).
	for n > 0 && dst[len(dst)-1] == 0 && dst[len(dst)-2] == 0 {
		dst = dst[:len(dst)-2]
		n--
	}
	if n == 0 {
		weight = 0
	}
	binary.BigEndian.PutUint16(dst[at:], uint16(n))
	binary.BigEndian.PutUint16(dst[at+2:], uint16(int16(weight)))
	return dst, nil
}

func appendNumericHeader(dst []byte, ndigits uint16, weight int16, sign, dscale uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, ndigits)
	dst = binary.BigEndian.AppendUint16(dst, uint16(weight))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	return binary.BigEndian.AppendUint16(dst, dscale)
}

// digitsValue is the value of up to four decimal digits, followed by pad
// zeros.
func digitsValue(d []byte, pad int) uint16 {
	v := uint16(0)
	for _, c := range d {
		v = v*10 + uint16(c-'0')
	}
	for ; pad > 0; pad-- {
		v *= 10
	}
	return v
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
