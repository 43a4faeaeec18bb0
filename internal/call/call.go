// Package call runs calls: it takes an originate request through lines,
// SIP and the dialplan, connects the answered call to its target, and
// writes one CDR per INVITE.
package call

import (
	"context"
	"sync"
	"time"

	"redial/internal/dialplan"
	"redial/internal/notify"
	"redial/internal/sip"
)

// Request is an originate request (POST /api/v1/calls, the dialers).
type Request struct {
	// Numbers are tried in order, stopping at the first that connects.
	Numbers     []string
	LineGroups  []string
	Destination dialplan.Destination
	Variables   map[string]string
	CallRef     string
	ContactRef  string
	CampaignRef string
	// OnInvite, if set, is called just before the first INVITE is sent: the
	// dialers use it to mark a claimed number as possibly dialed. An error
	// stops the call before anything is sent (Outcome.NotDialed).
	OnInvite func() error
	// ReturnOnNoLine makes a call that found no free line before sending
	// any INVITE end without a CDR, with Outcome.NoLine set: the dialers
	// put the number back rather than record an attempt that never was.
	ReturnOnNoLine bool

	// noCDR: a call another node relayed to this node's agents; the
	// originating node writes its CDR.
	noCDR bool
}

// State is where a call is in its life.
type State string

// Call states.
const (
	StateQueued   State = "queued"
	StateDialing  State = "dialing"
	StateRinging  State = "ringing"
	StateAnswered State = "answered"
	StateBridged  State = "bridged"
	StateEnded    State = "ended"
)

// Outcome is how a call ended, for the dialers.
type Outcome struct {
	// Connected is true when a number answered and was connected to its
	// target.
	Connected bool
	// Answered is true when a number answered, connected or not.
	Answered bool
	// Disposition is that of the last attempt.
	Disposition Disposition
	// Invites is how many INVITEs were sent.
	Invites int
	// CDRs are the records written, one per attempt.
	CDRs []notify.CDR
	// NoLine is true when ReturnOnNoLine stopped the call before any
	// INVITE.
	NoLine bool
	// NotDialed is true when no INVITE was sent and no CDR written: no free
	// line (with ReturnOnNoLine), or OnInvite failed (NotDialedErr).
	NotDialed    bool
	NotDialedErr error
}

// Info is a call as the API shows it.
type Info struct {
	CallRef     string       `json:"call_ref"`
	ContactRef  string       `json:"contact_ref"`
	CampaignRef string       `json:"campaign_ref"`
	State       State        `json:"state"`
	Numbers     []string     `json:"numbers"`
	Number      string       `json:"number,omitempty"`
	Line        string       `json:"line,omitempty"`
	Attempt     int          `json:"attempt"`
	Disposition Disposition  `json:"disposition,omitempty"`
	SIPCode     int          `json:"sip_code,omitempty"`
	HangupCause string       `json:"hangup_cause,omitempty"`
	Start       time.Time    `json:"start"`
	Answer      *time.Time   `json:"answer,omitempty"`
	End         *time.Time   `json:"end,omitempty"`
	CDRs        []notify.CDR `json:"cdrs"`
	// Legs shows the media of the established legs, for troubleshooting
	// one-way audio.
	Legs []LegInfo `json:"legs,omitempty"`
}

// LegInfo is one established leg's media.
type LegInfo struct {
	Role       string `json:"role"` // "callee" or "destination"
	SIPCallID  string `json:"sip_call_id"`
	LocalPort  int    `json:"rtp_local_port"`
	Remote     string `json:"rtp_remote,omitempty"`
	Codec      string `json:"codec"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
}

// Call is one originate request in progress or recently ended.
type Call struct {
	req    Request
	cancel context.CancelCauseFunc
	done   chan struct{}
	// events receives the call's events; nil for a call that only
	// records a CDR.
	events *eventBus
	now    func() time.Time

	mu   sync.Mutex
	info Info
	out  Outcome
	legs []legRef
}

type legRef struct {
	role string
	leg  *sip.Leg
}

// addLeg records an established leg for Info.
func (c *Call) addLeg(role string, l *sip.Leg) {
	c.mu.Lock()
	c.legs = append(c.legs, legRef{role, l})
	c.mu.Unlock()
}

// newCall builds a call that emits no events (Manager.Record); running
// calls come from Manager.newCall.
func newCall(req Request, now time.Time) *Call {
	return &Call{req: req, done: make(chan struct{}), now: time.Now, info: Info{
		CallRef: req.CallRef, ContactRef: req.ContactRef, CampaignRef: req.CampaignRef,
		State: StateQueued, Numbers: req.Numbers, Start: now.UTC(), CDRs: []notify.CDR{},
	}}
}

// Ref is the call's call_ref.
func (c *Call) Ref() string { return c.req.CallRef }

// Done is closed when the call has ended and all its CDRs are written.
func (c *Call) Done() <-chan struct{} { return c.done }

// Info is a snapshot of the call.
func (c *Call) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.info
	i.CDRs = append([]notify.CDR(nil), c.info.CDRs...)
	if i.State != StateEnded {
		for _, l := range c.legs {
			st := l.leg.Media.Stats()
			li := LegInfo{Role: l.role, SIPCallID: l.leg.CallID, LocalPort: l.leg.Media.LocalPort(), Codec: l.leg.Codec.Name,
				PacketsIn: st.PacketsIn, PacketsOut: st.PacketsOut}
			if r := l.leg.Media.Remote(); r != nil {
				li.Remote = r.String()
			}
			i.Legs = append(i.Legs, li)
		}
	}
	return i
}

// Outcome is the final result; valid after Done.
func (c *Call) Outcome() Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out
}

func (c *Call) update(f func(i *Info)) {
	c.mu.Lock()
	f(&c.info)
	c.mu.Unlock()
}
