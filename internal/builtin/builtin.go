// Package builtin holds what pgflo's own readers and writers of built-in
// PostgreSQL types' binary forms share (internal/copybin, internal/bintext):
// the type OIDs, which come from pg_type.dat and are the same on every
// server and version (so a column's type can be matched across servers by
// OID alone), and the constants of the binary forms.
package builtin

const (
	Bool        = 16
	Bytea       = 17
	Int8        = 20
	Int2        = 21
	Int4        = 23
	Text        = 25
	JSON        = 114
	Float4      = 700
	Float8      = 701
	Bpchar      = 1042
	Varchar     = 1043
	Date        = 1082
	Time        = 1083
	Timestamp   = 1114
	Timestamptz = 1184
	Numeric     = 1700
	UUID        = 2950
	JSONB       = 3802
)

// FirstNormal is where the OIDs of objects created in a database start
// (PostgreSQL's FirstNormalObjectId): below it, a type is built in, the
// same type with the same binary form on every server.
const FirstNormal = 16384

// ArrayElems maps the array types of the types above to their element
// types (pg_type.dat's array_type_oid). Read only.
var ArrayElems = map[uint32]uint32{
	1000: Bool,
	1001: Bytea,
	1005: Int2,
	1007: Int4,
	1016: Int8,
	1009: Text,
	1014: Bpchar,
	1015: Varchar,
	199:  JSON,
	3807: JSONB,
	1021: Float4,
	1022: Float8,
	1231: Numeric,
	2951: UUID,
	1182: Date,
	1183: Time,
	1115: Timestamp,
	1185: Timestamptz,
}

// MaxDims is the most dimensions an array has (the server's MAXDIM).
const MaxDims = 6

// numeric's binary form: int16 ndigits, int16 weight (the power of 10000 of
// the first digit), uint16 sign, int16 display scale, then ndigits
// base-10000 digits. The sign words:
const (
	NumericPos  = 0x0000
	NumericNeg  = 0x4000
	NumericNaN  = 0xC000
	NumericPInf = 0xD000
	NumericNInf = 0xF000
	// NumericMaxScale is the largest display scale (NUMERIC_DSCALE_MAX).
	NumericMaxScale = 0x3FFF
)
