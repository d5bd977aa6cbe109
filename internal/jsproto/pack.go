package jsproto

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/feed"
)

// PackWindow is the position window that packs never straddle: events at
// positions p and q of one transaction can share a packed message only if
// p/PackWindow == q/PackWindow. It is the replicator's unit: pg_flo_replicator
// cuts its batches at multiples of it, so a replayed transaction is packed
// into exactly the same messages, with the same de-duplication ids, as the
// first time.
const PackWindow = feed.UnitEvents

// HeaderEvents is the header that marks a packed message; its value is the
// decimal number of events in the body. A message without it holds exactly
// one event, which is what non-pgflo producers and consumers can use.
const HeaderEvents = "Pgflo-Events"

// HeaderEncoding names the compression of a packed message's body; "s2"
// (github.com/klauspost/compress/s2, block format) is the one pgflo writes.
// Packed snapshot and backlog messages are mostly the same column
// descriptions again and again: compressed, JetStream stores and sends a
// fraction of the bytes.
const HeaderEncoding = "Pgflo-Encoding"

// HeaderFormat names the layout of a packed message's body when it is not
// NDJSON events: "copy" (internal/copypack) for packed snapshot rows.
const HeaderFormat = "Pgflo-Format"

// EncodingS2 is the HeaderEncoding value of an S2-compressed body.
const EncodingS2 = "s2"

// DefaultPackMaxBytes is pg_flo_jetstream's default bound on a pack's body.
const DefaultPackMaxBytes = 1 << 20

// ErrMalformedPack is returned (wrapped) by Unpack for a message whose body
// does not hold what its HeaderEvents header declares.
var ErrMalformedPack = errors.New("malformed packed message")

// Item is one event to publish.
type Item struct {
	// Tx identifies the unit the event belongs to across replays (the
	// pg_flo_tx metadata: the commit LSN for streamed changes) and Pos its
	// 0-based position in it (pg_flo_tx_pos). An empty Tx means the event has
	// no stable identity: it is published alone and without a
	// de-duplication id.
	Tx  string
	Pos uint64
	// Subject is the subject the event is published to (see TableSubject).
	Subject string
	// Body is the event's JSON, or with Rows > 0 a copy pack
	// (internal/copypack) of Rows snapshot rows at positions Pos.. .
	Body []byte
	Rows int
	// Barrier, when set, makes the item a barrier copy (see HeaderBarrier):
	// published alone, with this header value, and with IDSuffix appended to
	// its de-duplication id, so the copies of one barrier in different
	// partitions are each stored.
	Barrier  string
	IDSuffix string
}

// Limits bound the packs Build makes.
type Limits struct {
	// MaxBytes bounds a packed body (events plus separating newlines); 0
	// means unbounded. An event larger than MaxBytes is published alone.
	MaxBytes int
	// MaxEvents bounds the number of events in a pack; 0 or 1 disables
	// packing.
	MaxEvents int
}

// Pack is one JetStream message to publish: a single event, or several
// events of one transaction and table packed as NDJSON.
type Pack struct {
	Subject string
	// MsgID is the de-duplication id (Nats-Msg-Id), "" for events without a
	// stable identity.
	MsgID  string
	Events [][]byte
	// Rows > 0 marks a copy pack: Events holds its one body, standing for
	// Rows events.
	Rows int
	// Barrier is the HeaderBarrier value of a barrier copy.
	Barrier string
	// Positions are the events' positions when they are not the whole
	// range of MsgID (events between went to another message: filtered
	// out by a processor, or to another partition); nil when they are.
	Positions []uint64
}

// Packed reports whether the pack holds more than one event, i.e. whether it
// is published as a packed message with the HeaderEvents header.
func (p Pack) Packed() bool { return len(p.Events) > 1 || p.Rows > 0 }

// Size is the length of Body.
func (p Pack) Size() int {
	n := len(p.Events) - 1
	for _, e := range p.Events {
		n += len(e)
	}
	return max(n, 0)
}

// Body is the message body: the events joined by '\n'. Events are JSON,
// which escapes newlines inside strings, so '\n' never occurs inside one.
func (p Pack) Body() []byte {
	if len(p.Events) == 1 {
		return p.Events[0]
	}
	return bytes.Join(p.Events, []byte{'\n'})
}

// Msg returns the NATS message of the pack: subject, body and, for a packed
// message, the HeaderEvents header. The de-duplication id is not set here;
// publishers pass MsgID to JetStream (jetstream.WithMsgID).
func (p Pack) Msg() *nats.Msg { return p.MsgFrom(nil) }

// MsgFrom is Msg with a packed message's body joined and compressed in
// memory of pool (nil: fresh memory). Give the memory back with pool.Put
// once JetStream acknowledged the message; until then it is the message's.
func (p Pack) MsgFrom(pool *BodyPool) *nats.Msg {
	m := nats.NewMsg(p.Subject)
	if p.Barrier != "" {
		m.Header.Set(HeaderBarrier, p.Barrier)
	}
	if !p.Packed() {
		m.Data = p.Body()
		return m
	}
	if len(p.Positions) > 0 {
		m.Header.Set(HeaderPositions, EncodePositions(p.Positions))
	}
	if p.Rows > 0 {
		m.Header.Set(HeaderFormat, copypack.Format)
		m.Header.Set(HeaderEvents, strconv.Itoa(p.Rows))
	} else {
		m.Header.Set(HeaderEvents, strconv.Itoa(len(p.Events)))
	}
	m.Header.Set(HeaderEncoding, EncodingS2)
	if pool == nil {
		m.Data = s2.Encode(nil, p.Body())
		return m
	}
	var body []byte
	if len(p.Events) == 1 {
		body = p.Events[0] // a copy pack: one body already
	} else {
		join := getBuffer(&pool.joins, p.Size())
		for i, e := range p.Events {
			if i > 0 {
				join = append(join, '\n')
			}
			join = append(join, e...)
		}
		defer putBuffer(&pool.joins, join)
		body = join
	}
	dst := getBuffer(&pool.bodies, s2.MaxEncodedLen(len(body)))
	m.Data = s2.Encode(dst[:cap(dst)], body)
	return m
}

// BodyPool keeps the memory of published bodies for the next ones: packs
// are published all the time, and the Go runtime clears every large fresh
// buffer. Safe for concurrent use.
type BodyPool struct{ joins, bodies sync.Pool }

// getBuffer returns an empty buffer of at least n bytes from p: a kept one if it
// is large enough, otherwise a new one with room to spare (pack sizes vary).
func getBuffer(p *sync.Pool, n int) []byte {
	if buf, ok := p.Get().(*[]byte); ok && cap(*buf) >= n {
		return (*buf)[:0]
	}
	return make([]byte, 0, n+n/4)
}

func putBuffer(p *sync.Pool, buf []byte) {
	buf = buf[:0]
	p.Put(&buf)
}

// Put gives back the body of a message made by MsgFrom once JetStream
// acknowledged it; a message with a body of its own is left alone.
func (b *BodyPool) Put(m *nats.Msg) {
	if m.Header.Get(HeaderEncoding) != "" {
		putBuffer(&b.bodies, m.Data)
	}
}

// HeaderPositions lists the positions of a packed message's events when they
// are not every position of its id's range: a bitmap over the range (bit i,
// least significant first within each byte, for position first+i), base64
// (standard alphabet, no padding). A pack stays within one PackWindow, so it
// is at most 172 characters.
const HeaderPositions = "Pgflo-Positions"

// EncodePositions is the HeaderPositions value of ascending positions.
func EncodePositions(positions []uint64) string {
	first := positions[0]
	bits := make([]byte, (positions[len(positions)-1]-first)/8+1)
	for _, pos := range positions {
		i := pos - first
		bits[i/8] |= 1 << (i % 8)
	}
	return base64.RawStdEncoding.EncodeToString(bits)
}

// DecodePositions reads a HeaderPositions value for the range first..last
// holding n events; ok is false when it does not name exactly n positions
// starting with first and ending with last.
func DecodePositions(value string, first, last uint64, n int) ([]uint64, bool) {
	bits, err := base64.RawStdEncoding.DecodeString(value)
	if err != nil || n < 1 || last < first || uint64(len(bits)) != (last-first)/8+1 {
		return nil, false
	}
	positions := make([]uint64, 0, n)
	for i := uint64(0); i < uint64(len(bits))*8; i++ {
		if bits[i/8]&(1<<(i%8)) != 0 {
			positions = append(positions, first+i)
		}
	}
	if len(positions) != n || positions[0] != first || positions[n-1] != last {
		return nil, false
	}
	return positions, true
}

// MsgID is the de-duplication id of the events at positions first..last of
// transaction tx: "<tx>:<first>-<last>", or "<tx>:<pos>" for a single event.
// It depends only on the events, so a replay after a restart publishes the
// same ids and JetStream stores the messages once (within the stream's
// duplicate window).
func MsgID(tx string, first, last uint64) string {
	if first == last {
		return tx + ":" + strconv.FormatUint(first, 10)
	}
	return tx + ":" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
}

// ParseMsgID splits an id made by MsgID into its transaction and position
// range; the partition suffix of a barrier copy's id ("/p<k>") is ignored. ok is false for ids of another form (e.g. set by another producer).
func ParseMsgID(id string) (tx string, first, last uint64, ok bool) {
	id = trimPartitionSuffix(id)
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, 0, false
	}
	tx, rng := id[:i], id[i+1:]
	lo, hi, isRange := strings.Cut(rng, "-")
	first, err := strconv.ParseUint(lo, 10, 64)
	if err != nil {
		return "", 0, 0, false
	}
	last = first
	if isRange {
		if last, err = strconv.ParseUint(hi, 10, 64); err != nil || last < first {
			return "", 0, 0, false
		}
	}
	return tx, first, last, true
}

// Build groups items, in order, into the messages to publish. A pack is a
// maximal run of consecutive items with the same Tx, the same Subject,
// increasing positions in the same window Pos/PackWindow, split further so a
// pack stays within lim. Items without a Tx, and items whose body contains a
// newline (not compact JSON, so not packable as NDJSON), are packs of their
// own. Order is kept: concatenating the packs' events gives back the items.
//
// Because the rule depends only on the items and lim, the same events replayed
// in batches that respect PackWindow yield the same packs and MsgIDs.
func Build(items []Item, lim Limits) []Pack {
	packs := make([]Pack, 0, len(items))
	// The run the last pack belongs to, while it may still grow.
	var run struct {
		open              bool
		tx                string
		firstPos, lastPos uint64
		size              int
	}
	for _, it := range items {
		if it.Barrier != "" {
			p := Pack{Subject: it.Subject, Barrier: it.Barrier}
			if len(it.Body) > 0 {
				p.Events = [][]byte{it.Body}
			}
			if it.Tx != "" {
				p.MsgID = MsgID(it.Tx, it.Pos, it.Pos) + it.IDSuffix
			}
			packs = append(packs, p)
			run.open = false
			continue
		}
		if it.Rows > 0 {
			// Packed already: never merged, and split only when larger
			// than lim.MaxBytes allows (a server with a small max payload).
			for _, piece := range splitCopyPack(it, lim.MaxBytes) {
				p := Pack{Subject: piece.Subject, Events: [][]byte{piece.Body}, Rows: piece.Rows}
				if piece.Tx != "" {
					p.MsgID = MsgID(piece.Tx, piece.Pos, piece.Pos+uint64(piece.Rows)-1)
				}
				packs = append(packs, p)
			}
			run.open = false
			continue
		}
		packable := it.Tx != "" && lim.MaxEvents > 1 && bytes.IndexByte(it.Body, '\n') < 0
		if run.open && packable {
			cur := &packs[len(packs)-1]
			sameRun := it.Tx == run.tx && it.Subject == cur.Subject &&
				it.Pos > run.lastPos && it.Pos/PackWindow == run.firstPos/PackWindow
			fits := len(cur.Events) < lim.MaxEvents &&
				(lim.MaxBytes <= 0 || run.size+1+len(it.Body) <= lim.MaxBytes)
			if sameRun && fits {
				if it.Pos != run.lastPos+1 && cur.Positions == nil {
					// The first gap: the positions so far were dense.
					for pos := run.firstPos; pos <= run.lastPos; pos++ {
						cur.Positions = append(cur.Positions, pos)
					}
				}
				if cur.Positions != nil {
					cur.Positions = append(cur.Positions, it.Pos)
				}
				cur.Events = append(cur.Events, it.Body)
				run.size += 1 + len(it.Body)
				run.lastPos = it.Pos
				cur.MsgID = MsgID(it.Tx, run.firstPos, run.lastPos)
				continue
			}
		}
		p := Pack{Subject: it.Subject, Events: [][]byte{it.Body}}
		if it.Tx != "" {
			p.MsgID = MsgID(it.Tx, it.Pos, it.Pos)
		}
		packs = append(packs, p)
		run.open, run.tx, run.size = packable, it.Tx, len(it.Body)
		run.firstPos, run.lastPos = it.Pos, it.Pos
	}
	return packs
}

// splitCopyPack cuts a copy pack whose body exceeds maxBytes (when
// positive) into copy packs of whole rows within it, at consecutive
// positions, as if the replicator had made them so: the same rows under the
// same limit always give the same pieces, so a replay keeps their ids. A
// body that cannot be read is left whole: the publisher's size check or the
// worker reports it.
func splitCopyPack(it Item, maxBytes int) []Item {
	if maxBytes <= 0 || len(it.Body) <= maxBytes {
		return []Item{it}
	}
	bodies, rows, err := copypack.Split(it.Body, maxBytes)
	if err != nil {
		return []Item{it}
	}
	pieces := make([]Item, len(bodies))
	pos := it.Pos
	for i, body := range bodies {
		pieces[i] = it
		pieces[i].Body, pieces[i].Rows, pieces[i].Pos = body, rows[i], pos
		pos += uint64(rows[i])
	}
	return pieces
}

// EventCount is the number of events a message declares: its HeaderEvents
// value, or 1 for a plain message (and for an invalid value, which Unpack
// reports).
func EventCount(header nats.Header) int {
	v := header.Get(HeaderEvents)
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// IsCopyPack reports whether a message holds a copy pack of snapshot rows
// (internal/copypack) rather than events.
func IsCopyPack(header nats.Header) bool { return header.Get(HeaderFormat) == copypack.Format }

// UnpackCopy returns the copy pack of a message for which IsCopyPack holds,
// checked against the row count its HeaderEvents header declares.
func UnpackCopy(body []byte, header nats.Header) (*copypack.Pack, error) {
	body, err := Decompress(body, header)
	if err != nil {
		return nil, err
	}
	p, err := copypack.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedPack, err)
	}
	if declared := header.Get(HeaderEvents); declared != strconv.Itoa(p.N) {
		return nil, fmt.Errorf("%w: header %s=%q, the pack holds %d rows", ErrMalformedPack, HeaderEvents, declared, p.N)
	}
	return p, nil
}

// Decompress returns a packed message's body as written, undoing the
// HeaderEncoding compression.
func Decompress(body []byte, header nats.Header) ([]byte, error) {
	switch enc := header.Get(HeaderEncoding); enc {
	case "":
		return body, nil
	case EncodingS2:
		decoded, err := s2.Decode(nil, body)
		if err != nil {
			return nil, fmt.Errorf("%w: body is not valid %s: %v", ErrMalformedPack, EncodingS2, err)
		}
		return decoded, nil
	default:
		return nil, fmt.Errorf("%w: unknown %s %q", ErrMalformedPack, HeaderEncoding, enc)
	}
}

// Unpack returns the events of a message: the lines of the body when header
// carries HeaderEvents (checked against the declared count), otherwise the
// whole body as one event. The returned slices share body's memory.
func Unpack(body []byte, header nats.Header) ([][]byte, error) {
	declared := header.Get(HeaderEvents)
	if declared == "" {
		return [][]byte{body}, nil
	}
	if f := header.Get(HeaderFormat); f != "" {
		return nil, fmt.Errorf("%w: a %s %q message holds packed rows, not events (see UnpackCopy)", ErrMalformedPack, HeaderFormat, f)
	}
	body, err := Decompress(body, header)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(declared)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%w: header %s=%q is not a positive count", ErrMalformedPack, HeaderEvents, declared)
	}
	events := bytes.Split(body, []byte{'\n'})
	if len(events) != n {
		return nil, fmt.Errorf("%w: header %s declares %d events, body holds %d lines", ErrMalformedPack, HeaderEvents, n, len(events))
	}
	for i, e := range events {
		if len(e) == 0 {
			return nil, fmt.Errorf("%w: event %d of %d is empty", ErrMalformedPack, i, n)
		}
	}
	return events, nil
}
