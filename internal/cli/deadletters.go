package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/pgflo/pgflo/internal/deadletter"
	"github.com/pgflo/pgflo/internal/jsproto"
)

// flagSeq names one dead letter of `pgflo dead-letters replay`.
const flagSeq = "seq"

// DeadLettersCommand returns `pgflo dead-letters list|replay`: the group's
// poison changes that pg_flo_worker (on_error: dead_letter) set aside, and
// their replay once their cause is fixed.
func DeadLettersCommand() *cli.Command {
	group := &cli.StringFlag{Name: flagGroup, EnvVars: []string{"PGFLO_GROUP", "PG_FLO_GROUP"}, Usage: "replication group whose dead letters to read (required)"}
	return &cli.Command{
		Name:  "dead-letters",
		Usage: "List or replay the changes a group's worker stored as dead letters (on_error: dead_letter)",
		Description: "A worker with --on-error dead_letter (pg_flo_worker's on_error: dead_letter) stores a change it can\n" +
			"never apply — a message that cannot be decoded, a row the target refuses — in the group's\n" +
			"dead-letter stream pgflo_<group>_dead_letters and goes on. `list` prints them; once the cause is\n" +
			"fixed (the target's constraint, a missing column), `replay` publishes them again to the subject\n" +
			"they came from, where the worker applies them, and removes them from the dead-letter stream.",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "Print the group's dead letters: sequence, time, table, key, LSN and error",
				ArgsUsage: " ",
				Flags:     append([]cli.Flag{group}, natsFlags()...),
				Action: func(c *cli.Context) error {
					return withDeadLetters(c, "list", func(ctx context.Context, js jetstream.JetStream, g string) error {
						letters, err := deadletter.List(ctx, js, g)
						if errors.Is(err, deadletter.ErrNoStream) {
							fmt.Fprintf(c.App.Writer, "Group %q has no dead letters.\n", g)
							return nil
						}
						if err != nil {
							return err
						}
						printDeadLetters(c.App.Writer, g, letters)
						return nil
					})
				},
			},
			{
				Name:      "replay",
				Usage:     "Publish dead letters again to their original subject, then remove them from the dead-letter stream",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{group,
					&cli.Uint64Flag{Name: flagSeq, Usage: "the dead letter to replay, by its sequence (`list` shows it); without it, every one in order"},
				}, natsFlags()...),
				Action: func(c *cli.Context) error {
					return withDeadLetters(c, "replay", func(ctx context.Context, js jetstream.JetStream, g string) error {
						done, err := deadletter.Replay(ctx, js, g, c.Uint64(flagSeq))
						for _, e := range done {
							fmt.Fprintf(c.App.Writer, "replayed    %d to %s (%s)\n", e.Seq, e.Subject, orDash(e.Table))
						}
						if errors.Is(err, deadletter.ErrNoStream) {
							fmt.Fprintf(c.App.Writer, "Group %q has no dead letters.\n", g)
							return nil
						}
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "Replayed %s of group %q.\n", plural(len(done), "dead letter"), g)
						return nil
					})
				},
			},
		},
	}
}

// withDeadLetters connects to NATS as the flags say and runs f.
func withDeadLetters(c *cli.Context, name string, f func(ctx context.Context, js jetstream.JetStream, group string) error) error {
	if c.Args().Present() {
		return fmt.Errorf("dead-letters %s: unexpected argument %q (every setting is a flag)", name, c.Args().First())
	}
	g := c.String(flagGroup)
	if err := jsproto.ValidateGroup(g); err != nil {
		return fmt.Errorf("dead-letters %s: --group: %w", name, err)
	}
	if c.String(flagNATSURL) == "" {
		return fmt.Errorf("dead-letters %s: --nats-url is required", name)
	}
	var conn jsproto.ConnConfig
	auth, err := natsAuth(c)
	if err != nil {
		return fmt.Errorf("dead-letters %s: %w", name, err)
	}
	if auth != nil {
		conn = *auth
	}
	conn.URL, conn.Name = c.String(flagNATSURL), "pgflo dead-letters "+name
	nc, err := jsproto.Connect(conn)
	if err != nil {
		return fmt.Errorf("dead-letters %s: %w", name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("dead-letters %s: open JetStream: %w", name, err)
	}
	ctx, stop := commandContext(c)
	defer stop()
	if err := f(ctx, js, g); err != nil {
		return fmt.Errorf("dead-letters %s: %w", name, err)
	}
	return nil
}

// printDeadLetters writes one line per dead letter.
func printDeadLetters(out io.Writer, group string, letters []deadletter.Entry) {
	if len(letters) == 0 {
		fmt.Fprintf(out, "Group %q has no dead letters.\n", group)
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tREASON\tTABLE\tKEY\tLSN\tSTREAM SEQ\tERROR")
	for _, e := range letters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Reason,
			orDash(e.Table), orDash(e.Key), orDash(e.LSN), e.StreamSeq, e.Err)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "%s; replay them once their cause is fixed: pgflo dead-letters replay --group %s [--seq N]\n", plural(len(letters), "dead letter"), group)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// deadLetterTarget is the group's dead-letter stream, for Cleanup.
func deadLetterTarget(ctx context.Context, js jetstream.JetStream, group string) (target, error) {
	name := deadletter.StreamName(group)
	t := target{what: "JetStream stream " + name}
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return target{}, fmt.Errorf("look up stream %q: %w", name, err)
	default:
		t.exists = true
		t.detail = plural(int(s.CachedInfo().State.Msgs), "dead letter")
	}
	t.drop = func(ctx context.Context) (string, error) {
		return "", ignoreNotFound(js.DeleteStream(ctx, name))
	}
	return t, nil
}
