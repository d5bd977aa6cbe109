package pgvalue

import (
	"strings"
	"sync/atomic"

	"github.com/pgflo/pgflo/internal/event"
)

// kind is how a type's text form is read and written.
type kind uint8

const (
	kindText kind = iota // kept as its text: a JSON string
	kindBool
	kindInt
	kindFloat
	kindNumeric
	kindBytea
	kindDate
	kindTime
	kindTimetz
	kindTimestamp
	kindTimestamptz
	kindInterval
	kindJSON
	kindJSONB
	kindArray
	kindRange
	kindMultirange
)

// typeInfo is what the codec knows about a column's type.
type typeInfo struct {
	kind kind
	// elem is the element type of an array, a range or a multirange.
	elem *typeInfo
	// delim separates array elements: ',' except for box (';').
	delim byte
	// verify makes Decode check that its result encodes back to the same
	// text, falling back to the text otherwise: for user types whose name
	// only suggests an array.
	verify bool
}

var (
	textType = &typeInfo{kind: kindText, delim: ','}

	scalarTypes = map[string]*typeInfo{}

	// rangeElems maps a built-in range type to its element type;
	// multirangeRanges a built-in multirange to its range type.
	rangeElems = map[string]string{
		"int4range": "int4", "int8range": "int8", "numrange": "numeric",
		"tsrange": "timestamp", "tstzrange": "timestamptz", "daterange": "date",
	}
	multirangeRanges = map[string]string{
		"int4multirange": "int4range", "int8multirange": "int8range", "nummultirange": "numrange",
		"tsmultirange": "tsrange", "tstzmultirange": "tstzrange", "datemultirange": "daterange",
	}

	builtinTypes = map[string]*typeInfo{}
	arrayTypes   = map[string]*typeInfo{}
	userArray    = &typeInfo{kind: kindArray, elem: textType, delim: ',', verify: true}
	textArray    = &typeInfo{kind: kindArray, elem: textType, delim: ','}
)

func init() {
	for k, names := range map[kind][]string{
		kindBool:        {"bool"},
		kindInt:         {"int2", "int4", "int8", "oid", "xid", "xid8", "cid"},
		kindFloat:       {"float4", "float8"},
		kindNumeric:     {"numeric"},
		kindBytea:       {"bytea"},
		kindDate:        {"date"},
		kindTime:        {"time"},
		kindTimetz:      {"timetz"},
		kindTimestamp:   {"timestamp"},
		kindTimestamptz: {"timestamptz"},
		kindInterval:    {"interval"},
		kindJSON:        {"json"},
		kindJSONB:       {"jsonb"},
	} {
		for _, name := range names {
			scalarTypes[name] = &typeInfo{kind: k, delim: ','}
		}
	}
	for name, t := range scalarTypes {
		builtinTypes[name] = t
	}
	for name, elem := range rangeElems {
		builtinTypes[name] = &typeInfo{kind: kindRange, elem: scalarTypes[elem], delim: ','}
	}
	for name, rng := range multirangeRanges {
		builtinTypes[name] = &typeInfo{kind: kindMultirange, elem: builtinTypes[rng], delim: ','}
	}
	builtinTypes["box"] = &typeInfo{kind: kindText, delim: ';'}
	for name, t := range builtinTypes {
		arrayTypes["_"+name] = &typeInfo{kind: kindArray, elem: t, delim: t.delim}
	}
}

// lookup returns how to read a column's values. Built-in types (OID below
// 16384, or no OID) are known by name; user types (enums, domains,
// composites, extension types) are text, since the event does not say what
// they are built on, and their arrays are arrays of text.
func lookup(col event.Column) *typeInfo {
	if col.OID != 0 && col.OID < FirstNormalOID {
		// A built-in OID always names the same type: remember it (with
		// its name, since an event could pair them wrongly).
		if known := builtinByOID[col.OID].Load(); known != nil && known.name == col.Type {
			return known.info
		}
		t := lookupName(col)
		builtinByOID[col.OID].Store(&namedType{name: col.Type, info: t})
		return t
	}
	if col.OID == 0 {
		return lookupName(col)
	}
	if strings.HasPrefix(col.Type, "_") {
		return userArray
	}
	return textType
}

// builtinByOID caches lookup for built-in OIDs.
var builtinByOID [FirstNormalOID]atomic.Pointer[namedType]

type namedType struct {
	name string
	info *typeInfo
}

// lookupName finds a built-in type by name.
func lookupName(col event.Column) *typeInfo {
	{
		if t, ok := builtinTypes[col.Type]; ok {
			return t
		}
		if t, ok := arrayTypes[col.Type]; ok {
			return t
		}
		if strings.HasPrefix(col.Type, "_") {
			return textArray
		}
		return textType
	}
}
