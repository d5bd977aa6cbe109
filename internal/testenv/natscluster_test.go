package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A three-node cluster keeps an R3 stream available through a kill -9 of
// its leader, and the restarted node catches up with what it missed.
func TestNATSClusterSurvivesLeaderKill(t *testing.T) {
	c := StartNATSCluster(t, 3)
	js := c.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "R3", Subjects: []string{"r3.>"}, Storage: jetstream.FileStorage, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	c.WaitStreamHealthy(t, "R3", 3, natsReadyTimeout)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			// Retried: while a new leader is elected publishes fail.
			Eventually(t, 30*time.Second, fmt.Sprintf("message %d stored", i), func() bool {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				defer pcancel()
				_, err := js.Publish(pctx, "r3.m", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				return err == nil
			})
		}
	}
	publish(1, 100)
	leader := c.StreamLeader(t, "R3", 10*time.Second)
	leader.Kill()
	publish(101, 200)
	if next := c.StreamLeader(t, "R3", 30*time.Second); next == leader {
		t.Fatalf("killed node %s still leads the stream", leader.Name)
	}
	leader.Restart(t)
	c.WaitStreamHealthy(t, "R3", 3, natsReadyTimeout)

	// Every node killed and restarted: the stream keeps every message.
	for _, n := range c.Nodes() {
		n.Kill()
	}
	for _, n := range c.Nodes() {
		n.Restart(t)
	}
	c.WaitStreamHealthy(t, "R3", 3, natsReadyTimeout)
	info, err := c.StreamInfo(ctx, js, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 200 {
		t.Fatalf("stream holds %d messages, want 200", info.State.Msgs)
	}
}
