// Package cli holds pgflo's own top-level commands that are not a pipeline
// (`pgflo version`, `pgflo cleanup`); main.go adds them next to Benthos'
// commands with service.CLIOptAddCommand.
package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Build identifies a pgflo binary: the values the build sets with -ldflags
// -X (see the Dockerfile).
type Build struct {
	Version, Commit, Date string
}

// String is the version line, in pg_flo's form:
// "pgflo <version> (commit: <commit>, built: <date>)".
func (b Build) String() string {
	return fmt.Sprintf("pgflo %s (commit: %s, built: %s)", b.Version, b.Commit, b.Date)
}

// VersionCommand returns `pgflo version`, which prints build's version line
// to stdout as `pg_flo version` does, so scripts that read it keep working
// (Benthos' `pgflo --version` stays too).
func VersionCommand(build Build) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "Print pgflo's version, commit and build date",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintln(c.App.Writer, build)
			return err
		},
	}
}
