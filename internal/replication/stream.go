package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/partition"
)

// StreamConfig tunes the stream.
type StreamConfig struct {
	DSN         string
	Slot        string
	Publication string
	// StatusInterval is how often a standby status update is sent when
	// nothing else triggers one.
	StatusInterval time.Duration
	// TrackDDL streams the captured DDL of the publication as DDL events.
	TrackDDL bool
	// OnStatus, when set, is called after each standby status update with
	// the server's WAL end (as last reported) and the confirmed position:
	// their difference is the replication lag in bytes.
	OnStatus func(serverWALEnd, confirmed pglogrepl.LSN)
	// Hold, when set, holds back the transactions committing at or after
	// its position until it is released (see Hold).
	Hold   *Hold
	Logger logging.Logger
}

// Stream reads a slot and turns it into batches of encoded events.
type Stream struct {
	cfg     StreamConfig
	feed    *feed.Feed
	decoder *Decoder

	// acked is the highest LSN acknowledged by the reader (a checkpoint).
	acked atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once
}

// Slot is a replication slot just created.
type Slot struct {
	ConsistentPoint pglogrepl.LSN
	// SnapshotName is the exported snapshot (when asked for): it sees
	// exactly the transactions committed before ConsistentPoint, and stays
	// importable (SET TRANSACTION SNAPSHOT) until conn runs its next command.
	SnapshotName string
}

// CreateSlot creates a pgoutput slot on the replication connection conn,
// exporting its snapshot when export is set.
func CreateSlot(ctx context.Context, conn *pgconn.PgConn, name string, export bool, log logging.Logger) (Slot, error) {
	action := "NOEXPORT_SNAPSHOT"
	if export {
		action = "EXPORT_SNAPSHOT"
	}
	return createSlot(ctx, conn, name, pglogrepl.CreateReplicationSlotOptions{SnapshotAction: action}, log)
}

// ExportSnapshot creates a temporary slot on the replication connection
// conn for its exported snapshot and consistent point: a snapshot whose
// position in the WAL is exact. The slot goes with the connection.
func ExportSnapshot(ctx context.Context, conn *pgconn.PgConn, name string, log logging.Logger) (Slot, error) {
	return createSlot(ctx, conn, name, pglogrepl.CreateReplicationSlotOptions{Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT"}, log)
}

func createSlot(ctx context.Context, conn *pgconn.PgConn, name string, opts pglogrepl.CreateReplicationSlotOptions, log logging.Logger) (Slot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", opts)
	if err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == sqlstateLimitExceeded {
			return Slot{}, fmt.Errorf("create replication slot %q: %w: %w", name, err, ErrNoSlotLeft)
		}
		return Slot{}, fmt.Errorf("create replication slot %q: %w", name, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return Slot{}, fmt.Errorf("parse consistent point of slot %q: %w", name, err)
	}
	if opts.Temporary {
		log.Infof("created temporary replication slot %s at %s", name, lsn)
	} else {
		log.Infof("created replication slot %s at %s", name, lsn)
	}
	return Slot{ConsistentPoint: lsn, SnapshotName: res.SnapshotName}, nil
}

// StartStream starts streaming the slot on the replication connection conn
// (which it then owns and closes) into out. start is the position the slot is
// known to be confirmed to.
func StartStream(ctx context.Context, cfg StreamConfig, conn *pgconn.PgConn, start pglogrepl.LSN, typeNames map[uint32]string, out *feed.Feed) (*Stream, error) {
	// Start at 0: the server then resumes at the slot's confirmed_flush_lsn,
	// the one position known to be acknowledged downstream.
	args := []string{"proto_version '1'", "publication_names '" + cfg.Publication + "'"}
	if cfg.TrackDDL {
		args = append(args, "messages 'true'")
	}
	err := pglogrepl.StartReplication(ctx, conn, cfg.Slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("start replication from slot %q: %w", cfg.Slot, err)
	}
	cfg.Logger.Infof("streaming from slot %s (confirmed up to %s)", cfg.Slot, start)

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		cfg:     cfg,
		feed:    out,
		decoder: NewDecoder(typeNames),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	// Every event is encoded as soon as it is decoded (handle).
	s.decoder.Scratch()
	if cfg.TrackDDL {
		s.decoder.TrackDDL(DDLPrefix(cfg.Publication))
	}
	s.acked.Store(uint64(start))
	go func() {
		defer close(s.done)
		err := s.run(runCtx, conn, start)
		_ = conn.Close(context.Background())
		if err == nil || errors.Is(err, context.Canceled) {
			err = ErrStreamClosed
		}
		s.feed.Fail(err)
	}()
	return s, nil
}

// ErrStreamClosed is returned by Next after Close.
var ErrStreamClosed = errors.New("replication stream closed")

// Ack records that every event up to checkpoint is delivered. The slot is
// confirmed to it at the next status update.
func (s *Stream) Ack(checkpoint pglogrepl.LSN) {
	for {
		cur := s.acked.Load()
		if uint64(checkpoint) <= cur || s.acked.CompareAndSwap(cur, uint64(checkpoint)) {
			return
		}
	}
}

// Close stops streaming after a last status update and closes the connection.
func (s *Stream) Close(ctx context.Context) error {
	s.closed.Do(s.cancel)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pollInterval bounds how long a read waits before the loop looks at acks.
const pollInterval = 250 * time.Millisecond

// run is the replication loop: it reads the slot, decodes, queues units and
// reports acknowledged progress to PostgreSQL.
func (s *Stream) run(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN) error {
	st := &loopState{conn: conn, sent: start, pushedEnd: start, idle: start, paced: pacedReaderOf(conn)}
	defer func() {
		// A last status update so a clean stop loses no progress.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.sendStatus(sctx, st, false)
	}()
	nextStatus := time.Now().Add(s.cfg.StatusInterval)
	// Reads are bounded by a deadline on the socket, renewed twice per
	// pollInterval, not by a context: pgconn watches a context for every
	// message read with one, which cost a tenth of the replicator's CPU.
	// Cancelling ctx ends a waiting read at once.
	var reads readDeadline
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.Conn().SetReadDeadline(time.Now()) })
	defer func() {
		stopWatch()
		_ = conn.Conn().SetReadDeadline(time.Time{})
	}()

	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if now.After(nextStatus) || (s.confirmable(st) != st.sent && now.Sub(st.sentAt) >= pollInterval) {
			if err := s.sendStatus(ctx, st, false); err != nil {
				return err
			}
			nextStatus = now.Add(s.cfg.StatusInterval)
		}
		if err := reads.renew(conn, now); err != nil {
			return fmt.Errorf("receive from slot %q: %w", s.cfg.Slot, err)
		}
		raw, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				reads.expired()
				continue
			}
			return fmt.Errorf("receive from slot %q: %w", s.cfg.Slot, err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication from slot %q: %w", s.cfg.Slot, pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ServerWALEnd > st.serverEnd {
					st.serverEnd = ka.ServerWALEnd
				}
				if !s.decoder.Tx().InTx && st.cur == nil {
					if ka.ServerWALEnd > st.idle {
						st.idle = ka.ServerWALEnd
					}
					if s.cfg.Hold != nil {
						s.cfg.Hold.passed(ka.ServerWALEnd)
					}
				}
				if ka.ReplyRequested {
					if err := s.sendStatus(ctx, st, false); err != nil {
						return err
					}
					nextStatus = time.Now().Add(s.cfg.StatusInterval)
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlogdata: %w", err)
				}
				if xld.ServerWALEnd > st.serverEnd {
					st.serverEnd = xld.ServerWALEnd
				}
				if err := s.handle(ctx, st, xld); err != nil {
					return err
				}
			}
		}
	}
}

// readDeadline is the replication connection's read deadline: at most
// pollInterval ahead, set again once half of it has passed.
type readDeadline struct{ at time.Time }

func (d *readDeadline) renew(conn *pgconn.PgConn, now time.Time) error {
	if d.at.Sub(now) > pollInterval/2 {
		return nil
	}
	d.at = now.Add(pollInterval)
	return conn.Conn().SetReadDeadline(d.at)
}

// expired notes that a read timed out: the next one sets a new deadline.
func (d *readDeadline) expired() { d.at = time.Time{} }

// loopState is what the replication loop tracks between messages.
type loopState struct {
	conn *pgconn.PgConn
	// paced is the connection's reader, paced while the stream is behind.
	paced *pacedReader
	cur   *feed.Unit
	// pushedEnd is the EndLSN of the last transaction queued; idle is a
	// position the slot may be confirmed to once everything queued is
	// acknowledged (a keepalive's WAL end, or an empty transaction's end).
	pushedEnd, idle pglogrepl.LSN
	sent            pglogrepl.LSN
	sentAt          time.Time
	serverEnd       pglogrepl.LSN
	arena           feed.Arena
	// unitLen is the length of the last unit queued: the next one starts
	// with room for as many events (transactions of a workload look alike).
	unitLen int
	// tx is the current transaction's commit LSN as text, made once.
	txLSN pglogrepl.LSN
	tx    string
}

func (st *loopState) newUnit() *feed.Unit {
	return &feed.Unit{Events: make([]feed.Encoded, 0, st.unitLen)}
}

func (s *Stream) handle(ctx context.Context, st *loopState, xld pglogrepl.XLogData) error {
	before := s.decoder.Tx()
	res, err := s.decoder.Decode(xld.WALStart, xld.WALData)
	if err != nil {
		return err
	}
	if res.Begin {
		if st.paced != nil {
			st.paced.caughtUp = xld.ServerTime.Sub(s.decoder.Tx().CommitTime) < caughtUpLag
		}
		if err := s.wait(ctx, st, s.decoder.Tx().CommitLSN); err != nil {
			return err
		}
		st.cur = st.newUnit()
	}
	if len(res.Events) > 0 {
		if st.cur == nil {
			st.cur = st.newUnit()
		}
		if st.txLSN != before.CommitLSN || st.tx == "" {
			st.txLSN, st.tx = before.CommitLSN, event.FormatLSN(before.CommitLSN)
		}
		tx := st.tx
		s.cfg.Hold.watch(before.CommitLSN, res.Events)
		for i, ev := range res.Events {
			pos := before.Pos + i
			if pos > 0 && pos%feed.UnitEvents == 0 && len(st.cur.Events) > 0 {
				if err := s.push(ctx, st, st.cur); err != nil {
					return err
				}
				st.cur = st.newUnit()
			}
			enc := feed.Encoded{
				JSON: st.arena.Encode(ev), Op: ev.Op, Schema: ev.Schema, Table: ev.Table,
				LSN: event.FormatLSN(ev.LSN), Tx: tx, Pos: pos,
			}
			// From the decoded tuple, so a partitioned output routes the
			// change without decoding its JSON.
			enc.KeyHash, enc.NewKeyHash, enc.Moved, enc.Hashed = partition.EventHashes(ev)
			st.cur.Events = append(st.cur.Events, enc)
		}
	}
	if res.Commit {
		u := st.cur
		st.cur = nil
		if u == nil || len(u.Events) == 0 {
			// Nothing of ours in this transaction: its end may be confirmed
			// once everything before it is.
			if res.EndLSN > st.idle {
				st.idle = res.EndLSN
			}
			return nil
		}
		u.EndLSN = res.EndLSN
		if err := s.push(ctx, st, u); err != nil {
			return err
		}
		st.pushedEnd = res.EndLSN
	}
	return nil
}

// push queues u, keeping the connection alive with status updates while the
// reader applies backpressure.
func (s *Stream) push(ctx context.Context, st *loopState, u *feed.Unit) error {
	st.unitLen = min(len(u.Events), feed.UnitEvents)
	if cap(u.Events) > 2*len(u.Events)+16 {
		// Started larger than it turned out: the queue bounds events, not
		// their memory.
		u.Events = slices.Clone(u.Events)
	}
	for {
		ok, err := s.feed.TryPush(ctx, u, s.cfg.StatusInterval/2)
		if err != nil || ok {
			return err
		}
		if err := s.sendStatus(ctx, st, false); err != nil {
			return err
		}
	}
}

// confirmable is the LSN the slot may be confirmed to now: what the reader
// acknowledged, or further when everything queued is acknowledged and the
// loop is between transactions.
func (s *Stream) confirmable(st *loopState) pglogrepl.LSN {
	acked := pglogrepl.LSN(s.acked.Load())
	if acked >= st.pushedEnd && st.cur == nil && st.idle > acked && s.feed.Empty() {
		return st.idle
	}
	return acked
}

func (s *Stream) sendStatus(ctx context.Context, st *loopState, reply bool) error {
	pos := s.confirmable(st)
	if pos < st.sent {
		pos = st.sent
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status to slot %q: %w", s.cfg.Slot, err)
	}
	if pos != st.sent {
		s.cfg.Logger.Debugf("confirmed slot %s up to %s", s.cfg.Slot, pos)
	}
	st.sent, st.sentAt = pos, time.Now()
	if s.cfg.OnStatus != nil {
		s.cfg.OnStatus(max(st.serverEnd, pos), pos)
	}
	return nil
}
