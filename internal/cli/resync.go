package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/pgflo/pgflo/internal/bytesize"
	"github.com/pgflo/pgflo/internal/consumer"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/pgdsn"
	"github.com/pgflo/pgflo/internal/replication"
	"github.com/pgflo/pgflo/internal/state"
)

// ResyncOptions name a replication group to copy again and where its slot
// and state live.
type ResyncOptions struct {
	// DSN is the source database holding the slot; NATSURL the NATS
	// server holding the group's state. Both are required.
	DSN     string
	NATSURL string
	// NATSAuth, when not nil, holds the authentication and TLS of the
	// connection to NATSURL; its URL and Name are ignored.
	NATSAuth *jsproto.ConnConfig
	Group    string
	// Slot defaults to replication.PgFloName(Group).
	Slot string
	// Yes carries the resync out; without it Resync only reports.
	Yes bool
	// Force resyncs a group whose slot is still valid.
	Force bool
	// ReleaseTimeout bounds the wait for a terminated walsender to release
	// the slot (default 10 s).
	ReleaseTimeout time.Duration
}

// ErrSlotValid means a resync was asked for a group whose slot can still
// be streamed from, without ResyncOptions.Force.
var ErrSlotValid = errors.New("the group's replication slot is valid")

// Resync makes a group whose slot was invalidated or dropped resumable: it
// drops the slot (terminating a walsender that holds it), records a resync
// request in the group's state bucket, and clears the records of the old
// slot and its snapshot. The group's next replicator (or the one waiting
// on the lost slot) then creates a new slot, emits a TRUNCATE event of
// every table, copies every table and streams. Without o.Yes it only
// writes what it would do.
//
// The order makes an interruption safe: until the request is written, the
// slot records make a replicator refuse the missing slot (run it again);
// once it is written, the replicator resyncs whatever records are left.
func Resync(ctx context.Context, o ResyncOptions, out io.Writer) error {
	if err := jsproto.ValidateGroup(o.Group); err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	if o.DSN == "" || o.NATSURL == "" {
		return errors.New("resync needs the source database (--dsn, or --host/--dbname/…), which holds the slot, and --nats-url, which holds the group's state")
	}
	if o.Slot == "" {
		o.Slot = replication.PgFloName(o.Group)
	}
	if o.ReleaseTimeout <= 0 {
		o.ReleaseTimeout = 10 * time.Second
	}

	conn, err := replication.Connect(ctx, o.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	usage, err := replication.ReadSlotUsage(ctx, conn, o.Slot, version)
	if err != nil {
		return err
	}

	var natsConn jsproto.ConnConfig
	if o.NATSAuth != nil {
		natsConn = *o.NATSAuth
	}
	natsConn.URL, natsConn.Name = o.NATSURL, "pgflo resync"
	nc, err := jsproto.Connect(natsConn)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	// The request needs the bucket; a group that has none yet gets one
	// replica, as a replicator without state_replicas would create it.
	store, err := state.Open(ctx, js, o.Group, 1)
	if err != nil {
		return err
	}
	snap, err := store.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	rec, err := store.LoadSlot(ctx)
	if err != nil {
		return err
	}

	slotLine := "replication slot " + o.Slot
	reason := "slot dropped"
	switch {
	case !usage.Exists:
		slotLine += " (not found)"
	case usage.Health.Invalid():
		slotLine += " (" + usage.Health.String() + ")"
		reason = "slot invalidated: " + usage.Health.String()
	default:
		slotLine += fmt.Sprintf(" (valid: %s, retains %s of WAL)", usage.Health.String(), bytesize.Format(usage.RetainedBytes))
		reason = "forced while the slot was valid"
		if !o.Force {
			return fmt.Errorf("%w: %s can still stream from %s, so nothing was lost; a resync copies every table again — add --force to do it anyway", ErrSlotValid, o.Group, slotLine)
		}
	}
	fmt.Fprintf(out, "Resync of group %q (PostgreSQL %s, NATS %s):\n", o.Group, pgdsn.Redact(o.DSN), jsproto.RedactURL(nc.ConnectedUrl()))
	streamName := jsproto.StreamName(o.Group)
	steps := []struct {
		what string
		skip bool
		do   func() (string, error)
	}{
		{"drop " + slotLine, !usage.Exists, func() (string, error) { return dropSlot(ctx, conn, o.Slot, o.ReleaseTimeout) }},
		{"request a new snapshot: the next replicator of the group creates a new slot, emits a TRUNCATE event of every table, copies them all and streams", false, func() (string, error) {
			return "", store.SaveResync(ctx, &state.ResyncRequest{Slot: o.Slot, RequestedAt: time.Now().UTC(), Reason: reason})
		}},
		{"clear the group's snapshot record" + snapshotDetail(snap), snap == nil, func() (string, error) { return "", store.DeleteSnapshot(ctx) }},
		{"clear the group's slot record", rec == nil, func() (string, error) { return "", store.DeleteSlot(ctx) }},
		// A worker stopped at a hole in the stream would stop there again:
		// the copy replaces what the stream lost.
		{"move the workers' recorded positions past any hole in stream " + streamName, false, func() (string, error) {
			kv, err := state.OpenBucket(ctx, js, o.Group, store.Replicas())
			if err != nil {
				return "", err
			}
			moved, err := consumer.AcceptLoss(ctx, js, kv, streamName)
			if len(moved) == 0 {
				return "", err
			}
			return "consumers " + strings.Join(moved, ", ") + "; restart a worker that stopped at a hole", err
		}},
	}
	for _, st := range steps {
		switch {
		case st.skip:
		case !o.Yes:
			fmt.Fprintf(out, "  would %s\n", st.what)
		default:
			note, err := st.do()
			if err != nil {
				fmt.Fprintf(out, "  FAILED    %s: %v\n", st.what, err)
				return fmt.Errorf("%s: %w (run resync again)", st.what, err)
			}
			if note != "" {
				note = "; " + note
			}
			fmt.Fprintf(out, "  done      %s%s\n", st.what, note)
		}
	}
	if !o.Yes {
		fmt.Fprintln(out, "Nothing was changed (dry run): run again with --yes. Downstream, consumers then see a TRUNCATE of every table, then every row again (snapshot: true), then the changes.")
		return nil
	}
	fmt.Fprintf(out, "Group %q will be copied again by its next replicator; a replicator waiting on the lost slot resumes by itself.\n", o.Group)
	return nil
}

func snapshotDetail(snap *state.Snapshot) string {
	switch {
	case snap == nil:
		return ""
	case snap.Complete:
		return fmt.Sprintf(" (complete, %s)", plural(len(snap.Tables), "table"))
	default:
		return fmt.Sprintf(" (unfinished, %s)", plural(len(snap.Tables), "table"))
	}
}

const flagForce = "force"

// ResyncCommand returns `pgflo resync`, the way out of a lost slot: the
// group's replicator refuses an invalidated slot, or a missing one the
// group streamed from, because a new slot would silently skip the changes
// in between; resync asks it to copy every table again instead.
func ResyncCommand() *cli.Command {
	return &cli.Command{
		Name:      "resync",
		Usage:     "Copy a replication group again after its slot was invalidated or dropped",
		ArgsUsage: " ",
		Description: "Drops the group's replication slot on the source PostgreSQL (--dsn, or pg_flo's --host/--port/\n" +
			"--dbname/--user/--password), terminating a walsender that holds it, and records in the group's\n" +
			"state on NATS (--nats-url) that the group must be copied again, clearing its snapshot and slot\n" +
			"records. The group's next replicator — or the one waiting on the lost slot — creates a new slot,\n" +
			"emits a TRUNCATE event of every table, copies every table and streams: consumers converge to the\n" +
			"source, rows deleted meanwhile included. Without --yes nothing changes. A group whose slot is\n" +
			"still valid is refused unless --force is given.\n\n" +
			"Example:\n" +
			"  pgflo resync --dsn postgres://postgres@localhost:5432/app --group users \\\n" +
			"    --nats-url nats://localhost:4222 --yes",
		Flags: append(groupFlags(),
			&cli.BoolFlag{Name: flagForce, Usage: "resync even though the slot is valid (copies every table again)"},
			&cli.BoolFlag{Name: flagYes, Aliases: []string{"y"}, Usage: "carry the resync out (without it, only list what would be done)"},
		),
		Action: runResync,
	}
}

func runResync(c *cli.Context) error {
	dsn, auth, err := readGroupFlags(c)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	o := ResyncOptions{
		DSN: dsn, NATSURL: c.String(flagNATSURL), NATSAuth: auth, Group: c.String(flagGroup),
		Slot: c.String(flagSlot), Yes: c.Bool(flagYes), Force: c.Bool(flagForce),
	}
	ctx, stop := commandContext(c)
	defer stop()
	if err := Resync(ctx, o, c.App.Writer); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	return nil
}
