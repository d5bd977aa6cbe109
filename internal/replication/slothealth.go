package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SlotHealth is what pg_replication_slots says about a slot's ability to
// stream: a slot PostgreSQL invalidated stays in the catalog but can never
// be read again.
type SlotHealth struct {
	// WALStatus is wal_status: reserved, extended, unreserved or lost
	// (empty when the server does not say).
	WALStatus string
	// Conflicting is PostgreSQL 16+'s conflicting: the slot was
	// invalidated because it conflicted with recovery (on a standby).
	Conflicting bool
	// InvalidationReason is PostgreSQL 17+'s invalidation_reason
	// (wal_removed, rows_removed, wal_level_insufficient, …); empty while
	// the slot is valid or on older servers.
	InvalidationReason string
}

// Invalid reports whether PostgreSQL invalidated the slot.
func (h SlotHealth) Invalid() bool {
	return h.WALStatus == "lost" || h.Conflicting || h.InvalidationReason != ""
}

// String describes the catalog's view of an invalid slot for people.
func (h SlotHealth) String() string {
	var parts []string
	if h.WALStatus != "" {
		parts = append(parts, "wal_status "+h.WALStatus)
	}
	if h.Conflicting {
		parts = append(parts, "conflicting with recovery")
	}
	if h.InvalidationReason != "" {
		parts = append(parts, "invalidation_reason "+h.InvalidationReason)
	}
	return strings.Join(parts, ", ")
}

// slotHealthColumns are the pg_replication_slots columns SlotHealth reads
// on a server of version (server_version_num): conflicting came with
// PostgreSQL 16, invalidation_reason with 17. Constant SQL, chosen by
// version, never built from input.
func slotHealthColumns(version int) string {
	cols := "coalesce(wal_status, '')"
	if version >= 160000 {
		cols += ", coalesce(conflicting, false)"
	} else {
		cols += ", false"
	}
	if version >= 170000 {
		cols += ", coalesce(invalidation_reason, '')"
	} else {
		cols += ", ''"
	}
	return cols
}

// retainedWALExpr is the WAL the slot keeps on the server, in bytes: from
// its restart position to the end of WAL (on a standby, the end received).
const retainedWALExpr = `pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint`

// SlotUsage is a slot's health and the WAL it retains.
type SlotUsage struct {
	Exists bool
	Health SlotHealth
	// RetainedBytes is the WAL kept for the slot (0 when it has no restart
	// position, as an invalidated slot).
	RetainedBytes int64
}

// ReadSlotUsage reads slot's health and retained WAL on conn, a server of
// version (server_version_num).
func ReadSlotUsage(ctx context.Context, conn *pgx.Conn, slot string, version int) (SlotUsage, error) {
	var u SlotUsage
	var retained *int64
	err := conn.QueryRow(ctx, "SELECT "+slotHealthColumns(version)+", "+retainedWALExpr+
		" FROM pg_replication_slots WHERE slot_name = $1", slot).
		Scan(&u.Health.WALStatus, &u.Health.Conflicting, &u.Health.InvalidationReason, &retained)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, nil
	}
	if err != nil {
		return u, fmt.Errorf("read the state of replication slot %q: %w", slot, err)
	}
	u.Exists = true
	if retained != nil {
		u.RetainedBytes = *retained
	}
	return u, nil
}

// SlotLostError means the group's slot cannot be streamed from any more:
// PostgreSQL invalidated it (Dropped false) or it was dropped under a
// group that had streamed from it (Dropped true). Either way the changes
// after its last confirmed position are gone, and starting over from a new
// slot would silently skip them: the group needs a new snapshot.
type SlotLostError struct {
	Slot    string
	Dropped bool
	// Health is the catalog's view of an invalidated slot.
	Health SlotHealth
	// Server is PostgreSQL's own error for reading the slot, with its
	// detail (which says why it was invalidated); empty when unknown.
	Server string
	// Since says what the group's state knows of a dropped slot (when it
	// was created, at which position).
	Since string
}

func (e *SlotLostError) Error() string {
	if e.Dropped {
		msg := fmt.Sprintf("replication slot %q no longer exists, but this group streamed from it", e.Slot)
		if e.Since != "" {
			msg += " (" + e.Since + ")"
		}
		return msg + ": a new slot would silently skip every change made since the old one's last confirmed position"
	}
	msg := fmt.Sprintf("replication slot %q was invalidated by PostgreSQL", e.Slot)
	if h := e.Health.String(); h != "" {
		msg += " (" + h + ")"
	}
	if e.Server != "" {
		msg += ": " + e.Server
	}
	return msg + "; the changes since its last confirmed position are gone"
}

// serverError is err's text with PostgreSQL's detail, which
// pgconn.PgError.Error leaves out: for an invalidated slot the detail says
// why.
func serverError(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err.Error()
	}
	text := pgErr.Message
	if pgErr.Detail != "" {
		text += " — " + pgErr.Detail
	}
	return text + " (SQLSTATE " + pgErr.Code + ")"
}

// ProbeInvalidSlot asks the server to stream from slot, which the catalog
// says is invalid, and returns the server's refusal with its detail: the
// reason in PostgreSQL's own words, whatever its version. It returns ""
// when the server gave no such error.
func ProbeInvalidSlot(ctx context.Context, dsn, slot, publication string) string {
	conn, err := ConnectReplication(ctx, dsn)
	if err != nil {
		return ""
	}
	defer conn.Close(context.Background())
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + publication + "'"},
	})
	if err == nil {
		return ""
	}
	return serverError(err)
}
