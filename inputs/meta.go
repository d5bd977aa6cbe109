package inputs

import (
	"strconv"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
)

// boxed keeps a metadata value boxed as the any MetaSetMut takes: runs of
// events share their operation, table and transaction, and boxing a string
// allocates (a few percent of a catch-up's CPU, once per event and field).
type boxed struct {
	s string
	v any
}

func (b *boxed) get(s string) any {
	if b.v == nil || b.s != s {
		b.s, b.v = s, s
	}
	return b.v
}

// set is Message.MetaSet (an empty value sets nothing) with the boxed value.
func (b *boxed) set(m *service.Message, key, value string) {
	if value != "" {
		m.MetaSetMut(key, b.get(value))
	}
}

// Values of snapshot_packs, the same for both inputs.
const (
	packsKeep   = "keep"
	packsExpand = "expand"
)

// setKeyHashes sets the partitioning hashes of a row change (see
// event.MetaKeyHash), which a partitioned pg_flo_jetstream routes by.
func setKeyHashes(msg *service.Message, e *feed.Encoded) {
	msg.MetaSetMut(event.MetaKeyHash, strconv.FormatUint(e.KeyHash, 10))
	if e.Moved {
		msg.MetaSetMut(event.MetaNewKeyHash, strconv.FormatUint(e.NewKeyHash, 10))
	}
}
