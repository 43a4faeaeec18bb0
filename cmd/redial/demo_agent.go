package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"redial/internal/store"
)

// The demo's browser part: an agent extension, the inbound number that
// rings it, and a loopback line through which the demo calls that number
// itself as soon as somebody logs in on the agent page.
const (
	demoAgentExt      = "1001"
	demoAgentPassword = "demo1001"
	demoInboundNumber = "7400"
	demoSelfGroup     = "self"
)

// setupDemoAgent writes the agent, the inbound route and the loopback line
// (to the node's own SIP address: the node takes the call as coming from a
// trunk, as a carrier's would).
func setupDemoAgent(ctx context.Context, st *store.Store, nodeSIP string) error {
	if err := st.SetUser(ctx, demoAgentExt, fmt.Sprintf(`{"params":{"password":%q,"name":"Demo agent","enable":true}}`, demoAgentPassword)); err != nil {
		return fmt.Errorf("demo: write user: %w", err)
	}
	if err := st.SetDialplanEntry(ctx, "public:"+demoInboundNumber, fmt.Sprintf(`{"type":"user","user":%q}`, demoAgentExt)); err != nil {
		return fmt.Errorf("demo: write inbound route: %w", err)
	}
	line := fmt.Sprintf(`{"params":{"group":%q,"uri":"sip:%s","transport":"udp","limit":5,"enable":true},"variables":{"origination_caller_id_number":"15550009999"}}`, demoSelfGroup, nodeSIP)
	if err := st.SetLine(ctx, "demo-inbound", line); err != nil {
		return fmt.Errorf("demo: write loopback line: %w", err)
	}
	return nil
}

// ringDemoAgent waits for the agent to log in and then calls the inbound
// number through the loopback line; the far end is the simulated
// destination (extension 8888), which plays a 1 kHz tone. Each new login
// gets a call.
func ringDemoAgent(ctx context.Context, st *store.Store, api, token string) {
	rang := map[string]bool{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		list, err := st.Bindings(ctx, demoAgentExt, time.Now())
		if err != nil {
			continue
		}
		for _, b := range list {
			if rang[b.ID] {
				continue
			}
			rang[b.ID] = true
			body, _ := json.Marshal(map[string]any{"number": demoInboundNumber, "line_group": []string{demoSelfGroup},
				"destination": map[string]string{"extension": "8888", "dialplan": "XML", "context": "default"}})
			resp, err := apiDo(ctx, http.MethodPost, api+"/api/v1/calls", token, body)
			if err != nil {
				fmt.Printf("\ndemo: could not call the agent: %v\n", err)
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				fmt.Printf("\ndemo: could not call the agent: %s %s\n", resp.Status, strings.TrimSpace(string(b)))
				continue
			}
			fmt.Printf("\nagent %s logged in (%s): calling %s, which rings them\n", demoAgentExt, b, demoInboundNumber)
		}
	}
}
