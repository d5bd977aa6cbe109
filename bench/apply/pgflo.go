package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// pipeline is one way of running pgflo into its own target, with its own
// group (slot, stream, progress row).
type pipeline struct {
	name, short   string
	group, target string
	// viaNATS runs replicator → JetStream and worker → pg_flo_postgres as
	// two processes; otherwise replicator → pg_flo_postgres is one.
	viaNATS bool
	// cli starts them with pg_flo's command line (`pgflo replicator`,
	// `pgflo worker postgres`) instead of configs.
	cli bool
	// keepPacks sets the worker's snapshot_packs: keep; the other
	// pipelines leave it at its default.
	keepPacks     bool
	sync, catchUp benchkit.Measurement
	cpu           catchUpCPU // of the catch-up
	syncCPU       syncCPU    // of the initial sync
	// rss is the peak RSS of each process over both runs.
	rss   map[string]int64
	procs []*benchkit.Proc
}

const logging = "logger:\n  level: INFO\n  format: logfmt\n"

// Ports of the processes' HTTP servers with --profile.
const (
	replicatorPort = 19101
	workerPort     = 19102
)

// httpSection is a process's http config: off, or with --profile its debug
// endpoints on port.
func (b *bench) httpSection(port int) string {
	if b.o.profile == "" {
		return "http:\n  enabled: false\n"
	}
	return fmt.Sprintf("http:\n  address: 127.0.0.1:%d\n  debug_endpoints: true\n", port)
}

// profile saves a CPU profile of the process listening on port, taken over
// the first seconds after it answers: --profile DIR/<name>.prof.
func (b *bench) profile(port int, name string) {
	if b.o.profile == "" {
		return
	}
	go func() {
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		for range 600 {
			if resp, err := http.Get(base + "/ping"); err == nil {
				resp.Body.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, b.o.profileS))
		if err != nil {
			benchkit.Warn("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(filepath.Join(b.o.profile, name+".prof"), data, 0o644)
		}
		if err != nil {
			benchkit.Warn("profile %s: %v", name, err)
		}
	}()
}

// configs writes the pipeline's configs and returns their paths: the
// replicator's and, via NATS, the worker's.
func (b *bench) configs(p *pipeline) (rep, worker string, err error) {
	source := fmt.Sprintf(`input:
  pg_flo_replicator:
    dsn: %q
    group: %s
    tables: [%s]
    mode: copy_and_stream
    nats:
      url: %q
%s`, b.source, p.group, table, b.natsURL, benchkit.IndentFields(b.o.inputFields))
	sink := fmt.Sprintf(`output:
  pg_flo_postgres:
    dsn: %q
    group: %s
%s`, b.dsn(p.target), p.group, benchkit.IndentFields(b.o.outputFields))
	rep = filepath.Join(b.work, p.group+"-replicator.yaml")
	if !p.viaNATS {
		return rep, "", os.WriteFile(rep, []byte(b.httpSection(replicatorPort)+logging+source+sink), 0o600)
	}
	if err := os.WriteFile(rep, []byte(b.httpSection(replicatorPort)+logging+source+fmt.Sprintf(`output:
  pg_flo_jetstream:
    url: %q
    group: %s
`, b.natsURL, p.group)), 0o600); err != nil {
		return "", "", err
	}
	fields := ""
	if b.o.batchSize > 0 {
		fields = fmt.Sprintf("    batch_size: %d\n", b.o.batchSize)
	}
	if p.keepPacks {
		fields += "    snapshot_packs: keep\n"
	}
	worker = filepath.Join(b.work, p.group+"-worker.yaml")
	return rep, worker, os.WriteFile(worker, []byte(b.httpSection(workerPort)+logging+fmt.Sprintf(`input:
  pg_flo_worker:
    url: %q
    group: %s
%s%s`, b.natsURL, p.group, fields, benchkit.IndentFields(b.o.workerFields))+sink), 0o600)
}

// cliArgs returns the command lines of the pipeline's replicator and worker
// as pg_flo's users start them: their flags and defaults, nothing else.
func (b *bench) cliArgs(p *pipeline) (rep, worker []string, err error) {
	flags := func(prefix, db string) ([]string, error) {
		c, err := pgx.ParseConfig(b.dsn(db))
		if err != nil {
			return nil, err
		}
		// The throwaway clusters trust local connections; pg_flo demands
		// a password all the same.
		return []string{"--" + prefix + "host", c.Host, "--" + prefix + "port", strconv.Itoa(int(c.Port)),
			"--" + prefix + "dbname", db, "--" + prefix + "user", c.User, "--" + prefix + "password", "unused"}, nil
	}
	source, err := flags("", sourceDB)
	if err != nil {
		return nil, nil, err
	}
	target, err := flags("target-", p.target)
	if err != nil {
		return nil, nil, err
	}
	common := []string{"--group", p.group, "--nats-url", b.natsURL}
	rep = append(append(append([]string{"replicator"}, source...), common...), "--tables", table, "--copy-and-stream")
	worker = append(append([]string{"worker", "postgres"}, common...), target...)
	return rep, worker, nil
}

// commands returns the arguments of the pipeline's replicator and worker
// (nil without NATS).
func (b *bench) commands(p *pipeline) (rep, worker []string, err error) {
	if p.cli {
		return b.cliArgs(p)
	}
	repCfg, workerCfg, err := b.configs(p)
	if err != nil {
		return nil, nil, err
	}
	return []string{"run", repCfg}, []string{"run", workerCfg}, nil
}

// start starts the pipeline's processes; the worker as soon as the
// replicator created the group's stream (earlier it would only retry).
func (b *bench) start(ctx context.Context, p *pipeline, phase string) error {
	repArgs, workerArgs, err := b.commands(p)
	if err != nil {
		return err
	}
	rep, err := benchkit.StartProc(b.work, p.group+"-replicator-"+phase, b.o.bin, repArgs...)
	if err != nil {
		return err
	}
	p.procs = []*benchkit.Proc{rep}
	if !p.cli { // pg_flo's command line has no debug endpoints
		b.profile(replicatorPort, p.group+"-replicator-"+phase)
	}
	if !p.viaNATS {
		return nil
	}
	watch, err := benchkit.NewStreamWatch(b.natsURL, p.group)
	if err != nil {
		return err
	}
	defer watch.Close()
	if err := watch.WaitCreated(ctx, rep, 60*time.Second); err != nil {
		return b.describe(p, err)
	}
	worker, err := benchkit.StartProc(b.work, p.group+"-worker-"+phase, b.o.bin, workerArgs...)
	if err != nil {
		return err
	}
	p.procs = append(p.procs, worker)
	if !p.cli {
		b.profile(workerPort, p.group+"-worker-"+phase)
	}
	return nil
}

// stop stops the pipeline's processes and keeps their peak RSS.
func (b *bench) stop(p *pipeline) error {
	var errs []error
	for i := len(p.procs) - 1; i >= 0; i-- {
		proc := p.procs[i]
		if err := proc.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, proc.Describe()))
		}
		role := "replicator"
		if i == 1 {
			role = "worker"
		}
		if rss, ok := proc.MaxRSS(); ok && rss > p.rss[role] {
			if p.rss == nil {
				p.rss = map[string]int64{}
			}
			p.rss[role] = rss
		}
	}
	p.procs = nil
	return errors.Join(errs...)
}

// alive fails when a process of the pipeline exited.
func (b *bench) alive(p *pipeline) error {
	for _, proc := range p.procs {
		if proc.Exited() {
			return b.describe(p, fmt.Errorf("%s exited: %v", proc.Name, proc.Err()))
		}
	}
	return nil
}

func (b *bench) describe(p *pipeline, err error) error {
	var s strings.Builder
	s.WriteString(err.Error())
	for _, proc := range p.procs {
		s.WriteString("\n")
		s.WriteString(proc.Describe())
	}
	return errors.New(s.String())
}

// pgfloInitialSync runs the pipeline in copy_and_stream mode into its empty
// target, timed from the replicator's start until the target's progress
// table counts every snapshot row; then waits for the replicator to record
// the snapshot complete, and stops the pipeline.
func (b *bench) pgfloInitialSync(ctx context.Context, p *pipeline) error {
	p.sync = benchkit.Measurement{Reader: p.name}
	source0, target0 := b.clusterCPU()
	natsBefore := b.nats.CPU()
	if err := b.start(ctx, p, "sync"); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, b.dsn(p.target))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	took, err := benchkit.Poll(ctx, p.procs[0].Started, pollEvery, b.o.timeout, p.name+" initial sync", func() (bool, error) {
		if err := b.alive(p); err != nil {
			return false, err
		}
		var n int64
		// The output creates the progress table when it connects.
		err := conn.QueryRow(ctx, "SELECT coalesce((SELECT snapshot_rows FROM pgflo.progress WHERE group_name = $1), 0)", p.group).Scan(&n)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			return false, nil
		}
		return n >= int64(b.o.rows), err
	})
	if err != nil {
		return errors.Join(b.describe(p, err), b.stop(p))
	}
	p.sync.Seconds, p.sync.OK = took.Seconds(), true
	p.syncCPU = b.syncCPUSince(source0, target0)
	for i, proc := range p.procs {
		p.syncCPU.addPgflo([...]string{"replicator", "worker"}[i], proc.CPU())
	}
	if p.viaNATS && natsBefore >= 0 {
		p.syncCPU.addPgflo("NATS", b.nats.CPU()-natsBefore)
	}
	// Stopped before the replicator recorded the snapshot complete, it would
	// copy again when started for the backlog.
	rep := p.procs[0]
	_, err = benchkit.Poll(ctx, time.Now(), pollEvery, b.o.timeout, "snapshot recorded complete", func() (bool, error) {
		log, err := os.ReadFile(rep.LogPath)
		return strings.Contains(string(log), "snapshot complete"), err
	})
	if err != nil {
		return errors.Join(b.describe(p, err), b.stop(p))
	}
	var count int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&count); err != nil || count != int64(b.o.rows) {
		return errors.Join(fmt.Errorf("%s: the target holds %d rows, want %d (%v)", p.name, count, b.o.rows, err), b.stop(p))
	}
	return b.stop(p)
}

// pgfloCatchUp starts the pipeline again (its group streams from the slot:
// the snapshot is done) and times it until the marker is on its target.
func (b *bench) pgfloCatchUp(ctx context.Context, p *pipeline) error {
	p.catchUp = benchkit.Measurement{Reader: p.name}
	if err := b.start(ctx, p, "catchup"); err != nil {
		return err
	}
	natsBefore := b.nats.CPU()
	took, err := b.waitMarker(ctx, p.target, p.procs[0].Started, p.name+" catch-up", func() error { return b.alive(p) })
	if err != nil {
		return errors.Join(b.describe(p, err), b.stop(p))
	}
	p.catchUp.Seconds, p.catchUp.OK = took.Seconds(), true
	p.cpu = b.measureCatchUpCPU(ctx, p.target, replicationSlot(p.group))
	for i, proc := range p.procs {
		role := [...]string{"replicator", "worker"}[i]
		p.cpu.addPgflo(role, proc.CPU())
	}
	if p.viaNATS && natsBefore >= 0 {
		p.cpu.addPgflo("NATS", b.nats.CPU()-natsBefore)
	}
	return b.stop(p)
}
