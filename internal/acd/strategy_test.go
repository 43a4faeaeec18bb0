package acd

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// clock is the service's injected time; tests move it by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fixture is one domain's store and a Service over it, on a shared Redis.
type fixture struct {
	st  *store.Store
	s   *Service
	clk *clock
	t0  time.Time
}

// newFixture builds a store for domain on r and a Service whose clock
// starts at t0. t0 is near the real time because bindings are kept in
// Redis with a TTL taken from the wall clock.
func newFixture(t *testing.T, r *testenv.Redis, domain string) *fixture {
	t.Helper()
	t0 := time.Now().Truncate(time.Second)
	st := store.NewWithClient(r.Client, store.Config{Domain: domain, Host: "A"})
	clk := &clock{t: t0}
	s, err := New(Config{}, Deps{Store: st, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, s: s, clk: clk, t0: t0}
}

// register gives ext a live binding, as a phone that registered.
func (f *fixture) register(t *testing.T, ext string) {
	t.Helper()
	contact := "sip:" + ext + "@127.0.0.1:5070"
	b := store.Binding{ID: contact, Ext: ext, Node: "A", Transport: "udp", Contact: contact, Source: "127.0.0.1:5070",
		UserAgent: "phone/1.0", Expires: f.t0.Add(time.Hour), Registered: f.t0}
	if err := f.st.PutBinding(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) setState(t *testing.T, ext, state, reason string, at time.Time) {
	t.Helper()
	if err := f.st.SetAgentState(context.Background(), ext, state, reason, at); err != nil {
		t.Fatal(err)
	}
}

// takeCalls has ext answer n calls, the last ending at end (wrap-up 0, so
// it is available since end).
func (f *fixture) takeCalls(t *testing.T, ext string, n int, end time.Time) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		ref := fmt.Sprintf("%s-call-%d", ext, i)
		at := end.Add(-time.Duration(n-i) * time.Minute)
		if ok, err := f.st.OfferCall(ctx, ext, ref, at); !ok || err != nil {
			t.Fatalf("OfferCall %s to %s = %v, %v", ref, ext, ok, err)
		}
		if err := f.st.CallAnswered(ctx, ext, ref, at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		callEnd := at.Add(30 * time.Second)
		if i == n-1 {
			callEnd = end
		}
		if err := f.st.CallEnded(ctx, ext, ref, 0, callEnd); err != nil {
			t.Fatal(err)
		}
	}
}

func agents(exts ...string) []store.QueueAgent {
	out := make([]store.QueueAgent, len(exts))
	for i, e := range exts {
		out[i] = store.QueueAgent{Ext: e, Level: 1}
	}
	return out
}

func (f *fixture) order(t *testing.T, q store.Queue) []string {
	t.Helper()
	cs, err := f.s.candidates(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Ext
	}
	return out
}

func wantOrder(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: candidates %v, want %v", what, got, want)
	}
}

// Each strategy orders the registered agents as documented; an agent with
// no live binding is never a candidate, however long it has been idle.
func TestCandidatesOrderPerStrategy(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()

	t.Run("longest_idle", func(t *testing.T) {
		f := newFixture(t, r, "li")
		for _, e := range []string{"1001", "1002", "1003", "1004"} {
			f.register(t, e)
		}
		// 1009 idles longest but is not registered.
		f.setState(t, "1009", store.AgentAvailable, "", f.t0.Add(-time.Hour))
		f.setState(t, "1003", store.AgentAvailable, "", f.t0.Add(-40*time.Second))
		f.setState(t, "1001", store.AgentAvailable, "", f.t0.Add(-30*time.Second))
		f.setState(t, "1004", store.AgentAvailable, "", f.t0.Add(-20*time.Second))
		f.setState(t, "1002", store.AgentAvailable, "", f.t0.Add(-10*time.Second))
		q := store.Queue{Name: "q", Strategy: store.StrategyLongestIdle, Agents: agents("1001", "1002", "1003", "1004", "1009")}
		wantOrder(t, "longest_idle", f.order(t, q), []string{"1003", "1001", "1004", "1002"})
	})

	t.Run("fewest_calls", func(t *testing.T) {
		f := newFixture(t, r, "fc")
		for _, e := range []string{"1001", "1002", "1003", "1004"} {
			f.register(t, e)
		}
		base := f.t0.Add(-time.Hour)
		f.setState(t, "1001", store.AgentAvailable, "", base)
		f.setState(t, "1002", store.AgentAvailable, "", base)
		f.setState(t, "1003", store.AgentAvailable, "", base)
		f.setState(t, "1004", store.AgentAvailable, "", base)
		f.takeCalls(t, "1001", 2, f.t0.Add(-50*time.Second))
		// 1003 and 1004 took one call each; 1004's ended first, so it has
		// been idle longer and goes first.
		f.takeCalls(t, "1003", 1, f.t0.Add(-10*time.Second))
		f.takeCalls(t, "1004", 1, f.t0.Add(-20*time.Second))
		f.setState(t, "1002", store.AgentAvailable, "", f.t0.Add(-5*time.Second)) // no calls, idle shortest
		f.setState(t, "1009", store.AgentAvailable, "", f.t0.Add(-time.Hour))     // no calls, not registered
		st, err := f.st.AgentStates(ctx, []string{"1001", "1003"}, f.t0)
		if err != nil || st["1001"].Calls != 2 || st["1003"].Calls != 1 || !st["1003"].LastCallEnd.Equal(f.t0.Add(-10*time.Second)) {
			t.Fatalf("agent states after the calls: %+v %v", st, err)
		}
		q := store.Queue{Name: "q", Strategy: store.StrategyFewestCalls, Agents: agents("1001", "1002", "1003", "1004", "1009")}
		wantOrder(t, "fewest_calls", f.order(t, q), []string{"1002", "1004", "1003", "1001"})
	})

	t.Run("top_down", func(t *testing.T) {
		f := newFixture(t, r, "td")
		for _, e := range []string{"1001", "1002", "1003"} {
			f.register(t, e)
		}
		// States and idle times do not matter: the written order does.
		f.setState(t, "1001", store.AgentAvailable, "", f.t0.Add(-time.Minute))
		f.setState(t, "1002", store.AgentAvailable, "", f.t0.Add(-time.Hour))
		f.setState(t, "1003", store.AgentAvailable, "", f.t0)
		f.setState(t, "1009", store.AgentAvailable, "", f.t0)
		q := store.Queue{Name: "q", Strategy: store.StrategyTopDown, Agents: agents("1003", "1009", "1001", "1002")}
		wantOrder(t, "top_down", f.order(t, q), []string{"1003", "1001", "1002"})
	})

	t.Run("round_robin", func(t *testing.T) {
		f := newFixture(t, r, "rr")
		for _, e := range []string{"1001", "1002", "1003", "1004"} {
			f.register(t, e)
			f.setState(t, e, store.AgentAvailable, "", f.t0.Add(-time.Minute))
		}
		q := store.Queue{Name: "q", Strategy: store.StrategyRoundRobin, Agents: agents("1001", "1002", "1003", "1004")}
		wantOrder(t, "round_robin before any offer", f.order(t, q), []string{"1001", "1002", "1003", "1004"})
		if _, err := f.st.JoinQueue(ctx, "q", "c1", 0, f.t0); err != nil {
			t.Fatal(err)
		}
		res, err := f.st.Offer(ctx, "q", "c1", []store.Candidate{{Ext: "1002", Level: 1}}, false, true, f.t0)
		if err != nil || !slices.Equal(res.Agents, []string{"1002"}) {
			t.Fatalf("Offer = %+v, %v", res, err)
		}
		if last, err := f.st.LastOffered(ctx, "q"); last != "1002" || err != nil {
			t.Fatalf("LastOffered = %q, %v", last, err)
		}
		wantOrder(t, "round_robin after 1002", f.order(t, q), []string{"1003", "1004", "1001", "1002"})
		// The last of the list offered: the rotation wraps around.
		if _, err := f.st.JoinQueue(ctx, "q", "c2", 0, f.t0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Offer(ctx, "q", "c2", []store.Candidate{{Ext: "1004", Level: 1}}, false, true, f.t0); err != nil {
			t.Fatal(err)
		}
		wantOrder(t, "round_robin after 1004", f.order(t, q), []string{"1001", "1002", "1003", "1004"})
		// The agent offered last unregistered since: the rotation goes on
		// after its place, not from the top.
		f.setState(t, "1002", store.AgentAvailable, "", f.t0) // free again after c1
		if _, err := f.st.JoinQueue(ctx, "q", "c3", 0, f.t0); err != nil {
			t.Fatal(err)
		}
		if res, err := f.st.Offer(ctx, "q", "c3", []store.Candidate{{Ext: "1002", Level: 1}}, false, true, f.t0); err != nil || len(res.Agents) != 1 {
			t.Fatalf("Offer = %+v, %v", res, err)
		}
		if err := f.st.RemoveBinding(ctx, "1002", "sip:1002@127.0.0.1:5070"); err != nil {
			t.Fatal(err)
		}
		f.clk.set(f.t0.Add(2 * time.Second)) // past the registration cache
		wantOrder(t, "round_robin after 1002 left", f.order(t, q), []string{"1003", "1004", "1001"})
	})

	t.Run("release keeps the place", func(t *testing.T) {
		f := newFixture(t, r, "rel")
		for i, e := range []string{"1001", "1002", "1003"} {
			f.register(t, e)
			f.setState(t, e, store.AgentAvailable, "", f.t0.Add(time.Duration(i-10)*time.Minute))
		}
		q := store.Queue{Name: "q", Strategy: store.StrategyLongestIdle, Agents: agents("1001", "1002", "1003")}
		if _, err := f.st.JoinQueue(ctx, "q", "c1", 0, f.t0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Offer(ctx, "q", "c1", []store.Candidate{{Ext: "1001", Level: 1}}, false, false, f.t0); err != nil {
			t.Fatal(err)
		}
		// The caller hung up while 1001 rang: 1001 is still the longest idle.
		if err := f.st.ReleaseAgent(ctx, "1001", "c1", f.t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		wantOrder(t, "longest_idle after a release", f.order(t, q), []string{"1001", "1002", "1003"})
	})

	t.Run("random", func(t *testing.T) {
		f := newFixture(t, r, "rnd")
		for _, e := range []string{"1001", "1002", "1003"} {
			f.register(t, e)
			f.setState(t, e, store.AgentAvailable, "", f.t0)
		}
		f.setState(t, "1009", store.AgentAvailable, "", f.t0)
		q := store.Queue{Name: "q", Strategy: store.StrategyRandom, Agents: agents("1001", "1002", "1003", "1009")}
		seen := map[string]int{}
		// 6 orders, 600 draws: one order missing by chance is ~6*(5/6)^600.
		for range 600 {
			got := f.order(t, q)
			sorted := slices.Clone(got)
			slices.Sort(sorted)
			if !slices.Equal(sorted, []string{"1001", "1002", "1003"}) {
				t.Fatalf("random: candidates %v, want each registered agent once", got)
			}
			seen[strings.Join(got, ",")]++
		}
		if len(seen) != 6 {
			t.Errorf("random: %d of the 6 orders seen in 600 draws: %v", len(seen), seen)
		}
	})

	t.Run("levels", func(t *testing.T) {
		f := newFixture(t, r, "lvl")
		for _, e := range []string{"1001", "1002", "1003", "1004"} {
			f.register(t, e)
		}
		f.setState(t, "1001", store.AgentAvailable, "", f.t0.Add(-40*time.Second))
		f.setState(t, "1003", store.AgentAvailable, "", f.t0.Add(-30*time.Second))
		f.setState(t, "1002", store.AgentAvailable, "", f.t0.Add(-20*time.Second))
		f.setState(t, "1004", store.AgentAvailable, "", f.t0.Add(-10*time.Second))
		q := store.Queue{Name: "q", Strategy: store.StrategyLongestIdle, Agents: []store.QueueAgent{
			{Ext: "1001", Level: 2}, {Ext: "1002", Level: 1}, {Ext: "1003", Level: 2}, {Ext: "1004", Level: 1}}}
		cs, err := f.s.candidates(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		want := []store.Candidate{{Ext: "1002", Level: 1}, {Ext: "1004", Level: 1}, {Ext: "1001", Level: 2}, {Ext: "1003", Level: 2}}
		if !slices.Equal(cs, want) {
			t.Errorf("levels: candidates %+v, want %+v (tier 1 first, longest idle within)", cs, want)
		}
		q.Strategy = store.StrategyTopDown
		wantOrder(t, "levels with top_down", f.order(t, q), []string{"1002", "1004", "1001", "1003"})
	})
}

// canAnswer counts the registered agents neither paused nor logged out:
// busy agents count (they will be free), unregistered ones do not.
func TestCanAnswer(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	f := newFixture(t, r, "ca")
	for _, e := range []string{"1001", "1002", "1003", "1004", "1005"} {
		f.register(t, e)
	}
	f.setState(t, "1001", store.AgentAvailable, "", f.t0)
	f.setState(t, "1002", store.AgentPaused, "lunch", f.t0)
	f.setState(t, "1003", store.AgentLoggedOut, "", f.t0)
	f.setState(t, "1004", store.AgentAvailable, "", f.t0)
	if ok, err := f.st.OfferCall(ctx, "1004", "c1", f.t0); !ok || err != nil {
		t.Fatalf("OfferCall = %v, %v", ok, err)
	}
	if err := f.st.CallAnswered(ctx, "1004", "c1", f.t0); err != nil {
		t.Fatal(err)
	}
	// 1005 registered but never got a state: logged out.
	f.setState(t, "1009", store.AgentAvailable, "", f.t0) // not registered
	q := store.Queue{Name: "q", Strategy: store.StrategyLongestIdle, Agents: agents("1001", "1002", "1003", "1004", "1005", "1009")}
	n, err := f.s.canAnswer(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("canAnswer = %d, want 2 (1001 available, 1004 on a call)", n)
	}
	q.Agents = agents("1002", "1003", "1005", "1009")
	if n, err := f.s.canAnswer(ctx, q); n != 0 || err != nil {
		t.Errorf("canAnswer of paused, logged out and unregistered agents = %d, %v; want 0", n, err)
	}
}

// Status shows the line, the agents by state (an agent without a live
// binding as logged out), the service level of the last hour (answered
// within 20 s over every caller that left) and the entries that do not
// decode.
func TestStatus(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	f := newFixture(t, r, "stat")
	t0 := f.t0
	if err := f.st.SetQueue(ctx, "support", `{"params":{"agents":["1001","1002","1003","1004","1005"],"strategy":"top_down"}}`); err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetQueue(ctx, "empty", `{"params":{"agents":[]}}`); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.HSet(ctx, f.st.QueuesKey(), "broken", `{"params":{"strategy":"loudest"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"1001", "1003", "1004"} {
		f.register(t, e)
	}
	f.setState(t, "1001", store.AgentAvailable, "", t0.Add(-90*time.Second))
	f.setState(t, "1002", store.AgentAvailable, "", t0) // not registered
	f.setState(t, "1003", store.AgentPaused, "lunch", t0.Add(-5*time.Minute))
	f.setState(t, "1004", store.AgentAvailable, "", t0.Add(-time.Hour))
	if ok, err := f.st.OfferCall(ctx, "1004", "talking", t0.Add(-time.Minute)); !ok || err != nil {
		t.Fatalf("OfferCall = %v, %v", ok, err)
	}
	if err := f.st.CallAnswered(ctx, "1004", "talking", t0.Add(-50*time.Second)); err != nil {
		t.Fatal(err)
	}
	// 1005 never logged in.

	// Outcomes: answered after 5 s, 20 s (the threshold counts) and 21 s,
	// one abandoned, one overflowed: 2 within over 5.
	for i, o := range []struct {
		outcome string
		hold    time.Duration
	}{{store.OutcomeAnswered, 5 * time.Second}, {store.OutcomeAnswered, 20 * time.Second}, {store.OutcomeAnswered, 21 * time.Second},
		{store.OutcomeAbandoned, 40 * time.Second}, {store.OutcomeOverflow, 60 * time.Second}} {
		ref := fmt.Sprintf("done-%d", i)
		at := t0.Add(-10 * time.Minute)
		if _, err := f.st.JoinQueue(ctx, "support", ref, 0, at.Add(-o.hold)); err != nil {
			t.Fatal(err)
		}
		if o.outcome == store.OutcomeAnswered {
			if err := f.st.CallerConnected(ctx, "support", ref, "1001", o.hold, at); err != nil {
				t.Fatal(err)
			}
			if err := f.st.LeaveQueue(ctx, "support", ref, "", 0, at.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		} else if err := f.st.LeaveQueue(ctx, "support", ref, o.outcome, o.hold, at); err != nil {
			t.Fatal(err)
		}
	}
	// Two callers wait, the first for 30 s.
	if _, err := f.st.JoinQueue(ctx, "support", "w1", 0, t0.Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.JoinQueue(ctx, "support", "w2", 0, t0.Add(-3*time.Second)); err != nil {
		t.Fatal(err)
	}

	qs, bad, err := f.s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.Contains(bad["broken"], "params.strategy") || !strings.Contains(bad["broken"], f.st.QueuesKey()) {
		t.Errorf("invalid entries %v, want \"broken\" naming the key and params.strategy", bad)
	}
	if len(qs) != 2 || qs[0].Name != "empty" || qs[1].Name != "support" {
		t.Fatalf("queues %+v, want empty and support", qs)
	}
	if e := qs[0]; e.Waiting != 0 || e.ServiceLevel != nil || len(e.AgentsByState) != 0 || e.Strategy != store.StrategyLongestIdle {
		t.Errorf("empty queue: %+v", e)
	}
	s := qs[1]
	if s.Waiting != 2 || s.LongestWaitS != 30 || s.Strategy != store.StrategyTopDown {
		t.Errorf("support: waiting %d, longest_wait_s %d, strategy %q; want 2, 30, top_down", s.Waiting, s.LongestWaitS, s.Strategy)
	}
	wantStates := map[string]int{store.AgentAvailable: 1, store.AgentLoggedOut: 2, store.AgentPaused: 1, store.AgentOnCall: 1}
	if !mapsEqual(s.AgentsByState, wantStates) {
		t.Errorf("agents_by_state %v, want %v", s.AgentsByState, wantStates)
	}
	if s.Answered != 3 || s.AnsweredWithin != 2 || s.Abandoned != 1 || s.Overflowed != 1 || s.ServiceLevelS != 20 {
		t.Errorf("outcomes: answered %d within %d abandoned %d overflowed %d (threshold %d s)",
			s.Answered, s.AnsweredWithin, s.Abandoned, s.Overflowed, s.ServiceLevelS)
	}
	if s.ServiceLevel == nil || math.Abs(*s.ServiceLevel-0.4) > 1e-9 {
		t.Errorf("service_level %v, want 0.4", s.ServiceLevel)
	}
	byExt := map[string]AgentStatus{}
	for _, a := range s.Agents {
		byExt[a.Ext] = a
	}
	if a := byExt["1002"]; a.State != store.AgentLoggedOut || a.Registered {
		t.Errorf("unregistered available agent: %+v, want logged_out", a)
	}
	if a := byExt["1003"]; a.State != store.AgentPaused || a.Reason != "lunch" || !a.Registered || a.SinceS != 300 {
		t.Errorf("paused agent: %+v", a)
	}
	if a := byExt["1004"]; a.State != store.AgentOnCall || a.CallRef != "talking" || a.Calls != 1 || a.SinceS != 50 {
		t.Errorf("agent on a call: %+v", a)
	}
	if a := byExt["1001"]; a.State != store.AgentAvailable || a.SinceS != 90 || !a.Registered {
		t.Errorf("available agent: %+v", a)
	}

	// An hour later the outcomes have left the window: no service level.
	f.clk.set(t0.Add(time.Hour + 11*time.Minute))
	qs, _, err = f.s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := qs[1]; s.ServiceLevel != nil || s.Answered != 0 {
		t.Errorf("an hour later: service_level %v, answered %d; want null, 0", s.ServiceLevel, s.Answered)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
