package natsembed

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Command returns the `pgflo nats` CLI command. It runs an embedded JetStream
// server as a foreground process so that a newcomer needs only PostgreSQL to try
// pgflo; it stops cleanly on SIGINT or SIGTERM, flushing the file store.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "nats",
		Usage: "Run an embedded NATS JetStream server (no separate NATS install needed)",
		Description: "Starts a NATS server with JetStream (file storage) in this process, prints\n" +
			"the client URL and runs until interrupted (SIGINT/SIGTERM). Point the\n" +
			"pg_flo_jetstream output and the pg_flo_worker input at that URL.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:  "host",
				Value: "127.0.0.1",
				Usage: "interface to listen on (0.0.0.0 for all)",
			},
			&cli.IntFlag{
				Name:  "port",
				Value: 4222,
				Usage: "client port (-1 picks a random free port)",
			},
			&cli.StringFlag{
				Name:  "store-dir",
				Value: "./pgflo-nats-data",
				Usage: "JetStream storage directory (kept across restarts)",
			},
			&cli.Int64Flag{
				Name:  "max-payload",
				Value: int64(DefaultMaxPayload),
				Usage: "maximum message payload in bytes",
			},
		},
		Action: runCommand,
	}
}

// runCommand is the action of Command: start, print the URL, wait for a signal,
// shut down.
func runCommand(c *cli.Context) error {
	maxPayload := c.Int64("max-payload")
	if maxPayload <= 0 || maxPayload > math.MaxInt32 {
		return fmt.Errorf("nats: --max-payload must be between 1 and %d, got %d", math.MaxInt32, maxPayload)
	}
	storeDir := c.String("store-dir")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return fmt.Errorf("nats: create store dir: %w", err)
	}

	parent := c.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := Start(Options{
		Host:       c.String("host"),
		Port:       c.Int("port"),
		StoreDir:   storeDir,
		MaxPayload: int32(maxPayload),
		Logs:       true,
	})
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "NATS JetStream listening on %s (store dir %s); press Ctrl+C to stop\n", s.ClientURL(), storeDir)

	<-ctx.Done()
	fmt.Fprintln(c.App.Writer, "shutting down NATS")
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
