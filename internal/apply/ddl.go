package apply

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/ddl"
	"github.com/pgflo/pgflo/internal/event"
)

// ddlStatements returns the statements a DDL event replays: the DDL
// statements of the query text the source executed (data changes arrive as
// change events of their own; transaction control and session settings
// are left out), each rewritten for the target. A statement about the
// event's table gets the change's target table, schema-qualified: routing
// may have renamed the table, a schema mapping its schema, and an
// unqualified name would depend on search_path. A statement renaming its
// table or moving it to another schema keeps the old name (the event names
// the new one), qualified with the target schema.
func (a *Applier) ddlStatements(ch *Change) ([]string, error) {
	cmd, ok := ch.New.Get(event.DDLCommandColumn)
	if !ok || cmd.Null {
		return nil, fmt.Errorf("DDL event without %s in new", event.DDLCommandColumn)
	}
	var stmts []string
	tables := map[string]bool{}
	for _, s := range ddl.Split(cmd.Text) {
		if !ddl.Replayed(s) {
			a.log.Debugf("DDL replay leaves out %q: not DDL", s)
			continue
		}
		if n, ok := ddl.Table(s); ok && !ddl.MovesTable(s) {
			tables[n.Name] = true
		}
		stmts = append(stmts, s)
	}
	if len(stmts) == 0 {
		return nil, fmt.Errorf("the DDL event's query has no DDL statement to replay: %q", cmd.Text)
	}
	source := ch.Source
	if source.Name == "" {
		source = TableName{Schema: ch.Schema, Name: ch.Table}
	}
	for i, s := range stmts {
		n, ok := ddl.Table(s)
		switch {
		case !ok:
		case ddl.MovesTable(s):
			if n.Schema == "" {
				stmts[i] = ddl.Rewrite(s, ddl.Rename{Schema: ch.Target.Schema, Table: n.Name})
			}
		// One table named throughout the query is the event's (under its
		// source name when routing renamed it); with several, the ones
		// named like the event's.
		case len(tables) == 1 || n.Name == source.Name || n.Name == ch.Table:
			stmts[i] = ddl.Rewrite(s, ddl.Rename{Schema: ch.Target.Schema, Table: ch.Target.Name})
		}
	}
	return stmts, nil
}

// applyDDL replays a DDL event at its place in the stream. Most DDL runs in
// the batch's transaction, atomically with the changes around it. A
// statement that cannot run in a transaction block (CREATE INDEX
// CONCURRENTLY…) ends the transaction: what came before is committed with
// its progress, the statement runs on its own, and a new transaction goes
// on. Before it runs, the progress row is marked with the event's position:
// when the process dies between the statement and the next commit, the
// replay finds the mark and takes "already exists" (or "does not exist",
// for a drop) as done.
func (a *Applier) applyDDL(ctx context.Context, b *batchTx, ch *Change) error {
	stmts, err := a.ddlStatements(ch)
	if err != nil {
		return changeError(ch, nil, err)
	}
	defer a.invalidate() // the next changes see the new table shape
	searchPath := pgx.Identifier{ch.Target.Schema}.Sanitize() + ", " + a.searchPath
	for _, stmt := range stmts {
		if !ddl.NeedsNoTransaction(stmt) {
			a.log.Infof("Replaying DDL on %s at LSN %s: %s", ch.Target, event.FormatLSN(ch.LSN), stmt)
			if err := a.execDDL(ctx, stmt, searchPath, true); err != nil {
				return changeError(ch, nil, fmt.Errorf("replay DDL %q: %w", stmt, err))
			}
			continue
		}
		if err := a.commit(ctx, b); err != nil {
			return err
		}
		at := Position{CommitLSN: ch.CommitLSN, Pos: ch.Pos}
		replay := b.pending == at && at.Pos >= 0
		if err := a.markPending(ctx, at); err != nil {
			return err
		}
		a.log.Infof("Replaying DDL on %s at LSN %s outside a transaction: %s", ch.Target, event.FormatLSN(ch.LSN), stmt)
		if err := a.execDDL(ctx, stmt, searchPath, false); err != nil {
			switch state := sqlState(err); {
			case replay && (state == "42P07" || state == "42710" || state == "42704" || state == "42P01"):
				a.log.Warnf("DDL at LSN %s had already been replayed before a restart (%v); going on", event.FormatLSN(ch.LSN), err)
			default:
				// It did not run: take the mark back, or a retry would take
				// the failure for a replay.
				if !connectionLost(err) {
					if markErr := a.markPending(ctx, Position{Pos: -1}); markErr != nil {
						a.log.Warnf("Could not clear the pending DDL mark: %v", markErr)
					}
				}
				return changeError(ch, nil, fmt.Errorf("replay DDL %q: %w", stmt, err))
			}
		}
		next, err := a.begin(ctx)
		if err != nil {
			return err
		}
		next.pending = b.pending
		*b = *next
	}
	b.done = append(b.done, ch)
	return nil
}

// execDDL runs a statement with the simple protocol (it may not be
// preparable), with the target schema first on search_path so that names
// the statement leaves unqualified (types, other tables) resolve there
// first, as they did on the source.
func (a *Applier) execDDL(ctx context.Context, stmt, searchPath string, local bool) error {
	set := func(path string) error {
		_, err := a.conn.Exec(ctx, "SELECT pg_catalog.set_config('search_path', $1, $2)", path, local)
		return err
	}
	if err := set(searchPath); err != nil {
		return err
	}
	if _, err := a.conn.PgConn().Exec(ctx, stmt).ReadAll(); err != nil {
		if !local {
			_ = set(a.searchPath)
		}
		return err
	}
	return set(a.searchPath)
}
