package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
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

func TestScheduleKeysShareTheNumbersHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{Domain: "acme"})
	if got := s.ScheduleConfigKey(); got != "cti_schedule_dialer_config@acme" {
		t.Fatalf("config key %q", got)
	}
	if got := s.ScheduleNumbersKey(); got != "cti_schedule_dialer_number@acme" {
		t.Fatalf("numbers key %q", got)
	}
	if got := s.ScheduleProcessingKey("n1"); got != "redial:{cti_schedule_dialer_number@acme}:processing:n1" {
		t.Fatalf("processing key %q", got)
	}
	for _, domain := range []string{"acme", "a{b}", "x{"} {
		s := NewWithClient(nil, Config{Domain: domain})
		want := hashTag(s.ScheduleNumbersKey())
		for _, k := range []string{s.ScheduleProcessingKey("n1"), s.ScheduleHoldersKey(),
			s.ScheduleInterruptedKey(), s.ScheduleInvalidKey()} {
			if got := hashTag(k); got != want {
				t.Errorf("domain %q: %s hashes on %q, the numbers key on %q", domain, k, got, want)
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
		claims []ScheduledClaim
		next   float64
		err    error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for h, host := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, next, err := s.ClaimDueScheduled(ctx, host, 7)
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
			if c.Score != scores[c.Member] {
				t.Fatalf("%s claimed with score %v, added with %v", c.Member, c.Score, scores[c.Member])
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
	na := r.Client.HLen(ctx, s.ScheduleProcessingKey("a")).Val()
	nb := r.Client.HLen(ctx, s.ScheduleProcessingKey("b")).Val()
	if na+nb != due || int(na) != len(results[0].claims) {
		t.Fatalf("processing hashes hold %d + %d claims", na, nb)
	}
	holders, err := s.ScheduleHolders(ctx)
	sort.Strings(holders)
	if err != nil || len(holders) == 0 || len(holders) > 2 {
		t.Fatalf("holders = %v, %v", holders, err)
	}
}

func TestClaimDueScheduledWaitsForTheScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	at := schedRedisNow(t, r) + 0.4
	if err := s.AddScheduled(ctx, "m", at); err != nil {
		t.Fatal(err)
	}
	c, next, err := s.ClaimDueScheduled(ctx, "n1", 10)
	if err != nil || len(c) != 0 || next != at {
		t.Fatalf("claim before due = %v, next %v (want %v), %v", c, next, at, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		c, next, err := s.ClaimDueScheduled(ctx, "n1", 10)
		if err != nil {
			return err
		}
		if len(c) == 0 {
			return fmt.Errorf("not claimed yet")
		}
		if len(c) != 1 || c[0].Member != "m" || c[0].Score != at || next != 0 {
			t.Fatalf("claim = %+v, next %v", c, next)
		}
		return nil
	})
	if now := schedRedisNow(t, r); now < at {
		t.Fatalf("claimed at server time %v, before its score %v", now, at)
	}
}

type schedClaimRecord struct {
	Score     any   `json:"score"`
	ClaimedAt int64 `json:"claimed_at"`
	Invited   bool  `json:"invited"`
}

func readSchedClaimRecord(t *testing.T, r *testenv.Redis, key, member string) schedClaimRecord {
	t.Helper()
	v, err := r.Client.HGet(context.Background(), key, member).Result()
	if err != nil {
		t.Fatalf("HGET %s: %v", key, err)
	}
	var c schedClaimRecord
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		t.Fatalf("claim record %q is not JSON: %v", v, err)
	}
	return c
}

func TestRecoveryRestoresTheExactScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	// 17 significant digits: Lua's default number printing (14) would
	// round this score.
	const precise = 1600000000.1234567
	for m, sc := range map[string]float64{"precise": precise, "always": math.Inf(-1)} {
		if err := s.AddScheduled(ctx, m, sc); err != nil {
			t.Fatal(err)
		}
	}
	claims, _, err := s.ClaimDueScheduled(ctx, "n1", 10)
	if err != nil || len(claims) != 2 {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	if claims[0].Member != "always" || !math.IsInf(claims[0].Score, -1) || claims[1].Score != precise {
		t.Fatalf("claims = %+v", claims)
	}
	rec := readSchedClaimRecord(t, r, s.ScheduleProcessingKey("n1"), "precise")
	if rec.Invited || rec.ClaimedAt < 1_600_000_000_000 || rec.Score != precise {
		t.Fatalf("claim record %+v", rec)
	}
	if rec := readSchedClaimRecord(t, r, s.ScheduleProcessingKey("n1"), "always"); rec.Score != "-inf" {
		t.Fatalf("claim record of -inf %+v", rec)
	}
	rq, in, err := s.RecoverOwnScheduled(ctx, "n1")
	if err != nil || rq != 2 || in != 0 {
		t.Fatalf("recover own = %d, %d, %v", rq, in, err)
	}
	if got := r.Client.ZScore(ctx, s.ScheduleNumbersKey(), "precise").Val(); got != precise {
		t.Fatalf("score after recovery %v, want %v", got, precise)
	}
	if got := r.Client.ZScore(ctx, s.ScheduleNumbersKey(), "always").Val(); !math.IsInf(got, -1) {
		t.Fatalf("score after recovery %v, want -inf", got)
	}
}

func TestRescheduleScheduledOnlyBeforeTheInvite(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	now := schedRedisNow(t, r)
	s.AddScheduled(ctx, "m1", now-1)
	s.AddScheduled(ctx, "m2", now-1)
	claims, _, err := s.ClaimDueScheduled(ctx, "n1", 10)
	if err != nil || len(claims) != 2 {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	proc := s.ScheduleProcessingKey("n1")
	// No free line: back at now+60.
	if err := s.RescheduleScheduled(ctx, "n1", "m1", now+60.5); err != nil {
		t.Fatal(err)
	}
	if got := r.Client.ZScore(ctx, s.ScheduleNumbersKey(), "m1").Val(); got != now+60.5 {
		t.Fatalf("rescheduled score %v, want %v", got, now+60.5)
	}
	if r.Client.HExists(ctx, proc, "m1").Val() {
		t.Fatal("rescheduled member still claimed")
	}
	// Once the INVITE may have gone out, the member is never put back.
	if err := s.MarkScheduledInvited(ctx, "n1", "m2"); err != nil {
		t.Fatal(err)
	}
	if rec := readSchedClaimRecord(t, r, proc, "m2"); !rec.Invited {
		t.Fatalf("record after mark %+v", rec)
	}
	if err := s.RescheduleScheduled(ctx, "n1", "m2", now+60); !errors.Is(err, ErrClaimInvited) {
		t.Fatalf("reschedule of an invited claim = %v, want ErrClaimInvited", err)
	}
	if !r.Client.HExists(ctx, proc, "m2").Val() || r.Client.ZScore(ctx, s.ScheduleNumbersKey(), "m2").Err() == nil {
		t.Fatal("refused reschedule changed something")
	}
	if err := s.AckScheduled(ctx, "n1", "m2"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"ack":        s.AckScheduled(ctx, "n1", "m2"),
		"mark":       s.MarkScheduledInvited(ctx, "n1", "m2"),
		"reschedule": s.RescheduleScheduled(ctx, "n1", "m2", now),
		"invalid":    s.InvalidScheduled(ctx, "n1", "m2", "x"),
	} {
		if !errors.Is(err, ErrClaimGone) {
			t.Errorf("%s of a finished claim = %v, want ErrClaimGone", name, err)
		}
	}
	if n := r.Client.Exists(ctx, proc).Val(); n != 0 {
		t.Fatal("processing hash left after the last ack")
	}
}

func TestInvalidScheduledParksTheMember(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	s.AddScheduled(ctx, "not json", 1)
	if c, _, err := s.ClaimDueScheduled(ctx, "n1", 1); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := s.InvalidScheduled(ctx, "n1", "not json", "member is not JSON"); err != nil {
		t.Fatal(err)
	}
	in := lrange(t, r, s.ScheduleInvalidKey())
	if len(in) != 1 {
		t.Fatalf("invalid = %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "not json" || p.Reason != "member is not JSON" || p.Host != "n1" {
		t.Fatalf("invalid entry %+v", p)
	}
	if r.Client.HLen(ctx, s.ScheduleProcessingKey("n1")).Val() != 0 {
		t.Fatal("invalid member still claimed")
	}
}

func TestRecoverScheduledParksInvitedAndRequeuesTheRest(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	now := schedRedisNow(t, r)
	scores := map[string]float64{schedMember(1): now - 30.5, schedMember(2): now - 20.25, schedMember(3): now - 10}
	for m, sc := range scores {
		s.AddScheduled(ctx, m, sc)
	}
	if c, _, err := s.ClaimDueScheduled(ctx, "dead", 10); err != nil || len(c) != 3 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := s.MarkScheduledInvited(ctx, "dead", schedMember(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "dead", time.Minute); err != nil {
		t.Fatal(err)
	}
	rq, in, err := s.RecoverScheduled(ctx, "dead")
	if !errors.Is(err, ErrHostAlive) || rq != 0 || in != 0 {
		t.Fatalf("recover of a live host = %d, %d, %v", rq, in, err)
	}
	if n := r.Client.HLen(ctx, s.ScheduleProcessingKey("dead")).Val(); n != 3 {
		t.Fatalf("live host's processing hash has %d claims, want 3 untouched", n)
	}
	r.Client.Del(ctx, s.AliveKey("dead"))
	rq, in, err = s.RecoverScheduled(ctx, "dead")
	if err != nil || rq != 2 || in != 1 {
		t.Fatalf("recover = %d, %d, %v", rq, in, err)
	}
	for _, m := range []string{schedMember(1), schedMember(2)} {
		if got := r.Client.ZScore(ctx, s.ScheduleNumbersKey(), m).Val(); got != scores[m] {
			t.Fatalf("%s back with score %v, want its original %v", m, got, scores[m])
		}
	}
	parked := lrange(t, r, s.ScheduleInterruptedKey())
	if len(parked) != 1 {
		t.Fatalf("interrupted = %q", parked)
	}
	if p := decodeParked(t, parked[0]); p.Item != schedMember(3) || p.Host != "dead" {
		t.Fatalf("interrupted entry %+v", p)
	}
	if r.Client.Exists(ctx, s.ScheduleProcessingKey("dead")).Val() != 0 ||
		r.Client.SIsMember(ctx, s.ScheduleHoldersKey(), "dead").Val() {
		t.Fatal("dead host's processing hash or holder entry left")
	}
	// The dead node, if it was only slow, must not dial what it lost.
	if err := s.MarkScheduledInvited(ctx, "dead", schedMember(1)); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark by the recovered host = %v, want ErrClaimGone", err)
	}
	c, next, err := s.ClaimDueScheduled(ctx, "live", 10)
	if err != nil || len(c) != 2 || c[0].Member != schedMember(1) || next != 0 {
		t.Fatalf("claims after recovery = %+v, next %v, %v", c, next, err)
	}
}

func TestClaimDueScheduledDefersAMemberAlreadyInFlight(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	now := schedRedisNow(t, r)
	s.AddScheduled(ctx, "m", now-5)
	if c, _, err := s.ClaimDueScheduled(ctx, "n1", 10); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := s.MarkScheduledInvited(ctx, "n1", "m"); err != nil {
		t.Fatal(err)
	}
	// The integrator adds the same member again while its call runs.
	s.AddScheduled(ctx, "m", now-1)
	c, next, err := s.ClaimDueScheduled(ctx, "n1", 10)
	if err != nil || len(c) != 0 || next <= now {
		t.Fatalf("claim of a member in flight = %v, next %v (now %v), %v", c, next, now, err)
	}
	if rec := readSchedClaimRecord(t, r, s.ScheduleProcessingKey("n1"), "m"); !rec.Invited {
		t.Fatal("the first claim's invited mark was overwritten")
	}
	if err := s.AckScheduled(ctx, "n1", "m"); err != nil {
		t.Fatal(err)
	}
	// The second copy is dialed after the first is done.
	testenv.WaitFor(t, 5*time.Second, func() error {
		c, _, err := s.ClaimDueScheduled(ctx, "n1", 10)
		if err != nil {
			return err
		}
		if len(c) != 1 {
			return fmt.Errorf("claimed %v", c)
		}
		return nil
	})
}

func TestListScheduled(t *testing.T) {
	s, _ := newDialerStore(t, "n1")
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		s.AddScheduled(ctx, fmt.Sprint("m", i), float64(i*10))
	}
	got, err := s.ListScheduled(ctx, 15, 45, 0)
	if err != nil || fmt.Sprint(got) != "[{m2 20} {m3 30} {m4 40}]" {
		t.Fatalf("list 15..45 = %v, %v", got, err)
	}
	got, err = s.ListScheduled(ctx, math.Inf(-1), math.Inf(1), 2)
	if err != nil || fmt.Sprint(got) != "[{m1 10} {m2 20}]" {
		t.Fatalf("list all, limit 2 = %v, %v", got, err)
	}
	if err := s.EnsureScheduleHolder(ctx, "n9"); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ScheduleHolders(ctx); err != nil || len(h) != 1 || h[0] != "n9" {
		t.Fatalf("holders = %v, %v", h, err)
	}
}
