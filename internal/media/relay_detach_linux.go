package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// A polled relay holds its sessions' sockets outside Go's netpoller. It
// cannot simply stop Go from watching a *net.UDPConn, but closing one makes
// Go delete its epoll registration before closing its descriptor; a
// duplicate descriptor taken first keeps the socket itself (the same open
// file, bound to the same port, with whatever is queued in it) alive, so
// no packet is lost and the port never comes free. When the relay ends the
// duplicate becomes a *net.UDPConn again (net.FilePacketConn), which Go
// registers anew, and the session reads and writes as before.
//
// Meanwhile the session's conn is a rawConn on the duplicate: writers
// (Play, DTMF into a bridged call) keep working, and Session.Close hands
// the socket back through the relay's release hook, which unregisters it
// from the shard before closing it (a descriptor closed while the shard
// might still use it could be reused by another socket meanwhile).

// errRelayed is what reading a session gets while a relay holds its socket.
var errRelayed = errors.New("media: rtp socket is held by a relay, which is its only reader")

// isUDP reports whether the session's transport is a plain UDP socket.
func (s *Session) isUDP() bool {
	s.connMu.RLock()
	defer s.connMu.RUnlock()
	_, ok := s.conn.(*net.UDPConn)
	return ok
}

// detach takes the session's socket out of Go's netpoller for a relay
// whose release hook is end, and returns the descriptor the relay now
// holds; nil when the session is closed, already relayed, not plain UDP,
// or the descriptor cannot be duplicated (the relay then runs pump).
func (s *Session) detach(end func()) *rawConn {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	uc, ok := s.conn.(*net.UDPConn)
	if !ok || s.closed.Load() || s.release != nil {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	var derr error
	if err := raw.Control(func(sfd uintptr) { fd, derr = dupCloexec(int(sfd)) }); err != nil || derr != nil {
		return nil
	}
	// O_NONBLOCK belongs to the open file, which Go already made
	// non-blocking; setting it again costs nothing and states the need.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil
	}
	c := &rawConn{fd: fd, six: isInet6(fd)}
	// No writer holds the conn (connMu) and no reader may run beside a
	// relay, so nobody sees the close.
	_ = uc.Close()
	s.conn = c
	s.release = end
	return c
}

// reattach gives the session the socket back from c after the relay has
// unregistered it: as a new *net.UDPConn, or closed when the session was
// closed meanwhile.
func (s *Session) reattach(c *rawConn) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.release = nil
	if s.closed.Load() {
		_ = c.Close()
		s.conn = closedConn{}
		return
	}
	uc, err := c.udpConn()
	if err != nil {
		// Only descriptor exhaustion gets here. The session keeps
		// sending through c; reading fails until it is closed.
		s.log.Load().Warn("media: relay: cannot give the rtp socket back; the session can no longer receive",
			"local_port", s.port, "error", err)
		return
	}
	s.conn = uc
}

// dupCloexec duplicates fd with close-on-exec set atomically, so a child
// process started meanwhile does not inherit the socket.
func dupCloexec(fd int) (int, error) {
	nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", e)
	}
	return int(nfd), nil
}

// rawConn is a session's socket while a polled relay holds it: a plain
// descriptor that Go's netpoller does not watch. Its fields are guarded by
// the session's connMu.
type rawConn struct {
	fd   int // -1 once closed or handed on
	six  bool
	file *os.File // owns fd when udpConn failed half-way; nil otherwise
}

// ReadFromUDPAddrPort fails: the relay is the socket's only reader.
func (c *rawConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, errRelayed
}

// WriteToUDPAddrPort sends one datagram without waiting for room in the
// socket buffer, as UDP may: a full buffer loses the packet.
func (c *rawConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.fd < 0 {
		return 0, net.ErrClosed
	}
	var sa syscall.Sockaddr
	a := addr.Addr()
	switch {
	case c.six:
		sa = &syscall.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16(), ZoneId: scopeID(a)}
	case a.Unmap().Is4():
		sa = &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: a.Unmap().As4()}
	default:
		return 0, fmt.Errorf("media: rtp send to %s from an IPv4 socket: %w", addr, syscall.EAFNOSUPPORT)
	}
	if err := syscall.Sendto(c.fd, b, syscall.MSG_DONTWAIT, sa); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: os.NewSyscallError("sendto", err)}
	}
	return len(b), nil
}

// SetReadDeadline does nothing: no reader waits on a rawConn.
func (c *rawConn) SetReadDeadline(time.Time) error { return nil }

// Close closes the descriptor.
func (c *rawConn) Close() error {
	if c.fd < 0 {
		return nil
	}
	fd, f := c.fd, c.file
	c.fd, c.file = -1, nil
	if f != nil {
		return f.Close()
	}
	return syscall.Close(fd)
}

// udpConn turns the descriptor into a *net.UDPConn registered with Go's
// netpoller; c no longer owns it afterwards.
func (c *rawConn) udpConn() (*net.UDPConn, error) {
	f := c.file
	if f == nil {
		f = os.NewFile(uintptr(c.fd), "rtp")
	}
	pc, err := net.FilePacketConn(f) // a duplicate of f's descriptor
	if err != nil {
		c.file = f // f owns fd now; keep it (and the socket) alive
		return nil, fmt.Errorf("media: rtp socket back to a UDP conn: %w", err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		c.file = f
		return nil, fmt.Errorf("media: rtp socket back to a UDP conn: got %T", pc)
	}
	c.fd, c.file = -1, nil
	_ = f.Close()
	return uc, nil
}

// closedConn is a closed session's conn after a relay closed its socket.
type closedConn struct{}

func (closedConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (closedConn) WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error) {
	return 0, net.ErrClosed
}

func (closedConn) SetReadDeadline(time.Time) error { return net.ErrClosed }

func (closedConn) Close() error { return nil }
