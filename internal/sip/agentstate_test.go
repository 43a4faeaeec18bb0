package sip

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"redial/internal/store"
	"redial/internal/testenv"
)

// storeAgentStates is the app's adapter in small, on the store's agent
// states (the acd package sits between them in a node).
type storeAgentStates struct{ s *store.Store }

func (a *storeAgentStates) Get(ctx context.Context, ext string) (string, string, error) {
	m, err := a.s.AgentStates(ctx, []string{ext}, time.Now())
	if err != nil {
		return "", "", err
	}
	return m[ext].State, m[ext].Reason, nil
}

func (a *storeAgentStates) Set(ctx context.Context, ext, state, reason string) error {
	return a.s.SetAgentState(ctx, ext, state, reason, time.Now())
}

// msgOpts is one MESSAGE of a regClient.
type msgOpts struct {
	to       string // the node's address
	from     string // From user
	target   string // Request-URI and To user ("" = from)
	user     string // digest username ("" = from)
	password string
	ctype    string // Content-Type ("" = AgentStateContentType)
	body     string
}

// message sends a MESSAGE and, when challenged, its retry with
// credentials; it returns the first and the last response.
func (c *regClient) message(o msgOpts) (first, last *gosip.Response) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.target == "" {
		o.target = o.from
	}
	if o.user == "" {
		o.user = o.from
	}
	if o.ctype == "" {
		o.ctype = AgentStateContentType
	}
	var uri gosip.Uri
	if err := gosip.ParseUri("sip:"+o.target+"@"+o.to, &uri); err != nil {
		c.t.Fatal(err)
	}
	req := gosip.NewRequest(gosip.MESSAGE, uri)
	from := &gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: o.from, Host: "agents.example.invalid"}, Params: gosip.NewParams()}
	from.Params.Add("tag", gosip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: o.target, Host: "agents.example.invalid"}, Params: gosip.NewParams()})
	ct := gosip.ContentTypeHeader(o.ctype)
	req.AppendHeader(&ct)
	req.SetBody([]byte(o.body))
	first, err := c.c.Do(ctx, req)
	if err != nil {
		c.t.Fatalf("MESSAGE from %s: %v", o.from, err)
	}
	if first.StatusCode != 401 {
		return first, first
	}
	chal, err := digest.ParseChallenge(first.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		c.t.Fatal(err)
	}
	if chal.Realm != "acme" {
		c.t.Fatalf("challenge realm %q, want the domain acme", chal.Realm)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "MESSAGE", URI: req.Recipient.String(), Username: o.user, Password: o.password})
	if err != nil {
		c.t.Fatal(err)
	}
	retry := req.Clone()
	retry.RemoveHeader("Via")
	retry.CSeq().SeqNo++
	retry.AppendHeader(gosip.NewHeader("Authorization", cred.String()))
	last, err = c.c.Do(ctx, retry, sipgo.ClientRequestAddVia)
	if err != nil {
		c.t.Fatalf("authenticated MESSAGE from %s: %v", o.from, err)
	}
	return first, last
}

// stateOf decodes a 200's {"state","reason"}, checking its content type.
func stateOf(t *testing.T, res *gosip.Response) agentStateBody {
	t.Helper()
	if res.StatusCode != 200 {
		t.Fatalf("want 200, got %s: %s", res.Short(), res.Body())
	}
	if ct := res.ContentType(); ct == nil || ct.Value() != AgentStateContentType {
		t.Fatalf("200's Content-Type %v", ct)
	}
	var b agentStateBody
	if err := json.Unmarshal(res.Body(), &b); err != nil {
		t.Fatalf("200's body %q: %v", res.Body(), err)
	}
	return b
}

// An agent reads and changes its own queue state with a MESSAGE,
// challenged like a REGISTER; the change is in Redis.
func TestAgentStateMessage(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	states := &storeAgentStates{s: env.st}
	env.reg.SetAgentStates(states)
	c := newRegClient(t, "127.0.0.1")
	node := env.e.Addr("udp")
	ctx := context.Background()

	first, last := c.message(msgOpts{to: node, from: "1001", password: "s3cret", body: "{}"})
	if first.StatusCode != 401 {
		t.Fatalf("MESSAGE without credentials: %s, want 401", first.Short())
	}
	if got := stateOf(t, last); got.State != "logged_out" || got.Reason != "" {
		t.Fatalf("state before anything: %+v", got)
	}

	_, last = c.message(msgOpts{to: node, from: "1001", password: "s3cret", body: `{"state":"paused","reason":"lunch"}`})
	if got := stateOf(t, last); got.State != "paused" || got.Reason != "lunch" {
		t.Fatalf("answer to pausing: %+v", got)
	}
	m, err := env.st.AgentStates(ctx, []string{"1001"}, time.Now())
	if err != nil || m["1001"].State != "paused" || m["1001"].Reason != "lunch" {
		t.Fatalf("Redis after pausing: %+v %v", m["1001"], err)
	}
	// No body asks, as {} does.
	_, last = c.message(msgOpts{to: node, from: "1001", password: "s3cret"})
	if got := stateOf(t, last); got.State != "paused" || got.Reason != "lunch" {
		t.Fatalf("asked after pausing: %+v", got)
	}
	_, last = c.message(msgOpts{to: node, from: "1001", password: "s3cret", body: `{"state":"available"}`})
	if got := stateOf(t, last); got.State != "available" || got.Reason != "" {
		t.Fatalf("answer to becoming available: %+v", got)
	}
	if got := testenv.MustMetric(t, env.prom, agentStateMetric, nil); got != 8 {
		t.Errorf("%s = %v, want 8 (4 challenged, 4 ok)", agentStateMetric, got)
	}
	m, err = env.st.AgentStates(ctx, []string{"1001"}, time.Now())
	if err != nil || m["1001"].State != "available" {
		t.Fatalf("Redis after available: %+v %v", m["1001"], err)
	}
}

// Bad bodies are 400 naming the field; other content types 415; another
// agent's state, or someone else's credentials, 403; nothing changes.
func TestAgentStateMessageRefused(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	env.reg.SetAgentStates(&storeAgentStates{s: env.st})
	c := newRegClient(t, "127.0.0.1")
	node := env.e.Addr("udp")
	for _, tc := range []struct{ body, want string }{
		{`{"state":"paused"}`, "reason: a paused agent needs one"},
		{`{"state":"paused","reason":"` + strings.Repeat("x", 65) + `"}`, "reason: 65 characters, at most 64"},
		{`{"state":"ringing"}`, `state: "ringing" cannot be set`},
		{`{"state":"available","reason":"x"}`, "reason: only a paused agent has one"},
		{`{"state":"available","colour":"red"}`, `"colour": unknown field (want state, reason)`},
		{`{"state":1}`, "state: want string"},
		{`{"reason":"lunch"}`, "state: required with reason"},
		{`[1]`, "body: want a JSON object"},
	} {
		_, last := c.message(msgOpts{to: node, from: "1001", password: "s3cret", body: tc.body})
		w := last.GetHeader("Warning")
		var body struct{ Error string }
		json.Unmarshal(last.Body(), &body)
		if last.StatusCode != 400 || w == nil || !strings.Contains(w.Value(), strings.ReplaceAll(tc.want, `"`, "'")) || !strings.Contains(body.Error, tc.want) {
			t.Errorf("body %s: %s Warning %v body %s, want 400 naming %q", tc.body, last.Short(), w, last.Body(), tc.want)
		}
	}
	first, _ := c.message(msgOpts{to: node, from: "1001", password: "s3cret", ctype: "text/plain", body: "hello"})
	if first.StatusCode != 415 || first.GetHeader("Accept") == nil || first.GetHeader("Accept").Value() != AgentStateContentType {
		t.Errorf("text/plain MESSAGE: %s, want 415 with Accept", first.Short())
	}
	// 1001 asking to pause 1003.
	_, last := c.message(msgOpts{to: node, from: "1001", target: "1003", password: "s3cret", body: `{"state":"paused","reason":"x"}`})
	if last.StatusCode != 403 {
		t.Errorf("MESSAGE for another agent: %s, want 403", last.Short())
	}
	// 1003's own credentials, sent as 1001.
	_, last = c.message(msgOpts{to: node, from: "1001", user: "1003", password: "1003", body: `{"state":"paused","reason":"x"}`})
	if last.StatusCode != 403 {
		t.Errorf("MESSAGE with another user's credentials: %s, want 403", last.Short())
	}
	_, last = c.message(msgOpts{to: node, from: "1001", password: "wrong", body: `{"state":"paused","reason":"x"}`})
	if last.StatusCode != 403 {
		t.Errorf("MESSAGE with a wrong password: %s, want 403", last.Short())
	}
	m, err := env.st.AgentStates(context.Background(), []string{"1001", "1003"}, time.Now())
	if err != nil || m["1001"].State != "logged_out" || m["1003"].State != "logged_out" {
		t.Fatalf("states after refusals: %+v %v", m, err)
	}
}

// Without agent states the registrar answers 501; without a registrar the
// node answers 405 with Allow.
func TestAgentStateMessageNotConfigured(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	c := newRegClient(t, "127.0.0.1")
	first, _ := c.message(msgOpts{to: env.e.Addr("udp"), from: "1001", password: "s3cret", body: "{}"})
	if first.StatusCode != 501 {
		t.Errorf("without agent states: %s, want 501", first.Short())
	}
	bare := startEngineWith(t, engineOpts{deps: Deps{Registry: nil}})
	first, _ = c.message(msgOpts{to: bare.Addr("udp"), from: "1001", password: "s3cret", body: "{}"})
	if first.StatusCode != 405 || first.GetHeader("Allow") == nil {
		t.Errorf("without a registrar: %s, want 405 with Allow", first.Short())
	}
}
