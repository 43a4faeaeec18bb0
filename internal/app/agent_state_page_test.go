package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"redial/internal/acd"
	"redial/internal/store"
	"redial/internal/testenv"
)

// queueAPI returns the base URL serving the node's queue routes, after
// checking the node serves them.
func queueAPI(t *testing.T, n *node) string {
	t.Helper()
	var body map[string]any
	if code := n.get("/api/v1/queues", &body); code != http.StatusOK {
		t.Fatalf("GET /api/v1/queues: %d %v", code, body)
	}
	return n.api
}

// queueAgent is one agent of GET /api/v1/queues.
func queueAgent(t *testing.T, api, queue, ext string) (acd.AgentStatus, error) {
	t.Helper()
	resp, err := http.Get(api + "/api/v1/queues")
	if err != nil {
		return acd.AgentStatus{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Queues []acd.QueueStatus `json:"queues"`
	}
	if err := jsonDecode(resp, &body); err != nil {
		return acd.AgentStatus{}, err
	}
	for _, q := range body.Queues {
		for _, a := range q.Agents {
			if q.Name == queue && a.Ext == ext {
				return a, nil
			}
		}
	}
	return acd.AgentStatus{}, fmt.Errorf("GET /api/v1/queues: no agent %s in queue %s: %+v", ext, queue, body.Queues)
}

// agentStateIs waits until Redis holds the agent's state and reason.
func agentStateIs(t *testing.T, st *store.Store, ext, state, reason string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() error {
		m, err := st.AgentStates(context.Background(), []string{ext}, time.Now())
		if err != nil {
			return err
		}
		if m[ext].State != state || m[ext].Reason != reason {
			return fmt.Errorf("agent %s in Redis: %q %q, want %q %q", ext, m[ext].State, m[ext].Reason, state, reason)
		}
		return nil
	})
}

// The agent page shows the agent's queue state and changes it over SIP
// (MESSAGE, digest as for REGISTER; the page has no API token):
// registering logs the agent in (available); Pause with the reason
// "lunch" pauses it in Redis, which GET /api/v1/queues shows; a change
// made through the API reaches the page by its poll; Available makes it
// available again. Nothing leaves the machine, nothing is logged as an
// error, and a screenshot is kept.
func TestAgentPageQueueState(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	if err := r.Client.HSet(ctx, "cti_user@default", "1001", `{"params":{"password":"s3cret","name":"Agent One"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.HSet(ctx, "cti_acd_queue@default", "sales", `{"params":{"agents":["1001"]}}`).Err(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, r.URL, "a")
	mountAgentPage(t, n)
	api := queueAPI(t, n)

	br := testenv.StartBrowser(t, testenv.BrowserOptions{})
	br.Goto(n.api + "/agent")
	pageState(t, br, "String(!!(window.agentPage && window.agentPage.ready))", func(s string) bool { return s == "true" }, 10*time.Second)
	if got := pageText(t, br, "queue-state"); got != "—" {
		t.Errorf("queue state before login: %q", got)
	}
	const queueState = `document.getElementById("queue-state").textContent`
	pageEval(t, br, `document.getElementById("ext").value = "1001";
		document.getElementById("password").value = "s3cret";
		document.getElementById("login").click()`)
	pageState(t, br, `document.getElementById("reg-state").textContent`, func(s string) bool { return s == "registered" }, 20*time.Second)
	// Registering logged the agent in. (A page that cannot read the state
	// says why under the buttons, e.g. 501 while app.go has not given the
	// registrar the agent states.)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := pageText(t, br, "queue-state"); got != "available" {
			return fmt.Errorf("queue state shown %q (%s)", got, pageText(t, br, "queue-status"))
		}
		return nil
	})
	agentStateIs(t, n.Store, "1001", store.AgentAvailable, "")

	pageEval(t, br, `const r = document.getElementById("pause-reason");
		r.value = "lunch"; r.dispatchEvent(new Event("change"));
		document.getElementById("pause").click()`)
	pageState(t, br, queueState, func(s string) bool { return s == "paused: lunch" }, 10*time.Second)
	agentStateIs(t, n.Store, "1001", store.AgentPaused, "lunch")
	testenv.WaitFor(t, 5*time.Second, func() error {
		a, err := queueAgent(t, api, "sales", "1001")
		if err != nil {
			return err
		}
		if a.State != "paused" || a.Reason != "lunch" || !a.Registered {
			return fmt.Errorf("GET /api/v1/queues: agent 1001 %+v", a)
		}
		return nil
	})
	if got := pageAttr(t, br, "available", "disabled"); got != "" {
		t.Errorf("Available disabled while paused")
	}
	dir := screenshotDir(t)
	br.Screenshot(filepath.Join(dir, "agent-state-page-1280x800.png"), 1280, 800)
	t.Logf("screenshot in %s", dir)

	// A change made elsewhere reaches the page within its poll.
	resp, err := http.Post(api+"/api/v1/agents/1001/state", "application/json", strings.NewReader(`{"state":"paused","reason":"meeting"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/agents/1001/state: %s", resp.Status)
	}
	pageState(t, br, queueState, func(s string) bool { return s == "paused: meeting" }, 6*time.Second)

	pageEval(t, br, `document.getElementById("available").click()`)
	pageState(t, br, queueState, func(s string) bool { return s == "available" }, 10*time.Second)
	agentStateIs(t, n.Store, "1001", store.AgentAvailable, "")

	if off := br.Offsite(); len(off) != 0 {
		t.Errorf("requests left the machine: %v", off)
	}
	if errs := br.ConsoleErrors(); len(errs) != 0 {
		t.Errorf("console errors: %v", errs)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", resp.Request.URL.Path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
