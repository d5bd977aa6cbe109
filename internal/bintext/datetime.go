package bintext

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// Dates and times in ISO form (DateStyle ISO, TimeZone UTC): "YYYY-MM-DD"
// with four or more year digits, times "HH:MM:SS" with the microseconds'
// trailing zeros dropped, "+00" after a timestamptz's time, and " BC" at
// the very end for years before 1 AD. Binary dates count days, timestamps
// microseconds, from 2000-01-01 (UTC for timestamptz). The calendar
// arithmetic is the server's own (j2date), which time.Time's does not
// match before 1 AD.

const (
	usPerSecond = 1_000_000
	usPerMinute = 60 * usPerSecond
	usPerHour   = 60 * usPerMinute
	usPerDay    = 24 * usPerHour
	// postgresEpochJDate is the Julian day of 2000-01-01.
	postgresEpochJDate = 2451545
	// The server's ranges (datatype/timestamp.h), which its receive
	// functions enforce: dates from Julian day 0 (4714-11-24 BC) to
	// 5874897-12-31, timestamps from 4714-11-24 BC to 294276-12-31.
	minDate      = -postgresEpochJDate
	endDate      = 2147483494 - postgresEpochJDate
	minTimestamp = -211813488000000000
	endTimestamp = 9223371331200000000
)

var errRange = errors.New("binary value out of its type's range")

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
		return dst, errRange
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
		return dst, errRange
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
		return dst, errRange
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
	frac := int(us - int64(s)*usPerSecond)
	dst = append(dst, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10))
	if frac == 0 {
		return dst
	}
	var f [7]byte
	f[0] = '.'
	for i := 6; i > 0; i-- {
		f[i] = byte('0' + frac%10)
		frac /= 10
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
