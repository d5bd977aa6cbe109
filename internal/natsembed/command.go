package natsembed

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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
			"pg_flo_jetstream output and the pg_flo_worker input at that URL.\n\n" +
			"Three of them form a cluster (replicated streams survive the loss of one):\n" +
			"give each its own --server-name, the same --cluster-name, a --cluster-listen\n" +
			"address and --routes to all three. --config loads a nats-server configuration\n" +
			"file for everything else (TLS, accounts, …); flags given explicitly\n" +
			"override it.\n\n" +
			"--sync-interval is how often the server flushes JetStream's files to disk\n" +
			"(nats-server's sync_interval, 2m unless set): changes acknowledged since the\n" +
			"last flush are lost if every server holding them loses power at once.\n" +
			"\"always\" flushes before every acknowledgement, at the cost of a disk flush\n" +
			"per publish.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:  "config",
				Usage: "nats-server configuration file; flags given explicitly override its settings",
			},
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
				Usage: "JetStream storage directory (kept across restarts); with --config, the file's jetstream store_dir unless given",
			},
			&cli.Int64Flag{
				Name:  "max-payload",
				Value: int64(DefaultMaxPayload),
				Usage: "maximum message payload in bytes",
			},
			&cli.StringFlag{
				Name:  "sync-interval",
				Usage: "how often JetStream's files are flushed to disk (fsync): a duration (10s, 2m) or \"always\" (before every acknowledgement); nats-server's default 2m when unset",
			},
			&cli.StringFlag{
				Name:  "server-name",
				Usage: "server name, unique in the cluster and the same across restarts (required in a cluster)",
			},
			&cli.StringFlag{
				Name:  "cluster-name",
				Usage: "cluster name, the same on every server of the cluster (required in a cluster)",
			},
			&cli.StringFlag{
				Name:  "cluster-listen",
				Usage: "host:port to accept routes from the other servers of the cluster on (e.g. 0.0.0.0:6222)",
			},
			&cli.StringFlag{
				Name:  "routes",
				Usage: "cluster addresses of the servers of the cluster, comma-separated (nats://n1:6222,nats://n2:6222,nats://n3:6222)",
			},
		},
		Action: runCommand,
	}
}

// runCommand is the action of Command: start, print the URL, wait for a signal,
// shut down.
func runCommand(c *cli.Context) error {
	opts, err := commandOptions(c)
	if err != nil {
		return err
	}
	if opts.StoreDir != "" {
		if err := os.MkdirAll(opts.StoreDir, 0o755); err != nil {
			return fmt.Errorf("nats: create store dir: %w", err)
		}
	}

	parent := c.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := Start(opts)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "NATS JetStream listening on %s (store dir %s); press Ctrl+C to stop\n", s.ClientURL(), s.JetStreamConfig().StoreDir)

	<-ctx.Done()
	fmt.Fprintln(c.App.Writer, "shutting down NATS")
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// commandOptions maps the flags to Options. Without --config every flag
// counts, defaults included; with it only the flags given explicitly do, so
// the file's settings stand where no flag overrides them.
func commandOptions(c *cli.Context) (Options, error) {
	opts := Options{ConfigFile: c.String("config"), Logs: true}
	given := func(name string) bool { return opts.ConfigFile == "" || c.IsSet(name) }
	if given("host") {
		opts.Host = c.String("host")
	}
	if given("port") {
		opts.Port = c.Int("port")
	}
	if given("store-dir") {
		opts.StoreDir = c.String("store-dir")
	}
	if given("max-payload") {
		maxPayload := c.Int64("max-payload")
		if maxPayload <= 0 || maxPayload > math.MaxInt32 {
			return opts, fmt.Errorf("nats: --max-payload must be between 1 and %d, got %d", math.MaxInt32, maxPayload)
		}
		opts.MaxPayload = int32(maxPayload)
	}
	if v := c.String("sync-interval"); v != "" {
		if strings.EqualFold(v, "always") {
			opts.SyncAlways = true
		} else {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return opts, fmt.Errorf("nats: --sync-interval must be \"always\" or a positive duration such as 10s or 2m, got %q", v)
			}
			opts.SyncInterval = d
		}
	}
	opts.ServerName = c.String("server-name")
	opts.ClusterName = c.String("cluster-name")
	opts.ClusterListen = c.String("cluster-listen")
	for _, r := range strings.Split(c.String("routes"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			opts.Routes = append(opts.Routes, r)
		}
	}
	return opts, nil
}
