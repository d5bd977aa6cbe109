package replication

import (
	"bytes"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"
)

// The paced reader hands on every byte in order, however the stream is cut,
// and pauses only after a small read that followed another one closely.
func TestPacedReaderKeepsTheStream(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 16)
	p := &pacedReader{r: iotest.OneByteReader(iotest.HalfReader(bytes.NewReader(want)))}
	got, err := io.ReadAll(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(want))
	}
	one := &pacedReader{r: bytes.NewReader(want)}
	for range 2 {
		if _, err := one.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if !one.small {
		t.Error("two small reads in a row did not make the reader pause")
	}
	big := &pacedReader{r: bytes.NewReader(want)}
	if _, err := big.Read(make([]byte, len(want))); err != nil {
		t.Fatal(err)
	}
	if big.small {
		t.Error("a large read made the reader pause")
	}
}

// Over a real socket: while a busy stream is paced the low-water mark is
// raised, and a lone message sent after the burst is still read at once —
// the mark is back at one byte before any read that can block.
func TestPacedReaderLowWaterMark(t *testing.T) {
	client, server := loopbackPair(t)

	lowat := socketLowat(client)
	if lowat == nil {
		t.Skip("no low-water mark on this system")
	}
	var raised int
	p := &pacedReader{r: client, lowat: func(n int) error {
		if n > 1 {
			raised++
		}
		return lowat(n)
	}}
	msg := []byte("a small change\n")
	buf := make([]byte, 64<<10)
	// A burst: small writes a little apart, each read on its own.
	for range 20 {
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if raised == 0 {
		t.Fatal("a busy stream of small reads never raised the low-water mark")
	}
	// The stream goes quiet: the next read blocks, and the one message that
	// comes must wake it without waiting for more bytes.
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = server.Write(msg)
	}()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.Read(buf)
	if err != nil {
		t.Fatalf("a lone message after the burst was not read: %v", err)
	}
	if n != len(msg) {
		t.Fatalf("read %d bytes, want %d", n, len(msg))
	}
}

// loopbackPair returns both ends of a TCP connection over loopback, closed
// when the test ends.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

// A stream that keeps up with its source is not paced: small reads in a
// row never raise the low-water mark to wait.
func TestPacedReaderCaughtUpReadsAtOnce(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 64)
	for _, caughtUp := range []bool{false, true} {
		raised := 0
		p := &pacedReader{r: bytes.NewReader(data), caughtUp: caughtUp, lowat: func(n int) error {
			if n > 1 {
				raised++
			}
			return nil
		}}
		for range 3 {
			if _, err := p.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if paused := raised > 0; paused == caughtUp {
			t.Errorf("caught up %v: paused %v", caughtUp, paused)
		}
	}
}
