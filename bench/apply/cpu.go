package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/replication"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// catchUpCPU is the CPU (user+system seconds) the processes of one applier
// spent on the catch-up: the target's applying session (native: the
// subscription's apply worker; pgflo: pg_flo_postgres's session), the
// walsender decoding for it, and pgflo's own processes. All of them start
// with the catch-up, so their total is what it cost. The point is where two
// shared cores went: the target's work per row, the same for both appliers,
// or everything else competing with it.
type catchUpCPU struct {
	apply, walsender float64
	sessions         int      // how many target sessions apply is the sum of
	pgflo            []string // "replicator 1.2 s", …
	pgfloCPU         []float64
}

// floor is the least time the catch-up could have taken on cpus cores with
// this much CPU: all of it spread evenly, or the busiest single process if
// that took longer. A run close to its floor was CPU-bound; an applier
// whose floor exceeds another's time cannot beat it on this machine.
func (c catchUpCPU) floor(cpus int) float64 {
	if c.apply < 0 || c.walsender < 0 {
		return -1
	}
	total := c.apply + c.walsender
	busiest := max(c.apply/float64(max(c.sessions, 1)), c.walsender)
	for _, v := range c.pgfloCPU {
		if v < 0 {
			return -1
		}
		total += v
		busiest = max(busiest, v)
	}
	return max(total/float64(cpus), busiest)
}

// addPgflo records the CPU of one of pgflo's processes.
func (c *catchUpCPU) addPgflo(role string, cpu float64) {
	c.pgflo = append(c.pgflo, role+" "+seconds(cpu))
	c.pgfloCPU = append(c.pgfloCPU, cpu)
}

// measureCatchUpCPU reads the CPU of the target's applying session(s) in
// database target and of the walsender serving slot (before either exits).
func (b *bench) measureCatchUpCPU(ctx context.Context, target, slot string) catchUpCPU {
	c := catchUpCPU{apply: -1, walsender: -1}
	conn, err := pgx.Connect(ctx, b.tpg.AdminDSN())
	if err != nil {
		return c
	}
	defer conn.Close(context.Background())
	var pids []int32
	err = conn.QueryRow(ctx, `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity
		WHERE datname = $1 AND (backend_type = 'logical replication worker' OR application_name LIKE 'pgflo pg_flo_postgres%')`, target).Scan(&pids)
	if err == nil && len(pids) > 0 {
		c.apply, c.sessions = 0, len(pids)
		for _, pid := range pids {
			c.apply += benchkit.PidCPU(int(pid))
		}
	}
	source, err := pgx.Connect(ctx, b.pg.AdminDSN())
	if err != nil {
		return c
	}
	defer source.Close(context.Background())
	var walsender *int32
	if source.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walsender) == nil && walsender != nil {
		c.walsender = benchkit.PidCPU(int(*walsender))
	}
	return c
}

func (c catchUpCPU) String() string {
	parts := []string{fmt.Sprintf("target sessions %s", seconds(c.apply)), fmt.Sprintf("walsender %s", seconds(c.walsender))}
	return strings.Join(append(parts, c.pgflo...), ", ")
}

// replicationSlot is the slot pg_flo_replicator uses for group: pg_flo's
// name, pg_flo_<group>_publication.
func replicationSlot(group string) string { return replication.PgFloName(group) }

func seconds(s float64) string {
	if s < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f s", s)
}

// syncCPU is the CPU (user+system seconds) one initial sync cost: the
// source and target clusters whole (every backend that came and went: COPY
// sessions, the walsender, native's table sync worker; and the background
// writers), and pgflo's processes. Native's sync runs in one worker and
// leaves a core idle; pgflo's spreads over both, so its total over the
// cores is its floor.
type syncCPU struct {
	source, target float64
	pgflo          []string // "replicator 1.2 s", …
	pgfloCPU       []float64
}

// clusterCPU reads the CPU both clusters have used so far.
func (b *bench) clusterCPU() (source, target float64) {
	return benchkit.ClusterCPU(b.pg.DataDir()), benchkit.ClusterCPU(b.tpg.DataDir())
}

// since returns the clusters' CPU from readings taken at the start.
func (b *bench) syncCPUSince(source0, target0 float64) syncCPU {
	s, t := b.clusterCPU()
	c := syncCPU{source: -1, target: -1}
	if s >= 0 && source0 >= 0 {
		c.source = s - source0
	}
	if t >= 0 && target0 >= 0 {
		c.target = t - target0
	}
	return c
}

func (c *syncCPU) addPgflo(role string, cpu float64) {
	c.pgflo = append(c.pgflo, role+" "+seconds(cpu))
	c.pgfloCPU = append(c.pgfloCPU, cpu)
}

// total is all of it, -1 when a part is unknown.
func (c syncCPU) total() float64 {
	t := c.source + c.target
	if c.source < 0 || c.target < 0 {
		return -1
	}
	for _, v := range c.pgfloCPU {
		if v < 0 {
			return -1
		}
		t += v
	}
	return t
}

// pgfloShare is pgflo's processes' CPU over both clusters', -1 when a part
// is unknown (or native's, which has no pgflo processes).
func (c syncCPU) pgfloShare() float64 {
	pg := c.source + c.target
	if c.source < 0 || c.target < 0 || pg <= 0 || len(c.pgfloCPU) == 0 {
		return -1
	}
	var own float64
	for _, v := range c.pgfloCPU {
		if v < 0 {
			return -1
		}
		own += v
	}
	return own / pg
}

func (c syncCPU) String() string {
	parts := []string{"target cluster " + seconds(c.target), "source cluster " + seconds(c.source)}
	s := strings.Join(append(parts, c.pgflo...), ", ")
	if share := c.pgfloShare(); share >= 0 {
		s += fmt.Sprintf(" (pgflo %.0f %% of PostgreSQL's)", 100*share)
	}
	return s
}
