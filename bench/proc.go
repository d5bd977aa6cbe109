package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopTimeout is how long stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 20 * time.Second

// proc is a subprocess of the benchmark (pg_recvlogical, or the pgflo binary
// running NATS, the replicator or the worker) whose stdout and stderr go to a
// log file in the work dir.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result; read only after done is closed
}

// startProc starts bin with args. The process gets SIGKILL if the benchmark
// dies (Linux parent-death signal), so an interrupted or crashed run leaves
// nothing behind.
//
// The parent-death signal fires when the thread that forked the child exits,
// so the child is started and waited for on a goroutine that keeps its thread
// locked until the child is gone.
func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		p.started = time.Now()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	return p, nil
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how an exited process ended (nil for exit status 0).
func (p *proc) exitError() error {
	if p.err != nil {
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	}
	return nil
}

// maxRSS returns the process's peak resident set size in bytes: VmHWM from
// /proc while it runs, else the rusage of the exited process.
func (p *proc) maxRSS() (int64, bool) {
	if !p.exited() {
		if kb, ok := vmHWM(p.cmd.Process.Pid); ok {
			return kb * 1024, true
		}
	}
	select {
	case <-p.done:
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
			return ru.Maxrss * 1024, true // kilobytes on Linux
		}
	default:
	}
	return 0, false
}

// vmHWM reads the peak RSS (kB) of pid from /proc/<pid>/status.
func vmHWM(pid int) (int64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}

// stop asks the process to shut down (SIGTERM), sends SIGKILL if it has not
// exited within stopTimeout, and returns an error when it needed SIGKILL or
// exited with a non-zero status. Stopping an exited process only reports how
// it ended.
func (p *proc) stop() error {
	if !p.exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop %s: %w", p.name, err)
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill() // only fails if it is already gone
			<-p.done
			return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", p.name, stopTimeout)
		}
	}
	if p.err != nil {
		var ee *exec.ExitError
		if errors.As(p.err, &ee) && ee.ProcessState != nil {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil // ended by our SIGTERM without its own handler: a clean stop
			}
		}
		return fmt.Errorf("stop %s: %w", p.name, p.err)
	}
	return nil
}

// tail returns at most the last n bytes of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "(empty log)"
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// describe names the process and shows the end of its log, for error messages.
func (p *proc) describe() string {
	return fmt.Sprintf("last output of %s (%s):\n%s", p.name, p.logPath, indent(p.tail(3000)))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// waitTCP waits until something accepts connections on 127.0.0.1:port, or p
// exits, or the timeout passes.
func waitTCP(p *proc, port int, timeout time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.describe())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v\n%s", p.name, addr, timeout, p.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
