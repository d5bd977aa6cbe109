package apply

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// A set statement takes one array parameter per column of its rows. Columns
// of the types in typedParams go as arrays of their own type (typedColumn),
// converted from the events' text here by internal/pgvalue, so the target's
// server reads each value with the type's binary receive function instead of
// its text input: parsing numerics, timestamps, uuids and bytea moves off
// the target, which bounds a catch-up. Every other column goes as a text[]
// (textColumn) and is cast by the server, as are values the conversion
// declines (any form but the one the type's output function writes).

// typedParams are the types sent as typed arrays. Left as text: the
// text-like types (their binary form is their text, and char(n)/varchar(n)
// semantics stay the server's) and json/jsonb (the server parses the JSON
// text either way).
var typedParams = map[uint32]bool{
	pgvalue.BoolOID: true, pgvalue.ByteaOID: true,
	pgvalue.Int2OID: true, pgvalue.Int4OID: true, pgvalue.Int8OID: true,
	pgvalue.Float4OID: true, pgvalue.Float8OID: true, pgvalue.NumericOID: true,
	pgvalue.UUIDOID: true, pgvalue.DateOID: true, pgvalue.TimeOID: true,
	pgvalue.TimestampOID: true, pgvalue.TimestamptzOID: true,
}

// setParams builds a set statement's array parameters, one per unnest
// column, in one pass over its rows: entry after entry, every column's value
// appended to its array (column after column would walk all the rows'
// memory once per column, a cache miss at every value).
type setParams struct {
	cols   []paramColumn
	binary bool // typed arrays for the types in typedParams
}

// paramColumn is one parameter being built: a typed array while its type
// converts and every value did, else a text[].
type paramColumn struct {
	key, val int // the value is entry.key[key], or entry.vals[val] when key < 0
	typed    bool
	conv     pgvalue.ScalarToBinary
	elem     uint32
	arr      []byte
	hasNull  bool
	text     textColumn
}

func newSetParams(n int, binary bool) *setParams {
	return &setParams{cols: make([]paramColumn, 0, n), binary: binary}
}

// addKey adds the parameter of the rows' j-th key value, of column c.
func (p *setParams) addKey(c *Column, j int) { p.add(c, j, -1) }

// addValue adds the parameter of the rows' values of column index i.
func (p *setParams) addValue(c *Column, i int) { p.add(c, -1, i) }

func (p *setParams) add(c *Column, key, val int) {
	pc := paramColumn{key: key, val: val, elem: c.TypeOID}
	if p.binary && typedParams[c.TypeOID] {
		pc.conv, pc.typed = pgvalue.ScalarToBinaryFor(c.TypeOID)
	}
	p.cols = append(p.cols, pc)
}

func (pc *paramColumn) value(e *entry) event.Value {
	if pc.key >= 0 {
		return e.key[pc.key]
	}
	return e.vals[pc.val]
}

// build returns the parameters of rows, and which of them are typed.
func (p *setParams) build(rows []*entry) (args []any, typed []bool) {
	if len(rows) > math.MaxInt32 {
		for i := range p.cols {
			p.cols[i].typed = false
		}
	}
	for i := range p.cols {
		pc := &p.cols[i]
		if pc.typed {
			pc.arr = appendArrayHeader(make([]byte, 0, 20+12*len(rows)), 0, pc.elem, len(rows))
		} else {
			pc.text = make(textColumn, 0, len(rows))
		}
	}
	for r, e := range rows {
		for i := range p.cols {
			pc := &p.cols[i]
			v := pc.value(e)
			if pc.typed {
				if pc.appendTyped(v) {
					continue
				}
				// Declined: the column goes as text, the rows before too.
				pc.typed, pc.arr = false, nil
				pc.text = make(textColumn, 0, len(rows))
				for _, before := range rows[:r] {
					pc.text = append(pc.text, text(pc.value(before)))
				}
			}
			pc.text = append(pc.text, text(v))
		}
	}
	args, typed = make([]any, len(p.cols)), make([]bool, len(p.cols))
	for i := range p.cols {
		pc := &p.cols[i]
		if typed[i] = pc.typed; pc.typed {
			if pc.hasNull {
				binary.BigEndian.PutUint32(pc.arr[4:], 1)
			}
			args[i] = typedColumn(pc.arr)
		} else {
			args[i] = pc.text
		}
	}
	return args, typed
}

// appendTyped appends v's binary form to the typed array; false when the
// conversion declines it.
func (pc *paramColumn) appendTyped(v event.Value) bool {
	if v.Null {
		pc.hasNull = true
		pc.arr = binary.BigEndian.AppendUint32(pc.arr, math.MaxUint32) // -1
		return true
	}
	at := len(pc.arr)
	arr, err := pc.conv.Append(append(pc.arr, 0, 0, 0, 0), v.Text)
	if err != nil || len(arr)-at-4 > math.MaxInt32 {
		return false
	}
	binary.BigEndian.PutUint32(arr[at:], uint32(len(arr)-at-4))
	pc.arr = arr
	return true
}

// textColumn is one column of a set statement's rows: a text[] parameter,
// NULL elements included. pgx would encode a []pgtype.Text element by element
// through reflection (an allocation each, and a fifth of the apply's CPU);
// the connection's text[] codec writes a textColumn straight into the binary
// array format instead (see useColumnCodec).
type textColumn []pgtype.Text

func text(v event.Value) pgtype.Text { return pgtype.Text{String: v.Text, Valid: !v.Null} }

// appendBinary appends the column in PostgreSQL's binary array format, as
// pgx writes it (the empty array included): one dimension from 1, element
// type text, each element as its length (-1 for NULL) and bytes.
func (c textColumn) appendBinary(buf []byte) ([]byte, error) {
	if len(c) > math.MaxInt32 {
		return nil, fmt.Errorf("a text[] of %d elements is too long", len(c))
	}
	hasNull, size := int32(0), 20+4*len(c)
	for _, v := range c {
		if !v.Valid {
			hasNull = 1
			continue
		}
		if len(v.String) > math.MaxInt32 {
			return nil, fmt.Errorf("a text value of %d bytes is too long", len(v.String))
		}
		size += len(v.String)
	}
	buf = slices.Grow(buf, size)
	buf = appendArrayHeader(buf, hasNull, pgtype.TextOID, len(c))
	for _, v := range c {
		if !v.Valid {
			buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v.String)))
		buf = append(buf, v.String...)
	}
	return buf, nil
}

// appendArrayHeader appends the header of a one-dimensional array of n
// elements of type elem, indexed from 1.
func appendArrayHeader(buf []byte, hasNull int32, elem uint32, n int) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, uint32(hasNull))
	buf = binary.BigEndian.AppendUint32(buf, elem)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1)
}

// typedColumn is a column of a set statement's rows in PostgreSQL's binary
// array format, its elements of the column's type: built ahead, written as
// it is.
type typedColumn []byte

// useColumnCodec makes a connection's type map encode textColumn values of
// text[] parameters, and typedColumn values of the typed arrays, directly;
// every other value goes to pgx's own codec.
func useColumnCodec(m *pgtype.Map) {
	for arrayOID, elem := range pgvalue.ArrayElems {
		if elem != pgvalue.TextOID && !typedParams[elem] {
			continue
		}
		t, ok := m.TypeForOID(arrayOID)
		if !ok {
			continue
		}
		m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: columnCodec{t.Codec}})
	}
}

// columnCodec is pgx's codec of an array type with a direct plan for
// textColumn and typedColumn.
type columnCodec struct{ pgtype.Codec }

func (c columnCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case textColumn, typedColumn:
			return columnPlan{}
		}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type columnPlan struct{}

func (columnPlan) Encode(value any, buf []byte) ([]byte, error) {
	switch v := value.(type) {
	case textColumn:
		return v.appendBinary(buf)
	case typedColumn:
		return append(buf, v...), nil
	}
	return nil, fmt.Errorf("internal error: column plan for a %T", value)
}
