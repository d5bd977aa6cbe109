package pgvalue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/pgflo/pgflo/internal/event"
)

// parseJSONValue parses one JSON value with numbers as json.Number.
func parseJSONValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// appendJSONB writes a JSON document as jsonb's output does: ", " and ": "
// separators, object keys ordered by length then bytes, PostgreSQL's string
// escapes and numbers in numeric's output form. That is jsonb's exact text,
// and valid (if not verbatim) text for json.
func appendJSONB(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case string:
		return appendPGJSONString(buf, x), nil
	case json.Number:
		n, err := numericText(string(x))
		if err != nil {
			return nil, err
		}
		return append(buf, n...), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("JSON has no NaN or Infinity")
		}
		return strconv.AppendFloat(buf, x, 'f', -1, 64), nil
	case int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case json.RawMessage:
		parsed, err := parseJSONValue(x)
		if err != nil {
			return nil, err
		}
		return appendJSONB(buf, parsed)
	case []any:
		buf = append(buf, '[')
		for i, item := range x {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			var err error
			if buf, err = appendJSONB(buf, item); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case map[string]any:
		// jsonb orders keys by length, then bytes.
		keys := sortedKeys(x, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return strings.Compare(a, b)
		})
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			buf = appendPGJSONString(buf, k)
			buf = append(buf, ": "...)
			var err error
			if buf, err = appendJSONB(buf, x[k]); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	}
	return nil, fmt.Errorf("want a JSON value, not %T", v)
}

// appendPGJSONString escapes as PostgreSQL's escape_json.
func appendPGJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\b':
			buf = append(buf, `\b`...)
		case '\f':
			buf = append(buf, `\f`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		case '"':
			buf = append(buf, `\"`...)
		case '\\':
			buf = append(buf, `\\`...)
		default:
			if c < 0x20 {
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			} else {
				buf = append(buf, c)
			}
		}
	}
	return append(buf, '"')
}

// numericText writes a JSON number as numeric's output: exponents expanded,
// the scale kept ("1.50" stays, "1.5e1" is "15"), no negative zero.
func numericText(s string) (string, error) {
	if !isJSONNumber(s) {
		return "", errors.New("not a number")
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	if hasExp {
		exp, err := strconv.Atoi(expText)
		if err != nil || exp > 1000 || exp < -1000 {
			return "", errors.New("number out of range")
		}
		digits := intPart + frac
		point := len(intPart) + exp
		scale := max(len(frac)-exp, 0)
		switch {
		case point <= 0:
			digits = strings.Repeat("0", -point+1) + digits
			point = 1
		case point > len(digits):
			digits += strings.Repeat("0", point-len(digits))
		}
		intPart, frac = digits[:point], digits[point:]
		if len(frac) > scale {
			frac = frac[:scale]
		} else {
			frac += strings.Repeat("0", scale-len(frac))
		}
		intPart = strings.TrimLeft(intPart, "0")
		if intPart == "" {
			intPart = "0"
		}
	}
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return out, nil
}

// sortedKeys returns m's keys in the order cmp gives.
func sortedKeys(m map[string]any, cmp func(a, b string) int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}

// AppendJSON appends typed value v (what Decode returns, or its parse) as
// JSON: json.Number verbatim, json.RawMessage embedded (compacted only when
// it holds a line break, so an event stays one line), object members
// sorted by key, strings escaped like event.AppendJSONString.
func AppendJSON(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case bool:
		return strconv.AppendBool(buf, x)
	case string:
		return event.AppendJSONString(buf, x)
	case json.Number:
		return append(buf, x...)
	case json.RawMessage:
		return appendRawJSON(buf, x)
	case []any:
		buf = append(buf, '[')
		for i, item := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = AppendJSON(buf, item)
		}
		return append(buf, ']')
	case map[string]any:
		keys := sortedKeys(x, strings.Compare)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = event.AppendJSONString(buf, k)
			buf = append(buf, ':')
			buf = AppendJSON(buf, x[k])
		}
		return append(buf, '}')
	}
	b, err := json.Marshal(v)
	if err != nil {
		return append(buf, "null"...)
	}
	return append(buf, b...)
}

// appendRawJSON embeds a JSON document, which is valid JSON (Decode checked
// it), as is unless it holds a line break.
func appendRawJSON(buf []byte, raw []byte) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return append(buf, raw...)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return event.AppendJSONString(buf, string(raw))
	}
	return append(buf, out.Bytes()...)
}
