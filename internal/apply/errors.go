package apply

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflo/pgflo/internal/event"
)

// ErrConnection is returned (wrapped) by Apply when the connection to the
// target was lost: nothing of the batch is acknowledged; reconnect and apply
// it again (the progress table makes that safe even when the commit went
// through).
var ErrConnection = errors.New("connection to the target lost")

// ChangeError is a change the target refused, or that cannot be applied. It
// names the change's table, key and stream position, so the user can find
// the row on both sides.
type ChangeError struct {
	Op        event.Op
	Table     TableName
	Key       string // e.g. (id)=(42); empty when unknown
	LSN       string
	CommitLSN string
	Index     int // position in the batch
	// Pos is the change's position in its transaction (-1 when unknown):
	// for a row of a pack of snapshot rows, it tells which row.
	Pos int64
	Err error
}

func (e *ChangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apply %s to %s", e.Op, e.Table)
	if e.Key != "" {
		fmt.Fprintf(&b, " key %s", e.Key)
	}
	fmt.Fprintf(&b, " at LSN %s (commit %s, event %d of the batch): %v", e.LSN, e.CommitLSN, e.Index, e.Err)
	return b.String()
}

func (e *ChangeError) Unwrap() error { return e.Err }

// changeError wraps err with the change's description. t may be nil (the
// table is not known); the key then comes from the event's key columns.
func changeError(ch *Change, t *Table, err error) error {
	var ce *ChangeError
	if errors.As(err, &ce) {
		return err
	}
	return &ChangeError{
		Op: ch.Op, Table: ch.Target, Key: describeKey(ch, t),
		LSN: event.FormatLSN(ch.LSN), CommitLSN: event.FormatLSN(ch.CommitLSN), Index: ch.Index, Pos: ch.Pos, Err: err,
	}
}

// maxKeyText bounds a key value quoted in an error message.
const maxKeyText = 200

// describeKey renders the change's key as (a, b)=(1, x), PostgreSQL's
// style: the target key's columns when known, else the event's key columns.
func describeKey(ch *Change, t *Table) string {
	row := ch.New
	if ch.Op == event.Delete || (row == nil && ch.Old != nil) {
		row = ch.Old
	}
	var names []string
	if t != nil && t.HasKey() {
		for _, k := range t.Key {
			names = append(names, t.Columns[k].Name)
		}
	} else {
		for _, c := range ch.Columns {
			if c.Key {
				names = append(names, c.Name)
			}
		}
	}
	if len(names) == 0 || row == nil {
		return ""
	}
	var vals []string
	for _, n := range names {
		v, ok := row.Get(n)
		switch {
		case !ok:
			vals = append(vals, "?")
		case v.Null:
			vals = append(vals, "NULL")
		case len(v.Text) > maxKeyText:
			vals = append(vals, v.Text[:maxKeyText]+"…")
		default:
			vals = append(vals, v.Text)
		}
	}
	return "(" + strings.Join(names, ", ") + ")=(" + strings.Join(vals, ", ") + ")"
}

// connectionLost reports whether err means the session is gone (the
// connection broke, or the server is shutting down or restarting).
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, ErrConnection) || pgconn.Timeout(err)
}

// retryable reports whether err is a transient failure of the transaction
// that retrying on the same connection can overcome: a serialization
// failure, a deadlock, a lock timeout.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
}

// sqlState returns err's SQLSTATE, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// unknownColumnError is an event column the target table, as last read,
// lacks. The table may have changed since it was read — a column added by
// DDL another process replayed, such as the worker of another partition of
// the group — so ApplyBatch tries the batch once more with the table read
// again before it gives up on set statements.
type unknownColumnError struct{ msg string }

func (e *unknownColumnError) Error() string { return e.msg }
