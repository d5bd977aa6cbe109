// Package copypack is the packed form of snapshot rows: the rows of one
// table exactly as COPY ... TO STDOUT (text format) wrote them, after a
// one-line JSON header that describes the table once. A snapshot row costs
// its COPY text instead of a ~1 KB change event, so the copy, JetStream and
// the worker move a quarter of the bytes, and pg_flo_postgres can hand the
// rows to COPY FROM on the target unchanged. Wherever a change event is
// needed (a stock output, a processor), a pack expands into exactly the
// events the rows stand for: INSERTs with "snapshot": true.
//
// Body layout (docs/jetstream.md):
//
//	{"v":1,"format":"copy","schema":"public","table":"users","lsn":"0/16B3748","columns":[...]}\n
//	<row 1 in COPY text format>\n
//	<row 2>\n
//	...
package copypack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// Format is the header's "format" value (and the Pgflo-Format JetStream
// header of a packed message holding a pack).
const Format = "copy"

// ErrMalformed is returned (wrapped) for a body that is not a valid pack.
var ErrMalformed = errors.New("malformed copy pack")

// Header describes the rows of a pack: the table and its columns, in the
// order of the rows' fields, and the LSN every row's event carries (the
// snapshot's consistent point).
type Header struct {
	V       int            `json:"v"`
	Format  string         `json:"format"`
	Schema  string         `json:"schema"`
	Table   string         `json:"table"`
	LSN     string         `json:"lsn"`
	Columns []event.Column `json:"columns"`
}

// NewHeader returns the header of rows of a table at lsn.
func NewHeader(schema, table string, columns []event.Column, lsn pglogrepl.LSN) Header {
	return Header{V: event.Version, Format: Format, Schema: schema, Table: table, LSN: event.FormatLSN(lsn), Columns: columns}
}

// AppendHeader appends h's line (JSON and '\n'): what a body starts with.
func AppendHeader(buf []byte, h Header) []byte {
	b, _ := json.Marshal(h) // plain strings, ints and bools: cannot fail
	buf = append(buf, b...)
	return append(buf, '\n')
}

// Pack is a parsed body. Rows holds the COPY text lines, each ending in '\n'.
type Pack struct {
	Header
	LSNValue pglogrepl.LSN
	Rows     []byte
	N        int // number of rows
}

// Parse reads a body. The returned pack shares body's memory.
func Parse(body []byte) (*Pack, error) {
	nl := bytes.IndexByte(body, '\n')
	if nl < 0 {
		return nil, fmt.Errorf("%w: no header line", ErrMalformed)
	}
	p := &Pack{Rows: body[nl+1:]}
	if err := json.Unmarshal(body[:nl], &p.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	switch {
	case p.V != event.Version:
		return nil, fmt.Errorf("%w: header version %d, this pgflo reads %d", ErrMalformed, p.V, event.Version)
	case p.Format != Format:
		return nil, fmt.Errorf("%w: header format %q, want %q", ErrMalformed, p.Format, Format)
	case p.Schema == "" || p.Table == "" || len(p.Columns) == 0:
		return nil, fmt.Errorf("%w: header lacks schema, table or columns", ErrMalformed)
	case len(p.Rows) == 0 || p.Rows[len(p.Rows)-1] != '\n':
		return nil, fmt.Errorf("%w: no rows, or the last row does not end with a newline", ErrMalformed)
	}
	lsn, err := pglogrepl.ParseLSN(p.LSN)
	if err != nil {
		return nil, fmt.Errorf("%w: header lsn %q: %v", ErrMalformed, p.LSN, err)
	}
	p.LSNValue = lsn
	p.N = bytes.Count(p.Rows, []byte{'\n'})
	return p, nil
}

// Lines calls fn with each row's COPY text (without its newline).
func (p *Pack) Lines(fn func(i int, line []byte) error) error {
	rows := p.Rows
	for i := 0; len(rows) > 0; i++ {
		nl := bytes.IndexByte(rows, '\n')
		if err := fn(i, rows[:nl]); err != nil {
			return err
		}
		rows = rows[nl+1:]
	}
	return nil
}

// Values calls fn with each row's values (row is reused between calls).
func (p *Pack) Values(fn func(i int, row event.Row) error) error {
	var row event.Row
	return p.Lines(func(i int, line []byte) error {
		var err error
		if row, err = ParseLine(line, p.Columns, row); err != nil {
			return fmt.Errorf("%w: row %d of %s.%s: %v", ErrMalformed, i, p.Schema, p.Table, err)
		}
		return fn(i, row)
	})
}

// Template is the event every row of the pack stands for, without its row.
func (p *Pack) Template() event.Event {
	return event.Event{
		V: event.Version, Op: event.Insert, Schema: p.Schema, Table: p.Table,
		LSN: p.LSNValue, CommitLSN: p.LSNValue, Snapshot: true, Columns: p.Columns,
	}
}

// Expander turns rows into change-event JSON, byte for byte what
// event.Event.AppendJSON writes for them, without building the event: the
// parts around the row are encoded once.
type Expander struct {
	prefix, suffix []byte   // the event before and after the "new" object
	keys           [][]byte // `"name":` (with '{' or ',' before it) per column
	scratch        []byte
}

var newNull = []byte(`"new":null`)

// NewExpander prepares the expansion of rows of the pack's table.
func NewExpander(p *Pack) *Expander {
	tmpl := p.Template()
	whole := tmpl.AppendJSON(nil)
	at := bytes.Index(whole, newNull)
	x := &Expander{
		prefix: whole[:at+len(`"new":`)],
		suffix: whole[at+len(newNull):],
		keys:   make([][]byte, len(p.Columns)),
	}
	for i, c := range p.Columns {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		x.keys[i] = append(event.AppendJSONString([]byte{sep}, c.Name), ':')
	}
	return x
}

// AppendEvent appends the event of one COPY text line.
func (x *Expander) AppendEvent(buf, line []byte) ([]byte, error) {
	buf = append(buf, x.prefix...)
	for i := range x.keys {
		end := bytes.IndexByte(line, '\t')
		last := end < 0
		if last {
			end = len(line)
		}
		if last != (i == len(x.keys)-1) {
			return buf, fmt.Errorf("COPY row has a different number of fields than the %d columns", len(x.keys))
		}
		field := line[:end]
		buf = append(buf, x.keys[i]...)
		switch {
		case len(field) == 2 && field[0] == '\\' && field[1] == 'N':
			buf = append(buf, "null"...)
		case bytes.IndexByte(field, '\\') < 0:
			buf = event.AppendJSONString(buf, unsafeString(field))
		default:
			var err error
			if x.scratch, err = AppendUnescaped(x.scratch[:0], field); err != nil {
				return buf, fmt.Errorf("column %s: %w", x.keys[i], err)
			}
			buf = event.AppendJSONString(buf, unsafeString(x.scratch))
		}
		if !last {
			line = line[end+1:]
		}
	}
	buf = append(buf, '}')
	return append(buf, x.suffix...), nil
}

// Events returns the events of every row of the pack, carved from one
// allocation.
func (p *Pack) Events() ([][]byte, error) {
	x := NewExpander(p)
	buf := make([]byte, 0, p.N*(len(x.prefix)+len(x.suffix)+8*len(x.keys))+2*len(p.Rows))
	ends := make([]int, 0, p.N)
	err := p.Lines(func(i int, line []byte) error {
		var err error
		if buf, err = x.AppendEvent(buf, line); err != nil {
			return fmt.Errorf("%w: row %d of %s.%s: %v", ErrMalformed, i, p.Schema, p.Table, err)
		}
		ends = append(ends, len(buf))
		return nil
	})
	if err != nil {
		return nil, err
	}
	events := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		events[i] = buf[start:end:end]
		start = end
	}
	return events, nil
}

// unsafeString views b as a string for the duration of a call that does not
// keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
