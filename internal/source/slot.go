package source

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/bytesize"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/snapshot"
	"github.com/pgflo/pgflo/internal/state"
)

// checkSlot refuses a slot the group cannot resume from: one PostgreSQL
// invalidated, or one that was dropped while the group's state says the
// group streamed from it (a new slot would start at today's WAL and skip
// every change in between). Both return a *replication.SlotLostError. A
// missing slot is created on a first start, as before, and on a start
// after `pgflo resync`, whose request it returns. An existing slot is
// recorded in the group's state, so that its loss is recognised later.
func checkSlot(ctx context.Context, cfg Config, prep *replication.Prepared) (*state.ResyncRequest, error) {
	slot := cfg.Source.Slot
	if prep.SlotExists {
		if prep.SlotHealth.Invalid() {
			return nil, &replication.SlotLostError{
				Slot: slot, Health: prep.SlotHealth,
				Server: replication.ProbeInvalidSlot(ctx, cfg.Source.DSN, slot, cfg.Source.Publication),
			}
		}
		if cfg.State == nil {
			return nil, nil
		}
		rec, err := cfg.State.LoadSlot(ctx)
		if err != nil || (rec != nil && rec.Slot == slot) {
			return nil, err
		}
		// A group that streamed before slots were recorded, or whose
		// record went with a crash right after the slot was created.
		return nil, cfg.State.SaveSlot(ctx, &state.SlotRecord{Slot: slot})
	}
	if cfg.State == nil {
		// Without state nothing tells a first start from a lost slot.
		return nil, nil
	}
	req, err := cfg.State.LoadResync(ctx)
	if err != nil || req != nil {
		return req, err
	}
	rec, err := cfg.State.LoadSlot(ctx)
	if err != nil {
		return nil, err
	}
	if rec != nil && rec.Slot == slot {
		since := "recorded in the group's state"
		if !rec.CreatedAt.IsZero() {
			since = fmt.Sprintf("created %s at %s", rec.CreatedAt.UTC().Format(time.RFC3339), rec.LSN)
		}
		return nil, &replication.SlotLostError{Slot: slot, Dropped: true, Since: since}
	}
	snap, err := cfg.State.LoadSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	// A snapshot planned from the slot: the slot was created (groups
	// copied before slots were recorded have only this record).
	if snap != nil && snap.Slot == slot && snap.LSN != "" {
		return nil, &replication.SlotLostError{Slot: slot, Dropped: true, Since: "its snapshot started at " + snap.LSN}
	}
	return nil, nil
}

// resyncUnfinished reports whether the group's snapshot record is a
// resync's copy of the configured slot that is not finished.
func resyncUnfinished(ctx context.Context, cfg Config) (bool, error) {
	if cfg.State == nil {
		return false, nil
	}
	snap, err := cfg.State.LoadSnapshot(ctx)
	if err != nil {
		return false, err
	}
	return snap != nil && snap.Resync && !snap.Complete && snap.Slot == cfg.Source.Slot, nil
}

// recordSlot notes in the group's state that the group now streams from
// the slot just created.
func (s *Source) recordSlot(ctx context.Context, slot replication.Slot) error {
	if s.cfg.State == nil {
		return nil
	}
	return s.cfg.State.SaveSlot(ctx, &state.SlotRecord{
		Slot: s.cfg.Source.Slot, CreatedAt: time.Now().UTC(), LSN: slot.ConsistentPoint.String(),
	})
}

// startResync queues a TRUNCATE event of every table ahead of the copy of
// a resync, and drops the resync request, now recorded in the snapshot
// plan. Truncating first is what makes a consumer converge: rows deleted
// on the source while the group could not stream are in no snapshot, and
// nothing else would remove them downstream.
//
// The events are ordinary TRUNCATE events (snapshot false) of a unit at
// cp-1, just before the snapshot's consistent point: an LSN no WAL record
// starts at (records are aligned), after every change the group delivered
// before and before every row and change of the new slot. Appliers that
// compare positions (pg_flo_postgres' progress) apply them once and the
// copy after them, and JetStream de-duplication ids never meet a real
// transaction's. A partitioned group treats them as barriers, like any
// TRUNCATE.
func (s *Source) startResync(ctx context.Context, tables []*snapshot.TableInfo, cp pglogrepl.LSN) error {
	lsn := cp - 1
	tx := event.FormatLSN(lsn)
	u := &feed.Unit{Snapshot: true}
	now := time.Now().UTC()
	names := make([]string, 0, len(tables))
	for i, t := range tables {
		ev := event.Event{
			V: event.Version, Op: event.Truncate, Schema: t.Schema, Table: t.Name,
			LSN: lsn, CommitLSN: lsn, CommitTime: now, Columns: t.Columns,
		}
		u.Events = append(u.Events, feed.Encoded{
			JSON: ev.AppendJSON(nil), Op: event.Truncate, Schema: t.Schema, Table: t.Name,
			LSN: tx, Tx: tx, Pos: i,
		})
		names = append(names, pgx.Identifier{t.Schema, t.Name}.Sanitize())
	}
	if len(u.Events) > 0 {
		if err := s.feed.Push(ctx, u); err != nil {
			return err
		}
	}
	s.cfg.Logger.Infof("resync: emitting a TRUNCATE of %d tables before copying them again: %v", len(names), names)
	return s.cfg.State.DeleteResync(ctx)
}

// watchSlot reads the slot's retained WAL every StatusInterval, reports it
// (OnSlotUsage) and warns once each time it grows past RetainedWALWarning;
// it logs again when the slot is back under it. A failed reading is
// retried at the next tick: it only delays a warning.
func (s *Source) watchSlot(ctx context.Context, version int) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	above := false
	every := s.cfg.StatusInterval
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if conn == nil || conn.IsClosed() {
			conn, _ = replication.Connect(ctx, s.cfg.Source.DSN)
		}
		if conn != nil {
			usage, err := replication.ReadSlotUsage(ctx, conn, s.cfg.Source.Slot, version)
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Debugf("%v", err)
				_ = conn.Close(context.Background())
				conn = nil
			}
			if err == nil && usage.Exists {
				if s.cfg.OnSlotUsage != nil {
					s.cfg.OnSlotUsage(usage)
				}
				above = s.warnRetained(usage.RetainedBytes, above)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// warnRetained logs when retained crosses RetainedWALWarning and returns
// whether it is above it now.
func (s *Source) warnRetained(retained int64, above bool) bool {
	limit := s.cfg.RetainedWALWarning
	if limit <= 0 {
		return false
	}
	switch {
	case retained > limit && !above:
		s.cfg.Logger.Warnf("replication slot %s retains %s of WAL on the source, more than the warning threshold of %s: the source keeps WAL until the group's output catches up (is it down or slow?); past the source's max_slot_wal_keep_size the slot is invalidated and the group needs a resync",
			s.cfg.Source.Slot, bytesize.Format(retained), bytesize.Format(limit))
		return true
	case retained <= limit && above:
		s.cfg.Logger.Infof("replication slot %s retains %s of WAL on the source, back under the warning threshold of %s", s.cfg.Source.Slot, bytesize.Format(retained), bytesize.Format(limit))
		return false
	}
	return above
}
