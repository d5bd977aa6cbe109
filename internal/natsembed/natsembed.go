// Package natsembed runs an in-process NATS JetStream server.
//
// It exists so that pgflo needs no separately installed NATS: the `pgflo nats`
// command, the demo and the test suites all start JetStream through this package,
// with the same defaults (file storage, 8 MiB max payload as in pg_flo's sample
// NATS configuration).
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/logger"
	"github.com/nats-io/nats-server/v2/server"
)

// DefaultMaxPayload is the max payload used when Options.MaxPayload is 0. It is
// 8 MiB, as in pg_flo's sample NATS configuration, so that packed snapshot batches
// and large rows fit in one message.
const DefaultMaxPayload int32 = 8 << 20

// readyTimeout bounds how long Start waits for the server to accept clients.
const readyTimeout = 10 * time.Second

// Options configures an embedded server. The zero value is usable apart from
// StoreDir, which should be set so that JetStream data lands somewhere known.
//
// With ConfigFile set, the file is loaded first and every other field that is
// set (not its zero value) overrides the file's setting; the defaults below
// apply only where neither gives one.
type Options struct {
	// ConfigFile is a nats-server configuration file, for everything these
	// options do not cover (accounts, TLS, limits, sync_interval, …).
	// JetStream is always enabled.
	ConfigFile string
	// Host is the interface to listen on; empty means 127.0.0.1 so that an
	// embedded server is never exposed by accident.
	Host string
	// Port is the client port; -1 picks a random free port, 0 means the NATS
	// default 4222.
	Port int
	// StoreDir is the JetStream storage directory (file storage lives in
	// StoreDir/jetstream). Empty means a directory under the OS temp dir.
	StoreDir string
	// MaxPayload is the largest message the server accepts; 0 means
	// DefaultMaxPayload.
	MaxPayload int32
	// SyncAlways makes the server fsync its JetStream files before it
	// acknowledges a write (nats-server's `sync_interval: always`);
	// SyncInterval, when not zero, is how often it fsyncs them otherwise
	// (nats-server's default is 2 minutes). What an acknowledged message
	// survives depends on it: see docs/operations.md.
	SyncAlways   bool
	SyncInterval time.Duration
	// Logs makes the server log to stderr; otherwise it is silent (fatal
	// errors are still reported by Start).
	Logs bool
	// ServerOptions, when set, adjusts the nats-server options built from
	// the fields above before the server starts: settings this package
	// does not expose, such as TLS and authorization (tests use it).
	ServerOptions func(*server.Options)

	// ServerName names the server. A JetStream cluster requires it, the same
	// across restarts: peers of a replicated stream are known by name.
	ServerName string
	// ClusterName is the cluster's name, the same on every server of it;
	// required in a cluster.
	ClusterName string
	// ClusterListen is the host:port the server accepts routes from the other
	// servers of its cluster on; setting it makes the server a cluster member.
	ClusterListen string
	// Routes are the other servers' cluster addresses (nats://host:port);
	// listing every server of the cluster, this one included, on every
	// server is simplest. They need ClusterListen.
	Routes []string
}

// Start starts a JetStream-enabled server and waits until it accepts clients.
// It returns an error, instead of exiting the process as nats-server would, when
// the port is taken or JetStream cannot use the store directory. Callers use
// s.ClientURL() to connect and s.Shutdown() plus s.WaitForShutdown() to stop it.
func Start(opts Options) (*server.Server, error) {
	sopts, err := serverOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if opts.ServerOptions != nil {
		opts.ServerOptions(sopts)
	}
	host := sopts.Host
	s, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}

	// Always install a logger, even when logs are off, so that fatal errors
	// (port in use, unusable store dir) are captured and returned rather than
	// lost or turned into os.Exit.
	lg := &captureLogger{}
	if opts.Logs {
		lg.next = logger.NewStdLogger(true, sopts.Debug, sopts.Trace, isTerminal(os.Stderr), true)
	}
	s.SetLogger(lg, false, false)

	s.Start()
	if err := lg.fatalErr(); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("start nats on %s:%d: %w", host, sopts.Port, err)
	}
	if !s.ReadyForConnections(readyTimeout) {
		err := lg.fatalErr()
		s.Shutdown()
		s.WaitForShutdown()
		if err != nil {
			return nil, fmt.Errorf("start nats on %s:%d: %w", host, sopts.Port, err)
		}
		return nil, fmt.Errorf("start nats on %s:%d: not ready for connections after %v", host, sopts.Port, readyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("start nats: jetstream is not enabled (store dir %q)", sopts.StoreDir)
	}
	return s, nil
}

// serverOptions builds the server's options: the config file's, if any, with
// every set field of opts over them, then the defaults for what is still unset.
func serverOptions(opts Options) (*server.Options, error) {
	sopts := &server.Options{}
	if opts.ConfigFile != "" {
		var err error
		if sopts, err = server.ProcessConfigFile(opts.ConfigFile); err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
	}
	if opts.Host != "" {
		sopts.Host = opts.Host
	}
	if sopts.Host == "" {
		sopts.Host = "127.0.0.1"
	}
	if opts.Port != 0 {
		sopts.Port = opts.Port
	}
	if opts.StoreDir != "" {
		sopts.StoreDir = opts.StoreDir
	}
	if opts.MaxPayload < 0 {
		return nil, fmt.Errorf("max payload must be positive, got %d", opts.MaxPayload)
	}
	if opts.MaxPayload != 0 {
		sopts.MaxPayload = opts.MaxPayload
	}
	if sopts.MaxPayload == 0 {
		sopts.MaxPayload = DefaultMaxPayload
	}
	// max_pending must be at least max_payload or the server refuses to start.
	if int64(sopts.MaxPayload) > max(sopts.MaxPending, server.MAX_PENDING_SIZE) {
		sopts.MaxPending = int64(sopts.MaxPayload)
	}
	if opts.SyncInterval < 0 {
		return nil, fmt.Errorf("sync interval must be positive, got %v", opts.SyncInterval)
	}
	switch {
	case opts.SyncAlways:
		sopts.SyncAlways = true
	case opts.SyncInterval > 0:
		sopts.SyncAlways, sopts.SyncInterval = false, opts.SyncInterval
	}
	if opts.ServerName != "" {
		sopts.ServerName = opts.ServerName
	}
	if opts.ClusterName != "" {
		sopts.Cluster.Name = opts.ClusterName
	}
	if opts.ClusterListen != "" {
		host, portText, err := net.SplitHostPort(opts.ClusterListen)
		port, perr := strconv.Atoi(portText)
		if err != nil || perr != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("cluster listen address %q: want host:port", opts.ClusterListen)
		}
		sopts.Cluster.Host, sopts.Cluster.Port = host, port
	}
	if len(opts.Routes) > 0 {
		sopts.Routes = nil
		for _, r := range opts.Routes {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls") || u.Port() == "" {
				return nil, fmt.Errorf("route %q: want nats://host:port", r)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
	}
	if len(sopts.Routes) > 0 && sopts.Cluster.Port == 0 {
		return nil, errors.New("routes need a cluster listen address (cluster.listen) for the other servers to route to")
	}
	sopts.JetStream = true
	// The embedding program owns signal handling (see Command).
	sopts.NoSigs = true
	return sopts, nil
}

// isTerminal reports whether f is a character device, to decide on colored logs.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// captureLogger forwards to next (if any) and remembers the first fatal message.
// nats-server's own loggers call os.Exit on Fatalf, which an embedding program
// (and a test process) must not do; this one turns it into an error for Start.
type captureLogger struct {
	next server.Logger

	mu    sync.Mutex
	fatal error
}

func (l *captureLogger) fatalErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *captureLogger) Noticef(format string, v ...any) {
	if l.next != nil {
		l.next.Noticef(format, v...)
	}
}

func (l *captureLogger) Warnf(format string, v ...any) {
	if l.next != nil {
		l.next.Warnf(format, v...)
	}
}

func (l *captureLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = errors.New(msg)
	}
	l.mu.Unlock()
	if l.next != nil {
		l.next.Errorf("%s", msg)
	}
}

func (l *captureLogger) Errorf(format string, v ...any) {
	if l.next != nil {
		l.next.Errorf(format, v...)
	}
}

func (l *captureLogger) Debugf(format string, v ...any) {
	if l.next != nil {
		l.next.Debugf(format, v...)
	}
}

func (l *captureLogger) Tracef(format string, v ...any) {
	if l.next != nil {
		l.next.Tracef(format, v...)
	}
}
