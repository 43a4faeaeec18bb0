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
	if err := s.ReleaseLineLeases(ctx, []LineLease{{Line: "l1", ID: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLineLeases(ctx, []LineLease{{Line: "l1", ID: "b"}}); err != nil {
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

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func TestAcquireLineLeasesLimit(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	gs, err := s.AcquireLineLeases(ctx, "l1", ids("a", 5), 3, -1, time.Minute)
	if err != nil || len(gs) != 5 {
		t.Fatalf("acquire = %+v, %v", gs, err)
	}
	for i, g := range gs {
		if i < 3 && (g.Status != LineGranted || g.InUse != i+1 || g.At.IsZero()) {
			t.Errorf("id %d = %+v, want granted with in use %d", i, g, i+1)
		}
		if i >= 3 && (g.Status != LineFull || g.InUse != 3) {
			t.Errorf("id %d = %+v, want full with in use 3", i, g)
		}
	}
	got, err := r.Client.ZRange(ctx, s.LineLeasesKey("l1"), 0, -1).Result()
	if err != nil || strings.Join(got, ",") != "a0,a1,a2" {
		t.Fatalf("leases in Redis = %v, %v; want a0..a2", got, err)
	}
	if ttl := r.Client.PTTL(ctx, s.LineLeasesKey("l1")).Val(); ttl <= time.Minute || ttl > 2*time.Minute {
		t.Fatalf("leases key PTTL = %v, want (1m, 2m]", ttl)
	}
	// A full line refuses a whole batch; an unlimited one grants it all.
	if gs, err := s.AcquireLineLeases(ctx, "l1", ids("b", 2), 3, -1, time.Minute); err != nil || gs[0].Status != LineFull || gs[1].Status != LineFull {
		t.Fatalf("full line = %+v, %v", gs, err)
	}
	gs, err = s.AcquireLineLeases(ctx, "free", ids("c", 4), -1, -1, time.Minute)
	if err != nil || gs[3].Status != LineGranted || gs[3].InUse != 4 {
		t.Fatalf("unlimited = %+v, %v", gs, err)
	}
	if _, err := s.AcquireLineLeases(ctx, "l1", ids("d", 2), 3, 0, time.Minute); err == nil {
		t.Fatal("cps 0 accepted")
	}
	if gs, err := s.AcquireLineLeases(ctx, "l1", nil, 3, -1, time.Minute); err != nil || len(gs) != 0 {
		t.Fatalf("no ids = %+v, %v", gs, err)
	}
}

func TestAcquireLineLeasesCPS(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	gs, err := s.AcquireLineLeases(ctx, "l1", ids("a", 5), -1, 2, time.Minute)
	if err != nil || len(gs) != 5 {
		t.Fatalf("acquire = %+v, %v", gs, err)
	}
	for i, g := range gs {
		if i < 2 && g.Status != LineGranted {
			t.Errorf("id %d = %+v, want granted", i, g)
		}
		if i >= 2 && (g.Status != LineCPSLimited || g.RetryAfter <= 0 || g.RetryAfter > time.Second || g.InUse != 2) {
			t.Errorf("id %d = %+v, want cps limited, retry in (0, 1s], in use 2", i, g)
		}
	}
	if n := r.Client.ZCard(ctx, s.LineCPSKey("l1")).Val(); n != 2 {
		t.Fatalf("cps window holds %d grants, want 2", n)
	}

	// One grant already in the window: a batch gets the rest of the budget,
	// and a refused id waits for the oldest grant to leave the window.
	first, err := s.AcquireLineLease(ctx, "l2", "x", -1, 3, time.Minute)
	if err != nil || first.Status != LineGranted {
		t.Fatalf("first = %+v, %v", first, err)
	}
	gs, err = s.AcquireLineLeases(ctx, "l2", ids("b", 4), -1, 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if gs[0].Status != LineGranted || gs[1].Status != LineGranted || gs[2].Status != LineCPSLimited || gs[3].Status != LineCPSLimited {
		t.Fatalf("batch after one grant = %+v", gs)
	}
	want := first.At.Add(time.Second).Sub(gs[0].At)
	if gs[2].RetryAfter != max(want, time.Millisecond) {
		t.Fatalf("retry after %v, want %v (the first grant leaving the window)", gs[2].RetryAfter, want)
	}
}

func TestAcquireLineLeasesPrunesExpiredWhenFull(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	gs, err := s.AcquireLineLeases(ctx, "l1", ids("old", 2), 3, -1, 200*time.Millisecond)
	if err != nil || gs[1].Status != LineGranted {
		t.Fatalf("old = %+v, %v", gs, err)
	}
	expiry := gs[1].At.Add(200 * time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, func() error {
		now, err := r.Client.Time(ctx).Result()
		if err != nil {
			return err
		}
		if !now.After(expiry) {
			return fmt.Errorf("server time %v not past %v", now, expiry)
		}
		return nil
	})
	// new0 fits beside the stale leases; new1 finds the line full, which
	// prunes them, so new1 and new2 fit as well.
	gs, err = s.AcquireLineLeases(ctx, "l1", ids("new", 4), 3, -1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := []LineAcquireStatus{LineGranted, LineGranted, LineGranted, LineFull}
	wantInUse := []int{3, 2, 3, 3}
	for i, g := range gs {
		if g.Status != wantStatus[i] || g.InUse != wantInUse[i] {
			t.Errorf("new%d = %+v, want status %d in use %d", i, g, wantStatus[i], wantInUse[i])
		}
	}
	got, _ := r.Client.ZRange(ctx, s.LineLeasesKey("l1"), 0, -1).Result()
	if strings.Join(got, ",") != "new0,new1,new2" {
		t.Fatalf("leases = %v, want new0..new2", got)
	}
}

func TestAcquireLineLeasesIsOneZADD(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	// Load the script first, so the counts below are one run each.
	if _, err := s.AcquireLineLease(ctx, "warm", "w", -1, 5, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line     string
		cps      int
		wantZADD int64
	}{{"l1", -1, 1}, {"l2", 100, 2}} {
		zadd, scripts := r.CommandCalls(t)["zadd"], r.CommandCalls(t)["evalsha"]+r.CommandCalls(t)["eval"]
		gs, err := s.AcquireLineLeases(ctx, tc.line, ids("a", 10), 50, tc.cps, time.Minute)
		if err != nil || gs[9].Status != LineGranted || gs[9].InUse != 10 {
			t.Fatalf("%s: acquire = %+v, %v", tc.line, gs, err)
		}
		if d := r.CommandCalls(t)["zadd"] - zadd; d != tc.wantZADD {
			t.Errorf("%s (cps %d): %d ZADD for 10 grants, want %d", tc.line, tc.cps, d, tc.wantZADD)
		}
		if d := r.CommandCalls(t)["evalsha"] + r.CommandCalls(t)["eval"] - scripts; d != 1 {
			t.Errorf("%s: %d script runs for one batch, want 1", tc.line, d)
		}
	}
}

func TestReleaseLineLeasesOneZREMPerLine(t *testing.T) {
	s, r := newLineStore(t)
	ctx := context.Background()
	for _, line := range []string{"l1", "l2"} {
		if _, err := s.AcquireLineLeases(ctx, line, ids("a", 5), -1, -1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	zrem := r.CommandCalls(t)["zrem"]
	err := s.ReleaseLineLeases(ctx, []LineLease{
		{Line: "l1", ID: "a0"}, {Line: "l2", ID: "a1"}, {Line: "l1", ID: "a2"},
		{Line: "l1", ID: "a3"}, {Line: "l1", ID: "gone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.CommandCalls(t)["zrem"] - zrem; d != 2 {
		t.Errorf("%d ZREM for leases of 2 lines, want 2", d)
	}
	for line, want := range map[string]string{"l1": "a1,a4", "l2": "a0,a2,a3,a4"} {
		got, _ := r.Client.ZRange(ctx, s.LineLeasesKey(line), 0, -1).Result()
		if strings.Join(got, ",") != want {
			t.Errorf("%s leases after release = %v, want %s", line, got, want)
		}
	}
}
