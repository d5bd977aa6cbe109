package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// errNoBinaries is the text of the error returned when no PostgreSQL server
// binaries can be found, telling the reader how to get them.
const errNoBinaries = "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under " +
	"/usr/lib/postgresql/*/bin; install them, e.g. `apt-get install -y postgresql`"

const (
	// pgStartTimeout bounds how long StartServer waits for connections to work.
	pgStartTimeout = 60 * time.Second
	// pgStopTimeout bounds a fast shutdown before escalating to immediate, then kill.
	pgStopTimeout = 30 * time.Second
)

// Postgres is a throwaway PostgreSQL cluster listening on 127.0.0.1, configured
// for logical replication (wal_level=logical) and for speed over durability
// (fsync, synchronous_commit and full_page_writes off). It is meant to be shared
// by the tests of one package, each test using its own database (NewDatabase).
//
// The server runs as a child of the test process. When the test process runs as
// root, the cluster is owned by and runs as the `postgres` OS user, because
// initdb and postgres refuse to run as root.
type Postgres struct {
	initdb, postgres string // binary paths
	dir              string // temp root: data dir, log file, unix socket
	dataDir          string
	logFile          string
	port             int
	runAs            *osUser
	lock             *os.File  // held while the cluster exists; see removeStaleDirs
	tls              *TLSFiles // set by StartPostgresTLS: DSNs then use TLS

	mu     sync.Mutex
	server *child // nil while stopped
}

// StartPostgres creates a fresh cluster in a new temp dir (initdb), starts it on a
// free port and waits until it accepts connections. Call it from TestMain and
// Stop the cluster after m.Run.
func StartPostgres() (*Postgres, error) { return startPostgres(nil) }

// startPostgres is StartPostgres with configure, if not nil, changing the
// fresh cluster's files before it first starts.
func startPostgres(configure func(*Postgres) error) (*Postgres, error) {
	bins, err := findPostgresBinaries()
	if err != nil {
		return nil, err
	}
	var runAs *osUser
	if os.Geteuid() == 0 {
		if runAs, err = lookupPostgresUser(); err != nil {
			return nil, err
		}
	}
	removeStaleDirs()
	dir, err := os.MkdirTemp("", tempDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("start postgres: create temp dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: lock temp dir: %w", err)
	}
	p := &Postgres{
		lock:     lock,
		initdb:   bins.initdb,
		postgres: bins.postgres,
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		logFile:  filepath.Join(dir, "postgres.log"),
		runAs:    runAs,
	}
	if err := p.init(); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if configure != nil {
		if err := configure(p); err != nil {
			_ = p.Stop()
			return nil, fmt.Errorf("start postgres: %w", err)
		}
	}
	// Another process may take the free port between FreePort and bind; retry
	// with a new port a few times.
	for attempt := 1; ; attempt++ {
		if p.port, err = FreePort(); err != nil {
			_ = p.Stop()
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		err = p.StartServer()
		if err == nil {
			return p, nil
		}
		if attempt == 3 || !strings.Contains(err.Error(), "could not bind") {
			_ = p.Stop()
			return nil, err
		}
	}
}

// tempDirPrefix starts the name of every cluster's temp dir under os.TempDir.
const tempDirPrefix = "pgflo-pg-"

// removeStaleDirs removes cluster temp dirs left behind by test processes that
// died without running Stop (a test timeout panics, a crash, a kill), so
// repeated runs do not fill the disk. The servers themselves died with their test
// process (parent-death signal). A dir is stale when no live process holds its
// lock and it is over a minute old (a younger one may still be being set up).
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPrefix+"*"))
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil || !st.IsDir() || time.Since(st.ModTime()) < time.Minute || isLockedByOther(d) {
			continue
		}
		_ = os.RemoveAll(d) // best effort: another user's dirs are not ours to remove
	}
}

// pgSearchPatterns are where PostgreSQL server installations live when they are
// not on PATH (a var so tests can point it elsewhere).
var pgSearchPatterns = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"}

// pgBinaries holds the paths of the server binaries of one installation.
type pgBinaries struct{ initdb, postgres string }

// findPostgresBinaries looks for initdb and postgres (and pg_ctl, to be sure it
// is a server installation) next to an initdb on PATH, then in the Debian/Ubuntu
// (/usr/lib/postgresql/N/bin) and RHEL (/usr/pgsql-N/bin) locations, preferring
// the highest version. All binaries come from one directory so that initdb and
// postgres are the same version.
func findPostgresBinaries() (pgBinaries, error) {
	var dirs []string
	if path, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			path = resolved
		}
		dirs = append(dirs, filepath.Dir(path))
	}
	var installed []string
	for _, pattern := range pgSearchPatterns {
		m, _ := filepath.Glob(pattern) // only ErrBadPattern, impossible here
		installed = append(installed, m...)
	}
	sort.SliceStable(installed, func(i, j int) bool { return pgDirVersion(installed[i]) > pgDirVersion(installed[j]) })
	dirs = append(dirs, installed...)
	for _, d := range dirs {
		b := pgBinaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return b, nil
		}
	}
	return pgBinaries{}, errors.New(errNoBinaries)
}

var versionRe = regexp.MustCompile(`\d+(\.\d+)?`)

// pgDirVersion extracts the major version from an installation dir for sorting
// (e.g. 15 from /usr/lib/postgresql/15/bin, 9.6 from /usr/lib/postgresql/9.6/bin).
func pgDirVersion(dir string) float64 {
	v, _ := strconv.ParseFloat(versionRe.FindString(dir), 64)
	return v
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// lookupPostgresUser finds the `postgres` OS user that servers run as when the
// tests run as root.
func lookupPostgresUser() (*osUser, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("start postgres: running as root, and initdb/postgres refuse to run as root, "+
			"but the `postgres` OS user to run them as is missing (%w); create it (installing the "+
			"postgresql package does) or run the tests as an ordinary user", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("start postgres: uid of user postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("start postgres: gid of user postgres: %w", err)
	}
	return &osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// init runs initdb and writes the test settings into postgresql.conf.
func (p *Postgres) init() error {
	if err := p.chownToRunAs(); err != nil {
		return err
	}
	cmd := exec.Command(p.initdb,
		"-D", p.dataDir,
		"-A", "trust",
		"-U", "postgres",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
	)
	cmd.Dir = p.dir
	attr, err := childAttr(p.runAs)
	if err != nil {
		return err
	}
	cmd.SysProcAttr = attr
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}

	settings := fmt.Sprintf(`
# pgflo test harness settings
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
timezone = 'UTC'
log_timezone = 'UTC'
`, strings.ReplaceAll(p.dir, "'", "''"))
	f, err := os.OpenFile(filepath.Join(p.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if _, err := f.WriteString(settings); err != nil {
		f.Close()
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// chownToRunAs hands the temp dir tree to the user the server runs as, if any.
func (p *Postgres) chownToRunAs() error {
	if p.runAs == nil {
		return nil
	}
	err := filepath.WalkDir(p.dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(p.runAs.uid), int(p.runAs.gid))
	})
	if err != nil {
		return fmt.Errorf("chown %s to user %s: %w", p.dir, p.runAs.name, err)
	}
	return nil
}

// StartServer starts the stopped server on the same port and data dir and waits
// until it accepts connections. With StopServer it lets fault tests take
// PostgreSQL down for a while. Starting a running server is an error.
func (p *Postgres) StartServer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		return errors.New("start postgres: server is already running")
	}
	logf, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("start postgres: open log: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	logStart, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(p.postgres, "-D", p.dataDir, "-p", strconv.Itoa(p.port))
	cmd.Dir = p.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	srv, err := startChild(cmd, p.runAs)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}

	deadline := time.Now().Add(pgStartTimeout)
	for {
		if srv.exited() {
			return fmt.Errorf("start postgres on port %d: server exited (%v):\n%s", p.port, srv.err, p.logSince(logStart))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ping(ctx, p.AdminDSN())
		cancel()
		if err == nil {
			p.server = srv
			return nil
		}
		if time.Now().After(deadline) {
			_ = stopChild(srv)
			return fmt.Errorf("start postgres on port %d: no connection after %v: %w\n%s", p.port, pgStartTimeout, err, p.logSince(logStart))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logSince returns the server log written from offset on (at most the last 4 KB).
func (p *Postgres) logSince(offset int64) string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logFile, err)
	}
	if offset < int64(len(b)) {
		b = b[offset:]
	}
	return lastBytes(string(b), 4096)
}

// ping opens a connection and runs a trivial query.
func ping(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// StopServer shuts the server down (fast mode: clients are disconnected, work in
// progress is rolled back) and keeps the data, so StartServer brings it back.
// Stopping a stopped server does nothing.
func (p *Postgres) StopServer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		return nil
	}
	err := stopChild(p.server)
	p.server = nil
	if err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	return nil
}

// stopChild asks a postmaster for a fast shutdown (SIGINT), escalating to an
// immediate shutdown (SIGQUIT) and then SIGKILL if it does not exit in time.
func stopChild(c *child) error {
	steps := []struct {
		sig     os.Signal
		timeout time.Duration
	}{{syscall.SIGINT, pgStopTimeout}, {syscall.SIGQUIT, 10 * time.Second}, {os.Kill, 10 * time.Second}}
	for _, s := range steps {
		if err := c.cmd.Process.Signal(s.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal %v: %w", s.sig, err)
		}
		select {
		case <-c.done:
			if s.sig != syscall.SIGINT {
				return fmt.Errorf("server did not stop on SIGINT within %v; sent %v", pgStopTimeout, s.sig)
			}
			return nil
		case <-time.After(s.timeout):
		}
	}
	return errors.New("server did not exit after SIGKILL")
}

// Crash stops the server in immediate mode, as `pg_ctl stop -m immediate`
// does (SIGQUIT to the postmaster): every backend quits at once, nothing is
// checkpointed, and the next StartServer runs crash recovery from the WAL. It
// is a crash of PostgreSQL, not of the machine: what the server wrote to the
// OS survives (the cluster runs with fsync off), so only commits it never
// wrote are lost — none with synchronous_commit on. Crashing a stopped server
// does nothing.
func (p *Postgres) Crash() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		return nil
	}
	srv := p.server
	p.server = nil
	if err := srv.cmd.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("crash postgres: %w", err)
	}
	select {
	case <-srv.done:
		return nil
	case <-time.After(pgStopTimeout):
		_ = srv.cmd.Process.Kill()
		<-srv.done
		return fmt.Errorf("crash postgres: still running %v after SIGQUIT; killed", pgStopTimeout)
	}
}

// Restart stops and starts the server, keeping port and data; connections and
// replication streams are cut, as in a real server restart.
func (p *Postgres) Restart() error {
	if err := p.StopServer(); err != nil {
		return err
	}
	return p.StartServer()
}

// Stop shuts the server down and removes its temp dir with all data.
func (p *Postgres) Stop() error {
	err := p.StopServer()
	if p.lock != nil {
		_ = p.lock.Close()
	}
	if rmErr := os.RemoveAll(p.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("stop postgres: remove %s: %w", p.dir, rmErr))
	}
	return err
}

// Port returns the TCP port the server listens on (on 127.0.0.1); it stays the
// same across restarts.
func (p *Postgres) Port() int { return p.port }

// DataDir returns the cluster's data directory.
func (p *Postgres) DataDir() string { return p.dataDir }

// LogFile returns the path of the server log, useful when a test fails.
func (p *Postgres) LogFile() string { return p.logFile }

// AdminDSN returns the DSN of the superuser `postgres` on the `postgres` database.
func (p *Postgres) AdminDSN() string { return p.DSN("postgres") }

// DSN returns the DSN of the superuser `postgres` on database db (over TLS
// with its client certificate on a StartPostgresTLS cluster).
func (p *Postgres) DSN(db string) string {
	if p.tls != nil {
		return p.TLSDSN(db, "postgres", p.tls.ClientCert, p.tls.ClientKey)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, urlPathEscape(db))
}

// urlPathEscape escapes a database name for the path of a postgres:// URL.
func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

var dbCounter atomic.Int64

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// NewDatabase creates a fresh database for the test and returns its DSN
// (superuser). The name derives from the test name, so it is recognisable in
// logs. When the test ends its logical replication slots are dropped (active
// walsenders are terminated first) and the database is dropped WITH (FORCE).
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("t_%s_%d_%d", base, os.Getpid(), dbCounter.Add(1))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := execAdmin(ctx, p.AdminDSN(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := p.dropDatabase(name); err != nil {
			if t.Failed() {
				t.Logf("cleanup: %v", err)
			} else {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return p.DSN(name)
}

// dropDatabase drops the database's logical slots, then the database.
func (p *Postgres) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminDSN())
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())

	// Terminating a walsender is asynchronous: its slot stays active until the
	// process is gone, so retry until every slot of the database is dropped.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
			return fmt.Errorf("drop database %s: terminate walsenders: %w", name, err)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name); err != nil {
			return fmt.Errorf("drop database %s: drop replication slots: %w", name, err)
		}
		var left int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&left); err != nil {
			return fmt.Errorf("drop database %s: count replication slots: %w", name, err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drop database %s: %d replication slots still active", name, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// execAdmin runs one statement on a short-lived connection.
func execAdmin(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// lastBytes returns at most the last n bytes of s, marking a cut.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
