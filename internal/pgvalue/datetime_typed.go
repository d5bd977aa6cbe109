package pgvalue

import (
	"errors"
	"strconv"
	"unsafe"
)

var errDateTime = errors.New("not a date/time in ISO form")

func hasDate(k kind) bool { return k == kindDate || k == kindTimestamp || k == kindTimestamptz }
func hasClock(k kind) bool {
	return k == kindTime || k == kindTimetz || k == kindTimestamp || k == kindTimestamptz
}
func hasZone(k kind) bool { return k == kindTimetz || k == kindTimestamptz }

// parseDateTime reads s in the shape kind k has, accepting both forms: a
// space or T between date and time, " BC" or a signed year, a zone as
// "Z" or ±HH[:MM[:SS]].
func parseDateTime(s string, k kind) (isoTime, error) {
	// read only reads the string's bytes: they are lent as they are.
	var t isoTime
	if !t.read(unsafe.Slice(unsafe.StringData(s), len(s)), hasDate(k), hasClock(k), hasZone(k)) {
		return t, errDateTime
	}
	return t, nil
}

// appendTyped writes dt in pgflo's typed form: RFC 3339 with a signed
// astronomical year, "T" between date and time, "Z" for a zero offset.
func (dt isoTime) appendTyped(buf []byte, k kind) []byte {
	if dt.special != "" {
		return append(buf, dt.special...)
	}
	if hasDate(k) {
		y := dt.year
		if y < 0 {
			buf = append(buf, '-')
			y = -y
		}
		buf = appendYMD(buf, y, dt.month, dt.day)
		if hasClock(k) {
			buf = append(buf, 'T')
		}
	}
	buf = append(buf, dt.clock...)
	if dt.zoned {
		if dt.zoneH == 0 && dt.zoneM == 0 && dt.zoneS == 0 {
			return append(buf, 'Z')
		}
		buf = dt.appendZone(buf, true)
	}
	return buf
}

// appendText writes dt in PostgreSQL's ISO output form.
func (dt isoTime) appendText(buf []byte, k kind) []byte {
	if dt.special != "" {
		return append(buf, dt.special...)
	}
	bc := dt.year <= 0
	if hasDate(k) {
		buf = appendYMD(buf, writtenYear(dt.year), dt.month, dt.day)
		if hasClock(k) {
			buf = append(buf, ' ')
		}
	}
	buf = append(buf, dt.clock...)
	if dt.zoned {
		buf = dt.appendZone(buf, false)
	}
	if hasDate(k) && bc {
		buf = append(buf, " BC"...)
	}
	return buf
}

// appendZone writes the offset: ±HH:MM[:SS] (typed) or PostgreSQL's ±HH[:MM[:SS]].
func (dt isoTime) appendZone(buf []byte, typed bool) []byte {
	if dt.zoneNeg {
		buf = append(buf, '-')
	} else {
		buf = append(buf, '+')
	}
	buf = appendPadded(buf, dt.zoneH, 2)
	if typed || dt.zoneM != 0 || dt.zoneS != 0 {
		buf = append(buf, ':')
		buf = appendPadded(buf, dt.zoneM, 2)
	}
	if dt.zoneS != 0 {
		buf = append(buf, ':')
		buf = appendPadded(buf, dt.zoneS, 2)
	}
	return buf
}

func appendPadded(buf []byte, n int64, width int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], n, 10)
	for i := len(s); i < width; i++ {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}

// appendTypedTime converts a PostgreSQL date/time text to the typed form.
func appendTypedTime(buf []byte, text string, k kind) ([]byte, error) {
	dt, err := parseDateTime(text, k)
	if err != nil {
		return nil, err
	}
	return dt.appendTyped(buf, k), nil
}

// appendTextTime converts a typed (or text) date/time back to PostgreSQL's text.
func appendTextTime(buf []byte, s string, k kind) ([]byte, error) {
	dt, err := parseDateTime(s, k)
	if err != nil {
		return nil, err
	}
	return dt.appendText(buf, k), nil
}
