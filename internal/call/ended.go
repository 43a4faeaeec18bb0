package call

import (
	"time"

	"redial/internal/notify"
)

// endedCall is what the manager keeps of an ended call for KeepEnded: what
// GET /api/v1/calls/{ref} and the other readers of Get (Info, Outcome,
// Done) still need, with its CDRs stored once. The *Call itself, with its
// request, channel, mutex and event hooks, is let go: at a thousand calls
// a second for two minutes, that is 120,000 calls.
type endedCall struct {
	at   int64 // when the call ended (Unix ns), for pruning
	size int32 // approxBytes, for MaxEndedBytes
	// outCDRs is true when the outcome's CDRs are info.CDRs: every
	// attempt's CDR is appended to both (writeCDR), so they are stored
	// once.
	outCDRs bool
	info    Info // State ended, Legs nil
	out     endedOutcome
}

// endedOutcome is an Outcome without its CDRs (info's, or none).
type endedOutcome struct {
	connected, answered, noLine, notDialed bool
	invites                                int32
	disposition                            Disposition
	notDialedErr                           error
}

// newEndedCall builds the compact record of ended call c.
func newEndedCall(c *Call, at time.Time) *endedCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.out
	e := &endedCall{at: at.UnixNano(), info: c.info, out: endedOutcome{connected: o.Connected, answered: o.Answered,
		noLine: o.NoLine, notDialed: o.NotDialed, invites: int32(o.Invites), disposition: o.Disposition, notDialedErr: o.NotDialedErr}}
	e.info.Legs = nil
	// Every CDR written goes to both (writeCDR's callers); an outcome
	// without CDRs is one whose run never published it.
	e.outCDRs = len(o.CDRs) > 0
	// Answer and End point at copies of the last CDR's times; share the
	// CDR's instead (the values are equal).
	if n := len(e.info.CDRs); n > 0 {
		last := &e.info.CDRs[n-1]
		if a := e.info.Answer; a != nil && last.Answer != nil && *a == *last.Answer {
			e.info.Answer = last.Answer
		}
		if end := e.info.End; end != nil && *end == last.End {
			e.info.End = &last.End
		}
	}
	return e
}

// call rebuilds a *Call that answers Ref, Info, Outcome and Done as the
// ended call did; it is not registered and cannot be hung up.
func (e *endedCall) call() *Call {
	done := make(chan struct{})
	close(done)
	o := e.out
	c := &Call{req: Request{CallRef: e.info.CallRef, ContactRef: e.info.ContactRef, CampaignRef: e.info.CampaignRef,
		Numbers: e.info.Numbers}, done: done, now: time.Now, info: e.info,
		out: Outcome{Connected: o.connected, Answered: o.answered, Disposition: o.disposition, Invites: int(o.invites),
			NoLine: o.noLine, NotDialed: o.notDialed, NotDialedErr: o.notDialedErr}}
	if e.outCDRs {
		c.out.CDRs = append([]notify.CDR(nil), e.info.CDRs...)
	}
	return c
}

// approxBytes estimates the memory the record holds: its references,
// numbers and CDRs (whose variables are the bulk), plus a fixed overhead
// for the record and its entries in the manager's map and list.
func (e *endedCall) approxBytes() int {
	// overhead: the record (320 B) and its entries in m.ended and m.order;
	// perCDR: the CDR (288 B), its ID and its answer time.
	const overhead, perCDR, perEntry = 400, 368, 48
	vars := func(m map[string]string) int {
		n := 0
		for k, v := range m {
			n += len(k) + len(v) + perEntry
		}
		return n
	}
	cdrs := func(list []notify.CDR) int {
		n := 0
		for _, r := range list {
			n += perCDR + len(r.CDRID) + len(r.CallRef) + len(r.ContactRef) + len(r.CampaignRef) + len(r.ClientNumber) +
				len(r.DialNumber) + len(r.Line) + len(r.HangupCause) + len(r.Recording) + vars(r.Variables)
		}
		return n
	}
	i := &e.info
	n := overhead + 2*len(i.CallRef) + len(i.ContactRef) + len(i.CampaignRef) + len(i.Number) + len(i.Line) +
		len(i.HangupCause) + cdrs(i.CDRs)
	for _, s := range i.Numbers {
		n += len(s) + perEntry
	}
	return n
}

// keepEnded moves call c from the calls in progress to the ended calls,
// visible to Get until pruned, and forgets the oldest ended calls while
// more than MaxEnded of them, or more than MaxEndedBytes, are kept.
func (m *Manager) keepEnded(c *Call) {
	e := newEndedCall(c, m.now())
	e.size = int32(min(e.approxBytes(), 1<<30))
	ref := c.req.CallRef
	m.mu.Lock()
	defer m.mu.Unlock()
	// Hangup reads cancel under m.mu; an ended call has nothing to cancel.
	c.cancel = nil
	if m.calls[ref] == c {
		delete(m.calls, ref)
	}
	if old, ok := m.ended[ref]; ok {
		// Only a test re-ends a ref; keep the byte count true.
		m.endedBytes -= int(old.size)
	}
	m.ended[ref] = e
	m.endedBytes += int(e.size)
	m.order = append(m.order, ref)
	for len(m.order) > 0 && (len(m.order) > m.cfg.MaxEnded || m.endedBytes > m.cfg.MaxEndedBytes) {
		m.forgetLocked(m.order[0])
		m.order = m.order[1:]
	}
}

// prune forgets the calls that ended more than KeepEnded ago.
func (m *Manager) prune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := m.now().Add(-m.cfg.KeepEnded).UnixNano()
	i := 0
	for ; i < len(m.order); i++ {
		e, ok := m.ended[m.order[i]]
		if ok && e.at >= cut {
			break
		}
		m.forgetLocked(m.order[i])
	}
	if i == 0 {
		return
	}
	if i == len(m.order) {
		// A Go map never shrinks: after a burst, start afresh rather than
		// keep the burst's buckets for good.
		m.order, m.ended = nil, map[string]*endedCall{}
		return
	}
	m.order = append([]string(nil), m.order[i:]...)
}

// forgetLocked drops an ended call; m.mu is held and the caller removes
// ref from m.order.
func (m *Manager) forgetLocked(ref string) {
	if e, ok := m.ended[ref]; ok {
		m.endedBytes -= int(e.size)
		delete(m.ended, ref)
	}
}
