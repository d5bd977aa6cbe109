package testenv

import "syscall"

// childAttr returns the process attributes for a server or subprocess: run as
// runAs (when not nil) and get SIGKILL when the test process dies, so nothing
// outlives a crashed or timed-out test run.
func childAttr(runAs *osUser) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if runAs != nil {
		attr.Credential = &syscall.Credential{Uid: runAs.uid, Gid: runAs.gid, Groups: []uint32{runAs.gid}}
	}
	return attr, nil
}
