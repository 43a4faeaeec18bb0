package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/testenv"
)

var acdT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func readAgentState(t *testing.T, s *Store, ext string, now time.Time) AgentState {
	t.Helper()
	m, err := s.AgentStates(context.Background(), []string{ext}, now)
	if err != nil {
		t.Fatal(err)
	}
	return m[ext]
}

// An agent goes available -> ringing -> on_call -> wrapup -> available
// with its counters kept, the wrap-up ending by the injected clock.
func TestAgentStateMachineAndWrapup(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme"})
	ctx := context.Background()
	if got := s.AgentStateKey("1001"); got != "redial:{acd:acme}:agent:1001" {
		t.Fatalf("AgentStateKey = %q", got)
	}

	m, err := s.AgentStates(ctx, []string{"1001", "1002"}, acdT0)
	if err != nil || m["1001"].State != AgentLoggedOut || m["1002"].State != AgentLoggedOut {
		t.Fatalf("unknown agents = %+v, %v; want logged_out", m, err)
	}
	if ok, err := s.OfferCall(ctx, "1001", "c0", acdT0); ok || err != nil {
		t.Fatalf("OfferCall to a logged-out agent = %v, %v", ok, err)
	}
	if err := s.SetAgentState(ctx, "1001", AgentAvailable, "", acdT0); err != nil {
		t.Fatal(err)
	}
	if a := readAgentState(t, s, "1001", acdT0); a.State != AgentAvailable || !a.Since.Equal(acdT0) {
		t.Fatalf("after SetAgentState = %+v", a)
	}

	t1 := acdT0.Add(time.Second)
	if ok, err := s.OfferCall(ctx, "1001", "c1", t1); !ok || err != nil {
		t.Fatalf("OfferCall = %v, %v", ok, err)
	}
	if a := readAgentState(t, s, "1001", t1); a.State != AgentRinging || a.CallRef != "c1" || !a.Since.Equal(t1) {
		t.Fatalf("ringing = %+v", a)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "c2", t1); ok {
		t.Fatal("a ringing agent was offered a second call")
	}
	t2 := t1.Add(3 * time.Second)
	if err := s.CallAnswered(ctx, "1001", "c1", t2); err != nil {
		t.Fatal(err)
	}
	if a := readAgentState(t, s, "1001", t2); a.State != AgentOnCall || a.CallRef != "c1" || a.Calls != 1 || !a.Since.Equal(t2) {
		t.Fatalf("on_call = %+v", a)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "c2", t2); ok {
		t.Fatal("an agent on a call was offered a second call")
	}
	t3 := t2.Add(time.Minute)
	if err := s.CallEnded(ctx, "1001", "c1", 5*time.Second, t3); err != nil {
		t.Fatal(err)
	}
	a := readAgentState(t, s, "1001", t3)
	if a.State != AgentWrapup || a.CallRef != "" || !a.LastCallEnd.Equal(t3) || !a.WrapupUntil.Equal(t3.Add(5*time.Second)) {
		t.Fatalf("wrapup = %+v", a)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "c2", t3.Add(4999*time.Millisecond)); ok {
		t.Fatal("an agent in wrap-up was offered a call")
	}
	end := t3.Add(5 * time.Second)
	a = readAgentState(t, s, "1001", end)
	if a.State != AgentAvailable || !a.Since.Equal(end) || a.Calls != 1 || !a.LastCallEnd.Equal(t3) {
		t.Fatalf("after wrap-up = %+v; want available since %v", a, end)
	}
	if ok, err := s.OfferCall(ctx, "1001", "c2", end); !ok || err != nil {
		t.Fatalf("OfferCall after wrap-up = %v, %v", ok, err)
	}
	if err := s.CallAnswered(ctx, "1001", "c2", end); err != nil {
		t.Fatal(err)
	}
	// No wrap-up: straight back to available.
	if err := s.CallEnded(ctx, "1001", "c2", 0, end.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if a := readAgentState(t, s, "1001", end.Add(time.Second)); a.State != AgentAvailable || a.Calls != 2 {
		t.Fatalf("after a call with no wrap-up = %+v", a)
	}

	if err := s.SetAgentState(ctx, "1001", AgentPaused, "lunch", end); err != nil {
		t.Fatal(err)
	}
	if a := readAgentState(t, s, "1001", end); a.State != AgentPaused || a.Reason != "lunch" {
		t.Fatalf("paused = %+v", a)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "c3", end); ok {
		t.Fatal("a paused agent was offered a call")
	}
	if err := s.SetAgentState(ctx, "1001", AgentLoggedOut, "", end); err != nil {
		t.Fatal(err)
	}
	if a := readAgentState(t, s, "1001", end); a.State != AgentLoggedOut || a.Reason != "" {
		t.Fatalf("logged out = %+v", a)
	}

	for _, c := range []struct{ state, reason, want string }{
		{AgentPaused, "", "reason: a paused agent needs one"},
		{AgentPaused, strings.Repeat("x", 65), "reason: 65 characters, at most 64"},
		{AgentPaused, "a\nb", "not printable"},
		{AgentAvailable, "why", "reason: only a paused agent has one"},
		{AgentOnCall, "", `state: "on_call" cannot be set`},
		{"busy", "", `state: "busy" cannot be set`},
	} {
		err := s.SetAgentState(ctx, "1001", c.state, c.reason, end)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `agent "1001"`) {
			t.Errorf("SetAgentState(%q, %q) = %v; want %q", c.state, c.reason, err, c.want)
		}
	}
	if err := s.SetAgentState(ctx, "1001", AgentPaused, strings.Repeat("é", 64), end); err != nil {
		t.Errorf("64-character reason refused: %v", err)
	}
	if err := s.SetAgentState(ctx, "a b", AgentAvailable, "", end); err == nil {
		t.Error("SetAgentState accepted extension \"a b\"")
	}
}

// Offers that go unanswered put the agent back; at max_no_answer in a row
// the agent is paused, and an answer in between starts the count again.
func TestAgentMaxNoAnswerPauses(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	if err := s.SetAgentState(ctx, "1001", AgentAvailable, "", acdT0); err != nil {
		t.Fatal(err)
	}
	miss := func(ref string, max int) bool {
		t.Helper()
		if ok, err := s.OfferCall(ctx, "1001", ref, acdT0); !ok || err != nil {
			t.Fatalf("OfferCall(%s) = %v, %v", ref, ok, err)
		}
		paused, err := s.CallNotAnswered(ctx, "1001", ref, max, acdT0)
		if err != nil {
			t.Fatal(err)
		}
		return paused
	}
	if miss("a", 3) || miss("b", 3) {
		t.Fatal("paused before max_no_answer")
	}
	if a := readAgentState(t, s, "1001", acdT0); a.State != AgentAvailable || a.NoAnswer != 2 {
		t.Fatalf("after two misses = %+v", a)
	}
	// An answered call clears the count.
	if ok, _ := s.OfferCall(ctx, "1001", "c", acdT0); !ok {
		t.Fatal("offer refused")
	}
	if err := s.CallAnswered(ctx, "1001", "c", acdT0); err != nil {
		t.Fatal(err)
	}
	if err := s.CallEnded(ctx, "1001", "c", 0, acdT0); err != nil {
		t.Fatal(err)
	}
	if miss("d", 3) || miss("e", 3) {
		t.Fatal("paused before max_no_answer after an answered call")
	}
	if !miss("f", 3) {
		t.Fatal("not paused at max_no_answer")
	}
	a := readAgentState(t, s, "1001", acdT0)
	if a.State != AgentPaused || a.Reason != ReasonNoAnswer || a.NoAnswer != 3 || a.CallRef != "" {
		t.Fatalf("after max_no_answer = %+v", a)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "g", acdT0); ok {
		t.Fatal("an agent paused for not answering was offered a call")
	}
	// Unpausing starts the count afresh; max 0 never pauses.
	if err := s.SetAgentState(ctx, "1001", AgentAvailable, "", acdT0); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if miss(fmt.Sprint("n", i), 0) {
			t.Fatal("paused with max_no_answer 0")
		}
	}
	if a := readAgentState(t, s, "1001", acdT0); a.State != AgentAvailable || a.NoAnswer != 5 {
		t.Fatalf("after misses with max 0 = %+v", a)
	}
}

// A node holding a call_ref the agent no longer rings or talks for cannot
// move the agent.
func TestAgentStaleCallRefRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	if err := s.SetAgentState(ctx, "1001", AgentAvailable, "", acdT0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "old", acdT0); !ok {
		t.Fatal("offer refused")
	}
	if _, err := s.CallNotAnswered(ctx, "1001", "old", 3, acdT0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.OfferCall(ctx, "1001", "new", acdT0); !ok {
		t.Fatal("offer refused")
	}
	check := func(what string, err error, want string) {
		t.Helper()
		if !errors.Is(err, ErrAgentNotHeld) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v; want ErrAgentNotHeld, %q", what, err, want)
		}
	}
	check("CallAnswered(old)", s.CallAnswered(ctx, "1001", "old", acdT0), `call "old": agent not held by this call (want ringing, found ringing with call_ref "new")`)
	_, err := s.CallNotAnswered(ctx, "1001", "old", 1, acdT0)
	check("CallNotAnswered(old)", err, `found ringing with call_ref "new"`)
	check("CallEnded(new) while ringing", s.CallEnded(ctx, "1001", "new", time.Second, acdT0), `want on_call, found ringing`)
	if a := readAgentState(t, s, "1001", acdT0); a.State != AgentRinging || a.CallRef != "new" || a.NoAnswer != 1 {
		t.Fatalf("stale transitions moved the agent: %+v", a)
	}
	if err := s.CallAnswered(ctx, "1001", "new", acdT0); err != nil {
		t.Fatal(err)
	}
	check("CallEnded(old)", s.CallEnded(ctx, "1001", "old", time.Second, acdT0), `found on_call with call_ref "new"`)
	// An operator override frees the agent from its call for good.
	if err := s.SetAgentState(ctx, "1001", AgentPaused, "supervisor", acdT0); err != nil {
		t.Fatal(err)
	}
	check("CallEnded(new) after override", s.CallEnded(ctx, "1001", "new", time.Second, acdT0), `found paused with call_ref ""`)
	check("CallAnswered on unknown agent", s.CallAnswered(ctx, "9999", "x", acdT0), `found logged_out`)
	if _, err := s.OfferCall(ctx, "1001", "", acdT0); err == nil {
		t.Error("OfferCall accepted an empty call_ref")
	}
}

// However many nodes offer the same free agent at once, exactly one offer
// wins.
func TestAgentOfferRace(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	for round := range 5 {
		ext := fmt.Sprint("10", round)
		if err := s.SetAgentState(ctx, ext, AgentAvailable, "", acdT0); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ref := fmt.Sprint("call-", i)
				ok, err := s.OfferCall(ctx, ext, ref, acdT0)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
					winner.Store(ref)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d offers won; want exactly 1", round, n)
		}
		if a := readAgentState(t, s, ext, acdT0); a.State != AgentRinging || a.CallRef != winner.Load().(string) {
			t.Fatalf("round %d: agent = %+v; want ringing for %v", round, a, winner.Load())
		}
	}
}
