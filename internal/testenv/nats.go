package testenv

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/natsembed"
)

// NATS is an embedded JetStream server for one test. Its port and store dir are
// fixed when it is created, so a Restart (or Shutdown then Start) brings back the
// same server with the same streams, as a restarted NATS would be to pgflo.
type NATS struct {
	opts natsembed.Options // Port and StoreDir fixed at creation

	mu  sync.Mutex
	srv *server.Server // nil while shut down
}

// NATSOption changes how StartNATS configures the server.
type NATSOption func(*natsembed.Options)

// WithMaxPayload sets the largest message the server accepts (default
// natsembed.DefaultMaxPayload), for tests of how clients fit under it.
func WithMaxPayload(bytes int32) NATSOption {
	return func(o *natsembed.Options) { o.MaxPayload = bytes }
}

// WithServerOptions adjusts the server's nats-server options (TLS,
// users, operator mode, …) every time it starts (natsembed.Options.ServerOptions).
// Clients of such a server need its credentials: URL and JetStream still
// connect without any.
func WithServerOptions(adjust func(*server.Options)) NATSOption {
	return func(o *natsembed.Options) { o.ServerOptions = adjust }
}

// StartNATS starts an embedded JetStream server on a free port with a store dir
// in t.TempDir, and shuts it down when the test ends.
func StartNATS(t testing.TB, opts ...NATSOption) *NATS {
	t.Helper()
	n := &NATS{opts: natsembed.Options{Host: "127.0.0.1", StoreDir: t.TempDir()}}
	for _, o := range opts {
		o(&n.opts)
	}
	// The port is chosen before binding so restarts can reuse it; another process
	// may grab it in between, so retry with a new one a few times.
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		n.opts.Port = port
		if lastErr = n.start(); lastErr == nil {
			t.Cleanup(n.Shutdown)
			return n
		}
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start embedded NATS: %v", lastErr)
	return nil
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	srv, err := natsembed.Start(n.opts)
	if err != nil {
		return err
	}
	n.srv = srv
	return nil
}

// URL returns the client URL (nats://127.0.0.1:port). It stays the same across
// restarts and is valid to hand out while the server is down.
func (n *NATS) URL() string { return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port) }

// Port returns the client port.
func (n *NATS) Port() int { return n.opts.Port }

// StoreDir returns the JetStream store dir (streams live in StoreDir/jetstream).
func (n *NATS) StoreDir() string { return n.opts.StoreDir }

// JetStream connects a JetStream client to the server, for a test to set up
// or inspect streams; the connection is closed when the test ends.
func (n *NATS) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("connect to embedded NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream client: %v", err)
	}
	return js
}

// Server returns the running server, or nil while it is shut down.
func (n *NATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Start starts the server again after Shutdown, on the same port and store dir,
// and waits until it is ready. Starting a running server does nothing.
func (n *NATS) Start(t testing.TB) {
	t.Helper()
	if err := n.start(); err != nil {
		t.Fatalf("restart embedded NATS on port %d: %v", n.opts.Port, err)
	}
}

// Restart shuts the server down and starts it again on the same port and store
// dir; clients are disconnected and JetStream state is reloaded from disk.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	n.Start(t)
}

// Shutdown stops the server and waits until it is down. Shutting down a stopped
// server does nothing.
func (n *NATS) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}
