package chaos

import (
	"fmt"
	"math/rand"
	"strings"
	"time"
)

// Kind is what a fault does to the pipeline.
type Kind string

// The faults a campaign draws from. Kills are SIGKILL (the process gets no
// chance to settle anything), crashes are PostgreSQL's immediate shutdown,
// stops are SIGSTOP held longer than the stopped process's timeouts, and the
// net faults act on a TCP proxy between two parties.
const (
	KillReplicator Kind = "kill-replicator"
	KillWorker     Kind = "kill-worker"
	KillNATS       Kind = "kill-nats"
	CrashSource    Kind = "crash-source"
	CrashTarget    Kind = "crash-target"
	NetRefuse      Kind = "net-refuse"
	NetBlackHole   Kind = "net-blackhole"
	NetSlow        Kind = "net-slow"
	StopReplicator Kind = "stop-replicator"
	StopWorker     Kind = "stop-worker"
	StopNATS       Kind = "stop-nats"
)

// Kinds lists every kind, in the order reports print them.
var Kinds = []Kind{KillReplicator, KillWorker, KillNATS, CrashSource, CrashTarget,
	NetRefuse, NetBlackHole, NetSlow, StopReplicator, StopWorker, StopNATS}

// Link is a network path between two parties that a campaign can fail: each
// runs through TCP proxies of the campaign (one per NATS server for the NATS
// links).
type Link string

// The links, named client-server.
const (
	ReplicatorSource Link = "replicator-source"
	ReplicatorNATS   Link = "replicator-nats"
	WorkerNATS       Link = "worker-nats"
	WorkerTarget     Link = "worker-target"
)

// Links lists every link.
var Links = []Link{ReplicatorSource, ReplicatorNATS, WorkerNATS, WorkerTarget}

// AllNodes as a Fault's Node of a NATS link fails the link to every server.
const AllNodes = -1

// Fault is one fault of a schedule.
type Fault struct {
	Kind Kind
	// Link is the link a net fault acts on.
	Link Link
	// Node is the NATS server (index) a kill-nats or stop-nats acts on, or
	// the one a net fault on a NATS link cuts off (AllNodes: every one).
	Node int
	// Hold is how long the fault lasts: the pause before a killed process
	// or crashed server is started again, how long a process stays
	// stopped, how long a link stays failed.
	Hold time.Duration
	// Slow is a net-slow fault's pause per forwarded chunk.
	Slow time.Duration
}

// subject is what the fault acts on; two faults at once act on different
// subjects.
func (f Fault) subject() string {
	switch f.Kind {
	case KillReplicator, StopReplicator:
		return "replicator"
	case KillWorker, StopWorker:
		return "worker"
	case KillNATS, StopNATS:
		return fmt.Sprintf("nats-%d", f.Node)
	case CrashSource:
		return "source"
	case CrashTarget:
		return "target"
	default:
		return "link " + string(f.Link)
	}
}

// String describes the fault as the campaign log shows it.
func (f Fault) String() string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	switch f.Kind {
	case KillNATS, StopNATS:
		fmt.Fprintf(&b, " n%d", f.Node+1)
	case NetRefuse, NetBlackHole, NetSlow:
		fmt.Fprintf(&b, " %s", f.Link)
		if f.Node != AllNodes && (f.Link == ReplicatorNATS || f.Link == WorkerNATS) {
			fmt.Fprintf(&b, " (n%d only)", f.Node+1)
		}
		if f.Kind == NetSlow {
			fmt.Fprintf(&b, " %v per chunk", f.Slow)
		}
	}
	fmt.Fprintf(&b, " for %v", f.Hold)
	return b.String()
}

// Step is one entry of a schedule: after Gap of quiet, one fault, or two at
// once (the second starting Offset after the first).
type Step struct {
	Gap    time.Duration
	Faults []Fault
	Offset time.Duration
}

// weights are how often each kind is drawn, relative to each other.
var weights = []struct {
	kind   Kind
	weight int
}{
	{KillReplicator, 3}, {KillWorker, 3}, {KillNATS, 2}, {CrashSource, 2}, {CrashTarget, 2},
	{NetRefuse, 2}, {NetBlackHole, 2}, {NetSlow, 2},
	{StopReplicator, 1}, {StopWorker, 1}, {StopNATS, 1},
}

// comboChance is the share of steps that inject two faults at once.
const comboChance = 0.2

// Schedule draws the faults of a campaign from seed: n faults (a step of two
// counts two) against natsServers NATS servers. The same seed, count and
// server count always give the same schedule, so a failing seed replays the
// same faults in the same order with the same timings.
func Schedule(seed int64, n, natsServers int) []Step {
	rng := rand.New(rand.NewSource(seed))
	var steps []Step
	for left := n; left > 0; {
		s := Step{Gap: between(rng, time.Second, 6*time.Second)}
		if len(steps) == 0 {
			// The first fault comes at once, while the copy runs.
			s.Gap = between(rng, 100*time.Millisecond, 500*time.Millisecond)
		}
		first := drawFault(rng, natsServers)
		s.Faults = []Fault{first}
		if left >= 2 && rng.Float64() < comboChance {
			for {
				second := drawFault(rng, natsServers)
				if second.subject() != first.subject() {
					s.Faults = append(s.Faults, second)
					s.Offset = between(rng, 0, first.Hold)
					break
				}
			}
		}
		left -= len(s.Faults)
		steps = append(steps, s)
	}
	return steps
}

func drawFault(rng *rand.Rand, natsServers int) Fault {
	total := 0
	for _, w := range weights {
		total += w.weight
	}
	pick := rng.Intn(total)
	var kind Kind
	for _, w := range weights {
		if pick < w.weight {
			kind = w.kind
			break
		}
		pick -= w.weight
	}
	f := Fault{Kind: kind, Node: AllNodes}
	switch kind {
	case KillReplicator, KillWorker:
		f.Hold = between(rng, 200*time.Millisecond, 3*time.Second)
	case KillNATS:
		f.Node = rng.Intn(natsServers)
		f.Hold = between(rng, 500*time.Millisecond, 5*time.Second)
	case CrashSource, CrashTarget:
		f.Hold = between(rng, 500*time.Millisecond, 4*time.Second)
	case NetRefuse, NetBlackHole, NetSlow:
		f.Link = Links[rng.Intn(len(Links))]
		if natsServers > 1 && (f.Link == ReplicatorNATS || f.Link == WorkerNATS) && rng.Intn(2) == 0 {
			f.Node = rng.Intn(natsServers)
		}
		switch kind {
		case NetRefuse:
			f.Hold = between(rng, time.Second, 10*time.Second)
		case NetBlackHole:
			f.Hold = between(rng, 2*time.Second, 15*time.Second)
		default:
			f.Hold = between(rng, 3*time.Second, 12*time.Second)
			f.Slow = between(rng, 100*time.Millisecond, time.Second)
		}
	case StopReplicator:
		// Longer than the ownership lease (ownerLease): the stopped owner
		// wakes up to a lease that expired.
		f.Hold = between(rng, ownerLease+time.Second, 3*ownerLease)
	case StopWorker:
		f.Hold = between(rng, 3*time.Second, 12*time.Second)
	case StopNATS:
		f.Node = rng.Intn(natsServers)
		// Longer than publish_timeout (publishTimeout): publishes in flight
		// time out and are sent again.
		f.Hold = between(rng, 2*time.Second, 2*publishTimeout)
	}
	return f
}

// between draws a duration in [lo, hi), rounded to 10ms so schedules read
// well.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	d := lo + time.Duration(rng.Int63n(int64(hi-lo)))
	return d.Round(10 * time.Millisecond)
}
