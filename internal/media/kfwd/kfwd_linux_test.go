//go:build linux

package kfwd

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLocalForwarding bridges a "phone" P (leg 1, latched on A) and a "far
// end" F (leg 2, latched on B) on lo, both ways, and then takes the rules out.
func TestLocalForwarding(t *testing.T) {
	f := newForwarder(t, Config{Interfaces: []string{"lo"}})
	if got := f.Interfaces(); len(got) != 1 || got[0] != "lo" {
		t.Fatalf("interfaces: want [lo], got %v", got)
	}
	p, pAddr := udpSock(t, "127.0.0.1")
	a, aAddr := udpSock(t, "127.0.0.1")
	b, bAddr := udpSock(t, "127.0.0.1")
	far, fAddr := udpSock(t, "127.0.0.1")
	other, otherAddr := udpSock(t, "127.0.0.1")

	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: pAddr, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(Rule{InPort: bAddr.Port(), InRemote: fAddr, OutPort: aAddr.Port(), OutRemote: pAddr}); err != nil {
		t.Fatal(err)
	}
	wantCounters(t, f, aAddr.Port(), pAddr, Counters{})

	// Leg 1 -> leg 2: F sees the packets coming from B, untouched; lengths
	// odd and even, empty included.
	var sent Counters
	for i, n := range []int{0, 1, 7, 160, 161, 1199} {
		payload := bytes.Repeat([]byte{byte('a' + i)}, n)
		send(t, p, aAddr, payload)
		expect(t, far, bAddr, payload)
		sent.Packets++
		sent.Bytes += uint64(n)
	}
	wantCounters(t, f, aAddr.Port(), pAddr, sent)
	// A got none of them, yet still gets what no rule matches.
	marker(t, a, aAddr, other, otherAddr)

	// Leg 2 -> leg 1: P sees them coming from A.
	for i := range 3 {
		payload := []byte(fmt.Sprintf("reverse %d", i))
		send(t, far, bAddr, payload)
		expect(t, p, aAddr, payload)
	}
	wantCounters(t, f, bAddr.Port(), fAddr, Counters{Packets: 3, Bytes: 3 * 9})
	marker(t, b, bAddr, other, otherAddr)

	// Remove hands back the final counts and the packets go to A again.
	got, err := f.Remove(aAddr.Port(), pAddr)
	if err != nil || got != sent {
		t.Fatalf("remove: want %+v, got %+v, %v", sent, got, err)
	}
	if _, ok := f.Counters(aAddr.Port(), pAddr); ok {
		t.Fatal("counters: rule still present after remove")
	}
	send(t, p, aAddr, []byte("after remove"))
	expect(t, a, pAddr, []byte("after remove"))
	got, err = f.Remove(aAddr.Port(), pAddr)
	if err != nil || got != (Counters{}) {
		t.Fatalf("remove missing rule: want zero counters and no error, got %+v, %v", got, err)
	}
	// The reverse rule is unaffected.
	send(t, far, bAddr, []byte("still"))
	expect(t, p, aAddr, []byte("still"))
}

// TestLocalChecksums sends packets whose UDP checksum the kernel verifies
// on receive (raw packets are not CHECKSUM_PARTIAL): F only gets them if the
// program fixed the checksum for the new addresses and ports, and a zero
// ("no checksum") one must stay zero.
func TestLocalChecksums(t *testing.T) {
	f := newForwarder(t, Config{Interfaces: []string{"lo"}})
	raw := newRawSender(t)
	_, pAddr := udpSock(t, "127.0.0.1")
	a, aAddr := udpSock(t, "127.0.0.1")
	_, bAddr := udpSock(t, "127.0.0.1")
	far, fAddr := udpSock(t, "127.0.0.1")
	other, otherAddr := udpSock(t, "127.0.0.1")
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: pAddr, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}

	// The check that this test can fail: a wrong checksum is dropped.
	bad := udpPacket(otherAddr, aAddr, []byte("bad checksum"), true)
	bad[20+6] ^= 0x5a
	raw.send(t, bad)

	var sent Counters
	for i, n := range []int{1, 3, 33, 171, 1001, 0, 2} {
		payload := bytes.Repeat([]byte{byte(0x31 + i)}, n)
		withCsum := i != 5
		raw.send(t, udpPacket(pAddr, aAddr, payload, withCsum))
		expect(t, far, bAddr, payload)
		sent.Packets++
		sent.Bytes += uint64(n)
	}
	wantCounters(t, f, aAddr.Port(), pAddr, sent)
	// A got neither the forwarded packets nor the corrupt one.
	marker(t, a, aAddr, other, otherAddr)
}

// TestBadPacketsLeftAlone sends what the program must not touch even though
// the ports and addresses match a rule: they reach A (or nobody), never F,
// and are not counted.
func TestBadPacketsLeftAlone(t *testing.T) {
	f := newForwarder(t, Config{Interfaces: []string{"lo"}})
	raw := newRawSender(t)
	p, pAddr := udpSock(t, "127.0.0.1")
	a, aAddr := udpSock(t, "127.0.0.1")
	_, bAddr := udpSock(t, "127.0.0.1")
	far, fAddr := udpSock(t, "127.0.0.1")
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: pAddr, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}
	lo := pAddr.Addr()

	// IP options NOP, NOP, end, padding 42. A program that ignored the
	// header length would read them as UDP ports 257 -> 42: a decoy rule
	// for exactly that must not count anything, and the stack delivers the
	// packet to A.
	decoy := netip.AddrPortFrom(lo, 0x0101)
	if err := f.Add(Rule{InPort: 42, InRemote: decoy, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}
	withOpts := ipPacket{src: lo, dst: lo, proto: unix.IPPROTO_UDP, options: []byte{1, 1, 0, 42},
		payload: udpDatagram(pAddr, aAddr, []byte("with options"), true)}
	raw.send(t, withOpts.bytes())
	expect(t, a, pAddr, []byte("with options"))
	wantCounters(t, f, 42, decoy, Counters{})

	// Two fragments; the first carries the matching UDP header. Reassembled
	// after tc ingress, the datagram reaches A.
	payload := bytes.Repeat([]byte("fragment"), 5) // 8 + 40 bytes of UDP
	dgram := udpDatagram(pAddr, aAddr, payload, true)
	const mf = 0x2000
	raw.send(t, ipPacket{src: lo, dst: lo, proto: unix.IPPROTO_UDP, id: 0x4b46, frag: mf, payload: dgram[:24]}.bytes())
	raw.send(t, ipPacket{src: lo, dst: lo, proto: unix.IPPROTO_UDP, id: 0x4b46, frag: 24 / 8, payload: dgram[24:]}.bytes())
	expect(t, a, pAddr, payload)

	// Not UDP: protocol 253 (experimental) with a UDP-looking header. A raw
	// socket for it sees the packet as sent.
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 253)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatal(err)
	}
	notUDP := ipPacket{src: lo, dst: lo, proto: 253, payload: udpDatagram(pAddr, aAddr, []byte("proto 253"), true)}.bytes()
	raw.send(t, notUDP)
	for {
		buf := make([]byte, 2048)
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			t.Fatalf("protocol 253 packet not received: %v", err)
		}
		// Compare everything after the IP checksum (the kernel fills in id
		// and checksum).
		if n == len(notUDP) && bytes.Equal(buf[12:n], notUDP[12:]) {
			break
		}
	}

	// Too short for an UDP header, and a UDP length below 8: nobody gets
	// these, the point is that they are not forwarded.
	raw.send(t, ipPacket{src: lo, dst: lo, proto: unix.IPPROTO_UDP, payload: udpDatagram(pAddr, aAddr, nil, false)[:6]}.bytes())
	short := udpDatagram(pAddr, aAddr, []byte("len 4"), false)
	short[5] = 4
	raw.send(t, ipPacket{src: lo, dst: lo, proto: unix.IPPROTO_UDP, payload: short}.bytes())

	wantCounters(t, f, aAddr.Port(), pAddr, Counters{})
	// Everything so far went ahead of this one: F's first packet is it.
	send(t, p, aAddr, []byte("good"))
	expect(t, far, bAddr, []byte("good"))
	wantCounters(t, f, aAddr.Port(), pAddr, Counters{Packets: 1, Bytes: 4})
}

// TestTwoForwarders attaches two Forwarders to lo at once, as two redial
// nodes in one host would: each forwards its own rules and passes the rest
// on (TCX_NEXT), and closing one leaves the other working.
func TestTwoForwarders(t *testing.T) {
	f1 := newForwarder(t, Config{Interfaces: []string{"lo"}})
	f2 := newForwarder(t, Config{Interfaces: []string{"lo"}})
	p1, p1Addr := udpSock(t, "127.0.0.1")
	a1, a1Addr := udpSock(t, "127.0.0.1")
	_, b1Addr := udpSock(t, "127.0.0.1")
	far1, f1Addr := udpSock(t, "127.0.0.1")
	p2, p2Addr := udpSock(t, "127.0.0.1")
	_, a2Addr := udpSock(t, "127.0.0.1")
	_, b2Addr := udpSock(t, "127.0.0.1")
	far2, f2Addr := udpSock(t, "127.0.0.1")
	if err := f1.Add(Rule{InPort: a1Addr.Port(), InRemote: p1Addr, OutPort: b1Addr.Port(), OutRemote: f1Addr}); err != nil {
		t.Fatal(err)
	}
	if err := f2.Add(Rule{InPort: a2Addr.Port(), InRemote: p2Addr, OutPort: b2Addr.Port(), OutRemote: f2Addr}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := []byte(fmt.Sprintf("node %d", i))
		send(t, p1, a1Addr, m)
		send(t, p2, a2Addr, m)
		expect(t, far1, b1Addr, m)
		expect(t, far2, b2Addr, m)
	}
	wantCounters(t, f1, a1Addr.Port(), p1Addr, Counters{Packets: 5, Bytes: 30})
	wantCounters(t, f2, a2Addr.Port(), p2Addr, Counters{Packets: 5, Bytes: 30})
	if _, ok := f1.Counters(a2Addr.Port(), p2Addr); ok {
		t.Fatal("f1 has f2's rule")
	}

	// Close detaches f1 (idempotently): its packets reach A1 again, f2 goes on.
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f1.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if f1.Interfaces() != nil {
		t.Fatalf("interfaces after close: %v", f1.Interfaces())
	}
	if err := f1.Add(Rule{InPort: 1, InRemote: p1Addr, OutPort: 2, OutRemote: f1Addr}); err == nil {
		t.Fatal("add after close: want error")
	}
	send(t, p1, a1Addr, []byte("after close"))
	expect(t, a1, p1Addr, []byte("after close"))
	send(t, p2, a2Addr, []byte("f2 still"))
	expect(t, far2, b2Addr, []byte("f2 still"))
}

// TestRuleValidation covers what Add, Remove and New refuse.
func TestRuleValidation(t *testing.T) {
	f := newForwarder(t, Config{Interfaces: []string{"lo"}, MaxRules: 2})
	v4 := netip.MustParseAddrPort("127.0.0.1:4000")
	v6 := netip.MustParseAddrPort("[::1]:4000")
	for _, r := range []Rule{
		{InPort: 1000, InRemote: v6, OutPort: 1002, OutRemote: v4},
		{InPort: 1000, InRemote: v4, OutPort: 1002, OutRemote: v6},
		{InPort: 0, InRemote: v4, OutPort: 1002, OutRemote: v4},
	} {
		if err := f.Add(r); err == nil {
			t.Errorf("add %+v: want error", r)
		}
	}
	if _, err := f.Remove(1000, v6); err == nil {
		t.Error("remove IPv6: want error")
	}
	// An IPv4-mapped address is the IPv4 one.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), 4000)
	if err := f.Add(Rule{InPort: 1000, InRemote: mapped, OutPort: 1002, OutRemote: v4}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Counters(1000, v4); !ok {
		t.Fatal("rule added with a mapped address not found by its IPv4 form")
	}
	// MaxRules bounds the map; replacing an existing rule still works.
	if err := f.Add(Rule{InPort: 1001, InRemote: v4, OutPort: 1002, OutRemote: v4}); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(Rule{InPort: 1003, InRemote: v4, OutPort: 1002, OutRemote: v4}); err == nil {
		t.Fatal("third rule in a map of 2: want error")
	}
	if err := f.Add(Rule{InPort: 1001, InRemote: v4, OutPort: 1004, OutRemote: v4}); err != nil {
		t.Fatalf("replace: %v", err)
	}

	_, err := New(Config{Interfaces: []string{"lo", "kfwd-nosuch0"}})
	if err == nil || !strings.Contains(err.Error(), "kfwd-nosuch0") {
		t.Fatalf("new on a missing interface: want an error naming it, got %v", err)
	}
}
