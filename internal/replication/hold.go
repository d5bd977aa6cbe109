package replication

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// Hold keeps a stream from delivering transactions that commit at or after
// At until it is released, and says when the stream has delivered every
// transaction committed before At. A resumed snapshot copy needs both: its
// rows are read under a snapshot at At, so the changes committed before At
// must reach the output before them, and the later ones after them; each row
// then only moves forward on the target.
type Hold struct {
	At pglogrepl.LSN
	// Watch, when set, is shown every change of the transactions committed
	// before At, as decoded (valid only during the call).
	Watch func(*event.Event)

	reachOnce   sync.Once
	reached     chan struct{}
	releaseOnce sync.Once
	released    chan struct{}
}

// NewHold returns a hold at lsn.
func NewHold(lsn pglogrepl.LSN) *Hold {
	return &Hold{At: lsn, reached: make(chan struct{}), released: make(chan struct{})}
}

// Reached is closed once every transaction committed before At was queued.
func (h *Hold) Reached() <-chan struct{} { return h.reached }

// Release lets the stream deliver the transactions from At on.
func (h *Hold) Release() { h.releaseOnce.Do(func() { close(h.released) }) }

// watch shows events of a transaction committing at lsn to Watch.
func (h *Hold) watch(lsn pglogrepl.LSN, events []*event.Event) {
	if h == nil || h.Watch == nil || lsn >= h.At {
		return
	}
	for _, ev := range events {
		h.Watch(ev)
	}
}

// passed notes that the stream is at lsn: at a transaction's begin (which
// carries its commit position) or between transactions (a keepalive's WAL
// end: everything before it was decoded and sent).
func (h *Hold) passed(lsn pglogrepl.LSN) bool {
	if lsn < h.At {
		return false
	}
	h.reachOnce.Do(func() { close(h.reached) })
	return true
}

// wait blocks a transaction committing at lsn until the hold is released,
// sending status updates meanwhile so the server keeps the connection.
func (s *Stream) wait(ctx context.Context, st *loopState, lsn pglogrepl.LSN) error {
	h := s.cfg.Hold
	if h == nil || !h.passed(lsn) {
		return nil
	}
	select {
	case <-h.released:
		return nil
	default:
	}
	s.cfg.Logger.Infof("holding the stream at %s until the resumed snapshot copy, taken there, is delivered", h.At)
	tick := time.NewTicker(s.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.released:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := s.sendStatus(ctx, st, false); err != nil {
				return err
			}
		}
	}
}
