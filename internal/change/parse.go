package change

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/pgflo/pgflo/internal/event"
)

// parser scans one JSON document; every method leaves p.i after what it read.
type parser struct {
	data  []byte
	i     int
	cache *Cache
}

var errSyntax = errors.New("invalid JSON")

func (p *parser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) take(c byte) bool {
	p.ws()
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if !p.take(c) {
		return fmt.Errorf("%w: want %q at offset %d", errSyntax, c, p.i)
	}
	return nil
}

// rawString returns a JSON string token, quotes included. It jumps from
// quote to quote and checks the bytes between for escapes and control
// characters in one tight loop.
func (p *parser) rawString() ([]byte, error) {
	p.ws()
	if p.i >= len(p.data) || p.data[p.i] != '"' {
		return nil, fmt.Errorf("%w: want a string at offset %d", errSyntax, p.i)
	}
	start := p.i
	p.i++
	for {
		end := bytes.IndexByte(p.data[p.i:], '"')
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated string", errSyntax)
		}
		end += p.i
		special := indexSpecial(p.data[p.i:end])
		if special < 0 {
			p.i = end + 1
			return p.data[start:p.i], nil
		}
		special += p.i
		if p.data[special] < 0x20 {
			return nil, fmt.Errorf("%w: control character in string at offset %d", errSyntax, special)
		}
		// An escape: check it, then go on after it (an escaped quote is
		// not the end).
		p.i = special
		if p.i+1 >= len(p.data) {
			return nil, errSyntax
		}
		switch p.data[p.i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			p.i += 2
		case 'u':
			if p.i+6 > len(p.data) {
				return nil, errSyntax
			}
			for _, h := range p.data[p.i+2 : p.i+6] {
				if !isHex(h) {
					return nil, errSyntax
				}
			}
			p.i += 6
		default:
			return nil, fmt.Errorf("%w: bad escape at offset %d", errSyntax, p.i)
		}
	}
}

// indexSpecial returns the index of the first backslash or control
// character in b, or -1. It tests eight bytes at a time (SWAR: a byte of
// x below n shows in (x - n·0x01…) & ^x & 0x80…), then finds the byte.
func indexSpecial(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		y := x ^ (ones * '\\')
		if (x-ones*0x20)&^x&highs != 0 || (y-ones)&^y&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '\\' {
			return i
		}
	}
	return -1
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func (p *parser) str() (string, error) {
	raw, err := p.rawString()
	if err != nil {
		return "", err
	}
	return unquote(raw)
}

// value skips one JSON value and returns its raw bytes.
func (p *parser) value() ([]byte, error) {
	p.ws()
	if p.i >= len(p.data) {
		return nil, fmt.Errorf("%w: unexpected end", errSyntax)
	}
	start := p.i
	switch c := p.data[p.i]; {
	case c == '"':
		return p.rawString()
	case c == '{':
		p.i++
		if !p.take('}') {
			for {
				if _, err := p.rawString(); err != nil {
					return nil, err
				}
				if err := p.expect(':'); err != nil {
					return nil, err
				}
				if _, err := p.value(); err != nil {
					return nil, err
				}
				if p.take('}') {
					break
				}
				if err := p.expect(','); err != nil {
					return nil, err
				}
			}
		}
	case c == '[':
		p.i++
		if !p.take(']') {
			for {
				if _, err := p.value(); err != nil {
					return nil, err
				}
				if p.take(']') {
					break
				}
				if err := p.expect(','); err != nil {
					return nil, err
				}
			}
		}
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		if err := p.number(); err != nil {
			return nil, err
		}
	}
	return p.data[start:p.i], nil
}

func (p *parser) literal(word string) ([]byte, error) {
	if p.i+len(word) > len(p.data) || string(p.data[p.i:p.i+len(word)]) != word {
		return nil, fmt.Errorf("%w at offset %d", errSyntax, p.i)
	}
	p.i += len(word)
	return p.data[p.i-len(word) : p.i], nil
}

// number reads -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
func (p *parser) number() error {
	digits := func() int {
		n := 0
		for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	start := p.i
	if p.i < len(p.data) && p.data[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.data) && p.data[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return fmt.Errorf("%w: bad value at offset %d", errSyntax, start)
	}
	if p.i < len(p.data) && p.data[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return fmt.Errorf("%w: bad number at offset %d", errSyntax, start)
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return fmt.Errorf("%w: bad number at offset %d", errSyntax, start)
		}
	}
	return nil
}

// object calls member for each member of an object.
func (p *parser) object(member func(key []byte, start int) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	if p.take('}') {
		return nil
	}
	for {
		p.ws()
		start := p.i
		key, err := p.rawString()
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		if err := member(key, start); err != nil {
			return err
		}
		if p.take('}') {
			return nil
		}
		if err := p.expect(','); err != nil {
			return err
		}
	}
}

// array calls item for each element of an array.
func (p *parser) array(item func() error) error {
	if err := p.expect('['); err != nil {
		return err
	}
	if p.take(']') {
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.take(']') {
			return nil
		}
		if err := p.expect(','); err != nil {
			return err
		}
	}
}

func (p *parser) isNull() bool {
	p.ws()
	if p.i+4 <= len(p.data) && string(p.data[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// event reads the whole document.
func (p *parser) event() (*Event, error) {
	ev := &Event{raw: make([][]byte, 0, 6)}
	var seen uint16
	const (
		seenV = 1 << iota
		seenOp
		seenSchema
		seenTable
		seenColumns
		seenNew
		seenOld
		seenToast
	)
	err := p.object(func(key []byte, start int) error {
		var err error
		switch string(key) {
		case `"v"`:
			seen |= seenV
			raw, err := p.value()
			if err != nil {
				return err
			}
			if string(raw) != strconv.Itoa(event.Version) {
				return fmt.Errorf("unsupported version v=%s (this build reads v=%d)", raw, event.Version)
			}
		case `"op"`:
			seen |= seenOp
			var op string
			if op, err = p.str(); err != nil {
				return fmt.Errorf("field op: %w", err)
			}
			ev.Op = event.Op(op)
			if !ev.Op.Valid() {
				return fmt.Errorf("unknown op %q", op)
			}
		case `"schema"`:
			seen |= seenSchema
			if ev.Schema, err = p.name(); err != nil {
				return fmt.Errorf("field schema: %w", err)
			}
		case `"table"`:
			seen |= seenTable
			if ev.Table, err = p.name(); err != nil {
				return fmt.Errorf("field table: %w", err)
			}
		case `"typed"`:
			raw, err := p.value()
			if err != nil {
				return err
			}
			ev.Typed = string(raw) == "true"
		case `"columns"`:
			seen |= seenColumns
			p.ws()
			start := p.i
			if ev.columnsRead, err = p.columns(); err != nil {
				return fmt.Errorf("field columns: %w", err)
			}
			ev.columnsJSON = p.data[start:p.i]
			ev.Columns = ev.columnsRead
		case `"new"`:
			seen |= seenNew
			if ev.New, err = p.row(ev.columnsRead); err != nil {
				return fmt.Errorf("field new: %w", err)
			}
		case `"old"`:
			seen |= seenOld
			if ev.Old, err = p.row(ev.columnsRead); err != nil {
				return fmt.Errorf("field old: %w", err)
			}
		case `"unchanged_toast"`:
			seen |= seenToast
			ev.UnchangedToast = []string{}
			if err := p.array(func() error {
				name, err := p.str()
				ev.UnchangedToast = append(ev.UnchangedToast, name)
				return err
			}); err != nil {
				return fmt.Errorf("field unchanged_toast: %w", err)
			}
		default:
			if _, err := p.value(); err != nil {
				return fmt.Errorf("field %s: %w", key, err)
			}
			ev.raw = append(ev.raw, p.data[start:p.i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.data) {
		return nil, fmt.Errorf("%w: data after the event at offset %d", errSyntax, p.i)
	}
	if seen&seenV == 0 || seen&seenOp == 0 || seen&seenTable == 0 || seen&seenColumns == 0 {
		return nil, errors.New("missing one of the fields v, op, table, columns")
	}
	if ev.UnchangedToast == nil {
		ev.UnchangedToast = []string{}
	}
	if !ev.Typed {
		for _, row := range []Row{ev.New, ev.Old} {
			for _, f := range row {
				if f.Value[0] != '"' && !f.Null() {
					return nil, fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null", f.Name)
				}
			}
		}
	}
	return ev, nil
}

// name reads a string that many events repeat (a schema, a table).
func (p *parser) name() (string, error) {
	raw, err := p.rawString()
	if err != nil {
		return "", err
	}
	return p.cache.intern(raw)
}

// columns reads the columns array, from the cache when the same array was
// read before. The result is shared: the caller copies it before editing.
func (p *parser) columns() ([]event.Column, error) {
	p.ws()
	start := p.i
	if known, n, ok := p.cache.columns(p.data[start:]); ok {
		p.i += n
		return known, nil
	}
	// Not cached: the event's own copy, shared with no one.
	cols := []event.Column{}
	if err := p.array(func() error {
		col, err := p.column()
		cols = append(cols, col)
		return err
	}); err != nil {
		return nil, err
	}
	p.cache.addColumns(p.data[start:p.i], cols)
	return cols, nil
}

func (p *parser) column() (event.Column, error) {
	var col event.Column
	err := p.object(func(key []byte, _ int) error {
		var err error
		switch string(key) {
		case `"name"`:
			col.Name, err = p.str()
		case `"type"`:
			col.Type, err = p.str()
		case `"oid"`:
			var raw []byte
			if raw, err = p.value(); err == nil {
				var oid uint64
				oid, err = strconv.ParseUint(string(raw), 10, 32)
				col.OID = uint32(oid)
			}
		case `"key"`:
			var raw []byte
			raw, err = p.value()
			col.Key = string(raw) == "true"
		default:
			_, err = p.value()
		}
		return err
	})
	return col, err
}

// row reads a row object. Its names are the columns' names (in their
// order, usually), so they are taken from columns when they match.
func (p *parser) row(columns []event.Column) (Row, error) {
	if p.isNull() {
		return nil, nil
	}
	row := make(Row, 0, max(len(columns), 4))
	next := 0
	err := p.object(func(key []byte, _ int) error {
		inner := key[1 : len(key)-1]
		name, found := "", false
		for n := 0; n < len(columns) && !found; n++ {
			c := columns[(next+n)%len(columns)]
			if c.Name == string(inner) {
				name, found = c.Name, true
				next = (next + n + 1) % len(columns)
			}
		}
		var err error
		if !found || bytes.IndexByte(inner, '\\') >= 0 {
			if name, err = p.cache.intern(key); err != nil {
				return err
			}
		}
		value, err := p.value()
		if err != nil {
			return fmt.Errorf("column %q: %w", name, err)
		}
		row = append(row, Field{Name: name, Value: value, nameJSON: key})
		return nil
	})
	return row, err
}
