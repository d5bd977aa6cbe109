// Package processors holds pgflo's Benthos processors: pg_flo_decode,
// pg_flo_rules and pg_flo_route, and the Bloblang methods that do the same
// work in a stock mapping. Each is a thin adapter over an engine package
// (internal/change, internal/rules, internal/routing, internal/pgvalue).
package processors

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/packmsg"
)

// editFunc edits one parsed change event; false drops it.
type editFunc func(ev *change.Event) (keep bool, err error)

// keptFunc sees each edited event that stays, with its message.
type keptFunc func(ev *change.Event, msg *service.Message)

// editor runs one processor's edit over batches.
type editor struct {
	log   *service.Logger
	cache *change.Cache
	edit  editFunc
	kept  keptFunc
}

func newEditor(log *service.Logger, edit editFunc, kept keptFunc) *editor {
	return &editor{log: log, cache: change.NewCache(), edit: edit, kept: kept}
}

// parsedKey keys the message context value that hands a parsed event from
// one pgflo processor to the next, so a chain of them parses each event
// once. The value is a *handoff, installed by the first pgflo processor a
// message meets; the next ones swap what it holds, so the message and its
// context are created once per chain, not once per processor.
type parsedKey struct{}

type handoff struct {
	current atomic.Pointer[parsedEvent]
}

// parsedEvent is an event and the exact bytes it was written to. It is
// taken once: copies of a message (branch, broker) share its context, and
// only the first processor to take the event may edit it; the others parse
// their own.
type parsedEvent struct {
	ev    *change.Event
	data  []byte
	taken atomic.Bool
}

// parse returns the message's event: the one the previous pgflo processor
// left when the message still holds exactly the bytes it wrote (Benthos
// never changes a message's bytes in place), else a new parse.
func (e *editor) parse(msg *service.Message, data []byte) (*change.Event, error) {
	if h, ok := msg.Context().Value(parsedKey{}).(*handoff); ok {
		if p := h.current.Load(); p != nil && len(p.data) == len(data) && len(data) > 0 &&
			&p.data[0] == &data[0] && p.taken.CompareAndSwap(false, true) {
			return p.ev, nil
		}
	}
	return change.Parse(data, e.cache)
}

// handOff leaves ev, just written as data, for the next pgflo processor.
func handOff(msg *service.Message, ev *change.Event, data []byte) *service.Message {
	p := &parsedEvent{ev: ev, data: data}
	if h, ok := msg.Context().Value(parsedKey{}).(*handoff); ok {
		h.current.Store(p)
		return msg
	}
	h := &handoff{}
	h.current.Store(p)
	return msg.WithContext(context.WithValue(msg.Context(), parsedKey{}, h))
}

// process parses every message of batch as a change event, edits it and
// writes it back. A message holding packed snapshot rows (pg_flo_replicator
// and pg_flo_worker with packs kept) is first expanded into one event
// message per row (packmsg.Expand), so the edit sees every row. A dropped
// event leaves the batch (Benthos acks it with the rest). A message that is
// not a change event, or whose edit failed, and a pack that cannot be read,
// are kept unchanged and flagged with the error, and the error is logged.
func (e *editor) process(batch service.MessageBatch) []service.MessageBatch {
	packed := packmsg.Has(batch)
	if packed {
		batch = packmsg.Expand(batch)
	}
	out := make(service.MessageBatch, 0, len(batch))
	for _, msg := range batch {
		if packed {
			if _, unread := msg.MetaGet(event.MetaPackRows); unread {
				// Expand flagged it: its rows' events cannot be made.
				out = append(out, e.flag(msg, msg.GetError()))
				continue
			}
		}
		data, err := msg.AsBytes()
		if err != nil {
			out = append(out, e.flag(msg, err))
			continue
		}
		ev, err := e.parse(msg, data)
		if err != nil {
			out = append(out, e.flag(msg, err))
			continue
		}
		edits := ev.Edits()
		keep, err := e.edit(ev)
		if err != nil {
			out = append(out, e.flag(msg, err))
			continue
		}
		if !keep {
			continue
		}
		written := data
		if ev.Edits() != edits {
			written = ev.AppendJSON(make([]byte, 0, len(data)+64))
			msg.SetBytes(written)
		}
		if e.kept != nil {
			e.kept(ev, msg)
		}
		out = append(out, handOff(msg, ev, written))
	}
	if len(out) == 0 {
		return nil
	}
	return []service.MessageBatch{out}
}

// flag marks msg with err and logs it. A half-edited event is never written
// back, so the message is as it came.
func (e *editor) flag(msg *service.Message, err error) *service.Message {
	msg.SetError(err)
	table, _ := msg.MetaGet(event.MetaTable)
	lsn, _ := msg.MetaGet(event.MetaLSN)
	e.log.With("table", table, "lsn", lsn).Error(err.Error())
	return msg
}

// loadSource reads a processor's file field and its inline field (the
// rules or routing YAML) and loads exactly one of them with from.
func loadSource[T any](conf *service.ParsedConfig, fileField, inlineField string, from func(file string, inline any) (T, error)) (T, error) {
	var zero T
	file, err := conf.FieldString(fileField)
	if err != nil {
		return zero, fmt.Errorf("field %s: %w", fileField, err)
	}
	var inline any
	if conf.Contains(inlineField) {
		if inline, err = conf.FieldAny(inlineField); err != nil {
			return zero, fmt.Errorf("field %s: %w", inlineField, err)
		}
	}
	return from(file, inline)
}

// fromFileOrInline loads from a file or an inline value, exactly one of
// which must be given (errBoth otherwise).
func fromFileOrInline[T any](file string, inline any, errBoth error, loadFile func(string) (T, error), loadInline func(any, string) (T, error), inlineName string) (T, error) {
	var zero T
	switch {
	case (file == "") == (inline == nil):
		return zero, errBoth
	case file != "":
		return loadFile(file)
	}
	return loadInline(inline, inlineName)
}
