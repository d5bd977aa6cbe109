package pgvalue

// Typed JSON values: the text form's conversion to and from the values
// pg_flo_decode writes for people and for rules (docs/decode.md).

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pgflo/pgflo/internal/event"
)

// ErrNull is returned by Encode for a nil value: SQL NULL has no text form,
// a caller writes NULL itself.
var ErrNull = errors.New("pgvalue: NULL has no text form")

// Special values of float4, float8 and numeric, which JSON numbers cannot
// hold; typed values carry them as these strings.
const (
	nanText     = "NaN"
	posInfText  = "Infinity"
	negInfText  = "-Infinity"
	infinity    = "infinity" // dates and timestamps
	negInfinity = "-infinity"
)

// Decode converts the PostgreSQL text form of a value of column col's type
// into its typed JSON value (docs/decode.md). An error means text is not a
// valid text form of that type.
func Decode(text string, col event.Column) (any, error) {
	v, err := decodeAs(text, lookup(col))
	if err != nil {
		return nil, fmt.Errorf("decode %s value %q: %w", col.Type, text, err)
	}
	return v, nil
}

// Encode converts a typed value of column col's type back into PostgreSQL's
// text form: the exact text Decode read, for values Decode returned. It also
// accepts the text form itself (as a string) where the typed form is a
// string of another shape, so values set by hand work too.
func Encode(v any, col event.Column) (string, error) {
	if v == nil {
		return "", ErrNull
	}
	t := lookup(col)
	b, err := appendEncoded(nil, v, t)
	if err != nil {
		return "", fmt.Errorf("encode %s value %s: %w", col.Type, describe(v), err)
	}
	return string(b), nil
}

// describe renders a value for an error message, shortened.
func describe(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = strconv.Quote(x)
	case json.RawMessage:
		s = string(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprintf("%v", v)
		} else {
			s = string(b)
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func decodeAs(text string, t *typeInfo) (any, error) {
	switch t.kind {
	case kindText:
		return text, nil
	case kindBool:
		switch text {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
		return nil, errors.New("want t or f")
	case kindInt:
		if !isInteger(text) || !isJSONNumber(text) {
			return nil, errors.New("not an integer")
		}
		return json.Number(text), nil
	case kindFloat, kindNumeric:
		switch text {
		case nanText, posInfText, negInfText:
			return text, nil
		}
		if !isJSONNumber(text) {
			return nil, errors.New("not a number")
		}
		return json.Number(text), nil
	case kindBytea:
		raw, err := parseBytea(text)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString(raw), nil
	case kindDate, kindTime, kindTimetz, kindTimestamp, kindTimestamptz:
		b, err := appendTypedTime(nil, text, t.kind)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case kindInterval:
		iv, err := parseInterval(text)
		if err != nil {
			return nil, err
		}
		return string(iv.appendISO(nil)), nil
	case kindJSON, kindJSONB:
		if !json.Valid([]byte(text)) {
			return nil, errors.New("not valid JSON")
		}
		return json.RawMessage(text), nil
	case kindArray:
		v, err := decodeArray(text, t)
		if err != nil {
			if t.verify {
				return text, nil
			}
			return nil, err
		}
		if t.verify {
			if back, err := appendEncoded(nil, v, t); err != nil || string(back) != text {
				return text, nil
			}
		}
		return v, nil
	case kindRange:
		return decodeRange(text, t.elem)
	case kindMultirange:
		return decodeMultirange(text, t.elem)
	}
	return nil, fmt.Errorf("unknown kind %d", t.kind)
}

func isInteger(s string) bool {
	if strings.HasPrefix(s, "-") {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isJSONNumber reports whether s is a JSON number: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// appendEncoded appends the text form of typed value v of type t.
func appendEncoded(buf []byte, v any, t *typeInfo) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		if t.kind == kindJSON {
			return append(buf, raw...), nil
		}
		if t.kind == kindArray && t.elem.kind == kindJSON {
			return appendRawJSONArray(buf, raw, t)
		}
		parsed, err := parseJSONValue(raw)
		if err != nil {
			return nil, err
		}
		v = parsed
	}
	switch t.kind {
	case kindText:
		return appendScalarText(buf, v)
	case kindBool:
		switch x := v.(type) {
		case bool:
			if x {
				return append(buf, 't'), nil
			}
			return append(buf, 'f'), nil
		case string:
			switch strings.ToLower(x) {
			case "t", "true":
				return append(buf, 't'), nil
			case "f", "false":
				return append(buf, 'f'), nil
			}
		}
		return nil, errors.New("want a boolean")
	case kindInt:
		return appendInteger(buf, v)
	case kindFloat, kindNumeric:
		return appendNumber(buf, v, t.kind)
	case kindBytea:
		return appendBytea(buf, v)
	case kindDate, kindTime, kindTimetz, kindTimestamp, kindTimestamptz:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("want a string")
		}
		return appendTextTime(buf, s, t.kind)
	case kindInterval:
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("want a string")
		}
		return appendTextInterval(buf, s)
	case kindJSON, kindJSONB:
		return appendJSONB(buf, v)
	case kindArray:
		return appendArray(buf, v, t)
	case kindRange:
		return appendRange(buf, v, t.elem)
	case kindMultirange:
		return appendMultirange(buf, v, t.elem)
	}
	return nil, fmt.Errorf("unknown kind %d", t.kind)
}

// appendScalarText writes a value of a type kept as text: a string as is,
// numbers and booleans as their JSON text.
func appendScalarText(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return append(buf, x...), nil
	case json.Number:
		return append(buf, x...), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case float64:
		return strconv.AppendFloat(buf, x, 'g', -1, 64), nil
	case int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	}
	return nil, fmt.Errorf("want a string, not %T", v)
}

func appendInteger(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case json.Number:
		if isInteger(string(x)) {
			return append(buf, x...), nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, errors.New("not an integer")
		}
		return strconv.AppendInt(buf, int64(f), 10), nil
	case string:
		if !isInteger(x) {
			return nil, errors.New("not an integer")
		}
		return append(buf, x...), nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return nil, errors.New("not an exact integer")
		}
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case int32:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(buf, x, 10), nil
	case uint32:
		return strconv.AppendUint(buf, uint64(x), 10), nil
	}
	return nil, fmt.Errorf("want an integer, not %T", v)
}

func appendNumber(buf []byte, v any, k kind) ([]byte, error) {
	switch x := v.(type) {
	case json.Number:
		if !isJSONNumber(string(x)) {
			return nil, errors.New("not a number")
		}
		return append(buf, x...), nil
	case string:
		switch x {
		case nanText, posInfText, negInfText:
			return append(buf, x...), nil
		}
		if !isJSONNumber(x) {
			return nil, errors.New("not a number")
		}
		return append(buf, x...), nil
	case float64:
		switch {
		case math.IsNaN(x):
			return append(buf, nanText...), nil
		case math.IsInf(x, 1):
			return append(buf, posInfText...), nil
		case math.IsInf(x, -1):
			return append(buf, negInfText...), nil
		}
		if k == kindNumeric {
			return strconv.AppendFloat(buf, x, 'f', -1, 64), nil
		}
		return strconv.AppendFloat(buf, x, 'g', -1, 64), nil
	case float32:
		return appendNumber(buf, float64(x), k)
	case int, int64, int32, uint64, uint32:
		return appendInteger(buf, x)
	}
	return nil, fmt.Errorf("want a number, not %T", v)
}

// AppendTyped appends the typed JSON value of text (what AppendJSON writes
// for Decode's result) without building intermediate values for scalar
// types: pg_flo_decode's hot path.
func AppendTyped(buf []byte, text string, col event.Column) ([]byte, error) {
	t := lookup(col)
	switch t.kind {
	case kindText:
		return event.AppendJSONString(buf, text), nil
	case kindInt:
		if isInteger(text) && isJSONNumber(text) {
			return append(buf, text...), nil
		}
	case kindFloat, kindNumeric:
		if isJSONNumber(text) {
			return append(buf, text...), nil
		}
	case kindBool:
		switch text {
		case "t":
			return append(buf, "true"...), nil
		case "f":
			return append(buf, "false"...), nil
		}
	case kindDate, kindTime, kindTimetz, kindTimestamp, kindTimestamptz:
		dt, err := parseDateTime(text, t.kind)
		if err == nil {
			buf = append(buf, '"')
			buf = dt.appendTyped(buf, t.kind)
			return append(buf, '"'), nil
		}
	case kindJSON, kindJSONB:
		if json.Valid([]byte(text)) {
			return appendRawJSON(buf, []byte(text)), nil
		}
	}
	v, err := Decode(text, col)
	if err != nil {
		return nil, err
	}
	return AppendJSON(buf, v), nil
}

// EncodeJSON is Encode for a typed value given as its raw JSON, with fast
// paths for the scalar values most columns hold; what they do not cover
// goes through Encode.
func EncodeJSON(raw []byte, col event.Column) (string, error) {
	if string(raw) == "null" {
		return "", ErrNull
	}
	t := lookup(col)
	switch {
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0:
		s := raw[1 : len(raw)-1]
		switch t.kind {
		case kindText:
			return string(s), nil
		case kindDate, kindTime, kindTimetz, kindTimestamp, kindTimestamptz:
			b, err := appendTextTime(nil, string(s), t.kind)
			if err != nil {
				return "", fmt.Errorf("encode %s value %s: %w", col.Type, raw, err)
			}
			return string(b), nil
		}
	case t.kind == kindInt && isInteger(string(raw)):
		return string(raw), nil
	case (t.kind == kindFloat || t.kind == kindNumeric) && isJSONNumber(string(raw)):
		return string(raw), nil
	case t.kind == kindBool && string(raw) == "true":
		return "t", nil
	case t.kind == kindBool && string(raw) == "false":
		return "f", nil
	}
	return Encode(json.RawMessage(raw), col)
}

// TypedAsText reports whether col's typed values are its text forms as JSON
// strings, so a raw event's value is already the typed one.
func TypedAsText(col event.Column) bool { return lookup(col).kind == kindText }
