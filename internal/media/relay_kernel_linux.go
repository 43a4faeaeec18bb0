package media

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"redial/internal/media/kfwd"
)

// In-kernel forwarding. Even polled, a relayed packet costs redial a
// recvfrom, a sendto and its share of an epoll_wait and of the wake-ups
// between bursts; on the bench's two cores that is more than SIPp's echo
// spends on the same packet (issue 14). Once a direction is settled (both
// remotes latched, the same payload formats on both sides, no recording)
// there is nothing left for userspace to decide per packet, so the relay
// hands that direction to the node's kfwd.Forwarder: an eBPF program on
// the interfaces' ingress rewrites the packet's addresses and ports, as
// rtpengine's kernel module does, and the socket never sees it.
//
// The kernel does not latch, transcode or record. A rule is installed only
// when none of that is needed and taken out as soon as the session's remote
// or formats change (relayHook.changed, called by SetRemote, SetCodec and
// SetDTMF); packets then reach the socket again and the polled relay judges
// them as before, and installs a rule again once the new state is settled.
// Packets from any other source than the latched remote match no rule and
// go to the socket, where the relay drops and counts them as before. What
// the kernel forwarded is added to the sessions' counters and the relay's
// stats when a rule goes.

// kernelRelay is a polled relay's in-kernel forwarding.
type kernelRelay struct {
	fwd *kfwd.Forwarder
	// mu orders installing and taking out rules, and reading their
	// counters.
	mu     sync.Mutex
	closed bool
	legs   [2]kernelLeg
}

// kernelLeg is one direction's rule.
type kernelLeg struct {
	on     atomic.Bool // a rule is installed (written under mu)
	inPort uint16
	inFrom netip.AddrPort
	// folded counts what the kernel forwarded under rules taken out.
	folded atomic.Uint64
	// The states a rule was last judged on; only the shard's goroutine
	// touches them. Nothing is tried again until one of them changes, so
	// a direction that cannot go to the kernel costs four loads a packet.
	srcRemote, dstRemote *remoteState
	srcParams, dstParams *mediaParams
}

// startKernel prepares r for in-kernel forwarding when its pool has a
// forwarder and nothing needs every packet in userspace.
func (r *pollRelay) startKernel() {
	f := r.sess[0].pool.kernel.Load()
	if f == nil || r.rec != nil {
		return
	}
	r.k = &kernelRelay{fwd: f}
	h := &relayHook{changed: r.kernelChanged, stats: r.kernelStats}
	for _, s := range r.sess {
		s.hook.Store(h)
	}
}

// kernelSettle judges both directions after l forwarded a packet. The
// packet may have latched l's source, which settles the opposite direction
// as well: waiting for that direction's next packet would leave the head of
// its next burst to userspace (a burst right after the first answer went
// mostly through userspace). The opposite direction goes first: once l's
// packets stop reaching the socket, the rule for the answers to them is in
// already.
func (r *pollRelay) kernelSettle(l *pollLeg) {
	r.kernelTry(&r.legs[1-l.side])
	r.kernelTry(l)
}

// kernelTry installs a rule for l's direction when it has become eligible.
// It runs on the shard's goroutine.
func (r *pollRelay) kernelTry(l *pollLeg) {
	k := &r.k.legs[l.side]
	if k.on.Load() {
		return
	}
	sr, dr := l.src.remote.Load(), l.dst.remote.Load()
	sp, dp := l.src.params.Load(), l.dst.params.Load()
	if sr == k.srcRemote && dr == k.dstRemote && sp == k.srcParams && dp == k.dstParams {
		return
	}
	k.srcRemote, k.dstRemote, k.srcParams, k.dstParams = sr, dr, sp, dp
	if !kernelEligible(sr, dr, sp, dp) || l.dst6 || l.src.port <= 0 || l.dst.port <= 0 {
		return
	}
	rule := kfwd.Rule{InPort: uint16(l.src.port), InRemote: sr.ap, OutPort: uint16(l.dst.port), OutRemote: dr.ap}
	r.k.mu.Lock()
	if r.k.closed {
		r.k.mu.Unlock()
		return
	}
	if err := r.k.fwd.Add(rule); err != nil {
		r.k.mu.Unlock()
		l.src.log.Load().Warn("media: relay: cannot forward in the kernel; the relay forwards in userspace",
			"local_port", l.src.port, "error", err)
		return
	}
	k.inPort, k.inFrom = rule.InPort, rule.InRemote
	k.on.Store(true)
	r.k.mu.Unlock()
	// A change stored before the rule went in found no rule to take out
	// (kernelChanged runs after the store); one stored after finds it.
	if l.src.remote.Load() != sr || l.dst.remote.Load() != dr || l.src.params.Load() != sp || l.dst.params.Load() != dp {
		r.kernelChanged()
	}
}

// kernelEligible reports whether the kernel can forward from a session in
// states sr, sp to one in dr, dp exactly as forward would: both remotes
// latched IPv4 addresses, and translate would leave every packet as it is.
func kernelEligible(sr, dr *remoteState, sp, dp *mediaParams) bool {
	if sr == nil || dr == nil || sr.learning || dr.learning {
		return false
	}
	if !sr.ap.IsValid() || !dr.ap.IsValid() || !sr.ap.Addr().Is4() || !dr.ap.Addr().Is4() {
		return false
	}
	return sp.codec.PT == dp.codec.PT && sp.law == dp.law && sp.dtmfPT == dp.dtmfPT
}

// kernelChanged takes both directions' rules out; a session's remote or
// formats changed.
func (r *pollRelay) kernelChanged() {
	r.k.mu.Lock()
	defer r.k.mu.Unlock()
	r.kernelRemoveLocked()
}

// kernelRemoveLocked takes out the installed rules and adds what they
// forwarded to the sessions' counters.
func (r *pollRelay) kernelRemoveLocked() {
	for i := range r.k.legs {
		k := &r.k.legs[i]
		if !k.on.Load() {
			continue
		}
		c, err := r.k.fwd.Remove(k.inPort, k.inFrom)
		k.on.Store(false)
		if err != nil {
			// The rule may still be in the map; it forwards only the
			// latched remote's packets of a socket that is ours until
			// the relay ends, and the forwarder goes with the node.
			r.sess[i].log.Load().Warn("media: relay: cannot take a kernel forwarding rule out",
				"local_port", r.legs[i].src.port, "error", err)
			continue
		}
		l := &r.legs[i]
		l.src.in.packets.Add(c.Packets)
		l.src.in.bytes.Add(c.Bytes)
		l.dst.out.packets.Add(c.Packets)
		l.dst.out.bytes.Add(c.Bytes)
		k.folded.Add(c.Packets)
		l.src.pool.kernelPackets.Add(c.Packets)
	}
}

// kernelStats adds to st what the kernel forwarded for s under rules still
// installed.
func (r *pollRelay) kernelStats(s *Session, st *SessionStats) {
	r.k.mu.Lock()
	defer r.k.mu.Unlock()
	for i := range r.k.legs {
		k := &r.k.legs[i]
		if !k.on.Load() {
			continue
		}
		c, ok := r.k.fwd.Counters(k.inPort, k.inFrom)
		if !ok {
			continue
		}
		l := &r.legs[i]
		if l.src == s {
			st.PacketsIn += c.Packets
			st.BytesIn += c.Bytes
		}
		if l.dst == s {
			st.PacketsOut += c.Packets
			st.BytesOut += c.Bytes
		}
	}
}

// stopKernel takes the rules out for good and unhooks the sessions; the
// relay is releasing its sockets.
func (r *pollRelay) stopKernel() {
	if r.k == nil {
		return
	}
	r.k.mu.Lock()
	r.k.closed = true
	r.kernelRemoveLocked()
	r.k.mu.Unlock()
	for _, s := range r.sess {
		s.hook.Store(nil)
	}
}

// kernelForwarded is what the kernel forwarded in direction side.
func (r *pollRelay) kernelForwarded(side int) uint64 {
	if r.k == nil {
		return 0
	}
	return r.k.legs[side].folded.Load()
}
