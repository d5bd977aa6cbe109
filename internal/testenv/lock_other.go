//go:build !unix

package testenv

import "os"

// lockDir is a no-op without flock; stale dirs are then never removed.
func lockDir(string) (*os.File, error) { return nil, nil }

// isLockedByOther claims every dir is in use, so nothing is removed.
func isLockedByOther(string) bool { return true }
