package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pgflo/pgflo/internal/event"
)

// Feed is a batch of changes handed to ApplyFeed while it is still being
// decoded: the applier starts the transaction, and streams a leading run of
// INSERTs into COPY, while the rest of the batch is decoded. A Feed is
// filled by one goroutine (Add, Fail) and read by the applier.
type Feed struct {
	mu      sync.Mutex
	cond    sync.Cond
	changes []*Change
	total   int
	err     error
}

// NewFeed returns a feed of total changes.
func NewFeed(total int) *Feed {
	f := &Feed{total: total, changes: make([]*Change, 0, total)}
	f.cond.L = &f.mu
	return f
}

// FeedOf returns a complete feed of changes.
func FeedOf(changes []*Change) *Feed {
	f := NewFeed(len(changes))
	f.changes = append(f.changes, changes...)
	return f
}

// Add hands over the next change.
func (f *Feed) Add(ch *Change) {
	f.mu.Lock()
	f.changes = append(f.changes, ch)
	f.mu.Unlock()
	f.cond.Broadcast()
}

// Fail ends the feed: the batch cannot be decoded.
func (f *Feed) Fail(err error) {
	f.mu.Lock()
	f.err = &feedError{err}
	f.mu.Unlock()
	f.cond.Broadcast()
}

// feedError is a batch's decoding failure: no retry helps.
type feedError struct{ err error }

func (e *feedError) Error() string { return e.err.Error() }
func (e *feedError) Unwrap() error { return e.err }

// wait returns change i once decoded; nil past the end or after a failure
// (which all reports).
func (f *Feed) wait(i int) *Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i >= len(f.changes) && f.err == nil && len(f.changes) < f.total {
		f.cond.Wait()
	}
	if i < len(f.changes) {
		return f.changes[i]
	}
	return nil
}

// all waits for every change.
func (f *Feed) all() ([]*Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.err == nil && len(f.changes) < f.total {
		f.cond.Wait()
	}
	return f.changes, f.err
}

// streamInserts writes the run of INSERTs of one table starting at the
// feed's index from, as they are decoded, and returns how many changes of
// the feed it took (n), the changes (rows) it wrote (done) and how many it
// left out as already applied by the progress table (skipped). A run of
// INSERT events (all with the same columns) is written with one COPY; for a
// table with a key the COPY runs under a savepoint, and when a row already
// exists it is rolled back and 0 returned: the changes then go through the
// planner (upserts). Copy packs are written by streamPacks.
func (a *Applier) streamInserts(ctx context.Context, b *batchTx, f *Feed, from int) (n int, done []*Change, skipped int, err error) {
	first := f.wait(from)
	if first == nil || first.Op != event.Insert {
		return 0, nil, 0, nil
	}
	if first.Snapshot && a.applied(first, b.at) {
		// Late snapshot rows: the planner leaves them out (see applied).
		return 0, nil, 0, nil
	}
	if first.Target.Name == "" {
		first.Target = a.Target(first.Schema, first.Table)
	}
	t, err := a.table(ctx, first)
	if err != nil {
		return 0, nil, 0, err
	}
	if first.Pack != nil {
		n, done, err := a.streamPacks(ctx, b, f, from, first, t)
		return n, done, 0, err
	}
	if a.noCopyBatches[t.Name] > 0 {
		return 0, nil, 0, nil
	}
	_, has, err := rowValues(t, first.New)
	if err != nil {
		return 0, nil, 0, nil // the planner reports it
	}
	cols := presentColumns(has, t, false)
	// at[j] is the position in the event's row of cols[j].
	at := make([]int, len(cols))
	for j, c := range cols {
		for pos, v := range first.New {
			if v.Name == t.Columns[c].Name {
				at[j] = pos
			}
		}
	}
	same := func(ch *Change) bool {
		if ch == nil || ch.Op != event.Insert || ch.Pack != nil || ch.Schema != first.Schema || ch.Table != first.Table ||
			(ch.Target.Name != "" && ch.Target != first.Target) || len(ch.New) != len(first.New) {
			return false
		}
		for i := range ch.New {
			if ch.New[i].Name != first.New[i].Name {
				return false
			}
		}
		return true
	}
	// Worth a COPY only when the run is long (and a stray INSERT before
	// other changes stays with them).
	for i := 1; i < a.cfg.CopyMinRows; i++ {
		if !same(f.wait(from + i)) {
			return 0, nil, 0, nil
		}
	}
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 0, 64<<10)
		for i := from; ; i++ {
			ch := f.wait(i)
			if !same(ch) {
				break
			}
			if ch.Target.Name == "" {
				ch.Target = first.Target
			}
			if !a.applied(ch, b.at) {
				done = append(done, ch)
				buf = appendCopyRow(buf, ch.New, at)
			}
			n++
			if len(buf) >= 32<<10 {
				if _, err := pw.Write(buf); err != nil {
					return
				}
				buf = buf[:0]
			}
		}
		if len(buf) > 0 {
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	ok, err := a.copyFrom(ctx, b.tx, t, cols, false, pr)
	_ = pr.CloseWithError(errors.New("COPY ended"))
	<-finished
	if err != nil {
		return 0, nil, 0, fmt.Errorf("COPY of %d inserts into %s: %w", n, t.Name, err)
	}
	if !ok {
		return 0, nil, 0, nil
	}
	return n, done, n - len(done), nil
}
