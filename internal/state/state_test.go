package state

import (
	"context"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// A bucket is created with the replicas asked for; an existing one is kept
// as it is and reports its own, so the replicator can warn.
func TestOpenReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := testenv.StartNATSCluster(t, 3)
	js := c.JetStream(t)
	s, err := Open(ctx, js, "r3", 3)
	if err != nil {
		t.Fatal(err)
	}
	if s.Replicas() != 3 {
		t.Fatalf("new bucket has %d replicas, want 3", s.Replicas())
	}
	c.WaitStreamHealthy(t, "KV_"+jsproto.StateBucket("r3"), 3, time.Minute)

	if _, err := Open(ctx, js, "r1", 1); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, js, "r1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if again.Replicas() != 1 {
		t.Fatalf("existing R1 bucket reports %d replicas, want 1 (it is not changed)", again.Replicas())
	}
	if _, err := Open(ctx, js, "r0", 0); err == nil {
		t.Fatal("replicas 0 accepted")
	}
}
