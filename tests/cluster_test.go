package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/state"
	"github.com/pgflo/pgflo/internal/testenv"
)

// clusterGroup is a replication group whose stream and state bucket live on
// a three-node NATS cluster with three replicas each.
type clusterGroup struct {
	t       *testing.T
	nats    *testenv.NATSCluster
	group   string
	markers int
	source  string
	target  string
}

// healthy waits until the group's stream and state bucket each have a
// leader and three current replicas: a restarted node has caught up.
func (g *clusterGroup) healthy() {
	g.t.Helper()
	g.nats.WaitStreamHealthy(g.t, jsproto.StreamName(g.group), 3, 90*time.Second)
	g.nats.WaitStreamHealthy(g.t, "KV_"+jsproto.StateBucket(g.group), 3, 90*time.Second)
}

// flows commits a marker row on the source and waits until the target has
// it: the pipeline runs, whatever node is down.
func (g *clusterGroup) flows(when string) {
	g.t.Helper()
	g.markers++
	id := -g.markers
	testenv.Exec(g.t, g.source, "INSERT INTO accounts (id, balance, note) VALUES ($1, 0, 'marker')", id)
	testenv.Eventually(g.t, 90*time.Second, "marker "+strconv.Itoa(id)+" on the target "+when, func() bool {
		return testenv.QueryInt(g.t, g.target, "SELECT count(*) FROM accounts WHERE id = $1", id) == 1
	})
}

// A pipeline over a three-node NATS cluster (stream and state bucket with
// three replicas, set by the pg_flo CLI's --nats-replicas) keeps applying a
// mixed workload while the stream's leader is killed (kill -9), and then each
// other node in turn; every killed node rejoins and catches up, and the
// target ends equal to the source.
func TestClusterNodeKillsWhileStreaming(t *testing.T) {
	g := &clusterGroup{t: t, nats: testenv.StartNATSCluster(t, 3), group: "clustered", source: pg.NewDatabase(t), target: pg.NewDatabase(t)}
	testenv.Exec(t, g.source, accountsSQL)
	testenv.Exec(t, g.target, accountsSQL)
	bin := testenv.Binary(t)
	port := strconv.Itoa(pg.Port())
	rep := testenv.StartProcess(t, "replicator", bin, "replicator",
		"--host", "127.0.0.1", "--port", port, "--dbname", dbName(t, g.source), "--user", "postgres", "--password", compatPassword,
		"--group", g.group, "--tables", "accounts", "--nats-url", g.nats.URLs(), "--nats-replicas", "3")
	testenv.Eventually(t, 60*time.Second, "the replicator streaming", func() bool {
		rows := testenv.QueryRows(t, g.source, "SELECT active::text FROM pg_replication_slots WHERE slot_name = $1", "pg_flo_clustered_publication")
		return len(rows) == 1 && rows[0][0] == "true"
	})
	wrk := testenv.StartProcess(t, "worker", bin, "worker", "postgres", "--group", g.group, "--nats-url", g.nats.URLs(),
		"--target-host", "127.0.0.1", "--target-port", port, "--target-dbname", dbName(t, g.target), "--target-user", "postgres", "--target-password", compatPassword)
	defer func() {
		if t.Failed() {
			t.Logf("replicator:\n%s\nworker:\n%s", infoLines(rep.Log()), infoLines(wrk.Log()))
		}
	}()

	// Upserts and deletes over 2,000 keys: inserts at first, then updates
	// and deletes.
	writer := startChurn(t, g.source, 100, 2000)
	g.healthy()
	g.flows("with every node up")

	stream := jsproto.StreamName(g.group)
	leader := g.nats.StreamLeader(t, stream, 30*time.Second)
	kill := func(n *testenv.NATSNode, what string) {
		t.Helper()
		killed := time.Now()
		n.Kill()
		g.flows("with " + what + " " + n.Name + " down")
		flowed := time.Since(killed)
		n.Restart(t)
		g.healthy()
		t.Logf("%s %s killed: a change reached the target %v later; the node rejoined with current replicas %v after the kill",
			what, n.Name, flowed.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	}
	kill(leader, "stream leader")
	for _, n := range g.nats.Nodes() {
		if n != leader {
			kill(n, "node")
		}
	}
	txs := writer.finish()
	waitDigestsEqual(t, g.source, g.target, []string{"accounts"}, 120*time.Second)
	n := testenv.QueryInt(t, g.target, "SELECT count(*) FROM accounts")
	t.Logf("target equals source (%d rows) after %d writer transactions", n, txs)
}

// clusterSnapshotRows is the size of the table copied while the stream's
// leader is killed: large enough that the copy is still publishing when the
// kill comes.
const clusterSnapshotRows = 120_000

// kill -9 of the stream's leader while copy_and_stream's snapshot publishes
// into an R3 stream (state bucket R3 too): the copy goes on through the new
// leader, the snapshot completes and the target ends equal to the source.
func TestClusterLeaderKillDuringSnapshot(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	source, target := pg.NewDatabase(t), pg.NewDatabase(t)
	testenv.Exec(t, source, accountsSQL)
	testenv.Exec(t, source, fmt.Sprintf("INSERT INTO accounts (id, balance, note) SELECT g, g, md5(g::text) || md5((g + 1)::text) || md5((g * 7)::text) FROM generate_series(1, %d) g", clusterSnapshotRows))
	testenv.Exec(t, target, accountsSQL)
	p := newPipeline(t, source, "clustersnap")
	p.urls = c.URLs()
	p.replicatorExtra = fmt.Sprintf("    mode: copy_and_stream\n    nats:\n      url: %s\n    tables: [accounts]\n    state_replicas: 3\n    copy_chunk_pages: 50", c.URLs())
	p.replicatorOutput = fmt.Sprintf("pg_flo_jetstream:\n    url: %s\n    group: %s\n    stream_replicas: 3\n    publish_timeout: 5s", c.URLs(), p.group)
	g := &ownershipGroup{pipeline: p, source: source, target: target}
	cg := &clusterGroup{t: t, nats: c, group: p.group, source: source, target: target}
	writer := startChurn(t, source, 50, clusterSnapshotRows)
	p.startReplicatorNoWait()
	p.startWorker(postgresOutput(target, p.group, ""))
	defer func() {
		if t.Failed() {
			t.Logf("replicator:\n%s", infoLines(p.replicator.Log()))
		}
	}()

	// The kill comes while the copy publishes: the group's snapshot record,
	// read on one connection kept open, has some chunks done and not all.
	js := c.JetStream(t)
	store, err := state.Open(context.Background(), js, p.group, 3)
	if err != nil {
		t.Fatal(err)
	}
	var leader *testenv.NATSNode
	var before *state.Snapshot
	testenv.Eventually(t, 90*time.Second, "the copy under way", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if before, err = store.LoadSnapshot(ctx); err != nil || before == nil || len(before.Tables) != 1 || len(before.Tables[0].Done) < 2 {
			return false
		}
		if before.Complete {
			t.Fatal("the copy finished before the leader could be killed: make the table larger")
		}
		info, err := c.StreamInfo(ctx, js, jsproto.StreamName(p.group))
		if err != nil || info.Cluster == nil {
			return false
		}
		leader = c.Node(info.Cluster.Leader)
		return leader != nil
	})
	leader.Kill()
	killed := time.Now()
	t.Logf("stream leader %s killed with %d of %d chunks done", leader.Name, len(before.Tables[0].Done), len(before.Tables[0].Chunks))
	testenv.Eventually(t, 120*time.Second, "the snapshot complete", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := store.LoadSnapshot(ctx)
		return err == nil && s != nil && s.Complete
	})
	t.Logf("snapshot complete %v after the kill", time.Since(killed).Round(time.Millisecond))
	leader.Restart(t)
	cg.healthy()
	cg.flows("after the snapshot")
	txs := writer.finish()
	g.waitEqual(120 * time.Second)
	t.Logf("target equals source %v after the kill, after %d writer transactions; the replicator resent %d batches", time.Since(killed).Round(time.Millisecond), txs, strings.Count(p.replicator.Log(), "rejected downstream"))
}
