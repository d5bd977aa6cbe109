package pgvalue

import (
	"errors"
	"strconv"
)

// dateTime is a date, time or timestamp read from either PostgreSQL's ISO
// text form or pgflo's typed (RFC 3339) form.
type dateTime struct {
	special string // "infinity" or "-infinity"
	year    int    // astronomical: 0 is 1 BC, -1 is 2 BC
	month   string // two digits
	day     string
	clock   string // "HH:MM:SS[.ffffff]"
	hasTZ   bool
	tzNeg   bool
	tzH     int
	tzM     int
	tzS     int
}

var errDateTime = errors.New("not a date/time in ISO form")

func hasDate(k kind) bool { return k == kindDate || k == kindTimestamp || k == kindTimestamptz }
func hasClock(k kind) bool {
	return k == kindTime || k == kindTimetz || k == kindTimestamp || k == kindTimestamptz
}
func hasZone(k kind) bool { return k == kindTimetz || k == kindTimestamptz }

// parseDateTime reads s in the shape kind k has, accepting both forms: a
// space or T between date and time, " BC" or a signed year, a zone as
// "Z" or ±HH[:MM[:SS]].
func parseDateTime(s string, k kind) (dateTime, error) {
	var dt dateTime
	if hasDate(k) && (s == infinity || s == negInfinity) {
		dt.special = s
		return dt, nil
	}
	p := scanner{s: s}
	if hasDate(k) {
		bc := false
		if n := len(p.s); n > 3 && p.s[n-3:] == " BC" {
			bc = true
			p.s = p.s[:n-3]
		}
		neg := p.take('-')
		yearText := p.digits()
		if len(yearText) < 4 || (bc && neg) {
			return dt, errDateTime
		}
		year, err := strconv.Atoi(yearText)
		if err != nil {
			return dt, errDateTime
		}
		switch {
		case bc:
			if year == 0 {
				return dt, errDateTime
			}
			year = 1 - year
		case neg:
			year = -year
		}
		dt.year = year
		if !p.take('-') {
			return dt, errDateTime
		}
		if dt.month = p.fixed(2); dt.month == "" || !p.take('-') {
			return dt, errDateTime
		}
		if dt.day = p.fixed(2); dt.day == "" {
			return dt, errDateTime
		}
		if hasClock(k) && !p.take(' ') && !p.take('T') {
			return dt, errDateTime
		}
	}
	if hasClock(k) {
		start := p.i
		if p.fixed(2) == "" || !p.take(':') || p.fixed(2) == "" || !p.take(':') || p.fixed(2) == "" {
			return dt, errDateTime
		}
		if p.take('.') && p.digits() == "" {
			return dt, errDateTime
		}
		dt.clock = p.s[start:p.i]
	}
	if hasZone(k) {
		dt.hasTZ = true
		switch {
		case p.take('Z'):
		case p.take('+') || p.take('-'):
			dt.tzNeg = p.s[p.i-1] == '-'
			var err error
			if dt.tzH, err = strconv.Atoi(p.fixed(2)); err != nil {
				return dt, errDateTime
			}
			if p.take(':') {
				if dt.tzM, err = strconv.Atoi(p.fixed(2)); err != nil {
					return dt, errDateTime
				}
				if p.take(':') {
					if dt.tzS, err = strconv.Atoi(p.fixed(2)); err != nil {
						return dt, errDateTime
					}
				}
			}
		default:
			return dt, errDateTime
		}
	}
	if p.i != len(p.s) {
		return dt, errDateTime
	}
	return dt, nil
}

// appendTyped writes dt in pgflo's typed form: RFC 3339 with a signed
// astronomical year, "T" between date and time, "Z" for a zero offset.
func (dt dateTime) appendTyped(buf []byte, k kind) []byte {
	if dt.special != "" {
		return append(buf, dt.special...)
	}
	if hasDate(k) {
		y := dt.year
		if y < 0 {
			buf = append(buf, '-')
			y = -y
		}
		buf = dt.appendDate(buf, y)
		if hasClock(k) {
			buf = append(buf, 'T')
		}
	}
	buf = append(buf, dt.clock...)
	if dt.hasTZ {
		if dt.tzH == 0 && dt.tzM == 0 && dt.tzS == 0 {
			return append(buf, 'Z')
		}
		buf = dt.appendZone(buf, true)
	}
	return buf
}

// appendText writes dt in PostgreSQL's ISO output form.
func (dt dateTime) appendText(buf []byte, k kind) []byte {
	if dt.special != "" {
		return append(buf, dt.special...)
	}
	bc := dt.year <= 0
	if hasDate(k) {
		y := dt.year
		if bc {
			y = 1 - y
		}
		buf = dt.appendDate(buf, y)
		if hasClock(k) {
			buf = append(buf, ' ')
		}
	}
	buf = append(buf, dt.clock...)
	if dt.hasTZ {
		buf = dt.appendZone(buf, false)
	}
	if hasDate(k) && bc {
		buf = append(buf, " BC"...)
	}
	return buf
}

// appendDate writes year (at least four digits), month and day.
func (dt dateTime) appendDate(buf []byte, year int) []byte {
	buf = appendPadded(buf, year, 4)
	buf = append(buf, '-')
	buf = append(buf, dt.month...)
	buf = append(buf, '-')
	return append(buf, dt.day...)
}

// appendZone writes the offset: ±HH:MM[:SS] (typed) or PostgreSQL's ±HH[:MM[:SS]].
func (dt dateTime) appendZone(buf []byte, typed bool) []byte {
	if dt.tzNeg {
		buf = append(buf, '-')
	} else {
		buf = append(buf, '+')
	}
	buf = appendPadded(buf, dt.tzH, 2)
	if typed || dt.tzM != 0 || dt.tzS != 0 {
		buf = append(buf, ':')
		buf = appendPadded(buf, dt.tzM, 2)
	}
	if dt.tzS != 0 {
		buf = append(buf, ':')
		buf = appendPadded(buf, dt.tzS, 2)
	}
	return buf
}

func appendPadded(buf []byte, n, width int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(n), 10)
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

// scanner reads a string left to right.
type scanner struct {
	s string
	i int
}

func (p *scanner) peek(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }

func (p *scanner) take(c byte) bool {
	if p.peek(c) {
		p.i++
		return true
	}
	return false
}

func (p *scanner) digits() string {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	return p.s[start:p.i]
}

// fixed reads exactly n digits, or returns "" and consumes nothing.
func (p *scanner) fixed(n int) string {
	if p.i+n > len(p.s) {
		return ""
	}
	for j := p.i; j < p.i+n; j++ {
		if p.s[j] < '0' || p.s[j] > '9' {
			return ""
		}
	}
	p.i += n
	return p.s[p.i-n : p.i]
}
