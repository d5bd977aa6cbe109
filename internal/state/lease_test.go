package state

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/testenv"
)

func openStore(t *testing.T, nats *testenv.NATS) *Store {
	t.Helper()
	s, err := Open(context.Background(), nats.JetStream(t), "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func acquire(t *testing.T, s *Store, cfg LeaseConfig) *Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := s.AcquireLease(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

// standby acquires the lease in the background and reports, once it holds
// it, when that was.
type standby struct {
	lease   atomic.Pointer[Lease]
	at      atomic.Int64 // UnixNano when acquired
	waiting chan Holder  // the owner it announced
}

func startStandby(t *testing.T, s *Store, ttl time.Duration) *standby {
	t.Helper()
	sb := &standby{waiting: make(chan Holder, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		l, err := s.AcquireLease(ctx, LeaseConfig{TTL: ttl, Holder: NewHolder(), Standby: func(owner Holder) { sb.waiting <- owner }})
		if err != nil {
			return
		}
		sb.at.Store(time.Now().UnixNano())
		sb.lease.Store(l)
		t.Cleanup(func() { _ = l.Release(context.Background()) })
	}()
	return sb
}

// crash stops the owner's renewals without releasing the lease: what a
// kill -9 or a cut network leaves behind.
func crash(l *Lease) { l.stopOnce.Do(func() { close(l.stop) }) }

// One replicator owns the group; another waits and says for whom, and takes
// over only after the owner stopped renewing — by which time the owner has
// already stopped counting itself the owner.
func TestLeaseStandbyTakesOverOnlyAfterTheOwnerStopped(t *testing.T) {
	nats := testenv.StartNATS(t)
	const ttl = 900 * time.Millisecond
	owner := acquire(t, openStore(t, nats), LeaseConfig{TTL: ttl, Holder: NewHolder()})
	sb := startStandby(t, openStore(t, nats), ttl)
	select {
	case h := <-sb.waiting:
		if h.ID != owner.Holder().ID || h.PID == 0 || h.Host == "" {
			t.Fatalf("standby announced %+v, owner is %+v", h, owner.Holder())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not say whom it waits for")
	}
	// Several TTLs of renewals: the standby keeps waiting.
	time.Sleep(3 * ttl)
	if sb.lease.Load() != nil || owner.Err() != nil {
		t.Fatalf("standby took a renewed lease (owner: %v)", owner.Err())
	}
	crash(owner)
	var ownerStopped int64
	testenv.Eventually(t, 30*time.Second, "the standby owns the group", func() bool {
		if ownerStopped == 0 && owner.Err() != nil {
			ownerStopped = time.Now().UnixNano()
		}
		return sb.lease.Load() != nil
	})
	if ownerStopped == 0 || ownerStopped > sb.at.Load() {
		t.Fatalf("the crashed owner still counted itself the owner when the standby took over")
	}
	if !errors.Is(owner.Err(), ErrLeaseLost) {
		t.Fatalf("owner's error %v", owner.Err())
	}
	select {
	case <-owner.Lost():
	default:
		t.Fatal("Lost not closed")
	}
	if sb.lease.Load().Err() != nil {
		t.Fatalf("new owner: %v", sb.lease.Load().Err())
	}
	if len(sb.waiting) != 0 {
		t.Fatalf("the standby announced the same owner again")
	}
}

// A cleanly stopped owner hands over at once, without waiting out its lease.
func TestLeaseReleaseHandsOverAtOnce(t *testing.T) {
	nats := testenv.StartNATS(t)
	const ttl = time.Hour
	owner := acquire(t, openStore(t, nats), LeaseConfig{TTL: ttl, Holder: NewHolder()})
	sb := startStandby(t, openStore(t, nats), ttl)
	<-sb.waiting
	if err := owner.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the standby owns the group", func() bool { return sb.lease.Load() != nil })
	if !errors.Is(owner.Err(), ErrLeaseLost) {
		t.Fatalf("released lease: %v", owner.Err())
	}
	// Releasing again, or releasing a lease another holds now, deletes
	// nothing.
	if err := owner.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sb.lease.Load().Err() != nil {
		t.Fatalf("new owner: %v", sb.lease.Load().Err())
	}
}

// The owner crashes and NATS goes down for longer than the lease's validity:
// the standby's reads of the lease wait out the outage, and once NATS is back
// it takes over — and keeps the lease, instead of counting it valid from a
// read sent before the outage and so losing it at once.
func TestLeaseTakenOverAfterANATSOutageIsHeld(t *testing.T) {
	nats := testenv.StartNATS(t)
	const ttl = 900 * time.Millisecond
	owner := acquire(t, openStore(t, nats), LeaseConfig{TTL: ttl, Holder: NewHolder()})
	sb := startStandby(t, openStore(t, nats), ttl)
	<-sb.waiting
	crash(owner)
	nats.Shutdown()
	time.Sleep(2 * ttl)
	nats.Start(t)
	testenv.Eventually(t, 30*time.Second, "the standby owns the group", func() bool { return sb.lease.Load() != nil })
	if err := sb.lease.Load().Err(); err != nil {
		t.Fatalf("the new owner lost the lease it just took: %v", err)
	}
}

// An owner whose lease was taken from it (here: overwritten, as by an
// operator or a replicator that judged it expired) learns it at its next
// renewal and stops.
func TestLeaseLostWhenOverwritten(t *testing.T) {
	nats := testenv.StartNATS(t)
	s := openStore(t, nats)
	owner := acquire(t, s, LeaseConfig{TTL: 600 * time.Millisecond, Holder: NewHolder()})
	other, _ := json.Marshal(NewHolder())
	if _, err := s.kv.Put(context.Background(), LeaseKey, other); err != nil {
		t.Fatal(err)
	}
	select {
	case <-owner.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the owner did not notice")
	}
	if !errors.Is(owner.Err(), ErrLeaseLost) {
		t.Fatalf("error %v", owner.Err())
	}
	// Its release leaves the new owner's lease alone.
	if err := owner.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	entry, err := s.kv.Get(context.Background(), LeaseKey)
	if err != nil || string(entry.Value()) != string(other) {
		t.Fatalf("lease after the old owner's release: %v %v", entry, err)
	}
}

// Writing the snapshot record over another writer's revision is a conflict
// callers can tell from other failures.
func TestSaveSnapshotConflict(t *testing.T) {
	nats := testenv.StartNATS(t)
	a, b := openStore(t, nats), openStore(t, nats)
	if err := a.SaveSnapshot(context.Background(), &Snapshot{Slot: "s"}); err != nil {
		t.Fatal(err)
	}
	snap, err := b.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap.Tables = []*Table{{Schema: "public", Name: "t", Chunks: []Chunk{{ID: 0}}}}
	if err := b.SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	err = a.SaveSnapshot(context.Background(), &Snapshot{Slot: "s", Complete: true})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("error %v, want ErrConflict", err)
	}
	// A record created anew by two writers: the second conflicts too.
	if err := a.DeleteSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = b.DeleteSnapshot(context.Background())
	if err := a.SaveSnapshot(context.Background(), &Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveSnapshot(context.Background(), &Snapshot{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := a.kv.Get(context.Background(), SnapshotKey); errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal("record gone")
	}
}
