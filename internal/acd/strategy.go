package acd

import (
	"context"
	"math/rand/v2"
	"slices"
	"sort"

	"redial/internal/store"
)

// candidates lists q's registered agents in the order its strategy offers
// them, lower levels first. Whether each is free is for the offer script
// to decide, in the same step that takes it: the states read here only
// order them.
func (s *Service) candidates(ctx context.Context, q store.Queue) ([]store.Candidate, error) {
	exts := make([]string, len(q.Agents))
	for i, a := range q.Agents {
		exts[i] = a.Ext
	}
	reg, err := s.registeredAgents(ctx, exts)
	if err != nil {
		return nil, err
	}
	states, err := s.deps.Store.AgentStates(ctx, exts, s.now())
	if err != nil {
		return nil, err
	}
	all := q.Agents
	if q.Strategy == store.StrategyRoundRobin {
		// Start after the agent offered last, found among all the queue's
		// agents: it may have unregistered since.
		last, err := s.deps.Store.LastOffered(ctx, q.Name)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(all, func(a store.QueueAgent) bool { return a.Ext == last }); i >= 0 {
			all = append(slices.Clone(all[i+1:]), all[:i+1]...)
		}
	}
	agents := make([]store.QueueAgent, 0, len(all))
	for _, a := range all {
		if reg[a.Ext] {
			agents = append(agents, a)
		}
	}
	switch q.Strategy {
	case store.StrategyLongestIdle:
		sort.SliceStable(agents, func(i, j int) bool {
			return states[agents[i].Ext].Since.Before(states[agents[j].Ext].Since)
		})
	case store.StrategyFewestCalls:
		sort.SliceStable(agents, func(i, j int) bool {
			a, b := states[agents[i].Ext], states[agents[j].Ext]
			if a.Calls != b.Calls {
				return a.Calls < b.Calls
			}
			return a.Since.Before(b.Since)
		})
	case store.StrategyRandom:
		rand.Shuffle(len(agents), func(i, j int) { agents[i], agents[j] = agents[j], agents[i] })
	}
	// Tiers: a level is offered only while no lower level has a free agent.
	sort.SliceStable(agents, func(i, j int) bool { return agents[i].Level < agents[j].Level })
	out := make([]store.Candidate, len(agents))
	for i, a := range agents {
		out[i] = store.Candidate{Ext: a.Ext, Level: a.Level}
	}
	return out, nil
}

// canAnswer counts q's agents that could take a call now or soon: registered
// and neither logged out nor paused.
func (s *Service) canAnswer(ctx context.Context, q store.Queue) (int, error) {
	exts := make([]string, len(q.Agents))
	for i, a := range q.Agents {
		exts[i] = a.Ext
	}
	reg, err := s.registeredAgents(ctx, exts)
	if err != nil {
		return 0, err
	}
	states, err := s.deps.Store.AgentStates(ctx, exts, s.now())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range exts {
		if st := states[e].State; reg[e] && st != store.AgentLoggedOut && st != store.AgentPaused {
			n++
		}
	}
	return n, nil
}
