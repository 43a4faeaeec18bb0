package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"redial/internal/cluster"
)

// recentCDRs is how many CDR rows a new viewer gets at once.
const recentCDRs = 100

// reportStale is when a node's last report no longer counts.
const reportStale = 5 * time.Second

// viewer is one open event stream. Frames are encoded once and shared by
// every viewer; a viewer whose buffer is full is dropped (its page
// reconnects) rather than ever slowing the others.
type viewer struct {
	ch      chan []byte
	dropped chan struct{}
	once    sync.Once
}

func (v *viewer) drop() { v.once.Do(func() { close(v.dropped) }) }

// hub merges the nodes' reports and feeds this node's viewers.
type hub struct {
	s *Service

	mu      sync.Mutex
	viewers map[*viewer]struct{}
	reports map[string]*nodeReport
	// seen is when each node's last report arrived (this node's clock).
	seen map[string]time.Time
	// cps[sec][host] and disp[minute][host][disposition]: per host, so a
	// repeated point replaces rather than adds.
	cps       map[int64]map[string]int64
	disp      map[int64]map[string]map[string]int
	cdrs      []cdrRow
	lastState []byte
	// wake asks the hub's loop to act on a first viewer at once.
	wake chan struct{}
}

func newHub(s *Service) *hub {
	return &hub{s: s, viewers: map[*viewer]struct{}{}, reports: map[string]*nodeReport{}, seen: map[string]time.Time{},
		cps: map[int64]map[string]int64{}, disp: map[int64]map[string]map[string]int{}, wake: make(chan struct{}, 1)}
}

// frame encodes one server-sent event.
func frame(event string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(len(b) + len(event) + 16)
	buf.WriteString("event: ")
	buf.WriteString(event)
	buf.WriteString("\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	return buf.Bytes()
}

// add registers a viewer and queues what it needs first: the last state,
// the whole hour of the charts and the latest CDRs. ok is false when the
// node already has MaxViewers.
func (h *hub) add() (*viewer, bool) {
	v := &viewer{ch: make(chan []byte, 64), dropped: make(chan struct{})}
	h.mu.Lock()
	if len(h.viewers) >= h.s.cfg.MaxViewers {
		h.mu.Unlock()
		return nil, false
	}
	first := len(h.viewers) == 0
	h.viewers[v] = struct{}{}
	if h.lastState != nil {
		v.ch <- h.lastState
	}
	v.ch <- frame("series", h.seriesLocked(true, h.s.now()))
	rows := h.cdrs
	if rows == nil {
		rows = []cdrRow{}
	}
	v.ch <- frame("cdrs", map[string]any{"cdrs": rows})
	n := len(h.viewers)
	h.mu.Unlock()
	h.s.mViewers.Set(float64(n))
	if first {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	return v, true
}

func (h *hub) remove(v *viewer) {
	h.mu.Lock()
	delete(h.viewers, v)
	n := len(h.viewers)
	h.mu.Unlock()
	h.s.mViewers.Set(float64(n))
}

// broadcastLocked queues a frame for every viewer; h.mu is held.
func (h *hub) broadcastLocked(f []byte) {
	for v := range h.viewers {
		select {
		case v.ch <- f:
		default:
			delete(h.viewers, v)
			v.drop()
			h.s.mDropped.Inc()
		}
	}
}

func (h *hub) watched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.viewers) > 0
}

// run merges reports as they come and, while this node has viewers, tells
// the cluster so and sends the state once a Tick.
func (h *hub) run(ctx context.Context, reports *cluster.Subscription) {
	tick := time.NewTicker(h.s.cfg.Tick)
	defer tick.Stop()
	var lastWant time.Time
	watched := false
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-reports.C:
			if !ok {
				return
			}
			if m.Gap || !h.watched() {
				continue
			}
			var r nodeReport
			if err := json.Unmarshal(m.Payload, &r); err != nil || r.Host == "" || r.Host != m.From {
				continue
			}
			h.merge(&r)
			continue
		case <-h.wake:
		case <-tick.C:
		}
		now := h.s.now()
		if !h.watched() {
			watched = false
			continue
		}
		if !watched {
			// The first viewer after a pause: the charts need the hour
			// every node remembers.
			watched = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.fetchHistory(ctx)
			}()
		}
		if now.Sub(lastWant) >= h.s.cfg.WantTTL/3 {
			h.s.wanted(ctx)
			lastWant = now
		}
		h.publishState(ctx, now)
	}
}

// merge takes one node's report.
func (h *hub) merge(r *nodeReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev := h.reports[r.Host]; r.Light {
		if prev == nil {
			// The figures come with the next full report.
			prev = &nodeReport{Host: r.Host}
		}
		full := *prev
		full.Time, full.ActiveCalls, full.CPS, full.Disp, full.CDRs = r.Time, r.ActiveCalls, r.CPS, r.Disp, r.CDRs
		r = &full
	}
	h.reports[r.Host] = r
	h.seen[r.Host] = h.s.now()
	for _, p := range r.CPS {
		m := h.cps[p[0]]
		if m == nil {
			m = map[string]int64{}
			h.cps[p[0]] = m
		}
		m[r.Host] = max(m[r.Host], p[1])
	}
	for _, d := range r.Disp {
		h.mergeDispLocked(r.Host, d)
	}
	if len(r.CDRs) > 0 {
		h.cdrs = append(h.cdrs, r.CDRs...)
		if len(h.cdrs) > recentCDRs {
			h.cdrs = append([]cdrRow(nil), h.cdrs[len(h.cdrs)-recentCDRs:]...)
		}
		h.broadcastLocked(frame("cdrs", map[string]any{"cdrs": r.CDRs}))
	}
}

func (h *hub) mergeDispLocked(host string, d dispPoint) {
	m := h.disp[d.Minute]
	if m == nil {
		m = map[string]map[string]int{}
		h.disp[d.Minute] = m
	}
	cur := m[host]
	if cur == nil {
		cur = map[string]int{}
		m[host] = cur
	}
	for k, v := range d.Counts {
		cur[k] = max(cur[k], v)
	}
}

// fetchHistory asks every live node for its last hour and merges it.
func (h *hub) fetchHistory(ctx context.Context) {
	nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nodes, err := h.s.deps.Directory.Nodes(nctx)
	if err != nil {
		h.s.log.Warn("dashboard: history: list nodes", "err", err)
		return
	}
	for _, n := range nodes {
		if !n.Alive {
			continue
		}
		b, err := h.s.deps.Bus.Request(nctx, n.Host, methodHistory, nil, 2*time.Second)
		if err != nil {
			h.s.log.Warn("dashboard: history", "node", n.Host, "err", err)
			continue
		}
		var hist history
		if err := json.Unmarshal(b, &hist); err != nil {
			continue
		}
		h.mu.Lock()
		for _, p := range hist.CPS {
			if p[1] == 0 {
				continue
			}
			m := h.cps[p[0]]
			if m == nil {
				m = map[string]int64{}
				h.cps[p[0]] = m
			}
			m[n.Host] = max(m[n.Host], p[1])
		}
		for _, d := range hist.Disp {
			if len(d.Counts) > 0 {
				h.mergeDispLocked(n.Host, d)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.broadcastLocked(frame("series", h.seriesLocked(true, h.s.now())))
	h.mu.Unlock()
}

// seriesLocked sums the charts' points over the nodes: the whole hour when
// reset, else the last few seconds and minutes. It also forgets points
// older than the hour.
func (h *hub) seriesLocked(reset bool, now time.Time) series {
	end := now.Unix()
	from := end - seriesSeconds + 1
	if !reset {
		from = end - recentCPS + 1
	}
	out := series{Reset: reset, CPS: []cpsPoint{}, Disp: [][2]any{}}
	for sec := range h.cps {
		if sec <= end-seriesSeconds {
			delete(h.cps, sec)
		}
	}
	for sec := from; sec <= end; sec++ {
		var n int64
		for _, v := range h.cps[sec] {
			n += v
		}
		if n > 0 || !reset {
			out.CPS = append(out.CPS, cpsPoint{sec, n})
		}
	}
	curMin := end / 60 * 60
	fromMin := curMin - 59*60
	if !reset {
		fromMin = curMin - 60
	}
	for m := range h.disp {
		if m < curMin-59*60 {
			delete(h.disp, m)
		}
	}
	for m := fromMin; m <= curMin; m += 60 {
		hosts, ok := h.disp[m]
		if !ok {
			continue
		}
		sum := map[string]int{}
		for _, c := range hosts {
			for k, v := range c {
				sum[k] += v
			}
		}
		out.Disp = append(out.Disp, [2]any{m, sum})
	}
	return out
}

// publishState reads what only Redis knows, merges it with the reports
// and sends the state and the charts' newest points to the viewers.
func (h *hub) publishState(ctx context.Context, now time.Time) {
	st := h.s.clusterState(ctx, now, h.snapshotReports(now))
	f := frame("state", st)
	h.mu.Lock()
	h.lastState = f
	h.broadcastLocked(f)
	h.broadcastLocked(frame("series", h.seriesLocked(false, now)))
	h.mu.Unlock()
}

// snapshotReports returns the fresh reports by host name, forgetting the
// stale ones.
func (h *hub) snapshotReports(now time.Time) []*nodeReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*nodeReport, 0, len(h.reports))
	for host, r := range h.reports {
		if now.Sub(h.seen[host]) > reportStale {
			delete(h.reports, host)
			delete(h.seen, host)
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}
