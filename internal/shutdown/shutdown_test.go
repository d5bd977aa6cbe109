package shutdown

import (
	"context"
	"sync"
	"testing"
	"time"
)

type store struct{ m sync.Map }

func (s *store) GetGeneric(key any) (any, bool) { return s.m.Load(key) }
func (s *store) SetGeneric(key, value any)      { s.m.Store(key, value) }

// The output finds the signal its group's input armed; a context from it
// ends grace after the signal fired, and not before; a pipeline built again
// starts with a signal not fired; another group's is its own.
func TestSignal(t *testing.T) {
	var st store
	if s := Lookup(&st, "g"); s != nil || s.Fired() {
		t.Fatal("a signal without an input")
	}
	in := Arm(&st, "g")
	out := Lookup(&st, "g")
	if in != out {
		t.Fatal("the output does not find the input's signal")
	}
	slowCtx, slowDone := out.Context(context.Background(), time.Hour)
	defer slowDone()
	writeCtx, done := out.Context(context.Background(), 0)
	defer done()
	if out.Fired() || writeCtx.Err() != nil || slowCtx.Err() != nil {
		t.Fatal("fired before the input was asked to stop")
	}
	in.Fire()
	<-out.Done()
	select {
	case <-writeCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not cancelled after its grace")
	}
	if slowCtx.Err() != nil {
		t.Fatal("a write was cancelled before its grace passed")
	}
	in.Fire() // again: nothing happens

	if Arm(&st, "g"); Lookup(&st, "g").Fired() {
		t.Fatal("a pipeline built again starts stopped")
	}
	if Lookup(&st, "other") != nil {
		t.Fatal("another group shares the signal")
	}
}
