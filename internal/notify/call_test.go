package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"redial/internal/testenv"
)

// An outbound call notification goes to <prefix>:campaigns ahead of its
// CDR, in that order even when both waited in the spool through a Redis
// outage; an inbound one goes to <prefix>:inbound.
func TestPublishCallOutboundBeforeCDRThroughSpool(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.publisher(t)
	run(t, p)
	f.r.Stop()
	note := CallNotification{Number: "0821234567", DialNumber: "0110001111", CallRef: "out-1", ContactRef: "c-1",
		CallDir: CallDirOutbound, CampaignRef: "click2dial", Ref: "1001"}
	if err := p.PublishCall(ctx, note); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishCDR(ctx, testCDR("out-1")); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishCall(ctx, CallNotification{Number: "1", CallRef: "in-1", CallDir: CallDirInbound, Ref: "1002"}); err != nil {
		t.Fatal(err)
	}
	if n := p.Spooled(); n != 3 {
		t.Fatalf("%d spooled during the outage, want 3", n)
	}
	f.r.Restart(t)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	camp := f.r.Client.LRange(ctx, "enigma:notifications:campaigns", 0, -1).Val()
	want := `{"type":"call","payload":{"number":"0821234567","dial_number":"0110001111","hold_time":0,"call_ref":"out-1","contact_ref":"c-1","call_dir":"outbound","campaign_ref":"click2dial","ref":"1001"}}`
	// LPUSH: the oldest is last.
	if len(camp) != 2 || camp[1] != want || camp[0][:len(`{"type":"cdr"`)] != `{"type":"cdr"` {
		t.Fatalf("campaigns list (newest first) = %v", camp)
	}
	in := f.r.Client.LRange(ctx, "enigma:notifications:inbound", 0, -1).Val()
	if len(in) != 1 || in[0] != `{"type":"call","payload":{"number":"1","dial_number":"","hold_time":0,"call_ref":"in-1","contact_ref":"","call_dir":"inbound","ref":"1002"}}` {
		t.Fatalf("inbound list = %v", in)
	}
}
