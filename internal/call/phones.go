package call

import (
	"context"
	"sync"
	"time"
)

// phoneSettleLimit bounds how long a queue's offer waits for this node's
// earlier call with the same agent to be hung up. An offer is made when
// the ACD holds the agent free; a call still up after this long is a
// disagreement the offer does not resolve by waiting longer.
const phoneSettleLimit = 3 * time.Second

// phones remembers, per agent, the INVITEs and legs this node has with
// the agent's phones, so that a queue's next offer to the agent waits
// until this node is done with the last one. The ACD frees an agent when
// the call is over for the node that runs the queue: with the agent on
// another node, that node learns it (sipgo answers a CANCEL with 487 at
// once; a BYE is answered at once) before the agent's own node has sent
// its CANCEL or BYE to the phone, and under load the next offer could
// ring the phone while the last call was still up there.
type phones struct {
	mu   sync.Mutex
	legs map[string][]<-chan struct{} // ext -> Done of the legs held
}

// hold records an INVITE or a leg with ext's phone, over when done is
// closed. Ended
// legs of ext are dropped as it goes, so an agent keeps no more entries
// than it has calls up.
func (p *phones) hold(ext string, done <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.legs == nil {
		p.legs = map[string][]<-chan struct{}{}
	}
	p.legs[ext] = append(live(p.legs[ext]), done)
}

// settle waits until everything held with ext is over, ctx ends or
// limit passes, and reports whether they all ended.
func (p *phones) settle(ctx context.Context, ext string, limit time.Duration) bool {
	p.mu.Lock()
	held := live(p.legs[ext])
	if len(held) == 0 {
		delete(p.legs, ext)
	} else {
		p.legs[ext] = held
	}
	held = append([]<-chan struct{}(nil), held...)
	p.mu.Unlock()
	if len(held) == 0 {
		return true
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	for _, done := range held {
		select {
		case <-done:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
	return true
}

// live returns the legs in legs that have not ended, in place.
func live(legs []<-chan struct{}) []<-chan struct{} {
	out := legs[:0]
	for _, done := range legs {
		select {
		case <-done:
		default:
			out = append(out, done)
		}
	}
	clear(legs[len(out):])
	return out
}
