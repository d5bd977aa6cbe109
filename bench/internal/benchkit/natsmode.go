package benchkit

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/testenv"
)

// The NATS setups a benchmark can run pgflo against (its --nats flag), to
// show what replication costs next to the same run's anchors.
const (
	// NATSR1 is one `pgflo nats` server; streams and buckets have one replica.
	NATSR1 = "r1"
	// NATSR1Sync is NATSR1 with sync_interval: always (the server fsyncs
	// before it acknowledges).
	NATSR1Sync = "r1-sync"
	// NATSR3 is three `pgflo nats` servers in a cluster on this machine; the
	// group's stream and state bucket have three replicas.
	NATSR3 = "r3"
	// NATSR3Sync is NATSR3 with sync_interval: always (every server fsyncs
	// before it acknowledges).
	NATSR3Sync = "r3-sync"
	// NATSStock is one stock `nats-server` process, built from the
	// nats-server module version go.mod names and started as NATS is
	// deployed: `nats-server -js -sd <dir>`, every other setting at its
	// default (1 MiB max payload, fsync every 2 minutes).
	NATSStock = "stock"
)

// DefaultNATSModes is a --nats default: every run against `pgflo nats` and
// against a stock nats-server, so a report shows what each costs.
const DefaultNATSModes = NATSR1 + "," + NATSStock

// NATSModeUsage is the help text of a --nats flag.
const NATSModeUsage = "NATS for pgflo, one or several comma-separated, each measured: r1 (one `pgflo nats`), stock (one stock `nats-server` with its default configuration, built from the module version go.mod names), r1-sync (r1 with sync_interval: always), r3 (three `pgflo nats` in a cluster, stream and state bucket with 3 replicas) or r3-sync (r3 with sync_interval: always)"

// CheckNATSMode reports a --nats value that is not a known setup.
func CheckNATSMode(mode string) error {
	switch mode {
	case NATSR1, NATSR1Sync, NATSR3, NATSR3Sync, NATSStock:
		return nil
	}
	return fmt.Errorf("--nats must be %s, %s, %s, %s or %s, got %q", NATSR1, NATSStock, NATSR1Sync, NATSR3, NATSR3Sync, mode)
}

// ParseNATSModes splits a --nats list ("r1,stock") into its setups, each
// checked, none twice.
func ParseNATSModes(list string) ([]string, error) {
	var modes []string
	for _, m := range strings.Split(list, ",") {
		m = strings.TrimSpace(m)
		if err := CheckNATSMode(m); err != nil {
			return nil, err
		}
		if slices.Contains(modes, m) {
			return nil, fmt.Errorf("--nats names %s twice", m)
		}
		modes = append(modes, m)
	}
	return modes, nil
}

// NATS is the NATS a measurement runs pgflo against.
type NATS struct {
	Mode  string
	Procs Procs
	// URL is every server's client URL, comma-separated.
	URL string
	// Replicas is what the group's stream and state bucket are created with.
	Replicas int
}

// StartNATSMode starts the setup mode (see NATSR1 and the others), with its
// stores in work, and waits until JetStream answers (a cluster has elected
// its meta leader).
func StartNATSMode(ctx context.Context, work, bin, mode string) (n *NATS, err error) {
	if err := CheckNATSMode(mode); err != nil {
		return nil, err
	}
	n = &NATS{Mode: mode, Replicas: 1}
	defer func() {
		if err != nil {
			n.Procs.StopAll(false)
		}
	}()
	if mode == NATSStock {
		p, url, err := startStockNATS(ctx, work)
		if err != nil {
			return nil, err
		}
		n.Procs, n.URL = Procs{p}, url
		return n, nil
	}
	var extra []string
	if mode == NATSR1Sync || mode == NATSR3Sync {
		extra = []string{"--sync-interval", "always"}
	}
	if mode == NATSR1 || mode == NATSR1Sync {
		p, url, err := StartNATS(work, bin, extra...)
		if err != nil {
			return nil, err
		}
		n.Procs, n.URL = Procs{p}, url
		return n, nil
	}

	n.Replicas = 3
	var client, route [3]int
	var routes, urls []string
	for i := range 3 {
		if client[i], err = testenv.FreePort(); err != nil {
			return nil, err
		}
		if route[i], err = testenv.FreePort(); err != nil {
			return nil, err
		}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", route[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	for i := range 3 {
		name := "n" + strconv.Itoa(i+1)
		args := append([]string{"nats", "--port", strconv.Itoa(client[i]), "--store-dir", filepath.Join(work, "nats-store-"+name),
			"--server-name", name, "--cluster-name", "bench", "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", route[i]),
			"--routes", strings.Join(routes, ",")}, extra...)
		p, err := StartProc(work, "nats-"+name, bin, args...)
		if err != nil {
			return nil, err
		}
		n.Procs = append(n.Procs, p)
	}
	for i, p := range n.Procs {
		if err := WaitTCP(p, client[i], 30*time.Second); err != nil {
			return nil, err
		}
	}
	n.URL = strings.Join(urls, ",")
	if err := waitJetStream(ctx, n.URL, 60*time.Second); err != nil {
		return nil, n.Procs.Describe(err)
	}
	return n, nil
}

// startStockNATS starts a stock nats-server with JetStream and its default
// configuration (only the store dir, the port and the loopback interface
// given), and waits until JetStream answers.
func startStockNATS(ctx context.Context, work string) (*Proc, string, error) {
	bin, err := testenv.BuildNATSServer()
	if err != nil {
		return nil, "", fmt.Errorf("build the stock nats-server: %w", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, "", err
	}
	p, err := StartProc(work, "nats-stock", bin, "-js", "-sd", filepath.Join(work, "nats-store-stock"), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	if err := WaitTCP(p, port, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	if err := waitJetStream(ctx, url, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", fmt.Errorf("%w\n%s", err, p.Describe())
	}
	return p, url, nil
}

// waitJetStream waits until JetStream answers account info, which in a
// cluster only its meta leader does.
func waitJetStream(ctx context.Context, url string, timeout time.Duration) error {
	nc, err := nats.Connect(url, nats.Name("pgflo-bench"))
	if err != nil {
		return fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	_, err = Poll(ctx, time.Now(), 100*time.Millisecond, timeout, "JetStream meta leader", func() (bool, error) {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(reqCtx)
		return err == nil, nil
	})
	return err
}

// ReplicaFields is the YAML (at indent) that creates the group's stream or
// state bucket with the setup's replicas: field is stream_replicas or
// state_replicas. Empty for one replica, the default.
func (n *NATS) ReplicaFields(indent, field string) string {
	if n.Replicas == 1 {
		return ""
	}
	return fmt.Sprintf("%s%s: %d\n", indent, field, n.Replicas)
}

// MaxRSS is the largest peak RSS of the servers, 0 when unknown.
func (n *NATS) MaxRSS() int64 {
	var most int64
	for _, p := range n.Procs {
		if rss, ok := p.MaxRSS(); ok {
			most = max(most, rss)
		}
	}
	return most
}

// CPU is the servers' user+system CPU seconds so far, together; -1 when
// unknown.
func (n *NATS) CPU() float64 {
	total := 0.0
	for _, p := range n.Procs {
		c := p.CPU()
		if c < 0 {
			return -1
		}
		total += c
	}
	return total
}

// Describe names the setup for a report.
func (n *NATS) Describe() string {
	switch n.Mode {
	case NATSR3:
		return "three `pgflo nats` servers in a cluster on this machine, the group's stream (and state bucket) with 3 replicas"
	case NATSR1Sync:
		return "one `pgflo nats` server with `sync_interval: always`"
	case NATSR3Sync:
		return "three `pgflo nats` servers in a cluster on this machine with `sync_interval: always`, the group's stream (and state bucket) with 3 replicas"
	case NATSStock:
		return "one stock `nats-server` (" + StockNATSVersion() + ", `-js`, default configuration: 1 MiB max payload)"
	}
	return "one `pgflo nats` server"
}

// StartNATSMode is StartNATS for any setup: it starts mode (StartNATSMode),
// adds its servers to ps, and watches group's stream on it; the caller
// closes the watch.
func (ps *Procs) StartNATSMode(ctx context.Context, work, bin, mode, group string) (*NATS, *StreamWatch, error) {
	n, err := StartNATSMode(ctx, work, bin, mode)
	if err != nil {
		return nil, nil, err
	}
	*ps = append(*ps, n.Procs...)
	watch, err := NewStreamWatch(n.URL, group)
	if err != nil {
		return nil, nil, err
	}
	return n, watch, nil
}

// StockNATSVersion is the nats-server module version this program was built
// with, the one the stock server is built from.
func StockNATSVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/nats-io/nats-server/v2" {
				return dep.Version
			}
		}
	}
	return "version unknown"
}
