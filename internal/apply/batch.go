package apply

import (
	"sync"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
)

// Batch is a batch of changes handed to ApplyBatch while it is still being
// decoded: the applier starts the transaction, and streams a leading run of
// INSERTs into COPY, while the rest of the batch is decoded. A Batch is
// filled by one goroutine (Add, Fail) and read by the applier.
type Batch struct {
	mu      sync.Mutex
	cond    sync.Cond
	changes []*Change
	total   int
	err     error
}

// NewBatch returns an empty batch of total changes, to be filled with Add.
func NewBatch(total int) *Batch {
	b := &Batch{total: total, changes: make([]*Change, 0, total)}
	b.cond.L = &b.mu
	return b
}

// Add hands over the next change.
func (b *Batch) Add(ch *Change) {
	b.mu.Lock()
	b.changes = append(b.changes, ch)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Finish tells that every change was added: a batch may hold fewer changes
// than its total, when several messages made one change (the rows of an
// expanded pack).
func (b *Batch) Finish() {
	b.mu.Lock()
	b.total = len(b.changes)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// size is the batch's number of changes (as far as known, while it is
// decoded), for messages.
func (b *Batch) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Fail ends the batch: it cannot be decoded.
func (b *Batch) Fail(err error) {
	b.mu.Lock()
	b.err = &decodeError{err}
	b.mu.Unlock()
	b.cond.Broadcast()
}

// decodeError is a batch's decoding failure: no retry helps.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// wait returns change i once decoded; nil past the end or after a failure
// (which all reports).
func (b *Batch) wait(i int) *Change {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i >= len(b.changes) && b.err == nil && len(b.changes) < b.total {
		b.cond.Wait()
	}
	if i < len(b.changes) {
		return b.changes[i]
	}
	return nil
}

// all waits for every change.
func (b *Batch) all() ([]*Change, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.changes) < b.total {
		b.cond.Wait()
	}
	return b.changes, b.err
}

// Change is one change event to apply, with where it stands in the stream.
type Change struct {
	event.Event
	// Pos is the event's 0-based position in its transaction (the
	// pg_flo_tx_pos metadata), or -1 when unknown.
	Pos int64
	// Index is the event's position in the batch handed to Apply, for
	// messages.
	Index int
	// Target is the table the change is applied to: the event's schema
	// (through the schema mapping) and table.
	Target TableName
	// Source names the table on the source, when it differs from the event's
	// (routing renamed it): sync_schema reads its definition from there.
	Source TableName
	// Pack, when set, holds snapshot rows as COPY text (a copy pack, see
	// DecodePack): the change stands for an INSERT of each row, the event
	// being their template (New is nil) and Pos the first row's position.
	// Leading runs of packs are written with COPY as they are (see
	// streamPacks); anywhere else a pack is expanded into its rows'
	// INSERTs, which the planner applies.
	Pack *copypack.Pack
	// RowMessages tells that the pack's rows came as one message each (a
	// pack pg_flo_worker expanded into events), row i being the message at
	// Index+i: what is said of a row names its own message.
	RowMessages bool
}

// DecodePack reads the body of a pack message into ch: one change standing
// for the INSERTs (snapshot rows) of all the pack's rows, with New nil. The
// pack shares body's memory. The caller sets Index, Pos (the first row's
// position) and Target, as for an event.
func DecodePack(body []byte, ch *Change) error {
	p, err := copypack.Parse(body)
	if err != nil {
		return err
	}
	ch.SetPack(p)
	return nil
}

// SetPack makes ch the change standing for the INSERTs of every row of p,
// as DecodePack does for a pack it parsed.
func (ch *Change) SetPack(p *copypack.Pack) {
	ch.Event = p.Template()
	ch.Pack = p
}

// Rows returns how many rows the change writes: a pack's rows, else 1.
func (ch *Change) Rows() int {
	if ch.Pack != nil {
		return ch.Pack.N
	}
	return 1
}

// rowsOf returns how many rows changes write.
func rowsOf(changes []*Change) int {
	n := 0
	for _, ch := range changes {
		n += ch.Rows()
	}
	return n
}

// packRowsOf returns how many rows of changes are rows of packs.
func packRowsOf(changes []*Change) int {
	n := 0
	for _, ch := range changes {
		if ch.Pack != nil {
			n += ch.Pack.N
		}
	}
	return n
}

// expand returns the INSERTs of a pack's rows: the change's event with the
// row as New, the same Index, target and source, Pos the first row's plus
// the row's number (-1 when unknown).
func (ch *Change) expand() ([]*Change, error) {
	p := ch.Pack
	out := make([]Change, 0, p.N)
	vals := make([]event.Value, 0, p.N*len(p.Columns))
	err := p.Values(func(i int, row event.Row) error {
		start := len(vals)
		vals = append(vals, row...)
		c := Change{Event: ch.Event, Pos: -1, Index: ch.Index, Target: ch.Target, Source: ch.Source}
		if ch.RowMessages {
			c.Index += i
		}
		c.New = vals[start:len(vals):len(vals)]
		if ch.Pos >= 0 {
			c.Pos = ch.Pos + int64(i)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, changeError(ch, nil, err)
	}
	changes := make([]*Change, len(out))
	for i := range out {
		changes[i] = &out[i]
	}
	return changes, nil
}
