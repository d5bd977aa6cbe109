// Package event defines pgflo's change event, version 1: the JSON document that
// travels from pg_flo_replicator through JetStream to pg_flo_worker and the
// outputs. Its field names are a public contract (docs/event.md,
// docs/event.schema.json); this package is the only place that encodes and
// decodes them: Event.AppendJSON and RawEvent.AppendJSON write it, Decoder
// reads it (as text values for the outputs, as raw JSON values for the
// processors) by one rule, stated in decode.go.
package event

import (
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
)

// Version is the value of the "v" field this package writes. Readers reject
// other versions so a format change can never be misread silently.
const Version = 1

// Op is the kind of change an event carries.
type Op string

// The operations an event can carry. Snapshot rows are Insert with Snapshot set.
const (
	Insert   Op = "INSERT"
	Update   Op = "UPDATE"
	Delete   Op = "DELETE"
	Truncate Op = "TRUNCATE"
	DDL      Op = "DDL"
)

// Valid reports whether op is one of the operations of version 1.
func (op Op) Valid() bool {
	switch op {
	case Insert, Update, Delete, Truncate, DDL:
		return true
	}
	return false
}

// Benthos metadata keys set on every message that carries an event, so stock
// processors can route without parsing the body.
const (
	MetaOp     = "pg_flo_op"
	MetaSchema = "pg_flo_schema"
	MetaTable  = "pg_flo_table"
	MetaLSN    = "pg_flo_lsn"
	// MetaTx names the unit an event belongs to (its transaction's commit LSN
	// for streamed changes) and MetaTxPos its 0-based position in it. Together
	// they identify a change across replays, which is what JetStream
	// de-duplication ids are derived from.
	MetaTx    = "pg_flo_tx"
	MetaTxPos = "pg_flo_tx_pos"
	// MetaPackRows marks a message that holds a pack of snapshot rows
	// (internal/copypack) instead of one event: its value is the decimal
	// number of rows, and pg_flo_tx_pos is the position of the first one.
	MetaPackRows = "pg_flo_pack_rows"
	// MetaSourceSchema and MetaSourceTable name the table on the source
	// when routing sent the event to another one (pg_flo_route sets them):
	// schema sync reads the definition from there.
	MetaSourceSchema = "pg_flo_source_schema"
	MetaSourceTable  = "pg_flo_source_table"
	// MetaPartition is the partition of a partitioned group an event was
	// read from (pg_flo_worker sets it); pg_flo_postgres keeps a progress
	// row per partition.
	MetaPartition = "pg_flo_partition"
	// MetaKeyHash is the partitioning hash of the row a change concerns
	// (its key before the change, in decimal; see internal/partition), and
	// MetaNewKeyHash that of its new key when an UPDATE changed it:
	// pg_flo_replicator sets them so a partitioned pg_flo_jetstream routes
	// the change without decoding it.
	MetaKeyHash    = "pg_flo_key_hash"
	MetaNewKeyHash = "pg_flo_new_key_hash"
)

// A DDL event's new row holds the statement as the source executed it and
// its command tag, in these columns.
const (
	DDLCommandColumn = "ddl_command"
	DDLTagColumn     = "command_tag"
)

// Column describes one column of the event's table.
type Column struct {
	Name string `json:"name"`
	// Type is pg_type.typname of the column's type ("int8", "text"); arrays
	// carry the array type's name ("_int4").
	Type string `json:"type"`
	OID  uint32 `json:"oid"`
	// Key marks the columns of the table's replica identity.
	Key bool `json:"key,omitempty"`
}

// Value is one column's value in PostgreSQL's text output form. Null marks SQL
// NULL, which is JSON null on the wire.
type Value struct {
	Name string
	Text string
	Null bool
}

// Row is an ordered set of column values. On the wire it is a JSON object
// whose members keep the row's column order.
type Row []Value

// Get returns the value of the named column and whether the row has it.
func (r Row) Get(name string) (Value, bool) {
	for _, v := range r {
		if v.Name == name {
			return v, true
		}
	}
	return Value{}, false
}

// Event is one row change (or a TRUNCATE / DDL) of the source database.
type Event struct {
	V      int    `json:"v"`
	Op     Op     `json:"op"`
	Schema string `json:"schema"`
	Table  string `json:"table"`
	// LSN is the WAL position of the change itself; CommitLSN that of its
	// transaction's commit record. Snapshot rows carry the slot's consistent
	// point in both.
	LSN        pglogrepl.LSN `json:"lsn"`
	CommitLSN  pglogrepl.LSN `json:"commit_lsn"`
	Xid        uint32        `json:"xid"`
	CommitTime time.Time     `json:"commit_time"`
	Snapshot   bool          `json:"snapshot"`
	Columns    []Column      `json:"columns"`
	// New is the row after an INSERT or UPDATE; nil otherwise. Columns listed
	// in UnchangedToast are absent from it.
	New Row `json:"new"`
	// Old is the replica-identity key of the row before an UPDATE or DELETE,
	// or the whole old row for REPLICA IDENTITY FULL tables.
	Old Row `json:"old"`
	// UnchangedToast names the columns whose (TOASTed) value did not change
	// in an UPDATE and was therefore not sent by PostgreSQL.
	UnchangedToast []string `json:"unchanged_toast"`
	// Encoded, when set, holds the JSON of a column list: AppendJSON copies
	// it while Columns is still that very list (a producer of many events
	// of one table encodes its columns once, see EncodeColumns).
	Encoded *EncodedColumns `json:"-"`
	// EncodedCommitTime, when set, holds the JSON of a commit time:
	// AppendJSON copies it while CommitTime is still that instant (the
	// events of a transaction share it, see EncodeTime).
	EncodedCommitTime *EncodedTime `json:"-"`
}

// EncodedTime is a commit time with its JSON string.
type EncodedTime struct {
	t    time.Time
	json []byte
}

// EncodeTime encodes t once, for Event.EncodedCommitTime.
func EncodeTime(t time.Time) *EncodedTime {
	return &EncodedTime{t: t, json: appendTime(nil, t)}
}

// of returns the JSON of t if it is the encoded instant.
func (c *EncodedTime) of(t time.Time) ([]byte, bool) {
	if c == nil || !c.t.Equal(t) {
		return nil, false
	}
	return c.json, true
}

// appendTime appends t as a JSON string, in UTC with microseconds.
func appendTime(buf []byte, t time.Time) []byte {
	buf = append(buf, '"')
	buf = t.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000000Z07:00")
	return append(buf, '"')
}

// EncodedColumns is a column list with its JSON array.
type EncodedColumns struct {
	columns []Column
	json    []byte
}

// EncodeColumns encodes cols once, for Event.Encoded. The list must not be
// changed afterwards (replace it instead).
func EncodeColumns(cols []Column) *EncodedColumns {
	return &EncodedColumns{columns: cols, json: AppendColumns(nil, cols)}
}

// of returns the JSON of cols if it is the encoded list itself.
func (c *EncodedColumns) of(cols []Column) ([]byte, bool) {
	if c == nil || len(cols) != len(c.columns) || len(cols) == 0 || &cols[0] != &c.columns[0] {
		return nil, false
	}
	return c.json, true
}

// MarshalJSON writes the event in its wire form.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 512)), nil
}

// AppendJSON appends the event's wire form to buf. It is hand-written because
// encoding is on the replicator's hot path; the field order (v, op, schema,
// table, lsn first) lets Peek read the routing fields without a full parse.
func (e *Event) AppendJSON(buf []byte) []byte {
	buf = appendHead(buf, e.Op, e.Schema, e.Table)
	buf = append(buf, `,"lsn":"`...)
	buf = AppendLSN(buf, e.LSN)
	buf = append(buf, `","commit_lsn":"`...)
	buf = AppendLSN(buf, e.CommitLSN)
	buf = append(buf, `","xid":`...)
	buf = strconv.AppendUint(buf, uint64(e.Xid), 10)
	buf = append(buf, `,"commit_time":`...)
	if e.CommitTime.IsZero() {
		buf = append(buf, `null`...)
	} else if t, ok := e.EncodedCommitTime.of(e.CommitTime); ok {
		buf = append(buf, t...)
	} else {
		buf = appendTime(buf, e.CommitTime)
	}
	buf = append(buf, `,"snapshot":`...)
	buf = strconv.AppendBool(buf, e.Snapshot)
	buf = append(buf, `,"columns":`...)
	if cols, ok := e.Encoded.of(e.Columns); ok {
		buf = append(buf, cols...)
	} else {
		buf = AppendColumns(buf, e.Columns)
	}
	buf = append(buf, `,"new":`...)
	buf = e.New.appendJSON(buf)
	buf = append(buf, `,"old":`...)
	buf = e.Old.appendJSON(buf)
	buf = append(buf, `,"unchanged_toast":`...)
	buf = AppendStrings(buf, e.UnchangedToast)
	return append(buf, '}')
}

// appendHead opens an event's wire form with the members Peek reads:
// v, op, schema, table.
func appendHead(buf []byte, op Op, schema, table string) []byte {
	buf = append(buf, `{"v":`...)
	buf = strconv.AppendInt(buf, int64(Version), 10)
	buf = append(buf, `,"op":`...)
	buf = AppendJSONString(buf, string(op))
	buf = append(buf, `,"schema":`...)
	buf = AppendJSONString(buf, schema)
	buf = append(buf, `,"table":`...)
	return AppendJSONString(buf, table)
}

// AppendStrings appends a JSON array of strings (never null).
func AppendStrings(buf []byte, list []string) []byte {
	buf = append(buf, '[')
	for i, s := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = AppendJSONString(buf, s)
	}
	return append(buf, ']')
}

// AppendColumns appends the JSON array of a column list, as events carry it.
func AppendColumns(buf []byte, cols []Column) []byte {
	buf = append(buf, '[')
	for i, c := range cols {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":`...)
		buf = AppendJSONString(buf, c.Name)
		buf = append(buf, `,"type":`...)
		buf = AppendJSONString(buf, c.Type)
		buf = append(buf, `,"oid":`...)
		buf = strconv.AppendUint(buf, uint64(c.OID), 10)
		if c.Key {
			buf = append(buf, `,"key":true`...)
		}
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// appendJSON writes the row as a JSON object in column order (null for
// nil). It is RawRow.appendJSON for text values; the two are kept apart
// rather than generic, as a call per value through a generic's dictionary
// costs the replicator's encoding several percent.
func (r Row) appendJSON(buf []byte) []byte {
	if r == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '{')
	for i, v := range r {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = AppendJSONString(buf, v.Name)
		buf = append(buf, ':')
		if v.Null {
			buf = append(buf, "null"...)
		} else {
			buf = AppendJSONString(buf, v.Text)
		}
	}
	return append(buf, '}')
}

// MarshalJSON writes the row as a JSON object in column order.
func (r Row) MarshalJSON() ([]byte, error) {
	return r.appendJSON(nil), nil
}
