package event

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Head holds the routing fields of an event: what Benthos metadata carries.
type Head struct {
	Op     Op
	Schema string
	Table  string
	LSN    string
}

// Peek reads an event's routing fields. Events written by AppendJSON start
// with them, so Peek reads only that prefix; any other valid event (fields in
// another order, written by another producer) falls back to a full parse.
func Peek(data []byte) (Head, error) {
	if h, ok := peekPrefix(data); ok {
		return h, nil
	}
	var aux struct {
		V      int    `json:"v"`
		Op     Op     `json:"op"`
		Schema string `json:"schema"`
		Table  string `json:"table"`
		LSN    string `json:"lsn"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return Head{}, fmt.Errorf("decode change event: %w", err)
	}
	if aux.V != Version {
		return Head{}, fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", aux.V, Version)
	}
	if !aux.Op.Valid() {
		return Head{}, fmt.Errorf("decode change event: unknown op %q", aux.Op)
	}
	return Head{Op: aux.Op, Schema: aux.Schema, Table: aux.Table, LSN: aux.LSN}, nil
}

var versionPrefix = []byte(`{"v":1,"op":`)

// peekPrefix parses `{"v":1,"op":"…","schema":"…","table":"…","lsn":"…"` and
// reports false when the data does not start exactly like that.
func peekPrefix(data []byte) (Head, bool) {
	if !bytes.HasPrefix(data, versionPrefix) {
		return Head{}, false
	}
	rest := data[len(versionPrefix):]
	var h Head
	var op string
	var ok bool
	if op, rest, ok = peekString(rest); !ok {
		return h, false
	}
	h.Op = Op(op)
	if !h.Op.Valid() {
		return h, false
	}
	for _, field := range []struct {
		key []byte
		dst *string
	}{
		{[]byte(`,"schema":`), &h.Schema},
		{[]byte(`,"table":`), &h.Table},
		{[]byte(`,"lsn":`), &h.LSN},
	} {
		if !bytes.HasPrefix(rest, field.key) {
			return h, false
		}
		if *field.dst, rest, ok = peekString(rest[len(field.key):]); !ok {
			return h, false
		}
	}
	return h, true
}

// peekString reads a JSON string at the start of data. Strings with escapes
// are decoded by encoding/json; plain ones are sliced directly.
func peekString(data []byte) (string, []byte, bool) {
	if len(data) == 0 || data[0] != '"' {
		return "", nil, false
	}
	escaped := false
	for i := 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return string(data[1:i]), data[i+1:], true
			}
			var s string
			if err := json.Unmarshal(data[:i+1], &s); err != nil {
				return "", nil, false
			}
			return s, data[i+1:], true
		}
	}
	return "", nil, false
}
