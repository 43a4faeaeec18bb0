package media

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

type relayRig struct {
	a, b     *Session
	p1, p2   *peer // p1 talks to a, p2 to b
	cancel   context.CancelFunc
	done     chan RelayStats
	stopOnce sync.Once
	stats    RelayStats
	t        testing.TB
}

func startRelay(t *testing.T, ca, cb Codec, da, db *Codec) *relayRig {
	t.Helper()
	pool := testPool(t)
	r := &relayRig{a: newTestSession(t, pool), b: newTestSession(t, pool), p1: newPeer(t), p2: newPeer(t), t: t}
	r.a.SetCodec(ca)
	r.b.SetCodec(cb)
	r.a.SetDTMF(da)
	r.b.SetDTMF(db)
	r.a.SetRemote(r.p1.addr())
	r.b.SetRemote(r.p2.addr())
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan RelayStats, 1)
	go func() { r.done <- Relay(ctx, r.a, r.b) }()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *relayRig) stop() RelayStats {
	r.cancel()
	r.stopOnce.Do(func() {
		select {
		case r.stats = <-r.done:
		case <-time.After(5 * time.Second):
			r.t.Fatal("Relay did not return after cancel")
		}
	})
	return r.stats
}

func TestRelaySameCodecPassesBytesUnchanged(t *testing.T) {
	r := startRelay(t, PCMU, PCMU, &TelephoneEvent, &TelephoneEvent)
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = byte(i)
	}
	out := rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: 100, Timestamp: 8000, SSRC: 0xCAFE, Marker: true}, payload)
	r.p1.sendTo(r.a, out)
	if got := r.p2.recv(); !bytes.Equal(got, out) {
		t.Fatalf("a->b changed the packet:\n got %x\nwant %x", got, out)
	}
	back := rtpPacket(t, rtp.Header{PayloadType: 101, SequenceNumber: 7, Timestamp: 1, SSRC: 0xBEEF}, []byte{5, 0x80, 0, 160})
	r.p2.sendTo(r.b, back)
	if got := r.p1.recv(); !bytes.Equal(got, back) {
		t.Fatalf("b->a changed the packet:\n got %x\nwant %x", got, back)
	}
	st := r.stop()
	if st.AtoB != 1 || st.BtoA != 1 {
		t.Fatalf("RelayStats = %+v, want 1 each way", st)
	}
}

func TestRelayTranscodesPCMUToPCMA(t *testing.T) {
	dtmfB := Codec{PT: 96, Name: "telephone-event", Rate: 8000}
	r := startRelay(t, PCMU, PCMA, &TelephoneEvent, &dtmfB)

	pcm := make([]int16, 160)
	NewTone(1000, 8000, 0).ReadFrame(pcm)
	ulaw := make([]byte, 160)
	for i, v := range pcm {
		ulaw[i] = LinearToUlaw(v)
	}
	// CSRCs and padding must survive: only the payload is transcoded.
	h := rtp.Header{PayloadType: 0, SequenceNumber: 65535, Timestamp: 4294967200, SSRC: 42, Marker: true,
		CSRC: []uint32{7, 8}, Padding: true, PaddingSize: 4}
	r.p1.sendTo(r.a, rtpPacket(t, h, ulaw))
	got := r.p2.recvRTP()
	if got.PayloadType != 8 || got.SequenceNumber != 65535 || got.Timestamp != 4294967200 || got.SSRC != 42 || !got.Marker {
		t.Fatalf("a->b header = %+v, want PT 8 with seq/ts/ssrc/marker unchanged", got.Header)
	}
	if len(got.CSRC) != 2 || got.CSRC[1] != 8 || got.PaddingSize != 4 {
		t.Fatalf("a->b lost CSRCs or padding: %+v", got.Header)
	}
	for i, b := range got.Payload {
		if b != UlawToAlaw(ulaw[i]) {
			t.Fatalf("payload[%d] = %#02x, want UlawToAlaw(%#02x) = %#02x", i, b, ulaw[i], UlawToAlaw(ulaw[i]))
		}
	}

	alaw := make([]byte, 160)
	for i, v := range pcm {
		alaw[i] = LinearToAlaw(v)
	}
	r.p2.sendTo(r.b, rtpPacket(t, rtp.Header{PayloadType: 8, SequenceNumber: 1, Timestamp: 2, SSRC: 3}, alaw))
	back := r.p1.recvRTP()
	if back.PayloadType != 0 || back.SSRC != 3 || back.SequenceNumber != 1 {
		t.Fatalf("b->a header = %+v, want PT 0", back.Header)
	}
	for i, b := range back.Payload {
		if b != AlawToUlaw(alaw[i]) {
			t.Fatalf("payload[%d] = %#02x, want %#02x", i, b, AlawToUlaw(alaw[i]))
		}
	}

	// RFC 4733 events keep their payload and get the other leg's PT.
	ev := []byte{1, 0x0a, 0x01, 0x40}
	r.p2.sendTo(r.b, rtpPacket(t, rtp.Header{PayloadType: 96, SequenceNumber: 2, Timestamp: 2, SSRC: 3}, ev))
	if got := r.p1.recvRTP(); got.PayloadType != 101 || !bytes.Equal(got.Payload, ev) {
		t.Fatalf("b->a event PT %d payload %x, want PT 101 payload %x", got.PayloadType, got.Payload, ev)
	}
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{PayloadType: 101, SequenceNumber: 3, SSRC: 42}, ev))
	if got := r.p2.recvRTP(); got.PayloadType != 96 || !bytes.Equal(got.Payload, ev) {
		t.Fatalf("a->b event PT %d payload %x, want PT 96 payload %x", got.PayloadType, got.Payload, ev)
	}
	// Payload types the relay does not know (comfort noise) pass untouched.
	cn := rtpPacket(t, rtp.Header{PayloadType: 13, SequenceNumber: 4, SSRC: 42}, []byte{40})
	r.p1.sendTo(r.a, cn)
	if got := r.p2.recv(); !bytes.Equal(got, cn) {
		t.Fatalf("comfort noise changed: %x, want %x", got, cn)
	}
}

func TestRelayLatchesToActualSource(t *testing.T) {
	r := startRelay(t, PCMU, PCMU, nil, nil)
	// The SDP of leg a named a port nobody sends from (NAT rewrote it).
	r.a.SetRemote(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{SequenceNumber: 1, SSRC: 1}, []byte{1}))
	if got := r.p2.recvRTP(); got.SequenceNumber != 1 {
		t.Fatalf("p2 got seq %d, want 1", got.SequenceNumber)
	}
	r.p2.sendTo(r.b, rtpPacket(t, rtp.Header{SequenceNumber: 2, SSRC: 2}, []byte{2}))
	if got := r.p1.recvRTP(); got.SequenceNumber != 2 {
		t.Fatalf("p1 got seq %d, want 2: media must follow the latched source", got.SequenceNumber)
	}
	if got := r.a.Remote(); got.String() != r.p1.addr().String() {
		t.Fatalf("a.Remote = %v, want %v", got, r.p1.addr())
	}
	// A third party sending to leg a is not relayed.
	newPeer(t).sendTo(r.a, rtpPacket(t, rtp.Header{SequenceNumber: 66, SSRC: 66}, []byte{6}))
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{SequenceNumber: 3, SSRC: 1}, []byte{3}))
	if got := r.p2.recvRTP(); got.SequenceNumber != 3 {
		t.Fatalf("p2 got seq %d, want 3 (the stray packet must be dropped)", got.SequenceNumber)
	}
}

func TestRelayStopsWhenSessionClosed(t *testing.T) {
	r := startRelay(t, PCMU, PCMU, nil, nil)
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{SequenceNumber: 1}, []byte{1}))
	r.p2.recv()
	r.b.Close()
	select {
	case st := <-r.done:
		if st.AtoB != 1 {
			t.Fatalf("AtoB = %d, want 1", st.AtoB)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay still running after a session was closed")
	}
	r.stopOnce.Do(func() {}) // Relay already returned; nothing left to wait for
}

func TestRelayCancelLeavesSessionsUsable(t *testing.T) {
	r := startRelay(t, PCMU, PCMU, nil, nil)
	r.stop()
	// After the relay the session reads normally again (no stale deadline).
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{SequenceNumber: 5}, []byte{5}))
	buf := make([]byte, 1500)
	n, err := r.a.ReadPacket(buf)
	if err != nil {
		t.Fatalf("ReadPacket after Relay returned: %v", err)
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(buf[:n]); err != nil || pkt.SequenceNumber != 5 {
		t.Fatalf("read seq %d (%v), want 5", pkt.SequenceNumber, err)
	}
}

func TestRelayDoesNotAllocatePerPacket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ca, cb Codec
	}{{"same", PCMU, PCMU}, {"transcode", PCMU, PCMA}} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, tc.ca, tc.cb, nil, nil)
			pkt := rtpPacket(t, rtp.Header{PayloadType: 0, SSRC: 1}, make([]byte, 160))
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(r.a.LocalPort()))
			buf := make([]byte, 2048)
			r.p2.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			step := func() {
				if _, err := r.p1.conn.WriteToUDPAddrPort(pkt, to); err != nil {
					t.Fatal(err)
				}
				if _, err := r.p2.conn.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 100; i++ { // warm up: latching allocates once
				step()
			}
			if allocs := testing.AllocsPerRun(2000, step); allocs != 0 {
				t.Fatalf("%v allocations per relayed packet, want 0", allocs)
			}
		})
	}
}

// TestRelayManyCallsKeepTheirStreamsApart runs more relays at once than
// the relay has pollers, so several share one: every packet must still
// reach its own call's far end, and nothing else.
func TestRelayManyCallsKeepTheirStreamsApart(t *testing.T) {
	const calls = 24
	rigs := make([]*relayRig, calls)
	for i := range rigs {
		rigs[i] = startRelay(t, PCMU, PCMU, nil, nil)
	}
	for round := 0; round < 3; round++ {
		for i, r := range rigs {
			r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{SSRC: uint32(1000 + i), SequenceNumber: uint16(round)}, []byte{byte(i)}))
			r.p2.sendTo(r.b, rtpPacket(t, rtp.Header{SSRC: uint32(2000 + i), SequenceNumber: uint16(round)}, []byte{byte(i)}))
		}
		for i, r := range rigs {
			for _, c := range []struct {
				p    *peer
				ssrc uint32
			}{{r.p2, uint32(1000 + i)}, {r.p1, uint32(2000 + i)}} {
				var pkt rtp.Packet
				if err := pkt.Unmarshal(c.p.recv()); err != nil {
					t.Fatal(err)
				}
				if pkt.SSRC != c.ssrc || pkt.SequenceNumber != uint16(round) {
					t.Fatalf("call %d round %d: got ssrc %d seq %d, want ssrc %d", i, round, pkt.SSRC, pkt.SequenceNumber, c.ssrc)
				}
			}
		}
	}
	for i, r := range rigs {
		if st := r.stop(); st.AtoB != 3 || st.BtoA != 3 {
			t.Fatalf("call %d: RelayStats = %+v, want 3 each way", i, st)
		}
	}
}

// TestRelayAgainAfterCancel relays the same sessions a second time, as a
// transfer that re-bridges a call does.
func TestRelayAgainAfterCancel(t *testing.T) {
	r := startRelay(t, PCMU, PCMA, nil, nil)
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: 1}, []byte{0xff}))
	r.p2.recv()
	r.stop()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan RelayStats, 1)
	go func() { done <- Relay(ctx, r.a, r.b) }()
	r.p1.sendTo(r.a, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: 2}, []byte{0xff}))
	var pkt rtp.Packet
	if err := pkt.Unmarshal(r.p2.recv()); err != nil {
		t.Fatal(err)
	}
	if pkt.SequenceNumber != 2 || pkt.PayloadType != 8 {
		t.Fatalf("second relay forwarded seq %d pt %d, want seq 2 pt 8", pkt.SequenceNumber, pkt.PayloadType)
	}
	cancel()
	select {
	case st := <-done:
		if st.AtoB != 1 {
			t.Fatalf("second relay AtoB = %d, want 1", st.AtoB)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Relay did not return after cancel")
	}
}
