package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"redial/internal/acd"
	"redial/internal/store"
	"redial/internal/testenv"
)

// newQueueServer is a server with a real acd.Service on a real Redis, for
// domain "default", with agents 1001 and 1002 in queue "sales" and a
// queue entry that does not decode.
func newQueueServer(t *testing.T) (*Server, *store.Store) {
	t.Helper()
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"})
	ctx := context.Background()
	for ext, v := range map[string]string{
		"1001": `{"params":{"password":"s3cret"}}`,
		"1002": `{"params":{"password":"s3cret"}}`,
	} {
		if err := st.SetUser(ctx, ext, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]string{
		"sales":  `{"params":{"agents":["1001","1002"]}}`,
		"broken": `{"params":{"strategy":"fastest"}}`,
	} {
		if err := r.Client.HSet(ctx, st.QueuesKey(), name, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := acd.New(acd.Config{}, acd.Deps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Store: st, ACD: svc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	return s, st
}

type queuesAnswer struct {
	Queues  []acd.QueueStatus `json:"queues"`
	Invalid map[string]string `json:"invalid"`
}

func getQueues(t *testing.T, s *Server) queuesAnswer {
	t.Helper()
	rec := serve(s, http.MethodGet, "/api/v1/queues", "")
	var out queuesAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/queues: %d %s %v", rec.Code, rec.Body, err)
	}
	return out
}

// Pausing an agent through the API changes its state in Redis, the
// answer says the new state, and GET /api/v1/queues shows it; 1001 and
// 1001@default name the same agent.
func TestAgentStateAPI(t *testing.T) {
	s, st := newQueueServer(t)
	q := getQueues(t, s)
	if len(q.Queues) != 1 || q.Queues[0].Name != "sales" || len(q.Queues[0].Agents) != 2 ||
		q.Queues[0].AgentsByState["logged_out"] != 2 || !strings.Contains(q.Invalid["broken"], "params.strategy") {
		t.Fatalf("queues before: %+v", q)
	}

	rec := serve(s, http.MethodPost, "/api/v1/agents/1001/state", `{"state":"paused","reason":"lunch"}`)
	var got agentStateBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("pause: %d %s", rec.Code, rec.Body)
	}
	if got != (agentStateBody{Ext: "1001", State: "paused", Reason: "lunch"}) {
		t.Fatalf("pause answered %+v", got)
	}
	m, err := st.AgentStates(context.Background(), []string{"1001"}, time.Now())
	if err != nil || m["1001"].State != store.AgentPaused || m["1001"].Reason != "lunch" {
		t.Fatalf("Redis after pausing: %+v %v", m, err)
	}
	q = getQueues(t, s)
	a := q.Queues[0].Agents[0]
	if a.Ext != "1001" || a.State != "paused" || a.Reason != "lunch" || q.Queues[0].AgentsByState["paused"] != 1 {
		t.Fatalf("queues after pausing: %+v", q.Queues[0])
	}

	rec = serve(s, http.MethodPost, "/api/v1/agents/1001@default/state", `{"state":"available"}`)
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK ||
		got != (agentStateBody{Ext: "1001", State: "available"}) {
		t.Fatalf("available with the domain: %d %s", rec.Code, rec.Body)
	}
	m, _ = st.AgentStates(context.Background(), []string{"1001"}, time.Now())
	if m["1001"].State != store.AgentAvailable || m["1001"].Reason != "" {
		t.Fatalf("Redis after available: %+v", m["1001"])
	}
}

// Bad bodies are 400 naming the field; another domain's agent is 403
// naming the domain; an extension not in cti_user@default is 404; nothing
// changes.
func TestAgentStateAPIRefuses(t *testing.T) {
	s, st := newQueueServer(t)
	for _, c := range []struct{ path, body, want string }{
		{"/api/v1/agents/1001/state", `{"state":"paused"}`, "reason: a paused agent needs one"},
		{"/api/v1/agents/1001/state", `{"state":"paused","reason":"` + strings.Repeat("x", 65) + `"}`, "reason: 65 characters, at most 64"},
		{"/api/v1/agents/1001/state", `{"state":"paused","reason":"a\u0007b"}`, `reason: character '\a' not printable`},
		{"/api/v1/agents/1001/state", `{"state":"on_call"}`, `state: "on_call" cannot be set (want available, paused or logged_out)`},
		{"/api/v1/agents/1001/state", `{"state":"available","reason":"x"}`, "reason: only a paused agent has one"},
		{"/api/v1/agents/1001/state", `{"state":"available","why":"x"}`, "why: unknown field (want state, reason)"},
		{"/api/v1/agents/1001/state", `{"state":7}`, "state: want string, got number"},
		{"/api/v1/agents/1001/state", `{"reason":"lunch"}`, "state: required"},
		{"/api/v1/agents/1001/state", `{"state":"available"} {}`, "body: trailing data"},
		{"/api/v1/agents/1001/state", `null`, "body: want a JSON object"},
		{"/api/v1/agents/..%2fx/state", `{"state":"available"}`, "ext: extension:"},
	} {
		rec := serve(s, http.MethodPost, c.path, c.body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(errorOf(t, rec), c.want) {
			t.Errorf("%s %s: %d %s, want 400 naming %q", c.path, c.body, rec.Code, rec.Body, c.want)
		}
	}
	rec := serve(s, http.MethodPost, "/api/v1/agents/1001@other.example/state", `{"state":"available"}`)
	if msg := errorOf(t, rec); rec.Code != http.StatusForbidden || !strings.Contains(msg, `"other.example"`) || !strings.Contains(msg, "another domain") {
		t.Errorf("another domain: %d %s", rec.Code, rec.Body)
	}
	rec = serve(s, http.MethodPost, "/api/v1/agents/1999/state", `{"state":"available"}`)
	if msg := errorOf(t, rec); rec.Code != http.StatusNotFound || !strings.Contains(msg, `"1999"`) || !strings.Contains(msg, "cti_user@default") {
		t.Errorf("unknown agent: %d %s", rec.Code, rec.Body)
	}
	m, err := st.AgentStates(context.Background(), []string{"1001", "1999"}, time.Now())
	if err != nil || m["1001"].State != store.AgentLoggedOut || m["1999"].State != store.AgentLoggedOut {
		t.Fatalf("states after refusals: %+v %v", m, err)
	}
}

// Without the queues both routes answer 503.
func TestQueueRoutesWithoutACD(t *testing.T) {
	s := newBareServer(t)
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/queues"}, {"POST", "/api/v1/agents/1001/state"}} {
		rec := serve(s, c.method, c.path, `{"state":"available"}`)
		if rec.Code != http.StatusServiceUnavailable || errorOf(t, rec) == "" {
			t.Errorf("%s %s without ACD: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
}
