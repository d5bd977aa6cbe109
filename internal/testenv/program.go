package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// ProgramTB is a testing.TB for programs (go run) that drive real servers
// with this package's helpers outside `go test`, such as the fault campaign:
// Fatal ends the body started by Run, Cleanup functions run when it returns,
// TempDir gives directories under one work dir, and Log writes to a writer.
//
// It implements the methods this package and such programs call; the
// embedded TB is nil and only satisfies the interface's unexported method,
// so calling one of the few others (Setenv, Chdir, Skip…) panics.
type ProgramTB struct {
	testing.TB

	name string
	dir  string
	out  io.Writer
	ctx  context.Context

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	temps    int
}

// NewProgramTB returns a ProgramTB named name whose temp dirs go under dir
// and whose log lines go to out.
func NewProgramTB(ctx context.Context, name, dir string, out io.Writer) *ProgramTB {
	return &ProgramTB{name: name, dir: dir, out: out, ctx: ctx}
}

// Run runs body on a goroutine of its own, as go test runs a test (so that
// FailNow can end it with runtime.Goexit), then the Cleanup functions, last
// registered first, and reports whether it failed.
func (t *ProgramTB) Run(body func(t *ProgramTB)) (failed bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(t)
	}()
	<-done
	t.mu.Lock()
	cleanups := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	return t.Failed()
}

// Cleanup registers f to run after Run's body returned.
func (t *ProgramTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// Error logs and marks the run failed.
func (t *ProgramTB) Error(args ...any) { t.Log(args...); t.Fail() }

// Errorf logs and marks the run failed.
func (t *ProgramTB) Errorf(format string, args ...any) { t.Logf(format, args...); t.Fail() }

// Fail marks the run failed.
func (t *ProgramTB) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

// FailNow marks the run failed and ends the calling goroutine, which must be
// Run's body (or one it waits for), as with testing.T.
func (t *ProgramTB) FailNow() {
	t.Fail()
	runtime.Goexit()
}

// Failed reports whether the run failed.
func (t *ProgramTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Fatal logs, marks the run failed and ends it.
func (t *ProgramTB) Fatal(args ...any) { t.Log(args...); t.FailNow() }

// Fatalf logs, marks the run failed and ends it.
func (t *ProgramTB) Fatalf(format string, args ...any) { t.Logf(format, args...); t.FailNow() }

// Helper does nothing: there are no file:line prefixes to adjust.
func (t *ProgramTB) Helper() {}

// Log writes one line.
func (t *ProgramTB) Log(args ...any) { fmt.Fprintln(t.out, args...) }

// Logf writes one line.
func (t *ProgramTB) Logf(format string, args ...any) {
	fmt.Fprintf(t.out, format+"\n", args...)
}

// Name returns the name given to NewProgramTB.
func (t *ProgramTB) Name() string { return t.name }

// TempDir returns a new directory under the work dir, kept after the run
// (the program decides whether to remove the work dir).
func (t *ProgramTB) TempDir() string {
	t.mu.Lock()
	t.temps++
	n := t.temps
	t.mu.Unlock()
	dir := filepath.Join(t.dir, strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create temp dir: %v", err)
	}
	return dir
}

// Context returns the context given to NewProgramTB.
func (t *ProgramTB) Context() context.Context { return t.ctx }

// Output returns the writer log lines go to.
func (t *ProgramTB) Output() io.Writer { return t.out }

// Skipped reports false: a program is never skipped.
func (t *ProgramTB) Skipped() bool { return false }
