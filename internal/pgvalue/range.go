package pgvalue

import (
	"errors"
	"fmt"
	"strings"
)

// Members of a typed range (docs/decode.md).
const (
	rangeEmpty    = "empty"
	rangeLower    = "lower"
	rangeUpper    = "upper"
	rangeLowerInc = "lower_inc"
	rangeUpperInc = "upper_inc"
)

var errRangeLiteral = errors.New("not a range literal")

// rangeText is a range literal split into its parts; a nil bound is
// unbounded.
type rangeText struct {
	empty              bool
	lower, upper       *string
	lowerInc, upperInc bool
}

// parseRange reads PostgreSQL's range output: `[1,10)`, `(,5]`,
// `["2026-01-01 00:00:00","2026-02-01 00:00:00")`, `empty`.
func parseRange(s string) (rangeText, error) {
	var r rangeText
	if s == rangeEmpty {
		r.empty = true
		return r, nil
	}
	p := scanner{s: s}
	switch {
	case p.take('['):
		r.lowerInc = true
	case p.take('('):
	default:
		return r, errRangeLiteral
	}
	var err error
	if r.lower, err = parseRangeBound(&p); err != nil {
		return r, err
	}
	if !p.take(',') {
		return r, errRangeLiteral
	}
	if r.upper, err = parseRangeBound(&p); err != nil {
		return r, err
	}
	switch {
	case p.take(']'):
		r.upperInc = true
	case p.take(')'):
	default:
		return r, errRangeLiteral
	}
	if p.i != len(p.s) || (r.lower == nil && r.lowerInc) || (r.upper == nil && r.upperInc) {
		return r, errRangeLiteral
	}
	return r, nil
}

// parseRangeBound reads a bound up to ',' or the closing bracket: nil when
// empty (unbounded); quotes and backslashes as range_in reads them.
func parseRangeBound(p *scanner) (*string, error) {
	if p.i < len(p.s) && (p.s[p.i] == ',' || p.s[p.i] == ']' || p.s[p.i] == ')') {
		return nil, nil
	}
	var b strings.Builder
	inQuotes := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return nil, errRangeLiteral
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
			continue
		case c == '"' && inQuotes && p.i+1 < len(p.s) && p.s[p.i+1] == '"':
			b.WriteByte('"')
			p.i += 2
			continue
		case c == '"':
			inQuotes = !inQuotes
		case !inQuotes && (c == ',' || c == ']' || c == ')'):
			s := b.String()
			return &s, nil
		default:
			b.WriteByte(c)
		}
		p.i++
	}
	return nil, errRangeLiteral
}

// format writes the range as range_out does.
func (r rangeText) format(buf []byte) []byte {
	if r.empty {
		return append(buf, rangeEmpty...)
	}
	if r.lowerInc {
		buf = append(buf, '[')
	} else {
		buf = append(buf, '(')
	}
	buf = appendRangeBound(buf, r.lower)
	buf = append(buf, ',')
	buf = appendRangeBound(buf, r.upper)
	if r.upperInc {
		return append(buf, ']')
	}
	return append(buf, ')')
}

func appendRangeBound(buf []byte, bound *string) []byte {
	if bound == nil {
		return buf
	}
	s := *bound
	quote := s == ""
	for i := 0; i < len(s) && !quote; i++ {
		switch c := s[i]; c {
		case '"', '\\', '(', ')', '[', ']', ',', ' ', '\t', '\n', '\r', '\v', '\f':
			quote = true
		}
	}
	if quote {
		buf = append(buf, '"')
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			buf = append(buf, s[i])
		}
		buf = append(buf, s[i])
	}
	if quote {
		buf = append(buf, '"')
	}
	return buf
}

func decodeRange(text string, elem *typeInfo) (any, error) {
	r, err := parseRange(text)
	if err != nil {
		return nil, err
	}
	if r.empty {
		return map[string]any{rangeEmpty: true}, nil
	}
	out := map[string]any{rangeLower: nil, rangeUpper: nil, rangeLowerInc: r.lowerInc, rangeUpperInc: r.upperInc}
	for key, bound := range map[string]*string{rangeLower: r.lower, rangeUpper: r.upper} {
		if bound == nil {
			continue
		}
		if out[key], err = decodeAs(*bound, elem); err != nil {
			return nil, fmt.Errorf("%s bound: %w", key, err)
		}
	}
	return out, nil
}

func appendRange(buf []byte, v any, elem *typeInfo) ([]byte, error) {
	var r rangeText
	switch x := v.(type) {
	case string:
		if _, err := decodeRange(x, elem); err != nil {
			return nil, err
		}
		return append(buf, x...), nil
	case map[string]any:
		if empty, _ := x[rangeEmpty].(bool); empty {
			return append(buf, rangeEmpty...), nil
		}
		r.lowerInc, _ = x[rangeLowerInc].(bool)
		r.upperInc, _ = x[rangeUpperInc].(bool)
		for key, dst := range map[string]**string{rangeLower: &r.lower, rangeUpper: &r.upper} {
			bound := x[key]
			if bound == nil {
				continue
			}
			b, err := appendEncoded(nil, bound, elem)
			if err != nil {
				return nil, fmt.Errorf("%s bound: %w", key, err)
			}
			s := string(b)
			*dst = &s
		}
		if r.lower == nil {
			r.lowerInc = false
		}
		if r.upper == nil {
			r.upperInc = false
		}
	default:
		return nil, fmt.Errorf("want an object, not %T", v)
	}
	return r.format(buf), nil
}

// splitMultirange reads `{[1,3),[5,7)}` into its ranges' texts.
func splitMultirange(s string) ([]string, error) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errors.New("not a multirange literal")
	}
	body := s[1 : len(s)-1]
	var out []string
	for body != "" {
		p := scanner{s: body}
		if _, err := parseRangePrefix(&p); err != nil {
			return nil, err
		}
		out = append(out, body[:p.i])
		body = body[p.i:]
		if body == "" {
			break
		}
		if body[0] != ',' || len(body) == 1 {
			return nil, errors.New("not a multirange literal")
		}
		body = body[1:]
	}
	return out, nil
}

// parseRangePrefix reads one range at the start of p (not "empty").
func parseRangePrefix(p *scanner) (rangeText, error) {
	start := p.i
	if !p.take('[') && !p.take('(') {
		return rangeText{}, errRangeLiteral
	}
	if _, err := parseRangeBound(p); err != nil {
		return rangeText{}, err
	}
	if !p.take(',') {
		return rangeText{}, errRangeLiteral
	}
	if _, err := parseRangeBound(p); err != nil {
		return rangeText{}, err
	}
	if !p.take(']') && !p.take(')') {
		return rangeText{}, errRangeLiteral
	}
	return parseRange(p.s[start:p.i])
}

func decodeMultirange(text string, rng *typeInfo) (any, error) {
	parts, err := splitMultirange(text)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(parts))
	for i, part := range parts {
		if out[i], err = decodeRange(part, rng.elem); err != nil {
			return nil, fmt.Errorf("range %d: %w", i+1, err)
		}
	}
	return out, nil
}

func appendMultirange(buf []byte, v any, rng *typeInfo) ([]byte, error) {
	switch x := v.(type) {
	case string:
		if _, err := decodeMultirange(x, rng); err != nil {
			return nil, err
		}
		return append(buf, x...), nil
	case []any:
		buf = append(buf, '{')
		for i, r := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendRange(buf, r, rng.elem); err != nil {
				return nil, fmt.Errorf("range %d: %w", i+1, err)
			}
		}
		return append(buf, '}'), nil
	}
	return nil, fmt.Errorf("want a list of ranges, not %T", v)
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
