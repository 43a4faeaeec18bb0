package media

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Streams paced by a shared Clock arrive whole, in order, 20 ms apart, and
// Play returns after the last packet left.
func TestClockPacesManyStreams(t *testing.T) {
	const streams = 40
	clk := NewClock()
	pool := testPool(t)
	var wg sync.WaitGroup
	peers := make([]*peer, streams)
	start := time.Now()
	for i := range peers {
		s := newTestSession(t, pool)
		s.SetCodec(PCMU)
		s.SetClock(clk)
		peers[i] = newPeer(t)
		s.SetRemote(peers[i].addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Play(context.Background(), NewTone(1000, 8000, 500*time.Millisecond)); err != nil {
				t.Errorf("Play: %v", err)
			}
		}()
	}
	for i, p := range peers {
		first := p.recvRTP()
		prev := first
		for k := 1; k < 25; k++ {
			pkt := p.recvRTP()
			if pkt.SequenceNumber != prev.SequenceNumber+1 || pkt.Timestamp != prev.Timestamp+160 || pkt.SSRC != first.SSRC {
				t.Fatalf("stream %d packet %d: seq %d ts %d after %d %d", i, k, pkt.SequenceNumber, pkt.Timestamp, prev.SequenceNumber, prev.Timestamp)
			}
			prev = pkt
		}
	}
	wg.Wait()
	if el := time.Since(start); el < 480*time.Millisecond {
		t.Fatalf("25 packets per stream sent in %v: faster than 20 ms pacing", el)
	}
	// The shards stop once their streams are done.
	deadline := time.Now().Add(time.Second)
	for clk.Streams() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still registered", clk.Streams())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Cancelling a clocked Play returns promptly with the context's error.
func TestClockPlayCancel(t *testing.T) {
	clk := NewClock()
	s := newTestSession(t, testPool(t))
	s.SetCodec(PCMU)
	s.SetClock(clk)
	p := newPeer(t)
	s.SetRemote(p.addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Play(ctx, NewTone(440, 8000, 0)) }()
	p.recvRTP()
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Play returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Play did not return after cancel")
	}
}
