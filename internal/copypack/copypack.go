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
//
// or, with "format":"copy-binary", the rows as COPY ... (FORMAT binary)
// wrote them (tuples, without the stream's header and trailer): what the
// replicator reads when every column has a built-in type whose binary form
// internal/pgvalue renders back as text. Binary output spares the source's
// server the text output functions, and a target with the same column
// types takes the tuples as they are.
package copypack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// Format is the header's "format" value of a pack of COPY text rows (and
// the Pgflo-Format JetStream header of a packed message holding a pack of
// either format).
const Format = "copy"

// FormatBinary is the header's "format" value of a pack of binary COPY
// tuples. A reader that knows only Format refuses it instead of misreading
// the rows.
const FormatBinary = "copy-binary"

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

// NewHeader returns the header of COPY text rows of a table at lsn.
func NewHeader(schema, table string, columns []event.Column, lsn pglogrepl.LSN) Header {
	return Header{V: event.Version, Format: Format, Schema: schema, Table: table, LSN: event.FormatLSN(lsn), Columns: columns}
}

// NewBinaryHeader returns the header of binary COPY tuples of a table at
// lsn.
func NewBinaryHeader(schema, table string, columns []event.Column, lsn pglogrepl.LSN) Header {
	h := NewHeader(schema, table, columns, lsn)
	h.Format = FormatBinary
	return h
}

// BinaryReadable reports whether rows of columns can travel as binary
// tuples: every column's type is one pgvalue renders as text, so the rows
// can still become events.
func BinaryReadable(columns []event.Column) bool {
	for _, c := range columns {
		if !pgvalue.BinaryToTextSupported(c.OID) {
			return false
		}
	}
	return len(columns) > 0
}

// AppendHeader appends h's line (JSON and '\n'): what a body starts with.
func AppendHeader(buf []byte, h Header) []byte {
	b, _ := json.Marshal(h) // plain strings, ints and bools: cannot fail
	buf = append(buf, b...)
	return append(buf, '\n')
}

// Pack is a parsed body. Rows holds the COPY text lines, each ending in
// '\n', or, when Binary, the binary COPY tuples.
type Pack struct {
	Header
	LSNValue pglogrepl.LSN
	Rows     []byte
	N        int // number of rows
	Binary   bool
	// text renders a binary pack's values (nil for a text pack).
	text *pgvalue.BinaryToText
}

// OIDs returns the type OIDs of the pack's columns.
func (p *Pack) OIDs() []uint32 {
	oids := make([]uint32, len(p.Columns))
	for i, c := range p.Columns {
		oids[i] = c.OID
	}
	return oids
}

// TextRenderer returns what renders the binary tuples of a binary pack as
// text (nil for a text pack).
func (p *Pack) TextRenderer() *pgvalue.BinaryToText { return p.text }

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
	p.Binary = p.Format == FormatBinary
	switch {
	case p.V != event.Version:
		return nil, fmt.Errorf("%w: header version %d, this pgflo reads %d", ErrMalformed, p.V, event.Version)
	case p.Format != Format && p.Format != FormatBinary:
		return nil, fmt.Errorf("%w: header format %q, want %q or %q", ErrMalformed, p.Format, Format, FormatBinary)
	case p.Schema == "" || p.Table == "" || len(p.Columns) == 0:
		return nil, fmt.Errorf("%w: header lacks schema, table or columns", ErrMalformed)
	case len(p.Rows) == 0:
		return nil, fmt.Errorf("%w: no rows", ErrMalformed)
	case !p.Binary && p.Rows[len(p.Rows)-1] != '\n':
		return nil, fmt.Errorf("%w: the last row does not end with a newline", ErrMalformed)
	}
	lsn, err := pglogrepl.ParseLSN(p.LSN)
	if err != nil {
		return nil, fmt.Errorf("%w: header lsn %q: %v", ErrMalformed, p.LSN, err)
	}
	p.LSNValue = lsn
	if !p.Binary {
		p.N = bytes.Count(p.Rows, []byte{'\n'})
		return p, nil
	}
	text, bad, ok := pgvalue.BinaryToTextFor(p.OIDs())
	if !ok {
		return nil, fmt.Errorf("%w: binary rows of column %s, whose type (OID %d) has no text rendering", ErrMalformed, p.Columns[bad].Name, p.Columns[bad].OID)
	}
	p.text = text
	if p.N, err = pgvalue.CountTuples(p.Rows, len(p.Columns)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return p, nil
}

// tuples calls fn with each binary tuple of a binary pack.
func (p *Pack) tuples(fn func(i int, tuple []byte) error) error {
	rows := p.Rows
	for i := 0; len(rows) > 0; i++ {
		tuple, rest, err := pgvalue.NextTuple(rows, len(p.Columns))
		if err != nil {
			return fmt.Errorf("%w: row %d of %s.%s: %v", ErrMalformed, i, p.Schema, p.Table, err)
		}
		if err := fn(i, tuple); err != nil {
			return err
		}
		rows = rest
	}
	return nil
}

// rows calls fn with each row: a COPY text line (without its newline) or a
// binary tuple.
func (p *Pack) rows(fn func(i int, row []byte) error) error {
	if p.Binary {
		return p.tuples(fn)
	}
	return p.Lines(fn)
}

// Lines calls fn with each row's COPY text (without its newline); for a
// text pack only.
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
	var scratch []byte
	return p.rows(func(i int, line []byte) error {
		var err error
		if p.Binary {
			row, scratch, err = p.binaryValues(line, row, scratch)
		} else {
			row, err = ParseLine(line, p.Columns, row)
		}
		if err != nil {
			return fmt.Errorf("%w: row %d of %s.%s: %v", ErrMalformed, i, p.Schema, p.Table, err)
		}
		return fn(i, row)
	})
}

// binaryValues reads one binary tuple into row.
func (p *Pack) binaryValues(tuple []byte, row event.Row, scratch []byte) (event.Row, []byte, error) {
	row = row[:0]
	err := pgvalue.EachField(tuple, func(col int, data []byte) error {
		v := event.Value{Name: p.Columns[col].Name}
		if data == nil {
			v.Null = true
		} else {
			var err error
			if scratch, err = p.text.AppendText(scratch[:0], col, data); err != nil {
				return fmt.Errorf("column %s: %w", p.Columns[col].Name, err)
			}
			v.Text = string(scratch)
		}
		row = append(row, v)
		return nil
	})
	return row, scratch, err
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
	text           *pgvalue.BinaryToText // a binary pack's rendering
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
		text:   p.text,
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
			if x.scratch, err = pgvalue.AppendCopyUnescaped(x.scratch[:0], field); err != nil {
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

// AppendTupleEvent appends the event of one binary tuple (of a binary
// pack).
func (x *Expander) AppendTupleEvent(buf, tuple []byte) ([]byte, error) {
	buf = append(buf, x.prefix...)
	err := pgvalue.EachField(tuple, func(col int, data []byte) error {
		if col >= len(x.keys) {
			return fmt.Errorf("binary row has more fields than the %d columns", len(x.keys))
		}
		buf = append(buf, x.keys[col]...)
		if data == nil {
			buf = append(buf, "null"...)
			return nil
		}
		var err error
		if x.scratch, err = x.text.AppendText(x.scratch[:0], col, data); err != nil {
			return fmt.Errorf("column %s: %w", x.keys[col], err)
		}
		buf = event.AppendJSONString(buf, unsafeString(x.scratch))
		return nil
	})
	if err != nil {
		return buf, err
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
	err := p.rows(func(i int, line []byte) error {
		var err error
		if p.Binary {
			buf, err = x.AppendTupleEvent(buf, line)
		} else {
			buf, err = x.AppendEvent(buf, line)
		}
		if err != nil {
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

// Split cuts a pack's body into packs of whole rows, each body (the header
// line included) at most maxBytes long unless it holds a single row larger
// than that; rows[i] is the number of rows of bodies[i]. A body within
// maxBytes is returned as it is. The bodies are new memory.
func Split(body []byte, maxBytes int) (bodies [][]byte, rows []int, err error) {
	p, err := Parse(body)
	if err != nil {
		return nil, nil, err
	}
	if len(body) <= maxBytes {
		return [][]byte{body}, []int{p.N}, nil
	}
	header := body[:len(body)-len(p.Rows)]
	room := maxBytes - len(header) // for rows
	start, end, n := 0, 0, 0       // the piece being gathered: p.Rows[start:end], n rows
	flush := func() {
		piece := make([]byte, 0, len(header)+end-start)
		bodies = append(bodies, append(append(piece, header...), p.Rows[start:end]...))
		rows = append(rows, n)
		start, n = end, 0
	}
	err = p.rows(func(_ int, row []byte) error {
		size := len(row)
		if !p.Binary {
			size++ // the newline
		}
		if n > 0 && end+size-start > room {
			flush()
		}
		end += size
		n++
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	flush()
	return bodies, rows, nil
}
