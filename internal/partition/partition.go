// Package partition spreads a group's changes over N partitions of its
// JetStream stream, so N workers apply them in parallel while every row's
// changes stay in order: a change goes to the partition of a hash of its
// table and replica-identity key (Route), and the changes that concern rows
// of more than one partition — TRUNCATE, DDL, an UPDATE that moves a row to
// another partition, the end of a snapshot — are barriers, published to every
// partition and applied once every partition reached them (Coordinator).
// pg_flo_jetstream routes, pg_flo_worker coordinates; this package imports
// neither Benthos nor NATS' client beyond the key-value bucket.
package partition

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/pgflo/pgflo/internal/event"
)

// ErrNoKey is returned (wrapped) by Route for a row change whose row lacks
// one of its table's key columns.
var ErrNoKey = errors.New("key column missing")

// Hasher computes the partitioning hash of rows: FNV-1a (64 bits) over the
// schema, the table and the key values, each followed by a separator, so
// ("ab","c") and ("a","bc") differ. It is stable across versions and
// processes: a resent change lands where its first copy did.
type Hasher struct{ h uint64 }

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// NewHasher starts the hash of a row of schema.table.
func NewHasher(schema, table string) Hasher {
	h := Hasher{h: fnvOffset}
	h.addString(schema)
	h.addString(table)
	return h
}

func (h *Hasher) addString(s string) {
	for i := 0; i < len(s); i++ {
		h.h ^= uint64(s[i])
		h.h *= fnvPrime
	}
	h.sep()
}

// sep ends one value: 0xff never occurs in UTF-8 text.
func (h *Hasher) sep() {
	h.h ^= 0xff
	h.h *= fnvPrime
}

// Add adds one key value, in its PostgreSQL text form (the event's string).
func (h *Hasher) Add(text string) { h.addString(text) }

// AddNull adds a NULL key value: 0xfe never occurs in UTF-8 text.
func (h *Hasher) AddNull() {
	h.h ^= 0xfe
	h.h *= fnvPrime
	h.sep()
}

// addRaw adds a key value as an event's JSON holds it: a string's text, a
// null, or (a typed event's, see pg_flo_decode) the JSON value itself.
func (h *Hasher) addRaw(f event.RawField) {
	switch {
	case f.Null():
		h.AddNull()
	case len(f.Value) > 0 && f.Value[0] == '"':
		if text, err := f.Text(); err == nil {
			h.Add(text)
			return
		}
		fallthrough
	default:
		h.addString(string(f.Value))
	}
}

// Sum is the hash.
func (h Hasher) Sum() uint64 { return h.h }

// Of is the partition, 0 to n-1, of a hash.
func Of(hash uint64, n int) int { return int(hash % uint64(n)) }

// PackPartition is the partition of a pack of snapshot rows, identified by
// its unit and first position: the rows of one snapshot have distinct keys
// and are all applied before any change streamed after the snapshot (the end
// of a snapshot is a barrier), so a pack may go anywhere; a hash of its
// identity spreads packs evenly and sends a resent pack where its first copy
// went.
func PackPartition(tx string, pos uint64, n int) int {
	h := NewHasher(tx, strconv.FormatUint(pos, 10))
	return Of(h.Sum(), n)
}

// Routing is where one event goes.
type Routing struct {
	// Partition is the event's partition, unless Barrier.
	Partition int
	// Barrier: the event concerns rows of more than one partition; it is
	// published to every partition and applied once all reached it.
	Barrier bool
}

// Route decides where ev goes among n partitions:
//
//   - TRUNCATE and DDL are barriers.
//   - A table whose columns are all key columns (REPLICA IDENTITY FULL), or
//     none, has no row identity that survives an UPDATE: its changes all go to
//     the partition of the table, in order.
//   - INSERT goes to the partition of its new row's key, DELETE to its old
//     row's; UPDATE to its old row's, unless the new row's key is in another
//     partition: then it is a barrier (the row moves, and its unchanged
//     TOAST values must be kept by the one UPDATE that moves it).
//
// A key value an UPDATE's new row lacks (an unchanged TOASTed key column) is
// the old row's.
func Route(ev *event.RawEvent, n int) (Routing, error) {
	switch ev.Op {
	case event.Truncate, event.DDL:
		return Routing{Barrier: true}, nil
	}
	if n <= 1 {
		return Routing{}, nil
	}
	if !byKey(ev.Columns) {
		h := NewHasher(ev.Schema, ev.Table)
		return Routing{Partition: Of(h.Sum(), n)}, nil
	}
	switch ev.Op {
	case event.Insert:
		p, err := rowPartition(ev, ev.New, nil, n)
		return Routing{Partition: p}, err
	case event.Delete:
		p, err := rowPartition(ev, ev.Old, nil, n)
		return Routing{Partition: p}, err
	case event.Update:
		from, err := rowPartition(ev, ev.Old, nil, n)
		if err != nil {
			return Routing{}, err
		}
		to, err := rowPartition(ev, ev.New, ev.Old, n)
		if err != nil {
			return Routing{}, err
		}
		if from != to {
			return Routing{Barrier: true}, nil
		}
		return Routing{Partition: from}, nil
	}
	return Routing{}, fmt.Errorf("route %s event: unknown operation", ev.Op)
}

// rowPartition hashes the key columns of row, in column order, taking a
// column row lacks from fallback.
func rowPartition(ev *event.RawEvent, row, fallback event.RawRow, n int) (int, error) {
	h := NewHasher(ev.Schema, ev.Table)
	for _, c := range ev.Columns {
		if !c.Key {
			continue
		}
		i := row.Index(c.Name)
		r := row
		if i < 0 && fallback != nil {
			r, i = fallback, fallback.Index(c.Name)
		}
		if i < 0 {
			return 0, fmt.Errorf("route %s of %s.%s: %w: %s", ev.Op, ev.Schema, ev.Table, ErrNoKey, c.Name)
		}
		h.addRaw(r[i])
	}
	return Of(h.Sum(), n), nil
}

// byKey reports whether a table's changes are routed by key: it has key
// columns, and columns that are not (with REPLICA IDENTITY FULL every column
// is a key column, and no key survives an UPDATE).
func byKey(cols []event.Column) bool {
	keys := 0
	for _, c := range cols {
		if c.Key {
			keys++
		}
	}
	return keys > 0 && keys < len(cols)
}

// EventHashes computes, from a decoded event (the replicator's, before it is
// encoded), what Route computes from its JSON, for the metadata
// event.MetaKeyHash and event.MetaNewKeyHash: the hash of the row's key
// before the change (of the table alone when it is not routed by key), and
// for an UPDATE whose key changed, the hash of the new key. ok is false for
// TRUNCATE and DDL, which are barriers by kind, and when a key value is
// missing (Route then reports it).
func EventHashes(ev *event.Event) (hash, newHash uint64, moved, ok bool) {
	switch ev.Op {
	case event.Insert, event.Update, event.Delete:
	default:
		return 0, 0, false, false
	}
	if !byKey(ev.Columns) {
		return NewHasher(ev.Schema, ev.Table).Sum(), 0, false, true
	}
	before := ev.Old
	if ev.Op == event.Insert {
		before = ev.New
	}
	hash, ok = textRowHash(ev, before, nil)
	if !ok || ev.Op != event.Update {
		return hash, 0, false, ok
	}
	newHash, ok = textRowHash(ev, ev.New, ev.Old)
	return hash, newHash, ok && newHash != hash, ok
}

// textRowHash is rowPartition's hash for a row of text values.
func textRowHash(ev *event.Event, row, fallback event.Row) (uint64, bool) {
	h := NewHasher(ev.Schema, ev.Table)
	for _, c := range ev.Columns {
		if !c.Key {
			continue
		}
		v, ok := row.Get(c.Name)
		if !ok && fallback != nil {
			v, ok = fallback.Get(c.Name)
		}
		if !ok {
			return 0, false
		}
		if v.Null {
			h.AddNull()
		} else {
			h.Add(v.Text)
		}
	}
	return h.Sum(), true
}

// RouteHashes is Route for an event whose hashes came with it (see
// EventHashes): hasNew when its key changed.
func RouteHashes(hash, newHash uint64, hasNew bool, n int) Routing {
	from := Of(hash, n)
	if hasNew && Of(newHash, n) != from {
		return Routing{Barrier: true}
	}
	return Routing{Partition: from}
}
