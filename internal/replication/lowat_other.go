//go:build !unix

package replication

import "io"

// socketLowat: the low-water mark is only set on Unix systems.
func socketLowat(io.Writer) func(int) error { return nil }
