package shutdown

import (
	"context"
	"sync"
	"testing"
	"time"
)

type store struct{ m sync.Map }

func (s *store) GetOrSetGeneric(key, value any) (any, bool) { return s.m.LoadOrStore(key, value) }

// The components sharing a store share one signal, fired when the input's
// read context ends; a context from it ends grace after that, and not
// before.
func TestSignal(t *testing.T) {
	var st store
	in, out := Of(&st), Of(&st)
	if in != out {
		t.Fatal("two signals for one store")
	}
	readCtx, stopReading := context.WithCancel(context.Background())
	in.FireOnDone(readCtx)
	slowCtx, slowDone := out.Context(context.Background(), time.Hour)
	defer slowDone()
	writeCtx, done := out.Context(context.Background(), 0)
	defer done()
	if out.Fired() || writeCtx.Err() != nil || slowCtx.Err() != nil {
		t.Fatal("fired before the input was asked to stop")
	}
	stopReading()
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
}
