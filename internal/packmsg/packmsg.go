// Package packmsg handles Benthos messages that hold a copy pack of snapshot
// rows (internal/copypack) instead of one change event: recognising them and
// expanding them into one event message per row, for every component that
// needs events (pg_flo_worker by default, pg_flo_replicator with
// snapshot_packs off, pgflo's processors).
package packmsg

import (
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
// not lost silently.
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
	events, err := p.Events()
	if err != nil {
		return nil, err
	}
	first := -1
	if v, ok := m.MetaGet(event.MetaTxPos); ok {
		if n, err := strconv.Atoi(v); err == nil {
			first = n
		}
	}
	out := make(service.MessageBatch, len(events))
	for i, ev := range events {
		e := m.Copy()
		e.SetBytes(ev)
		e.MetaDelete(event.MetaPackRows)
		if first >= 0 {
			e.MetaSetMut(event.MetaTxPos, strconv.Itoa(first+i))
		}
		out[i] = e
	}
	return out, nil
}
