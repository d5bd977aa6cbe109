package copybin

import (
	"bytes"
	"encoding/binary"
	"math"
)

// Dates and times in ISO form (DateStyle ISO): "YYYY-MM-DD" with four or
// more year digits, " BC" at the very end for years before 1 AD, times
// "HH:MM:SS" with up to six fraction digits, zones "+HH", "+HH:MM" or
// "+HH:MM:SS". Binary dates count days, timestamps microseconds, from
// 2000-01-01 (UTC for timestamptz).

const (
	usPerSecond = 1_000_000
	usPerDay    = 86_400 * usPerSecond
	// postgresEpochJDate is the Julian day of 2000-01-01.
	postgresEpochJDate = 2451545
	// Years (astronomical: 0 is 1 BC) converted here. The server's range is
	// wider at both ends (4714-11-24 BC to 294276 AD for timestamps); what
	// lies beyond these whole years is left to it.
	minYear = -4712
	maxYear = 294275
)

func convertDate(dst, b []byte, _ *scratch) ([]byte, error) {
	switch string(b) {
	case "infinity":
		return binary.BigEndian.AppendUint32(dst, math.MaxInt32), nil
	case "-infinity":
		return binary.BigEndian.AppendUint32(dst, 1<<31), nil // math.MinInt32
	}
	b, bc := cutBC(b)
	days, rest, ok := parseDate(b, bc)
	if !ok || len(rest) != 0 {
		return dst, errNotConvertible
	}
	return binary.BigEndian.AppendUint32(dst, uint32(int32(days))), nil
}

func convertTime(dst, b []byte, _ *scratch) ([]byte, error) {
	us, rest, ok := parseClock(b, true)
	if !ok || len(rest) != 0 {
		return dst, errNotConvertible
	}
	return binary.BigEndian.AppendUint64(dst, uint64(us)), nil
}

// convertTimestamp reads a timestamp, with a zone when zoned (timestamptz)
// and without one otherwise: a timestamp's text input ignores a zone and a
// timestamptz's reads a missing one in the session's time zone, neither of
// which is worth copying here.
func convertTimestamp(dst, b []byte, zoned bool) ([]byte, error) {
	switch string(b) {
	case "infinity":
		return binary.BigEndian.AppendUint64(dst, math.MaxInt64), nil
	case "-infinity":
		return binary.BigEndian.AppendUint64(dst, 1<<63), nil // math.MinInt64
	}
	b, bc := cutBC(b)
	days, rest, ok := parseDate(b, bc)
	if !ok || len(rest) == 0 || rest[0] != ' ' {
		return dst, errNotConvertible
	}
	us, rest, ok := parseClock(rest[1:], false)
	if !ok {
		return dst, errNotConvertible
	}
	ts := days*usPerDay + us
	if zoned {
		offset, ok := parseZone(rest)
		if !ok {
			return dst, errNotConvertible
		}
		ts -= offset * usPerSecond
	} else if len(rest) != 0 {
		return dst, errNotConvertible
	}
	return binary.BigEndian.AppendUint64(dst, uint64(ts)), nil
}

// cutBC removes a trailing " BC".
func cutBC(b []byte) ([]byte, bool) {
	if rest, ok := bytes.CutSuffix(b, []byte(" BC")); ok {
		return rest, true
	}
	return b, false
}

// parseDate reads "YYYY-MM-DD" at the start of b and returns its days since
// 2000-01-01 and what follows it.
func parseDate(b []byte, bc bool) (days int64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i < 4 || i > 6 || len(b) < i+6 || b[i] != '-' || b[i+3] != '-' {
		return 0, nil, false
	}
	year := int64(0)
	for _, c := range b[:i] {
		year = year*10 + int64(c-'0')
	}
	month, ok1 := twoDigits(b[i+1:])
	day, ok2 := twoDigits(b[i+4:])
	if !ok1 || !ok2 {
		return 0, nil, false
	}
	if year == 0 { // 1 BC is written "0001-01-01 BC"; the server rejects year 0
		return 0, nil, false
	}
	if bc {
		year = 1 - year
	}
	if year < minYear || year > maxYear || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) {
		return 0, nil, false
	}
	return julianDay(year, month, day) - postgresEpochJDate, b[i+6:], true
}

// parseClock reads "HH:MM:SS[.ffffff]" at the start of b and returns its
// microseconds since midnight and what follows it. Only a time of day may be
// 24:00:00.
func parseClock(b []byte, allow24 bool) (us int64, rest []byte, ok bool) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, nil, false
	}
	h, ok1 := twoDigits(b)
	m, ok2 := twoDigits(b[3:])
	s, ok3 := twoDigits(b[6:])
	if !ok1 || !ok2 || !ok3 || m > 59 || s > 59 || h > 24 || (h == 24 && !allow24) {
		return 0, nil, false
	}
	us = ((h*60+m)*60 + s) * usPerSecond
	b = b[8:]
	if len(b) > 0 && b[0] == '.' {
		n := 1
		frac := int64(0)
		for ; n < len(b) && b[n] >= '0' && b[n] <= '9'; n++ {
			frac = frac*10 + int64(b[n]-'0')
		}
		digits := n - 1
		if digits == 0 || digits > 6 {
			return 0, nil, false
		}
		for ; digits < 6; digits++ {
			frac *= 10
		}
		us += frac
		b = b[n:]
	}
	if h == 24 && us != 24*3600*usPerSecond {
		return 0, nil, false
	}
	return us, b, true
}

// parseZone reads a whole "+HH[:MM[:SS]]" (or '-') and returns its offset
// east of UTC in seconds.
func parseZone(b []byte) (int64, bool) {
	if len(b) < 3 || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	neg := b[0] == '-'
	h, ok := twoDigits(b[1:])
	if !ok || h > 15 {
		return 0, false
	}
	offset := h * 3600
	b = b[3:]
	for unit := int64(60); len(b) > 0; unit /= 60 {
		if unit == 0 || len(b) < 3 || b[0] != ':' {
			return 0, false
		}
		v, ok := twoDigits(b[1:])
		if !ok || v > 59 {
			return 0, false
		}
		offset += v * unit
		b = b[3:]
	}
	if neg {
		offset = -offset
	}
	return offset, true
}

func twoDigits(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return 0, false
	}
	return int64(b[0]-'0')*10 + int64(b[1]-'0'), true
}

// isLeap follows the server's isleap() on astronomical years (C's %
// truncates as Go's does).
func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysInMonth(y, m int64) int64 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// julianDay is the server's date2j().
func julianDay(y, m, d int64) int64 {
	if m > 2 {
		m++
		y += 4800
	} else {
		m += 13
		y += 4799
	}
	century := y / 100
	j := y*365 - 32167
	j += y/4 - century + century/4
	j += 7834*m/256 + d
	return j
}
