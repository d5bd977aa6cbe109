package feed

import (
	"context"
	"sync"
	"time"
)

// queue hands units from the replication loop to the reader. It is bounded by
// the number of events it holds (one unit is always accepted when it is
// empty, so a unit larger than the bound cannot deadlock), which is what
// bounds the replicator's memory and gives backpressure from the output.
type queue struct {
	mu        sync.Mutex
	units     []*Unit
	events    int
	maxEvents int
	err       error

	notEmpty chan struct{}
	notFull  chan struct{}
}

func newQueue(maxEvents int) *queue {
	return &queue{maxEvents: maxEvents, notEmpty: make(chan struct{}, 1), notFull: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push adds u, waiting at most wait for room. It reports false when there
// was no room in time, so the caller can keep the replication connection
// alive and try again.
func (q *queue) push(ctx context.Context, u *Unit, wait time.Duration) (bool, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		q.mu.Lock()
		if n := u.Count(); len(q.units) == 0 || q.events+n <= q.maxEvents {
			q.units = append(q.units, u)
			q.events += n
			q.mu.Unlock()
			signal(q.notEmpty)
			return true, nil
		}
		q.mu.Unlock()
		select {
		case <-q.notFull:
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// fail makes every later pop return err once the queue is drained.
func (q *queue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	signal(q.notEmpty)
}

// pop waits for at least one unit and returns as many queued units as fit in
// maxEvents (always at least one).
func (q *queue) pop(ctx context.Context, maxEvents int) ([]*Unit, error) {
	for {
		q.mu.Lock()
		if len(q.units) > 0 {
			n, events := 0, 0
			for n < len(q.units) {
				c := q.units[n].Count()
				// A copy's rows and streamed changes go in separate
				// batches: the reader delivers one batch at a time and
				// acknowledges it once stored downstream, so every row
				// of a copy is stored before a change streamed after its
				// snapshot is sent, however a batch's messages are
				// stored out of order (a full JetStream stream rejects
				// some, and they are sent again). pg_flo_postgres relies
				// on that order to tell a late snapshot row.
				if n > 0 && (events+c > maxEvents || q.units[n].Snapshot != q.units[0].Snapshot) {
					break
				}
				events += c
				n++
			}
			out := make([]*Unit, n)
			copy(out, q.units)
			q.units = q.units[n:]
			q.events -= events
			if len(q.units) > 0 {
				signal(q.notEmpty)
			}
			q.mu.Unlock()
			signal(q.notFull)
			return out, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-q.notEmpty:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// empty reports whether the reader has taken everything pushed.
func (q *queue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.units) == 0
}
