// Package benchkit holds what pgflo's benchmarks (bench/, bench/snapshot/)
// share: subprocesses of the built binary with their logs and peak RSS, a
// watch on a group's JetStream stream, measurements and report formatting.
package benchkit

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

// Proc is a subprocess of a benchmark (pg_recvlogical, or the pgflo binary
// running NATS, the replicator or the worker) whose stdout and stderr go to a
// log file in the work dir.
type Proc struct {
	Name    string
	LogPath string
	Started time.Time // when it was started; set before StartProc returns
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result; read only after done is closed
}

// StartProc starts bin with args. The process gets SIGKILL if the benchmark
// dies (Linux parent-death signal), so an interrupted or crashed run leaves
// nothing behind.
//
// The parent-death signal fires when the thread that forked the child exits,
// so the child is started and waited for on a goroutine that keeps its thread
// locked until the child is gone.
func StartProc(dir, name, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		p.Started = time.Now()
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

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (cmd.Wait's result); meaningful once Done is
// closed, nil before.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitError describes how an exited process ended (nil for exit status 0).
func (p *Proc) ExitError() error {
	if p.err != nil {
		return fmt.Errorf("%s exited: %w", p.Name, p.err)
	}
	return nil
}

// CPU is the process's user+system CPU seconds so far, -1 when unknown
// (the process exited).
func (p *Proc) CPU() float64 {
	if p.Exited() {
		return -1
	}
	return PidCPU(p.Pid())
}

// ClusterCPU is the user+system CPU seconds a PostgreSQL cluster (data
// directory dataDir) has used so far: its postmaster's own and its reaped
// children's, plus each running child's. The difference of two readings is
// what the whole cluster spent in between, whatever backends came and went
// (a table sync worker, COPY sessions); -1 when unknown.
func ClusterCPU(dataDir string) float64 {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return -1
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return -1
	}
	f := statFields(pm)
	if len(f) < 15 {
		return -1
	}
	total := ticks(f[11]) + ticks(f[12]) + ticks(f[13]) + ticks(f[14])
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	parent := strconv.Itoa(pm)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) >= 13 && f[1] == parent {
			total += ticks(f[11]) + ticks(f[12])
		}
	}
	return float64(total) / 100
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (state first), nil when unreadable.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func ticks(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// PidCPU is the user+system CPU time of a running process, from
// /proc/<pid>/stat (clock ticks of 1/100 s, as on every Linux build that
// matters here), or -1 when unknown.
func PidCPU(pid int) float64 {
	// Fields after the command name (which is in parentheses and may hold
	// spaces): utime is field 14, stime 15.
	f := statFields(pid)
	if len(f) < 13 {
		return -1
	}
	return float64(ticks(f[11])+ticks(f[12])) / 100
}

// MaxRSS returns the process's peak resident set size in bytes: VmHWM from
// /proc while it runs, else the rusage of the exited process.
func (p *Proc) MaxRSS() (int64, bool) {
	if !p.Exited() {
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

// Stop asks the process to shut down (SIGTERM), sends SIGKILL if it has not
// exited within stopTimeout, and returns an error when it needed SIGKILL or
// exited with a non-zero status. Stopping an exited process only reports how
// it ended.
func (p *Proc) Stop() error {
	if !p.Exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop %s: %w", p.Name, err)
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill() // only fails if it is already gone
			<-p.done
			return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", p.Name, stopTimeout)
		}
	}
	if p.err != nil {
		var ee *exec.ExitError
		if errors.As(p.err, &ee) && ee.ProcessState != nil {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil // ended by our SIGTERM without its own handler: a clean stop
			}
		}
		return fmt.Errorf("stop %s: %w", p.Name, p.err)
	}
	return nil
}

// Tail returns at most the last n bytes of the process's log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
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

// Describe names the process and shows the end of its log, for error messages.
func (p *Proc) Describe() string {
	return fmt.Sprintf("last output of %s (%s):\n%s", p.Name, p.LogPath, Indent(p.Tail(3000)))
}

func Indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// WaitTCP waits until something accepts connections on 127.0.0.1:port, or p
// exits, or the timeout passes.
func WaitTCP(p *Proc, port int, timeout time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.Name, addr, p.err, p.Describe())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v\n%s", p.Name, addr, timeout, p.Describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
