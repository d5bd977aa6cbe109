// Package feed is the bounded hand-off between the producers of change
// events (the slot stream, the snapshot copy workers) and the reader that
// turns them into Benthos batches: encoded events grouped in units, a queue
// bounded by events that gives backpressure, and the batches it yields.
package feed

import (
	"context"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// UnitEvents is the most events one unit holds. Units are cut at multiples
// of it within a transaction, so the positions where a transaction is split
// are the same on every replay: JetStream de-duplication ids, derived from
// positions, then stay stable (internal/jsproto's PackWindow is this).
const UnitEvents = 1024

// Encoded is one change event, encoded, with the fields Benthos metadata
// carries; or, when Rows > 0, a pack of that many snapshot rows
// (internal/copypack) whose first row is at position Pos.
type Encoded struct {
	JSON   []byte
	Rows   int
	Op     event.Op
	Schema string
	Table  string
	LSN    string
	// Tx identifies the event's transaction (its commit LSN) and Pos its
	// position in it.
	Tx  string
	Pos int
	// Hashed marks a row change whose partitioning hashes were computed
	// (internal/partition.EventHashes): KeyHash, and NewKeyHash when Moved
	// (an UPDATE changed the key).
	Hashed, Moved       bool
	KeyHash, NewKeyHash uint64
}

// Count is the number of events e stands for.
func (e *Encoded) Count() int { return max(e.Rows, 1) }

// Unit is a run of consecutive events of one transaction: the whole
// transaction, or a piece of at most UnitEvents of a larger one.
type Unit struct {
	Events []Encoded
	// EndLSN is set on a transaction's last unit: the end of its commit
	// record, where the slot may be confirmed once the unit is acknowledged.
	EndLSN pglogrepl.LSN
	// Chunk is set on a snapshot chunk's last unit: the chunk is copied
	// once the unit is acknowledged.
	Chunk *ChunkRef
	// Snapshot marks the units of a snapshot copy. A batch never holds
	// both these and streamed units (see queue.pop).
	Snapshot bool
}

// Count is the number of events the unit stands for (a pack counts its rows).
func (u *Unit) Count() int {
	n := 0
	for i := range u.Events {
		n += u.Events[i].Count()
	}
	return n
}

// ChunkRef names a snapshot chunk.
type ChunkRef struct {
	Schema, Table string
	// ID is the chunk's id in the plan, or KeysChunk.
	ID int
}

// KeysChunk is the ID of the ChunkRef ending the rows of a table that a
// resumed copy read again by key (state.Table.Reread).
const KeysChunk = -1

// Batch is what Next returns: whole units, in queue order, all of a
// snapshot copy or all streamed.
type Batch struct {
	Events []Encoded
	// Checkpoint is the highest EndLSN of the batch's units (0 when the
	// batch completes no transaction): pass it to Ack once the batch is
	// delivered.
	Checkpoint pglogrepl.LSN
	// Chunks are the snapshot chunks the batch completes.
	Chunks []ChunkRef
}

// Feed queues units from any number of producers for one reader.
type Feed struct {
	q *queue
}

// New returns a feed holding at most maxEvents queued events (and always at
// least one unit).
func New(maxEvents int) *Feed {
	return &Feed{q: newQueue(maxEvents)}
}

// Push queues u, waiting for room as long as ctx allows.
func (f *Feed) Push(ctx context.Context, u *Unit) error {
	for {
		ok, err := f.q.push(ctx, u, time.Hour)
		if err != nil || ok {
			return err
		}
	}
}

// TryPush queues u, waiting at most wait for room; it reports false when
// there was none, so a producer can do other duties (keepalives) meanwhile.
func (f *Feed) TryPush(ctx context.Context, u *Unit, wait time.Duration) (bool, error) {
	return f.q.push(ctx, u, wait)
}

// Fail makes Next return err once everything queued is read.
func (f *Feed) Fail(err error) { f.q.fail(err) }

// Empty reports whether the reader has taken everything queued.
func (f *Feed) Empty() bool { return f.q.empty() }

// Next waits for events and returns whole units holding at most maxEvents
// events (or one unit, when that alone is larger). Once the feed has failed
// and is drained, it returns the failure.
func (f *Feed) Next(ctx context.Context, maxEvents int) (*Batch, error) {
	units, err := f.q.pop(ctx, maxEvents)
	if err != nil {
		return nil, err
	}
	b := &Batch{}
	n := 0
	for _, u := range units {
		n += len(u.Events)
	}
	b.Events = make([]Encoded, 0, n)
	for _, u := range units {
		b.Events = append(b.Events, u.Events...)
		if u.EndLSN > b.Checkpoint {
			b.Checkpoint = u.EndLSN
		}
		if u.Chunk != nil {
			b.Chunks = append(b.Chunks, *u.Chunk)
		}
	}
	return b, nil
}

// Arena hands out encoded events carved from shared chunks: one allocation
// per chunk instead of one (or several, as the buffer grows) per event.
type Arena struct {
	chunk []byte
}

const arenaChunk = 256 << 10

func (a *Arena) Encode(ev *event.Event) []byte {
	if cap(a.chunk)-len(a.chunk) < 4<<10 {
		a.chunk = make([]byte, 0, arenaChunk)
	}
	// An event larger than the room left makes append move to a bigger
	// array; events handed out before keep pointing at the old one.
	start := len(a.chunk)
	a.chunk = ev.AppendJSON(a.chunk)
	return a.chunk[start:len(a.chunk):len(a.chunk)]
}
