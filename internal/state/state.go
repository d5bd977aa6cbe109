// Package state keeps a replication group's durable state in the group's
// JetStream key-value bucket (pg_flo_state_<group>, pg_flo's name): the
// progress of the initial snapshot, so an interrupted copy resumes by chunk
// instead of starting over, and the lease that makes one replicator the
// group's owner (lease.go).
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
)

// SnapshotKey is the bucket key of the snapshot record. pg_flo's own key,
// "state", is left alone.
const SnapshotKey = "snapshot"

// Chunk is one page range of one table (or leaf partition): pages
// [FirstPage, EndPage); EndPage 0 means "to the end of the relation", so rows
// added after planning are still copied.
type Chunk struct {
	ID        int    `json:"id"`
	Relation  string `json:"relation"` // quoted schema.name of the table or leaf partition read
	FirstPage int64  `json:"first_page"`
	EndPage   int64  `json:"end_page"`
}

// Table is a published table in the snapshot plan.
type Table struct {
	Schema string  `json:"schema"`
	Name   string  `json:"name"`
	Chunks []Chunk `json:"chunks"`
	Done   []int   `json:"done"`
	// Reread holds the keys of rows a resumed copy reads again by key, each
	// in the order of RereadKey's columns. They are rows an UPDATE that left
	// a TOASTed value out (so it cannot be written whole) may have moved
	// into a chunk copied before the copy was interrupted: neither that
	// chunk nor the one the row left holds them (see internal/source,
	// rereads).
	Reread    [][]string `json:"reread,omitempty"`
	RereadKey []string   `json:"reread_key,omitempty"`
}

// Snapshot is the plan and progress of a group's initial copy.
type Snapshot struct {
	// Slot and LSN are the replication slot and its consistent point the
	// copy started at (copy_and_stream); streaming resumes there.
	Slot   string   `json:"slot,omitempty"`
	LSN    string   `json:"lsn"`
	Tables []*Table `json:"tables"`
	// Complete is set once every chunk is acknowledged downstream.
	Complete bool `json:"complete"`
	// Resync marks the copy a resync asked for (ResyncRequest): before
	// any row, it emits a TRUNCATE of every table, so that rows deleted
	// while the group could not stream disappear downstream too.
	Resync bool `json:"resync,omitempty"`
}

// IsDone reports whether the chunk of table t was acknowledged.
func (t *Table) IsDone(id int) bool {
	for _, d := range t.Done {
		if d == id {
			return true
		}
	}
	return false
}

// Remaining counts the chunks not yet acknowledged; a table's rows to read
// again by key count as one more.
func (s *Snapshot) Remaining() int {
	n := 0
	for _, t := range s.Tables {
		n += len(t.Chunks) - len(t.Done)
		if len(t.Reread) > 0 {
			n++
		}
	}
	return n
}

// Table returns the plan's entry for schema.name.
func (s *Snapshot) Table(schema, name string) *Table {
	for _, t := range s.Tables {
		if t.Schema == schema && t.Name == name {
			return t
		}
	}
	return nil
}

// Store reads and writes a group's state. It is safe for concurrent use.
type Store struct {
	kv jetstream.KeyValue
	// replicas is the bucket's number of replicas when it was opened.
	replicas int

	mu       sync.Mutex
	revision uint64
}

// Open returns the group's store, creating the bucket with replicas replicas
// (1 on a single server; 3 in a three-node cluster, so the state survives the
// loss of a node as the group's stream does) when it is missing. An existing
// bucket is used as it is: see Replicas.
func Open(ctx context.Context, js jetstream.JetStream, group string, replicas int) (*Store, error) {
	kv, err := OpenBucket(ctx, js, group, replicas)
	if err != nil {
		return nil, err
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", jsproto.StateBucket(group), err)
	}
	found := replicas
	if st, ok := status.(*jetstream.KeyValueBucketStatus); ok && st.StreamInfo() != nil {
		found = st.StreamInfo().Config.Replicas
	}
	return &Store{kv: kv, replicas: max(found, 1)}, nil
}

// OpenBucket returns the group's key-value bucket, creating it with
// replicas when it is missing; besides the Store, the workers of a
// partitioned group keep their barrier records there (internal/partition).
// The replicator usually creates it (with state_replicas); a worker that
// comes first creates it with its stream's replicas, so the bucket is as
// durable as the stream either way.
func OpenBucket(ctx context.Context, js jetstream.JetStream, group string, replicas int) (jetstream.KeyValue, error) {
	bucket := jsproto.StateBucket(group)
	if replicas < 1 {
		return nil, fmt.Errorf("open state bucket %s: replicas must be at least 1, got %d", bucket, replicas)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "pgflo state of replication group " + group,
			Storage:     jetstream.FileStorage,
			History:     1,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Replicas is the bucket's number of replicas as it was found when opened:
// a bucket created earlier keeps the replicas it was created with, which may
// be fewer than asked for.
func (s *Store) Replicas() int { return s.replicas }

// LoadSnapshot returns the snapshot record, or nil when there is none.
func (s *Store) LoadSnapshot(ctx context.Context) (*Snapshot, error) {
	entry, err := s.kv.Get(ctx, SnapshotKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.mu.Lock()
		s.revision = 0
		s.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	var snap Snapshot
	if err := json.Unmarshal(entry.Value(), &snap); err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	s.mu.Lock()
	s.revision = entry.Revision()
	s.mu.Unlock()
	return &snap, nil
}

// SaveSnapshot writes the record. Writes are compare-and-set against the
// last revision this store read or wrote, so two replicators of one group
// cannot silently overwrite each other's progress.
func (s *Store) SaveSnapshot(ctx context.Context, snap *Snapshot) error {
	for _, t := range snap.Tables {
		sort.Ints(t.Done)
	}
	value, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rev uint64
	if s.revision == 0 {
		rev, err = s.kv.Create(ctx, SnapshotKey, value)
	} else {
		rev, err = s.kv.Update(ctx, SnapshotKey, value, s.revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("write snapshot state: %w (%v)", ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	s.revision = rev
	return nil
}

// DeleteSnapshot removes the record, so the next copy starts afresh.
func (s *Store) DeleteSnapshot(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kv.Delete(ctx, SnapshotKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete snapshot state: %w", err)
	}
	s.revision = 0
	return nil
}
