package media

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// testPool returns a pool in a range the OS does not hand out as ephemeral
// ports; NewSession skips any port that is taken anyway.
func testPool(t *testing.T) *PortPool {
	t.Helper()
	return closedAtEnd(t, 8000, 8998)
}

// closedAtEnd returns a pool of [min, max] that is closed when the test
// ends, after its sessions (cleanups run last-registered first), so that
// no socket it parked holds a port for the next test, or for a node of
// another test binary over the same range.
func closedAtEnd(t *testing.T, min, max int) *PortPool {
	t.Helper()
	p, err := NewPortPool(min, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestSession(t *testing.T, pool *PortPool) *Session {
	t.Helper()
	s, err := NewSession("127.0.0.1", pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// peer is a plain UDP socket standing in for a phone or carrier.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) addr() *net.UDPAddr { return p.conn.LocalAddr().(*net.UDPAddr) }

func (p *peer) sendTo(s *Session, b []byte) {
	p.t.Helper()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(s.LocalPort()))
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) recv() []byte {
	p.t.Helper()
	buf := make([]byte, 2048)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.conn.Read(buf)
	if err != nil {
		p.t.Fatalf("peer %v: no packet: %v", p.addr(), err)
	}
	return buf[:n]
}

func (p *peer) recvRTP() *rtp.Packet {
	p.t.Helper()
	var pkt rtp.Packet
	if err := pkt.Unmarshal(p.recv()); err != nil {
		p.t.Fatal(err)
	}
	return &pkt
}

func rtpPacket(t *testing.T, h rtp.Header, payload []byte) []byte {
	t.Helper()
	h.Version = 2
	b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSessionCloseReturnsPortAndUnblocksReader(t *testing.T) {
	pool := testPool(t)
	s, err := NewSession("127.0.0.1", pool)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.LocalPort(); p < 8000 || p > 8998 || p%2 != 0 {
		t.Fatalf("LocalPort = %d, want an even port of the pool", p)
	}
	if pool.InUse() != 1 {
		t.Fatalf("InUse = %d, want 1", pool.InUse())
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := s.ReadPacket(make([]byte, 1500))
		readErr <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadPacket after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPacket still blocked after Close")
	}
	if pool.InUse() != 0 {
		t.Fatalf("InUse after Close = %d, want 0", pool.InUse())
	}
}

func TestSessionSkipsPortTakenByAnotherProcess(t *testing.T) {
	// Find an even port that is free now, then occupy it.
	var taken *net.UDPConn
	for taken == nil {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if c.LocalAddr().(*net.UDPAddr).Port%2 == 0 && c.LocalAddr().(*net.UDPAddr).Port < 65000 {
			taken = c
		} else {
			c.Close()
		}
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).Port
	pool := closedAtEnd(t, port, port+10)
	s, err := NewSession("127.0.0.1", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.LocalPort() == port {
		t.Fatalf("session bound the taken port %d", port)
	}
	if pool.InUse() != 1 {
		t.Fatalf("InUse = %d, want 1 (the failed port must go back)", pool.InUse())
	}
}

func TestSessionPoolExhausted(t *testing.T) {
	pool := closedAtEnd(t, 9000, 9000)
	s := newTestSession(t, pool)
	if _, err := NewSession("127.0.0.1", pool); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second NewSession on a one-port pool: %v, want ErrNoPorts", err)
	}
	s.Close()
	s2 := newTestSession(t, pool)
	if s2.LocalPort() != 9000 {
		t.Fatalf("LocalPort = %d, want 9000", s2.LocalPort())
	}
}

func TestSessionWriteWithoutRemoteIsNoop(t *testing.T) {
	s := newTestSession(t, testPool(t))
	if err := s.WritePacket(make([]byte, 172)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PacketsOut != 0 {
		t.Fatalf("PacketsOut = %d, want 0", st.PacketsOut)
	}
}

func TestSessionSymmetricRTPLatch(t *testing.T) {
	s := newTestSession(t, testPool(t))
	real, stray := newPeer(t), newPeer(t)
	sdpAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} // nobody listens: NAT changed the port
	s.SetRemote(sdpAddr)
	if got := s.Remote(); got.String() != sdpAddr.String() {
		t.Fatalf("Remote = %v, want %v", got, sdpAddr)
	}

	buf := make([]byte, 1500)
	real.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 1}, []byte{1}))
	if _, err := s.ReadPacket(buf); err != nil {
		t.Fatal(err)
	}
	if got := s.Remote(); got.String() != real.addr().String() {
		t.Fatalf("Remote after first packet = %v, want the packet's source %v", got, real.addr())
	}

	// Once latched, another source can neither take over nor inject audio.
	stray.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 99}, []byte{9}))
	real.sendTo(s, []byte("not rtp"))
	real.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 2}, []byte{2}))
	n, err := s.ReadPacket(buf)
	if err != nil {
		t.Fatal(err)
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(buf[:n]); err != nil || pkt.SequenceNumber != 2 {
		t.Fatalf("read seq %d (%v), want 2 from the latched source", pkt.SequenceNumber, err)
	}
	if got := s.Remote(); got.String() != real.addr().String() {
		t.Fatalf("Remote = %v after a stray packet, want %v", got, real.addr())
	}
	st := s.Stats()
	if st.Dropped != 2 || st.PacketsIn != 2 {
		t.Fatalf("Stats = %+v, want 2 in and 2 dropped", st)
	}

	// A new SDP (re-INVITE) opens a new latching window.
	s.SetRemote(stray.addr())
	stray.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 3}, []byte{3}))
	if _, err := s.ReadPacket(buf); err != nil {
		t.Fatal(err)
	}
	if err := s.WritePacket(rtpPacket(t, rtp.Header{SequenceNumber: 4}, []byte{4})); err != nil {
		t.Fatal(err)
	}
	if got := stray.recvRTP(); got.SequenceNumber != 4 {
		t.Fatalf("stray peer got seq %d, want 4", got.SequenceNumber)
	}
}

func TestSessionStats(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	for i := 0; i < 3; i++ {
		p.sendTo(s, rtpPacket(t, rtp.Header{}, make([]byte, 160)))
	}
	buf := make([]byte, 1500)
	for i := 0; i < 3; i++ {
		if _, err := s.ReadPacket(buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := s.WritePacket(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	want := SessionStats{PacketsIn: 3, BytesIn: 3 * 172, PacketsOut: 2, BytesOut: 200}
	if got := s.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	for i := 0; i < 2; i++ {
		if got := p.recv(); len(got) != 100 {
			t.Fatalf("peer got %d bytes, want 100", len(got))
		}
	}
}
