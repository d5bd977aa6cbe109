//go:build unix

package replication

import (
	"io"
	"net"
	"syscall"
)

// socketLowat returns a function setting SO_RCVLOWAT on the socket under w,
// or nil when w is not a socket.
func socketLowat(w io.Writer) func(int) error {
	if tc, ok := w.(interface{ NetConn() net.Conn }); ok { // TLS
		w = tc.NetConn()
	}
	sc, ok := w.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(bytes int) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, bytes)
		}); err != nil {
			return err
		}
		return serr
	}
}
