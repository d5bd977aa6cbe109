package inputs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/consumer"
	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/packmsg"
)

// pg_flo_worker with on_error: dead_letter. A poison message — one that is
// not valid (found here, when unpacking) or a change the output reports it
// can never apply (a deadletter.Rejection in its batch error) — is stored in
// the group's dead-letter stream, then the batch is delivered again without
// it: nothing of a rejected batch was committed, so every other change is
// applied once, in order, and the original is acknowledged with its batch,
// after its dead letter was stored. A worker that dies in between finds the
// change poisonous again and stores it again (the dead-letter stream's
// duplicate window drops the copy when it comes soon enough).

// deadLetters is the dead-letter state of a worker.
type deadLetters struct {
	count *service.MetricCounter // pg_flo_dead_letters_total{reason}

	mu sync.Mutex
	// ready is set once the dead-letter stream is known to exist.
	ready bool
	// skip holds the changes stored as dead letters whose originals are
	// not acknowledged yet: they are left out when their messages come
	// again. Unpacking may run ahead, on the consumer's goroutine, hence
	// the mutex.
	skip map[deadKey]struct{}
}

// deadKey names a dead letter's original: a message by its stream
// sequence, and the event in it (-1: the whole message).
type deadKey struct {
	seq   uint64
	event int
}

// origin is where a message of a batch came from.
type origin struct {
	msg   jetstream.Msg
	seq   uint64
	event int    // the event's place in msg; -1: msg as a whole (a kept copy pack)
	body  []byte // the event, for event >= 0
	pack  bool   // the message is a kept copy pack
}

// skips reports whether the change was stored as a dead letter and is to be
// left out; false on a worker without dead letters (d nil).
func (d *deadLetters) skips(seq uint64, event int) bool {
	if d == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.skip[deadKey{seq, event}]
	return ok
}

// skipsRows reports whether a row of the copy pack of stream sequence seq
// was stored as a dead letter.
func (d *deadLetters) skipsRows(seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.skip {
		if k.seq == seq && k.event >= 0 {
			return true
		}
	}
	return false
}

// packOrigins returns the messages of a copy pack (the pack kept whole, or
// its rows) but those stored as dead letters, and where each came from. A
// kept pack one of whose rows is a dead letter goes as its other rows'
// events.
func (w *workerInput) packOrigins(m jetstream.Msg, seq uint64, rows service.MessageBatch) (service.MessageBatch, []origin) {
	kept := w.keepPacks
	if kept && w.dead.skipsRows(seq) {
		if expanded, err := packmsg.ExpandOne(rows[0]); err == nil {
			rows, kept = expanded, false
		}
	}
	batch := make(service.MessageBatch, 0, len(rows))
	origins := make([]origin, 0, len(rows))
	for i, row := range rows {
		event := i
		if kept {
			event = -1
		}
		if w.dead.skips(seq, event) {
			continue
		}
		o := origin{msg: m, seq: seq, event: event, pack: kept}
		if event >= 0 {
			o.body, _ = row.AsBytes()
		}
		batch, origins = append(batch, row), append(origins, o)
	}
	return batch, origins
}

// deadLetterBatch unpacks a batch, stores what is malformed as dead
// letters and returns the rest with an ack function that turns rejections
// into dead letters. It returns a nil batch when nothing was left (the
// batch was acknowledged).
func (w *workerInput) deadLetterBatch(ctx context.Context, b *consumer.Batch) (service.MessageBatch, service.AckFunc, error) {
	msgs, origins, letters := w.unpackAll(b.Msgs)
	if err := w.storeDead(ctx, letters); err != nil {
		_ = b.Done(err) // handed back: unpacked and stored again next
		return nil, nil, err
	}
	if len(msgs) == 0 {
		if err := w.done(b); err != nil {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	// Indexes survive the processors, which may drop, add and reorder
	// messages, so the output's batch error finds its originals.
	index := msgs.Index()
	return msgs, func(ctx context.Context, res error) error {
		if res == nil {
			return w.done(b)
		}
		letters, ok := rejected(res, index, origins)
		if !ok {
			return workerErr(b.Done(res))
		}
		if err := w.storeDead(ctx, letters); err != nil {
			return workerErr(b.Done(err))
		}
		w.log.Debugf("Reading the batch of %d messages again without its %d dead letters", len(b.Msgs), len(letters))
		return workerErr(b.Redeliver())
	}, nil
}

// done acknowledges a batch: its dead letters' originals with it, which
// are then forgotten (what follows in the stream may hold more of them: the
// batch delivered again need not end where the rejected one did).
func (w *workerInput) done(b *consumer.Batch) error {
	if err := b.Done(nil); err != nil {
		return workerErr(err)
	}
	var last uint64
	for _, m := range b.Msgs {
		if meta, err := m.Metadata(); err == nil {
			last = max(last, meta.Sequence.Stream)
		}
	}
	d := w.dead
	d.mu.Lock()
	for k := range d.skip {
		if k.seq <= last {
			delete(d.skip, k)
		}
	}
	d.mu.Unlock()
	return nil
}

// rejected returns the dead letters of a failed batch: the messages the
// output's batch error names with a deadletter.Rejection. It reports false
// when the error is anything else, or names a message it cannot trace back,
// so the batch is delivered again as a whole.
func rejected(res error, index *service.Indexer, origins []origin) ([]*deadletter.Letter, bool) {
	var batchErr *service.BatchError
	if !errors.As(res, &batchErr) || batchErr.IndexedErrors() == 0 {
		return nil, false
	}
	var letters []*deadletter.Letter
	seen := map[int]bool{}
	ok := true
	batchErr.WalkMessagesIndexedBy(index, func(i int, m *service.Message, err error) bool {
		if err == nil {
			return true
		}
		var rej *deadletter.Rejection
		if !errors.As(err, &rej) || i < 0 || i >= len(origins) {
			ok = false
			return false
		}
		if seen[i] {
			return true
		}
		seen[i] = true
		o := origins[i]
		l := &deadletter.Letter{
			Reason: rej.Reason, Err: rej.Err.Error(), Subject: o.msg.Subject(), StreamSeq: o.seq, Event: o.event,
			Table: rej.Table, Key: rej.Key, LSN: rej.LSN, Body: o.body,
		}
		switch {
		case o.pack && rej.Row >= 0:
			// One row of a pack of snapshot rows: that row's event alone.
			rows, err := packmsg.ExpandOne(m)
			if err != nil || rej.Row >= len(rows) {
				ok = false
				return false
			}
			l.Event = rej.Row
			l.Body, _ = rows[rej.Row].AsBytes()
		case o.event < 0:
			l.Header, l.Body = o.msg.Headers(), o.msg.Data()
		}
		letters = append(letters, l)
		return true
	})
	return letters, ok && len(letters) > 0
}

// deadLetterTimeout bounds storing a batch's dead letters.
const deadLetterTimeout = 30 * time.Second

// storeDead stores letters in the group's dead-letter stream (created when
// first needed, with the group stream's replicas), counts them, and leaves
// their originals out from now on.
func (w *workerInput) storeDead(ctx context.Context, letters []*deadletter.Letter) error {
	if len(letters) == 0 {
		return nil
	}
	js := w.consumer.JetStream()
	if js == nil {
		return service.ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	d := w.dead
	d.mu.Lock()
	ready := d.ready
	d.mu.Unlock()
	if !ready {
		w.mu.Lock()
		replicas := w.replicas
		w.mu.Unlock()
		if err := deadletter.Ensure(ctx, js, w.group, replicas); err != nil {
			return fmt.Errorf("pg_flo_worker: %w", err)
		}
		d.mu.Lock()
		d.ready = true
		d.mu.Unlock()
	}
	for _, l := range letters {
		stored, err := deadletter.Publish(ctx, js, w.group, l)
		if err != nil {
			return fmt.Errorf("pg_flo_worker: %w", err)
		}
		d.mu.Lock()
		d.skip[deadKey{l.StreamSeq, l.Event}] = struct{}{}
		d.mu.Unlock()
		if !stored {
			continue // stored before, by a worker that stopped before its batch was acknowledged
		}
		if d.count != nil {
			d.count.Incr(1, string(l.Reason))
		}
		where := "stream sequence " + strconv.FormatUint(l.StreamSeq, 10)
		if l.Event >= 0 {
			where += ", event " + strconv.Itoa(l.Event)
		}
		w.log.With("table", l.Table, "key", l.Key, "lsn", l.LSN, "subject", l.Subject, "reason", string(l.Reason)).
			Errorf("Stored a poison change (%s) in the dead-letter stream %s; the group goes on without it: %s", where, deadletter.StreamName(w.group), l.Err)
	}
	return nil
}
