// Package packmsg handles Benthos messages that hold a copy pack of snapshot
// rows (internal/copypack) instead of one change event: recognising them and
// expanding them into one event message per row, for every component that
// needs events (pg_flo_worker by default, pg_flo_replicator with
// snapshot_packs: expand, pgflo's processors). The messages of an expanded
// pack keep the pack in their context, so an output that copies snapshot
// rows (pg_flo_postgres) takes the pack instead of the events when it gets
// every row of it unchanged (Run).
package packmsg

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

// Rows returns the number of rows of a pack message, 0 for any other.
func Rows(msg *service.Message) int {
	v, ok := msg.MetaGet(event.MetaPackRows)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// Has reports whether the batch holds a pack message.
func Has(batch service.MessageBatch) bool {
	for _, m := range batch {
		if _, ok := m.MetaGet(event.MetaPackRows); ok {
			return true
		}
	}
	return false
}

// Expand returns the batch with every pack message replaced by its rows'
// event messages, in order; other messages are kept as they are. A pack
// that cannot be read becomes one message flagged with the error, so it is
// not lost silently. A batch without packs is returned as it is.
func Expand(batch service.MessageBatch) service.MessageBatch {
	if !Has(batch) {
		return batch
	}
	out := make(service.MessageBatch, 0, len(batch))
	for _, m := range batch {
		if _, ok := m.MetaGet(event.MetaPackRows); !ok {
			out = append(out, m)
			continue
		}
		events, err := ExpandOne(m)
		if err != nil {
			m.SetError(err)
			out = append(out, m)
			continue
		}
		out = append(out, events...)
	}
	return out
}

// ExpandOne returns the event messages of a pack message: each with the
// pack's metadata, pg_flo_tx_pos set to the row's position and
// pg_flo_pack_rows removed.
func ExpandOne(m *service.Message) (service.MessageBatch, error) {
	body, err := m.AsBytes()
	if err != nil {
		return nil, err
	}
	p, err := copypack.Parse(body)
	if err != nil {
		return nil, err
	}
	if declared, _ := m.MetaGet(event.MetaPackRows); declared != strconv.Itoa(p.N) {
		return nil, fmt.Errorf("%w: metadata %s=%v, the pack holds %d rows", copypack.ErrMalformed, event.MetaPackRows, declared, p.N)
	}
	return ExpandPack(m, p)
}

// ExpandPack is ExpandOne for a pack message whose body the caller parsed
// already (as p). It runs for every snapshot row, so it keeps the work per
// row to the message itself: the events are carved from one buffer
// (copypack.Pack.Events), the positions from one string, and the rows share
// the pack's metadata until their position is set.
func ExpandPack(m *service.Message, p *copypack.Pack) (service.MessageBatch, error) {
	events, err := p.Events()
	if err != nil {
		return nil, err
	}
	var positions []string
	if v, ok := m.MetaGet(event.MetaTxPos); ok {
		if first, err := strconv.ParseUint(v, 10, 64); err == nil {
			positions = Positions(first, len(events))
		}
	}
	// The template's metadata, copied once; each row's copy shares it until
	// its position is written. Its context, which every row shares, holds
	// the pack (see Run).
	tmpl := m.Copy()
	tmpl.MetaDelete(event.MetaPackRows)
	tmpl = tmpl.WithContext(context.WithValue(tmpl.Context(), originKey{}, &origin{pack: p, events: events}))
	out := make(service.MessageBatch, len(events))
	for i, ev := range events {
		e := tmpl.Copy()
		e.SetBytes(ev)
		if positions != nil {
			e.MetaSetMut(event.MetaTxPos, positions[i])
		}
		out[i] = e
	}
	return out, nil
}

// Positions returns the decimal texts of first, first+1, ..., first+n-1,
// carved from one string.
func Positions(first uint64, n int) []string {
	if n <= 0 {
		return nil
	}
	width := len(strconv.FormatUint(first+uint64(n-1), 10))
	buf := make([]byte, 0, n*width)
	ends := make([]int, n)
	for i := range n {
		buf = strconv.AppendUint(buf, first+uint64(i), 10)
		ends[i] = len(buf)
	}
	all := string(buf)
	out := make([]string, n)
	start := 0
	for i, end := range ends {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// origin is what the messages of one expanded pack share through their
// context: the pack, and the event bodies its rows were given.
type origin struct {
	pack   *copypack.Pack
	events [][]byte
}

// originKey is the context key of an origin.
type originKey struct{}

// Run returns the pack that batch[i:] starts with, expanded: the messages
// ExpandPack made of it, every row, in order, each still holding the very
// event body it was given (the same memory, so no processor replaced it)
// and no error. It returns nil when batch[i] is not such a run (not a row of
// an expanded pack, rows filtered, reordered, split across batches or
// rewritten), and the caller then takes the messages as the events they
// hold. The rows' metadata is the caller's to compare.
func Run(batch service.MessageBatch, i int) (*copypack.Pack, int) {
	o, _ := batch[i].Context().Value(originKey{}).(*origin)
	if o == nil || len(batch)-i < len(o.events) {
		return nil, 0
	}
	for j, ev := range o.events {
		m := batch[i+j]
		body, err := m.AsBytes()
		if err != nil || len(body) != len(ev) || len(ev) == 0 || &body[0] != &ev[0] || m.GetError() != nil {
			return nil, 0
		}
	}
	return o.pack, len(o.events)
}
