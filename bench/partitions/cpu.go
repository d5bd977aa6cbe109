package main

import (
	"syscall"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// applyCPU is the user+system CPU seconds each party spent while a partition
// count applied the backlog. The sum against the cores × the elapsed time
// says whether the count was bound by the machine rather than by the
// target's round trip: more workers cannot go faster than the CPU the
// machine has left for them.
type applyCPU struct {
	workers float64 // every worker process together
	target  float64 // the targets' PostgreSQL cluster
	nats    float64 // the NATS server
	bench   float64 // this process: the proxy's copying, and the progress poll
}

func (c applyCPU) total() float64 { return c.workers + c.target + c.nats + c.bench }

func (c applyCPU) minus(o applyCPU) applyCPU {
	return applyCPU{workers: c.workers - o.workers, target: c.target - o.target, nats: c.nats - o.nats, bench: c.bench - o.bench}
}

// readCPU reads the counters now; workers are the running workers (their CPU
// before they started is zero, so none are read at the start).
func (b *bench) readCPU(workers benchkit.Procs) applyCPU {
	c := applyCPU{target: benchkit.ClusterCPU(b.tpg.DataDir()), nats: b.nats.CPU(), bench: selfCPU()}
	for _, w := range workers {
		c.workers += w.CPU()
	}
	return c
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
