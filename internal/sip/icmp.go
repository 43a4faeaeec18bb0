package sip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
)

// ICMP errors on the UDP listener.
//
// Linux tells an unconnected UDP socket about ICMP errors only with
// IP_RECVERR (IPV6_RECVERR) set: the error is queued on the socket's error
// queue, carrying the original destination and the start of the datagram
// that caused it, and the socket's pending error makes the next recvfrom
// (or sendto) fail once with ECONNREFUSED, EHOSTUNREACH and the like.
// guardedPacketConn reads the queue whenever that happens, and each
// "unreachable" ends the INVITE it was about at once, as a 503, so the
// call fails over to its next line instead of holding the channel for
// Timer B (32 s).

// setRecvErr turns on IP_RECVERR and IPV6_RECVERR on a UDP socket; it
// reports whether either took (an IPv4 socket refuses the IPv6 one, and a
// dual-stack IPv6 socket gets IPv4 errors through IP_RECVERR).
func setRecvErr(fd int) bool {
	v4 := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_RECVERR, 1) == nil
	v6 := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR, 1) == nil
	return v4 || v6
}

// icmpEvent is one entry of the socket's error queue.
type icmpEvent struct {
	// dest is where the datagram that failed was going.
	dest netip.AddrPort
	// offender sent the ICMP error (the destination itself, or a router).
	offender netip.Addr
	// reason names the error, e.g. "ICMP port unreachable".
	reason string
	// payload is the start of the datagram that failed, as quoted by the
	// ICMP error (Linux quotes up to 520 bytes of UDP payload; some
	// routers none).
	payload []byte
}

// isICMPErrno reports whether a socket call failed with an error that an
// ICMP message leaves pending on a UDP socket.
func isICMPErrno(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	// The errnos of icmp_err_convert (net/ipv4/icmp.c) and its IPv6
	// counterpart; EMSGSIZE is "fragmentation needed".
	case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN,
		syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EMSGSIZE:
		return true
	}
	return false
}

// readErrQueue drains the socket's error queue (at most 64 entries a call)
// without blocking and returns the unreachable errors in it; other entries
// (fragmentation needed, local errors) are dropped.
func readErrQueue(rc syscall.RawConn) []icmpEvent {
	var out []icmpEvent
	buf := make([]byte, 2048)
	oob := make([]byte, 512)
	rc.Control(func(fd uintptr) {
		for i := 0; i < 64; i++ {
			n, oobn, _, from, err := syscall.Recvmsg(int(fd), buf, oob, syscall.MSG_ERRQUEUE|syscall.MSG_DONTWAIT)
			if err != nil {
				return // EAGAIN: empty
			}
			if ev, ok := parseErrQueue(buf[:n], oob[:oobn], from); ok {
				out = append(out, ev)
			}
		}
	})
	return out
}

// Origins of struct sock_extended_err (linux/errqueue.h).
const (
	eeOriginICMP  = 2
	eeOriginICMP6 = 3
)

// parseErrQueue reads one error queue entry: the control message holds a
// struct sock_extended_err { u32 errno; u8 origin, type, code, pad; u32
// info, data; } followed by the offender's sockaddr; from is the
// original destination.
func parseErrQueue(payload, oob []byte, from syscall.Sockaddr) (icmpEvent, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return icmpEvent{}, false
	}
	for _, m := range msgs {
		v4 := m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_RECVERR
		v6 := m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_RECVERR
		if !v4 && !v6 || len(m.Data) < 16 {
			continue
		}
		d := m.Data
		reason := unreachableReason(d[4], d[5], d[6])
		if reason == "" {
			continue
		}
		ev := icmpEvent{dest: sockaddrAddrPort(from), reason: reason, payload: append([]byte(nil), payload...)}
		if len(d) >= 16+8 {
			switch binary.NativeEndian.Uint16(d[16:18]) {
			case syscall.AF_INET:
				ev.offender = netip.AddrFrom4([4]byte(d[20:24]))
			case syscall.AF_INET6:
				if len(d) >= 16+24 {
					ev.offender = netip.AddrFrom16([16]byte(d[24:40])).Unmap()
				}
			}
		}
		return ev, true
	}
	return icmpEvent{}, false
}

// unreachableReason names an ICMP "destination unreachable" that means
// nobody will answer there; "" for anything else (notably fragmentation
// needed and packet too big, which are path MTU discovery).
func unreachableReason(origin, typ, code byte) string {
	switch {
	case origin == eeOriginICMP && typ == 3:
		switch code {
		case 0:
			return "ICMP network unreachable"
		case 1:
			return "ICMP host unreachable"
		case 2:
			return "ICMP protocol unreachable"
		case 3:
			return "ICMP port unreachable"
		case 9, 10, 13:
			return "ICMP administratively prohibited"
		}
	case origin == eeOriginICMP6 && typ == 1:
		switch code {
		case 0:
			return "ICMPv6 no route to destination"
		case 1:
			return "ICMPv6 administratively prohibited"
		case 3:
			return "ICMPv6 address unreachable"
		case 4:
			return "ICMPv6 port unreachable"
		}
	}
	return ""
}

func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// quotedCallID finds the Call-ID in the quoted start of a datagram; ""
// when the quote stops before the Call-ID line is complete.
func quotedCallID(payload []byte) string {
	for len(payload) > 0 {
		i := bytes.Index(payload, []byte("\r\n"))
		if i < 0 {
			return "" // cut inside this line
		}
		line := payload[:i]
		payload = payload[i+2:]
		if len(line) == 0 {
			return "" // end of headers
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if strings.EqualFold(name, "Call-ID") || strings.EqualFold(name, "i") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// pendingInvite is an INVITE sent over UDP that has had no response yet.
type pendingInvite struct {
	callID string
	// dest is the destination when the target is an IP address; zero for
	// a host name (then only the quoted Call-ID can match).
	dest netip.AddrPort
	// fail ends the INVITE with the reason; it must not block.
	fail func(reason string)
}

// icmpWatch maps ICMP errors to the INVITEs in flight.
type icmpWatch struct {
	mu       sync.Mutex
	byCallID map[string]*pendingInvite
}

func newICMPWatch() *icmpWatch { return &icmpWatch{byCallID: map[string]*pendingInvite{}} }

// add watches p until the returned func is called.
func (w *icmpWatch) add(p *pendingInvite) (remove func()) {
	w.mu.Lock()
	w.byCallID[p.callID] = p
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		if w.byCallID[p.callID] == p {
			delete(w.byCallID, p.callID)
		}
		w.mu.Unlock()
	}
}

// unreachable ends the INVITEs ev is about and returns how many. The
// Call-ID quoted in the error picks the INVITE (a spoofed ICMP would have
// to guess it); only when the quote is too short to hold one (routers may
// quote 8 bytes) are all INVITEs to the destination taken.
func (w *icmpWatch) unreachable(ev icmpEvent) int {
	callID := quotedCallID(ev.payload)
	var hit []*pendingInvite
	w.mu.Lock()
	if callID != "" {
		if p := w.byCallID[callID]; p != nil {
			hit = append(hit, p)
		}
	} else if ev.dest.IsValid() && len(ev.payload) < 64 {
		for _, p := range w.byCallID {
			if p.dest == ev.dest {
				hit = append(hit, p)
			}
		}
	}
	w.mu.Unlock()
	for _, p := range hit {
		p.fail(fmt.Sprintf("%s from %s (destination %s)", ev.reason, ev.offender, ev.dest))
	}
	return len(hit)
}
