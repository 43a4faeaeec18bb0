package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"redial/internal/testenv"
)

// schedRedisNow is the Redis server's clock in unix seconds, the clock the claim
// scripts compare scores with.
func schedRedisNow(t *testing.T, r *testenv.Redis) float64 {
	t.Helper()
	tm, err := r.Client.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return float64(tm.UnixNano()) / 1e9
}

func schedMember(i int) string {
	return fmt.Sprintf(`{"params":{"number":"1380000%04d","expires":0,"config":"c1"},"variables":{}}`, i)
}

// zscore is member's score in key, or fails.
func zscore(t *testing.T, r *testenv.Redis, key, member string) float64 {
	t.Helper()
	v, err := r.Client.ZScore(context.Background(), key, member).Result()
	if err != nil {
		t.Fatalf("ZSCORE %s %s: %v", key, member, err)
	}
	return v
}

func TestScheduleLedgerKeysShareTheNumbersHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{Domain: "acme", Host: "n1"})
	if got := s.ScheduleConfigKey(); got != "cti_schedule_dialer_config@acme" {
		t.Fatalf("config key %q", got)
	}
	if got := s.ScheduleNumbersKey(); got != "cti_schedule_dialer_number@acme" {
		t.Fatalf("numbers key %q", got)
	}
	l := s.ScheduleLedger()
	if l.Name() != "schedule" || l.Shape() != ShapeZSet {
		t.Fatalf("ledger %q, shape %q", l.Name(), l.Shape())
	}
	const p = "redial:{cti_schedule_dialer_number@acme}"
	want := LedgerKeys{
		Source: "cti_schedule_dialer_number@acme", Processing: p + ":claimed:n1", Dialing: p + ":dialing:n1",
		Invited: p + ":invited:n1", Scores: p + ":scores:n1", Holders: p + ":holders",
		Interrupted: p + ":interrupted", Invalid: p + ":invalid", Alive: "redial:{nodes}:alive:n1", LegacyAlive: "redial:node:n1:alive",
	}
	if k := l.Keys(""); k != want {
		t.Fatalf("keys = %+v\nwant   %+v", k, want)
	}
	for _, domain := range []string{"acme", "a{b}", "x{"} {
		s := NewWithClient(nil, Config{Domain: domain, Host: "n1"})
		want := hashTag(s.ScheduleNumbersKey())
		k := s.ScheduleLedger().Keys("n2")
		for _, key := range []string{k.Source, k.Processing, k.Dialing, k.Invited, k.Scores, k.Holders, k.Interrupted, k.Invalid} {
			if got := hashTag(key); got != want {
				t.Errorf("domain %q: %s hashes on %q, the numbers key on %q", domain, key, got, want)
			}
		}
	}
}

func TestScheduleConfigs(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	cfg := `{"params":{"line_group":["g1"],"destination_extension":"8888"},"variables":{}}`
	r.Client.HSet(ctx, "cti_schedule_dialer_config@acme", "c1", cfg)
	if err := s.SetScheduleConfig(ctx, "c2", "{}"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ScheduleConfigs(ctx)
	if err != nil || len(got) != 2 || got["c1"] != cfg || got["c2"] != "{}" {
		t.Fatalf("configs = %v, %v", got, err)
	}
}

func TestClaimDueScheduledTwoHostsNeverShareAMember(t *testing.T) {
	s, r := newDialerStore(t, "a")
	ctx := context.Background()
	now := schedRedisNow(t, r)
	const due, future = 300, 20
	scores := map[string]float64{}
	for i := 0; i < due+future; i++ {
		sc := now - 1000 + float64(i)*0.25
		if i >= due {
			sc = now + 3600 + float64(i)
		}
		scores[schedMember(i)] = sc
		if err := s.AddScheduled(ctx, schedMember(i), sc); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		claims []Claim
		next   float64
		err    error
	}
	ledgers := []*Ledger{s.ScheduleLedger(), hostStore(r, "b").ScheduleLedger()}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for h, l := range ledgers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, next, err := l.ClaimDue(ctx, 7)
				if err != nil {
					results[h].err = err
					return
				}
				if len(c) == 0 {
					results[h].next = next
					return
				}
				results[h].claims = append(results[h].claims, c...)
			}
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for h, res := range results {
		if res.err != nil {
			t.Fatal(res.err)
		}
		if want := now + 3600 + due; res.next != want {
			t.Errorf("host %d: next due %v, want %v", h, res.next, want)
		}
		for _, c := range res.claims {
			if other, dup := seen[c.Member]; dup {
				t.Fatalf("%s claimed by host %s and host %d", c.Member, other, h)
			}
			seen[c.Member] = fmt.Sprint(h)
			if c.Score != scores[c.Member] || c.Payload != "" {
				t.Fatalf("%s claimed with score %v, payload %q; added with %v", c.Member, c.Score, c.Payload, scores[c.Member])
			}
			if c.Score > now {
				t.Fatalf("%s claimed though due at %v, after %v", c.Member, c.Score, now)
			}
		}
	}
	if len(seen) != due {
		t.Fatalf("%d members claimed, want %d", len(seen), due)
	}
	if n := r.Client.ZCard(ctx, s.ScheduleNumbersKey()).Val(); n != future {
		t.Fatalf("%d members left in the ZSET, want the %d future ones", n, future)
	}
	var total int64
	for h, l := range ledgers {
		k := l.Keys("")
		n := r.Client.LLen(ctx, k.Processing).Val()
		if int(n) != len(results[h].claims) || r.Client.HLen(ctx, k.Scores).Val() != n {
			t.Fatalf("host %d: claimed list holds %d, scores hash %d, claimed %d",
				h, n, r.Client.HLen(ctx, k.Scores).Val(), len(results[h].claims))
		}
		total += n
	}
	if total != due {
		t.Fatalf("claimed lists hold %d claims, want %d", total, due)
	}
	holders, err := ledgers[0].Holders(ctx)
	sort.Strings(holders)
	if err != nil || len(holders) == 0 || len(holders) > 2 {
		t.Fatalf("holders = %v, %v", holders, err)
	}
}

func TestClaimDueScheduledWaitsForTheScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	at := schedRedisNow(t, r) + 0.4
	if err := s.AddScheduled(ctx, "m", at); err != nil {
		t.Fatal(err)
	}
	c, next, err := l.ClaimDue(ctx, 10)
	if err != nil || len(c) != 0 || next != at {
		t.Fatalf("claim before due = %v, next %v (want %v), %v", c, next, at, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		c, next, err := l.ClaimDue(ctx, 10)
		if err != nil {
			return err
		}
		if len(c) == 0 {
			return fmt.Errorf("not claimed yet")
		}
		// next is NaN once the ZSET is empty.
		if len(c) != 1 || c[0].Member != "m" || c[0].Score != at || !math.IsNaN(next) {
			t.Fatalf("claim = %+v, next %v", c, next)
		}
		return nil
	})
	if now := schedRedisNow(t, r); now < at {
		t.Fatalf("claimed at server time %v, before its score %v", now, at)
	}
	if err := s.AddScheduled(ctx, "nan", math.NaN()); err == nil {
		t.Fatal("AddScheduled took a NaN score")
	}
	// ClaimBlocking is for LIST ledgers only.
	if _, _, err := l.ClaimBlocking(ctx, time.Second); err == nil {
		t.Fatal("blocking claim on a ZSET ledger succeeded")
	}
}

func TestRecoveryRestoresTheExactScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	k := l.Keys("")
	// 17 significant digits: Lua's default number printing (14) would
	// round this score.
	const precise = 1600000000.1234567
	for m, sc := range map[string]float64{"precise": precise, "always": math.Inf(-1)} {
		if err := s.AddScheduled(ctx, m, sc); err != nil {
			t.Fatal(err)
		}
	}
	claims, _, err := l.ClaimDue(ctx, 10)
	if err != nil || len(claims) != 2 {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	if claims[0].Member != "always" || !math.IsInf(claims[0].Score, -1) || claims[1].Score != precise {
		t.Fatalf("claims = %+v", claims)
	}
	// The claim keeps the score as Redis printed it; nothing is marked.
	if v, err := r.Client.HGet(ctx, k.Scores, "precise").Float64(); err != nil || v != precise {
		t.Fatalf("claimed score of precise = %v, %v", v, err)
	}
	if v := r.Client.HGet(ctx, k.Scores, "always").Val(); v != "-inf" {
		t.Fatalf("claimed score of -inf = %q", v)
	}
	if c := lrange(t, r, k.Processing); len(c) != 2 || c[0] != "precise" || c[1] != "always" {
		t.Fatalf("claimed list %q, want newest first", c)
	}
	if n := r.Client.Exists(ctx, k.Invited).Val(); n != 0 {
		t.Fatal("invited hash exists before any mark")
	}
	res, err := l.SettleOwn(ctx)
	if err != nil || res != (RecoverResult{Requeued: 2}) {
		t.Fatalf("settle own = %+v, %v", res, err)
	}
	if got := zscore(t, r, s.ScheduleNumbersKey(), "precise"); got != precise {
		t.Fatalf("score after recovery %v, want %v", got, precise)
	}
	if got := zscore(t, r, s.ScheduleNumbersKey(), "always"); !math.IsInf(got, -1) {
		t.Fatalf("score after recovery %v, want -inf", got)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Scores, k.Invited).Val(); n != 0 {
		t.Fatalf("%d ledger keys left after settling every claim", n)
	}
}

// A claim that was never dialed goes back at its own score when returned
// with Claim.Due (Return's "original score").
func TestReturnScheduledKeepsTheScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	now := schedRedisNow(t, r)
	scores := map[string]float64{
		"us": math.Round((now-30)*1e6) / 1e6, "precise": 1600000000.1234567, "always": math.Inf(-1),
	}
	for m, sc := range scores {
		s.AddScheduled(ctx, m, sc)
	}
	claims, _, err := l.ClaimDue(ctx, 10)
	if err != nil || len(claims) != 3 {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	for _, c := range claims {
		if err := l.Return(ctx, c.Member, c.Due(false)); err != nil {
			t.Fatal(err)
		}
	}
	for m, sc := range scores {
		got := zscore(t, r, s.ScheduleNumbersKey(), m)
		if math.IsInf(sc, -1) {
			// -inf comes back as a time long before any real one.
			if got > -1e15 {
				t.Errorf("%s returned at %v, want -inf or far in the past", m, got)
			}
			continue
		}
		if got != sc {
			t.Errorf("%s returned at %v, claimed at %v", m, got, sc)
		}
	}
	c, _, err := l.ClaimDue(ctx, 10)
	if err != nil || len(c) != 3 || c[0].Member != "always" {
		t.Fatalf("claims after return = %+v, %v", c, err)
	}
}

// Write-back (no free line, or a retry) puts the member back at a new
// score whether or not it was marked: the old ErrClaimInvited refusal is
// gone, the consumer decides. Ack (a CDR was written, EXPIRED included)
// finishes it for good.
func TestScheduledWriteBackAndAck(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	k := l.Keys("")
	now := schedRedisNow(t, r)
	for _, m := range []string{"m1", "m2", "expired"} {
		s.AddScheduled(ctx, m, now-1)
	}
	claims, _, err := l.ClaimDue(ctx, 10)
	if err != nil || len(claims) != 3 {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	// No free line: back at now+60.5, at that exact score.
	at := time.Unix(int64(now), 0).Add(60*time.Second + 500*time.Millisecond)
	if err := l.WriteBack(ctx, "m1", "", at); err != nil {
		t.Fatal(err)
	}
	if got := zscore(t, r, s.ScheduleNumbersKey(), "m1"); got != float64(int64(now))+60.5 {
		t.Fatalf("written-back score %v, want %v", got, float64(int64(now))+60.5)
	}
	if r.Client.HExists(ctx, k.Scores, "m1").Val() {
		t.Fatal("written-back member still claimed")
	}
	// A member whose expires passed is finished without a call (its
	// EXPIRED CDR written): Ack, never back in the ZSET.
	if err := l.Ack(ctx, "expired"); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ZScore(ctx, s.ScheduleNumbersKey(), "expired").Err(); err == nil {
		t.Fatal("acked member is back in the ZSET")
	}
	if err := l.Mark(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	if m, u := copiesOf(t, r, k, "m2"); m != 1 || u != 0 {
		t.Fatalf("m2 after its mark: %d marked, %d unmarked copies", m, u)
	}
	if err := l.Ack(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"ack":        l.Ack(ctx, "m2"),
		"mark":       l.Mark(ctx, "m2"),
		"write back": l.WriteBack(ctx, "m2", "", at),
		"return":     l.Return(ctx, "m2", at),
		"invalid":    l.Invalid(ctx, "m2", "x"),
		"interrupt":  l.Interrupt(ctx, "m2", "x"),
	} {
		if !errors.Is(err, ErrClaimGone) {
			t.Errorf("%s of a finished claim = %v, want ErrClaimGone", name, err)
		}
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 {
		t.Fatalf("%d ledger keys left after the last claim ended", n)
	}
	if n := r.Client.ZCard(ctx, s.ScheduleNumbersKey()).Val(); n != 1 {
		t.Fatalf("%d members in the ZSET, want only m1", n)
	}
	// A marked claim that loses its call goes to :interrupted.
	s.AddScheduled(ctx, "m3", now-1)
	if c, _, err := l.ClaimDue(ctx, 1); err != nil || len(c) != 1 || c[0].Member != "m3" {
		t.Fatalf("claim = %v, %v", c, err)
	}
	l.Mark(ctx, "m3")
	if err := l.Interrupt(ctx, "m3", "call lost"); err != nil {
		t.Fatal(err)
	}
	if in := lrange(t, r, k.Interrupted); len(in) != 1 || decodeParked(t, in[0]).Item != "m3" {
		t.Fatalf("interrupted %q", in)
	}
}

func TestInvalidScheduledParksTheMember(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	s.AddScheduled(ctx, "not json", 1)
	if c, _, err := l.ClaimDue(ctx, 1); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := l.Invalid(ctx, "not json", "member is not JSON"); err != nil {
		t.Fatal(err)
	}
	k := l.Keys("")
	in := lrange(t, r, k.Invalid)
	if len(in) != 1 {
		t.Fatalf("invalid = %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "not json" || p.Reason != "member is not JSON" || p.Host != "n1" {
		t.Fatalf("invalid entry %+v", p)
	}
	if r.Client.LLen(ctx, k.Processing).Val() != 0 || r.Client.HLen(ctx, k.Scores).Val() != 0 {
		t.Fatal("invalid member still claimed")
	}
	if r.Client.ZCard(ctx, s.ScheduleNumbersKey()).Val() != 0 {
		t.Fatal("invalid member back in the ZSET")
	}
}

func TestRecoverScheduledParksInvitedAndRequeuesTheRest(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	live := s.ScheduleLedger()
	dead := hostStore(r, "dead").ScheduleLedger()
	dk := dead.Keys("")
	now := schedRedisNow(t, r)
	scores := map[string]float64{schedMember(1): now - 30.5, schedMember(2): now - 20.25, schedMember(3): now - 10}
	for m, sc := range scores {
		s.AddScheduled(ctx, m, sc)
	}
	if c, _, err := dead.ClaimDue(ctx, 10); err != nil || len(c) != 3 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := dead.Mark(ctx, schedMember(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "dead", time.Minute); err != nil {
		t.Fatal(err)
	}
	res, err := live.Recover(ctx, "dead")
	if !errors.Is(err, ErrHostAlive) || res != (RecoverResult{}) {
		t.Fatalf("recover of a live host = %+v, %v", res, err)
	}
	if n := r.Client.LLen(ctx, dk.Processing).Val() + r.Client.LLen(ctx, dk.Dialing).Val(); n != 3 {
		t.Fatalf("live host's claimed and dialing lists have %d claims, want 3 untouched", n)
	}
	r.Client.Del(ctx, s.AliveKey("dead"), s.LegacyAliveKey("dead"))
	res, err = live.Recover(ctx, "dead")
	if err != nil || res != (RecoverResult{Requeued: 2, Interrupted: 1}) {
		t.Fatalf("recover = %+v, %v", res, err)
	}
	for _, m := range []string{schedMember(1), schedMember(2)} {
		if got := zscore(t, r, s.ScheduleNumbersKey(), m); got != scores[m] {
			t.Fatalf("%s back with score %v, want its original %v", m, got, scores[m])
		}
	}
	parked := lrange(t, r, dk.Interrupted)
	if len(parked) != 1 {
		t.Fatalf("interrupted = %q", parked)
	}
	if p := decodeParked(t, parked[0]); p.Item != schedMember(3) || p.Host != "dead" {
		t.Fatalf("interrupted entry %+v", p)
	}
	if r.Client.Exists(ctx, dk.Processing, dk.Dialing, dk.Invited, dk.Scores).Val() != 0 ||
		r.Client.SIsMember(ctx, dk.Holders, "dead").Val() {
		t.Fatal("dead host's claim keys or holder entry left")
	}
	// The dead node, if it was only slow, must not dial what it lost.
	if err := dead.Mark(ctx, schedMember(1)); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark by the recovered host = %v, want ErrClaimGone", err)
	}
	if err := dead.Ack(ctx, schedMember(3)); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("ack by the recovered host = %v, want ErrClaimGone", err)
	}
	c, next, err := live.ClaimDue(ctx, 10)
	if err != nil || len(c) != 2 || c[0].Member != schedMember(1) || c[0].Score != scores[schedMember(1)] || !math.IsNaN(next) {
		t.Fatalf("claims after recovery = %+v, next %v, %v", c, next, err)
	}
}

// A member the integrator adds again while its first claim is in flight
// is not claimed a second time by the same node until the first is done.
func TestClaimDueScheduledDefersAMemberAlreadyInFlight(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	k := l.Keys("")
	now := schedRedisNow(t, r)
	s.AddScheduled(ctx, "m", now-5)
	if c, _, err := l.ClaimDue(ctx, 10); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := l.Mark(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	// The integrator adds the same member again while its call runs.
	s.AddScheduled(ctx, "m", now-1)
	c, next, err := l.ClaimDue(ctx, 10)
	if err != nil || len(c) != 0 || next <= now {
		t.Fatalf("claim of a member in flight = %v, next %v (now %v), %v", c, next, now, err)
	}
	if m, u := copiesOf(t, r, k, "m"); m != 1 || u != 0 {
		t.Fatalf("the first claim: %d marked, %d unmarked copies, want 1 marked", m, u)
	}
	if v, err := r.Client.HGet(ctx, k.Scores, "m").Float64(); err != nil || v != now-5 {
		t.Fatalf("the first claim's score became %v, %v", v, err)
	}
	if err := l.Ack(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	// The second copy is dialed after the first is done.
	testenv.WaitFor(t, 5*time.Second, func() error {
		c, _, err := l.ClaimDue(ctx, 10)
		if err != nil {
			return err
		}
		if len(c) != 1 {
			return fmt.Errorf("claimed %v", c)
		}
		return nil
	})
	if m, u := copiesOf(t, r, k, "m"); m != 0 || u != 1 {
		t.Fatalf("the second claim: %d marked, %d unmarked copies, want 1 unmarked", m, u)
	}
}

func TestListScheduled(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		s.AddScheduled(ctx, fmt.Sprint("m", i), float64(i*10))
	}
	show := func(cs []Claim) string {
		out := ""
		for _, c := range cs {
			out += c.Member + "@" + strconv.FormatFloat(c.Score, 'f', -1, 64) + " "
		}
		return out
	}
	got, err := s.ListScheduled(ctx, 15, 45, 0)
	if err != nil || show(got) != "m2@20 m3@30 m4@40 " {
		t.Fatalf("list 15..45 = %v, %v", got, err)
	}
	got, err = s.ListScheduled(ctx, math.Inf(-1), math.Inf(1), 2)
	if err != nil || show(got) != "m1@10 m2@20 " {
		t.Fatalf("list all, limit 2 = %v, %v", got, err)
	}
	if err := hostStore(r, "n9").ScheduleLedger().EnsureHolder(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ScheduleLedger().Holders(ctx); err != nil || len(h) != 1 || h[0] != "n9" {
		t.Fatalf("holders = %v, %v", h, err)
	}
}
