package call

import (
	"context"
	"testing"
	"time"
)

// A queue's offer to an agent waits until this node's last call with the
// agent's phone is over; with none up it goes at once, and a call that
// stays up does not hold the offer past the limit.
func TestOfferWaitsForTheAgentsLastCall(t *testing.T) {
	var p phones
	ctx := context.Background()
	if !p.settle(ctx, "4000", time.Hour) {
		t.Fatal("settle with no call held: want true at once")
	}

	first, second := make(chan struct{}), make(chan struct{})
	p.hold("4000", first)
	p.hold("4000", second)
	p.hold("4001", make(chan struct{})) // another agent's call holds nothing here
	settled := make(chan bool, 1)
	go func() { settled <- p.settle(ctx, "4000", time.Hour) }()
	close(first)
	select {
	case <-settled:
		t.Fatal("offer went out with one of the agent's calls still up")
	case <-time.After(50 * time.Millisecond):
	}
	close(second)
	if ok := <-settled; !ok {
		t.Fatal("settle after both calls ended: want true")
	}
	// The ended legs are dropped at the next look.
	if !p.settle(ctx, "4000", time.Hour) {
		t.Fatal("settle with no call up: want true at once")
	}
	p.mu.Lock()
	n := len(p.legs["4000"])
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d ended legs still held for 4000", n)
	}

	stuck := make(chan struct{})
	p.hold("4002", stuck)
	if p.settle(ctx, "4002", 10*time.Millisecond) {
		t.Fatal("settle with a call that stays up: want false after the limit")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if p.settle(cctx, "4002", time.Hour) {
		t.Fatal("settle with a cancelled context: want false")
	}
}
