//go:build !linux

package replication

import (
	"io"
	"time"
)

// tuneReceiveBuffer: the receive buffer is sized on Linux only.
func tuneReceiveBuffer(io.Writer) (time.Duration, bool) { return 0, false }
