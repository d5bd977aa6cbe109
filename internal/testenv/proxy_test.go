package testenv

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) (string, error) {
	t.Helper()
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return line, err
}

func TestProxyDelaysBothWaysAndCuts(t *testing.T) {
	const delay = 20 * time.Millisecond
	p, err := StartProxy(echoServer(t), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	start := time.Now()
	got, err := roundTrip(t, c, r, "hello")
	if err != nil || got != "hello\n" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	// A lower bound only: the delay is added each way, so a round trip can
	// never be shorter than twice it (an upper bound would be a timed assertion).
	if took := time.Since(start); took < 2*delay {
		t.Fatalf("round trip took %v, want at least %v", took, 2*delay)
	}

	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := roundTrip(t, c, r, "after cut"); err == nil {
		t.Fatal("a connection survived the cut")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := roundTrip(t, c2, bufio.NewReader(c2), "during cut"); err == nil {
			t.Fatal("a new connection was forwarded while cut")
		}
		c2.Close()
	}

	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(t, c3, bufio.NewReader(c3), "again"); err != nil || got != "again\n" {
		t.Fatalf("after restore: %q, %v", got, err)
	}
}
