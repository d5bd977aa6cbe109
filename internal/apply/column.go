package apply

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// textColumn is one column of a set statement's rows: a text[] parameter,
// NULL elements included. pgx would encode a []pgtype.Text element by element
// through reflection (an allocation each, and a fifth of the apply's CPU);
// the connection's text[] codec writes a textColumn straight into the binary
// array format instead (see useColumnCodec).
type textColumn []pgtype.Text

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
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, uint32(hasNull))
	buf = binary.BigEndian.AppendUint32(buf, pgtype.TextOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(c)))
	buf = binary.BigEndian.AppendUint32(buf, 1)
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

// useColumnCodec makes a connection's type map encode textColumn values of
// text[] parameters directly; every other value goes to pgx's own codec.
func useColumnCodec(m *pgtype.Map) {
	t, ok := m.TypeForOID(pgtype.TextArrayOID)
	if !ok {
		return
	}
	m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: columnCodec{t.Codec}})
}

// columnCodec is pgx's text[] codec with a direct plan for textColumn.
type columnCodec struct{ pgtype.Codec }

func (c columnCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(textColumn); ok && format == pgtype.BinaryFormatCode {
		return columnPlan{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type columnPlan struct{}

func (columnPlan) Encode(value any, buf []byte) ([]byte, error) {
	return value.(textColumn).appendBinary(buf)
}
