//go:build linux

package kfwd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newForwarder starts a Forwarder and closes it when the test ends. A kernel
// without eBPF/tcx fails the test: the fast path is what is under test.
func newForwarder(t *testing.T, cfg Config) *Forwarder {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("kfwd needs eBPF and tcx (Linux >= 6.6, CAP_BPF+CAP_NET_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close forwarder: %v", err)
		}
	})
	return f
}

// udpSock binds a UDP socket on ip with a kernel-chosen port.
func udpSock(t *testing.T, ip string) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatalf("listen udp %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func send(t *testing.T, from *net.UDPConn, to netip.AddrPort, payload []byte) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(payload, to); err != nil {
		t.Fatalf("send %s -> %s: %v", from.LocalAddr(), to, err)
	}
}

// expect reads the next datagram on c and requires it to come from wantFrom
// with payload want.
func expect(t *testing.T, c *net.UDPConn, wantFrom netip.AddrPort, want []byte) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("%s: want %d bytes from %s, got error: %v", c.LocalAddr(), len(want), wantFrom, err)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if from != wantFrom || !bytes.Equal(buf[:n], want) {
		t.Fatalf("%s: want %q from %s, got %q from %s", c.LocalAddr(), want, wantFrom, buf[:n], from)
	}
}

// marker proves that c received nothing else: everything sent before it that
// could reach c is already queued ahead of it on the same path.
func marker(t *testing.T, c *net.UDPConn, cAddr netip.AddrPort, from *net.UDPConn, fromAddr netip.AddrPort) {
	t.Helper()
	m := []byte(fmt.Sprintf("marker-%d", time.Now().UnixNano()))
	send(t, from, cAddr, m)
	expect(t, c, fromAddr, m)
}

func wantCounters(t *testing.T, f *Forwarder, inPort uint16, inRemote netip.AddrPort, want Counters) {
	t.Helper()
	got, ok := f.Counters(inPort, inRemote)
	if !ok || got != want {
		t.Fatalf("counters of %d<-%s: want %+v, got %+v (rule present %v)", inPort, inRemote, want, got, ok)
	}
}

// rawSender sends hand-made IPv4 packets (IP_HDRINCL). The kernel fills in
// the IP checksum but leaves the UDP checksum as given, and such packets are
// not CHECKSUM_PARTIAL, so UDP verifies the checksum on receive: a socket
// getting them proves the rewritten checksum is right.
type rawSender struct{ fd int }

func newRawSender(t *testing.T) *rawSender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSender{fd: fd}
}

func (r *rawSender) send(t *testing.T, pkt []byte) {
	t.Helper()
	var dst [4]byte
	copy(dst[:], pkt[16:20])
	if err := unix.Sendto(r.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

// ipPacket is an IPv4 packet as the raw sender wants it.
type ipPacket struct {
	src, dst netip.Addr
	proto    byte
	options  []byte // multiple of 4
	id       uint16
	frag     uint16 // flags and offset field
	payload  []byte // the L4 part
}

func (p ipPacket) bytes() []byte {
	hl := 20 + len(p.options)
	b := make([]byte, hl+len(p.payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], p.id)
	binary.BigEndian.PutUint16(b[6:], p.frag)
	b[8] = 64
	b[9] = p.proto
	s, d := p.src.As4(), p.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], p.options)
	copy(b[hl:], p.payload)
	return b
}

// udpDatagram is a UDP header and payload with a correct checksum, or a
// zero one when withCsum is false.
func udpDatagram(src, dst netip.AddrPort, payload []byte, withCsum bool) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	if withCsum {
		s, d := src.Addr().As4(), dst.Addr().As4()
		pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_UDP, b[4], b[5])
		sum := csum(append(pseudo, b...))
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(b[6:], sum)
	}
	return b
}

// csum is the Internet checksum of b.
func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpPacket is a complete raw IPv4/UDP packet from src to dst.
func udpPacket(src, dst netip.AddrPort, payload []byte, withCsum bool) []byte {
	return ipPacket{src: src.Addr(), dst: dst.Addr(), proto: unix.IPPROTO_UDP,
		payload: udpDatagram(src, dst, payload, withCsum)}.bytes()
}
