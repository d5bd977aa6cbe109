package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/logging"
)

// LeaseKey is the bucket key of the group's ownership lease: the one
// replicator that may copy and stream the group holds it.
const LeaseKey = "owner"

// ErrLeaseLost means the replicator no longer owns its group: another one
// took the lease over, the lease was deleted, or it could not be renewed in
// time. The owner stops producing before a standby may take over.
var ErrLeaseLost = errors.New("ownership of the group lost")

// ErrConflict means the group's state was written by someone else since this
// replicator read it: it is not, or no longer, the group's only owner.
var ErrConflict = errors.New("the group's state was changed by another replicator")

// Holder is the lease's value: who owns the group, for the standbys' logs
// and for an operator reading the bucket.
type Holder struct {
	// ID is unique per process run.
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s (host %s, pid %d, owner since %s)", h.ID, h.Host, h.PID, h.Since.UTC().Format(time.RFC3339))
}

// NewHolder describes this process.
func NewHolder() Holder {
	host, _ := os.Hostname()
	var id [6]byte
	_, _ = rand.Read(id[:])
	return Holder{ID: hex.EncodeToString(id[:]), Host: host, PID: os.Getpid()}
}

// LeaseConfig describes a lease to acquire.
type LeaseConfig struct {
	// TTL is how long the lease lasts unrenewed. The owner renews it every
	// TTL/3 and stops producing once TTL*2/3 passed without a renewal; a
	// standby takes it over once it saw the lease unchanged for TTL.
	TTL    time.Duration
	Holder Holder
	// Standby, when set, is called once for every owner the caller waits
	// for.
	Standby func(owner Holder)
	Logger  logging.Logger
}

// Lease is a held ownership lease. Expiry is judged on each side's own
// monotonic clock, as Kubernetes' leader election does: a standby takes the
// lease once it has seen the same revision for a whole TTL, and the owner
// stops producing a third of a TTL before that can happen (it counts from
// when it sent its last successful renewal, which is before the revision the
// standby saw was written). Clocks of different hosts are never compared.
type Lease struct {
	kv     jetstream.KeyValue
	cfg    LeaseConfig
	holder Holder

	mu       sync.Mutex
	revision uint64
	// validUntil is when the owner must stop producing without a newer
	// renewal: the last successful renewal's send time plus TTL*2/3.
	validUntil time.Time
	err        error
	lost       chan struct{}

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func (c LeaseConfig) renewEvery() time.Duration { return c.TTL / 3 }
func (c LeaseConfig) validFor() time.Duration   { return c.TTL * 2 / 3 }
func (c LeaseConfig) pollEvery() time.Duration {
	return min(max(c.TTL/10, 20*time.Millisecond), time.Second)
}

// AcquireLease returns once this process owns the group. While another
// holds a live lease it waits as a standby: it polls the lease and takes it
// over once the lease went unrenewed for a TTL, or at once when the owner
// released it. It returns ctx's error when ctx ends first.
func (s *Store) AcquireLease(ctx context.Context, cfg LeaseConfig) (*Lease, error) {
	if cfg.TTL <= 0 {
		return nil, errors.New("lease: TTL must be positive")
	}
	l := &Lease{kv: s.kv, cfg: cfg, holder: cfg.Holder, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	var (
		seenRevision uint64
		seenAt       time.Time
		announced    string
	)
	for {
		entry, err := s.kv.Get(ctx, LeaseKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// No owner, or it released the lease: Create handles a delete
			// marker and fails when another standby was quicker.
			if ok, err := l.take(ctx, 0); ok || err != nil {
				return l, err
			}
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				return nil, fmt.Errorf("read the group's lease: %w", err)
			}
			l.debugf("reading the group's lease: %v", err)
		default:
			var owner Holder
			_ = json.Unmarshal(entry.Value(), &owner)
			if owner.ID == l.holder.ID {
				// Our own lease, written by a renewal whose answer was lost.
				if ok, err := l.take(ctx, entry.Revision()); ok || err != nil {
					return l, err
				}
				break
			}
			if entry.Revision() != seenRevision {
				seenRevision, seenAt = entry.Revision(), time.Now()
				if owner.ID != announced && cfg.Standby != nil {
					cfg.Standby(owner)
				}
				announced = owner.ID
				break
			}
			if time.Since(seenAt) >= cfg.TTL {
				if ok, err := l.take(ctx, seenRevision); ok || err != nil {
					return l, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.pollEvery()):
		}
	}
}

// take writes the lease over revision (0: create it) and starts renewing it.
// A lost race is (false, nil). The lease counts as valid from when this
// write is sent, as after a renewal, not from when the lease was read before
// it: a read held up by a NATS outage would otherwise leave a standby that
// takes over with a lease already expired, lost again at once.
func (l *Lease) take(ctx context.Context, revision uint64) (bool, error) {
	now := time.Now()
	l.holder.Since, l.holder.Renewed = now, now
	value, err := json.Marshal(l.holder)
	if err != nil {
		return false, err
	}
	var rev uint64
	if revision == 0 {
		rev, err = l.kv.Create(ctx, LeaseKey, value)
	} else {
		rev, err = l.kv.Update(ctx, LeaseKey, value, revision)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil
	case err != nil:
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		l.debugf("taking the group's lease: %v", err)
		return false, nil
	}
	l.revision, l.validUntil = rev, now.Add(l.cfg.validFor())
	go l.renew()
	return true, nil
}

// Holder returns the lease's value as this owner wrote it.
func (l *Lease) Holder() Holder { return l.holder }

// Lost is closed once the lease is lost (Err says why).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns nil while the lease is held, else why it was lost (wrapping
// ErrLeaseLost).
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && time.Now().After(l.validUntil) {
		// The renewer has not run (a stopped process, a starved one): the
		// lease may be expiring for the standbys right now.
		l.loseLocked(fmt.Errorf("%w: not renewed for %v", ErrLeaseLost, l.cfg.validFor().Round(time.Millisecond)))
	}
	return l.err
}

func (l *Lease) loseLocked(err error) {
	if l.err == nil {
		l.err = err
		close(l.lost)
	}
}

func (l *Lease) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loseLocked(err)
}

// renew rewrites the lease every TTL/3 until it is released or lost.
func (l *Lease) renew() {
	defer close(l.done)
	tick := time.NewTicker(l.cfg.renewEvery())
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-tick.C:
		}
		if l.Err() != nil {
			return
		}
		sent := time.Now()
		renewed := l.holder
		renewed.Renewed = sent
		value, _ := json.Marshal(renewed)
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.renewEvery())
		rev, err := l.kv.Update(ctx, LeaseKey, value, l.revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Perhaps our own earlier renewal, applied but unanswered.
			if entry, getErr := l.kv.Get(ctx, LeaseKey); getErr == nil {
				var owner Holder
				if json.Unmarshal(entry.Value(), &owner) == nil && owner.ID == l.holder.ID {
					rev, err = l.kv.Update(ctx, LeaseKey, value, entry.Revision())
				}
			}
		}
		cancel()
		switch {
		case err == nil:
			l.mu.Lock()
			l.revision, l.validUntil = rev, sent.Add(l.cfg.validFor())
			l.mu.Unlock()
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
			l.lose(fmt.Errorf("%w: another replicator took the group over, or its lease was deleted", ErrLeaseLost))
			return
		default:
			// Err loses the lease once the renewals failed for too long.
			l.debugf("renewing the group's lease: %v", err)
		}
	}
}

// Release stops renewing and deletes the lease if it is still this
// owner's, so a standby takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	first := false
	l.stopOnce.Do(func() { close(l.stop); first = true })
	if !first {
		return nil
	}
	<-l.done
	held := l.Err() == nil
	l.lose(fmt.Errorf("%w: released", ErrLeaseLost))
	if !held {
		return nil
	}
	l.mu.Lock()
	rev := l.revision
	l.mu.Unlock()
	err := l.kv.Delete(ctx, LeaseKey, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("release the group's lease: %w", err)
	}
	return nil
}

func (l *Lease) debugf(format string, args ...any) {
	if l.cfg.Logger != nil {
		l.cfg.Logger.Debugf(format, args...)
	}
}
