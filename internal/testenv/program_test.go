package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Fatal ends a ProgramTB's body where it is called, as t.Fatal ends a test;
// the run is failed and its Cleanup functions run, last registered first.
func TestProgramTBFatalEndsTheBody(t *testing.T) {
	var out strings.Builder
	tb := NewProgramTB(context.Background(), "prog", t.TempDir(), &out)
	var order []string
	reached := false
	failed := tb.Run(func(tb *ProgramTB) {
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() { order = append(order, "second") })
		dir := tb.TempDir()
		if dir == tb.TempDir() {
			t.Error("TempDir gave the same dir twice")
		}
		tb.Fatalf("stop here: %d", 42)
		reached = true
	})
	if !failed || reached {
		t.Fatalf("failed = %v, body went on after Fatal = %v", failed, reached)
	}
	if strings.Join(order, ",") != "second,first" {
		t.Fatalf("cleanups ran as %v, want second,first", order)
	}
	if !strings.Contains(out.String(), "stop here: 42") {
		t.Fatalf("log %q lacks the Fatal message", out.String())
	}
}

// A crash (immediate shutdown) keeps every commit made with
// synchronous_commit on, and the server starts again with crash recovery.
func TestCrashKeepsSynchronousCommits(t *testing.T) {
	dsn := pg.NewDatabase(t)
	Exec(t, dsn, "CREATE TABLE t (id int PRIMARY KEY)")
	Exec(t, dsn, "SET synchronous_commit = on; INSERT INTO t SELECT generate_series(1, 100)")
	if err := pg.Crash(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ping(ctx, dsn); err == nil {
		t.Fatal("connected to a crashed server")
	}
	if err := pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	if n := QueryInt(t, dsn, "SELECT count(*) FROM t"); n != 100 {
		t.Fatalf("count after the crash = %d, want 100", n)
	}
}
