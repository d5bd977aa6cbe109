package jsproto_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

func TestDrain(t *testing.T) {
	ns := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := jsproto.Connect(jsproto.ConnConfig{URL: ns.URL()})
	if err != nil {
		t.Fatal(err)
	}
	if err := jsproto.Drain(ctx, nc); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if !nc.IsClosed() {
		t.Fatal("connection still open after drain")
	}
	// Draining again, as a second Close does, is not an error.
	if err := jsproto.Drain(ctx, nc); err != nil {
		t.Fatalf("drain of a closed connection: %v", err)
	}
}
