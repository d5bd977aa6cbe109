// Package chaos is pgflo's fault campaign: a replication group copying and
// streaming a mixed workload between two real PostgreSQL clusters through real
// NATS, while faults drawn from a seed hit every part of it — processes killed
// or frozen, databases crashed, networks cut, black-holed or slowed — and at
// the end a check that the target equals the source and that no row ever went
// back to an older version on the target.
//
// The schedule of faults is a function of the seed (Schedule), so a seed that
// fails replays the same faults; the workload's interleaving with them is
// timing and not reproduced exactly. `make chaos` runs it (cmd/chaos);
// tests/chaos_test.go runs a short one in `make test`. docs/chaos.md says how
// to read the report.
package chaos

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// NATS modes of a campaign.
const (
	// NATSSingle is one nats-server; kill-nats kills it.
	NATSSingle = "single"
	// NATSCluster is three nats-servers with the stream and the state
	// bucket replicated three times; kill-nats kills one of them.
	NATSCluster = "cluster"
)

// Config is what a campaign runs.
type Config struct {
	// Seed draws the schedule (and seeds the workload).
	Seed int64
	// Faults is how many faults the schedule holds; a step of two faults
	// at once counts two.
	Faults int
	// NATS is NATSSingle or NATSCluster.
	NATS string
	// Rows is the size of the table copied at the start (default 40,000).
	Rows int
	// ConvergeTimeout bounds the wait for the target to equal the source
	// after the last fault (default 5 minutes).
	ConvergeTimeout time.Duration
	// Binary is the pgflo binary (default: built from this repository).
	Binary string
	// Out receives the campaign's log and report (default os.Stdout).
	Out io.Writer
	// CalmCopy holds the first fault until the copy is complete, so that a
	// campaign explores streaming while a known failure of interrupted
	// copies is open (docs/chaos.md).
	CalmCopy bool
}

// Report is what a campaign found.
type Report struct {
	Seed   int64
	NATS   string
	Faults map[Kind]int
	// Steps are the schedule's steps, of which TwoAtOnce held two faults.
	Steps, TwoAtOnce int
	// Duration is the whole campaign, setup included.
	Duration time.Duration
	// SnapshotDone is when the copy completed, from the pipeline's start
	// (zero if the campaign never saw it).
	SnapshotDone time.Duration
	// FaultsDuringCopy is how many faults started before the copy completed.
	FaultsDuringCopy int
	// Converged is how long after the last fault healed the target equalled
	// the source (zero if it never did).
	Converged time.Duration
	// Tables are the final digests.
	Tables []TableDigest
	// Differences describe the rows that differ when the target did not
	// converge.
	Differences []string
	// RowVersions is how many acct row versions the target wrote, and
	// Duplicates how many of those wrote a version already written: a
	// duplicate delivery that reached the rows (and left them as they were).
	RowVersions, Duplicates int64
	// SkippedChanges is how many changes pg_flo_postgres skipped as already
	// applied (its progress table): duplicate deliveries absorbed before
	// reaching the rows. LateSnapshotRows are snapshot rows it left out
	// because newer changes were applied.
	SkippedChanges, LateSnapshotRows int64
	// ResentBatches counts the replicator's batches the output rejected and
	// it delivered again, and the worker's batches read again.
	ResentBatches, RereadBatches int
	// OrderViolations is how many times an acct row's counter went back on
	// the target; Backwards shows the first ones (id, before, after).
	OrderViolations int64
	Backwards       []string
	// SelfExits are processes that exited without being killed.
	SelfExits []string
	// Replicators and Workers count the processes started.
	Replicators, Workers int
	// Transactions and FailedTransactions are the workload's, by the
	// writer's count; TxKinds by kind.
	Transactions, FailedTransactions int64
	TxKinds                          map[string]int64
}

// TableDigest is one table's digest on both sides.
type TableDigest struct {
	Table, Source, Target string
}

// ErrDiverged is returned when the target does not equal the source, or a
// row's counter went back on the target.
var ErrDiverged = errors.New("the target diverged from the source")

// Run runs a campaign and returns its report. The error is ErrDiverged (with
// the details) when an invariant failed, another error when the campaign
// itself could not run; the report is filled as far as the campaign got.
func Run(t testing.TB, cfg Config) (*Report, error) {
	t.Helper()
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Rows == 0 {
		cfg.Rows = 40_000
	}
	if cfg.ConvergeTimeout == 0 {
		cfg.ConvergeTimeout = 5 * time.Minute
	}
	servers := 1
	switch cfg.NATS {
	case "", NATSSingle:
		cfg.NATS = NATSSingle
	case NATSCluster:
		servers = 3
	default:
		return nil, fmt.Errorf("nats mode %q: want %s or %s", cfg.NATS, NATSSingle, NATSCluster)
	}
	begin := time.Now()
	start := begin // the pipeline's start, once set up
	// Each line has the time since the pipeline's start and the wall clock
	// (UTC, as the processes' logs have it), to find a fault in their logs.
	logf := func(format string, args ...any) {
		now := time.Now()
		fmt.Fprintf(cfg.Out, "[%7.2fs %s] "+format+"\n", append([]any{now.Sub(start).Seconds(), now.UTC().Format("15:04:05.000")}, args...)...)
	}
	rep := &Report{Seed: cfg.Seed, NATS: cfg.NATS, Faults: map[Kind]int{}}
	defer func() { rep.Duration = time.Since(begin) }()

	steps := Schedule(cfg.Seed, cfg.Faults, servers)
	fmt.Fprintf(cfg.Out, "chaos: seed %d, %d faults in %d steps, NATS %s, %d rows to copy\n", cfg.Seed, cfg.Faults, len(steps), cfg.NATS, cfg.Rows)
	for _, s := range steps {
		rep.Steps++
		if len(s.Faults) > 1 {
			rep.TwoAtOnce++
		}
		for _, f := range s.Faults {
			rep.Faults[f.Kind]++
		}
	}

	e, err := setUp(t, cfg, logf)
	if err != nil {
		return rep, err
	}
	start = time.Now()
	logf("set up in %v: source PostgreSQL on port %d, target on port %d, NATS %s; starting the workload, the replicator and the worker",
		start.Sub(begin).Round(time.Millisecond), e.source.Port(), e.target.Port(), e.nats.URLs())
	w := startWriter(e.sourceDB, cfg.Rows, cfg.Seed+1, logf)
	e.start(e.replicator)
	e.start(e.worker)

	at := func() string { return fmt.Sprintf("%.2fs", time.Since(start).Seconds()) }
	// wait sleeps until deadline, meanwhile restarting processes that exited
	// by themselves and noting when the copy completed.
	wait := func(until time.Time) {
		for {
			for _, p := range []*process{e.replicator, e.worker} {
				if exit := e.supervise(p, at); exit != "" {
					logf("%s", exit)
					rep.SelfExits = append(rep.SelfExits, exit)
				}
			}
			if rep.SnapshotDone == 0 && e.snapshotComplete() {
				rep.SnapshotDone = time.Since(start)
				logf("the copy is complete")
			}
			d := time.Until(until)
			if d <= 0 {
				return
			}
			time.Sleep(min(d, 250*time.Millisecond))
		}
	}

	if cfg.CalmCopy {
		for calm := time.Now().Add(5 * time.Minute); rep.SnapshotDone == 0 && time.Now().Before(calm); {
			wait(time.Now().Add(250 * time.Millisecond))
		}
	}
	n := 0
	for _, s := range steps {
		wait(time.Now().Add(s.Gap))
		type action struct {
			at   time.Duration
			heal bool
			f    Fault
			n    int
		}
		var actions []action
		for i, f := range s.Faults {
			n++
			begins := time.Duration(0)
			if i == 1 {
				begins = s.Offset
			}
			actions = append(actions, action{at: begins, f: f, n: n}, action{at: begins + f.Hold, heal: true, f: f, n: n})
		}
		sort.SliceStable(actions, func(i, j int) bool { return actions[i].at < actions[j].at })
		t0 := time.Now()
		for _, a := range actions {
			wait(t0.Add(a.at))
			if a.heal {
				if err := e.heal(a.f); err != nil {
					return rep, fmt.Errorf("heal fault %d (%s): %w", a.n, a.f, err)
				}
				logf("fault %d healed: %s", a.n, a.f.Kind)
				continue
			}
			if rep.SnapshotDone == 0 {
				rep.FaultsDuringCopy++
			}
			both := ""
			if len(s.Faults) > 1 {
				both = " (two at once)"
			}
			logf("fault %d: %s%s", a.n, a.f, both)
			if err := e.inject(a.f); err != nil {
				return rep, fmt.Errorf("inject fault %d (%s): %w", a.n, a.f, err)
			}
		}
	}
	healed := time.Now()
	logf("the last fault healed; stopping the workload")
	w.finish()
	rep.Transactions, rep.FailedTransactions, rep.TxKinds = w.committed.Load(), w.failed.Load(), w.counts
	logf("workload stopped: %d transactions committed, %d failed (by the faults)", rep.Transactions, rep.FailedTransactions)

	converged, why := e.converge(cfg.ConvergeTimeout, func() {
		wait(time.Now().Add(500 * time.Millisecond))
	})
	if converged {
		rep.Converged = time.Since(healed)
		logf("the target equals the source %v after the last fault healed", rep.Converged.Round(time.Millisecond))
	} else {
		logf("the target did not converge: %s", why)
		rep.Differences = append(rep.Differences, why)
	}
	var problems []string
	if err := e.finalChecks(rep, converged); err != nil {
		return rep, err
	}
	if !converged {
		problems = append(problems, "the target did not converge: "+strings.Join(rep.Differences, "; "))
	}
	for _, d := range rep.Tables {
		if d.Source != d.Target {
			problems = append(problems, fmt.Sprintf("table %s: source %s, target %s", d.Table, d.Source, d.Target))
		}
	}
	if rep.OrderViolations > 0 {
		problems = append(problems, fmt.Sprintf("%d acct row versions went back on the target (id: before → after): %s", rep.OrderViolations, strings.Join(rep.Backwards, ", ")))
	}
	rep.Replicators, rep.Workers = len(e.replicator.all), len(e.worker.all)
	if len(problems) > 0 {
		return rep, fmt.Errorf("%w: %s (seed %d; logs in %s)", ErrDiverged, strings.Join(problems, "; "), cfg.Seed, e.dir)
	}
	return rep, nil
}

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos report — seed %d, NATS %s, %v\n", r.Seed, r.NATS, r.Duration.Round(time.Second))
	total := 0
	var kinds []string
	for _, k := range Kinds {
		if c := r.Faults[k]; c > 0 {
			total += c
			kinds = append(kinds, fmt.Sprintf("%s %d", k, c))
		}
	}
	fmt.Fprintf(w, "  faults:       %d in %d steps (%d steps of two at once): %s\n", total, r.Steps, r.TwoAtOnce, strings.Join(kinds, ", "))
	if r.SnapshotDone > 0 {
		fmt.Fprintf(w, "  copy:         complete %.1fs after the start, %d faults during it\n", r.SnapshotDone.Seconds(), r.FaultsDuringCopy)
	} else {
		fmt.Fprintf(w, "  copy:         completion not seen\n")
	}
	var txKinds []string
	for k, c := range r.TxKinds {
		txKinds = append(txKinds, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(txKinds)
	fmt.Fprintf(w, "  workload:     %d transactions committed (%s), %d failed\n", r.Transactions, strings.Join(txKinds, ", "), r.FailedTransactions)
	fmt.Fprintf(w, "  processes:    %d replicators and %d workers started; %d exited by themselves\n", r.Replicators, r.Workers, len(r.SelfExits))
	for _, s := range r.SelfExits {
		fmt.Fprintf(w, "                %s\n", s)
	}
	if r.Converged > 0 {
		fmt.Fprintf(w, "  converged:    %.1fs after the last fault healed\n", r.Converged.Seconds())
	} else {
		fmt.Fprintf(w, "  converged:    NO\n")
	}
	for _, d := range r.Tables {
		verdict := "equal"
		if d.Source != d.Target {
			verdict = "DIFFERENT: target " + d.Target
		}
		fmt.Fprintf(w, "  table %-6s  source %s — %s\n", d.Table, d.Source, verdict)
	}
	for _, d := range r.Differences {
		fmt.Fprintf(w, "                %s\n", d)
	}
	fmt.Fprintf(w, "  order:        %d of %d acct row versions written on the target went back\n", r.OrderViolations, r.RowVersions)
	for _, b := range r.Backwards {
		fmt.Fprintf(w, "                id %s\n", b)
	}
	fmt.Fprintf(w, "  duplicates:   %d changes skipped as already applied (progress table), %d row versions written twice, %d late snapshot rows left out\n",
		r.SkippedChanges, r.Duplicates, r.LateSnapshotRows)
	fmt.Fprintf(w, "  resent:       %d replicator batches delivered again, %d worker batches read again\n", r.ResentBatches, r.RereadBatches)
}
