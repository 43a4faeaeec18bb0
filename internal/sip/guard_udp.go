package sip

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// maxDatagram holds any UDP datagram, so the guard always sees a message
// whole and knows its true size (sipgo's buffer would cut it silently).
const maxDatagram = 65536

// guardedPacketConn is the UDP listener as sipgo sees it: ReadFrom passes
// on only what the guard lets through, answers or drops the rest, and
// reads the socket's ICMP errors; WriteTo absorbs an ICMP error left
// pending by an earlier datagram.
type guardedPacketConn struct {
	net.PacketConn
	g *guard
	// raw reaches the socket's error queue; nil when the conn is not a
	// *net.UDPConn.
	raw syscall.RawConn
	// onICMP is told about each unreachable error.
	onICMP func(icmpEvent)
	// take, when set, may take a response off the socket before sipgo
	// sees it (Engine.takeResponse).
	take func(data []byte, from net.Addr) bool
	// buf is only used by ReadFrom, which sipgo calls from one goroutine.
	buf []byte
	// drainMu serializes error queue reads from ReadFrom and WriteTo.
	drainMu sync.Mutex
	// serving is closed at sipgo's first ReadFrom: by then sipgo has put
	// the listener in its connection pool.
	serving     chan struct{}
	servingOnce sync.Once
}

func newGuardedPacketConn(pc net.PacketConn, g *guard, onICMP func(icmpEvent)) *guardedPacketConn {
	c := &guardedPacketConn{PacketConn: pc, g: g, onICMP: onICMP, buf: make([]byte, maxDatagram), serving: make(chan struct{})}
	if sc, ok := pc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c
}

// ReadFrom returns the next datagram the guard passes. It returns an error
// only when the socket is unusable (closed): sipgo stops serving the
// listener on any read error.
func (c *guardedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.servingOnce.Do(func() { close(c.serving) })
	for {
		n, addr, err := c.PacketConn.ReadFrom(c.buf)
		if err != nil {
			if isICMPErrno(err) {
				c.drain()
				continue
			}
			return 0, addr, err
		}
		data := c.buf[:n]
		if isKeepalive(data) {
			return copy(b, data), addr, nil
		}
		v := c.g.check(data, false)
		if v.pass && c.take != nil && c.take(data, addr) {
			continue
		}
		if v.pass && n <= len(b) {
			return copy(b, data), addr, nil
		}
		if v.pass {
			v = dropped("datagram larger than the read buffer")
		}
		if resp := c.g.refuse(v, "udp", addr.String()); resp != nil {
			// Sent to the packet's source, as with rport (RFC 3581): a
			// malformed request may well have a malformed sent-by.
			c.WriteTo(resp, addr)
		}
	}
}

// WriteTo sends a datagram. With IP_RECVERR a pending ICMP error of an
// earlier datagram to anywhere fails the next send once: that error is
// read from the queue and the send retried.
func (c *guardedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err != nil && isICMPErrno(err) && c.raw != nil {
		c.drain()
		n, err = c.PacketConn.WriteTo(b, addr)
	}
	return n, err
}

// writeToAddrPort is WriteTo for an address that needs no net.Addr.
func (c *guardedPacketConn) writeToAddrPort(b []byte, to netip.AddrPort) error {
	uc, ok := c.PacketConn.(*net.UDPConn)
	if !ok {
		_, err := c.WriteTo(b, net.UDPAddrFromAddrPort(to))
		return err
	}
	_, err := uc.WriteToUDPAddrPort(b, to)
	if err != nil && isICMPErrno(err) && c.raw != nil {
		c.drain()
		_, err = uc.WriteToUDPAddrPort(b, to)
	}
	return err
}

// drain reads the ICMP errors queued on the socket and reports the
// unreachable ones.
func (c *guardedPacketConn) drain() {
	if c.raw == nil {
		return
	}
	c.drainMu.Lock()
	events := readErrQueue(c.raw)
	c.drainMu.Unlock()
	for _, ev := range events {
		if c.onICMP != nil {
			c.onICMP(ev)
		}
	}
}
