// Package kfwd is an in-kernel fast path for bridged RTP, in the spirit of
// rtpengine's kernel module: an eBPF program on tcx ingress rewrites the
// addresses and ports of a UDP packet that matches a rule and passes it on,
// so the userspace relay never sees it. Packets without a rule go up the stack
// to their socket unchanged, where the userspace relay handles them as before.
//
// Two modes exist, chosen per packet:
//
//   - local (OutRemote in 127.0.0.0/8 and the packet came in on lo): the
//     packet must have been sent to a 127/8 address; it is rewritten and
//     handed back to the stack, which delivers it to the local socket of
//     OutRemote. A packet on lo for another local address is left alone.
//   - routed (everything else): the packet is rewritten with the rule's
//     source address and sent out of the rule's interface with
//     bpf_redirect_neigh, which does the kernel's output route lookup bound
//     to that interface and resolves the next hop's MAC in the neighbour
//     table, ARP included, as for a packet this host sends itself. No
//     forwarding sysctl is needed (net.ipv4.conf.*.forwarding may stay 0).
//     The interface and source come from Forwarder.Add, which asks the
//     kernel (RTM_GETROUTE, in the namespace the Forwarder was created in)
//     how it would send UDP from OutPort to OutRemote: the output interface
//     and the route's preferred source. The source is therefore the one an
//     unbound socket would use; a relay socket bound to another local
//     address would have sent from that one.
//
// Limits of routed mode:
//
//   - The route is resolved once, when the rule is added: a route change
//     during a call (another interface, another preferred source) is not
//     followed until the rule is added again. If the kernel's lookup at
//     send time finds no route out of that interface any more, the
//     rewritten packet is dropped, not handed to userspace.
//   - A destination with no route, an unreachable, blackhole or prohibit
//     route, a local or broadcast one, or no preferred source is stored
//     without an interface: its packets go up the stack untouched and the
//     userspace relay handles them. On an ordinary host a 127/8 OutRemote
//     is local, so such packets stay with userspace unless they came in on
//     lo (local mode); only where 127/8 is routed (route_localnet, as in
//     the tests) are they forwarded.
//   - Packets that came in on lo but are not local mode (sent by this host
//     to a non-127 address) are left to userspace.
//   - There is no MTU check and no fragmentation: a packet is sent out as
//     it came in, so an egress interface with a smaller MTU than the
//     ingress one may drop packets larger than its MTU (RTP packets are far
//     smaller).
//
// Forwarded packets keep their TTL, DSCP and IP ID: the forwarder stands in
// for the relay's socket, not for a router.
package kfwd

import "net/netip"

// Rule forwards UDP packets arriving for local port InPort from InRemote
// (IPv4) as if sent from local port OutPort to OutRemote.
type Rule struct {
	InPort    uint16
	InRemote  netip.AddrPort // IPv4 only
	OutPort   uint16
	OutRemote netip.AddrPort // IPv4 only
}

// Counters are what the kernel forwarded under one rule: packets and UDP
// payload bytes (UDP length - 8).
type Counters struct{ Packets, Bytes uint64 }

// Config selects where a Forwarder attaches and how many rules it holds.
type Config struct {
	// Interfaces to attach to; empty means every interface that is up and
	// has an IPv4 address, lo included, in the calling thread's network
	// namespace.
	Interfaces []string
	MaxRules   int // map size; 0 means 16384
}

// defaultMaxRules is the map size when Config.MaxRules is 0.
const defaultMaxRules = 16384
