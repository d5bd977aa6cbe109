// Package event defines pgflo's change event, version 1: the JSON document that
// travels from pg_flo_replicator through JetStream to pg_flo_worker and the
// outputs. Its field names are a public contract (docs/event.md,
// docs/event.schema.json); this package is the only place that encodes them.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	buf = append(buf, `{"v":`...)
	buf = strconv.AppendInt(buf, int64(Version), 10)
	buf = append(buf, `,"op":`...)
	buf = appendString(buf, string(e.Op))
	buf = append(buf, `,"schema":`...)
	buf = appendString(buf, e.Schema)
	buf = append(buf, `,"table":`...)
	buf = appendString(buf, e.Table)
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

// AppendStrings appends a JSON array of strings (never null).
func AppendStrings(buf []byte, list []string) []byte {
	buf = append(buf, '[')
	for i, s := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, s)
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
		buf = appendString(buf, c.Name)
		buf = append(buf, `,"type":`...)
		buf = appendString(buf, c.Type)
		buf = append(buf, `,"oid":`...)
		buf = strconv.AppendUint(buf, uint64(c.OID), 10)
		if c.Key {
			buf = append(buf, `,"key":true`...)
		}
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

func (r Row) appendJSON(buf []byte) []byte {
	if r == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '{')
	for i, v := range r {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, v.Name)
		buf = append(buf, ':')
		if v.Null {
			buf = append(buf, "null"...)
		} else {
			buf = appendString(buf, v.Text)
		}
	}
	return append(buf, '}')
}

// MarshalJSON writes the row as a JSON object in column order.
func (r Row) MarshalJSON() ([]byte, error) {
	return r.appendJSON(nil), nil
}

// UnmarshalJSON reads a JSON object of text values (or nulls) keeping the
// member order, which is the row's column order.
func (r *Row) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*r = nil
		return nil
	}
	var members orderedObject
	if err := json.Unmarshal(data, &members); err != nil {
		return err
	}
	row := make(Row, 0, len(members))
	for _, m := range members {
		v := Value{Name: m.name}
		if string(m.raw) == "null" {
			v.Null = true
		} else if err := json.Unmarshal(m.raw, &v.Text); err != nil {
			return fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", m.name, err)
		}
		row = append(row, v)
	}
	*r = row
	return nil
}

// UnmarshalJSON reads an event's wire form and rejects other versions.
func (e *Event) UnmarshalJSON(data []byte) error {
	type plain Event
	var aux struct {
		plain
		LSN        string  `json:"lsn"`
		CommitLSN  string  `json:"commit_lsn"`
		CommitTime *string `json:"commit_time"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return fmt.Errorf("decode change event: %w", err)
	}
	ev := Event(aux.plain)
	if ev.V != Version {
		return fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", ev.V, Version)
	}
	if !ev.Op.Valid() {
		return fmt.Errorf("decode change event: unknown op %q", ev.Op)
	}
	var err error
	if ev.LSN, err = parseLSN(aux.LSN); err != nil {
		return fmt.Errorf("decode change event: field lsn: %w", err)
	}
	if ev.CommitLSN, err = parseLSN(aux.CommitLSN); err != nil {
		return fmt.Errorf("decode change event: field commit_lsn: %w", err)
	}
	if aux.CommitTime != nil {
		if ev.CommitTime, err = time.Parse(time.RFC3339Nano, *aux.CommitTime); err != nil {
			return fmt.Errorf("decode change event: field commit_time: %w", err)
		}
	}
	*e = ev
	return nil
}

func parseLSN(s string) (pglogrepl.LSN, error) {
	if s == "" {
		return 0, nil
	}
	return pglogrepl.ParseLSN(s)
}

// Decode parses one event from its wire form.
func Decode(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		// Syntax errors are found before UnmarshalJSON runs and lack its
		// context.
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("decode change event: %w", err)
		}
		return nil, err
	}
	return &e, nil
}
