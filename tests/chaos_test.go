package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/chaos"
)

// chaosSeed is the campaign make test runs: its schedule (go run ./cmd/chaos
// --plan --seed 3 --faults 8) crashes the source while the copy runs (the
// copy resumes under a new snapshot, reading again by key the rows moved
// meanwhile), black-holes and slows the replicator's link to NATS, stops
// and kills the replicator (once while another fault lasts), kills the
// worker and NATS.
const chaosSeed = 3

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
