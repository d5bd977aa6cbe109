package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/logging"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/state"
)

// Config tunes the copy.
type Config struct {
	DSN string
	// Workers bounds the chunks copied at once over all tables, PerTable
	// those of one table.
	Workers, PerTable int
	// ProgressInterval is how often progress is logged per table.
	ProgressInterval time.Duration
	Logger           logging.Logger
	// Copied, when set, is told of rows read (for metrics).
	Copied func(schema, table string, rows int)
	// Tables whose every column has a type pgflo renders itself are read
	// with binary COPY into binary packs (copypack.FormatBinary), when the
	// source allows (binaryCapable); TextOnly reads every table as COPY text,
	// so tests can compare the two forms.
	TextOnly bool
}

// Job is one copy: which snapshot, which chunks.
type Job struct {
	// Snapshot is the exported snapshot every worker imports.
	Snapshot string
	// LSN is written as lsn and commit_lsn of every snapshot event: the
	// slot's consistent point (or the WAL position of the snapshot).
	LSN pglogrepl.LSN
	// RunID distinguishes this copy's events from another copy's, so a
	// chunk redone under a new snapshot is not taken for a duplicate.
	RunID  string
	Tables []*TableInfo
	Plan   *state.Snapshot
	// Imported, when set, is called once every worker has imported the
	// snapshot: the exporting session may then go on.
	Imported func()
}

// ChunkTx is the pg_flo_tx of a chunk's events.
func ChunkTx(runID string, chunk int) string {
	return "snapshot." + runID + "." + strconv.Itoa(chunk)
}

// pendingChunk is a chunk to copy, or, when keys is set, the rows of a
// table to read again by key (state.Table.Reread).
type pendingChunk struct {
	table *TableInfo
	chunk state.Chunk

	keys       [][]string
	keyColumns []string
	tableIndex int
}

var snapshotName = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// Copy copies every chunk of job.Plan not marked done into out and returns
// once all are queued (their acknowledgement is the caller's business).
func Copy(ctx context.Context, cfg Config, job Job, out *feed.Feed) error {
	if !snapshotName.MatchString(job.Snapshot) {
		return fmt.Errorf("copy: invalid snapshot name %q", job.Snapshot)
	}
	byName := map[string]*TableInfo{}
	for _, info := range job.Tables {
		byName[info.Schema+"."+info.Name] = info
	}
	var pending []pendingChunk
	progress := newProgress(cfg)
	for i, t := range job.Plan.Tables {
		info := byName[t.Schema+"."+t.Name]
		if info == nil {
			return fmt.Errorf("copy: table %s.%s of the snapshot plan is no longer published", t.Schema, t.Name)
		}
		progress.plan(info, len(t.Chunks), len(t.Done))
		if len(t.Reread) > 0 {
			pending = append(pending, pendingChunk{table: info, keys: t.Reread, keyColumns: t.RereadKey, tableIndex: i})
		}
		for _, c := range t.Chunks {
			if !t.IsDone(c.ID) {
				pending = append(pending, pendingChunk{table: info, chunk: c})
			}
		}
	}
	workers := min(max(cfg.Workers, 1), len(pending))
	if workers == 0 {
		if job.Imported != nil {
			job.Imported()
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLog := progress.logEvery(ctx, cfg.ProgressInterval)
	defer stopLog()

	sched := newScheduler(pending, max(cfg.PerTable, 1))
	var imported sync.WaitGroup
	imported.Add(workers)
	go func() {
		imported.Wait()
		if job.Imported != nil {
			job.Imported()
		}
	}()
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			err := copyWorker(ctx, cfg, job, sched, out, progress, imported.Done)
			if err != nil {
				cancel()
				sched.abort()
			}
			errs <- err
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first == nil {
		progress.logAll("snapshot copy queued")
	}
	return first
}

func copyWorker(ctx context.Context, cfg Config, job Job, sched *scheduler, out *feed.Feed, progress *progress, imported func()) error {
	once := sync.OnceFunc(imported)
	defer once()
	conn, err := replication.Connect(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("copy: begin: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+job.Snapshot+"'"); err != nil {
		return fmt.Errorf("copy: import snapshot %s: %w", job.Snapshot, err)
	}
	once()
	binary := !cfg.TextOnly && binaryCapable(conn)
	for {
		p, ok := sched.next(ctx)
		if !ok {
			break
		}
		var err error
		if p.keys != nil {
			err = copyKeys(ctx, conn, job, p, out, progress)
		} else {
			err = copyChunk(ctx, conn, job, p, binary && copypack.BinaryReadable(p.table.Columns), out, progress)
		}
		sched.done(p)
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "COMMIT")
	return err
}

// binaryCapable reports whether a source session's binary COPY output can
// be rendered as the text its COPY would write: text values arrive in UTF8
// (the session's client encoding) either way, but floats print shortest-exact
// only from PostgreSQL 12 on (before, extra_float_digits 3 printed 17
// digits), so older servers copy as text.
func binaryCapable(conn *pgx.Conn) bool {
	// server_version ("15.4", "12.17 (Debian 12.17-1)") is what the server
	// reports at connect; server_version_num would take a query.
	major, _, _ := strings.Cut(conn.PgConn().ParameterStatus("server_version"), ".")
	v, err := strconv.Atoi(major)
	return err == nil && v >= 12
}

// copyChunk reads one chunk with COPY and queues its rows as events: as
// COPY text, or as binary tuples when binary.
func copyChunk(ctx context.Context, conn *pgx.Conn, job Job, p pendingChunk, binary bool, out *feed.Feed, progress *progress) error {
	cols := make([]string, len(p.table.Columns))
	for i, c := range p.table.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	where := fmt.Sprintf("ctid >= '(%d,0)'::tid", p.chunk.FirstPage)
	if p.chunk.EndPage > 0 {
		where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", p.chunk.EndPage)
	}
	sql := fmt.Sprintf("COPY (SELECT %s FROM %s WHERE %s) TO STDOUT", strings.Join(cols, ", "), p.chunk.Relation, where)
	header := copypack.NewHeader(p.table.Schema, p.table.Name, p.table.Columns, job.LSN)
	split := wholeLines
	if binary {
		sql += " WITH (FORMAT binary)"
		header = copypack.NewBinaryHeader(p.table.Schema, p.table.Name, p.table.Columns, job.LSN)
		split = wholeTuples(len(p.table.Columns))
	}
	w := &rowWriter{
		ctx: ctx, out: out, table: p.table, progress: progress,
		tx: ChunkTx(job.RunID, p.chunk.ID), lsnText: event.FormatLSN(job.LSN),
		header: copypack.AppendHeader(nil, header),
		unit:   &feed.Unit{Snapshot: true}, split: split, binary: binary,
	}
	if _, err := conn.PgConn().CopyTo(ctx, w, sql); err != nil {
		if w.err != nil {
			err = w.err
		}
		return fmt.Errorf("copy chunk %d of %s.%s (%s pages %d..%s): %w", p.chunk.ID, p.table.Schema, p.table.Name, p.chunk.Relation, p.chunk.FirstPage, endText(p.chunk.EndPage), err)
	}
	if len(w.partial) > 0 || (binary && !w.ended) {
		return fmt.Errorf("copy chunk %d of %s.%s: output ends inside a row", p.chunk.ID, p.table.Schema, p.table.Name)
	}
	w.cut()
	w.unit.Chunk = &feed.ChunkRef{Schema: p.table.Schema, Table: p.table.Name, ID: p.chunk.ID}
	if err := out.Push(ctx, w.unit); err != nil {
		return err
	}
	progress.copied(p.table, w.unit.Count())
	progress.chunkQueued(p.table)
	return nil
}

func endText(end int64) string {
	if end == 0 {
		return "end"
	}
	return strconv.FormatInt(end-1, 10)
}

// Packs are cut at PackRows rows (the JetStream packing window, see
// jsproto.PackWindow) or once they hold PackBytes of rows, whichever comes
// first; compressed, a pack then stays well inside NATS' default max
// payload of 1 MiB.
const (
	PackRows  = feed.UnitEvents
	PackBytes = 512 << 10
)

// rowWriter receives COPY's output and packs complete rows, as they are,
// into copy packs (internal/copypack): one unit per pack.
type rowWriter struct {
	// split finds the whole rows at the start of COPY's output.
	split splitter
	// binary: the output is binary COPY's, which starts with a header
	// (skipped) and ends with a trailer (ended).
	binary, started, ended bool

	ctx      context.Context
	out      *feed.Feed
	table    *TableInfo
	progress *progress
	tx       string
	lsnText  string
	header   []byte // the packs' header line

	partial []byte
	pack    []byte // the pack being filled: header and rows
	rows    int    // rows in pack
	// lastLen is the length of the last full pack: the next one starts with
	// room for that much, so it is filled without being copied as it grows
	// (the rows of a table look alike).
	lastLen int
	unit    *feed.Unit
	pos     int // position of the next row in the chunk
	err     error
}

func (w *rowWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(w.partial) > 0 {
		// A row split over writes (COPY sends one message per row, so
		// rarely): the rest of it is joined to its start.
		w.partial = append(w.partial, p...)
		p = w.partial
	}
	rest, err := w.consume(p)
	if err != nil {
		w.err = err
		return 0, err
	}
	w.partial = append(w.partial[:0], rest...)
	return n, nil
}

// consume packs the whole rows at the start of p and returns the rest: the
// start of a row.
func (w *rowWriter) consume(p []byte) ([]byte, error) {
	if w.binary && !w.started {
		skip, ok, err := binaryHeaderLen(p)
		if err != nil || !ok {
			return p, err
		}
		w.started = true
		p = p[skip:]
	}
	// Whole rows go into packs in runs: one copy per run, not per row.
	for len(p) > 0 {
		if w.binary && isTrailer(p) {
			if len(p) > 2 || w.ended {
				return nil, errors.New("binary COPY output goes on after its trailer")
			}
			w.ended = true
			return nil, nil
		}
		run, rows, err := w.split(p, PackRows-w.rows, PackBytes-len(w.pack))
		if err != nil {
			return nil, err
		}
		if rows == 0 {
			break
		}
		if err := w.lines(run, rows); err != nil {
			return nil, err
		}
		p = p[len(run):]
	}
	return p, nil
}

// splitter returns the longest prefix of p holding whole rows, at most
// maxRows of them and, unless that is less than one row, at most maxBytes
// bytes, and how many rows it holds.
type splitter func(p []byte, maxRows, maxBytes int) ([]byte, int, error)

// wholeLines splits COPY text rows: lines ending in a newline.
func wholeLines(p []byte, maxRows, maxBytes int) ([]byte, int, error) {
	end, rows := 0, 0
	for rows < maxRows {
		i := bytes.IndexByte(p[end:], '\n')
		if i < 0 || (rows > 0 && end+i+1 > maxBytes) {
			break
		}
		end += i + 1
		rows++
	}
	return p[:end], rows, nil
}

// binarySignature starts binary COPY output; flags and the length of a
// header extension follow (PostgreSQL's COPY documentation, "Binary Format").
const binarySignature = "PGCOPY\n\xff\r\n\x00"

// binaryHeaderLen returns the length of the binary COPY header p starts
// with; ok is false while p holds only part of it.
func binaryHeaderLen(p []byte) (int, bool, error) {
	const fixed = len(binarySignature) + 8
	if len(p) < fixed {
		return 0, false, nil
	}
	if string(p[:len(binarySignature)]) != binarySignature {
		return 0, false, errors.New("binary COPY output does not start with its signature")
	}
	ext := int(binary.BigEndian.Uint32(p[len(binarySignature)+4:]))
	if ext < 0 || ext > 1<<20 {
		return 0, false, fmt.Errorf("binary COPY header extension of %d bytes", ext)
	}
	if len(p) < fixed+ext {
		return 0, false, nil
	}
	return fixed + ext, true, nil
}

// isTrailer reports whether p starts with binary COPY's trailer: a field
// count of -1.
func isTrailer(p []byte) bool { return len(p) >= 2 && p[0] == 0xff && p[1] == 0xff }

// wholeTuples splits binary COPY tuples of ncols fields (a 16-bit field
// count, then each field's 32-bit length, -1 for NULL, and data). It stops
// at the trailer.
func wholeTuples(ncols int) splitter {
	return func(p []byte, maxRows, maxBytes int) ([]byte, int, error) {
		end, rows := 0, 0
		for rows < maxRows && end < len(p) && !isTrailer(p[end:]) {
			tuple, _, err := pgvalue.NextTuple(p[end:], ncols)
			if errors.Is(err, pgvalue.ErrTruncated) {
				break // the rest comes with the next write
			}
			if err != nil {
				return nil, 0, err
			}
			if rows > 0 && end+len(tuple) > maxBytes {
				break
			}
			end += len(tuple)
			rows++
		}
		return p[:end], rows, nil
	}
}

// lines adds a run of rows complete rows (COPY text lines or binary
// tuples) to the pack, and queues the pack once full.
func (w *rowWriter) lines(run []byte, rows int) error {
	if w.rows == 0 {
		w.pack = make([]byte, 0, min(PackBytes, max(64<<10, w.lastLen+w.lastLen/16)+len(run))+len(w.header))
		w.pack = append(w.pack, w.header...)
	}
	w.pack = append(w.pack, run...)
	w.rows += rows
	if w.rows < PackRows && len(w.pack) < PackBytes {
		return nil
	}
	w.lastLen = len(w.pack)
	w.cut()
	if err := w.out.Push(w.ctx, w.unit); err != nil {
		w.err = err
		return err
	}
	w.progress.copied(w.table, w.unit.Count())
	w.unit = &feed.Unit{Snapshot: true}
	return nil
}

// cut closes the pack being filled into the unit.
func (w *rowWriter) cut() {
	if w.rows == 0 {
		return
	}
	w.unit.Events = append(w.unit.Events, feed.Encoded{
		JSON: w.pack, Rows: w.rows, Op: event.Insert, Schema: w.table.Schema, Table: w.table.Name,
		LSN: w.lsnText, Tx: w.tx, Pos: w.pos,
	})
	w.pos += w.rows
	w.pack, w.rows = nil, 0
}

// scheduler hands out pending chunks, at most perTable of a table at once.
type scheduler struct {
	mu       sync.Mutex
	pending  []pendingChunk
	active   map[*TableInfo]int
	perTable int
	aborted  bool
	wake     chan struct{}
}

func newScheduler(pending []pendingChunk, perTable int) *scheduler {
	return &scheduler{pending: pending, active: map[*TableInfo]int{}, perTable: perTable, wake: make(chan struct{}, 1)}
}

func (s *scheduler) next(ctx context.Context) (pendingChunk, bool) {
	for {
		s.mu.Lock()
		if s.aborted || len(s.pending) == 0 {
			s.mu.Unlock()
			return pendingChunk{}, false
		}
		for i, p := range s.pending {
			if s.active[p.table] < s.perTable {
				s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
				s.active[p.table]++
				s.mu.Unlock()
				return p, true
			}
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return pendingChunk{}, false
		}
	}
}

func (s *scheduler) done(p pendingChunk) {
	s.mu.Lock()
	s.active[p.table]--
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) abort() {
	s.mu.Lock()
	s.aborted = true
	s.mu.Unlock()
}

// progress counts and logs what the copy read, per table.
type progress struct {
	cfg    Config
	start  time.Time
	mu     sync.Mutex
	tables []*tableProgress
	byInfo map[*TableInfo]*tableProgress
}

type tableProgress struct {
	info                *TableInfo
	rows                atomic.Int64
	chunksTotal, queued atomic.Int64
}

func newProgress(cfg Config) *progress {
	return &progress{cfg: cfg, start: time.Now(), byInfo: map[*TableInfo]*tableProgress{}}
}

func (p *progress) plan(info *TableInfo, total, done int) {
	tp := &tableProgress{info: info}
	tp.chunksTotal.Store(int64(total))
	tp.queued.Store(int64(done))
	p.mu.Lock()
	p.tables = append(p.tables, tp)
	p.byInfo[info] = tp
	p.mu.Unlock()
}

func (p *progress) copied(info *TableInfo, rows int) {
	p.mu.Lock()
	tp := p.byInfo[info]
	p.mu.Unlock()
	tp.rows.Add(int64(rows))
	if p.cfg.Copied != nil {
		p.cfg.Copied(info.Schema, info.Name, rows)
	}
}

func (p *progress) chunkQueued(info *TableInfo) {
	p.mu.Lock()
	tp := p.byInfo[info]
	p.mu.Unlock()
	tp.queued.Add(1)
}

func (p *progress) logEvery(ctx context.Context, every time.Duration) func() {
	if every <= 0 || p.cfg.Logger == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.logAll("snapshot progress")
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

func (p *progress) logAll(what string) {
	if p.cfg.Logger == nil {
		return
	}
	elapsed := time.Since(p.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range p.tables {
		rows, queued, total := tp.rows.Load(), tp.queued.Load(), tp.chunksTotal.Load()
		rate := float64(rows) / max(elapsed.Seconds(), 0.001)
		eta := "unknown"
		if queued >= total {
			eta = "0s"
		} else if queued > 0 {
			eta = (time.Duration(float64(elapsed) * float64(total-queued) / float64(queued))).Round(time.Second).String()
		}
		p.cfg.Logger.Infof("%s: table %s.%s: %d rows, chunks %d/%d, %.0f rows/s, ETA %s", what, tp.info.Schema, tp.info.Name, rows, queued, total, rate, eta)
	}
}
