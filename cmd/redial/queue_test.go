package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/acd"
	"redial/internal/auth"
	"redial/internal/store"
	"redial/internal/testenv"
	"redial/internal/web"
)

// queueAPI runs a node's HTTP API (real Redis, real queues, tokens
// required) with agents 1001 and 1002 in queue "sales"; it returns the
// API's URL and a rest token.
func queueAPI(t *testing.T) (api, token string, st *store.Store) {
	t.Helper()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st = store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"})
	for _, ext := range []string{"1001", "1002"} {
		if err := st.SetUser(ctx, ext, `{"params":{"password":"pw"}}`); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Client.HSet(ctx, st.QueuesKey(), "sales", `{"params":{"agents":["1001","1002"]}}`).Err(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	a, err := auth.New(auth.Config{Listen: "127.0.0.1:0", Domain: "default", Host: "n1"}, auth.Deps{Store: st, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := acd.New(acd.Config{}, acd.Deps{Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s, err := web.New(web.Config{Addr: "127.0.0.1:0"}, web.Deps{Store: st, ACD: svc, Auth: a, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { a.Run(rctx); done <- struct{}{} }()
	go func() { s.Run(rctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	token, _, err = st.CreateToken(ctx, "ops", []string{"rest"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	api = "http://" + s.Addr()
	// The node learns of the new token within a second.
	testenv.WaitFor(t, 3*time.Second, func() error {
		return queueStatus(ctx, []string{"--api", api, "--token", token}, io.Discard)
	})
	return api, token, st
}

// `redial agent state` pauses an agent through the API (the state is in
// Redis), `redial queue status` shows it, and both need the token.
func TestAgentStateAndQueueStatus(t *testing.T) {
	api, token, st := queueAPI(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := agentState(ctx, []string{"--api", api, "--token", token, "1001", "paused", "--reason", "lunch"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "1001: paused (lunch)\n" {
		t.Fatalf("agent state printed %q", out.String())
	}
	m, err := st.AgentStates(ctx, []string{"1001"}, time.Now())
	if err != nil || m["1001"].State != "paused" || m["1001"].Reason != "lunch" {
		t.Fatalf("Redis: %+v %v", m["1001"], err)
	}

	out.Reset()
	if err := queueStatus(ctx, []string{"--api", api, "--token", token}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("queue status:\n%s", out.String())
	}
	for i, want := range []string{
		`^sales \(longest_idle\): 0 waiting, longest wait 0s; service level - within 20s \(last hour: 0 answered, 0 within, 0 abandoned, 0 overflowed\)$`,
		`^  agents: 1 paused, 1 logged_out$`,
		`^  EXT\s+LEVEL\s+STATE\s+REASON\s+SINCE\s+CALLS\s+REGISTERED\s+CALL REF$`,
		`^  1001\s+1\s+paused\s+lunch\s+\d+s\s+0\s+no\s+-$`,
		`^  1002\s+1\s+logged_out\s+-\s+0s\s+0\s+no\s+-$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i]) {
			t.Fatalf("line %q does not match %s\noutput:\n%s", lines[i], want, out.String())
		}
	}
	out.Reset()
	if err := queueStatus(ctx, []string{"--api", api, "--token", token, "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Queues []acd.QueueStatus `json:"queues"`
	}
	if err := json.Unmarshal(out.Bytes(), &body); err != nil || len(body.Queues) != 1 || body.Queues[0].AgentsByState["paused"] != 1 {
		t.Fatalf("queue status --json: %v\n%s", err, out.String())
	}

	out.Reset()
	if err := agentState(ctx, []string{"--api", api, "--token", token, "1001", "available"}, &out); err != nil || out.String() != "1001: available\n" {
		t.Fatalf("available: %v %q", err, out.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"1001", "paused"}, "400 Bad Request: reason: a paused agent needs one"},
		{[]string{"1001", "on_call"}, `400 Bad Request: state: "on_call" cannot be set`},
		{[]string{"1999", "available"}, `404 Not Found: ext: no agent "1999" in cti_user@default`},
		{[]string{"1001@elsewhere", "available"}, `403 Forbidden: ext: domain "elsewhere" is not this node's`},
		{[]string{"1001"}, "want EXT and a state"},
	} {
		err := agentState(ctx, append([]string{"--api", api, "--token", token}, c.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("agent state %v: %v, want %q", c.args, err, c.want)
		}
	}
	err = queueStatus(ctx, []string{"--api", api, "--token", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("queue status without a token: %v", err)
	}
	err = agentState(ctx, []string{"--api", api, "--token", "rdl_bad", "1001", "logged_out"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("agent state with a bad token: %v", err)
	}
	if m, _ := st.AgentStates(ctx, []string{"1001"}, time.Now()); m["1001"].State != "available" {
		t.Fatalf("refused requests changed the state: %+v", m["1001"])
	}
}
