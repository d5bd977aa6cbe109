package pgvalue

import (
	"errors"
	"strconv"
	"strings"
)

// interval is PostgreSQL's interval: months, days and microseconds, each
// with its own sign.
type interval struct {
	months int64
	days   int64
	micros int64
}

var errInterval = errors.New("not an interval in postgres or ISO 8601 style")

// parseInterval reads the postgres IntervalStyle ("1 year 2 mons -3 days
// +04:05:06.5") or the ISO 8601 form pgflo's typed values use
// ("P1Y2M-3DT4H5M6.5S").
func parseInterval(s string) (interval, error) {
	if strings.HasPrefix(s, "P") {
		return parseISOInterval(s)
	}
	var iv interval
	fields := strings.Split(s, " ")
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if strings.Contains(f, ":") {
			if i != len(fields)-1 {
				return iv, errInterval
			}
			micros, err := parseClockMicros(f)
			if err != nil {
				return iv, err
			}
			iv.micros = micros
			continue
		}
		if i+1 >= len(fields) {
			return iv, errInterval
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return iv, errInterval
		}
		i++
		switch fields[i] {
		case "year", "years":
			iv.months += n * 12
		case "mon", "mons":
			iv.months += n
		case "day", "days":
			iv.days += n
		default:
			return iv, errInterval
		}
	}
	return iv, nil
}

// parseClockMicros reads [+-]H+:MM:SS[.ffffff].
func parseClockMicros(f string) (int64, error) {
	neg := false
	switch {
	case strings.HasPrefix(f, "-"):
		neg, f = true, f[1:]
	case strings.HasPrefix(f, "+"):
		f = f[1:]
	}
	h, rest, ok := strings.Cut(f, ":")
	if !ok {
		return 0, errInterval
	}
	m, sec, ok := strings.Cut(rest, ":")
	if !ok || len(m) != 2 {
		return 0, errInterval
	}
	hours, err1 := strconv.ParseInt(h, 10, 64)
	minutes, err2 := strconv.ParseInt(m, 10, 64)
	micros, err3 := parseSecondsMicros(sec)
	if err1 != nil || err2 != nil || err3 != nil || hours < 0 || minutes < 0 {
		return 0, errInterval
	}
	total := hours*usPerHour + minutes*usPerMinute + micros
	if neg {
		total = -total
	}
	return total, nil
}

// parseSecondsMicros reads unsigned S[.ffffff] as microseconds.
func parseSecondsMicros(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 6 || strings.HasPrefix(whole, "-") || strings.HasPrefix(whole, "+") {
		return 0, errInterval
	}
	secs, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, errInterval
	}
	var fraction int64
	if frac != "" {
		padded := frac + strings.Repeat("0", 6-len(frac))
		if fraction, err = strconv.ParseInt(padded, 10, 64); err != nil || padded[0] == '-' || padded[0] == '+' {
			return 0, errInterval
		}
	}
	return secs*usPerSecond + fraction, nil
}

// parseISOInterval reads PostgreSQL's iso_8601 interval output.
func parseISOInterval(s string) (interval, error) {
	var iv interval
	s = s[1:]
	inTime := false
	if s == "" {
		return iv, errInterval
	}
	for s != "" {
		if s[0] == 'T' {
			if inTime {
				return iv, errInterval
			}
			inTime = true
			s = s[1:]
			continue
		}
		end := strings.IndexAny(s, "YMDHS")
		if end <= 0 {
			return iv, errInterval
		}
		num, unit := s[:end], s[end]
		s = s[end+1:]
		if inTime && unit == 'S' {
			neg := strings.HasPrefix(num, "-")
			micros, err := parseSecondsMicros(strings.TrimPrefix(num, "-"))
			if err != nil {
				return iv, err
			}
			if neg {
				micros = -micros
			}
			iv.micros += micros
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return iv, errInterval
		}
		switch {
		case !inTime && unit == 'Y':
			iv.months += n * 12
		case !inTime && unit == 'M':
			iv.months += n
		case !inTime && unit == 'D':
			iv.days += n
		case inTime && unit == 'H':
			iv.micros += n * usPerHour
		case inTime && unit == 'M':
			iv.micros += n * usPerMinute
		default:
			return iv, errInterval
		}
	}
	return iv, nil
}

// fields splits the interval as PostgreSQL's output does: every part
// truncated toward zero, so all parts of the month and time groups share
// their group's sign.
func (iv interval) fields() (year, mon, day, hour, min, sec, fsec int64) {
	year, mon = iv.months/12, iv.months%12
	day = iv.days
	t := iv.micros
	hour = t / usPerHour
	t -= hour * usPerHour
	min = t / usPerMinute
	t -= min * usPerMinute
	sec = t / usPerSecond
	fsec = t - sec*usPerSecond
	return
}

// appendISO writes PostgreSQL's iso_8601 output: "P1Y2M3DT4H5M6.5S", "PT0S".
func (iv interval) appendISO(buf []byte) []byte {
	year, mon, day, hour, min, sec, fsec := iv.fields()
	if year == 0 && mon == 0 && day == 0 && hour == 0 && min == 0 && sec == 0 && fsec == 0 {
		return append(buf, "PT0S"...)
	}
	buf = append(buf, 'P')
	part := func(v int64, unit byte) {
		if v != 0 {
			buf = strconv.AppendInt(buf, v, 10)
			buf = append(buf, unit)
		}
	}
	part(year, 'Y')
	part(mon, 'M')
	part(day, 'D')
	if hour != 0 || min != 0 || sec != 0 || fsec != 0 {
		buf = append(buf, 'T')
	}
	part(hour, 'H')
	part(min, 'M')
	if sec != 0 || fsec != 0 {
		if sec < 0 || fsec < 0 {
			buf = append(buf, '-')
		}
		buf = appendSeconds(buf, sec, fsec, false)
		buf = append(buf, 'S')
	}
	return buf
}

// appendPostgres writes PostgreSQL's default (postgres style) output:
// "1 year 2 mons -3 days +04:05:06.5", "00:00:00".
func (iv interval) appendPostgres(buf []byte) []byte {
	year, mon, day, hour, min, sec, fsec := iv.fields()
	isZero, isBefore := true, false
	part := func(v int64, unit string) {
		if v == 0 {
			return
		}
		if !isZero {
			buf = append(buf, ' ')
		}
		if isBefore && v > 0 {
			buf = append(buf, '+')
		}
		buf = strconv.AppendInt(buf, v, 10)
		buf = append(buf, ' ')
		buf = append(buf, unit...)
		if v != 1 {
			buf = append(buf, 's')
		}
		isBefore, isZero = v < 0, false
	}
	part(year, "year")
	part(mon, "mon")
	part(day, "day")
	if isZero || hour != 0 || min != 0 || sec != 0 || fsec != 0 {
		minus := hour < 0 || min < 0 || sec < 0 || fsec < 0
		if !isZero {
			buf = append(buf, ' ')
		}
		switch {
		case minus:
			buf = append(buf, '-')
		case isBefore:
			buf = append(buf, '+')
		}
		buf = appendPadded(buf, abs64(hour), 2)
		buf = append(buf, ':')
		buf = appendPadded(buf, abs64(min), 2)
		buf = append(buf, ':')
		buf = appendSeconds(buf, sec, fsec, true)
	}
	return buf
}

// appendSeconds writes |sec| (two digits when pad) and |fsec| as a fraction
// without trailing zeros, as PostgreSQL's AppendSeconds.
func appendSeconds(buf []byte, sec, fsec int64, pad bool) []byte {
	if pad {
		buf = appendPadded(buf, abs64(sec), 2)
	} else {
		buf = strconv.AppendInt(buf, abs64(sec), 10)
	}
	return appendFraction(buf, abs64(fsec))
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// appendTextInterval converts a typed (ISO 8601) or text interval to
// PostgreSQL's postgres style.
func appendTextInterval(buf []byte, s string) ([]byte, error) {
	iv, err := parseInterval(s)
	if err != nil {
		return nil, err
	}
	return iv.appendPostgres(buf), nil
}
