//go:build !linux

package testenv

import (
	"errors"
	"syscall"
)

// childAttr returns the process attributes for a server or subprocess. Outside
// Linux there is no parent-death signal, and switching users (needed only when
// running PostgreSQL as root) is not supported.
func childAttr(runAs *osUser) (*syscall.SysProcAttr, error) {
	if runAs != nil {
		return nil, errors.New("running PostgreSQL tests as root is only supported on Linux; run them as an ordinary user")
	}
	return nil, nil
}
