package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// kindDisposition records are disposition notifications, pushed onto
// <prefix>:campaigns as {"type":"disposition","payload":...}.
const kindDisposition = "disposition"

// DispositionNotification is the payload of {"type":"disposition",
// "payload":...}: the outcome an agent or integrator gave a call through
// POST /api/v1/calls/{call_ref}/disposition.
type DispositionNotification struct {
	CallRef     string `json:"call_ref"`
	ContactRef  string `json:"contact_ref"`
	CampaignRef string `json:"campaign_ref"`
	Code        string `json:"code"`
	Note        string `json:"note"`
	// Ext is the agent who took the call; nil (JSON null) when none did,
	// as in CDRs.
	Ext *string `json:"ext"`
}

// PublishDisposition publishes a disposition notification on
// <prefix>:campaigns with the same spool guarantees (and order) as
// PublishCDR.
func (p *Publisher) PublishDisposition(ctx context.Context, n DispositionNotification) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("notify: disposition of %s: encode: %w", n.CallRef, err)
	}
	return p.publish(ctx, kindDisposition, b, nil, nil, logAttrs{slog.String("call_ref", n.CallRef)})
}
