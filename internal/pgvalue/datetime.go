package pgvalue

import (
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
	var t isoTime
	if !t.read(b, true, false, false) || !t.strict(true, false) {
		return dst, errNotConvertible
	}
	switch t.special {
	case infinity:
		return binary.BigEndian.AppendUint32(dst, math.MaxInt32), nil
	case negInfinity:
		return binary.BigEndian.AppendUint32(dst, 1<<31), nil // math.MinInt32
	}
	return binary.BigEndian.AppendUint32(dst, uint32(int32(t.days()))), nil
}

func convertTime(dst, b []byte) ([]byte, error) {
	var t isoTime
	if !t.read(b, false, true, false) || !t.strict(false, true) {
		return dst, errNotConvertible
	}
	return binary.BigEndian.AppendUint64(dst, uint64(t.us)), nil
}

// convertTimestamp reads a timestamp, with a zone when zoned (timestamptz)
// and without one otherwise: a timestamp's text input ignores a zone and a
// timestamptz's reads a missing one in the session's time zone, neither of
// which is worth copying here.
func convertTimestamp(dst, b []byte, zoned bool) ([]byte, error) {
	var t isoTime
	if !t.read(b, true, true, zoned) || !t.strict(true, false) {
		return dst, errNotConvertible
	}
	switch t.special {
	case infinity:
		return binary.BigEndian.AppendUint64(dst, math.MaxInt64), nil
	case negInfinity:
		return binary.BigEndian.AppendUint64(dst, 1<<63), nil // math.MinInt64
	}
	ts := t.days()*usPerDay + t.us - t.offset()*usPerSecond
	return binary.BigEndian.AppendUint64(dst, uint64(ts)), nil
}

// isoTime is a date, a time of day or a timestamp as its ISO text says it,
// in either of two forms: what PostgreSQL writes (DateStyle ISO: " BC"
// after a year before 1 AD, ' ' before the time, "+HH[:MM[:SS]]") and
// pgflo's typed form (RFC 3339 with a signed astronomical year, 'T', 'Z').
// read checks only the shape; strict checks the values.
type isoTime struct {
	special    string // "infinity" or "-infinity", and nothing else is set
	year       int64  // astronomical: 0 is 1 BC
	yearDigits int
	month, day int64
	clock      []byte // "HH:MM:SS[.f…]" as written
	hour, min  int64
	sec        int64
	us         int64 // the clock's microseconds since midnight
	fracDigits int   // beyond 6, us has the first 6
	zoned      bool  // a zone was read (Z is +00)
	zoneNeg    bool
	zoneH      int64
	zoneM      int64
	zoneS      int64
	// typed: the year has a sign, or 'T' or 'Z' is used; written is the
	// year as written, before " BC" made it astronomical.
	typed   bool
	written int64
}

// read reads the whole of b into t, which is zero, as a date, a clock and a
// zone, those the flags ask for. A date may be infinity or -infinity.
func (t *isoTime) read(b []byte, date, clock, zone bool) bool {
	if date {
		switch string(b) { // no allocation: constants are kept
		case infinity:
			t.special = infinity
			return true
		case negInfinity:
			t.special = negInfinity
			return true
		}
	}
	bc := false
	if date && len(b) > 3 && string(b[len(b)-3:]) == " BC" {
		bc, b = true, b[:len(b)-3]
	}
	i := 0
	if date {
		neg := len(b) > 0 && b[0] == '-'
		if neg {
			i++
		}
		start, written := i, int64(0)
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			written = written*10 + int64(b[i]-'0')
		}
		if t.yearDigits, t.written = i-start, written; t.yearDigits > 18 {
			return false // beyond any year, and int64
		}
		if t.yearDigits < 4 || (neg && bc) || len(b) < i+6 || b[i] != '-' || b[i+3] != '-' {
			return false
		}
		var ok1, ok2 bool
		t.month, ok1 = twoDigits(b[i+1:])
		t.day, ok2 = twoDigits(b[i+4:])
		if !ok1 || !ok2 {
			return false
		}
		i += 6
		switch t.year = t.written; {
		case bc:
			if t.written == 0 {
				return false
			}
			t.year = 1 - t.written
		case neg:
			t.year = -t.written
			t.typed = true
		}
		if clock {
			if i >= len(b) || (b[i] != ' ' && b[i] != 'T') {
				return false
			}
			t.typed = t.typed || b[i] == 'T'
			i++
		}
	}
	if clock {
		c := b[i:]
		if len(c) < 8 || c[2] != ':' || c[5] != ':' {
			return false
		}
		h, ok1 := twoDigits(c)
		m, ok2 := twoDigits(c[3:])
		s, ok3 := twoDigits(c[6:])
		if !ok1 || !ok2 || !ok3 {
			return false
		}
		t.hour, t.min, t.sec = h, m, s
		t.us = ((h*60+m)*60 + s) * usPerSecond
		n := 8
		if n < len(c) && c[n] == '.' {
			n++
			frac, digits := int64(0), 0
			for ; n < len(c) && c[n] >= '0' && c[n] <= '9'; n++ {
				if digits++; digits <= 6 {
					frac = frac*10 + int64(c[n]-'0')
				}
			}
			if digits == 0 {
				return false
			}
			t.fracDigits = digits
			for ; digits < 6; digits++ {
				frac *= 10
			}
			t.us += frac
		}
		t.clock = c[:n]
		i += n
	}
	if zone {
		t.zoned = true
		z := b[i:]
		switch {
		case len(z) == 1 && z[0] == 'Z':
			t.typed = true
		case len(z) >= 3 && (z[0] == '+' || z[0] == '-'):
			t.zoneNeg = z[0] == '-'
			var ok bool
			if t.zoneH, ok = twoDigits(z[1:]); !ok {
				return false
			}
			if t.zoneM, z, ok = zonePart(z[3:]); !ok {
				return false
			}
			if t.zoneS, z, ok = zonePart(z); !ok || len(z) != 0 {
				return false
			}
		default:
			return false
		}
		i = len(b)
	}
	return i == len(b)
}

// zonePart reads an optional ":MM" or ":SS" of a zone.
func zonePart(z []byte) (v int64, rest []byte, ok bool) {
	if len(z) == 0 {
		return 0, z, true
	}
	if v, ok = twoDigits(z[1:]); !ok || z[0] != ':' {
		return 0, z, false
	}
	return v, z[3:], true
}

// strict reports whether t is what the output functions write and within
// the range the binary conversions take (see minYear): no typed marks, a
// year of four to six digits, a day of its month, a clock within the day
// (24:00:00 only when allow24) to the microsecond, a zone within 15 hours.
func (t *isoTime) strict(date, allow24 bool) bool {
	if t.special != "" || t.typed {
		return !t.typed
	}
	if date && (t.yearDigits > 6 || t.written == 0 || t.year < minYear || t.year > maxYear ||
		t.month < 1 || t.month > 12 || t.day < 1 || t.day > daysInMonth(t.year, t.month)) {
		return false
	}
	if t.clock != nil && (t.min > 59 || t.sec > 59 || t.fracDigits > 6 || t.hour > 24 ||
		(t.hour == 24 && (!allow24 || t.us != usPerDay))) {
		return false
	}
	return t.zoneH <= 15 && t.zoneM <= 59 && t.zoneS <= 59
}

// days is t's date as days since 2000-01-01.
func (t *isoTime) days() int64 { return julianDay(t.year, t.month, t.day) - postgresEpochJDate }

// offset is t's zone in seconds east of UTC.
func (t *isoTime) offset() int64 {
	o := t.zoneH*3600 + t.zoneM*60 + t.zoneS
	if t.zoneNeg {
		return -o
	}
	return o
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
	dst = appendYMD(dst, writtenYear(int64(y)), int64(m), int64(d))
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
	dst = appendYMD(dst, writtenYear(int64(y)), int64(m), int64(d))
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

// appendYMD writes "YYYY-MM-DD", with the year y (not negative) as written:
// four digits or more.
func appendYMD(dst []byte, y, m, d int64) []byte {
	if y < 10000 {
		dst = append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
	} else {
		dst = strconv.AppendInt(dst, y, 10)
	}
	return append(dst, '-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
}

// writtenYear is how ISO text writes astronomical year y: a year before
// 1 AD (y <= 0) as 1-y, followed by " BC".
func writtenYear(y int64) int64 {
	if y <= 0 {
		return 1 - y
	}
	return y
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
