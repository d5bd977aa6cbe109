package snapshot

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/feed"
	"github.com/pgflo/pgflo/internal/partition"
)

// KeysTx is the pg_flo_tx of the rows of the table at index table of the
// plan that a copy read again by key (state.Table.Reread).
func KeysTx(runID string, table int) string {
	return "snapshot." + runID + ".keys" + strconv.Itoa(table)
}

// keysPerQuery bounds the rows one query reads by key; PostgreSQL takes at
// most 65535 parameters.
const keysPerQuery = 500

// copyKeys reads the rows of p.keys under the copy's snapshot and queues
// them as snapshot INSERT events, like a chunk's rows: rows no longer there
// are skipped (their DELETE was streamed).
func copyKeys(ctx context.Context, conn *pgx.Conn, job Job, p pendingChunk, out *feed.Feed, progress *progress) error {
	info := p.table
	done := &feed.Unit{Snapshot: true, Chunk: &feed.ChunkRef{Schema: info.Schema, Table: info.Name, ID: feed.KeysChunk}}
	keyCols := make([]string, len(p.keyColumns))
	for i, name := range p.keyColumns {
		if !hasColumn(info.Columns, name) {
			// DDL dropped or renamed a key column while the copy was
			// interrupted: the rows cannot be found by their key.
			if l := progress.cfg.Logger; l != nil {
				l.Warnf("the resumed snapshot cannot read %d rows of %s.%s again by key: key column %q is no longer a column of the table; an UPDATE of those rows that left a TOASTed value out may not reach the target (pgflo resync copies the group again)", len(p.keys), info.Schema, info.Name, name)
			}
			return out.Push(ctx, done)
		}
		keyCols[i] = pgx.Identifier{name}.Sanitize()
	}
	cols := make([]string, len(info.Columns))
	for i, c := range info.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	head := fmt.Sprintf("SELECT %s FROM %s WHERE ", strings.Join(cols, ", "), pgx.Identifier{info.Schema, info.Name}.Sanitize())
	lhs := keyCols[0]
	if len(keyCols) > 1 {
		lhs = "(" + strings.Join(keyCols, ", ") + ")"
	}
	w := keysWriter{
		out: out, unit: &feed.Unit{Snapshot: true}, tx: KeysTx(job.RunID, p.tableIndex),
		ev: event.Event{
			Op: event.Insert, Schema: info.Schema, Table: info.Name, LSN: job.LSN, CommitLSN: job.LSN,
			Snapshot: true, Columns: info.Columns, Encoded: event.EncodeColumns(info.Columns),
		},
	}
	w.lsnText = event.FormatLSN(job.LSN)
	for start := 0; start < len(p.keys); start += keysPerQuery {
		keys := p.keys[start:min(start+keysPerQuery, len(p.keys))]
		var sql strings.Builder
		sql.WriteString(head + lhs + " IN (")
		params := make([][]byte, 0, len(keys)*len(keyCols))
		for i, key := range keys {
			if len(key) != len(keyCols) {
				return fmt.Errorf("read rows of %s.%s again by key: a key of %d values for %d key columns", info.Schema, info.Name, len(key), len(keyCols))
			}
			if i > 0 {
				sql.WriteString(", ")
			}
			if len(keyCols) > 1 {
				sql.WriteByte('(')
			}
			for j, v := range key {
				if j > 0 {
					sql.WriteString(", ")
				}
				params = append(params, []byte(v))
				sql.WriteString("$" + strconv.Itoa(len(params)))
			}
			if len(keyCols) > 1 {
				sql.WriteByte(')')
			}
		}
		sql.WriteByte(')')
		// Parameters and results in text form: the values are the key
		// values the stream carried and the rows are rendered as the
		// stream renders them.
		res := conn.PgConn().ExecParams(ctx, sql.String(), params, nil, nil, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("read rows of %s.%s again by key: %w", info.Schema, info.Name, res.Err)
		}
		for _, row := range res.Rows {
			if err := w.add(ctx, row); err != nil {
				return err
			}
		}
		progress.copied(info, len(res.Rows))
	}
	w.unit.Chunk = done.Chunk
	return out.Push(ctx, w.unit)
}

func hasColumn(cols []event.Column, name string) bool {
	for _, c := range cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

// keysWriter queues rows read by key as events, in units of at most
// feed.UnitEvents.
type keysWriter struct {
	out     *feed.Feed
	unit    *feed.Unit
	ev      event.Event
	tx      string
	lsnText string
	pos     int
}

func (w *keysWriter) add(ctx context.Context, values [][]byte) error {
	if len(w.unit.Events) == feed.UnitEvents {
		if err := w.out.Push(ctx, w.unit); err != nil {
			return err
		}
		w.unit = &feed.Unit{Snapshot: true}
	}
	row := make(event.Row, len(values))
	for i, v := range values {
		row[i] = event.Value{Name: w.ev.Columns[i].Name, Text: string(v), Null: v == nil}
	}
	w.ev.New = row
	enc := feed.Encoded{
		JSON: w.ev.AppendJSON(nil), Op: event.Insert, Schema: w.ev.Schema, Table: w.ev.Table,
		LSN: w.lsnText, Tx: w.tx, Pos: w.pos,
	}
	enc.KeyHash, enc.NewKeyHash, enc.Moved, enc.Hashed = partition.EventHashes(&w.ev)
	w.unit.Events = append(w.unit.Events, enc)
	w.pos++
	return nil
}
