package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket keys of the slot records.
const (
	// SlotKey holds the SlotRecord: the group has a slot it streams from.
	SlotKey = "slot"
	// ResyncKey holds the ResyncRequest written by `pgflo resync`.
	ResyncKey = "resync"
)

// SlotRecord says that the group streams from a replication slot. A
// replicator that finds the slot gone while this record names it knows the
// group is not new: creating a slot then would skip every change made since
// the old slot's position, so it refuses and asks for a resync.
type SlotRecord struct {
	Slot string `json:"slot"`
	// CreatedAt and LSN are when and where the slot was created, when this
	// replicator created it (a slot found existing has neither).
	CreatedAt time.Time `json:"created_at,omitzero"`
	LSN       string    `json:"lsn,omitempty"`
}

// ResyncRequest asks the next replicator of the group to copy the tables
// again, emitting a TRUNCATE of each first, under a new slot.
type ResyncRequest struct {
	// Slot is the slot dropped by the resync.
	Slot        string    `json:"slot"`
	RequestedAt time.Time `json:"requested_at"`
	// Reason is why the resync was needed (the slot's state), for people.
	Reason string `json:"reason,omitempty"`
}

// LoadSlot returns the slot record, or nil when there is none.
func (s *Store) LoadSlot(ctx context.Context) (*SlotRecord, error) {
	var rec SlotRecord
	ok, err := s.getJSON(ctx, SlotKey, &rec)
	if !ok {
		return nil, err
	}
	return &rec, nil
}

// SaveSlot records that the group streams from rec.Slot.
func (s *Store) SaveSlot(ctx context.Context, rec *SlotRecord) error {
	return s.putJSON(ctx, SlotKey, rec)
}

// LoadResync returns the pending resync request, or nil.
func (s *Store) LoadResync(ctx context.Context) (*ResyncRequest, error) {
	var req ResyncRequest
	ok, err := s.getJSON(ctx, ResyncKey, &req)
	if !ok {
		return nil, err
	}
	return &req, nil
}

// SaveResync records a resync request.
func (s *Store) SaveResync(ctx context.Context, req *ResyncRequest) error {
	return s.putJSON(ctx, ResyncKey, req)
}

// DeleteResync removes the resync request once the new snapshot is planned.
func (s *Store) DeleteResync(ctx context.Context) error { return s.deleteKey(ctx, ResyncKey) }

// DeleteSlot removes the slot record (the slot was dropped on purpose).
func (s *Store) DeleteSlot(ctx context.Context) error { return s.deleteKey(ctx, SlotKey) }

func (s *Store) getJSON(ctx context.Context, key string, into any) (bool, error) {
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s state: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), into); err != nil {
		return false, fmt.Errorf("read %s state: %w", key, err)
	}
	return true, nil
}

func (s *Store) putJSON(ctx context.Context, key string, value any) error {
	data, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("encode %s state: %w", key, err)
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("write %s state: %w", key, err)
	}
	return nil
}

func (s *Store) deleteKey(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s state: %w", key, err)
	}
	return nil
}
