package acd

import (
	"context"
	"sort"
	"time"

	"redial/internal/store"
)

// QueueStatus is one queue as GET /api/v1/queues and `redial queue status`
// show it, cluster-wide.
type QueueStatus struct {
	Name     string `json:"name"`
	Strategy string `json:"strategy"`
	// Waiting is how many callers wait in line (not ringing an agent).
	Waiting int `json:"waiting"`
	// LongestWaitS is how long the first in line has waited, in seconds.
	LongestWaitS int `json:"longest_wait_s"`
	// AgentsByState counts the queue's agents per state (logged_out,
	// available, ringing, on_call, wrapup, paused); an agent with no live
	// registration counts as logged_out.
	AgentsByState map[string]int `json:"agents_by_state"`
	Agents        []AgentStatus  `json:"agents"`
	// Over the last hour: answered, answered within the service level
	// threshold, abandoned in the queue, sent to the overflow.
	Answered       int `json:"answered"`
	AnsweredWithin int `json:"answered_within"`
	Abandoned      int `json:"abandoned"`
	Overflowed     int `json:"overflowed"`
	// ServiceLevel is AnsweredWithin over all callers that left the queue
	// in the last hour (answered, abandoned, overflowed); null when none.
	ServiceLevel *float64 `json:"service_level"`
	// ServiceLevelS is the threshold, in seconds (20).
	ServiceLevelS int `json:"service_level_s"`
}

// AgentStatus is one agent of a queue.
type AgentStatus struct {
	Ext        string `json:"ext"`
	Level      int    `json:"level"`
	State      string `json:"state"`
	Reason     string `json:"reason,omitempty"`
	Registered bool   `json:"registered"`
	CallRef    string `json:"call_ref,omitempty"`
	// SinceS is how long the agent has been in State, in seconds.
	SinceS int   `json:"since_s"`
	Calls  int64 `json:"calls"`
}

// Status reads every queue's line, agents and service level; bad names
// the entries skipped because they do not decode.
func (s *Service) Status(ctx context.Context) (out []QueueStatus, bad map[string]string, err error) {
	qs, badErr, err := s.deps.Store.Queues(ctx)
	if err != nil {
		return nil, nil, err
	}
	bad = make(map[string]string, len(badErr))
	for n, e := range badErr {
		bad[n] = e.Error()
	}
	now := s.now()
	for _, q := range qs {
		st, err := s.queueStatus(ctx, q, now)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, bad, nil
}

func (s *Service) queueStatus(ctx context.Context, q store.Queue, now time.Time) (QueueStatus, error) {
	st := QueueStatus{Name: q.Name, Strategy: q.Strategy, AgentsByState: map[string]int{},
		Agents: []AgentStatus{}, ServiceLevelS: int(s.cfg.ServiceLevel / time.Second)}
	w, err := s.deps.Store.QueueWaitStats(ctx, q.Name, s.cfg.ServiceLevel, now)
	if err != nil {
		return st, err
	}
	st.Waiting = w.Waiting
	if !w.Oldest.IsZero() {
		st.LongestWaitS = int(now.Sub(w.Oldest) / time.Second)
	}
	st.Answered, st.AnsweredWithin, st.Abandoned, st.Overflowed = w.Answered, w.AnsweredWithin, w.Abandoned, w.Overflowed
	if total := w.Answered + w.Abandoned + w.Overflowed; total > 0 {
		sl := float64(w.AnsweredWithin) / float64(total)
		st.ServiceLevel = &sl
	}
	exts := make([]string, len(q.Agents))
	for i, a := range q.Agents {
		exts[i] = a.Ext
	}
	reg, err := s.deps.Store.Registered(ctx, exts, now)
	if err != nil {
		return st, err
	}
	states, err := s.deps.Store.AgentStates(ctx, exts, now)
	if err != nil {
		return st, err
	}
	for _, a := range q.Agents {
		as := states[a.Ext]
		state := as.State
		if !reg[a.Ext] && (state == store.AgentAvailable || state == store.AgentWrapup) {
			state = store.AgentLoggedOut
		}
		st.AgentsByState[state]++
		x := AgentStatus{Ext: a.Ext, Level: a.Level, State: state, Reason: as.Reason, Registered: reg[a.Ext],
			CallRef: as.CallRef, Calls: as.Calls}
		if !as.Since.IsZero() {
			x.SinceS = int(now.Sub(as.Since) / time.Second)
		}
		st.Agents = append(st.Agents, x)
	}
	return st, nil
}

// AgentState is one agent's state as the agent page shows it.
func (s *Service) AgentState(ctx context.Context, ext string) (store.AgentState, error) {
	m, err := s.deps.Store.AgentStates(ctx, []string{ext}, s.now())
	if err != nil {
		return store.AgentState{}, err
	}
	return m[ext], nil
}
