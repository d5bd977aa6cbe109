package replication

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestReceiveBufferFor(t *testing.T) {
	for rtt, want := range map[time.Duration]bool{
		0: false, 30 * time.Microsecond: true, receiveBufferMaxRTT: true,
		receiveBufferMaxRTT + time.Microsecond: false, 20 * time.Millisecond: false,
	} {
		if size, ok := receiveBufferFor(rtt); ok != want || (ok && size != receiveBufferSize) {
			t.Errorf("rtt %v: %d, %v; want set %v", rtt, size, ok, want)
		}
	}
}

// Over loopback (a round trip of microseconds) the replication socket gets
// the small receive buffer, and a stream of small writes, as a walsender
// makes them, flows through the replication connection's reader (paced, in
// a large buffer) at full speed: every byte, in order, without the stall a
// buffer below the segment size causes.
func TestTunedSocketStreams(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the receive buffer is sized on Linux only")
	}
	client, server := loopbackPair(t)

	rtt, set := tuneReceiveBuffer(client)
	if !set {
		t.Fatalf("loopback (rtt %v) did not get the small receive buffer", rtt)
	}
	raw, _ := client.(*net.TCPConn).SyscallConn()
	var size int
	_ = raw.Control(func(fd uintptr) { size, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if size < receiveBufferSize || size > 4*receiveBufferSize {
		t.Fatalf("receive buffer %d bytes, want about %d", size, 2*receiveBufferSize)
	}

	// 32 MiB in 300-byte writes (about 0.1 s on a 2-core machine). A stall
	// runs into the read deadline.
	const changes = 32 << 20 / 300
	go func() {
		change := bytes.Repeat([]byte("u"), 300)
		for range changes {
			if _, err := server.Write(change); err != nil {
				return
			}
		}
		server.Close()
	}()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	// As pgproto3 reads it: 8 KiB at a time from the buffered reader.
	r := bufio.NewReaderSize(&pacedReader{r: client, lowat: socketLowat(client)}, readBufferLen)
	start := time.Now()
	chunk := make([]byte, 8<<10)
	var n int
	for {
		m, err := r.Read(chunk)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	if n != changes*300 {
		t.Fatalf("read %d bytes, want %d", n, changes*300)
	}
	t.Logf("%d bytes in %v", n, time.Since(start))
}
