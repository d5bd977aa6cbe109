// Command chaos runs pgflo's fault campaign (make chaos): a replication group
// between two throwaway PostgreSQL clusters through NATS, a mixed workload, and
// faults drawn from --seed; at the end it checks that the target equals the
// source and that no row went back to an older version, and prints a report.
// It exits 1 when the campaign found a divergence, 2 when it could not run.
// See docs/chaos.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pgflo/pgflo/internal/chaos"
	"github.com/pgflo/pgflo/internal/testenv"
)

func main() {
	seed := flag.Int64("seed", 0, "seed of the fault schedule (0: one from the clock, printed)")
	faults := flag.Int("faults", 50, "number of faults")
	natsMode := flag.String("nats", chaos.NATSSingle, "NATS: single (one server) or cluster (three, replicas 3)")
	rows := flag.Int("rows", 40_000, "rows of the table copied at the start")
	bin := flag.String("bin", "", "pgflo binary (default: built from this repository)")
	keep := flag.Bool("keep", false, "keep the work dir (process logs) even when the campaign passes")
	converge := flag.Duration("converge-timeout", 5*time.Minute, "longest wait for the target to equal the source after the last fault")
	plan := flag.Bool("plan", false, "print the seed's schedule of faults and exit")
	calmCopy := flag.Bool("calm-copy", false, "start the faults once the initial copy is complete")
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000
	}
	if *plan {
		servers := 1
		if *natsMode == chaos.NATSCluster {
			servers = 3
		}
		n := 0
		for i, s := range chaos.Schedule(*seed, *faults, servers) {
			for j, f := range s.Faults {
				n++
				when := fmt.Sprintf("after %v", s.Gap)
				if j == 1 {
					when = fmt.Sprintf("%v into step %d", s.Offset, i+1)
				}
				fmt.Printf("step %2d, fault %2d (%s): %s\n", i+1, n, when, f)
			}
		}
		return
	}
	if *bin != "" {
		abs, err := filepath.Abs(*bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			os.Exit(2)
		}
		*bin = abs
	}
	os.Exit(run(chaos.Config{Seed: *seed, Faults: *faults, NATS: *natsMode, Rows: *rows, Binary: *bin, ConvergeTimeout: *converge, Out: os.Stdout, CalmCopy: *calmCopy}, *keep))
}

func run(cfg chaos.Config, keep bool) int {
	work, err := os.MkdirTemp("", "pgflo-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	// An interrupted campaign still stops its servers and processes: they
	// are children that die with this process (parent-death signal).
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-interrupted
		fmt.Fprintf(os.Stderr, "chaos: interrupted (seed %d); logs in %s\n", cfg.Seed, work)
		os.Exit(130)
	}()
	var (
		report *chaos.Report
		runErr error
	)
	tb := testenv.NewProgramTB(context.Background(), "chaos", work, os.Stdout)
	failed := tb.Run(func(tb *testenv.ProgramTB) {
		report, runErr = chaos.Run(tb, cfg)
	})
	if report != nil {
		report.Print(os.Stdout)
	}
	code := 0
	switch {
	case errors.Is(runErr, chaos.ErrDiverged):
		fmt.Printf("\nFAIL: %v\n", runErr)
		code = 1
	case runErr != nil || failed:
		fmt.Printf("\nERROR: the campaign could not run: %v\n", runErr)
		code = 2
	}
	if code == 0 && !keep {
		_ = os.RemoveAll(work)
		fmt.Printf("\nchaos: seed %d PASS\n", cfg.Seed)
	} else {
		fmt.Printf("\nchaos: seed %d %s; process logs in %s\nreplay: %s\n",
			cfg.Seed, map[int]string{0: "PASS", 1: "FAIL", 2: "ERROR"}[code], work, replayCommand(cfg))
	}
	return code
}

// replayCommand is the command line that runs cfg's campaign again: the
// same faults with the same timings, against the same workload.
func replayCommand(cfg chaos.Config) string {
	cmd := fmt.Sprintf("go run ./cmd/chaos --seed %d --faults %d --nats %s", cfg.Seed, cfg.Faults, cfg.NATS)
	if cfg.Rows != 0 {
		cmd += fmt.Sprintf(" --rows %d", cfg.Rows)
	}
	if cfg.CalmCopy {
		cmd += " --calm-copy"
	}
	return cmd
}
