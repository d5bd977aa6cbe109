package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/urfave/cli/v2"
)

const (
	flagConfig      = "config"
	flagPrintConfig = "print-config"
)

// Commands returns `pgflo replicator` and `pgflo worker <sink>`, pg_flo's
// commands, next to Benthos' own.
func Commands() []*cli.Command {
	return []*cli.Command{replicatorCommand(), workerCommand()}
}

func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfig, Usage: "pg_flo config file (flat kebab-case keys; default $HOME/.pg_flo.yaml when it exists)"},
		&cli.BoolFlag{Name: flagPrintConfig, Usage: "print the equivalent Benthos config (passwords as ${PG_FLO_…} references) and exit"},
	}
}

func flagsOf(settings ...[]setting) []cli.Flag {
	flags := commonFlags()
	for _, list := range settings {
		for _, st := range list {
			flags = append(flags, st.flag())
		}
	}
	return flags
}

func replicatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "replicator",
		Usage: "pg_flo's replicator: stream a PostgreSQL slot into the group's JetStream stream",
		Description: "Accepts pg_flo's flags, config file and PG_FLO_* environment variables, builds the equivalent\n" +
			"Benthos config (pg_flo_replicator → pg_flo_jetstream) and runs it. --print-config shows that config.",
		Flags: flagsOf(replicatorSettings),
		Action: func(c *cli.Context) error {
			return runBuilt(c, replicatorSettings, Replicator)
		},
	}
}

func workerCommand() *cli.Command {
	var subs []*cli.Command
	for _, sink := range []string{"stdout", "file", "postgres", "webhook"} {
		sink := sink
		subs = append(subs, &cli.Command{
			Name:  sink,
			Usage: "pg_flo's worker with the " + sink + " sink",
			Flags: flagsOf(workerSettings, sinkSettings[sink]),
			Action: func(c *cli.Context) error {
				all := append(append([]setting{}, workerSettings...), sinkSettings[sink]...)
				return runBuilt(c, all, func(s Settings) (Built, error) { return Worker(sink, s) })
			},
		})
	}
	return &cli.Command{
		Name:        "worker",
		Usage:       "pg_flo's worker: read the group's JetStream stream, transform, route and write to a sink",
		Subcommands: subs,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				_, err := Worker(c.Args().First(), Settings{})
				return cli.Exit(err.Error(), 1)
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

// runBuilt resolves the settings, builds the config and prints or runs it.
func runBuilt(c *cli.Context, settings []setting, build func(Settings) (Built, error)) error {
	file, path, err := loadFile(c.String(flagConfig))
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if path != "" {
		fmt.Fprintf(os.Stderr, "Using config file: %s\n", path)
	}
	s, err := resolve(settings, source{
		isSet: c.IsSet,
		flag: func(st setting) any {
			switch st.kind {
			case kindInt:
				return c.Int(st.name)
			case kindBool:
				return c.Bool(st.name)
			case kindList:
				return splitList(joinList(c.StringSlice(st.name)))
			}
			return c.String(st.name)
		},
		env:  os.LookupEnv,
		file: file,
	})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	built, err := build(s)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if c.Bool(flagPrintConfig) {
		fmt.Fprint(c.App.Writer, built.YAML)
		return nil
	}
	return run(c.Context, built)
}

func joinList(items []string) string {
	out := ""
	for i, item := range items {
		if i > 0 {
			out += ","
		}
		out += item
	}
	return out
}

// run runs a built config exactly as `pgflo run` runs a file: the config
// goes to a private temp file (it holds no password), the passwords into this
// process's environment, where the config's ${PG_FLO_…} references find them.
func run(ctx context.Context, built Built) error {
	dir, err := os.MkdirTemp("", "pgflo-config-")
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pgflo.yaml")
	if err := os.WriteFile(path, []byte(built.YAML), 0o600); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	for _, secret := range built.Secrets {
		if err := os.Setenv(secret.Env, secret.Escaped()); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	code, err := service.RunCLIToCode(ctx, service.CLIOptSetArgs("pgflo", "run", path), service.CLIOptSetBinaryName("pgflo"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}
