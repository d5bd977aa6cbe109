// Package replication is pgflo's engine for reading a PostgreSQL logical
// replication slot: it checks and prepares the source (publication, slot),
// streams pgoutput from the slot, turns it into change events and advances
// the slot only to what the caller has acknowledged. It knows nothing about
// Benthos; inputs/replicator.go adapts it.
package replication

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// relation is what pgoutput told us about a table: its name and columns as
// they are at this point of the stream (a new Relation message replaces it
// after DDL).
type relation struct {
	schema, table string
	columns       []event.Column
	encoded       *event.EncodedColumns // columns' JSON, encoded once
	keyIndexes    []int
}

// Decoder turns pgoutput messages into change events. It holds the relation
// and type caches and the transaction being decoded; it does no I/O, so it is
// tested with hand-built messages.
type Decoder struct {
	relations map[uint32]*relation
	typeNames map[uint32]string

	// ddlPrefix, when set, is the prefix of the logical messages carrying
	// captured DDL (see ddl.go).
	ddlPrefix string

	// scratch: see Scratch. The event, rows and result slice reused.
	scratch        bool
	ev             event.Event
	newRow, oldRow event.Row
	toast          []string
	one            [1]*event.Event

	inTx       bool
	xid        uint32
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	// commitTimeJSON is commitTime encoded once for the transaction's events.
	commitTimeJSON *event.EncodedTime
	pos            int
}

// NewDecoder returns a decoder that names column types from typeNames (OID →
// pg_type.typname, loaded from the source); types pgoutput announces with a
// Type message are added as they come.
func NewDecoder(typeNames map[uint32]string) *Decoder {
	names := make(map[uint32]string, len(typeNames))
	for oid, name := range typeNames {
		names[oid] = name
	}
	return &Decoder{relations: map[uint32]*relation{}, typeNames: names}
}

// Scratch makes the decoder reuse the event of an Insert, Update or Delete
// message, its rows and its result for the next message, with values
// pointing into the message's data rather than copied: such an event is
// valid only until the next Decode and while data is not reused. The
// stream encodes each event as soon as it is decoded, so the allocations
// (four per change, half the decoder's time) buy nothing there.
func (d *Decoder) Scratch() { d.scratch = true }

// TrackDDL makes the decoder turn logical messages with prefix into DDL events.
func (d *Decoder) TrackDDL(prefix string) { d.ddlPrefix = prefix }

// TxState describes the transaction the decoder is in.
type TxState struct {
	InTx      bool
	Xid       uint32
	CommitLSN pglogrepl.LSN
	// CommitTime is when the transaction committed on the source.
	CommitTime time.Time
	// Pos is the position the next event of the transaction will get.
	Pos int
}

// Tx reports the decoder's transaction state.
func (d *Decoder) Tx() TxState {
	return TxState{InTx: d.inTx, Xid: d.xid, CommitLSN: d.commitLSN, CommitTime: d.commitTime, Pos: d.pos}
}

// Result is what one pgoutput message produced.
type Result struct {
	// Events are the change events, positioned from Tx().Pos before the call.
	Events []*event.Event
	// Begin and Commit mark transaction boundaries; EndLSN is the end of the
	// commit record: the position the slot may be confirmed to once every
	// event of the transaction is acknowledged.
	Begin, Commit bool
	EndLSN        pglogrepl.LSN
}

// Decode handles one pgoutput message whose XLogData started at walStart.
func (d *Decoder) Decode(walStart pglogrepl.LSN, data []byte) (Result, error) {
	if len(data) > 0 {
		switch data[0] {
		case 'I', 'U', 'D':
			// Row changes, nearly all of the traffic, are parsed here
			// directly into events; pglogrepl's parser allocates per column.
			return d.decodeChange(walStart, data)
		}
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return Result{}, fmt.Errorf("parse pgoutput message at %s: %w", walStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		d.inTx, d.xid, d.commitLSN, d.commitTime, d.pos = true, m.Xid, m.FinalLSN, m.CommitTime, 0
		d.commitTimeJSON = nil
		if !m.CommitTime.IsZero() {
			d.commitTimeJSON = event.EncodeTime(m.CommitTime)
		}
		return Result{Begin: true}, nil
	case *pglogrepl.CommitMessage:
		d.inTx, d.pos = false, 0
		return Result{Commit: true, EndLSN: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = d.newRelation(m)
		return Result{}, nil
	case *pglogrepl.TypeMessage:
		d.typeNames[m.DataType] = m.Name
		return Result{}, nil
	case *pglogrepl.LogicalDecodingMessage:
		if d.ddlPrefix == "" || m.Prefix != d.ddlPrefix || !m.Transactional {
			return Result{}, nil
		}
		ev, err := d.ddlEvent(m.Content, walStart)
		if err != nil {
			return Result{}, err
		}
		return Result{Events: []*event.Event{ev}}, nil
	case *pglogrepl.TruncateMessage:
		var res Result
		for _, id := range m.RelationIDs {
			rel, err := d.relation(id, walStart)
			if err != nil {
				return Result{}, err
			}
			res.Events = append(res.Events, d.newEvent(event.Truncate, rel, walStart))
		}
		return res, nil
	}
	// Origin, logical decoding messages and stream control messages carry no
	// row change.
	return Result{}, nil
}

// decodeChange parses an Insert, Update or Delete message (pgoutput protocol
// version 1) into an event.
func (d *Decoder) decodeChange(walStart pglogrepl.LSN, data []byte) (Result, error) {
	kind := data[0]
	fail := func(what string) (Result, error) {
		return Result{}, fmt.Errorf("parse pgoutput %c message at %s: %s", kind, walStart, what)
	}
	if len(data) < 6 {
		return fail("message too short")
	}
	rel, err := d.relation(binary.BigEndian.Uint32(data[1:5]), walStart)
	if err != nil {
		return Result{}, err
	}
	// One string holds every value of the message; values are substrings of
	// it, so a change costs one allocation for its text however many
	// columns it has.
	var text string
	var newBuf, oldBuf event.Row
	var toastBuf []string
	if d.scratch {
		text = unsafe.String(&data[5], len(data)-5)
		newBuf, oldBuf, toastBuf = d.newRow[:0], d.oldRow[:0], d.toast[:0]
	} else {
		text = string(data[5:])
	}
	rest := text
	op := event.Delete
	switch kind {
	case 'I':
		op = event.Insert
	case 'U':
		op = event.Update
	}
	var ev *event.Event
	if d.scratch {
		ev = &d.ev
		d.fillEvent(ev, op, rel, walStart)
	} else {
		ev = d.newEvent(op, rel, walStart)
	}
	result := func() (Result, error) {
		if !d.scratch {
			return Result{Events: []*event.Event{ev}}, nil
		}
		// Keep the (possibly grown) buffers for the next message.
		d.newRow, d.oldRow, d.toast = ev.New, ev.Old, ev.UnchangedToast
		d.one[0] = ev
		return Result{Events: d.one[:]}, nil
	}
	if rest[0] == 'K' || rest[0] == 'O' {
		if kind == 'I' {
			return fail("old tuple in an insert")
		}
		if ev.Old, _, rest, err = rel.parseTuple(rest[1:], rest[0] == 'K', oldBuf, nil); err != nil {
			return fail(err.Error())
		}
		if kind == 'D' {
			return result()
		}
	} else if kind == 'D' {
		return fail(fmt.Sprintf("unexpected tuple type %q", rest[0]))
	}
	if len(rest) == 0 || rest[0] != 'N' {
		return fail("missing new tuple")
	}
	if ev.New, ev.UnchangedToast, _, err = rel.parseTuple(rest[1:], false, newBuf, toastBuf); err != nil {
		return fail(err.Error())
	}
	if kind == 'U' && ev.Old == nil {
		// The key did not change, so PostgreSQL sent no old tuple: the new
		// row's key columns are the old key.
		ev.Old = rel.keyOf(ev.New, oldBuf)
	}
	return result()
}

// parseTuple reads pgoutput TupleData from src. With keyOnly, only
// replica-identity columns are kept (pgoutput sends the others as NULL in a
// key tuple). Unchanged TOAST columns are left out of the row and returned by
// name. It returns what follows the tuple. The row and the names are
// appended to row and toast (nil: new ones).
func (rel *relation) parseTuple(src string, keyOnly bool, row event.Row, toast []string) (event.Row, []string, string, error) {
	if len(src) < 2 {
		return nil, nil, "", fmt.Errorf("tuple too short")
	}
	n := int(src[0])<<8 | int(src[1])
	src = src[2:]
	if n > len(rel.columns) {
		return nil, nil, "", fmt.Errorf("tuple has %d columns, relation %s.%s has %d", n, rel.schema, rel.table, len(rel.columns))
	}
	if row == nil {
		row = make(event.Row, 0, n)
	}
	for i := 0; i < n; i++ {
		if len(src) == 0 {
			return nil, nil, "", fmt.Errorf("tuple truncated at column %d", i)
		}
		meta := &rel.columns[i]
		kind := src[0]
		src = src[1:]
		var value string
		switch kind {
		case 't', 'b':
			if len(src) < 4 {
				return nil, nil, "", fmt.Errorf("tuple truncated at column %d", i)
			}
			size := int(uint32(src[0])<<24 | uint32(src[1])<<16 | uint32(src[2])<<8 | uint32(src[3]))
			if size > len(src)-4 {
				return nil, nil, "", fmt.Errorf("column %d value longer than the message", i)
			}
			value, src = src[4:4+size], src[4+size:]
		case 'n', 'u':
		default:
			return nil, nil, "", fmt.Errorf("column %d has unknown kind %q", i, kind)
		}
		if keyOnly && !meta.Key {
			continue
		}
		switch kind {
		case 'n':
			row = append(row, event.Value{Name: meta.Name, Null: true})
		case 'u':
			toast = append(toast, meta.Name)
		default:
			row = append(row, event.Value{Name: meta.Name, Text: value})
		}
	}
	return row, toast, src, nil
}

func (d *Decoder) relation(id uint32, walStart pglogrepl.LSN) (*relation, error) {
	rel, ok := d.relations[id]
	if !ok {
		return nil, fmt.Errorf("pgoutput change at %s refers to relation %d, which was never described by a Relation message", walStart, id)
	}
	return rel, nil
}

func (d *Decoder) newRelation(m *pglogrepl.RelationMessage) *relation {
	rel := &relation{schema: m.Namespace, table: m.RelationName, columns: make([]event.Column, len(m.Columns))}
	for i, c := range m.Columns {
		name, ok := d.typeNames[c.DataType]
		if !ok {
			name = fmt.Sprintf("oid:%d", c.DataType)
		}
		key := c.Flags&1 == 1
		rel.columns[i] = event.Column{Name: c.Name, Type: name, OID: c.DataType, Key: key}
		if key {
			rel.keyIndexes = append(rel.keyIndexes, i)
		}
	}
	rel.encoded = event.EncodeColumns(rel.columns)
	return rel
}

func (d *Decoder) newEvent(op event.Op, rel *relation, walStart pglogrepl.LSN) *event.Event {
	ev := new(event.Event)
	d.fillEvent(ev, op, rel, walStart)
	return ev
}

func (d *Decoder) fillEvent(ev *event.Event, op event.Op, rel *relation, walStart pglogrepl.LSN) {
	*ev = event.Event{
		V: event.Version, Op: op, Schema: rel.schema, Table: rel.table,
		LSN: walStart, CommitLSN: d.commitLSN, Xid: d.xid, CommitTime: d.commitTime,
		Columns: rel.columns, Encoded: rel.encoded, EncodedCommitTime: d.commitTimeJSON,
	}
	d.pos++
}

// keyOf returns the replica-identity columns of row, or nil when the table
// has no key. The values are appended to key (nil: a new row).
func (rel *relation) keyOf(row event.Row, key event.Row) event.Row {
	if len(rel.keyIndexes) == 0 {
		return nil
	}
	if key == nil {
		key = make(event.Row, 0, len(rel.keyIndexes))
	}
	for _, i := range rel.keyIndexes {
		if v, ok := row.Get(rel.columns[i].Name); ok {
			key = append(key, v)
		}
	}
	return key
}
