package media

import (
	"net"
	"testing"
)

// Issue 14: a shard's map of legs kept the buckets of a burst of calls for
// good (a Go map never shrinks). Once the burst is over the map is rebuilt
// small, and the legs still relayed stay registered.
func TestPollShardLegsShrinkAfterBurst(t *testing.T) {
	sh, err := newPollShard()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.file.Close() })
	const burst, kept = 2 * shrinkMapPeak, 5
	legs := make([]*pollLeg, burst)
	for i := range legs {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
			t.Fatal(err)
		}
		legs[i] = &pollLeg{srcFd: fd}
	}
	if err := sh.add(legs...); err != nil {
		t.Fatalf("add: %v", err)
	}
	for _, l := range legs[kept:] {
		sh.remove(l)
	}
	sh.mu.Lock()
	n, peak := len(sh.legs), sh.legsPeak
	for _, l := range legs[:kept] {
		if sh.legs[l.id] != l {
			t.Errorf("leg %d lost with the rebuild", l.id)
		}
	}
	sh.mu.Unlock()
	if n != kept {
		t.Fatalf("%d legs registered, want %d", n, kept)
	}
	if peak > burst/16 {
		t.Errorf("legs map not rebuilt after the burst: peak %d of %d legs", peak, burst)
	}
	sh.remove(legs[:kept]...)
}
