// Package shutdown tells a pipeline's output that its input was asked to
// stop. Benthos' graceful stop tells only the input (it stops reading) and
// then waits for the output to finish what it holds, until three quarters
// of shutdown_timeout have passed; an output still retrying a batch then —
// waiting for a target that is down, for a lock, for room in a full stream —
// holds the process for that whole time, and the batch is abandoned anyway.
// With the signal, pgflo's inputs say at once that the pipeline is stopping
// and pgflo's outputs give such a batch up, failed: the input hands it back
// (to JetStream, or to the slot) and the process ends promptly, with nothing
// lost.
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

// Signal is fired once, when the pipeline's input was asked to stop.
type Signal struct {
	ctx  context.Context // done once fired
	fire context.CancelFunc
}

// Store is where a pipeline's components share values: Benthos'
// service.Resources (GetOrSetGeneric), which the input and the output of a
// config share.
type Store interface {
	GetOrSetGeneric(key, value any) (actual any, loaded bool)
}

type signalKey struct{}

// Of returns the signal of the pipeline whose components share store.
func Of(store Store) *Signal {
	s, _ := store.GetOrSetGeneric(signalKey{}, New())
	return s.(*Signal)
}

// New returns a signal not yet fired.
func New() *Signal {
	ctx, fire := context.WithCancel(context.Background())
	return &Signal{ctx: ctx, fire: fire}
}

// FireOnDone fires the signal once ctx is done: the context Benthos reads an
// input with ends when the input is asked to stop.
func (s *Signal) FireOnDone(ctx context.Context) {
	context.AfterFunc(ctx, s.fire)
}

// Fire fires the signal; firing it again does nothing.
func (s *Signal) Fire() { s.fire() }

// Done is closed once the signal fired.
func (s *Signal) Done() <-chan struct{} { return s.ctx.Done() }

// Fired reports whether the signal fired.
func (s *Signal) Fired() bool { return s.ctx.Err() != nil }

// Context returns ctx, cancelled as well grace after the signal fired: work
// that is merely slow gets grace to finish, work that is stuck is given up.
// It costs no goroutine until the signal fires.
func (s *Signal) Context(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, func() { time.AfterFunc(grace, cancel) })
	return ctx, func() { stop(); cancel() }
}
