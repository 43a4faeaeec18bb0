package call

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/notify"
)

// EventType names a step in a call's life.
type EventType string

// The call events, in the order one call emits them. A call that fails
// before an answer goes from created (and ringing, per attempt) straight to
// ended; bridged is only for calls connected to a second SIP leg.
const (
	// EventCreated: the call was accepted (Originate, or an inbound INVITE
	// that passed admission).
	EventCreated EventType = "created"
	// EventRinging: an attempt got its first 180 or 183.
	EventRinging EventType = "ringing"
	// EventAnswered: the callee answered (a 200 OK arrived).
	EventAnswered EventType = "answered"
	// EventBridged: the answered call was connected to its destination leg.
	EventBridged EventType = "bridged"
	// EventEnded: the call is over and every CDR of it is written.
	EventEnded EventType = "ended"
)

// Event is one step of one call, for local subscribers (Manager.Subscribe)
// and, as JSON, for the cluster (EventForwarder).
type Event struct {
	Type        EventType `json:"type"`
	CallRef     string    `json:"call_ref"`
	CampaignRef string    `json:"campaign_ref,omitempty"`
	ContactRef  string    `json:"contact_ref,omitempty"`
	// Number and Line are those of the current attempt ("" before the
	// first one).
	Number  string `json:"number,omitempty"`
	Line    string `json:"line,omitempty"`
	Attempt int    `json:"attempt"`
	// Time is wall-clock UTC, so events from different nodes order by it
	// (never a monotonic reading, which means nothing on another node).
	Time time.Time `json:"time"`
	// Disposition, SIPCode and HangupCause are those of the call's last
	// CDR; set on ended only. Disposition is empty for a call that ended
	// without any CDR (NotDialed).
	Disposition Disposition `json:"disposition,omitempty"`
	SIPCode     int         `json:"sip_code,omitempty"`
	HangupCause string      `json:"hangup_cause,omitempty"`
	// NotDialed is set on ended when no INVITE was sent and no CDR written
	// (Outcome.NotDialed).
	NotDialed bool `json:"not_dialed,omitempty"`
	// CDRs are the call's CDRs, one per attempt in order; set on ended
	// only, for local subscribers (the dashboard). They are the call's own
	// records, complete once it ended: read them, never change them.
	CDRs []notify.CDR `json:"-"`
	// Node is the node the call runs on; the EventForwarder fills it in,
	// local subscribers see "".
	Node string `json:"node,omitempty"`
}

// EventSub is one local subscription to call events. Events arrive on C in
// the order each call emitted them; C is closed by Close.
type EventSub struct {
	// C delivers the events. A subscriber that lets it fill up loses the
	// events that do not fit (Dropped), so no call ever waits for it.
	C <-chan Event

	ch      chan Event
	bus     *eventBus
	dropped atomic.Uint64
	once    sync.Once
}

// Dropped is how many events this subscription lost to a full buffer.
func (s *EventSub) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. It is idempotent.
func (s *EventSub) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		// Under the bus lock, so no publish is sending on ch.
		close(s.ch)
		s.bus.mu.Unlock()
	})
}

// eventBus fans call events out to local subscribers without blocking the
// publishing call: a full subscriber buffer drops the event and counts it,
// as the IVR event bus does.
type eventBus struct {
	mu      sync.Mutex
	subs    map[*EventSub]struct{}
	dropped prometheus.Counter
}

func newEventBus(dropped prometheus.Counter) *eventBus {
	return &eventBus{subs: map[*EventSub]struct{}{}, dropped: dropped}
}

func (b *eventBus) subscribe(buf int) *EventSub {
	if buf < 1 {
		buf = 1
	}
	ch := make(chan Event, buf)
	s := &EventSub{C: ch, ch: ch, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *eventBus) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			s.dropped.Add(1)
			b.dropped.Inc()
		}
	}
}

// Subscribe returns a subscription to the events of every call on this
// node from now on, buffering up to buf events (at least 1). Close it when
// done; until then a subscriber that falls more than buf events behind
// loses events (counted in redial_call_events_dropped_total) rather than
// delaying calls.
func (m *Manager) Subscribe(buf int) *EventSub { return m.events.subscribe(buf) }

// emit publishes an event of the call, built from its current state.
func (c *Call) emit(t EventType) {
	if c.events == nil {
		// Calls that only record a CDR (Manager.Record) have no life to
		// report.
		return
	}
	c.mu.Lock()
	ev := Event{Type: t, CallRef: c.req.CallRef, CampaignRef: c.req.CampaignRef, ContactRef: c.req.ContactRef,
		Number: c.info.Number, Line: c.info.Line, Attempt: c.info.Attempt, Time: c.now().UTC()}
	if t == EventEnded {
		ev.Disposition, ev.SIPCode, ev.HangupCause = c.info.Disposition, c.info.SIPCode, c.info.HangupCause
		ev.NotDialed = c.out.NotDialed
		ev.CDRs = c.info.CDRs
	}
	c.mu.Unlock()
	c.events.publish(ev)
}

// enter moves the call to a new state, applies f to its Info and emits the
// state's event, if it has one.
func (c *Call) enter(st State, f func(i *Info)) {
	c.update(func(i *Info) {
		i.State = st
		if f != nil {
			f(i)
		}
	})
	switch st {
	case StateRinging:
		c.emit(EventRinging)
	case StateAnswered:
		c.emit(EventAnswered)
	case StateBridged:
		c.emit(EventBridged)
	}
}
