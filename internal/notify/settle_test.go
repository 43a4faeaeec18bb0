package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// A claim settlement made while Redis is away waits in the spool behind
// the CDR before it and is carried out, in order, when Redis is back; one
// whose claim was taken meanwhile is dropped without blocking the rest.
func TestSettleSpooledBehindCDRAndReplayed(t *testing.T) {
	f := newFixture(t)
	// Redis with AOF, so the claims survive the outage as in production.
	f.r = testenv.StartRedisWith(t, testenv.RedisOptions{AOF: true})
	f.st = store.NewWithClient(f.r.Client, store.Config{})
	ctx := context.Background()
	st := store.NewWithClient(f.r.Client, store.Config{Host: "n1"})
	l := st.QueueLedger("{q}", false)
	f.r.Client.LPush(ctx, "{q}", "a", "b")
	var claimed []string
	for range 2 {
		raw, ok, err := l.ClaimBlocking(ctx, time.Second)
		if err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if err := l.Mark(ctx, raw); err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, raw)
	}

	p := f.publisher(t)
	select {
	case <-p.Replayed():
		t.Fatal("Replayed closed before Run looked at the spool")
	default:
	}
	run(t, p)
	testenv.WaitFor(t, 5*time.Second, func() error {
		select {
		case <-p.Replayed():
			return nil
		default:
			return errors.New("empty spool not reported as replayed")
		}
	})

	f.r.Stop()
	if err := p.PublishCDR(ctx, testCDR("c1")); err != nil {
		t.Fatal(err)
	}
	for _, raw := range claimed {
		if err := p.Settle(ctx, l.AckOp(raw)); err != nil {
			t.Fatalf("Settle with Redis down: %v", err)
		}
	}
	// A settlement that can never find its claim.
	if err := p.Settle(ctx, l.AckOp("never-claimed")); err != nil {
		t.Fatal(err)
	}
	if n := p.Spooled(); n != 4 {
		t.Fatalf("Spooled() = %d, want the CDR and three settlements", n)
	}
	f.r.Restart(t)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if n, _ := f.r.Client.Exists(ctx, l.Keys("").Processing, l.Keys("").Dialing, l.Keys("").Invited).Result(); n != 0 {
		t.Fatalf("%d of the claim lists left after the replay", n)
	}
	if got := listRefs(t, f); len(got) != 1 || got[0] != "c1" {
		t.Fatalf("CDRs after replay: %v", got)
	}
	if _, err := os.Stat(filepath.Join(f.dir, corruptName)); err == nil {
		t.Fatal("a settlement whose claim was gone went to the corrupt file; it is simply done")
	}

	// Straight to Redis when the spool is empty: a gone claim is said so.
	if err := p.Settle(ctx, l.AckOp("never-claimed")); !errors.Is(err, store.ErrClaimGone) {
		t.Fatalf("Settle of a gone claim = %v, want ErrClaimGone", err)
	}
}

// A spooled settlement Redis refuses for good (here: its keys hold the
// wrong type) is set aside, and the records behind it still go out.
func TestSettleRefusedByRedisIsSetAside(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := store.NewWithClient(f.r.Client, store.Config{Host: "n1"})
	l := st.QueueLedger("{w}", false)
	p := f.publisher(t)
	run(t, p)
	f.r.Stop()
	if err := p.Settle(ctx, l.AckOp("x")); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishCDR(ctx, testCDR("after")); err != nil {
		t.Fatal(err)
	}
	f.r.Restart(t)
	f.r.Client.Set(ctx, l.Keys("").Processing, "not a list", 0)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if got := listRefs(t, f); len(got) != 1 || got[0] != "after" {
		t.Fatalf("CDRs: %v", got)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, corruptName))
	if err != nil || len(b) == 0 {
		t.Fatalf("refused settlement not kept in %s: %v", corruptName, err)
	}
}
