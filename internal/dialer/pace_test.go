package dialer

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

func TestAllowedCalls(t *testing.T) {
	cases := []struct {
		available int
		ratio     float64
		want      int
	}{
		{0, 1, 0}, {0, 10, 0}, {1, 1, 1}, {2, 1.5, 3}, {3, 1.5, 4}, {1, 0.5, 0}, {3, 0.5, 1},
		{10, 0.3, 3}, {3, 1.1, 3}, {7, 10, 70}, {5, 0.2, 1},
	}
	for _, c := range cases {
		if got := allowedCalls(c.available, c.ratio); got != c.want {
			t.Errorf("allowedCalls(%d, %g) = %d, want %d", c.available, c.ratio, got, c.want)
		}
	}
}

func TestAgentRatioParam(t *testing.T) {
	base := func(extra string) string {
		return `{"params": {"line_group": ["g1"], "limit": 1, "number_queue": "q1", "destination_extension": "8888"` + extra + `}}`
	}
	for extra, want := range map[string]float64{"": 1, `, "agent_ratio": null`: 1, `, "agent_ratio": 1.5`: 1.5,
		`, "agent_ratio": "2.5"`: 2.5, `, "agent_ratio": 10`: 10, `, "agent_ratio": 0.01`: 0.01} {
		tk, err := ParseTask(hostKey, tmplKey, "sales", base(extra), "", time.UTC)
		if err != nil || tk.AgentRatio != want {
			t.Errorf("%s: AgentRatio = %v, %v; want %g", extra, tk, err, want)
		}
	}
	// The host's value overrides the template's, like every param.
	tk, err := ParseTask(hostKey, tmplKey, "sales", base(`, "agent_ratio": 2`), `{"params": {"agent_ratio": 3}}`, time.UTC)
	if err != nil || tk.AgentRatio != 3 {
		t.Errorf("host override: %v, %v", tk, err)
	}
	prefix := `dialer: task "sales" in ` + tmplKey + `: params.agent_ratio: want number > 0 and <= 10, got `
	for extra, got := range map[string]string{`"x"`: `"x"`, `0`: `0`, `-1`: `-1`, `10.5`: `10.5`, `"11"`: `"11"`,
		`true`: `true`, `[1]`: `[1]`, `"NaN"`: `"NaN"`} {
		_, err := ParseTask(hostKey, tmplKey, "sales", base(`, "agent_ratio": `+extra), "", time.UTC)
		if err == nil || err.Error() != prefix+got {
			t.Errorf("agent_ratio %s: err %v, want %s", extra, err, prefix+got)
		}
	}
	_, err = ParseTask(hostKey, tmplKey, "sales", base(""), `{"params": {"agent_ratio": "lots"}}`, time.UTC)
	if want := `dialer: task "sales" in ` + hostKey + `: params.agent_ratio: want number > 0 and <= 10, got "lots"`; err == nil || err.Error() != want {
		t.Errorf("host agent_ratio: err %v, want %s", err, want)
	}
}

// paceEnv is a Redis with a queue "sales" of three agents and a task whose
// destination default:8888 names it.
type paceEnv struct {
	t   *testing.T
	st  *store.Store
	ctx context.Context
	tk  *Task
	now time.Time
}

func newPaceEnv(t *testing.T, ratio string) *paceEnv {
	r := testenv.StartRedis(t)
	e := &paceEnv{t: t, st: store.NewWithClient(r.Client, store.Config{Domain: "default"}), ctx: context.Background(),
		now: time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)}
	if err := r.Client.HSet(e.ctx, "cti_dialplan@default", "default:8888", `{"type":"queue","queue":"sales"}`,
		"default:ivr", `{"type":"ivr","script":"main"}`, "default:lost", `{"type":"queue","queue":"nowhere"}`,
		"default:broken", `{"type":"queue"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetQueue(e.ctx, "sales", `{"params": {"agents": ["1001", {"ext": "1002", "level": 2}, "1003"], "wrapup_s": 5}}`); err != nil {
		t.Fatal(err)
	}
	tk, err := ParseTask(hostKey, tmplKey, "camp", `{"params": {"line_group": ["g1"], "limit": 50, "number_queue": "q1",
		"destination_extension": "8888", "agent_ratio": `+ratio+`}}`, "", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	e.tk = tk
	return e
}

func (e *paceEnv) pacer() *pacer {
	return newPacer(e.st, func() time.Time { return e.now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (e *paceEnv) agent(ext, state string) {
	e.t.Helper()
	reason := ""
	if state == store.AgentPaused {
		reason = "lunch"
	}
	if err := e.st.SetAgentState(e.ctx, ext, state, reason, e.now); err != nil {
		e.t.Fatal(err)
	}
}

// decide runs one decision and checks whether it allows a call.
func (e *paceEnv) decide(p *pacer, wantOK bool) paceDecision {
	e.t.Helper()
	d, err := p.decide(e.ctx, e.tk)
	if err != nil {
		e.t.Fatalf("decide: %v", err)
	}
	if d.OK != wantOK {
		e.t.Fatalf("decide = %+v, want OK %v", d, wantOK)
	}
	return d
}

// Calls not yet connected to an agent never outnumber floor(available x
// agent_ratio); connected calls, calls an agent rings for and ended calls
// make room.
func TestPaceByAvailableAgents(t *testing.T) {
	e := newPaceEnv(t, "1.5")
	p := e.pacer()
	// Nobody logged in: nothing is dialed, and the status says why.
	d := e.decide(p, false)
	if d.Reason != "waiting for agents (queue sales: 0 available)" || d.Queue != "sales" {
		t.Fatalf("no agents: %+v", d)
	}
	e.agent("1001", store.AgentAvailable)
	e.agent("1002", store.AgentAvailable)
	e.agent("1003", store.AgentPaused)
	p.untrack("none") // an ended call: re-read at once
	for i, ref := range []string{"c1", "c2", "c3"} {
		d := e.decide(p, true)
		if d.Available != 2 || d.Allowed != 3 || d.Waiting != i {
			t.Fatalf("call %d: %+v", i+1, d)
		}
		p.track(ref)
	}
	d = e.decide(p, false)
	if want := "waiting for agents (queue sales: 2 available, agent_ratio 1.5, 3 calls not yet connected)"; d.Reason != want {
		t.Fatalf("reason %q, want %q", d.Reason, want)
	}
	// c1 is bridged to its agent: one more call may ring.
	if !p.connected("c1") || p.connected("other-task-call") {
		t.Fatal("connected: wrong tracking")
	}
	e.decide(p, true)
	p.track("c4")
	e.decide(p, false)
	// Agent 1001 now rings for c2: the pair is matched, c2 no longer
	// waits, and 1001 is no longer available: floor(1 x 1.5) = 1 and c3,
	// c4 wait, so nothing more.
	if ok, err := e.st.OfferCall(e.ctx, "1001", "c2", e.now); !ok || err != nil {
		t.Fatalf("OfferCall: %v %v", ok, err)
	}
	p.untrack("c1")
	d = e.decide(p, false)
	if d.Available != 1 || d.Allowed != 1 || d.Waiting != 2 {
		t.Fatalf("after offer: %+v", d)
	}
	// A third agent becomes available: floor(2 x 1.5) = 3 > 2 waiting.
	e.agent("1003", store.AgentAvailable)
	p.untrack("c4")
	d = e.decide(p, true)
	if d.Available != 2 || d.Waiting != 1 {
		t.Fatalf("third agent: %+v", d)
	}
	// Everybody pauses: no new call, whatever is in flight.
	for _, ext := range []string{"1001", "1002", "1003"} {
		e.agent(ext, store.AgentPaused)
	}
	p.untrack("c2")
	d = e.decide(p, false)
	if d.Reason != "waiting for agents (queue sales: 0 available)" {
		t.Fatalf("all paused: %+v", d)
	}
}

// An agent in wrap-up counts once the wrap-up has passed; ringing, on_call
// and logged-out agents never count.
func TestPaceCountsOnlyFreeAgents(t *testing.T) {
	e := newPaceEnv(t, "1")
	e.agent("1001", store.AgentAvailable)
	if ok, err := e.st.OfferCall(e.ctx, "1001", "x1", e.now); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := e.st.CallAnswered(e.ctx, "1001", "x1", e.now); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CallEnded(e.ctx, "1001", "x1", 5*time.Second, e.now); err != nil {
		t.Fatal(err)
	}
	e.agent("1002", store.AgentLoggedOut)
	p := e.pacer()
	if d := e.decide(p, false); d.Available != 0 {
		t.Fatalf("in wrap-up: %+v", d)
	}
	e.now = e.now.Add(6 * time.Second)
	p.untrack("none")
	if d := e.decide(p, true); d.Available != 1 || d.Allowed != 1 {
		t.Fatalf("wrap-up over: %+v", d)
	}
	// agent_ratio 0.5 of one agent is no call at all.
	e.tk.AgentRatio = 0.5
	if d := e.decide(p, false); d.Allowed != 0 || !strings.Contains(d.Reason, "1 available, agent_ratio 0.5, 0 calls") {
		t.Fatalf("ratio 0.5: %+v", d)
	}
}

// Only a queue destination is paced; a queue that is missing or whose
// destination is malformed holds the task back (or not) with a reason.
func TestPaceDestinations(t *testing.T) {
	e := newPaceEnv(t, "1")
	cases := []struct {
		ext    string
		ok     bool
		queue  string
		reason string
	}{
		{"ivr", true, "", ""},
		{"unknown", true, "", ""},
		// A broken entry fails the calls at answer with a CDR, as for any
		// task; pacing does not guess.
		{"broken", true, "", ""},
		{"lost", false, "nowhere", "waiting for agents (queue nowhere: not in cti_acd_queue@default)"},
		{"8888", false, "sales", "waiting for agents (queue sales: 0 available)"},
	}
	for _, c := range cases {
		e.tk.Destination.Extension = c.ext
		d, err := e.pacer().decide(e.ctx, e.tk)
		if err != nil || d.OK != c.ok || d.Queue != c.queue || d.Reason != c.reason {
			t.Errorf("destination %s: %+v, %v; want ok %v queue %q reason %q", c.ext, d, err, c.ok, c.queue, c.reason)
		}
	}
	// Another dialplan than XML is not resolved by redial: not paced.
	e.tk.Destination.Extension, e.tk.Destination.Dialplan = "8888", "other"
	if d, err := e.pacer().decide(e.ctx, e.tk); err != nil || !d.OK {
		t.Errorf("dialplan other: %+v %v", d, err)
	}
}

// Redis unreachable: the decision is an error and no call is allowed.
func TestPaceRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default"})
	ctx := context.Background()
	r.Client.HSet(ctx, "cti_dialplan@default", "default:8888", `{"type":"queue","queue":"sales"}`)
	tk, err := ParseTask(hostKey, tmplKey, "camp", `{"params": {"line_group": ["g1"], "limit": 5, "number_queue": "q1", "destination_extension": "8888"}}`, "", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	p := newPacer(st, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Stop()
	if d, err := p.decide(ctx, tk); err == nil || d.OK {
		t.Fatalf("Redis down: %+v, %v; want an error", d, err)
	}
}
