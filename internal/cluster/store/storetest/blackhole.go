package storetest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to one address until Blackhole, after
// which it behaves like a host whose power was pulled: connections stay
// open but nothing comes back (no FIN, no RST), and new ones are accepted
// and never answered. An in-process etcd member that is merely closed
// resets its connections, which clients notice at once; a dead machine does
// not.
type Proxy struct {
	URL string // http://127.0.0.1:PORT

	l      net.Listener
	target string
	mu     sync.Mutex
	dead   bool
	conns  []net.Conn // every connection, closed by Close
	ups    []net.Conn // connections to target, closed by Blackhole
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to the host:port of target (an http:// URL) and
// closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u := loopbackURL(t)
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: u.String(), l: l, target: hostPort(target), conns: []net.Conn{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// NewProxies starts a proxy to each endpoint, returning them and their URLs.
func NewProxies(t testing.TB, endpoints []string) ([]*Proxy, []string) {
	var ps []*Proxy
	var urls []string
	for _, e := range endpoints {
		p := NewProxy(t, e)
		ps, urls = append(ps, p), append(urls, p.URL)
	}
	return ps, urls
}

func hostPort(u string) string {
	u = strings.TrimPrefix(u, "http://")
	return strings.TrimPrefix(u, "https://")
}

// Blackhole makes the proxied host silent from now on. Its side of the
// connections is closed, so that it can be stopped (the server of a dead
// machine hears nothing more either).
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = true
	for _, c := range p.ups {
		c.Close()
	}
}

func (p *Proxy) isDead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// keep records c so that Close closes it; false once the proxy is closed,
// or for a connection to target once it is dead.
func (p *Proxy) keep(c net.Conn, up bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil || up && p.dead {
		return false
	}
	p.conns = append(p.conns, c)
	if up {
		p.ups = append(p.ups, c)
	}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.keep(c, false) {
			c.Close()
			return
		}
		if p.isDead() {
			continue // held open, never answered
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.keep(up, true) {
			up.Close() // c is held open, or closed by Close
			continue
		}
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst until either fails. Once the proxy is dead it
// swallows what src sends and never closes dst: the other side hears
// nothing, as from a machine without power.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.isDead() {
			if err != nil {
				return
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil && !p.isDead() {
				src.Close()
				return
			}
		}
		if err != nil {
			if !p.isDead() {
				dst.Close()
			}
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.l.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
