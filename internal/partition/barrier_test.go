package partition

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	n := testenv.StartNATS(t)
	kv, err := state.OpenBucket(context.Background(), n.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

type meeting struct {
	deliver bool
	err     error
}

// meet runs c.Meet in the background.
func meet(c *Coordinator, id BarrierID) <-chan meeting {
	done := make(chan meeting, 1)
	go func() {
		deliver, err := c.Meet(context.Background(), id)
		done <- meeting{deliver, err}
	}()
	return done
}

// pending reports whether a meeting is still waiting (after giving it a
// moment to end, which it must not).
func pending(ch <-chan meeting) bool {
	select {
	case <-ch:
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}

func wait(t *testing.T, ch <-chan meeting) meeting {
	t.Helper()
	select {
	case m := <-ch:
		if m.err != nil {
			t.Fatal(m.err)
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("meeting never ended")
		return meeting{}
	}
}

// A barrier is delivered by partition 0 only once every partition reached
// it; the others go on once it is applied; met again (a redelivery), it is
// skipped.
func TestBarrierDeliveredOnceAllReachedIt(t *testing.T) {
	kv := bucket(t)
	parts := []*Coordinator{NewCoordinator(kv, 3, 0, nil), NewCoordinator(kv, 3, 1, nil), NewCoordinator(kv, 3, 2, nil)}
	b := BarrierID{CommitLSN: 0x1000, Pos: 2}

	p0, p1 := meet(parts[0], b), meet(parts[1], b)
	if !pending(p0) {
		t.Fatal("partition 0 went past the barrier before partition 2 reached it")
	}
	p2 := meet(parts[2], b)
	if m := wait(t, p0); !m.deliver {
		t.Fatal("partition 0 does not deliver the barrier")
	}
	if !pending(p1) || !pending(p2) {
		t.Fatal("a partition went past the barrier before it was applied")
	}
	// Partition 0 dies before its output acknowledged the barrier: started
	// again, it meets the barrier again and delivers it again (an output
	// with a progress table skips it).
	restarted := NewCoordinator(kv, 3, 0, nil)
	if m := wait(t, meet(restarted, b)); !m.deliver {
		t.Fatal("partition 0 does not deliver the barrier after a restart")
	}
	if err := restarted.Applied(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan meeting{p1, p2} {
		if m := wait(t, ch); m.deliver {
			t.Fatal("a partition other than 0 delivers the barrier")
		}
	}
	// Met again after it was applied: skipped at once, by every partition.
	for _, c := range parts {
		if m := wait(t, meet(c, b)); m.deliver {
			t.Fatal("an applied barrier is delivered again")
		}
	}
}

// A sync barrier carries no event: partition 0 records it applied itself,
// and a later barrier is met by partitions that already went past earlier
// ones.
func TestSyncBarrierAndNextBarrier(t *testing.T) {
	kv := bucket(t)
	parts := []*Coordinator{NewCoordinator(kv, 2, 0, nil), NewCoordinator(kv, 2, 1, nil)}
	sync := BarrierID{CommitLSN: 0x2000, Pos: 0, Sync: true}
	p0, p1 := meet(parts[0], sync), meet(parts[1], sync)
	for _, ch := range []<-chan meeting{p0, p1} {
		if m := wait(t, ch); m.deliver {
			t.Fatal("a sync barrier is delivered")
		}
	}
	next := BarrierID{CommitLSN: 0x2000, Pos: 0}
	if !sync.Less(next) {
		t.Fatal("the sync barrier does not come before the event at its position")
	}
	p1 = meet(parts[1], next)
	if !pending(p1) {
		t.Fatal("partition 1 went past the next barrier alone")
	}
	if m := wait(t, meet(parts[0], next)); !m.deliver {
		t.Fatal("partition 0 does not deliver the next barrier")
	}
	if err := parts[0].Applied(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	wait(t, p1)
}

// A meeting ends with its context.
func TestBarrierWaitCancelled(t *testing.T) {
	kv := bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := NewCoordinator(kv, 2, 1, nil).Meet(ctx, BarrierID{CommitLSN: 1})
	if err == nil {
		t.Fatal("a meeting waiting for partition 0 ended without error")
	}
}
