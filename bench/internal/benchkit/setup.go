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

// Main finishes a benchmark's command line and runs it: after flag.Parse (the
// program registers its flags and Usage first), an extra argument or an error
// from validate ends the program with status 2; then run gets a context that
// SIGINT or SIGTERM cancels, and an error from it ends the program with status
// 1. Errors are printed prefixed with name (e.g. "bench/snapshot").
func Main(name string, validate func() error, run func(context.Context) error) {
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	if err := validate(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
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
