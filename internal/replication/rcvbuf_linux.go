//go:build linux

package replication

import (
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tuneReceiveBuffer gives a replication connection to a nearby server (see
// receiveBufferFor) the small receive buffer and reports whether it did,
// with the round-trip time the kernel measured. On any error the kernel's
// sizing stays: the buffer only saves CPU.
func tuneReceiveBuffer(w io.Writer) (time.Duration, bool) {
	if tc, ok := w.(interface{ NetConn() net.Conn }); ok { // TLS
		w = tc.NetConn()
	}
	tcp, ok := w.(*net.TCPConn)
	if !ok {
		return 0, false // a Unix socket: no TCP window to size
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return 0, false
	}
	var rtt time.Duration
	set := false
	_ = raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		rtt = time.Duration(info.Rtt) * time.Microsecond
		if size, ok := receiveBufferFor(rtt); ok {
			set = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size) == nil
		}
	})
	return rtt, set
}
