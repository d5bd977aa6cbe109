package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/testenv"
)

// The pipeline's timeouts, shortened from their defaults (documented knobs)
// so that a fault held for seconds outlasts them: the campaign then sees
// them fire — lease expiry, resent publishes — many times in minutes.
const (
	ownerLease     = 5 * time.Second
	publishTimeout = 5 * time.Second
)

// group is the replication group the campaign runs.
const group = "chaos"

// env is everything a campaign runs: two PostgreSQL clusters, NATS, the
// proxies of the four links, and the replicator and worker processes.
type env struct {
	t        testing.TB
	bin      string
	dir      string
	logf     func(string, ...any)
	source   *testenv.Postgres
	target   *testenv.Postgres
	nats     *testenv.NATSCluster
	proxies  map[Link][]*testenv.Proxy // the NATS links: one per server
	sourceDB string                    // DSN of the source database, direct
	targetDB string                    // DSN of the target database, direct

	replicator, worker *process
}

// process is the replicator or the worker: the current OS process and every
// one started before, whose logs the report reads.
type process struct {
	name    string
	config  string
	current *testenv.Process
	all     []*testenv.Process
	// killed and stopped say whether the campaign killed or stopped the
	// current process: an exit it did not cause is the process's own.
	killed, stopped bool
}

func (e *env) start(p *process) {
	n := len(p.all) + 1
	proc := testenv.StartProcess(e.t, fmt.Sprintf("%s-%d", p.name, n), e.bin, "run", p.config)
	p.current, p.killed, p.stopped = proc, false, false
	p.all = append(p.all, proc)
}

// databaseName is the database the campaign replicates, on both clusters.
const databaseName = "app"

// setUp starts the servers and proxies, creates the schema on both sides,
// fills the source with cfg.Rows rows and writes the processes' configs.
func setUp(t testing.TB, cfg Config, logf func(string, ...any)) (*env, error) {
	e := &env{t: t, bin: cfg.Binary, dir: t.TempDir(), logf: logf, proxies: map[Link][]*testenv.Proxy{}}
	if e.bin == "" {
		e.bin = testenv.Binary(t)
	}
	var err error
	for _, pg := range []**testenv.Postgres{&e.source, &e.target} {
		if *pg, err = testenv.StartPostgres(); err != nil {
			return nil, err
		}
		srv := *pg
		t.Cleanup(func() { _ = srv.Stop() })
		// The harness runs PostgreSQL with synchronous_commit off, with which
		// an immediate shutdown loses commits already reported to the client:
		// the target would lose batches the worker acknowledged, a loss of the
		// harness's making. Production's default is on.
		if err := execSQL(srv.AdminDSN(), "ALTER SYSTEM SET synchronous_commit = on", "SELECT pg_reload_conf()", "CREATE DATABASE "+databaseName); err != nil {
			return nil, fmt.Errorf("prepare cluster on port %d: %w", srv.Port(), err)
		}
	}
	e.sourceDB, e.targetDB = e.source.DSN(databaseName), e.target.DSN(databaseName)
	if err := execSQL(e.sourceDB, sourceSQL+fmt.Sprintf(initialRowsSQL, cfg.Rows)); err != nil {
		return nil, fmt.Errorf("source schema: %w", err)
	}
	if err := execSQL(e.targetDB, sourceSQL+auditSQL); err != nil {
		return nil, fmt.Errorf("target schema: %w", err)
	}

	servers := 1
	if cfg.NATS == NATSCluster {
		servers = 3
	}
	e.nats = testenv.StartNATSCluster(t, servers, testenv.NATSNoAdvertise())
	proxy := func(link Link, port int) (*testenv.Proxy, error) {
		p, err := testenv.StartProxy(fmt.Sprintf("127.0.0.1:%d", port), 0)
		if err != nil {
			return nil, fmt.Errorf("proxy for %s: %w", link, err)
		}
		t.Cleanup(p.Close)
		e.proxies[link] = append(e.proxies[link], p)
		return p, nil
	}
	if _, err := proxy(ReplicatorSource, e.source.Port()); err != nil {
		return nil, err
	}
	if _, err := proxy(WorkerTarget, e.target.Port()); err != nil {
		return nil, err
	}
	for _, n := range e.nats.Nodes() {
		for _, link := range []Link{ReplicatorNATS, WorkerNATS} {
			if _, err := proxy(link, n.ClientPort); err != nil {
				return nil, err
			}
		}
	}

	replicas := ""
	if servers > 1 {
		replicas = "\n    state_replicas: 3"
	}
	// Small chunks copied one at a time: the copy has many chunks to
	// resume by, and lasts long enough for the first fault to interrupt it.
	repNATS := e.natsURLs(ReplicatorNATS)
	e.replicator = &process{name: "replicator", config: e.writeConfig("replicator.yaml", fmt.Sprintf(`%s
input:
  pg_flo_replicator:
    dsn: %q
    group: %s
    mode: copy_and_stream
    tables: [acct, hist]
    track_ddl: true
    copy_chunk_pages: 20
    max_copy_workers: 1
    status_interval: 1s
    owner_lease: %v
    nats:
      url: %s%s
output:
  pg_flo_jetstream:
    url: %s
    group: %s
    publish_timeout: %v
    stream_replicas: %d
`, processHeader, proxyDSN(e.proxies[ReplicatorSource][0]), group, ownerLease, repNATS, replicas, repNATS, group, publishTimeout, servers))}
	e.worker = &process{name: "worker", config: e.writeConfig("worker.yaml", fmt.Sprintf(`%s
input:
  pg_flo_worker:
    url: %s
    group: %s
output:
  pg_flo_postgres:
    dsn: %q
    group: %s
`, processHeader, e.natsURLs(WorkerNATS), group, proxyDSN(e.proxies[WorkerTarget][0]), group))}
	return e, nil
}

// processHeader is the top of both processes' configs: no HTTP server (the
// campaign reads databases, not metrics), INFO logs.
const processHeader = "http:\n  enabled: false\nlogger:\n  level: INFO\n  format: logfmt"

func proxyDSN(p *testenv.Proxy) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port(), databaseName)
}

// natsURLs are the URLs of a NATS link's proxies, as the party's url field.
func (e *env) natsURLs(link Link) string {
	var urls []string
	for _, p := range e.proxies[link] {
		urls = append(urls, "nats://"+p.Addr())
	}
	return strings.Join(urls, ",")
}

func (e *env) writeConfig(name, body string) string {
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		e.t.Fatalf("write %s: %v", name, err)
	}
	return path
}

// inject starts fault f.
func (e *env) inject(f Fault) error {
	switch f.Kind {
	case KillReplicator:
		e.kill(e.replicator)
	case KillWorker:
		e.kill(e.worker)
	case KillNATS:
		e.nats.Nodes()[f.Node].Kill()
	case CrashSource:
		return e.source.Crash()
	case CrashTarget:
		return e.target.Crash()
	case NetRefuse, NetBlackHole, NetSlow:
		for _, p := range e.linkProxies(f) {
			switch f.Kind {
			case NetRefuse:
				p.Cut()
			case NetBlackHole:
				p.BlackHole()
			default:
				p.Slow(f.Slow)
			}
		}
	case StopReplicator:
		return e.signal(e.replicator, syscall.SIGSTOP)
	case StopWorker:
		return e.signal(e.worker, syscall.SIGSTOP)
	case StopNATS:
		return signalPid(e.nats.Nodes()[f.Node].Process().Pid(), syscall.SIGSTOP)
	}
	return nil
}

// heal ends fault f: what was killed or crashed starts again, what was
// stopped continues, a failed link works again.
func (e *env) heal(f Fault) error {
	switch f.Kind {
	case KillReplicator:
		e.start(e.replicator)
	case KillWorker:
		e.start(e.worker)
	case KillNATS:
		e.nats.Nodes()[f.Node].Restart(e.t)
	case CrashSource:
		return e.source.StartServer()
	case CrashTarget:
		return e.target.StartServer()
	case NetRefuse, NetBlackHole, NetSlow:
		for _, p := range e.linkProxies(f) {
			p.Restore()
		}
	case StopReplicator:
		return e.signal(e.replicator, syscall.SIGCONT)
	case StopWorker:
		return e.signal(e.worker, syscall.SIGCONT)
	case StopNATS:
		return signalPid(e.nats.Nodes()[f.Node].Process().Pid(), syscall.SIGCONT)
	}
	return nil
}

func (e *env) linkProxies(f Fault) []*testenv.Proxy {
	ps := e.proxies[f.Link]
	if f.Node != AllNodes && len(ps) > 1 {
		return ps[f.Node : f.Node+1]
	}
	return ps
}

func (e *env) kill(p *process) {
	p.killed = true
	p.current.Kill()
}

func (e *env) signal(p *process, sig syscall.Signal) error {
	p.stopped = sig == syscall.SIGSTOP
	return signalPid(p.current.Pid(), sig)
}

func signalPid(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, pid, err)
	}
	return nil
}

// supervise starts again a replicator or worker that exited without the
// campaign killing it, as a process supervisor would, and reports it: the
// process gave up on a fault it should have ridden out.
func (e *env) supervise(p *process, at func() string) (exited string) {
	if p.killed || !p.current.Exited() {
		return ""
	}
	err := p.current.Wait()
	log := p.current.Log()
	if i := strings.LastIndex(log, "level=error"); i >= 0 {
		log = log[i:]
	}
	exited = fmt.Sprintf("%s %s exited by itself (%v); its last error: %s", at(), filepath.Base(p.current.LogPath()), err, firstLine(log))
	e.start(p)
	return exited
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// execSQL runs each of stmts (one or more statements separated by
// semicolons, sent with the simple protocol) on a connection of its own.
func execSQL(dsn string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(strings.TrimSpace(s)), err)
		}
	}
	return nil
}
