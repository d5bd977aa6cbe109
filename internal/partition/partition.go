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

// Add adds one key value: its JSON as the event carries it (a string, or
// null for SQL NULL).
func (h *Hasher) Add(value []byte) {
	for _, b := range value {
		h.h ^= uint64(b)
		h.h *= fnvPrime
	}
	h.sep()
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
	keys := 0
	for _, c := range ev.Columns {
		if c.Key {
			keys++
		}
	}
	if keys == 0 || keys == len(ev.Columns) {
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
		h.Add(r[i].Value)
	}
	return Of(h.Sum(), n), nil
}
