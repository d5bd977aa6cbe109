// Package shutdown tells a pipeline's output that its input was asked to
// stop. Benthos' graceful stop tells only the input (it stops reading) and
// then waits for the output to finish what it holds, until three quarters
// of shutdown_timeout have passed; an output still retrying a batch then —
// waiting for a target that is down, for a lock, for room in a full stream —
// holds the process for that whole time, and the batch is abandoned anyway.
// With the signal, pgflo's inputs say at once that the pipeline is stopping
// and pgflo's outputs give such a batch up, failed: the input hands it back
// (to JetStream, or to the slot) and the process ends promptly, with nothing
// lost. The input and the output find each other by their group; an output
// behind a stock input finds no signal and behaves as Benthos has it.
package shutdown

import (
	"context"
	"errors"
	"time"
)

// Grace is how long a batch an output is still working on when the
// pipeline stops gets to finish (commit, get its acknowledgement) before it
// is given up: far less than Benthos' default shutdown_timeout (20s), so
// the process ends within it.
const Grace = 5 * time.Second

// ErrStopping is returned for a batch an output gave up because the
// pipeline is stopping: the input hands it back, and it is delivered again
// after a restart.
var ErrStopping = errors.New("the pipeline is stopping: batch handed back, delivered again after a restart")

// Signal is fired once, when the pipeline's input was asked to stop. A nil
// Signal (no pgflo input in the pipeline) never fires.
type Signal struct {
	ctx  context.Context // done once fired
	fire context.CancelFunc
}

// Store is where a pipeline's components share values: Benthos'
// service.Resources, which the input and the output of a config share.
type Store interface {
	GetGeneric(key any) (any, bool)
	SetGeneric(key, value any)
}

// signalKey scopes a signal to a replication group: components of several
// pipelines may share a store (Benthos' streams mode).
type signalKey struct{ group string }

// Arm stores a fresh signal for the pipeline of group and returns it. The
// input calls it when it is built, so a pipeline built again (a config
// reload) starts with a signal that has not fired.
func Arm(store Store, group string) *Signal {
	s := New()
	store.SetGeneric(signalKey{group}, s)
	return s
}

// Lookup returns the signal of the pipeline of group, nil when its input is
// not one of pgflo's. An output looks it up for each batch: the input may be
// built after it.
func Lookup(store Store, group string) *Signal {
	if s, ok := store.GetGeneric(signalKey{group}); ok {
		return s.(*Signal)
	}
	return nil
}

// New returns a signal not yet fired.
func New() *Signal {
	ctx, fire := context.WithCancel(context.Background())
	return &Signal{ctx: ctx, fire: fire}
}

// Fire fires the signal; firing it again does nothing.
func (s *Signal) Fire() {
	if s != nil {
		s.fire()
	}
}

// Done is closed once the signal fired (nil, never ready, for a nil Signal).
func (s *Signal) Done() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.ctx.Done()
}

// Fired reports whether the signal fired.
func (s *Signal) Fired() bool { return s != nil && s.ctx.Err() != nil }

// Context returns ctx, cancelled as well grace after the signal fired: work
// that is merely slow gets grace to finish, work that is stuck is given up.
// It costs no goroutine until the signal fires.
func (s *Signal) Context(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	if s == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, func() { time.AfterFunc(grace, cancel) })
	return ctx, func() { stop(); cancel() }
}
