// Package source runs pg_flo_replicator's modes over the engines: stream
// (slot → events), copy_and_stream (consistent snapshot copy, then stream from
// the slot's consistent point) and copy (snapshot only), with snapshot
// progress kept in the group's state store so an interrupted copy resumes by
// chunk.
package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/snapshot"
	"github.com/pgflo/pgflo/internal/state"
)

// Modes, as pg_flo's --stream, --copy-and-stream and --copy.
const (
	ModeStream        = "stream"
	ModeCopyAndStream = "copy_and_stream"
	ModeCopy          = "copy"
)

// ErrCopyDone ends a copy-mode source once every chunk was read.
var ErrCopyDone = errors.New("snapshot copy finished")

// Config describes one replicator.
type Config struct {
	Mode   string
	Source replication.Source
	// TrackDDL captures DDL on the published tables as DDL events.
	TrackDDL       bool
	StatusInterval time.Duration
	QueueEvents    int
	Copy           snapshot.Config
	// ChunkPages is the size of a snapshot chunk in pages.
	ChunkPages int64
	// State keeps snapshot progress; required by the copy modes.
	State *state.Store
	// Owner, when set, is the group's ownership lease: once it is lost the
	// source stops producing at once (see fence).
	Owner  *state.Lease
	Logger logging.Logger
	// ChunkDone, when set, is told of every acknowledged chunk, and
	// ChunksPlanned of each table's chunk count (for metrics).
	ChunkDone     func(schema, table string)
	ChunksPlanned func(schema, table string, total, done int)
	// OnStatus is passed to the stream (replication lag).
	OnStatus func(serverWALEnd, confirmed pglogrepl.LSN)
	// RetainedWALWarning, when positive, is the WAL the slot may retain on
	// the source before a warning is logged (once per crossing); the slot
	// is checked every StatusInterval and OnSlotUsage, when set, is told
	// each reading.
	RetainedWALWarning int64
	OnSlotUsage        func(replication.SlotUsage)
}

// Source produces the replicator's batches.
type Source struct {
	cfg  Config
	feed *feed.Feed

	mu     sync.Mutex
	stream *replication.Stream
	snap   *state.Snapshot
	// fenced is why the source stopped producing for good (the group is
	// no longer this replicator's); nil while it produces.
	fenced error
	// resync is the pending resync request this source carries out (a
	// copy that starts with a TRUNCATE of every table); nil otherwise.
	resync *state.ResyncRequest
	// rereads gathers, while a resumed copy's stream is held, the rows
	// that copy must read again by key (see reread.go); nil otherwise.
	rereads *rereads

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start prepares the source and starts producing. Problems a user must fix
// (configuration, privileges, unknown tables) are returned here, before
// anything is created on the source; the copy itself runs in the background.
func Start(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Mode != ModeStream && cfg.State == nil {
		return nil, fmt.Errorf("mode %s needs the group's state store (field nats.url) to record which snapshot chunks are done", cfg.Mode)
	}
	cfg.Source.NeedSelect = cfg.Mode != ModeStream
	cfg.Source.TrackDDL = cfg.TrackDDL
	prep, err := replication.Prepare(ctx, cfg.Source)
	if err != nil {
		return nil, err
	}
	var resync *state.ResyncRequest
	if cfg.Mode != ModeCopy {
		if resync, err = checkSlot(ctx, cfg, prep); err != nil {
			return nil, err
		}
		if cfg.Mode == ModeStream {
			copyFirst := resync != nil
			if !copyFirst {
				// A resync's copy that a crash interrupted is finished
				// in any mode too.
				if copyFirst, err = resyncUnfinished(ctx, cfg); err != nil {
					return nil, err
				}
			}
			if copyFirst {
				// The group lost changes: only a copy brings them back.
				cfg.Logger.Infof("a resync of the group was requested: copying the tables before streaming, although the mode is %s", cfg.Mode)
				cfg.Mode = ModeCopyAndStream
			}
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Source{cfg: cfg, feed: feed.New(cfg.QueueEvents), cancel: cancel, resync: resync}
	if cfg.Owner != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-cfg.Owner.Lost():
				s.fence(cfg.Owner.Err())
			case <-bg.Done():
			}
		}()
	}
	switch cfg.Mode {
	case ModeStream:
		err = s.startStream(ctx, prep)
	case ModeCopyAndStream:
		err = s.startCopyAndStream(ctx, bg, prep)
	case ModeCopy:
		err = s.startCopy(ctx, bg, prep)
	default:
		err = fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if err != nil {
		cancel()
		s.wg.Wait()
		return nil, err
	}
	if cfg.Mode != ModeCopy && (cfg.RetainedWALWarning > 0 || cfg.OnSlotUsage != nil) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchSlot(bg, prep.ServerVersion)
		}()
	}
	return s, nil
}

func (s *Source) streamConfig() replication.StreamConfig {
	return replication.StreamConfig{
		DSN: s.cfg.Source.DSN, Slot: s.cfg.Source.Slot, Publication: s.cfg.Source.Publication,
		StatusInterval: s.cfg.StatusInterval, TrackDDL: s.cfg.TrackDDL, Logger: s.cfg.Logger,
		OnStatus: s.cfg.OnStatus,
	}
}

// startStream streams from the slot, creating it when missing.
func (s *Source) startStream(ctx context.Context, prep *replication.Prepared) error {
	conn, err := replication.ConnectReplication(ctx, s.cfg.Source.DSN)
	if err != nil {
		return err
	}
	start := prep.ConfirmedLSN
	if !prep.SlotExists {
		slot, err := replication.CreateSlot(ctx, conn, s.cfg.Source.Slot, false, s.cfg.Logger)
		if err == nil {
			err = s.recordSlot(ctx, slot)
		}
		if err != nil {
			_ = conn.Close(context.Background())
			return err
		}
		start = slot.ConsistentPoint
	}
	return s.attachStream(ctx, conn, start, prep)
}

func (s *Source) attachStream(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN, prep *replication.Prepared) error {
	return s.attachHeldStream(ctx, conn, start, prep, nil)
}

// attachHeldStream is attachStream with the stream held back at hold (nil:
// not held).
func (s *Source) attachHeldStream(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN, prep *replication.Prepared, hold *replication.Hold) error {
	cfg := s.streamConfig()
	cfg.Hold = hold
	stream, err := replication.StartStream(ctx, cfg, conn, start, prep.TypeNames, s.feed)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stream = stream
	s.mu.Unlock()
	return nil
}

// finishIfDone marks a snapshot with no chunk left as complete: a restart
// after the last chunk was acknowledged but before that was recorded.
func (s *Source) finishIfDone(ctx context.Context) {
	s.mu.Lock()
	if s.snap == nil || s.snap.Complete || s.snap.Remaining() > 0 {
		s.mu.Unlock()
		return
	}
	s.snap.Complete = true
	err := s.cfg.State.SaveSnapshot(ctx, s.snap)
	s.mu.Unlock()
	_ = s.recorded(err)
}

// startCopyAndStream decides between a first copy, a resumed copy and plain
// streaming, as pg_flo does: a group with a valid resume position (its slot,
// and no unfinished snapshot) streams without copying again.
func (s *Source) startCopyAndStream(ctx, bg context.Context, prep *replication.Prepared) error {
	snap, err := s.cfg.State.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	slotName := s.cfg.Source.Slot
	switch {
	case !prep.SlotExists:
		return s.firstCopy(ctx, bg, prep, snap)
	case snap != nil && !snap.Complete && snap.Slot == slotName && snap.Resync:
		// A resync whose copy was interrupted: its request was carried
		// out (the slot exists), so it must not start another one.
		if err := s.cfg.State.DeleteResync(ctx); err != nil {
			return err
		}
		return s.resumeCopy(ctx, bg, prep, snap, true)
	case snap != nil && !snap.Complete && snap.Slot == slotName:
		return s.resumeCopy(ctx, bg, prep, snap, true)
	default:
		if snap != nil && !snap.Complete {
			s.cfg.Logger.Warnf("ignoring the unfinished snapshot of slot %s: the group now uses slot %s", snap.Slot, slotName)
		}
		s.cfg.Logger.Infof("slot %s exists and no snapshot is unfinished: streaming without copying", slotName)
		return s.startStream(ctx, prep)
	}
}

// firstCopy creates the slot with an exported snapshot, copies every chunk
// under that snapshot, then streams from the slot's consistent point on the
// same connection: every row committed before that point is copied, every
// later change streamed, each exactly once.
func (s *Source) firstCopy(ctx, bg context.Context, prep *replication.Prepared, previous *state.Snapshot) error {
	// A record first, so a crash between creating the slot and planning is
	// seen on restart as an unfinished snapshot, not as a finished one.
	snap := &state.Snapshot{Slot: s.cfg.Source.Slot}
	// A resync's copy stays one across a crash before its slot was
	// created (its request may already be gone then).
	snap.Resync = s.resync != nil || (previous != nil && previous.Resync && previous.Slot == snap.Slot)
	if previous != nil {
		if err := s.cfg.State.DeleteSnapshot(ctx); err != nil {
			return err
		}
	}
	if err := s.cfg.State.SaveSnapshot(ctx, snap); err != nil {
		return err
	}
	conn, err := replication.ConnectReplication(ctx, s.cfg.Source.DSN)
	if err != nil {
		return err
	}
	slot, err := replication.CreateSlot(ctx, conn, s.cfg.Source.Slot, true, s.cfg.Logger)
	if err == nil {
		err = s.recordSlot(ctx, slot)
	}
	if err != nil {
		_ = conn.Close(context.Background())
		return err
	}
	infos, err := s.plan(ctx, prep, snap, slot.ConsistentPoint)
	if err == nil && snap.Resync {
		err = s.startResync(ctx, infos, slot.ConsistentPoint)
	}
	if err != nil {
		_ = conn.Close(context.Background())
		return err
	}
	job := snapshot.Job{Snapshot: slot.SnapshotName, LSN: slot.ConsistentPoint, RunID: runID(), Tables: infos, Plan: snap}
	s.background(bg, job, nil, func() error {
		// The snapshot's connection was left idle while the workers
		// imported it; it now streams the changes after the consistent point.
		return s.attachStream(bg, conn, slot.ConsistentPoint, prep)
	}, func() { _ = conn.Close(context.Background()) })
	return nil
}

// resumeCopy copies the chunks an interrupted copy did not finish, under a
// new snapshot.
//
// With streaming, the new snapshot is a temporary slot's, whose position in
// the WAL (its consistent point) is exact, and the stream restarts at the
// slot's confirmed position, at or before the first copy's consistent
// point, held at the new one: the changes committed before it reach the
// output first, then the chunks copied under it, then the later changes.
// Every row then only moves forward on the target: the rows of chunks
// copied before get every change after their snapshot, and the rows copied
// now are newer than every change delivered before them.
func (s *Source) resumeCopy(ctx, bg context.Context, prep *replication.Prepared, snap *state.Snapshot, thenStream bool) error {
	if thenStream {
		return s.resumeCopyHeld(ctx, bg, prep, snap)
	}
	exporter, err := replication.Connect(ctx, s.cfg.Source.DSN)
	if err != nil {
		return err
	}
	var name, walLSN string
	err = func() error {
		if _, err := exporter.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return err
		}
		return exporter.QueryRow(ctx, "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text").Scan(&name, &walLSN)
	}()
	if err != nil {
		_ = exporter.Close(context.Background())
		return fmt.Errorf("export a snapshot: %w", err)
	}
	lsn := prep.ConfirmedLSN
	if snap.LSN != "" {
		lsn, err = pglogrepl.ParseLSN(snap.LSN)
	} else {
		lsn, err = pglogrepl.ParseLSN(walLSN)
	}
	if err != nil {
		_ = exporter.Close(context.Background())
		return fmt.Errorf("snapshot position: %w", err)
	}
	infos, err := s.prepareResume(ctx, prep, snap, lsn)
	if err != nil {
		_ = exporter.Close(context.Background())
		return err
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	job := snapshot.Job{
		Snapshot: name, LSN: lsn, RunID: runID(), Tables: infos, Plan: snap,
		Imported: func() { _ = exporter.Close(context.Background()) },
	}
	s.background(bg, job, nil, func() error {
		s.feed.Fail(ErrCopyDone)
		return nil
	}, func() { _ = exporter.Close(context.Background()) })
	return nil
}

// resumeCopyHeld is resumeCopy with streaming (see there).
func (s *Source) resumeCopyHeld(ctx, bg context.Context, prep *replication.Prepared, snap *state.Snapshot) error {
	planLSN := prep.ConfirmedLSN
	if snap.LSN != "" {
		var err error
		if planLSN, err = pglogrepl.ParseLSN(snap.LSN); err != nil {
			return fmt.Errorf("snapshot position: %w", err)
		}
	}
	exporter, err := replication.ConnectReplication(ctx, s.cfg.Source.DSN)
	if err != nil {
		return err
	}
	closeExporter := func() { _ = exporter.Close(context.Background()) }
	// The slot name only has to be unique while this connection lives.
	slot, err := replication.ExportSnapshot(ctx, exporter, fmt.Sprintf("pgflo_resume_%s_%d", runID(), os.Getpid()), s.cfg.Logger)
	if err != nil {
		closeExporter()
		return fmt.Errorf("export a snapshot to resume the copy: %w", err)
	}
	infos, err := s.prepareResume(ctx, prep, snap, planLSN)
	if err != nil {
		closeExporter()
		return err
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	conn, err := replication.ConnectReplication(ctx, s.cfg.Source.DSN)
	if err != nil {
		closeExporter()
		return err
	}
	hold := replication.NewHold(slot.ConsistentPoint)
	rr := newRereads(snap, s.cfg.Logger)
	hold.Watch = rr.watch
	s.mu.Lock()
	s.rereads = rr
	s.mu.Unlock()
	if err := s.attachHeldStream(ctx, conn, prep.ConfirmedLSN, prep, hold); err != nil {
		closeExporter()
		return err
	}
	job := snapshot.Job{
		Snapshot: slot.SnapshotName, LSN: slot.ConsistentPoint, RunID: runID(), Tables: infos, Plan: snap,
		Imported: closeExporter,
	}
	// A failed copy leaves the hold in place: nothing after its snapshot
	// may be delivered before its rows. Every change before it has been
	// seen once the hold is reached: the rows to read again are known, and
	// recorded before the copy reads the plan.
	s.background(bg, job, hold.Reached(), func() error {
		hold.Release()
		return nil
	}, closeExporter)
	return nil
}

// prepareResume describes the tables of a copy to resume (planning it at
// planLSN when no plan was recorded) and sends a resync's TRUNCATEs again
// when none of its chunks was recorded.
func (s *Source) prepareResume(ctx context.Context, prep *replication.Prepared, snap *state.Snapshot, planLSN pglogrepl.LSN) ([]*snapshot.TableInfo, error) {
	var infos []*snapshot.TableInfo
	var err error
	if len(snap.Tables) == 0 {
		infos, err = s.plan(ctx, prep, snap, planLSN)
	} else {
		infos, err = snapshot.DescribeWith(ctx, s.cfg.Source.DSN, prep.Tables)
		if err == nil {
			s.reportPlan(snap)
		}
	}
	if err != nil {
		return nil, err
	}
	done := countDone(snap)
	if done > 0 {
		s.cfg.Logger.Infof("resuming the snapshot: %d chunks already copied, %d to go", done, snap.Remaining())
	}
	if snap.Resync && done == 0 {
		// Chunks are recorded only after the TRUNCATEs before them were
		// acknowledged: with none recorded, they may not have been
		// delivered, and sending them again only empties tables whose
		// every chunk is copied again.
		err = func() error {
			cp, err := pglogrepl.ParseLSN(snap.LSN)
			if err != nil {
				return fmt.Errorf("snapshot position: %w", err)
			}
			return s.startResync(ctx, infos, cp)
		}()
		if err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// startCopy copies the tables once, without a slot. An unfinished copy of
// an earlier run is resumed; a finished one is copied again.
func (s *Source) startCopy(ctx, bg context.Context, prep *replication.Prepared) error {
	snap, err := s.cfg.State.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	if snap == nil || snap.Complete || snap.Slot != "" {
		if snap != nil {
			if err := s.cfg.State.DeleteSnapshot(ctx); err != nil {
				return err
			}
		}
		snap = &state.Snapshot{}
		if err := s.cfg.State.SaveSnapshot(ctx, snap); err != nil {
			return err
		}
	}
	return s.resumeCopy(ctx, bg, prep, snap, false)
}

// plan describes the tables, splits them into chunks and records the plan.
func (s *Source) plan(ctx context.Context, prep *replication.Prepared, snap *state.Snapshot, lsn pglogrepl.LSN) ([]*snapshot.TableInfo, error) {
	infos, err := snapshot.DescribeWith(ctx, s.cfg.Source.DSN, prep.Tables)
	if err != nil {
		return nil, err
	}
	snap.Tables = snapshot.Plan(infos, s.cfg.ChunkPages)
	snap.LSN = lsn.String()
	if err := s.cfg.State.SaveSnapshot(ctx, snap); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	s.reportPlan(snap)
	return infos, nil
}

func (s *Source) reportPlan(snap *state.Snapshot) {
	for _, t := range snap.Tables {
		s.cfg.Logger.Infof("snapshot plan: table %s: %d chunks (%d done)", pgx.Identifier{t.Schema, t.Name}.Sanitize(), len(t.Chunks), len(t.Done))
		if s.cfg.ChunksPlanned != nil {
			s.cfg.ChunksPlanned(t.Schema, t.Name, len(t.Chunks), len(t.Done))
		}
	}
}

// background runs the copy once after is closed (at once when nil), then
// next; a failure fails the feed, so the reader sees it and the input
// reconnects (and resumes).
func (s *Source) background(bg context.Context, job snapshot.Job, after <-chan struct{}, next func() error, cleanup func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if after != nil {
			select {
			case <-after:
			case <-bg.Done():
				cleanup()
				return
			}
		}
		err := s.recordRereads(bg, true)
		if err == nil {
			err = snapshot.Copy(bg, s.cfg.Copy, job, s.feed)
		}
		if err == nil {
			err = s.fencedErr()
		}
		if err == nil {
			s.finishIfDone(bg)
			err = next()
		}
		if err != nil {
			cleanup()
			if bg.Err() == nil {
				s.feed.Fail(fmt.Errorf("snapshot copy: %w", err))
			}
		}
	}()
}

func runID() string { return strconv.FormatInt(time.Now().UnixMilli(), 36) }

func countDone(snap *state.Snapshot) int {
	n := 0
	for _, t := range snap.Tables {
		n += len(t.Done)
	}
	return n
}

// Next returns the next batch; ErrCopyDone once a copy-mode source is done.
// Once the source is fenced it returns why, and what is still queued is
// never delivered.
func (s *Source) Next(ctx context.Context, maxEvents int) (*feed.Batch, error) {
	if err := s.fencedErr(); err != nil {
		return nil, err
	}
	b, err := s.feed.Next(ctx, maxEvents)
	if err != nil {
		return nil, err
	}
	// Checked again after the wait: a batch is handed out only while the
	// lease is held (Err also notices a lease that went unrenewed while
	// this process was stopped or starved).
	if err := s.fencedErr(); err != nil {
		return nil, err
	}
	return b, nil
}

// fence stops the source for good because the group is no longer this
// replicator's: the copy workers are cancelled, and Next returns err from
// now on, dropping whatever was queued — none of it may be published after
// another replicator took over.
func (s *Source) fence(err error) {
	s.mu.Lock()
	if s.fenced == nil {
		s.fenced = err
	}
	s.mu.Unlock()
	s.cancel()
	s.feed.Fail(err)
}

// Fenced returns why the source stopped for good (see fence), or nil: a
// batch read before but delivered again later is checked with it.
func (s *Source) Fenced() error { return s.fencedErr() }

func (s *Source) fencedErr() error {
	if s.cfg.Owner != nil {
		if err := s.cfg.Owner.Err(); err != nil {
			s.fence(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenced
}

// Ack records that b was delivered: the slot may be confirmed to its
// checkpoint, and its finished chunks are recorded as done.
func (s *Source) Ack(ctx context.Context, b *feed.Batch) error {
	s.mu.Lock()
	stream, snap := s.stream, s.snap
	s.mu.Unlock()
	if stream != nil && b.Checkpoint > 0 {
		// The rows to read again that the batch's changes showed must be
		// in the plan before the slot may be confirmed past them.
		if err := s.recordRereads(ctx, false); err != nil {
			return err
		}
		stream.Ack(b.Checkpoint)
	}
	if len(b.Chunks) == 0 || snap == nil {
		return nil
	}
	s.mu.Lock()
	for _, c := range b.Chunks {
		if c.ID == feed.KeysChunk {
			if t := snap.Table(c.Schema, c.Table); t != nil {
				t.Reread, t.RereadKey = nil, nil
			}
			continue
		}
		if t := snap.Table(c.Schema, c.Table); t != nil && !t.IsDone(c.ID) {
			t.Done = append(t.Done, c.ID)
		}
		if s.cfg.ChunkDone != nil {
			s.cfg.ChunkDone(c.Schema, c.Table)
		}
	}
	if snap.Remaining() == 0 {
		snap.Complete = true
		s.cfg.Logger.Infof("snapshot complete: every chunk is acknowledged")
	}
	err := s.cfg.State.SaveSnapshot(ctx, snap)
	s.mu.Unlock()
	return s.recorded(err)
}

// recordRereads writes the rows a resumed copy reads again into its plan
// when some are not recorded yet; last ends the gathering (the stream has
// passed every change before the copy's snapshot) and reports the plan.
func (s *Source) recordRereads(ctx context.Context, last bool) error {
	s.mu.Lock()
	rr, snap := s.rereads, s.snap
	if rr == nil {
		s.mu.Unlock()
		return nil
	}
	if last {
		s.rereads = nil
	}
	err := rr.record(ctx, s.cfg.State, snap)
	s.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("recording the rows the resumed snapshot copy reads again: %w", err)
		if errors.Is(err, state.ErrConflict) {
			s.fence(err)
		}
		return err
	}
	if changed, recopied := rr.changedPlan(); last && changed {
		if recopied {
			s.reportPlan(snap)
		}
		for _, t := range snap.Tables {
			if len(t.Reread) > 0 {
				s.cfg.Logger.Infof("the resumed snapshot reads %d rows of table %s again by key: changes made while the copy was interrupted may have moved them into chunks copied before", len(t.Reread), pgx.Identifier{t.Schema, t.Name}.Sanitize())
			}
		}
	}
	return nil
}

// recorded handles the outcome of writing the snapshot record. A conflict
// means another replicator recorded chunks since: it copies this group now,
// and this one must not publish another row. Any other failure only means a
// restart copies the chunks again (they are delivered).
func (s *Source) recorded(err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("recording finished snapshot chunks: %w", err)
	if errors.Is(err, state.ErrConflict) {
		s.fence(err)
		return err
	}
	s.cfg.Logger.Warnf("%v", err)
	return nil
}

// Close stops producing.
func (s *Source) Close(ctx context.Context) error {
	s.cancel()
	s.mu.Lock()
	stream := s.stream
	s.mu.Unlock()
	var err error
	if stream != nil {
		err = stream.Close(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}
