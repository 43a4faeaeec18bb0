package media

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/media/kfwd"
)

// ErrNoPorts is returned by PortPool.Get when every port is in use.
var ErrNoPorts = errors.New("media: rtp port pool exhausted")

// Socket reuse. Binding and closing a UDP socket for every call costs a
// node about a tenth of its CPU per call at thousands of calls a second
// (issue 14: socket, setsockopt, bind, epoll registration, close), so a
// closed Session's socket is parked, still bound, and handed to a later
// Session. A parked socket is free for the port accounting (InUse); it is
// reused only after parkQuarantine, and only if nothing at all reached it
// meanwhile (a peer still sending to a finished call shows itself within
// that time: RTP flows every 20 ms). One that heard anything is closed
// and its port goes to the back of the free ports, as without reuse.
//
// A parked socket still holds its port for the whole host, so parking is
// kept to what reuse needs: a node taking ports fast reuses a socket
// about parkQuarantine after it was parked, and one left unused for
// parkIdle means the pool is not that busy; it is closed. Close closes
// them all when the pool's owner stops. The first version kept them for
// 10 s and never closed them on stop: port ranges stayed bound long
// after the calls and tests that used them had ended, and a pool over
// the same range in another process found every port taken
// (decisions.md).
const (
	// parkQuarantine is how long a parked socket must stay silent before
	// it is reused.
	parkQuarantine = 250 * time.Millisecond
	// parkIdle is how long a parked socket waits for reuse before it is
	// closed: past the quarantine plus the gap between two takes of a
	// pool busy enough for reuse to matter.
	parkIdle = time.Second
	// parkMax bounds the parked sockets (and so the descriptors they
	// hold); a pool parks at most a third of its ports (parkShare). At
	// parkQuarantine the default range (16384-32767, 8192 ports, 2730
	// parked) lets some 10,900 sockets a second be reused: a quarter let
	// 8,000, and at the originate bench's 9,000 calls/s the rest were
	// bound and closed anew, 3% of a call's CPU (issue 14).
	parkMax   = 3072
	parkShare = 3
)

// PortPool hands out even UDP ports for RTP (the odd port above each stays
// free for RTCP by convention). Free ports form a FIFO, so a port that was
// just released goes to the back of the line: late packets of a finished call
// then reach a closed port instead of the next call. The sockets of closed
// sessions may be parked for reuse (see parkQuarantine).
type PortPool struct {
	mu    sync.Mutex
	min   int
	max   int
	free  []int // ring buffer of free ports
	head  int   // index of the next port Get returns
	count int   // number of free ports in the ring
	inUse map[int]bool
	// parked is a ring buffer of closed sessions' sockets, oldest at
	// parkHead; their ports are neither in use nor in free. Its length
	// is the most that may be parked.
	parked     []parkedSocket
	parkHead   int
	parkCount  int
	quarantine time.Duration
	idle       time.Duration
	// expiry closes parked sockets idle for longer than idle; armed while
	// any is parked.
	expiry *time.Timer
	// closed is set by Close: nothing is parked from then on.
	closed bool
	// relay holds the epoll sets the pool's sessions are relayed through
	// (relay_poll_linux.go); created on the first relay.
	relay relayShards
	// kernel forwards relayed packets in the kernel when set
	// (SetKernelForwarder).
	kernel atomic.Pointer[kfwd.Forwarder]
	// kernelPackets counts the packets forwarded in the kernel under
	// rules since taken out.
	kernelPackets atomic.Uint64
}

// SetKernelForwarder lets the pool's bridged sessions be forwarded in the
// kernel by f once both remotes are latched and no transcoding or
// recording is needed (relay_kernel_linux.go); nil turns it off for relays
// started afterwards. The caller closes f after the pool's relays ended.
func (p *PortPool) SetKernelForwarder(f *kfwd.Forwarder) { p.kernel.Store(f) }

// KernelForwarding reports whether relays started now may forward in the
// kernel.
func (p *PortPool) KernelForwarding() bool { return p.kernel.Load() != nil }

// KernelForwarded returns how many packets the kernel forwarded for the
// pool's relays, counted when their rules are taken out (a change of
// remote or format, or the relay's end).
func (p *PortPool) KernelForwarded() uint64 { return p.kernelPackets.Load() }

// parkedSocket is a closed session's socket kept bound for reuse.
type parkedSocket struct {
	conn    *net.UDPConn
	port    int
	localIP string
	at      time.Time
}

// NewPortPool returns a pool of the even ports in [min, max].
func NewPortPool(min, max int) (*PortPool, error) {
	if min < 1 || max > 65535 || min > max {
		return nil, fmt.Errorf("media: rtp port range %d-%d: want 1 <= min <= max <= 65535", min, max)
	}
	first := min + min%2
	if first > max {
		return nil, fmt.Errorf("media: rtp port range %d-%d: holds no even port", min, max)
	}
	p := &PortPool{min: min, max: max, inUse: make(map[int]bool), quarantine: parkQuarantine, idle: parkIdle}
	for port := first; port <= max; port += 2 {
		p.free = append(p.free, port)
	}
	p.count = len(p.free)
	if canPark {
		// At least one, so that even a tiny pool reuses its socket.
		n := (len(p.free) + parkShare - 1) / parkShare
		if n > parkMax {
			n = parkMax
		}
		p.parked = make([]parkedSocket, n)
	}
	return p, nil
}

// Get takes the free port that has been free the longest.
func (p *PortPool) Get() (int, error) {
	port, _, err := p.take("", false)
	return port, err
}

// take takes a port: with reuse, a parked socket bound on localIP that has
// been quiet for the quarantine, if any; otherwise the free port that has
// been free the longest, or, when none is, the port of the oldest parked
// socket, which is closed (a port is never refused while a socket merely
// waits for reuse).
func (p *PortPool) take(localIP string, reuse bool) (int, *net.UDPConn, error) {
	var closing *net.UDPConn
	defer func() {
		if closing != nil {
			closing.Close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if reuse && p.parkCount > 0 {
		if ps := p.parked[p.parkHead]; ps.localIP == localIP && time.Since(ps.at) >= p.quarantine {
			p.popParked()
			p.inUse[ps.port] = true
			return ps.port, ps.conn, nil
		}
	}
	if p.count == 0 {
		if p.parkCount == 0 {
			return 0, nil, fmt.Errorf("%w (%d ports in %d-%d)", ErrNoPorts, len(p.free), p.min, p.max)
		}
		ps := p.popParked()
		closing = ps.conn
		p.inUse[ps.port] = true
		return ps.port, nil, nil
	}
	port := p.free[p.head]
	p.head = (p.head + 1) % len(p.free)
	p.count--
	p.inUse[port] = true
	return port, nil, nil
}

// popParked removes the oldest parked socket; p.mu is held.
func (p *PortPool) popParked() parkedSocket {
	ps := p.parked[p.parkHead]
	p.parked[p.parkHead] = parkedSocket{}
	p.parkHead = (p.parkHead + 1) % len(p.parked)
	p.parkCount--
	return ps
}

// Put returns a port taken with Get. Ports that are not in use (a double Put,
// or a port from elsewhere) are ignored, so the pool never hands a port out twice.
func (p *PortPool) Put(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.putLocked(port)
}

func (p *PortPool) putLocked(port int) {
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	p.free[(p.head+p.count)%len(p.free)] = port
	p.count++
}

// release gives back a port with its socket, bound on localIP: the socket
// is parked for reuse when there is room, closed otherwise.
func (p *PortPool) release(port int, conn *net.UDPConn, localIP string) error {
	p.mu.Lock()
	if p.closed || !p.inUse[port] || p.parkCount >= len(p.parked) {
		p.putLocked(port)
		p.mu.Unlock()
		return conn.Close()
	}
	delete(p.inUse, port)
	p.parked[(p.parkHead+p.parkCount)%len(p.parked)] = parkedSocket{conn: conn, port: port, localIP: localIP, at: time.Now()}
	p.parkCount++
	if p.expiry == nil {
		p.expiry = time.AfterFunc(p.idle, p.expire)
	} else if p.parkCount == 1 {
		p.expiry.Reset(p.idle)
	}
	p.mu.Unlock()
	return nil
}

// expire closes the sockets parked for longer than p.idle and puts their
// ports back, then waits for the next one to be due.
func (p *PortPool) expire() {
	p.mu.Lock()
	now := time.Now()
	var due []parkedSocket
	for p.parkCount > 0 && now.Sub(p.parked[p.parkHead].at) >= p.idle {
		due = append(due, p.popParked())
	}
	if p.parkCount > 0 {
		p.expiry.Reset(p.idle - now.Sub(p.parked[p.parkHead].at))
	}
	p.mu.Unlock()
	_ = p.closeParked(due) // closing an unconnected UDP socket reports nothing useful
}

// closeParked closes sockets taken out of the park and only then puts
// their ports back among the free ones: a port handed out while its old
// socket is still open would fail to bind. It returns the first close
// error.
func (p *PortPool) closeParked(sockets []parkedSocket) error {
	var first error
	for _, ps := range sockets {
		if err := ps.conn.Close(); err != nil && first == nil {
			first = fmt.Errorf("media: close parked rtp socket on port %d: %w", ps.port, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ps := range sockets {
		p.inUse[ps.port] = true // putLocked takes only ports in use
		p.putLocked(ps.port)
	}
	return first
}

// Close closes every parked socket, freeing its port for the whole host,
// and stops parking: sessions closed afterwards close their sockets. The
// pool's owner calls it when it stops, after the sessions' users, so
// that no port stays bound after it. The pool still hands out ports.
func (p *PortPool) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.expiry != nil {
		p.expiry.Stop()
	}
	var all []parkedSocket
	for p.parkCount > 0 {
		all = append(all, p.popParked())
	}
	p.mu.Unlock()
	return p.closeParked(all)
}

// Parked returns how many closed sessions' sockets wait for reuse (they
// count as free ports, not in InUse).
func (p *PortPool) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parkCount
}

// InUse returns how many ports are currently taken.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse)
}

// Size returns how many ports the pool manages.
func (p *PortPool) Size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
