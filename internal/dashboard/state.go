package dashboard

import (
	"context"
	"sort"
	"time"

	"redial/internal/acd"
)

// clusterState merges the nodes' reports with the directory, the lines'
// channels in use and the queues, each read once from Redis.
func (s *Service) clusterState(ctx context.Context, now time.Time, reports []*nodeReport) state {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st := state{Time: now.UTC(), Self: s.cfg.Host, Nodes: []nodeRow{}, Campaigns: []campaignRow{}, Lines: []lineRow{},
		Queues: []acd.QueueStatus{}, QueuesInvalid: map[string]string{}, Calls: []callRow{}, IVR: []ivrRow{}}
	byHost := make(map[string]*nodeReport, len(reports))
	for _, r := range reports {
		byHost[r.Host] = r
	}

	nodes, err := s.deps.Directory.Nodes(ctx)
	if err != nil {
		s.log.Warn("dashboard: list nodes", "err", err)
	}
	listed := map[string]bool{}
	for _, n := range nodes {
		listed[n.Host] = true
		row := nodeRow{Host: n.Host, Alive: n.Alive, Version: n.Version, Started: n.Started, LastSeen: n.LastSeen}
		if r := byHost[n.Host]; r != nil && n.Alive {
			row.Reporting, row.ActiveCalls, row.CPUPct, row.RSSBytes, row.Goroutines = true, r.ActiveCalls, r.CPUPct, r.RSSBytes, r.Goroutines
		}
		st.Nodes = append(st.Nodes, row)
	}
	for _, r := range reports {
		if !listed[r.Host] {
			// Reporting but not (yet, or no longer) in the directory.
			st.Nodes = append(st.Nodes, nodeRow{Host: r.Host, Alive: true, Version: r.Version, Started: r.Started,
				LastSeen: r.Time, Reporting: true, ActiveCalls: r.ActiveCalls, CPUPct: r.CPUPct, RSSBytes: r.RSSBytes, Goroutines: r.Goroutines})
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Host < st.Nodes[j].Host })

	st.Campaigns = mergeCampaigns(reports)
	st.Lines = s.mergeLines(ctx, reports)

	if s.deps.ACD != nil {
		qs, bad, err := s.deps.ACD.Status(ctx)
		if err != nil {
			s.log.Warn("dashboard: queues", "err", err)
		}
		if qs != nil {
			st.Queues = qs
		}
		if bad != nil {
			st.QueuesInvalid = bad
		}
	}

	for _, r := range reports {
		st.Calls = append(st.Calls, r.Calls...)
		st.CallsTotal += r.CallsTotal
		st.IVR = append(st.IVR, r.IVR...)
	}
	sort.Slice(st.Calls, func(i, j int) bool { return st.Calls[i].Start.After(st.Calls[j].Start) })
	if len(st.Calls) > maxCalls {
		st.Calls = st.Calls[:maxCalls]
	}
	return st
}

// mergeCampaigns sums each task over the nodes that run it. A task dials
// if any node dials it; otherwise it shows the first node's state and
// reason, and the earliest next opening.
func mergeCampaigns(reports []*nodeReport) []campaignRow {
	byName := map[string]*campaignRow{}
	var names []string
	for _, r := range reports {
		for _, t := range r.Tasks {
			c := byName[t.Name]
			if c == nil {
				c = &campaignRow{TaskStatus: t, Dispositions: map[string]int{}}
				// Summed below, over every node including this one.
				c.InFlight, c.Dialed, c.Answered, c.Failed, c.Invalid = 0, 0, 0, 0, 0
				byName[t.Name] = c
				names = append(names, t.Name)
			} else {
				if t.State == "dialing" && c.State != "dialing" {
					c.State, c.Reason = t.State, t.Reason
				}
				if t.NextOpen != nil && (c.NextOpen == nil || t.NextOpen.Before(*c.NextOpen)) {
					c.NextOpen = t.NextOpen
				}
				if c.ConfigError == "" {
					c.ConfigError = t.ConfigError
				}
			}
			c.Nodes++
			c.InFlight += t.InFlight
			c.Dialed += t.Dialed
			c.Answered += t.Answered
			c.Failed += t.Failed
			c.Invalid += t.Invalid
		}
		for name, counts := range r.CampDisp {
			c := byName[name]
			if c == nil {
				continue
			}
			for k, v := range counts {
				c.Dispositions[k] += v
			}
		}
	}
	sort.Strings(names)
	out := make([]campaignRow, 0, len(names))
	for _, n := range names {
		c := byName[n]
		if c.State == "dialing" {
			c.NextOpen = nil
		}
		if done := c.Answered + c.Failed; done > 0 {
			rate := float64(c.Answered) / float64(done)
			c.AnswerRate = &rate
		}
		out = append(out, *c)
	}
	return out
}

// mergeLines adds the nodes' calls per second and failovers to the lines
// as Redis sees them (channels in use across the cluster).
func (s *Service) mergeLines(ctx context.Context, reports []*nodeReport) []lineRow {
	if s.deps.Lines == nil {
		return []lineRow{}
	}
	statuses := s.deps.Lines.Statuses(ctx)
	out := make([]lineRow, 0, len(statuses))
	for _, l := range statuses {
		row := lineRow{Name: l.Name, Group: l.Group, Enable: l.Enable, Limit: l.Limit, CPSLimit: l.CPS, InUse: l.InUse, Error: l.Error}
		for _, r := range reports {
			if v, ok := r.Lines[l.Name]; ok {
				row.CPS += v.CPS
				row.Failovers += v.Failovers
			}
		}
		out = append(out, row)
	}
	return out
}
