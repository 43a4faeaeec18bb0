package app

import (
	"context"

	"redial/internal/acd"
)

// agentStates gives the registrar the inbound queues' agent states: the
// agent page reads and changes its own over SIP MESSAGE (sip.AgentStates).
// Registering logs an agent in through agentBindings.
type agentStates struct{ acd *acd.Service }

// Get returns the agent's state and, when paused, why.
func (a agentStates) Get(ctx context.Context, ext string) (string, string, error) {
	st, err := a.acd.AgentState(ctx, ext)
	if err != nil {
		return "", "", err
	}
	return st.State, st.Reason, nil
}

// Set sets the agent's state by hand; waiting callers try again at once.
func (a agentStates) Set(ctx context.Context, ext, state, reason string) error {
	return a.acd.SetAgentState(ctx, ext, state, reason)
}
