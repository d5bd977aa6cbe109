package pgvalue

// The built-in types' OIDs, from pg_type.dat: the same on every server and
// version, so a column's type can be matched across servers by OID alone.
const (
	BoolOID        = 16
	ByteaOID       = 17
	Int8OID        = 20
	Int2OID        = 21
	Int4OID        = 23
	TextOID        = 25
	JSONOID        = 114
	Float4OID      = 700
	Float8OID      = 701
	BpcharOID      = 1042
	VarcharOID     = 1043
	DateOID        = 1082
	TimeOID        = 1083
	TimestampOID   = 1114
	TimestamptzOID = 1184
	NumericOID     = 1700
	UUIDOID        = 2950
	JSONBOID       = 3802
)

// FirstNormalOID is where the OIDs of objects created in a database start
// (PostgreSQL's FirstNormalObjectId): below it, a type is built in, the
// same type with the same name and binary form on every server.
const FirstNormalOID = 16384

// ArrayElems maps the array types of the types above to their element
// types (pg_type.dat's array_type_oid). Read only.
var ArrayElems = map[uint32]uint32{
	1000: BoolOID,
	1001: ByteaOID,
	1005: Int2OID,
	1007: Int4OID,
	1016: Int8OID,
	1009: TextOID,
	1014: BpcharOID,
	1015: VarcharOID,
	199:  JSONOID,
	3807: JSONBOID,
	1021: Float4OID,
	1022: Float8OID,
	1231: NumericOID,
	2951: UUIDOID,
	1182: DateOID,
	1183: TimeOID,
	1115: TimestampOID,
	1185: TimestamptzOID,
}

// maxDims is the most dimensions an array has (the server's MAXDIM).
const maxDims = 6

// binaryKind is how a value of a built-in type is read and written in its
// binary form, in both directions: a switch on it is cheaper per value than
// a call through a function value.
type binaryKind uint8

const (
	binBool binaryKind = iota
	binBytea
	binInt2
	binInt4
	binInt8
	binText // text, varchar, bpchar and json: their binary form is their text
	binJSONB
	binFloat4
	binFloat8
	binNumeric
	binUUID
	binDate
	binTime
	binTimestamp
	binTimestamptz
	binArray
)

// binaryKinds are the types whose binary form is converted here, to and
// from text. Left out on purpose: types whose binary receive function reads
// differently from their text input (name rejects what it would truncate,
// xml honours an encoding declaration), and types whose text needs a
// general parser (interval, timetz, network, geometric, ranges: rarely what
// a snapshot's volume is made of).
var binaryKinds = map[uint32]binaryKind{
	BoolOID:        binBool,
	ByteaOID:       binBytea,
	Int2OID:        binInt2,
	Int4OID:        binInt4,
	Int8OID:        binInt8,
	TextOID:        binText,
	BpcharOID:      binText,
	VarcharOID:     binText,
	JSONOID:        binText,
	JSONBOID:       binJSONB,
	Float4OID:      binFloat4,
	Float8OID:      binFloat8,
	NumericOID:     binNumeric,
	UUIDOID:        binUUID,
	DateOID:        binDate,
	TimeOID:        binTime,
	TimestampOID:   binTimestamp,
	TimestamptzOID: binTimestamptz,
}

// column is how one column's binary values are read and written.
type column struct {
	kind    binaryKind
	elem    binaryKind // an array's element kind
	elemOID uint32     // an array's element type, which its binary data names
	// escapes: an array's text can hold bytes COPY escapes (a quoted
	// element's backslashes, a text element's control characters).
	escapes bool
}

// columnFor returns the column of type oid; ok is false for a type without
// a binary conversion.
func columnFor(oid uint32) (column, bool) {
	if k, ok := binaryKinds[oid]; ok {
		return column{kind: k}, true
	}
	if elemOID, ok := ArrayElems[oid]; ok {
		k := binaryKinds[elemOID]
		return column{kind: binArray, elem: k, elemOID: elemOID, escapes: k == binText || k == binJSONB || k == binBytea}, true
	}
	return column{}, false
}

// columnsFor returns the columns of types oids; ok is false, with the
// index of the first, when some type has no binary conversion.
func columnsFor(oids []uint32) (cols []column, unsupported int, ok bool) {
	cols = make([]column, len(oids))
	for i, oid := range oids {
		if cols[i], ok = columnFor(oid); !ok {
			return nil, i, false
		}
	}
	return cols, -1, true
}

// numeric's binary form: int16 ndigits, int16 weight (the power of 10000 of
// the first digit), uint16 sign, int16 display scale, then ndigits
// base-10000 digits. The sign words:
const (
	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
	// numericMaxScale is the largest display scale (NUMERIC_DSCALE_MAX).
	numericMaxScale = 0x3FFF
)
