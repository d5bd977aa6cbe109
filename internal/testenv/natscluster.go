package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServerEnv names an environment variable that, when set, holds the path of
// a prebuilt nats-server binary for NATSServerBinary to return instead of
// building one.
const NATSServerEnv = "PGFLO_TEST_NATS_SERVER"

// natsServerBinary is the stock nats-server (NATSServerBinary).
var natsServerBinary = &cachedBuild{what: "nats-server", env: NATSServerEnv, pkg: "github.com/nats-io/nats-server/v2", name: "nats-server"}

// NATSServerBinary returns the path of the stock nats-server binary, for tests
// that run a NATS cluster of separate processes (which one test process cannot
// host: a server killed with SIGKILL must take nothing else down with it). It is
// built once per test process from the module cache, at the version go.mod
// requires, into a fixed path next to Binary's.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	return natsServerBinary.path(t)
}

// BuildNATSServer is NATSServerBinary for programs that are not tests (the
// benchmarks): it returns the path of the stock nats-server binary, built
// once per process, or why it could not be built.
func BuildNATSServer() (string, error) {
	return natsServerBinary.get()
}

// NATSCluster is a JetStream cluster of nats-server processes on this machine,
// for tests of what pgflo does when a node of a replicated stream dies. Every
// node keeps its ports and store dir for the whole test, so a killed node
// restarts as the same cluster member with its data.
type NATSCluster struct {
	t     testing.TB
	bin   string
	name  string
	nodes []*NATSNode
	// noAdvertise keeps the servers from telling clients each other's
	// client URLs (NATSNoAdvertise).
	noAdvertise bool
	// stockPayload leaves max_payload at nats-server's default
	// (NATSStockMaxPayload).
	stockPayload bool
}

// NATSClusterOption changes how StartNATSCluster configures the servers.
type NATSClusterOption func(*NATSCluster)

// NATSNoAdvertise keeps every server from advertising the cluster's client
// URLs to its clients (no_advertise), so a client only ever connects to the
// URLs it was given: the way to keep clients behind a Proxy, which they would
// otherwise bypass by reconnecting to a node's own port.
func NATSNoAdvertise() NATSClusterOption {
	return func(c *NATSCluster) { c.noAdvertise = true }
}

// NATSStockMaxPayload leaves max_payload at nats-server's default of 1 MiB,
// as NATS is usually deployed, instead of natsembed's 8 MiB: for tests of
// how pgflo fits its messages under a stock server's limit.
func NATSStockMaxPayload() NATSClusterOption {
	return func(c *NATSCluster) { c.stockPayload = true }
}

// NATSNode is one server of a NATSCluster.
type NATSNode struct {
	// Name is the node's server name (n1, n2, …), as stream infos name peers.
	Name        string
	ClientPort  int
	ClusterPort int
	dir         string // store dir and config file
	cluster     *NATSCluster
	starts      int

	mu   sync.Mutex
	proc *Process // nil before the first start
}

// natsReadyTimeout bounds how long a cluster (or a restarted node) may take to
// accept clients and elect a meta leader.
const natsReadyTimeout = 60 * time.Second

// StartNATSCluster starts n nats-server processes with JetStream (file store in
// t.TempDir), routed to each other as one cluster, and waits until the cluster
// has a JetStream meta leader. They are killed when the test ends. A cluster
// of one is a single server without a cluster block: one nats-server
// process a test can kill.
func StartNATSCluster(t testing.TB, n int, opts ...NATSClusterOption) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("start NATS cluster: %d nodes", n)
	}
	c := &NATSCluster{t: t, bin: NATSServerBinary(t), name: "pgflo-test"}
	for _, o := range opts {
		o(c)
	}
	// Ports are chosen before the servers bind them (routes name each
	// other's), so another process may take one in between: a node that
	// exits at once is started again with new ports, a few times.
	for attempt := 0; ; attempt++ {
		c.nodes = c.nodes[:0]
		for i := range n {
			client, err1 := FreePort()
			route, err2 := FreePort()
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			c.nodes = append(c.nodes, &NATSNode{Name: "n" + strconv.Itoa(i+1), ClientPort: client, ClusterPort: route, dir: t.TempDir(), cluster: c})
		}
		for _, node := range c.nodes {
			node.start(t)
		}
		err := c.waitListening(natsReadyTimeout)
		if err == nil {
			break
		}
		for _, node := range c.nodes {
			node.Kill()
		}
		if attempt == 2 || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("start NATS cluster: %v", err)
		}
	}
	c.WaitMetaLeader(t, natsReadyTimeout)
	return c
}

// config is the node's nats-server configuration: JetStream with the file
// store in its own dir, the same 8 MiB max payload as natsembed (unless
// NATSStockMaxPayload), and, in a cluster of more than one, routes to every
// node.
func (n *NATSNode) config() string {
	payload := "max_payload: 8MB\n"
	if n.cluster.stockPayload {
		payload = ""
	}
	server := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
%sjetstream {
  store_dir: %q
}
`, n.Name, n.ClientPort, payload, filepath.Join(n.dir, "store"))
	if len(n.cluster.nodes) == 1 {
		return server
	}
	var routes []string
	for _, other := range n.cluster.nodes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", other.ClusterPort))
	}
	return server + fmt.Sprintf(`cluster {
  name: %s
  listen: 127.0.0.1:%d
  routes: [%s]
  no_advertise: %t
}
`, n.cluster.name, n.ClusterPort, strings.Join(routes, ", "), n.cluster.noAdvertise)
}

func (n *NATSNode) start(t testing.TB) {
	t.Helper()
	conf := filepath.Join(n.dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(n.config()), 0o600); err != nil {
		t.Fatalf("write config of NATS node %s: %v", n.Name, err)
	}
	n.starts++
	name := "nats-" + n.Name
	if n.starts > 1 {
		name += "-start" + strconv.Itoa(n.starts)
	}
	p := StartProcess(t, name, n.cluster.bin, "--config", conf)
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
}

// waitListening waits until every running node accepts client connections.
func (c *NATSCluster) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		for {
			if p := n.process(); p != nil && p.Exited() {
				return fmt.Errorf("NATS node %s exited at start:\n%s", n.Name, lastBytes(p.Log(), 2048))
			}
			nc, err := nats.Connect(n.URL(), nats.NoReconnect())
			if err == nil {
				nc.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("NATS node %s does not accept clients after %v: %w", n.Name, timeout, err)
			}
			time.Sleep(pollInterval)
		}
	}
	return nil
}

// Nodes returns the cluster's nodes.
func (c *NATSCluster) Nodes() []*NATSNode { return c.nodes }

// Node returns the node of the given server name, nil if there is none.
func (c *NATSCluster) Node(name string) *NATSNode {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// URLs returns every node's client URL, comma-separated, as pgflo's url
// fields take them: a client reconnects to another node when its node dies.
func (c *NATSCluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// JetStream connects a JetStream client to the cluster (all URLs, reconnecting
// for as long as the test runs), for a test to set up or inspect streams; the
// connection is closed when the test ends.
func (c *NATSCluster) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to NATS cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream client: %v", err)
	}
	return js
}

// WaitMetaLeader waits until the cluster's JetStream has a meta leader: only
// then are streams created, looked up or changed.
func (c *NATSCluster) WaitMetaLeader(t testing.TB, timeout time.Duration) {
	t.Helper()
	js := c.JetStream(t)
	Eventually(t, timeout, "a JetStream meta leader in the NATS cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// The meta leader answers account info; without one it fails.
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

// StreamInfo returns the stream's info as the cluster reports it now.
func (c *NATSCluster) StreamInfo(ctx context.Context, js jetstream.JetStream, stream string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// StreamLeader returns the node that leads the stream's replicas, waiting up
// to timeout for the stream to have a leader.
func (c *NATSCluster) StreamLeader(t testing.TB, stream string, timeout time.Duration) *NATSNode {
	t.Helper()
	js := c.JetStream(t)
	var leader *NATSNode
	Eventually(t, timeout, "a leader of stream "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := c.StreamInfo(ctx, js, stream)
		if err != nil || info.Cluster == nil {
			return false
		}
		leader = c.Node(info.Cluster.Leader)
		return leader != nil && leader.Running()
	})
	return leader
}

// WaitStreamHealthy waits until the cluster has a meta leader and the stream
// has a leader and replicas replicas in all, every one of them current (a
// restarted node has caught up with what it missed).
func (c *NATSCluster) WaitStreamHealthy(t testing.TB, stream string, replicas int, timeout time.Duration) {
	t.Helper()
	c.WaitMetaLeader(t, timeout)
	js := c.JetStream(t)
	var last string
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := c.StreamInfo(ctx, js, stream)
		cancel()
		ok := false
		switch {
		case err != nil:
			last = err.Error()
		case info.Cluster == nil || info.Cluster.Leader == "":
			last = "no leader"
		default:
			ok = 1+len(info.Cluster.Replicas) == replicas
			last = "leader " + info.Cluster.Leader
			for _, r := range info.Cluster.Replicas {
				last += fmt.Sprintf(", %s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag)
				ok = ok && r.Current && !r.Offline
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not healthy with %d current replicas after %v: %s", stream, replicas, timeout, last)
		}
		time.Sleep(pollInterval)
	}
}

// URL returns the node's client URL.
func (n *NATSNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// StoreDir returns the node's JetStream store dir.
func (n *NATSNode) StoreDir() string { return filepath.Join(n.dir, "store") }

func (n *NATSNode) process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Process returns the node's current (or last) process, for a test that
// signals it (SIGSTOP to freeze the server); nil before the first start.
func (n *NATSNode) Process() *Process { return n.process() }

// Running reports whether the node's process runs.
func (n *NATSNode) Running() bool {
	p := n.process()
	return p != nil && !p.Exited()
}

// Log returns the output of the node's current (or last) process.
func (n *NATSNode) Log() string {
	if p := n.process(); p != nil {
		return p.Log()
	}
	return ""
}

// Kill kills the node with SIGKILL, as a crash or power loss of its host would
// (what it wrote to the OS survives; the machine does not lose its page
// cache), and waits until it is gone. Killing a stopped node does nothing.
func (n *NATSNode) Kill() {
	if p := n.process(); p != nil && !p.Exited() {
		p.Kill()
	}
}

// Restart starts a killed node again with the same ports, name and store, and
// waits until it accepts clients; it rejoins the cluster by itself. Restarting
// a running node does nothing.
func (n *NATSNode) Restart(t testing.TB) {
	t.Helper()
	if n.Running() {
		return
	}
	n.start(t)
	deadline := time.Now().Add(natsReadyTimeout)
	for {
		if p := n.process(); p.Exited() {
			t.Fatalf("restart NATS node %s: it exited:\n%s", n.Name, lastBytes(p.Log(), 2048))
		}
		nc, err := nats.Connect(n.URL(), nats.NoReconnect())
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart NATS node %s: no client connection after %v: %v", n.Name, natsReadyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}
