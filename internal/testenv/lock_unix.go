//go:build unix

package testenv

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on dir/.lock for the life of the process. The
// kernel releases it when the process dies, however it dies, which is how
// removeStaleDirs tells a live cluster's temp dir from a leftover one.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir+"/.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// isLockedByOther reports whether a live process holds dir's lock.
func isLockedByOther(dir string) bool {
	f, err := os.OpenFile(dir+"/.lock", os.O_RDWR, 0)
	if err != nil {
		// No lock file: a crash between creating the dir and locking it, or a
		// dir we cannot read; only the age check protects it.
		return !errors.Is(err, os.ErrNotExist)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
