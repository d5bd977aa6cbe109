package testenv

import (
	"fmt"
	"os/exec"
	"runtime"
)

// osUser is an OS account that servers run as (PostgreSQL refuses to run as root).
type osUser struct {
	name     string
	uid, gid uint32
}

// child is a started process and the outcome of waiting for it.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result; read only after done is closed
}

// startChild starts cmd with the parent-death signal set and waits for it in the
// background.
//
// The Linux parent-death signal fires when the *thread* that forked the child
// exits, not the process. The Go runtime ends a thread only when a goroutine
// locked to it exits while still locked, so cmd is started and waited for on a
// goroutine that holds its thread locked until the child is gone; no thread exit
// can kill the child early.
func startChild(cmd *exec.Cmd, runAs *osUser) (*child, error) {
	attr, err := childAttr(runAs)
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = attr
	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return c, nil
}

// exited reports whether the process has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
