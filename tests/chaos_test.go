package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/chaos"
)

// chaosSeed is the campaign make test runs: its schedule (go run ./cmd/chaos
// --plan --seed 5 --faults 8) stops the worker while the copy runs, crashes
// the source, black-holes and slows links, kills the replicator and NATS.
const chaosSeed = 5

// A short fault campaign (docs/chaos.md): eight faults drawn from a fixed
// seed hit a group copying and streaming a mixed workload, and afterwards the
// target equals the source and no row's version went back on the target.
// make chaos runs the long one.
func TestChaosCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("a campaign takes minutes")
	}
	start := time.Now()
	rep, err := chaos.Run(t, chaos.Config{Seed: chaosSeed, Faults: 8, NATS: chaos.NATSSingle, ConvergeTimeout: 2 * time.Minute, Out: logWriter{t}})
	if rep != nil {
		var b strings.Builder
		rep.Print(&b)
		t.Log(b.String())
	}
	if err != nil {
		t.Fatalf("campaign of seed %d: %v", chaosSeed, err)
	}
	t.Logf("campaign of seed %d passed in %v", chaosSeed, time.Since(start).Round(time.Second))
}

// logWriter writes a campaign's log lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
