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

// A black hole holds every byte on open and new connections without closing
// them; Restore delivers what it held, in order. Slow delays each chunk.
func TestProxyBlackHoleHoldsAndSlowDelays(t *testing.T) {
	p, err := StartProxy(echoServer(t), 0)
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
	if got, err := roundTrip(t, c, r, "before"); err != nil || got != "before\n" {
		t.Fatalf("before the black hole: %q, %v", got, err)
	}

	p.BlackHole()
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("a new connection was refused in a black hole: %v", err)
	}
	defer c2.Close()
	for _, conn := range []net.Conn{c, c2} {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Write([]byte("held\n")); err != nil {
			t.Fatal(err)
		}
	}
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("an answer came through the black hole: %q", line)
	}
	r2 := bufio.NewReader(c2)
	if line, err := r2.ReadString('\n'); err == nil {
		t.Fatalf("a new connection was answered in the black hole: %q", line)
	}

	p.Restore()
	for _, rd := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c, bufio.NewReader(c)}, {c2, r2}} {
		_ = rd.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := rd.r.ReadString('\n'); err != nil || got != "held\n" {
			t.Fatalf("after restore, the held line: %q, %v", got, err)
		}
	}

	const pause = 50 * time.Millisecond
	p.Slow(pause)
	start := time.Now()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := roundTrip(t, c2, r2, "slow"); err != nil || got != "slow\n" {
		t.Fatalf("slow round trip: %q, %v", got, err)
	}
	if took := time.Since(start); took < 2*pause {
		t.Fatalf("slow round trip took %v, want at least %v", took, 2*pause)
	}
}
