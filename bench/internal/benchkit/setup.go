package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// Main finishes a benchmark's command line and runs it: the program
// registers its flags first (Flags.Register for the common ones), Main sets
// the usage text from about and parses; an extra argument or an error from
// one of checks (in order) ends the program with status 2; then run gets a
// context that SIGINT or SIGTERM cancels, and an error from it ends the
// program with status 1. Errors are printed prefixed with name, the package
// path below the module (e.g. "bench/snapshot").
func Main(name, about string, run func(context.Context) error, checks ...func() error) {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./%s [flags]\n\n%s\n\nflags:\n", name, about)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
			os.Exit(2)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Flags binds the flags every benchmark has to the program's own option
// fields, so that its code keeps reading them where they are.
type Flags struct {
	Bin     *string        // --bin: the built pgflo binary; Check makes it absolute
	Out     *string        // --out: also write the report to this file
	Keep    *bool          // --keep: keep the temp and data dirs
	Timeout *time.Duration // --timeout: give up on a measurement taking longer
}

// Register registers the flags: outExample is where the report usually
// goes, timeout the default of --timeout and timeoutUsage its help text.
func (f Flags) Register(outExample string, timeout time.Duration, timeoutUsage string) {
	flag.StringVar(f.Bin, "bin", "./pgflo", "path of the built pgflo binary")
	flag.StringVar(f.Out, "out", "", "also write the result table (markdown) to this file, e.g. "+outExample)
	flag.BoolVar(f.Keep, "keep", false, "keep the temp dirs (configs, logs, NATS store, output, PostgreSQL data dir)")
	flag.DurationVar(f.Timeout, "timeout", timeout, timeoutUsage)
}

// Check validates --timeout and resolves --bin to an absolute path.
func (f Flags) Check() error {
	if *f.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %v", *f.Timeout)
	}
	bin, err := ResolveBin(*f.Bin)
	if err != nil {
		return err
	}
	*f.Bin = bin
	return nil
}

// WorkDir creates a temp dir (os.MkdirTemp pattern) for a run's configs, logs
// and output. cleanup removes it, or with keep only says where it is.
func WorkDir(pattern string, keep bool) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, fmt.Errorf("create work dir: %w", err)
	}
	return dir, func() {
		if keep {
			Say("kept work dir %s", dir)
		} else if rmErr := os.RemoveAll(dir); rmErr != nil {
			Warn("remove work dir: %v", rmErr)
		}
	}, nil
}

// StartPostgres starts a throwaway PostgreSQL cluster (testenv.StartPostgres).
// stop stops it and removes it, or with keep stops only the server and says
// where the data dir is, followed by keptNote.
func StartPostgres(keep bool, keptNote string) (pg *testenv.Postgres, stop func(), err error) {
	pg, err = testenv.StartPostgres()
	if err != nil {
		return nil, nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return pg, func() {
		if keep {
			if stopErr := pg.StopServer(); stopErr != nil {
				Warn("%v", stopErr)
			}
			Say("kept PostgreSQL data dir %s%s", filepath.Dir(pg.LogFile()), keptNote)
		} else if stopErr := pg.Stop(); stopErr != nil {
			Warn("%v", stopErr)
		}
	}, nil
}

// StartRun creates a run's work dir (WorkDir) and starts its throwaway
// PostgreSQL cluster (StartPostgres); cleanup stops the cluster and removes
// the dir, or with keep says where they are.
func StartRun(pattern string, keep bool) (work string, pg *testenv.Postgres, cleanup func(), err error) {
	work, removeWork, err := WorkDir(pattern, keep)
	if err != nil {
		return "", nil, nil, err
	}
	Say("starting a throwaway PostgreSQL cluster (wal_level=logical, fsync off)")
	pg, stopPG, err := StartPostgres(keep, " (the next harness run removes it once it is a minute old)")
	if err != nil {
		removeWork()
		return "", nil, nil, err
	}
	return work, pg, func() {
		stopPG()
		removeWork()
	}, nil
}

// Procs is the set of processes a measurement started, in start order.
type Procs []*Proc

// StopAll stops the processes in reverse order; with warn, a process that
// does not stop cleanly is reported with the end of its log.
func (ps Procs) StopAll(warn bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if stopErr := ps[i].Stop(); stopErr != nil && warn {
			Warn("%v\n%s", stopErr, ps[i].Describe())
		}
	}
}

// Describe adds the end of every process log to err, for a failure.
func (ps Procs) Describe(err error) error {
	var b strings.Builder
	b.WriteString(err.Error())
	for _, p := range ps {
		b.WriteString("\n")
		b.WriteString(p.Describe())
	}
	return errors.New(b.String())
}

// Exited returns an error naming the first process that has exited, with
// what the output holds so far (summary) and every process log, or nil while
// all run.
func (ps Procs) Exited(summary func() string) error {
	for _, p := range ps {
		if p.Exited() {
			return ps.Describe(fmt.Errorf("%s exited during the run (%v); output so far: %s", p.Name, p.Err(), summary()))
		}
	}
	return nil
}

// StartNATS runs `pgflo nats` with its store in work (StartNATS), adds it
// to ps, and watches group's stream on it; the caller closes the watch.
func (ps *Procs) StartNATS(work, bin, group string) (nats *Proc, url string, watch *StreamWatch, err error) {
	nats, url, err = StartNATS(work, bin)
	if err != nil {
		return nil, "", nil, err
	}
	*ps = append(*ps, nats)
	watch, err = NewStreamWatch(url, group)
	if err != nil {
		return nil, "", nil, err
	}
	return nats, url, watch, nil
}

// Wait calls step every interval until it reports done, and says status
// every 5 seconds. It fails when step does, when a process of ps exits, when
// ctx ends, or when timeout has passed since start: "pgflo did not <what>
// within <timeout>", with status and every process log.
func (ps Procs) Wait(ctx context.Context, start time.Time, timeout, interval time.Duration, what string, step func() (bool, error), status func() string) error {
	deadline := start.Add(timeout)
	nextProgress := start.Add(5 * time.Second)
	for {
		done, err := step()
		if err != nil || done {
			return err
		}
		if err := ps.Exited(status); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		if now.After(deadline) {
			return ps.Describe(fmt.Errorf("pgflo did not %s within %v; output so far: %s", what, timeout, status()))
		}
		if now.After(nextProgress) {
			Say("    %.0fs: %s", now.Sub(start).Seconds(), status())
			nextProgress = now.Add(5 * time.Second)
		}
		time.Sleep(interval)
	}
}

// WriteFileWorker writes the config of a worker that writes group's
// change events, read from NATS at natsURL, to a file, one JSON line each;
// it returns the config's path and the file's, both in work.
func WriteFileWorker(work, natsURL, group string) (cfg, output string, err error) {
	cfg, output = filepath.Join(work, "worker.yaml"), filepath.Join(work, "out.jsonl")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`http:
  enabled: false
logger:
  level: WARN
  format: logfmt
input:
  pg_flo_worker:
    url: %q
    group: %s
pipeline:
  processors:
    # As resources/worker.yaml: one write per batch instead of two per event.
    - archive:
        format: lines
output:
  file:
    path: %q
    codec: lines
`, natsURL, group, output)), 0o600)
	return cfg, output, err
}

// StartPipeline starts the replicator (`bin run repCfg`) and then the worker
// (`bin run workerCfg`), both logging to work and added to ps. The worker
// needs the group's stream, which the replicator's output creates; started
// earlier it would only fail and retry with backoff, so it is started once
// watch sees the stream.
func (ps *Procs) StartPipeline(ctx context.Context, work, bin, repCfg, workerCfg string, watch *StreamWatch) (rep, worker *Proc, err error) {
	rep, err = StartProc(work, "replicator", bin, "run", repCfg)
	if err != nil {
		return nil, nil, err
	}
	*ps = append(*ps, rep)
	if err := watch.WaitCreated(ctx, rep, 60*time.Second); err != nil {
		return nil, nil, ps.Describe(err)
	}
	worker, err = StartProc(work, "worker", bin, "run", workerCfg)
	if err != nil {
		return nil, nil, err
	}
	*ps = append(*ps, worker)
	return rep, worker, nil
}
