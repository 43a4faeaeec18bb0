package media

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The goroutine-per-direction relay (pump) costs, per packet: a netpoller
// wake-up and a goroutine switch, the read, the write and a second read that
// finds the socket empty before the goroutine parks again. With 500 bridged
// calls that is 1,000 goroutines woken per 20 ms burst. The polled relay
// below instead registers both UDP sockets of a relay with one of a few
// shared epoll sets ("shards", GOMAXPROCS of them); one goroutine per shard
// drains whatever is ready with level-triggered epoll_wait batches, one
// recvfrom and one sendto per packet, and parks in Go's netpoller on the
// epoll descriptor itself when nothing is ready. The shards belong to the
// sessions' PortPool (one per node), and a shard's goroutine exits when its
// last relay ends.
//
// While a shard relays a socket, Go's netpoller must not watch it too: it
// registers every socket edge-triggered, so each packet would also wake it
// (and the scheduler around it) for no goroutine at all. The relay
// therefore takes the socket out of Go's hands for its duration
// (relay_detach_linux.go) and works on a plain descriptor.

// pollBatch is how many ready sockets one epoll_wait returns at most.
const pollBatch = 128

// relayShards is a PortPool's lazily created set of shards (one node's
// relays share them); a creation error makes every relay fall back to
// pump.
type relayShards struct {
	once   sync.Once
	shards []*pollShard
	next   atomic.Uint32
}

func (rs *relayShards) pick() *pollShard {
	rs.once.Do(func() {
		n := max(1, runtime.GOMAXPROCS(0))
		for range n {
			sh, err := newPollShard()
			if err != nil {
				for _, s := range rs.shards {
					s.file.Close()
				}
				rs.shards = nil
				return
			}
			rs.shards = append(rs.shards, sh)
		}
	})
	if len(rs.shards) == 0 {
		return nil
	}
	return rs.shards[rs.next.Add(1)%uint32(len(rs.shards))]
}

// pollShard is one epoll set and the goroutine draining it.
type pollShard struct {
	epfd int
	file *os.File        // epfd, registered with Go's netpoller
	raw  syscall.RawConn // file's, to park until epfd is readable

	mu   sync.Mutex // held while a batch is forwarded and to add or remove legs
	legs map[uint32]*pollLeg
	// legsPeak is the most legs since legs was last rebuilt: a Go map
	// keeps the buckets of its peak, so after a burst the map is copied
	// into a small one (removeLocked).
	legsPeak int
	nextID   uint32
	running  bool
	events   [pollBatch]syscall.EpollEvent
	// pk is the packet being forwarded: packets are forwarded one at a
	// time under mu, so one buffer and one set of per-packet state serve
	// all its relays (instead of 2 KiB per direction of every held call).
	pk pollPacket
}

// pollPacket is the packet a shard is forwarding; its legs share it.
type pollPacket struct {
	n      int
	pkt    []byte
	rerr   syscall.Errno
	werr   syscall.Errno
	from   syscall.RawSockaddrAny
	fromOK bool
	buf    [maxPacket]byte
}

func newPollShard() (*pollShard, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: relay: epoll_create1: %w", err)
	}
	// Non-blocking makes os.NewFile register it with Go's netpoller (an
	// epoll set is pollable: readable while it has ready events).
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("media: relay: epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "relay-epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("media: relay: epoll raw conn: %w", err)
	}
	return &pollShard{epfd: epfd, file: f, raw: raw, legs: map[uint32]*pollLeg{}}, nil
}

// add registers the legs' source sockets and starts the shard's goroutine
// if it is not running.
func (sh *pollShard) add(legs ...*pollLeg) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i, l := range legs {
		for {
			sh.nextID++
			if _, used := sh.legs[sh.nextID]; !used {
				break
			}
		}
		l.id = sh.nextID
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.id)}
		if err := syscall.EpollCtl(sh.epfd, syscall.EPOLL_CTL_ADD, l.srcFd, &ev); err != nil {
			sh.removeLocked(legs[:i]...)
			return fmt.Errorf("media: relay: epoll_ctl add: %w", err)
		}
		sh.legs[l.id] = l
	}
	sh.legsPeak = max(sh.legsPeak, len(sh.legs))
	if !sh.running {
		sh.running = true
		go sh.loop()
	}
	return nil
}

// remove unregisters the legs; once it returns the shard no longer touches
// them.
func (sh *pollShard) remove(legs ...*pollLeg) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.removeLocked(legs...)
}

func (sh *pollShard) removeLocked(legs ...*pollLeg) {
	for _, l := range legs {
		if sh.legs[l.id] != l {
			continue
		}
		delete(sh.legs, l.id)
		// The descriptor is still open (the relay closes it only after
		// this); the registration must go explicitly, as it outlives a
		// closed descriptor while a duplicate of it (a reattached conn)
		// keeps the socket open.
		_ = syscall.EpollCtl(sh.epfd, syscall.EPOLL_CTL_DEL, l.srcFd, nil)
	}
	// After a burst, give the map's buckets back: copying what is left
	// costs at most a sixteenth of the deletes since the peak.
	if sh.legsPeak >= shrinkMapPeak && len(sh.legs) <= sh.legsPeak/16 {
		legs := make(map[uint32]*pollLeg, len(sh.legs))
		for id, l := range sh.legs {
			legs[id] = l
		}
		sh.legs, sh.legsPeak = legs, len(legs)
	}
}

// shrinkMapPeak is the size from which a map that empties is rebuilt
// small: below it, its buckets are not worth the copy.
const shrinkMapPeak = 256

// pollGap is how long a shard that just forwarded packets waits before
// looking again instead of parking. RTP arrives in bursts (every call's
// packet at each 20 ms tick); a shard that parks after every packet is
// woken again for the next one, and each wake-up (netpoller, thread,
// goroutine switch) costs about as much as forwarding the packet. Waiting
// pollGap batches what arrives meanwhile; it delays a packet by at most
// pollGap, and only within a burst.
const pollGap = 250 * time.Microsecond

// loop forwards ready packets until the shard has no legs left.
func (sh *pollShard) loop() {
	_ = sh.raw.Read(func(uintptr) bool {
		busy := false
		for {
			// The lock is taken per batch, so a relay ending (remove)
			// waits for one batch at most, not for the load to stop.
			sh.mu.Lock()
			if sh.batchLocked() {
				sh.mu.Unlock()
				busy = true
				continue
			}
			idle := len(sh.legs) == 0
			if idle {
				sh.running = false
			}
			sh.mu.Unlock()
			if busy && !idle {
				busy = false
				time.Sleep(pollGap)
				continue
			}
			// Go's netpoller watches the epoll set edge-triggered, so
			// park only once a batch found no live socket ready.
			return idle
		}
	})
}

// batchLocked forwards one packet per ready socket and reports whether
// any registered socket was ready.
func (sh *pollShard) batchLocked() bool {
	for {
		n, err := syscall.EpollWait(sh.epfd, sh.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		live := false
		for i := range n {
			// Events are fetched and legs removed under mu, so every
			// event has its leg; the check is defensive.
			if l := sh.legs[uint32(sh.events[i].Fd)]; l != nil {
				live = true
				l.forward()
			}
		}
		return live
	}
}

// pollRelay is one Relay running on a shard.
type pollRelay struct {
	sh       *pollShard
	legs     [2]pollLeg
	rec      *StereoRecorder
	done     chan struct{}
	doneOnce sync.Once
	sess     [2]*Session
	// k forwards settled directions in the kernel; nil when the pool has
	// no forwarder or the relay records (relay_kernel_linux.go).
	k *kernelRelay
	// end stops the relay and gives the sockets back; it is the sessions'
	// release hook (Session.Close calls it), RelayRun.Stop and the ctx
	// watch.
	end func()

	// mu orders taking the sockets and registering them with the shard
	// against letting them go, so that a Close racing with the start
	// never leaves a closed descriptor in the epoll set.
	mu       sync.Mutex
	conns    [2]*rawConn // the sockets taken (detach); nil when not
	added    bool        // the legs are registered with sh
	released bool
}

func (r *pollRelay) stop() { r.doneOnce.Do(func() { close(r.done) }) }

// release unregisters the legs and gives the sockets back to their
// sessions (a closed session's is closed). Once it returns the relay no
// longer touches the sessions; it may be called any number of times.
func (r *pollRelay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.releaseLocked()
}

func (r *pollRelay) releaseLocked() {
	if r.released {
		return
	}
	r.released = true
	// Rules first: packets the kernel no longer forwards then queue in
	// the sockets, which the sessions get back below.
	r.stopKernel()
	if r.added {
		r.sh.remove(&r.legs[0], &r.legs[1])
	}
	for i, c := range r.conns {
		if c != nil {
			r.sess[i].reattach(c)
		}
	}
}

// pollLeg is one direction of a polled relay. The shard's goroutine is the
// only one using it while it is registered. It is kept small: a held call
// keeps two of them for its whole life.
type pollLeg struct {
	r            *pollRelay
	src, dst     *Session
	srcFd, dstFd int // the sockets' descriptors the relay holds (rawConn)
	side         int
	id           uint32
	dst6         bool // dst's socket is AF_INET6
	forwarded    uint64
	errs         int

	// The destination address as a sockaddr, built when dst's remote
	// changes.
	to    *remoteState
	sa4   syscall.RawSockaddrInet4
	sa6   syscall.RawSockaddrInet6
	saPtr unsafe.Pointer
	saLen uintptr
}

// startPolled starts the relay on a shard when both sessions are plain UDP
// sockets; it returns nil when it cannot (WebRTC legs, no epoll, a session
// closed or already relayed), and the caller runs pump instead. While the
// relay is held no goroutine waits for it: ctx and the sessions' Close stop
// it through callbacks.
func startPolled(ctx context.Context, a, b *Session, rec *StereoRecorder) *RelayRun {
	if a == b || a.pool == nil || !a.isUDP() || !b.isUDP() {
		return nil
	}
	sh := a.pool.relay.pick()
	if sh == nil {
		return nil
	}
	r := &pollRelay{sh: sh, rec: rec, done: make(chan struct{}), sess: [2]*Session{a, b}}
	r.end = func() {
		r.stop()
		r.release()
	}
	r.mu.Lock()
	r.startKernel()
	var fds [2]int
	var six [2]bool
	for i, s := range r.sess {
		c := s.detach(r.end)
		if c == nil {
			r.releaseLocked()
			r.mu.Unlock()
			return nil
		}
		r.conns[i], fds[i], six[i] = c, c.fd, c.six
	}
	r.legs[0] = pollLeg{r: r, src: a, dst: b, srcFd: fds[0], dstFd: fds[1], side: 0, dst6: six[1]}
	r.legs[1] = pollLeg{r: r, src: b, dst: a, srcFd: fds[1], dstFd: fds[0], side: 1, dst6: six[0]}
	if err := sh.add(&r.legs[0], &r.legs[1]); err != nil {
		r.releaseLocked()
		r.mu.Unlock()
		a.log.Load().Warn("media: relay: falling back to a goroutine per direction", "error", err)
		return nil
	}
	r.added = true
	r.mu.Unlock()

	run := &RelayRun{done: r.done, stop: r.end}
	// A caller that stops the relay itself passes a context that is never
	// done: no watch on it then (a held call would keep one).
	unwatch := func() bool { return false }
	if ctx.Done() != nil {
		unwatch = context.AfterFunc(ctx, r.end)
	}
	run.wait = func() RelayStats {
		<-r.done
		unwatch()
		// After release the shard no longer writes the counts.
		r.release()
		return RelayStats{AtoB: r.legs[0].forwarded + r.kernelForwarded(0), BtoA: r.legs[1].forwarded + r.kernelForwarded(1)}
	}
	return run
}

func isInet6(fd int) bool {
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return false
	}
	_, six := sa.(*syscall.SockaddrInet6)
	return six
}

// forward moves one packet from src to dst, if one is waiting.
func (l *pollLeg) forward() {
	p := &l.r.sh.pk
	p.n, p.rerr, p.fromOK = -1, 0, false
	l.read(l.srcFd)
	switch {
	case p.rerr == syscall.EAGAIN || p.rerr == syscall.EINTR:
		return
	case p.rerr != 0:
		if l.errs++; l.errs > maxConsecutiveErrors {
			l.src.log.Load().Warn("media: relay: giving up on failing rtp socket",
				"local_port", l.src.port, "error", p.rerr)
			l.r.stop()
		}
		return
	}
	l.errs = 0
	pkt := p.buf[:p.n]
	if p.n < rtpHeaderLen || pkt[0]>>6 != 2 || !p.fromOK || !l.src.accept(l.fromAddr()) {
		l.src.dropped.Add(1)
		return
	}
	l.src.in.packets.Add(1)
	l.src.in.bytes.Add(uint64(p.n))
	sp := l.src.params.Load()
	if l.r.rec != nil {
		l.r.rec.packet(l.side, pkt, sp)
	}
	translate(pkt, sp, l.dst.params.Load())

	st := l.dst.remote.Load()
	if st == nil || !st.ap.IsValid() {
		l.forwarded++ // no remote yet: WritePacket drops it silently too
		return
	}
	if st != l.to {
		l.setDest(st)
	}
	p.pkt = pkt
	p.werr = 0
	l.write(l.dstFd)
	if p.werr != 0 {
		return // a transient send error (ENOBUFS, firewall) loses this packet only
	}
	l.dst.out.packets.Add(1)
	l.dst.out.bytes.Add(uint64(p.n))
	l.forwarded++
	if l.r.k != nil {
		l.r.kernelSettle(l)
	}
}

// read is one non-blocking recvfrom. RawSyscall: the socket is
// non-blocking, so the call never waits and needs no scheduler hand-off.
func (l *pollLeg) read(fd int) {
	p := &l.r.sh.pk
	fromLen := uint32(unsafe.Sizeof(p.from))
	buf := &p.buf
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		syscall.MSG_DONTWAIT|syscall.MSG_TRUNC, uintptr(unsafe.Pointer(&p.from)), uintptr(unsafe.Pointer(&fromLen)))
	if e != 0 {
		p.rerr = e
		return
	}
	if int(n) > len(buf) {
		// Truncated (MSG_TRUNC reports the full length): not a packet we
		// can forward intact.
		p.n = 0
		return
	}
	p.n = int(n)
	p.fromOK = fromLen > 0
}

// fromAddr converts the last packet's source address.
func (l *pollLeg) fromAddr() netip.AddrPort {
	p := &l.r.sh.pk
	switch p.from.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&p.from))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&p.from))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// setDest builds the sockaddr for dst's remote st.
func (l *pollLeg) setDest(st *remoteState) {
	l.to = st
	addr, port := st.ap.Addr(), st.ap.Port()
	if l.dst6 {
		l.sa6 = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Port: htons(port), Addr: addr.As16()}
		if addr.Is6() {
			l.sa6.Scope_id = scopeID(addr)
		}
		l.saPtr, l.saLen = unsafe.Pointer(&l.sa6), unsafe.Sizeof(l.sa6)
		return
	}
	l.sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: htons(port)}
	if addr.Is4() {
		l.sa4.Addr = addr.As4()
	} else {
		// An IPv6 remote on an IPv4 socket: sendto fails with EAFNOSUPPORT
		// like WriteToUDPAddrPort would, and the packet is dropped.
		l.sa4.Family = syscall.AF_INET6
	}
	l.saPtr, l.saLen = unsafe.Pointer(&l.sa4), unsafe.Sizeof(l.sa4)
}

// write is one non-blocking sendto of p.pkt.
func (l *pollLeg) write(fd int) {
	p := &l.r.sh.pk
	_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p.pkt[0])), uintptr(len(p.pkt)),
		syscall.MSG_DONTWAIT, uintptr(l.saPtr), l.saLen)
	p.werr = e
}

func scopeID(addr netip.Addr) uint32 {
	z := addr.Zone()
	if z == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// htons and ntohs convert a port to and from the network byte order kept in
// a sockaddr's uint16 field.
func htons(p uint16) uint16 {
	var b [2]byte
	b[0], b[1] = byte(p>>8), byte(p)
	return *(*uint16)(unsafe.Pointer(&b))
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
