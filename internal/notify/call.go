package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// Call directions of a CallNotification.
const (
	CallDirInbound  = "inbound"
	CallDirOutbound = "outbound"
)

// CallNotification is the payload of {"type":"call","payload":...}: a call
// connected to an agent. Inbound calls go to <prefix>:inbound; outbound
// calls (campaigns, click-to-dial) to <prefix>:campaigns, before their CDR,
// so one unpacking function serves both (seed 001).
type CallNotification struct {
	// Number is the customer's number (the caller, or the number dialed
	// for an outbound call).
	Number string `json:"number"`
	// DialNumber is the number dialed by the caller, or the caller ID
	// presented on an outbound call.
	DialNumber string `json:"dial_number"`
	// HoldTime is the whole seconds the customer waited for the agent.
	HoldTime   int    `json:"hold_time"`
	CallRef    string `json:"call_ref"`
	ContactRef string `json:"contact_ref"`
	// CallDir is CallDirInbound or CallDirOutbound; empty (left out) in
	// the legacy inbound format, which says campaign_ref "inbound".
	CallDir string `json:"call_dir,omitempty"`
	// CampaignRef is the outbound call's campaign ("click2dial" for
	// click-to-dial); left out when empty.
	CampaignRef string `json:"campaign_ref,omitempty"`
	// Ref is the agent's extension.
	Ref string `json:"ref"`
}

// PublishCall publishes a call notification with the same spool guarantees
// (and the same order) as PublishCDR: an outbound call's goes to
// <prefix>:campaigns, anything else to <prefix>:inbound. Publish it before
// the call's CDR and consumers see it first.
func (p *Publisher) PublishCall(ctx context.Context, n CallNotification) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("notify: call notification %s: encode: %w", n.CallRef, err)
	}
	kind := kindInbound
	if n.CallDir == CallDirOutbound {
		kind = kindOutboundCall
	}
	return p.publish(ctx, kind, b, nil, nil, logAttrs{slog.String("call_ref", n.CallRef)})
}
