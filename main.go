// Command pgflo is a complete Benthos (every stock input, processor and
// output) plus pgflo's PostgreSQL change-data-capture components
// (pg_flo_replicator, pg_flo_jetstream, pg_flo_worker, …) and the
// `pgflo nats` embedded JetStream server.
package main

import (
	"context"

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

func main() {
	opts := []service.CLIOptFunc{
		service.CLIOptSetBinaryName("pgflo"),
		service.CLIOptSetProductName("pgflo"),
		service.CLIOptSetVersion(version, dateBuilt),
		service.CLIOptAddCommand(natsembed.Command()),
		service.CLIOptAddCommand(cli.VersionCommand(cli.Build{Version: version, Commit: commit, Date: dateBuilt})),
		service.CLIOptAddCommand(cli.CleanupCommand()),
	}
	// pg_flo's own commands: replicator, worker stdout|file|postgres|webhook.
	for _, cmd := range config.Commands() {
		opts = append(opts, service.CLIOptAddCommand(cmd))
	}
	service.RunCLI(context.Background(), opts...)
}
