package pgvalue

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/pgflo/pgflo/internal/event"
)

// ErrNotOrdered is returned by Compare for types pgflo does not order
// (json, arrays, ranges, geometric types, …); Equal still works for them.
var ErrNotOrdered = errors.New("values of this type have no order in pgflo's filters")

// Compare orders a and b, text forms (or typed forms, for b) of values of
// col's type, as PostgreSQL orders them: numbers by value (numeric exactly,
// NaN above everything), timestamps as instants (a timestamptz value
// without an offset is UTC), dates, times and intervals by value, booleans
// false before true, uuids by their bytes, text by bytes (not by
// collation). It returns -1, 0 or 1.
func Compare(a, b string, col event.Column) (int, error) {
	t := lookup(col)
	switch t.kind {
	case kindInt, kindNumeric:
		if c, ok := compareSmallIntegers(a, b); ok {
			return c, nil
		}
		x, err := parseOrderedNumeric(a)
		if err != nil {
			return 0, fmt.Errorf("column value %q: %w", a, err)
		}
		y, err := parseOrderedNumeric(b)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number: %w", b, err)
		}
		return x.compare(y), nil
	case kindFloat:
		x, err := parseOrderedFloat(a)
		if err != nil {
			return 0, fmt.Errorf("column value %q: %w", a, err)
		}
		y, err := parseOrderedFloat(b)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", b)
		}
		return compareFloats(x, y), nil
	case kindBool:
		x, ok1 := parseBool(a)
		y, ok2 := parseBool(b)
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("%q is not a boolean", b)
		}
		return compareInts(boolInt(x), boolInt(y)), nil
	case kindDate, kindTime, kindTimetz, kindTimestamp, kindTimestamptz:
		x, err := timeKey(a, t.kind)
		if err != nil {
			return 0, fmt.Errorf("column value %q: %w", a, err)
		}
		y, err := timeKey(b, t.kind)
		if err != nil {
			return 0, fmt.Errorf("%q is not a valid %s: %w", b, col.Type, err)
		}
		return x.Cmp(y), nil
	case kindInterval:
		x, err := intervalKey(a)
		if err != nil {
			return 0, fmt.Errorf("column value %q: %w", a, err)
		}
		y, err := intervalKey(b)
		if err != nil {
			return 0, fmt.Errorf("%q is not an interval: %w", b, err)
		}
		return x.Cmp(y), nil
	case kindText:
		if isUUID(col) {
			x, ok1 := normalizeUUID(a)
			y, ok2 := normalizeUUID(b)
			if !ok1 || !ok2 {
				return 0, fmt.Errorf("%q is not a uuid", b)
			}
			return strings.Compare(x, y), nil
		}
		if t.delim != ';' { // box has no order
			return strings.Compare(a, b), nil
		}
	}
	return 0, ErrNotOrdered
}

// Equal reports whether a and b are the same value of col's type: by
// Compare for ordered types, otherwise by text form (b may be typed).
func Equal(a, b string, col event.Column) (bool, error) {
	c, err := Compare(a, b, col)
	if err == nil {
		return c == 0, nil
	}
	if !errors.Is(err, ErrNotOrdered) {
		return false, err
	}
	if a == b {
		return true, nil
	}
	t := lookup(col)
	typed, err := decodeAs(b, t)
	if err != nil {
		return false, nil
	}
	norm, err := appendEncoded(nil, typed, t)
	return err == nil && string(norm) == a, nil
}

func isUUID(col event.Column) bool { return col.Type == "uuid" && (col.OID == 0 || col.OID == UUIDOID) }

// normalizeUUID reads the forms uuid_in accepts into 32 lower-case hex digits.
func normalizeUUID(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			b.WriteByte(c)
		case c >= 'A' && c <= 'F':
			b.WriteByte(c + 'a' - 'A')
		default:
			return "", false
		}
	}
	return b.String(), b.Len() == 32
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func compareInts(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseBool reads what boolin accepts.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "t", "true", "yes", "y", "on", "1":
		return true, true
	case "f", "false", "no", "n", "off", "0":
		return false, true
	}
	return false, false
}

// orderedNumeric is a numeric for comparison: rank orders -Infinity (0),
// finite (1), Infinity (2), NaN (3); finite values compare exactly.
type orderedNumeric struct {
	rank  int
	value *big.Rat
}

func parseOrderedNumeric(s string) (orderedNumeric, error) {
	switch strings.ToLower(s) {
	case "-infinity", "-inf":
		return orderedNumeric{rank: 0}, nil
	case "infinity", "+infinity", "inf":
		return orderedNumeric{rank: 2}, nil
	case "nan":
		return orderedNumeric{rank: 3}, nil
	}
	if !isJSONNumber(s) {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return orderedNumeric{}, errors.New("not a number")
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return orderedNumeric{}, errors.New("not a number")
	}
	return orderedNumeric{rank: 1, value: r}, nil
}

func (x orderedNumeric) compare(y orderedNumeric) int {
	if x.rank != y.rank || x.rank != 1 {
		return compareInts(int64(x.rank), int64(y.rank))
	}
	return x.value.Cmp(y.value)
}

func parseOrderedFloat(s string) (float64, error) {
	return strconv.ParseFloat(s, 64)
}

// compareFloats orders as float8: NaN equals NaN and is above everything.
func compareFloats(x, y float64) int {
	xn, yn := math.IsNaN(x), math.IsNaN(y)
	switch {
	case xn && yn:
		return 0
	case xn:
		return 1
	case yn:
		return -1
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// timeKey turns a date/time into microseconds (since 1970-01-01 for dates
// and timestamps, since midnight for times; UTC for zoned values), with
// ±infinity beyond every value. A zoned kind also reads a value without a
// zone, as UTC.
func timeKey(s string, k kind) (*big.Int, error) {
	dt, err := parseDateTime(s, k)
	if err != nil && hasZone(k) {
		unzoned := kindTimestamp
		if k == kindTimetz {
			unzoned = kindTime
		}
		dt, err = parseDateTime(s, unzoned)
	}
	if err != nil {
		return nil, err
	}
	const beyond = 1 << 62
	switch dt.special {
	case infinity:
		return big.NewInt(beyond), nil
	case negInfinity:
		return big.NewInt(-beyond), nil
	}
	if dt.fracDigits > 6 {
		return nil, errDateTime
	}
	micros := dt.us - dt.offset()*usPerSecond
	if hasDate(k) {
		micros += (julianDay(dt.year, dt.month, dt.day) - unixEpochJDate) * usPerDay
	}
	return big.NewInt(micros), nil
}

// intervalKey orders intervals as PostgreSQL does: a month is 30 days, a
// day 24 hours.
func intervalKey(s string) (*big.Int, error) {
	iv, err := parseInterval(s)
	if err != nil {
		return nil, err
	}
	days := new(big.Int).Mul(big.NewInt(iv.months), big.NewInt(30))
	days.Add(days, big.NewInt(iv.days))
	key := days.Mul(days, big.NewInt(usPerDay))
	return key.Add(key, big.NewInt(iv.micros)), nil
}

// compareSmallIntegers compares two integers that fit int64 without
// big.Rat: the common case of integer columns.
func compareSmallIntegers(a, b string) (int, bool) {
	if len(a) > 18 || len(b) > 18 || !isInteger(a) || !isInteger(b) {
		return 0, false
	}
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return compareInts(x, y), true
}
