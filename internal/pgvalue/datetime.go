package pgvalue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// Dates and times in ISO form (DateStyle ISO, TimeZone UTC): "YYYY-MM-DD"
// with four or more year digits, " BC" at the very end for years before
// 1 AD, times "HH:MM:SS" with up to six fraction digits (written without
// trailing zeros), zones "+HH", "+HH:MM" or "+HH:MM:SS" (written "+00").
// Binary dates count days, timestamps microseconds, from 2000-01-01 (UTC
// for timestamptz). The calendar arithmetic is the server's own (date2j,
// j2date), which time.Time's does not match before 1 AD.

const (
	usPerSecond = 1_000_000
	usPerMinute = 60 * usPerSecond
	usPerHour   = 60 * usPerMinute
	usPerDay    = 24 * usPerHour
	// postgresEpochJDate is the Julian day of 2000-01-01, unixEpochJDate
	// of 1970-01-01.
	postgresEpochJDate = 2451545
	unixEpochJDate     = 2440588
	// Years (astronomical: 0 is 1 BC) read from text here. The server's
	// range is wider at both ends (4714-11-24 BC to 294276 AD for
	// timestamps); what lies beyond these whole years is left to it.
	minYear = -4712
	maxYear = 294275
	// The server's ranges (datatype/timestamp.h), which its receive
	// functions enforce: dates from Julian day 0 (4714-11-24 BC) to
	// 5874897-12-31, timestamps from 4714-11-24 BC to 294276-12-31.
	minDate      = -postgresEpochJDate
	endDate      = 2147483494 - postgresEpochJDate
	minTimestamp = -211813488000000000
	endTimestamp = 9223371331200000000
)

var errOutOfRange = errors.New("binary value out of its type's range")

func convertDate(dst, b []byte) ([]byte, error) {
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

func convertTime(dst, b []byte) ([]byte, error) {
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

// appendDate writes date_out's text of days since 2000-01-01.
func appendDate(dst, b []byte) ([]byte, error) {
	if len(b) != 4 {
		return dst, errSize
	}
	days := int32(binary.BigEndian.Uint32(b))
	switch {
	case days == math.MaxInt32:
		return append(dst, "infinity"...), nil
	case days == math.MinInt32:
		return append(dst, "-infinity"...), nil
	case days < minDate || days >= endDate:
		return dst, errOutOfRange
	}
	y, m, d := j2date(int(days) + postgresEpochJDate)
	dst = appendYMD(dst, y, m, d)
	if y <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst, nil
}

// appendTime writes time_out's text of microseconds since midnight, which
// may be 24:00:00.
func appendTime(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, errSize
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us < 0 || us > usPerDay {
		return dst, errOutOfRange
	}
	return appendClock(dst, us), nil
}

// appendTimestamp writes timestamp_out's (or, zoned, timestamptz_out's in
// UTC) text of microseconds since 2000-01-01 00:00.
func appendTimestamp(dst, b []byte, zoned bool) ([]byte, error) {
	if len(b) != 8 {
		return dst, errSize
	}
	ts := int64(binary.BigEndian.Uint64(b))
	switch {
	case ts == math.MaxInt64:
		return append(dst, "infinity"...), nil
	case ts == math.MinInt64:
		return append(dst, "-infinity"...), nil
	case ts < minTimestamp || ts >= endTimestamp:
		return dst, errOutOfRange
	}
	// timestamp2tm: the day, and the time within it counted up from
	// midnight even before 2000.
	days, us := ts/usPerDay, ts%usPerDay
	if us < 0 {
		us += usPerDay
		days--
	}
	y, m, d := j2date(int(days) + postgresEpochJDate)
	dst = appendYMD(dst, y, m, d)
	dst = append(dst, ' ')
	dst = appendClock(dst, us)
	if zoned {
		dst = append(dst, '+', '0', '0')
	}
	if y <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst, nil
}

// appendYMD writes "YYYY-MM-DD", a year before 1 AD (astronomical y <= 0)
// as 1-y: the caller adds " BC".
func appendYMD(dst []byte, y, m, d int) []byte {
	if y <= 0 {
		y = 1 - y
	}
	if y < 10000 {
		dst = append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
	} else {
		dst = strconv.AppendInt(dst, int64(y), 10)
	}
	return append(dst, '-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
}

// appendClock writes "HH:MM:SS" and, when there are microseconds, '.' and
// them without trailing zeros (AppendSeconds).
func appendClock(dst []byte, us int64) []byte {
	h := int(us / usPerHour)
	us -= int64(h) * usPerHour
	mi := int(us / usPerMinute)
	us -= int64(mi) * usPerMinute
	s := int(us / usPerSecond)
	dst = append(dst, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10))
	return appendFraction(dst, us-int64(s)*usPerSecond)
}

// appendFraction writes microseconds us (below a second) as '.' and up to
// six digits without trailing zeros, nothing for 0 (AppendSeconds).
func appendFraction(dst []byte, us int64) []byte {
	if us == 0 {
		return dst
	}
	var f [7]byte
	f[0] = '.'
	for i := 6; i > 0; i-- {
		f[i] = byte('0' + us%10)
		us /= 10
	}
	n := 7
	for f[n-1] == '0' {
		n--
	}
	return append(dst, f[:n]...)
}

// j2date is the server's: the Gregorian (proleptic, astronomical year)
// date of Julian day jd, in its unsigned arithmetic.
func j2date(jd int) (year, month, day int) {
	julian := uint32(jd)
	julian += 32044
	quad := julian / 146097
	extra := (julian-quad*146097)*4 + 3
	julian += 60 + quad*3 + extra/146097
	quad = julian / 1461
	julian -= quad * 1461
	y := int(julian * 4 / 1461)
	if y != 0 {
		julian = (julian+305)%365 + 123
	} else {
		julian = (julian+306)%366 + 123
	}
	y += int(quad * 4)
	year = y - 4800
	quad = julian * 2141 / 65536
	day = int(julian - 7834*quad/256)
	month = int((quad+10)%12 + 1)
	return year, month, day
}
