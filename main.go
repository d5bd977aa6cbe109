// Command pgflo is a complete Benthos (every stock input, processor and
// output) plus pgflo's PostgreSQL change-data-capture components
// (pg_flo_replicator, pg_flo_jetstream, pg_flo_worker, …) and the
// `pgflo nats` embedded JetStream server.
package main

import (
	"context"
	"os"
	"runtime/debug"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/config"
	_ "github.com/pgflo/pgflo/inputs"
	"github.com/pgflo/pgflo/internal/cli"
	"github.com/pgflo/pgflo/internal/natsembed"
	_ "github.com/pgflo/pgflo/metrics"
	_ "github.com/pgflo/pgflo/outputs"
	_ "github.com/pgflo/pgflo/processors"
)

// Set by the build (-ldflags "-X main.version=… -X main.commit=… -X main.dateBuilt=…").
var (
	version   = "dev"
	commit    = "none"
	dateBuilt = "unknown"
)

// Garbage collector defaults, unless GOGC / GOMEMLIMIT say otherwise. A CDC
// pipeline allocates a message per change and keeps little alive, so Go's
// default (collect when the heap doubles) spends a third of a worker's CPU
// in the collector during a snapshot. Collecting at 5× the live heap
// (GOGC=400) halves the worker's CPU there; the soft limit keeps a process
// with a large live heap from growing without bound (the collector then runs
// more often instead). docs/operations.md.
const (
	gcPercent   = 400
	memoryLimit = 192 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

func main() {
	tuneGC()
	opts := []service.CLIOptFunc{
		service.CLIOptSetBinaryName("pgflo"),
		service.CLIOptSetProductName("pgflo"),
		service.CLIOptSetVersion(version, dateBuilt),
		service.CLIOptAddCommand(natsembed.Command()),
		service.CLIOptAddCommand(cli.VersionCommand(cli.Build{Version: version, Commit: commit, Date: dateBuilt})),
		service.CLIOptAddCommand(cli.CleanupCommand()),
		service.CLIOptAddCommand(cli.ResyncCommand()),
		service.CLIOptAddCommand(cli.DeadLettersCommand()),
	}
	// pg_flo's own commands: replicator, worker stdout|file|postgres|webhook.
	for _, cmd := range config.Commands() {
		opts = append(opts, service.CLIOptAddCommand(cmd))
	}
	service.RunCLI(context.Background(), opts...)
}
