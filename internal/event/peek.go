package event

import "fmt"

// Head holds the routing fields of an event: what Benthos metadata carries.
type Head struct {
	Op     Op
	Schema string
	Table  string
	LSN    string
}

// Peek reads an event's routing fields: its members up to the last of v,
// op, schema, table and lsn, which events written by AppendJSON carry
// first, by the rule of Decoder. It checks v and op, not the rest of the
// document, and reads a member given twice at its first.
func Peek(data []byte) (Head, error) {
	if h, ok := peekOurs(data); ok {
		return h, nil
	}
	var h Head
	s := scanner{data: data}
	s.ws()
	if !s.consume('{') {
		return h, s.fail("expected a JSON object")
	}
	s.ws()
	v := uint32(0)
	const all = 1<<5 - 1
	for seen := 0; seen != all && !s.consume('}'); {
		key, err := s.key()
		if err != nil {
			return h, err
		}
		var text string
		switch string(key) {
		case "v":
			v, err = s.uint32()
			seen |= 1
		case "op":
			text, err = s.str()
			h.Op, seen = Op(text), seen|2
		case "schema":
			h.Schema, err = s.str()
			seen |= 4
		case "table":
			h.Table, err = s.str()
			seen |= 8
		case "lsn":
			h.LSN, err = s.str()
			seen |= 16
		default:
			_, err = s.value()
		}
		if err != nil {
			return h, fmt.Errorf("decode change event: field %s: %w", key, err)
		}
		if err := s.next(); err != nil {
			return h, err
		}
		if s.end() {
			break
		}
		s.ws()
	}
	if v != Version {
		return Head{}, fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", v, Version)
	}
	if !h.Op.Valid() {
		return Head{}, fmt.Errorf("decode change event: unknown op %q", h.Op)
	}
	return h, nil
}

// peekOurs reads the routing members where AppendJSON writes them, at the
// start without whitespace, and reports false for any other layout: most
// events are pgflo's own, and matching their bytes costs half of reading
// member by member.
func peekOurs(data []byte) (h Head, ok bool) {
	s := scanner{data: data}
	member := func(prefix string) (string, bool) {
		if !s.literal(prefix) {
			return "", false
		}
		raw, plain, err := s.span()
		if err != nil || !plain {
			return "", false // escapes: read member by member
		}
		return string(raw), true
	}
	var op string
	if op, ok = member(`{"v":1,"op":`); !ok {
		return h, false
	}
	if h.Op = Op(op); !h.Op.Valid() {
		return h, false
	}
	if h.Schema, ok = member(`,"schema":`); !ok {
		return h, false
	}
	if h.Table, ok = member(`,"table":`); !ok {
		return h, false
	}
	h.LSN, ok = member(`,"lsn":`)
	return h, ok
}
