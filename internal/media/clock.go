package media

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Clock paces the packets of many Play streams from a few goroutines. With
// one timer per stream, a thousand streams mean 50,000 goroutine wake-ups a
// second contending for two cores, and a late wake-up is a late packet.
// Here each shard (one per core) wakes every millisecond and sends the next
// packet of the streams in that millisecond's slot: a stream keeps its slot,
// so its packets leave 20 ms apart, and a slot holds a twentieth of the
// streams, so no burst is long enough to push the others late. Decoding
// stays in each Play's own goroutine, several frames ahead and woken once
// per few frames, so a slow source (MP3, resampling) delays nobody else.
type Clock struct {
	shards []*clockShard
	mu     sync.Mutex
	next   int
}

// clockSlots divides the 20 ms period into 1 ms slots.
const clockSlots = 20

// clockShard is one pacing goroutine and its streams, by slot.
type clockShard struct {
	offset  time.Duration
	mu      sync.Mutex
	slots   [clockSlots][]*clockStream
	n       int
	next    int
	running bool
}

// clockStream is one Play registered with a shard.
type clockStream struct {
	s      *Session
	frames chan []byte   // encoded packets, ready to send
	refill chan struct{} // the producer may top frames up
	done   chan struct{} // closed once the last packet left
	// cancelled: the playback was stopped, so the packets still queued
	// are dropped rather than sent (they would play over whatever the
	// leg plays next: music on hold under an announcement, a prompt into
	// a bridge).
	cancelled atomic.Bool
}

// NewClock returns a clock with one shard per CPU.
func NewClock() *Clock {
	n := runtime.GOMAXPROCS(0)
	c := &Clock{}
	for i := 0; i < n; i++ {
		// Offset the shards inside a millisecond so they do not wake at
		// the same instant.
		c.shards = append(c.shards, &clockShard{offset: time.Duration(i) * time.Millisecond / time.Duration(n)})
	}
	return c
}

// SetClock makes Play on this session pace through c; nil restores the
// session's own timer.
func (s *Session) SetClock(c *Clock) { s.clock.Store(c) }

// register adds a stream to the next shard, in its next slot.
func (c *Clock) register(st *clockStream) {
	c.mu.Lock()
	sh := c.shards[c.next%len(c.shards)]
	c.next++
	c.mu.Unlock()
	sh.mu.Lock()
	slot := sh.next % clockSlots
	sh.next++
	sh.slots[slot] = append(sh.slots[slot], st)
	sh.n++
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
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}

// run serves one slot per millisecond until the shard has no stream left.
func (sh *clockShard) run() {
	const step = FrameDuration / clockSlots
	start := time.Now().Truncate(FrameDuration).Add(FrameDuration + sh.offset)
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	for k := int64(0); ; k++ {
		<-t.C
		sh.mu.Lock()
		slot := &sh.slots[k%clockSlots]
		live := (*slot)[:0]
		for _, st := range *slot {
			if st.tick() {
				live = append(live, st)
			} else {
				sh.n--
			}
		}
		clear((*slot)[len(live):])
		*slot = live
		if sh.n == 0 {
			sh.running = false
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
		// Deadlines derive from start, so timer lateness never drifts;
		// after a long stall the schedule skips ahead (whole periods, so
		// every stream keeps its slot) rather than bursting.
		next := start.Add(time.Duration(k+1) * step)
		if behind := time.Since(next); behind > maxLateFrames*FrameDuration {
			k += int64(behind/FrameDuration) * clockSlots
			next = start.Add(time.Duration(k+1) * step)
		}
		t.Reset(time.Until(next))
	}
}

// tick sends the stream's next packet if one is ready and reports whether
// the stream goes on.
func (st *clockStream) tick() bool {
	if st.cancelled.Load() {
		for {
			select {
			case _, ok := <-st.frames:
				if !ok {
					close(st.done)
					return false
				}
			default:
				return true // the producer has not closed frames yet
			}
		}
	}
	select {
	case pkt, ok := <-st.frames:
		if !ok {
			close(st.done)
			return false
		}
		st.s.WritePacket(pkt)
		if len(st.frames) <= clockAhead/2 {
			select {
			case st.refill <- struct{}{}:
			default:
			}
		}
	default:
		// The producer is behind (or blocked on a slow source): this tick
		// is skipped for this stream; its timestamps stay continuous.
	}
	return true
}
