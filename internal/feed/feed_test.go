package feed

import (
	"context"
	"testing"
)

func unit(events int, snapshot bool) *Unit {
	return &Unit{Events: make([]Encoded, events), Snapshot: snapshot}
}

// A batch holds units of a snapshot copy or streamed units, never both, so
// every row of a copy is delivered before the changes streamed after it.
func TestBatchesNeverMixCopyAndStream(t *testing.T) {
	f := New(100)
	ctx := context.Background()
	for _, u := range []*Unit{unit(3, true), unit(2, true), unit(4, false), unit(1, false), unit(5, true), unit(2, false)} {
		if err := f.Push(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{5, 5, 5, 2} {
		b, err := f.Next(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Events) != want {
			t.Fatalf("batch of %d events, want %d", len(b.Events), want)
		}
	}
	if !f.Empty() {
		t.Fatal("units left")
	}
}
