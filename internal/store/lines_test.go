package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

func newLineStore(t *testing.T) (*Store, *testenv.Redis) {
	t.Helper()
	r := testenv.StartRedis(t)
	return NewWithClient(r.Client, Config{Domain: "acme", Host: "n1"}), r
}

func TestLineKeysShareOneHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{Domain: "acme"})
	tag := func(k string) string {
		i := strings.IndexByte(k, '{')
		j := strings.IndexByte(k[i+1:], '}')
		return k[i+1 : i+1+j]
	}
	a, b := s.LineLeasesKey("l1"), s.LineCPSKey("l1")
	if a != "redial:{line:acme:l1}:leases" || b != "redial:{line:acme:l1}:cps" {
		t.Fatalf("keys = %q, %q", a, b)
	}
	if tag(a) != tag(b) {
		t.Fatalf("hash tags differ: %q vs %q", tag(a), tag(b))
	}
}

func TestAcquireLineLeaseLimitAndExpiry(t *testing.T) {
	s, _ := newLineStore(t)
	ctx := context.Background()
	g, err := s.AcquireLineLease(ctx, "l1", "a", 1, -1, 300*time.Millisecond)
	if err != nil || g.Status != LineGranted || g.InUse != 1 {
		t.Fatalf("first acquire = %+v, %v", g, err)
	}
	if d := time.Since(g.At); d < -time.Minute || d > time.Minute {
		t.Fatalf("grant time %v is not the server's now", g.At)
	}
	// The key goes away by itself when nobody renews or acquires (2 × TTL).
	if ttl := s.rdb.PTTL(ctx, s.LineLeasesKey("l1")).Val(); ttl <= 0 || ttl > 600*time.Millisecond {
		t.Fatalf("leases key PTTL = %v after a grant, want (0, 600ms]", ttl)
	}
	g, err = s.AcquireLineLease(ctx, "l1", "b", 1, -1, 300*time.Millisecond)
	if err != nil || g.Status != LineFull || g.InUse != 1 {
		t.Fatalf("second acquire = %+v, %v; want full", g, err)
	}
	// Nobody renews "a": it must drop out once its TTL passes.
	testenv.WaitFor(t, 5*time.Second, func() error {
		g, err := s.AcquireLineLease(ctx, "l1", "b", 1, -1, 300*time.Millisecond)
		if err != nil {
			return err
		}
		if g.Status != LineGranted {
			return errStatus(g)
		}
		return nil
	})
	n, err := s.LinesInUse(ctx, []string{"l1", "other"})
	if err != nil || n["l1"] != 1 || n["other"] != 0 {
		t.Fatalf("in use = %v, %v", n, err)
	}
	if err := s.ReleaseLineLease(ctx, "l1", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLineLease(ctx, "l1", "b"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if n, _ := s.LinesInUse(ctx, []string{"l1"}); n["l1"] != 0 {
		t.Fatalf("in use after release = %d", n["l1"])
	}
	if _, err := s.AcquireLineLease(ctx, "l1", "c", 1, 0, time.Second); err == nil {
		t.Fatal("cps 0 accepted")
	}
}

func errStatus(g LineGrant) error { return fmt.Errorf("status %d, want granted", g.Status) }

func TestAcquireLineLeaseCPSWindow(t *testing.T) {
	s, _ := newLineStore(t)
	ctx := context.Background()
	var first time.Time
	for i, id := range []string{"a", "b"} {
		g, err := s.AcquireLineLease(ctx, "l1", id, -1, 2, time.Minute)
		if err != nil || g.Status != LineGranted {
			t.Fatalf("grant %d = %+v, %v", i, g, err)
		}
		if i == 0 {
			first = g.At
		}
	}
	g, err := s.AcquireLineLease(ctx, "l1", "c", -1, 2, time.Minute)
	if err != nil || g.Status != LineCPSLimited {
		t.Fatalf("third = %+v, %v; want cps limited", g, err)
	}
	if g.RetryAfter < time.Millisecond || g.RetryAfter > time.Second {
		t.Fatalf("retry after %v", g.RetryAfter)
	}
	if g.InUse != 2 {
		t.Fatalf("in use %d, want 2", g.InUse)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		g, err := s.AcquireLineLease(ctx, "l1", "c", -1, 2, time.Minute)
		if err != nil {
			return err
		}
		if g.Status != LineGranted {
			return errStatus(g)
		}
		if g.At.Sub(first) < time.Second {
			t.Errorf("third grant %v after the first: window of 1s broken", g.At.Sub(first))
		}
		return nil
	})
}

func TestRenewLineLeases(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	ttl := time.Minute
	if g, err := s.AcquireLineLease(ctx, "l1", "a", 1, -1, ttl); err != nil || g.Status != LineGranted {
		t.Fatalf("acquire a: %+v %v", g, err)
	}
	before, _ := r.Client.ZScore(ctx, s.LineLeasesKey("l1"), "a").Result()
	res, err := s.RenewLineLeases(ctx, []LineRenewal{{Line: "l1", Limit: 1, IDs: []string{"a"}}}, 2*ttl)
	if err != nil || res[0].Err != nil || res[0].Status[0] != LeaseRenewed || res[0].InUse != 1 {
		t.Fatalf("renew = %+v, %v", res, err)
	}
	after, _ := r.Client.ZScore(ctx, s.LineLeasesKey("l1"), "a").Result()
	if after-before < float64(ttl.Milliseconds()-1000) {
		t.Fatalf("expiry moved from %v to %v", before, after)
	}

	// "a" vanished (as if it expired while its node was cut off) and "b"
	// took the only channel: renewing "a" must not break the limit.
	r.Client.ZRem(ctx, s.LineLeasesKey("l1"), "a")
	if g, _ := s.AcquireLineLease(ctx, "l1", "b", 1, -1, ttl); g.Status != LineGranted {
		t.Fatalf("acquire b: %+v", g)
	}
	res, err = s.RenewLineLeases(ctx, []LineRenewal{{Line: "l1", Limit: 1, IDs: []string{"a"}}}, ttl)
	if err != nil || res[0].Status[0] != LeaseLost || res[0].InUse != 1 {
		t.Fatalf("renew lost = %+v, %v", res, err)
	}
	if err := s.ReleaseLineLeases(ctx, []LineLease{{Line: "l1", ID: "b"}}); err != nil {
		t.Fatal(err)
	}
	res, err = s.RenewLineLeases(ctx, []LineRenewal{{Line: "l1", Limit: 1, IDs: []string{"a"}}, {Line: "l2", Limit: -1, IDs: []string{"x", "y"}}}, ttl)
	if err != nil || res[0].Status[0] != LeaseReAdded || res[0].InUse != 1 {
		t.Fatalf("renew re-add = %+v, %v", res, err)
	}
	if res[1].InUse != 2 || res[1].Status[0] != LeaseReAdded || res[1].Status[1] != LeaseReAdded {
		t.Fatalf("unlimited line = %+v", res[1])
	}
}

func TestRenewLineLeasesManyIDs(t *testing.T) {
	s, _ := newLineStore(t)
	ctx := context.Background()
	ids := make([]string, 1200) // more than one script call
	for i := range ids {
		ids[i] = fmt.Sprintf("id%d", i)
	}
	res, err := s.RenewLineLeases(ctx, []LineRenewal{{Line: "big", Limit: 1000, IDs: ids}}, time.Minute)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	added, lost := 0, 0
	for _, st := range res[0].Status {
		switch st {
		case LeaseReAdded:
			added++
		case LeaseLost:
			lost++
		}
	}
	if added != 1000 || lost != 200 {
		t.Fatalf("added %d lost %d, want 1000/200", added, lost)
	}
}
