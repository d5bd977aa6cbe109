// Package change is the editable view of a change event (raw or typed,
// docs/event.md and docs/decode.md) that the worker's processors
// (pg_flo_decode, pg_flo_rules, pg_flo_route) work on: internal/event reads
// it keeping members nobody edits as their JSON, and writes it back; change
// gives a value's text or typed form, turns a raw event into a typed one,
// and counts edits.
package change

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// Event is a change event being edited: internal/event's raw form (row
// values as JSON, unedited members as they came) and a count of edits.
type Event struct {
	event.RawEvent
	// edits counts MarkEdited calls, so a processor knows whether it has
	// anything to write.
	edits int
}

// MarkEdited records that the event changed since it was read (or last
// written); Edits counts such changes.
func (e *Event) MarkEdited() { e.edits++ }

// Edits returns how often the event was marked edited.
func (e *Event) Edits() int { return e.edits }

// Column returns the named column's description and whether the event has it.
func (e *Event) Column(name string) (event.Column, bool) {
	for _, c := range e.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return event.Column{}, false
}

// ErrNotChangeEvent wraps every parse error: the message is not a change event
// this build reads.
var ErrNotChangeEvent = errors.New("not a pgflo change event")

// Cache lends decoders to parses that may run concurrently (a processor's
// pipeline threads): each decoder keeps what consecutive events of a table
// share, so reading them allocates less. A nil *Cache caches nothing.
type Cache struct {
	decoders sync.Pool
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{} }

// Parse reads a change event, raw or typed. data must stay unchanged while
// the event is in use: kept members and values point into it.
func Parse(data []byte, cache *Cache) (*Event, error) {
	var dec *event.Decoder
	if cache != nil {
		dec, _ = cache.decoders.Get().(*event.Decoder)
	}
	if dec == nil {
		dec = new(event.Decoder)
	}
	ev := &Event{}
	err := dec.DecodeRaw(data, &ev.RawEvent)
	if cache != nil {
		cache.decoders.Put(dec)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotChangeEvent, err)
	}
	return ev, nil
}

// Text returns a value's PostgreSQL text form (ok false for NULL), decoding
// a typed value with pgvalue. The string may share the event's bytes (see
// event.RawField.Text): copy it to keep it beyond the event.
func (e *Event) Text(f event.RawField, col event.Column) (text string, ok bool, err error) {
	if f.Null() {
		return "", false, nil
	}
	if !e.Typed || pgvalue.TypedAsText(col) && f.Value[0] == '"' {
		s, err := f.Text()
		if err != nil {
			return "", false, fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", f.Name, err)
		}
		return s, true, nil
	}
	s, err := pgvalue.EncodeJSON(f.Value, col)
	if err != nil {
		return "", false, fmt.Errorf("column %q: %w", f.Name, err)
	}
	return s, true, nil
}

// Value returns the JSON value that stores text in this event's form: a
// JSON string for raw events, the typed value for typed ones.
func (e *Event) Value(text string, col event.Column) ([]byte, error) {
	buf := make([]byte, 0, len(text)+len(text)/8+8)
	if !e.Typed {
		return event.AppendJSONString(buf, text), nil
	}
	return pgvalue.AppendTyped(buf, text, col)
}

// Decode turns a raw event into a typed one (pg_flo_decode). A typed event
// is left as it is; on an error the event is unchanged.
func (e *Event) Decode() error {
	if e.Typed {
		return nil
	}
	size := 0
	for _, row := range []event.RawRow{e.New, e.Old} {
		for _, f := range row {
			size += len(f.Value) + 8
		}
	}
	buf := make([]byte, 0, size)
	var endsArray [64]int
	ends := endsArray[:0] // where each non-NULL value's typed JSON ends in buf
	for _, row := range []event.RawRow{e.New, e.Old} {
		for i := range row {
			f := &row[i]
			if f.Null() {
				continue
			}
			col, _ := e.Column(f.Name)
			if pgvalue.TypedAsText(col) && f.Value[0] == '"' {
				// The typed value is the same JSON string.
				buf = append(buf, f.Value...)
				ends = append(ends, len(buf))
				continue
			}
			text, err := f.Text()
			if err != nil {
				return fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", f.Name, err)
			}
			if buf, err = pgvalue.AppendTyped(buf, text, col); err != nil {
				return fmt.Errorf("column %q: %w", f.Name, err)
			}
			ends = append(ends, len(buf))
		}
	}
	start := 0
	for _, row := range []event.RawRow{e.New, e.Old} {
		for i := range row {
			if row[i].Null() {
				continue
			}
			end := ends[0]
			ends = ends[1:]
			row[i].Value = buf[start:end:end]
			start = end
		}
	}
	e.Typed = true
	e.MarkEdited()
	return nil
}
