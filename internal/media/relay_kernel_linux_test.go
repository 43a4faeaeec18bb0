package media

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"

	"redial/internal/media/kfwd"
	"redial/internal/testenv"
)

// kernelPool is a pool whose relays forward in the kernel, through a
// forwarder attached to lo only.
func kernelPool(t *testing.T) (*PortPool, *kfwd.Forwarder) {
	t.Helper()
	pool := closedAtEnd(t, 7000, 7498)
	f, err := kfwd.New(kfwd.Config{Interfaces: []string{"lo"}})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("in-kernel forwarding unavailable: %v", err)
		}
		t.Skipf("in-kernel forwarding unavailable (needs CAP_BPF and CAP_NET_ADMIN): %v", err)
	}
	pool.SetKernelForwarder(f)
	t.Cleanup(func() { f.Close() })
	return pool, f
}

// kernelRules counts the rules installed for a's and b's latched peers.
func kernelRules(f *kfwd.Forwarder, a, b *Session) int {
	n := 0
	for _, s := range []*Session{a, b} {
		if st := s.remote.Load(); st != nil {
			if _, ok := f.Counters(uint16(s.LocalPort()), st.ap); ok {
				n++
			}
		}
	}
	return n
}

// exchange sends one packet from p to s and returns what arrives at to,
// checking it came from the relay's other session from.
func exchange(t *testing.T, p *peer, s *Session, to *peer, from *Session, pkt []byte) []byte {
	t.Helper()
	p.sendTo(s, pkt)
	buf := make([]byte, 2048)
	to.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, src, err := to.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer %v: no packet: %v", to.addr(), err)
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(from.LocalPort())); src != want {
		t.Fatalf("packet came from %v, want %v (the relay's session)", src, want)
	}
	return buf[:n]
}

func TestRelayForwardsInKernelOnceSettled(t *testing.T) {
	pool, f := kernelPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1, p2, p3 := newPeer(t), newPeer(t), newPeer(t)
	for _, s := range []*Session{a, b} {
		s.SetCodec(PCMU)
		s.SetDTMF(&TelephoneEvent)
	}
	a.SetRemote(p1.addr())
	b.SetRemote(p2.addr())
	run := StartRelay(context.Background(), a, b, nil)

	var seq uint16
	pkt := func() []byte {
		seq++
		return rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0xC0DE}, bytes.Repeat([]byte{byte(seq)}, 160))
	}
	var aToB, bToA uint64
	both := func(from1, to2 *peer, n int) {
		for range n {
			out := pkt()
			if got := exchange(t, from1, a, to2, b, out); !bytes.Equal(got, out) {
				t.Fatalf("a->b changed the packet:\n got %x\nwant %x", got, out)
			}
			aToB++
			back := pkt()
			if got := exchange(t, to2, b, from1, a, back); !bytes.Equal(got, back) {
				t.Fatalf("b->a changed the packet:\n got %x\nwant %x", got, back)
			}
			bToA++
		}
	}
	// settles waits for both rules after one packet each way: the answer
	// latches its sender and so settles both directions, and the next
	// packet of either goes through the kernel.
	settles := func() {
		t.Helper()
		testenv.WaitFor(t, 5*time.Second, func() error {
			if k := kernelRules(f, a, b); k != 2 {
				return fmt.Errorf("%d kernel rules installed after one packet each way, want 2", k)
			}
			return nil
		})
	}
	// The first packets latch both remotes in userspace; from then on
	// the kernel forwards.
	both(p1, p2, 1)
	settles()
	both(p1, p2, 49)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := a.Stats(); st.PacketsIn != aToB || st.PacketsOut != bToA {
			return fmt.Errorf("a's stats %+v, want %d in, %d out", st, aToB, bToA)
		}
		return nil
	})
	k := kernelRules(f, a, b)
	if k != 2 {
		t.Fatalf("%d kernel rules installed after both remotes latched, want 2", k)
	}

	// A re-INVITE moves b's peer: the rules go, the relay sends to the
	// new address at once, and the kernel takes over again once p3 is
	// latched.
	b.SetRemote(p3.addr())
	if k := kernelRules(f, a, b); k != 0 {
		t.Fatalf("%d kernel rules left after SetRemote, want 0", k)
	}
	both(p1, p3, 1)
	settles()
	both(p1, p3, 19)
	// A stray sender is not forwarded by the kernel either.
	stray := newPeer(t)
	stray.sendTo(a, pkt())
	testenv.WaitFor(t, 5*time.Second, func() error {
		if d := a.Stats().Dropped; d != 1 {
			return fmt.Errorf("a dropped %d packets, want the stray one", d)
		}
		return nil
	})

	run.Stop()
	st := run.Wait()
	if st.AtoB != aToB || st.BtoA != bToA {
		t.Fatalf("RelayStats = %+v, want %d a->b and %d b->a", st, aToB, bToA)
	}
	// Userspace forwarded the two packets that settled each peer pair.
	if got, want := pool.KernelForwarded(), aToB+bToA-4; got != want {
		t.Fatalf("kernel forwarded %d of %d packets, want %d: all but the four that settled the remotes", got, aToB+bToA, want)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.PacketsIn != aToB || sb.PacketsOut != aToB || sb.PacketsIn != bToA || sa.PacketsOut != bToA {
		t.Fatalf("session stats a %+v, b %+v; want %d a->b, %d b->a", sa, sb, aToB, bToA)
	}
	// The sockets are the sessions' again: a packet to a reaches it.
	p1.sendTo(a, pkt())
	buf := make([]byte, 2048)
	a.setReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.ReadPacket(buf); err != nil {
		t.Fatalf("session a after the relay: %v", err)
	}
}

func TestRelayTranscodingStaysInUserspace(t *testing.T) {
	pool, f := kernelPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1, p2 := newPeer(t), newPeer(t)
	a.SetCodec(PCMU)
	b.SetCodec(PCMA)
	a.SetRemote(p1.addr())
	b.SetRemote(p2.addr())
	run := StartRelay(context.Background(), a, b, nil)
	for i := range 20 {
		out := rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: uint16(i), SSRC: 1}, bytes.Repeat([]byte{0xFF}, 160))
		got := exchange(t, p1, a, p2, b, out)
		if got[1]&0x7f != PCMA.PT || got[rtpHeaderLen] != ulawToAlaw[0xFF] {
			t.Fatalf("packet %d not transcoded: %x", i, got[:rtpHeaderLen+1])
		}
		back := rtpPacket(t, rtp.Header{PayloadType: 8, SequenceNumber: uint16(i), SSRC: 2}, bytes.Repeat([]byte{0xD5}, 160))
		exchange(t, p2, b, p1, a, back)
	}
	if k := kernelRules(f, a, b); k != 0 {
		t.Fatalf("%d kernel rules for a transcoded call, want 0", k)
	}
	run.Stop()
	run.Wait()
	if got := pool.KernelForwarded(); got != 0 {
		t.Fatalf("kernel forwarded %d packets of a transcoded call", got)
	}
}
