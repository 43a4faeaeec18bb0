package media

import (
	"errors"
	"fmt"
	"sync"
)

// ErrNoPorts is returned by PortPool.Get when every port is in use.
var ErrNoPorts = errors.New("media: rtp port pool exhausted")

// PortPool hands out even UDP ports for RTP (the odd port above each stays
// free for RTCP by convention). Free ports form a FIFO, so a port that was
// just released goes to the back of the line: late packets of a finished call
// then reach a closed port instead of the next call.
type PortPool struct {
	mu    sync.Mutex
	min   int
	max   int
	free  []int // ring buffer of free ports
	head  int   // index of the next port Get returns
	count int   // number of free ports in the ring
	inUse map[int]bool
	// relay holds the epoll sets the pool's sessions are relayed through
	// (relay_poll_linux.go); created on the first relay.
	relay relayShards
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
	p := &PortPool{min: min, max: max, inUse: make(map[int]bool)}
	for port := first; port <= max; port += 2 {
		p.free = append(p.free, port)
	}
	p.count = len(p.free)
	return p, nil
}

// Get takes the free port that has been free the longest.
func (p *PortPool) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count == 0 {
		return 0, fmt.Errorf("%w (%d ports in %d-%d)", ErrNoPorts, len(p.free), p.min, p.max)
	}
	port := p.free[p.head]
	p.head = (p.head + 1) % len(p.free)
	p.count--
	p.inUse[port] = true
	return port, nil
}

// Put returns a port taken with Get. Ports that are not in use (a double Put,
// or a port from elsewhere) are ignored, so the pool never hands a port out twice.
func (p *PortPool) Put(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	p.free[(p.head+p.count)%len(p.free)] = port
	p.count++
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
