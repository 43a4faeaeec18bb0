package main

import (
	"context"
	"fmt"
	"time"

	"redial/internal/store"
)

// The demo's browser part: an agent extension, the inbound number that
// rings it, and the inbound trunk (the simulated callers) that calls that
// number as soon as somebody logs in on the agent page.
const (
	demoAgentExt      = "1001"
	demoAgentPassword = "demo1001"
	demoInboundNumber = "7400"
	demoTrunkGroup    = "callers"
)

// setupDemoAgent writes the agent, the inbound route and the line of the
// simulated callers (callersAddr): the node takes their calls as coming
// from that trunk, as a carrier's would.
func setupDemoAgent(ctx context.Context, st *store.Store, callersAddr string) error {
	if err := st.SetUser(ctx, demoAgentExt, fmt.Sprintf(`{"params":{"password":%q,"name":"Demo agent","enable":true}}`, demoAgentPassword)); err != nil {
		return fmt.Errorf("demo: write user: %w", err)
	}
	if err := st.SetDialplanEntry(ctx, "public:"+demoInboundNumber, fmt.Sprintf(`{"type":"user","user":%q}`, demoAgentExt)); err != nil {
		return fmt.Errorf("demo: write inbound route: %w", err)
	}
	line := fmt.Sprintf(`{"params":{"group":%q,"uri":"sip:%s","transport":"udp","limit":40,"enable":true},"variables":{}}`, demoTrunkGroup, callersAddr)
	if err := st.SetLine(ctx, "demo-inbound", line); err != nil {
		return fmt.Errorf("demo: write inbound trunk line: %w", err)
	}
	return nil
}

// ringDemoAgent waits for the agent to log in and then has a simulated
// caller call the inbound number, which rings the agent; the caller plays
// a tone and hangs up after its patience (20 to 50 s) unless the agent
// does first. Each new login gets a call.
func ringDemoAgent(ctx context.Context, st *store.Store, t *demoTraffic) {
	rang := map[string]bool{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
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
			fmt.Printf("\nagent %s logged in: calling %s, which rings them\n", demoAgentExt, demoInboundNumber)
			t.call(ctx, demoInboundNumber, "15550009999")
		}
	}
}
