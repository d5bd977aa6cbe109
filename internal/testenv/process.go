package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// stopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 20 * time.Second

// Process is a subprocess of the test (typically the pgflo binary running a
// replicator or worker) whose stdout and stderr go to a log file. Fault tests
// kill or stop it and start a new one to check that work resumes.
type Process struct {
	name    string
	logPath string
	c       *child
}

// StartProcess starts bin with args, in the test's environment, writing stdout
// and stderr to a log file in a temp dir. name labels it in messages. When the
// test ends the process is killed if still running, and if the test failed the
// end of its log is printed.
func StartProcess(t testing.TB, name string, bin string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, name, nil, bin, args...)
}

// StartProcessEnv is StartProcess with extra environment variables ("KEY=value")
// added to the test's environment; they override variables of the same name.
func StartProcessEnv(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("start %s: create log: %v", name, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), env...)
	c, err := startChild(cmd, nil)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{name: name, logPath: logPath, c: c}
	t.Cleanup(func() {
		if !p.Exited() {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("last output of %s (%s):\n%s", p.name, p.logPath, lastBytes(p.Log(), 4096))
		}
	})
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.c.cmd.Process.Pid }

// LogPath returns the path of the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Log returns the process's output so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log of %s: %v)", p.name, err)
	}
	return string(b)
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool { return p.c.exited() }

// Wait waits for the process to exit and returns its exit error (nil for exit
// status 0). It can be called any number of times.
func (p *Process) Wait() error {
	<-p.c.done
	if p.c.err != nil {
		return fmt.Errorf("%s: %w", p.name, p.c.err)
	}
	return nil
}

// Kill sends SIGKILL, as in a crash or OOM kill, and waits for the exit.
func (p *Process) Kill() {
	// The only possible error is that the process is already gone.
	_ = p.c.cmd.Process.Kill()
	<-p.c.done
}

// Stop asks the process to shut down gracefully (SIGTERM), as an orchestrator
// would, sends SIGKILL if it has not exited within 20 seconds, and returns the
// exit error (nil for a clean exit). A process that needed SIGKILL is reported as
// an error.
func (p *Process) Stop() error {
	if err := p.c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.c.done:
		return p.Wait()
	case <-time.After(stopTimeout):
		p.Kill()
		return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", p.name, stopTimeout)
	}
}
