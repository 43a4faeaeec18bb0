package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A disposition published while Redis is away waits in the spool and
// reaches <prefix>:campaigns when Redis is back, after the CDR spooled
// before it.
func TestPublishDispositionThroughSpool(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.publisher(t)
	run(t, p)
	f.r.Stop()
	if err := p.PublishCDR(ctx, testCDR("d-1")); err != nil {
		t.Fatal(err)
	}
	ext := "1001"
	if err := p.PublishDisposition(ctx, DispositionNotification{CallRef: "d-1", ContactRef: "c-1", CampaignRef: "t1",
		Code: "SALE", Note: "ok", Ext: &ext}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishDisposition(ctx, DispositionNotification{CallRef: "d-2", Code: "NO_INTEREST"}); err != nil {
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
	want := []string{
		`{"type":"disposition","payload":{"call_ref":"d-2","contact_ref":"","campaign_ref":"","code":"NO_INTEREST","note":"","ext":null}}`,
		`{"type":"disposition","payload":{"call_ref":"d-1","contact_ref":"c-1","campaign_ref":"t1","code":"SALE","note":"ok","ext":"1001"}}`,
	}
	if len(camp) != 3 || camp[0] != want[0] || camp[1] != want[1] || camp[2][:len(`{"type":"cdr"`)] != `{"type":"cdr"` {
		t.Fatalf("campaigns list (newest first) = %v", camp)
	}
}
