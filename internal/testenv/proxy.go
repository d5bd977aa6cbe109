package testenv

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of a server (PostgreSQL, NATS),
// for faults and distances a single machine does not have: it adds a fixed
// delay to each direction (a cross-zone round trip) and can fail the network
// in three ways until Restore: Cut (every connection closed, new ones
// refused), BlackHole (nothing gets through, nothing is closed) and Slow.
//
// The delay is latency, not a bandwidth limit: bytes read at time t are
// written at t+delay, whatever else is queued, as a long link behaves.
type Proxy struct {
	target string
	delay  time.Duration
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
	// holed is closed when a BlackHole ends; nil while none is on.
	holed chan struct{}
	// slow is the pause before each chunk is forwarded while Slow is on.
	slow time.Duration
}

// StartProxy listens on a free loopback port and forwards every connection to
// target (host:port), delaying each direction by delay (0 for none).
func StartProxy(target string, delay time.Duration) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: listen: %w", target, err)
	}
	p := &Proxy{target: target, delay: delay, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's listen port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Cut closes every open connection and refuses new ones (accepted and closed
// at once) until Restore: what a client sees when the network between it and
// the server fails.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.endBlackHole()
	for c := range p.conns {
		c.Close()
	}
}

// BlackHole stops forwarding until Restore without closing anything: open
// connections stay open and carry no byte either way, new ones are accepted
// and get no answer. That is what the two ends see when packets are dropped
// between them: no reset, no error, only silence until a timeout of their
// own fires. The bytes already read are held, not lost, and flow on Restore,
// as TCP retransmits them once a partition heals.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holed == nil {
		p.holed = make(chan struct{})
	}
}

// Slow makes every chunk of bytes wait pause before it is forwarded, in each
// direction, until Restore: a congested or lossy link, slow enough for
// clients' timeouts to fire, that still delivers everything in order.
func (p *Proxy) Slow(pause time.Duration) {
	p.mu.Lock()
	p.slow = pause
	p.mu.Unlock()
}

// Restore ends a Cut, BlackHole or Slow: new connections are forwarded
// again, and held bytes flow.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.slow = 0
	p.endBlackHole()
	p.mu.Unlock()
}

// endBlackHole releases what a BlackHole holds; p.mu is held.
func (p *Proxy) endBlackHole() {
	if p.holed != nil {
		close(p.holed)
		p.holed = nil
	}
}

// gate waits while the proxy is black-holed and for the Slow pause, before
// a chunk is forwarded.
func (p *Proxy) gate() {
	for {
		p.mu.Lock()
		holed, slow := p.holed, p.slow
		p.mu.Unlock()
		if holed != nil {
			<-holed
			continue
		}
		if slow > 0 {
			time.Sleep(slow)
		}
		return
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
	p.Cut()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(client)
		}()
	}
}

// track registers c for Cut; false when the network is cut or the proxy
// closed, and c must be dropped.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.done {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	p.gate() // a black hole answers no new connection either
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server) {
		if server != nil {
			server.Close()
		}
		return
	}
	defer p.untrack(server)
	setNoDelay(client)
	setNoDelay(server)
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); p.pump(server, client) }()
	go func() { defer pumps.Done(); p.pump(client, server) }()
	pumps.Wait()
}

// chunk is bytes read from one side, due on the other side at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pump copies src to dst, each chunk delayed by p.delay from when it was
// read. A reader and a writer goroutine share a queue so that the delay does
// not slow the copy down. When either side ends, both connections close, so
// the other direction ends too. Each chunk passes the gate after it is read,
// so a BlackHole or Slow holds it (and, the reader waiting, what follows).
func (p *Proxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	if p.delay <= 0 {
		_, _ = io.Copy(dst, gatedReader{p, src})
		return
	}
	queue := make(chan chunk, 1024)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range queue {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range queue {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
			queue <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay)}
		}
		if err != nil {
			close(queue)
			<-writerDone
			return
		}
	}
}

// gatedReader is src as pump reads it without a delay: every chunk read
// passes the proxy's gate. Hiding the connection's WriterTo makes io.Copy
// read chunk by chunk instead of splicing in the kernel, where no gate is.
type gatedReader struct {
	p   *Proxy
	src net.Conn
}

func (r gatedReader) Read(b []byte) (int, error) {
	n, err := r.src.Read(b)
	if n > 0 {
		r.p.gate()
	}
	return n, err
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}
