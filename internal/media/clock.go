package media

import (
	"runtime"
	"sync"
	"time"
)

// Clock paces the packets of many Play streams from a few goroutines: each
// shard wakes once per 20 ms and sends the next packet of every stream it
// holds, in a stable order. With one timer per stream, a thousand streams
// mean 50,000 goroutine wake-ups a second contending for two cores, and a
// late wake-up is a late packet; here a stream's packet leaves at nearly the
// same offset into every tick, so its spacing stays 20 ms however many
// streams there are. Decoding stays in each Play's own goroutine, a few
// frames ahead, so a slow source (MP3, resampling) never delays the others.
type Clock struct {
	shards []*clockShard
	mu     sync.Mutex
	next   int
}

// clockShard is one pacing goroutine and its streams.
type clockShard struct {
	offset  time.Duration
	mu      sync.Mutex
	streams []*clockStream
	running bool
}

// clockStream is one Play registered with a shard.
type clockStream struct {
	s      *Session
	frames chan []byte   // encoded packets, ready to send
	done   chan struct{} // closed once the last packet left
	closed bool          // frames was closed and drained (shard-owned)
}

// NewClock returns a clock with one shard per CPU.
func NewClock() *Clock {
	n := runtime.GOMAXPROCS(0)
	c := &Clock{}
	for i := 0; i < n; i++ {
		// Spread the shards' ticks over the period so they do not
		// compete for the cores at the same instant.
		c.shards = append(c.shards, &clockShard{offset: time.Duration(i) * FrameDuration / time.Duration(n)})
	}
	return c
}

// SetClock makes Play on this session pace through c; nil restores the
// session's own timer.
func (s *Session) SetClock(c *Clock) { s.clock.Store(c) }

// register adds a stream to the least recently chosen shard.
func (c *Clock) register(st *clockStream) {
	c.mu.Lock()
	sh := c.shards[c.next%len(c.shards)]
	c.next++
	c.mu.Unlock()
	sh.mu.Lock()
	sh.streams = append(sh.streams, st)
	start := !sh.running
	sh.running = true
	sh.mu.Unlock()
	if start {
		go sh.run()
	}
}

// Streams is how many Play streams the clock paces now.
func (c *Clock) Streams() int {
	n := 0
	for _, sh := range c.shards {
		sh.mu.Lock()
		n += len(sh.streams)
		sh.mu.Unlock()
	}
	return n
}

// run ticks until the shard has no stream left.
func (sh *clockShard) run() {
	period := FrameDuration
	start := time.Now().Truncate(period).Add(period + sh.offset)
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	for k := int64(1); ; k++ {
		<-t.C
		sh.mu.Lock()
		live := sh.streams[:0]
		for _, st := range sh.streams {
			if st.tick() {
				live = append(live, st)
			}
		}
		clear(sh.streams[len(live):])
		sh.streams = live
		if len(live) == 0 {
			sh.running = false
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
		// Deadlines derive from start, so timer lateness never drifts;
		// after a long stall the schedule skips ahead rather than bursting.
		next := start.Add(time.Duration(k) * period)
		if behind := time.Since(next); behind > maxLateFrames*period {
			k += int64(behind / period)
			next = start.Add(time.Duration(k) * period)
		}
		t.Reset(time.Until(next))
	}
}

// tick sends the stream's next packet if one is ready and reports whether
// the stream goes on.
func (st *clockStream) tick() bool {
	select {
	case pkt, ok := <-st.frames:
		if !ok {
			close(st.done)
			return false
		}
		st.s.WritePacket(pkt)
	default:
		// The producer is behind (or blocked on a slow source): this tick
		// is skipped for this stream; its timestamps stay continuous.
	}
	return true
}
