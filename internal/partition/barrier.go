package partition

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/logging"
)

// Designated is the partition whose worker delivers a barrier's event to its
// output, once every partition reached the barrier; the others skip their
// copy.
const Designated = 0

// BarrierID names a barrier and orders barriers as the stream does: the
// barrier event's transaction (commit LSN) and position in it. A sync
// barrier (the end of a snapshot, or of what a replicator published before it
// restarted) carries no event and stands just before the event at Pos.
type BarrierID struct {
	CommitLSN pglogrepl.LSN
	Pos       uint64
	Sync      bool
}

// Less orders barriers by commit LSN, then position, a sync barrier before
// the event barrier at the same position.
func (b BarrierID) Less(o BarrierID) bool {
	if b.CommitLSN != o.CommitLSN {
		return b.CommitLSN < o.CommitLSN
	}
	if b.Pos != o.Pos {
		return b.Pos < o.Pos
	}
	return b.Sync && !o.Sync
}

// IsZero reports whether b is the zero id, before every barrier.
func (b BarrierID) IsZero() bool { return b == BarrierID{} }

// String is the id's text: "<commit LSN>:<pos>", with ":sync" for a sync
// barrier.
func (b BarrierID) String() string {
	s := b.CommitLSN.String() + ":" + strconv.FormatUint(b.Pos, 10)
	if b.Sync {
		s += ":sync"
	}
	return s
}

// ParseBarrierID reads the text of String.
func ParseBarrierID(s string) (BarrierID, error) {
	var b BarrierID
	rest, sync := strings.CutSuffix(s, ":sync")
	lsn, pos, ok := strings.Cut(rest, ":")
	if !ok {
		return b, fmt.Errorf("barrier id %q: want <commit lsn>:<pos>", s)
	}
	var err error
	if b.CommitLSN, err = pglogrepl.ParseLSN(lsn); err != nil {
		return b, fmt.Errorf("barrier id %q: %w", s, err)
	}
	if b.Pos, err = strconv.ParseUint(pos, 10, 64); err != nil {
		return b, fmt.Errorf("barrier id %q: position: %w", s, err)
	}
	b.Sync = sync
	return b, nil
}

// Keys of the coordination records in the group's state bucket: the last
// barrier each partition reached, and the last barrier applied.
const (
	keyPrefix  = "partitions."
	appliedKey = keyPrefix + "applied"
)

func reachedKey(k int) string { return keyPrefix + "reached." + strconv.Itoa(k) }

// Coordinator runs partition k's side of the barrier protocol over the
// group's key-value bucket. Every partition's stream holds the barriers in
// the same order (pg_flo_jetstream publishes each to all partitions, in
// stream order), so a partition meeting a barrier records that it reached it,
// waits until every partition did, and then either delivers it (partition
// Designated, which records it applied once its output acknowledged it) or
// waits until it is applied and skips its copy. Records only grow, so a
// barrier at or before the applied one is a copy met again (a redelivery
// after a crash, a replay) and is skipped at once.
type Coordinator struct {
	kv   jetstream.KeyValue
	n, k int
	log  logging.Logger
}

// NewCoordinator returns partition k's coordinator among n partitions.
func NewCoordinator(kv jetstream.KeyValue, n, k int, log logging.Logger) *Coordinator {
	if log == nil {
		log = logging.Nop{}
	}
	return &Coordinator{kv: kv, n: n, k: k, log: log}
}

// Meet runs the protocol for barrier id up to its delivery. It returns
// deliver true when this partition must deliver the barrier's event now:
// every partition has applied everything before it and waits. Call Applied
// once the output acknowledged it. Otherwise the barrier is done with for
// this partition (applied by the designated one, or met before): acknowledge
// the copy without delivering it.
func (c *Coordinator) Meet(ctx context.Context, id BarrierID) (deliver bool, err error) {
	applied, err := c.read(ctx, appliedKey)
	if err != nil {
		return false, err
	}
	if !applied.Less(id) {
		return false, nil
	}
	reached, err := c.read(ctx, reachedKey(c.k))
	if err != nil {
		return false, err
	}
	if reached.Less(id) {
		if _, err := c.kv.Put(ctx, reachedKey(c.k), []byte(id.String())); err != nil {
			return false, fmt.Errorf("partition %d: record barrier %s reached: %w", c.k, id, err)
		}
	}
	err = c.wait(ctx, id, "every partition to reach it", func(s *records) bool {
		for j := 0; j < c.n; j++ {
			if s.reached[j].Less(id) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return false, err
	}
	if c.k == Designated {
		if id.Sync {
			return false, c.Applied(ctx, id)
		}
		return true, nil
	}
	return false, c.wait(ctx, id, fmt.Sprintf("partition %d to apply it", Designated), func(s *records) bool {
		return !s.applied.Less(id)
	})
}

// Applied records that the barrier's event was delivered and acknowledged,
// releasing the other partitions.
func (c *Coordinator) Applied(ctx context.Context, id BarrierID) error {
	if _, err := c.kv.Put(ctx, appliedKey, []byte(id.String())); err != nil {
		return fmt.Errorf("partition %d: record barrier %s applied: %w", c.k, id, err)
	}
	return nil
}

// read returns the barrier recorded under key (zero when none).
func (c *Coordinator) read(ctx context.Context, key string) (BarrierID, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return BarrierID{}, nil
	}
	if err != nil {
		return BarrierID{}, fmt.Errorf("read %s: %w", key, err)
	}
	return ParseBarrierID(string(e.Value()))
}

// records are the coordination records as a watch last saw them.
type records struct {
	reached map[int]BarrierID
	applied BarrierID
}

// waitLog is how long a partition waits at a barrier before it says so.
const waitLog = 10 * time.Second

// wait watches the records until done holds.
func (c *Coordinator) wait(ctx context.Context, id BarrierID, what string, done func(*records) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := c.kv.Watch(ctx, keyPrefix+">")
	if err != nil {
		return fmt.Errorf("partition %d: watch barrier records: %w", c.k, err)
	}
	defer func() { _ = w.Stop() }()
	s := &records{reached: map[int]BarrierID{}}
	initial := true
	logAt := time.NewTimer(waitLog)
	defer logAt.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-logAt.C:
			c.log.Infof("Partition %d waits at barrier %s for %s (partitions reached: %v, applied: %s)", c.k, id, what, s.reached, s.applied)
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("partition %d: the watch of the barrier records ended", c.k)
			}
			if e == nil {
				initial = false
			} else if err := s.add(e); err != nil {
				return err
			}
			if !initial && done(s) {
				return nil
			}
		}
	}
}

func (s *records) add(e jetstream.KeyValueEntry) error {
	var id BarrierID
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if id, err = ParseBarrierID(string(e.Value())); err != nil {
			return fmt.Errorf("record %s: %w", e.Key(), err)
		}
	}
	if e.Key() == appliedKey {
		s.applied = id
		return nil
	}
	if k, err := strconv.Atoi(strings.TrimPrefix(e.Key(), keyPrefix+"reached.")); err == nil {
		s.reached[k] = id
	}
	return nil
}
