package event

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/jackc/pglogrepl"
)

// What the decoder accepts is one rule for every mode, so that a message
// pg_flo_postgres applies is one pg_flo_rules can edit and the reverse:
//
//   - member names are matched exactly, as docs/event.schema.json spells
//     them (encoding/json's case folding would read "Table" as "table");
//     unknown members are read over, so an extension such as "typed" or a
//     later producer's addition does not make the event unreadable;
//   - v, op, table and columns are required: they say what the document is
//     and what every consumer works on. The other members may be missing
//     (their zero value), as producers other than the replicator may leave
//     out what they do not know;
//   - a member that is present has the schema's type: no null but for
//     commit_time, new and old; LSNs in X/Y form; xid and oid 32-bit;
//   - row values are strings or null, unless "typed" is true (docs/decode.md).

// ErrTypedValues is returned (wrapped) by DecodeEvent for an event whose
// values are typed JSON (after pg_flo_decode) rather than PostgreSQL text.
var ErrTypedValues = errors.New("event values are typed JSON")

// Decoder reads change events, in the mode its caller needs: DecodeEvent and
// Decode give an Event of text values carved from slabs (the output's path),
// DecodeRaw a RawEvent that keeps the values' JSON (the processors' path).
// It keeps what consecutive events of one table share (the column list,
// schema, table and commit time), so that reading them allocates little:
// the Columns of events it returns may be the same slice, to be treated as
// read-only. A Decoder is not safe for concurrent use; the zero value is
// ready.
type Decoder struct {
	colsRaw           []byte
	cols              []Column
	op, schema, table string
	commitRaw         []byte
	commitTime        time.Time
	offsets           []int
	// vals and texts are slabs the rows' values and texts are carved from:
	// a batch's events are decoded together and dropped together, so one
	// allocation serves many rows instead of two per row. Bytes below
	// len(texts) back strings already handed out and are never written
	// again; a slab that runs out is replaced, the old one living on as long
	// as rows point into it.
	vals  []Value
	texts []byte
}

// Slab sizes: each new slab twice the last, up to a few hundred rows, so a
// decoder used for one event allocates little.
const (
	slabValues = 4096
	slabText   = 64 << 10
)

// DecodeEvent reads one change event into ev. A typed event (values as
// pg_flo_decode writes them) is rejected with ErrTypedValues: its values
// are not PostgreSQL text.
func (c *Decoder) DecodeEvent(data []byte, ev *Event) error {
	typed, err := c.decode(data, ev, nil)
	if err == nil && typed {
		err = fmt.Errorf("decode change event: %w (\"typed\": true)", ErrTypedValues)
	}
	return err
}

// TypedText gives the PostgreSQL text form of a typed value of col
// (pgvalue.EncodeJSON); event cannot import the value codecs, which
// describe columns with its Column.
type TypedText func(value []byte, col Column) (string, error)

// Decode reads one change event in either form: a raw event, whose values
// are PostgreSQL text, or a typed one (after pg_flo_decode), whose values
// typedText turns back into their exact text form.
func (c *Decoder) Decode(data []byte, ev *Event, typedText TypedText) error {
	err := c.DecodeEvent(data, ev)
	if !errors.Is(err, ErrTypedValues) {
		return err
	}
	var raw RawEvent
	if err := c.decodeRaw(data, ev, &raw); err != nil {
		return err
	}
	types := make(map[string]Column, len(ev.Columns))
	for _, col := range ev.Columns {
		types[col.Name] = col
	}
	for _, r := range []struct {
		raw  RawRow
		to   *Row
		name string
	}{{raw.New, &ev.New, "new"}, {raw.Old, &ev.Old, "old"}} {
		if r.raw == nil {
			continue
		}
		row := make(Row, len(r.raw))
		for i, f := range r.raw {
			row[i] = Value{Name: f.Name, Null: f.Null()}
			if row[i].Null {
				continue
			}
			if row[i].Text, err = typedText(f.Value, types[f.Name]); err != nil {
				return fmt.Errorf("decode change event: %s.%s: %w", r.name, f.Name, err)
			}
		}
		*r.to = row
	}
	return nil
}

// DecodeRaw reads one change event, raw or typed, keeping its values and
// the members it does not model as their JSON (see RawEvent). The event
// points into data, which must stay unchanged while it is in use.
func (c *Decoder) DecodeRaw(data []byte, ev *RawEvent) error {
	var head Event
	return c.decodeRaw(data, &head, ev)
}

// decodeRaw is DecodeRaw, leaving the header members (lsn, xid…) in head.
func (c *Decoder) decodeRaw(data []byte, head *Event, ev *RawEvent) error {
	typed, err := c.decode(data, head, ev)
	if err != nil {
		return err
	}
	ev.Op, ev.Schema, ev.Table, ev.Typed = head.Op, head.Schema, head.Table, typed
	ev.Columns, ev.UnchangedToast = head.Columns, head.UnchangedToast
	if ev.UnchangedToast == nil {
		ev.UnchangedToast = []string{}
	}
	for _, r := range []struct {
		row  RawRow
		name string
	}{{ev.New, "new"}, {ev.Old, "old"}} {
		for _, f := range r.row {
			switch {
			case f.Null():
			case typed && !slices.ContainsFunc(ev.Columns, func(c Column) bool { return c.Name == f.Name }):
				// Its type is what gives a typed value its text form.
				return fmt.Errorf("decode change event: typed value of %s.%s, a column the event does not describe", r.name, f.Name)
			case !typed && f.Value[0] != '"':
				return fmt.Errorf("decode change event: %w", valueNotText(f.Name))
			}
		}
	}
	return nil
}

func valueNotText(column string) error {
	return fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", column, ErrTypedValues)
}

// decode is the one reader of the event's members. ev receives the
// members; with raw set, rows go to raw as JSON values and the members
// RawEvent keeps as they are are recorded there, else rows are text
// values carved from the slabs.
func (c *Decoder) decode(data []byte, ev *Event, raw *RawEvent) (typed bool, err error) {
	*ev = Event{}
	if raw != nil {
		*raw = RawEvent{kept: make([][]byte, 0, 6)}
	}
	d := decoding{scanner: scanner{data: data}, cache: c}
	var seenOp, seenTable, seenColumns bool
	d.ws()
	if !d.consume('{') {
		return false, d.fail("expected a JSON object")
	}
	d.ws()
	if d.consume('}') {
		return false, errors.New("decode change event: unsupported version v=0 (this build reads v=1)")
	}
	for {
		memberStart := d.i
		key, err := d.key()
		if err != nil {
			return false, err
		}
		keep := raw != nil
		switch string(key) {
		case "v":
			n, err := d.uint32()
			if err != nil {
				return false, fmt.Errorf("decode change event: field v: %w", err)
			}
			ev.V, keep = int(n), false
		case "op":
			s, err := d.cachedStr("op", &c.op)
			if err != nil {
				return false, err
			}
			ev.Op, seenOp, keep = Op(s), true, false
		case "schema":
			if ev.Schema, err = d.cachedStr("schema", &c.schema); err != nil {
				return false, err
			}
			keep = false
		case "table":
			if ev.Table, err = d.cachedStr("table", &c.table); err != nil {
				return false, err
			}
			seenTable, keep = true, false
		case "lsn":
			if ev.LSN, err = d.lsn("lsn"); err != nil {
				return false, err
			}
		case "commit_lsn":
			if ev.CommitLSN, err = d.lsn("commit_lsn"); err != nil {
				return false, err
			}
		case "xid":
			if ev.Xid, err = d.uint32(); err != nil {
				return false, fmt.Errorf("decode change event: field xid: %w", err)
			}
		case "commit_time":
			if ev.CommitTime, err = d.commitTime(); err != nil {
				return false, err
			}
		case "snapshot":
			if ev.Snapshot, err = d.boolean(); err != nil {
				return false, fmt.Errorf("decode change event: field snapshot: %w", err)
			}
		case "typed":
			if typed, err = d.boolean(); err != nil {
				return false, fmt.Errorf("decode change event: field typed: %w", err)
			}
			keep = false
		case "columns":
			start := d.i
			if ev.Columns, err = d.cachedColumns(); err != nil {
				return false, err
			}
			if raw != nil {
				raw.columnsJSON, raw.columnsRead = data[start:d.i], ev.Columns
			}
			seenColumns, keep = true, false
		case "new", "old":
			keep = false
			if raw != nil {
				row, err := d.rawRow(ev.Columns)
				if err != nil {
					return false, fmt.Errorf("decode change event: field %s: %w", key, err)
				}
				if key[0] == 'n' {
					raw.New = row
				} else {
					raw.Old = row
				}
				break
			}
			row, err := d.row(ev.Columns)
			if err != nil {
				return false, err
			}
			if key[0] == 'n' {
				ev.New = row
			} else {
				ev.Old = row
			}
		case "unchanged_toast":
			if ev.UnchangedToast, err = d.strings("unchanged_toast"); err != nil {
				return false, err
			}
			keep = false
		default:
			if _, err := d.value(); err != nil {
				return false, err
			}
		}
		if keep {
			raw.kept = append(raw.kept, data[memberStart:d.i])
		}
		if err := d.next(); err != nil {
			return false, err
		}
		if d.end() {
			break
		}
		d.ws()
	}
	d.ws()
	if d.i != len(d.data) {
		return false, d.fail("unexpected data after the event")
	}
	if ev.V != Version {
		return false, fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", ev.V, Version)
	}
	if !seenOp || !ev.Op.Valid() {
		return false, fmt.Errorf("decode change event: unknown op %q", ev.Op)
	}
	if !seenTable || !seenColumns {
		return false, errors.New("decode change event: missing one of the members v, op, table, columns")
	}
	return typed, nil
}

// commitTime reads commit_time, taking the cache's when it is the previous
// event's (the events of a transaction share it).
func (d *decoding) commitTime() (time.Time, error) {
	if d.null() {
		return time.Time{}, nil
	}
	text, plain, err := d.span()
	if err == nil && !plain { // rare: decode the escapes first
		text = []byte(unquote(text))
	}
	c := d.cache
	if err == nil && c.commitRaw != nil && string(c.commitRaw) == string(text) {
		return c.commitTime, nil
	}
	var t time.Time
	if err == nil {
		t, err = time.Parse(time.RFC3339Nano, string(text))
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("decode change event: field commit_time: %w", err)
	}
	c.commitRaw = append(c.commitRaw[:0], text...)
	c.commitTime = t
	return t, nil
}

// decoding is one document being read by a Decoder.
type decoding struct {
	scanner
	cache *Decoder
}

func (d *decoding) lsn(field string) (pglogrepl.LSN, error) {
	raw, plain, err := d.span()
	if err == nil && !plain {
		raw = []byte(unquote(raw))
	}
	var lsn uint64
	if err == nil {
		lsn, err = parseLSN(raw)
	}
	if err != nil {
		return 0, fmt.Errorf("decode change event: field %s: %w", field, err)
	}
	return pglogrepl.LSN(lsn), nil
}

// cachedStr reads a string member, returning *last when the value equals
// it (and remembering the value otherwise), so events of one table share
// strings.
func (d *decoding) cachedStr(name string, last *string) (string, error) {
	raw, plain, err := d.span()
	if err != nil {
		return "", fmt.Errorf("decode change event: field %s: %w", name, err)
	}
	if plain && string(raw) == *last {
		return *last, nil
	}
	s := string(raw)
	if !plain {
		s = unquote(raw)
	}
	*last = s
	return s, nil
}

// cachedColumns reads the column list, or takes the cache's when the
// member's text is the same as the previous event's.
func (d *decoding) cachedColumns() ([]Column, error) {
	c := d.cache
	if c.colsRaw != nil && bytes.HasPrefix(d.data[d.i:], c.colsRaw) {
		d.i += len(c.colsRaw)
		return c.cols, nil
	}
	start := d.i
	cols, err := d.columns()
	if err == nil {
		c.colsRaw = append(c.colsRaw[:0], d.data[start:d.i]...)
		c.cols = cols
	}
	return cols, err
}

func (d *decoding) columns() ([]Column, error) {
	cols := []Column{}
	err := d.list(func() error {
		var c Column
		if !d.consume('{') {
			return d.fail("field columns: expected an object")
		}
		d.ws()
		if d.consume('}') {
			cols = append(cols, c)
			return nil
		}
		for {
			key, err := d.key()
			if err != nil {
				return err
			}
			switch string(key) {
			case "name":
				c.Name, err = d.str()
			case "type":
				c.Type, err = d.str()
			case "oid":
				c.OID, err = d.uint32()
			case "key":
				c.Key, err = d.boolean()
			default:
				_, err = d.value()
			}
			if err != nil {
				return fmt.Errorf("decode change event: field columns.%s: %w", key, err)
			}
			if err := d.next(); err != nil {
				return err
			}
			if d.end() {
				break
			}
			d.ws()
		}
		cols = append(cols, c)
		return nil
	})
	return cols, err
}

// rowName returns the name a row member's key stands for. Rows list their
// columns in column order, so the columns are searched from *next on, and a
// name found there is the column's string rather than a new one.
func rowName(raw []byte, plain bool, cols []Column, next *int) string {
	if !plain {
		return unquote(raw)
	}
	for n := range cols {
		at := (*next + n) % len(cols)
		if cols[at].Name == string(raw) {
			*next = at + 1
			return cols[at].Name
		}
	}
	return string(raw)
}

// rawRow reads a row object keeping each value's JSON (any JSON value:
// DecodeRaw checks them once it knows whether the event is typed).
func (d *decoding) rawRow(cols []Column) (RawRow, error) {
	if d.null() {
		return nil, nil
	}
	if !d.consume('{') {
		return nil, d.fail("row: expected an object")
	}
	row := make(RawRow, 0, max(len(cols), 4))
	d.ws()
	if d.consume('}') {
		return row, nil
	}
	next := 0
	for {
		nameStart := d.i
		rawName, plain, err := d.span()
		if err != nil {
			return nil, err
		}
		f := RawField{Name: rowName(rawName, plain, cols, &next), nameJSON: d.data[nameStart:d.i]}
		d.ws()
		if !d.consume(':') {
			return nil, d.fail("expected ':'")
		}
		d.ws()
		if f.Value, err = d.value(); err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
		row = append(row, f)
		if err := d.next(); err != nil {
			return nil, err
		}
		if d.end() {
			return row, nil
		}
		d.ws()
	}
}

// carveRow returns an empty row with room for n values, from the slab.
func (c *Decoder) carveRow(n int) Row {
	if cap(c.vals)-len(c.vals) < n {
		c.vals = make([]Value, 0, max(min(slabValues, 2*cap(c.vals)), n))
	}
	l := len(c.vals)
	return c.vals[l : l : l+n]
}

// keepRow records that row, carved by carveRow, is handed out.
func (c *Decoder) keepRow(row Row) {
	l := len(c.vals)
	if len(row) > 0 && l < cap(c.vals) && &c.vals[:l+1][l] == &row[0] {
		c.vals = c.vals[:l+len(row)]
	}
}

// row reads a row object of text values (a value that is not a string or
// null is ErrTypedValues), carving the row from the value slab and all its
// texts from the text slab.
func (d *decoding) row(cols []Column) (Row, error) {
	if d.null() {
		return nil, nil
	}
	if !d.consume('{') {
		return nil, d.fail("row: expected an object")
	}
	c := d.cache
	row := c.carveRow(max(len(cols), 4))
	if room := cap(c.texts) - len(c.texts); room < slabText/8 && room < cap(c.texts)/2 || cap(c.texts) == 0 {
		c.texts = make([]byte, 0, min(slabText, max(1<<10, 2*cap(c.texts))))
	}
	// Texts are unescaped into the free end of the text slab (offsets: where
	// each ends); buf may move to a new array if the row outgrows the slab.
	textAt := len(c.texts)
	buf, offsets := c.texts[textAt:], c.offsets[:0]
	d.ws()
	if d.consume('}') {
		return row[:0:0], nil // no room to append into the slab
	}
	next := 0
	for {
		rawName, plain, err := d.span()
		if err != nil {
			return nil, err
		}
		v := Value{Name: rowName(rawName, plain, cols, &next)}
		d.ws()
		if !d.consume(':') {
			return nil, d.fail("expected ':'")
		}
		d.ws()
		switch {
		case d.null():
			v.Null = true
		case d.i < len(d.data) && d.data[d.i] == '"':
			if buf, err = d.appendStr(buf); err != nil {
				return nil, err
			}
		default:
			if _, err := d.value(); err != nil {
				return nil, err
			}
			return nil, valueNotText(v.Name)
		}
		offsets = append(offsets, len(buf))
		row = append(row, v)
		if err := d.next(); err != nil {
			return nil, err
		}
		if d.end() {
			break
		}
		d.ws()
	}
	var all string
	if len(buf) > 0 {
		// The bytes are final: nothing writes below the slab's length.
		all = unsafe.String(&buf[0], len(buf))
	}
	if textAt+len(buf) <= cap(c.texts) && len(buf) > 0 && &c.texts[:textAt+1][textAt] == &buf[0] {
		c.texts = c.texts[:textAt+len(buf)]
	} else if len(buf) > 0 {
		// buf moved out of the slab: it is this row's alone; start a new slab.
		c.texts = nil
	}
	from := 0
	for i := range row {
		row[i].Text = all[from:offsets[i]]
		from = offsets[i]
	}
	c.offsets = offsets
	c.keepRow(row)
	// Capped: appending to the row must not write into the slab's free end.
	return row[:len(row):len(row)], nil
}
