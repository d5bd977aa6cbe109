package pgvalue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// Members of the object form of an array (docs/decode.md): used when
// nested lists cannot say what the array is — lower bounds other than 1, or
// several dimensions of elements that are lists themselves (json, jsonb,
// multiranges).
const (
	arrayLowerBounds = "lower_bounds"
	arrayLengths     = "lengths"
	arrayValues      = "values"
)

// arrayText is an array literal split into its parts: dimensions, lower
// bounds and the elements in row-major order (nil for NULL).
type arrayText struct {
	lengths []int
	lower   []int
	elems   []*string
}

// parseArray splits PostgreSQL's array output (`{1,2,NULL}`,
// `[0:1]={{"a b",c},{d,e}}`) with element delimiter delim. The elements
// keep their own text form.
func parseArray(s string, delim byte) (arrayText, error) {
	var a arrayText
	// The scanner only reads the string's bytes: they are lent as they are.
	p := arrayScanner{b: unsafe.Slice(unsafe.StringData(s), len(s)), delim: delim}
	if err := p.begin(); err != nil {
		return a, err
	}
	err := p.elements()
	a.elems = p.texts
	if err != nil || p.ndim == 0 {
		return a, err
	}
	a.lengths, a.lower = make([]int, p.ndim), make([]int, p.ndim)
	for d := range p.ndim {
		a.lengths[d], a.lower[d] = int(p.lens[d]), int(p.lower[d])
	}
	return a, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// format writes the array literal as PostgreSQL's array_out does.
func (a arrayText) format(buf []byte, delim byte) []byte {
	if len(a.elems) == 0 {
		return append(buf, "{}"...)
	}
	for _, lo := range a.lower {
		if lo != 1 {
			for i, lo := range a.lower {
				buf = append(buf, '[')
				buf = strconv.AppendInt(buf, int64(lo), 10)
				buf = append(buf, ':')
				buf = strconv.AppendInt(buf, int64(lo+a.lengths[i]-1), 10)
				buf = append(buf, ']')
			}
			buf = append(buf, '=')
			break
		}
	}
	next := 0
	var level func(depth int)
	level = func(depth int) {
		buf = append(buf, '{')
		for i := 0; i < a.lengths[depth]; i++ {
			if i > 0 {
				buf = append(buf, delim)
			}
			if depth+1 < len(a.lengths) {
				level(depth + 1)
				continue
			}
			buf = appendArrayElement(buf, a.elems[next], delim)
			next++
		}
		buf = append(buf, '}')
	}
	level(0)
	return buf
}

// appendArrayElement appends an element, quoted when array_out would.
func appendArrayElement(buf []byte, elem *string, delim byte) []byte {
	if elem == nil {
		return append(buf, "NULL"...)
	}
	at := len(buf)
	return quoteElement(append(buf, *elem...), at, delim)
}

// listElems reports whether typed elements of t are JSON lists themselves,
// so that nested lists cannot stand for dimensions.
func listElems(t *typeInfo) bool {
	switch t.kind {
	case kindJSON, kindJSONB, kindMultirange, kindArray:
		return true
	}
	return false
}

// decodeArray converts an array literal into its typed value: nested lists,
// or the object form.
func decodeArray(text string, t *typeInfo) (any, error) {
	a, err := parseArray(text, t.delim)
	if err != nil {
		return nil, err
	}
	values := make([]any, len(a.elems))
	for i, e := range a.elems {
		if e == nil {
			continue
		}
		if values[i], err = decodeAs(*e, t.elem); err != nil {
			return nil, fmt.Errorf("element %d: %w", i+1, err)
		}
	}
	objectForm := len(a.lengths) > 1 && listElems(t.elem)
	for _, lo := range a.lower {
		objectForm = objectForm || lo != 1
	}
	if !objectForm {
		return nest(values, a.lengths), nil
	}
	lower, lengths := make([]any, len(a.lower)), make([]any, len(a.lengths))
	for i := range a.lower {
		lower[i] = jsonInt(a.lower[i])
		lengths[i] = jsonInt(a.lengths[i])
	}
	return map[string]any{arrayLowerBounds: lower, arrayLengths: lengths, arrayValues: values}, nil
}

// nest turns row-major values into nested lists of the given lengths.
func nest(values []any, lengths []int) []any {
	if len(lengths) <= 1 {
		return values
	}
	n := len(values) / lengths[0]
	out := make([]any, lengths[0])
	for i := range out {
		out[i] = nest(values[i*n:(i+1)*n], lengths[1:])
	}
	return out
}

// appendArray writes a typed array (nested lists or the object form, or
// the literal itself as a string) as an array literal.
func appendArray(buf []byte, v any, t *typeInfo) ([]byte, error) {
	var a arrayText
	var values []any
	switch x := v.(type) {
	case string:
		if t.verify {
			// A user type named like an array whose value was not one.
			return append(buf, x...), nil
		}
		if _, err := decodeArray(x, t); err != nil {
			return nil, err
		}
		return append(buf, x...), nil
	case []any:
		if len(x) == 0 {
			return append(buf, "{}"...), nil
		}
		if listElems(t.elem) {
			values, a.lengths = x, []int{len(x)}
		} else {
			var err error
			if values, a.lengths, err = flatten(x); err != nil {
				return nil, err
			}
		}
		a.lower = make([]int, len(a.lengths))
		for i := range a.lower {
			a.lower[i] = 1
		}
	case map[string]any:
		var err error
		if a.lower, err = intList(x[arrayLowerBounds]); err != nil {
			return nil, fmt.Errorf("%s: %w", arrayLowerBounds, err)
		}
		if a.lengths, err = intList(x[arrayLengths]); err != nil {
			return nil, fmt.Errorf("%s: %w", arrayLengths, err)
		}
		var ok bool
		if values, ok = x[arrayValues].([]any); !ok {
			return nil, fmt.Errorf("%s: want a list", arrayValues)
		}
		total := 1
		for _, n := range a.lengths {
			total *= n
		}
		if len(a.lower) != len(a.lengths) || len(a.lengths) == 0 || total != len(values) || len(a.lengths) > 6 {
			return nil, errors.New("lower_bounds, lengths and values do not fit")
		}
	default:
		return nil, fmt.Errorf("want a list, not %T", v)
	}
	a.elems = make([]*string, len(values))
	for i, value := range values {
		if value == nil {
			continue
		}
		b, err := appendEncoded(nil, value, t.elem)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i+1, err)
		}
		s := string(b)
		a.elems[i] = &s
	}
	return a.format(buf, t.delim), nil
}

// flatten turns rectangular nested lists into row-major values and lengths.
func flatten(list []any) ([]any, []int, error) {
	if _, nested := list[0].([]any); !nested {
		for _, v := range list {
			if _, ok := v.([]any); ok {
				return nil, nil, errors.New("array is not rectangular")
			}
		}
		return list, []int{len(list)}, nil
	}
	var values []any
	var inner []int
	for i, v := range list {
		sub, ok := v.([]any)
		if !ok || len(sub) == 0 {
			return nil, nil, errors.New("array is not rectangular")
		}
		subValues, subLengths, err := flatten(sub)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			inner = subLengths
		} else if !equalInts(inner, subLengths) {
			return nil, nil, errors.New("array is not rectangular")
		}
		values = append(values, subValues...)
	}
	return values, append([]int{len(list)}, inner...), nil
}

func intList(v any) ([]int, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("want a list of integers")
	}
	out := make([]int, len(list))
	for i, item := range list {
		b, err := appendInteger(nil, item)
		if err != nil {
			return nil, err
		}
		if out[i], err = strconv.Atoi(string(b)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func jsonInt(n int) json.Number { return json.Number(strconv.Itoa(n)) }

// appendRawJSONArray writes a typed array of json given as raw JSON, keeping
// each element's raw text: json documents are kept verbatim, not re-formatted.
func appendRawJSONArray(buf []byte, raw json.RawMessage, t *typeInfo) ([]byte, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err == nil {
		return appendArray(buf, rawElems(list), t)
	}
	var object struct {
		LowerBounds []any             `json:"lower_bounds"`
		Lengths     []any             `json:"lengths"`
		Values      []json.RawMessage `json:"values"`
	}
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, fmt.Errorf("want a list or the array object form: %w", err)
	}
	return appendArray(buf, map[string]any{
		arrayLowerBounds: object.LowerBounds, arrayLengths: object.Lengths, arrayValues: rawElems(object.Values),
	}, t)
}

// rawElems makes raw JSON elements typed values; JSON null is SQL NULL.
func rawElems(list []json.RawMessage) []any {
	out := make([]any, len(list))
	for i, e := range list {
		if string(e) != "null" {
			out[i] = e
		}
	}
	return out
}
