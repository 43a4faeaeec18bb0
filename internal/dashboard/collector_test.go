package dashboard

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"redial/internal/dialer"
	"redial/internal/notify"
)

func cdrAt(ref, campaign, line, disp string, end time.Time) notify.CDR {
	return notify.CDR{CDRID: ref + line, CallRef: ref, CampaignRef: campaign, Line: line, Disposition: notify.Disposition(disp), End: end}
}

// Calls started per second and CDRs per minute land in the right buckets,
// an hour-old bucket is reused rather than added to, and a failover counts
// the line the call left.
func TestCollectorCountsByTime(t *testing.T) {
	c := newCollector("n1")
	t0 := time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)
	for i := 0; i < 3; i++ {
		c.started(t0)
	}
	c.started(t0.Add(time.Second))
	cps, _ := c.recent(t0.Add(time.Second), 3)
	want := []cpsPoint{{t0.Unix() - 1, 0}, {t0.Unix(), 3}, {t0.Unix() + 1, 1}}
	if len(cps) != 3 || cps[0] != want[0] || cps[1] != want[1] || cps[2] != want[2] {
		t.Fatalf("cps %v, want %v", cps, want)
	}
	// The same slot an hour later: the old count must not leak in.
	c.started(t0.Add(time.Hour))
	later, _ := c.recent(t0.Add(time.Hour), 1)
	if later[0] != (cpsPoint{t0.Unix() + 3600, 1}) {
		t.Fatalf("an hour later: %v", later)
	}

	c.ended([]notify.CDR{cdrAt("c1", "camp", "trunk-a", "FAILED", t0), cdrAt("c1", "camp", "trunk-b", "ANSWERED", t0)})
	c.ended([]notify.CDR{cdrAt("c2", "camp", "trunk-b", "BUSY", t0.Add(time.Minute))})
	if fo := c.failoverCounts(); fo["trunk-a"] != 1 || fo["trunk-b"] != 0 {
		t.Fatalf("failovers %v, want trunk-a 1 and trunk-b 0", fo)
	}
	_, disp := c.recent(t0.Add(time.Minute), 0)
	if len(disp) != 2 || disp[0].Counts["FAILED"] != 1 || disp[0].Counts["ANSWERED"] != 1 || disp[1].Counts["BUSY"] != 1 {
		t.Fatalf("dispositions per minute: %+v", disp)
	}
	camp := c.campaigns(t0.Add(time.Minute))
	if camp["camp"]["ANSWERED"] != 1 || camp["camp"]["BUSY"] != 1 || camp["camp"]["FAILED"] != 1 {
		t.Fatalf("campaign dispositions: %v", camp)
	}
	// Two hours on, the campaign's hour is empty and it is forgotten.
	if camp := c.campaigns(t0.Add(2 * time.Hour)); len(camp) != 0 {
		t.Fatalf("campaign dispositions two hours later: %v", camp)
	}
	rows := c.takeCDRs()
	if len(rows) != 3 || rows[0].Line != "trunk-a" || rows[2].Disposition != "BUSY" || rows[0].Node != "n1" {
		t.Fatalf("rows %+v", rows)
	}
	if again := c.takeCDRs(); len(again) != 0 {
		t.Fatalf("rows taken twice: %d", len(again))
	}
}

// However many CDRs arrive between two reports, one report carries at
// most maxCDRsPerReport of them, the newest.
func TestCollectorBoundsCDRRows(t *testing.T) {
	c := newCollector("n1")
	t0 := time.Now()
	for i := 0; i < 10*maxCDRsPerReport; i++ {
		c.ended([]notify.CDR{{CDRID: string(rune('a'+i%26)) + strings.Repeat("x", i/26), End: t0.Add(time.Duration(i) * time.Millisecond)}})
	}
	rows := c.takeCDRs()
	if len(rows) > maxCDRsPerReport || len(rows) == 0 {
		t.Fatalf("%d rows, want 1..%d", len(rows), maxCDRsPerReport)
	}
	if !rows[len(rows)-1].Time.Equal(t0.Add(time.Duration(10*maxCDRsPerReport-1) * time.Millisecond)) {
		t.Fatalf("the newest row is missing: last %v", rows[len(rows)-1].Time)
	}
}

// A task on two nodes: dialing wins over waiting, counters add up, the
// answer rate is over finished calls, and the nodes' dispositions merge.
func TestMergeCampaigns(t *testing.T) {
	next := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	a := &nodeReport{Host: "a", Tasks: []dialer.TaskStatus{
		{Name: "sales", State: "waiting", Reason: "limit reached", Limit: 5, InFlight: 5, Answered: 6, Failed: 2, QueueLength: 40},
		{Name: "night", State: "waiting", Reason: "outside work hours", NextOpen: &next},
	}, CampDisp: map[string]map[string]int{"sales": {"ANSWERED": 6, "BUSY": 2}}}
	b := &nodeReport{Host: "b", Tasks: []dialer.TaskStatus{
		{Name: "sales", State: "dialing", Limit: 5, InFlight: 3, Answered: 2, Failed: 2, QueueLength: 40},
	}, CampDisp: map[string]map[string]int{"sales": {"ANSWERED": 2, "NO_ANSWER": 2}}}
	got := mergeCampaigns([]*nodeReport{a, b})
	if len(got) != 2 || got[0].Name != "night" || got[1].Name != "sales" {
		t.Fatalf("campaigns %+v", got)
	}
	s := got[1]
	if s.State != "dialing" || s.Reason != "" || s.InFlight != 8 || s.Answered != 8 || s.Failed != 4 || s.Nodes != 2 || s.QueueLength != 40 {
		t.Fatalf("sales %+v", s)
	}
	if s.AnswerRate == nil || *s.AnswerRate < 0.66 || *s.AnswerRate > 0.67 {
		t.Fatalf("sales answer rate %v, want 8/12", s.AnswerRate)
	}
	if s.Dispositions["ANSWERED"] != 8 || s.Dispositions["BUSY"] != 2 || s.Dispositions["NO_ANSWER"] != 2 {
		t.Fatalf("sales dispositions %v", s.Dispositions)
	}
	n := got[0]
	if n.State != "waiting" || n.NextOpen == nil || !n.NextOpen.Equal(next) || n.AnswerRate != nil {
		t.Fatalf("night %+v", n)
	}
}

// Grants per second from two readings; a counter that went back (the line
// was removed and added again) counts from zero rather than negative.
func TestLinesCPS(t *testing.T) {
	got := linesCPS(map[string]uint64{"a": 10, "b": 50}, map[string]uint64{"a": 30, "b": 5, "c": 4}, 2*time.Second)
	if got["a"] != 10 || got["b"] != 0 || got["c"] != 0 {
		t.Fatalf("cps %v", got)
	}
	if first := linesCPS(nil, map[string]uint64{"a": 10}, time.Second); first["a"] != 0 {
		t.Fatalf("first reading %v", first)
	}
}

// The hub sums the nodes' points; a repeated point of one node replaces
// rather than adds; the first series of a viewer is the whole hour.
func TestHubSeries(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)
	s := &Service{cfg: Config{MaxViewers: 2}, now: func() time.Time { return now }}
	s.hub = newHub(s)
	s.mViewers, s.mDropped = newTestGauge(), newTestCounter()
	h := s.hub
	sec := now.Unix()
	h.merge(&nodeReport{Host: "a", CPS: []cpsPoint{{sec - 1, 4}, {sec, 1}}, Disp: []dispPoint{{Minute: sec / 60 * 60, Counts: map[string]int{"ANSWERED": 3}}}})
	h.merge(&nodeReport{Host: "a", CPS: []cpsPoint{{sec, 2}}, Disp: []dispPoint{{Minute: sec / 60 * 60, Counts: map[string]int{"ANSWERED": 4}}}})
	h.merge(&nodeReport{Host: "b", CPS: []cpsPoint{{sec, 5}, {sec - 4000, 9}}})
	h.mu.Lock()
	delta := h.seriesLocked(false, now)
	full := h.seriesLocked(true, now)
	h.mu.Unlock()
	if len(delta.CPS) != recentCPS || delta.CPS[recentCPS-1] != (cpsPoint{sec, 7}) || delta.CPS[recentCPS-2] != (cpsPoint{sec - 1, 4}) {
		t.Fatalf("delta cps %v", delta.CPS)
	}
	if !full.Reset || len(full.CPS) != 2 {
		t.Fatalf("full series %+v (the point older than an hour must be gone)", full)
	}
	b, _ := json.Marshal(full)
	if !strings.Contains(string(b), `"dispositions":[[`+itoa(sec/60*60)+`,{"ANSWERED":4}]]`) {
		t.Fatalf("full series JSON %s", b)
	}
	// A viewer gets the hour and the latest CDRs at once; a third viewer
	// over MaxViewers is refused.
	v1, ok := h.add()
	if !ok || len(v1.ch) != 2 {
		t.Fatalf("first viewer: ok %v, %d frames queued", ok, len(v1.ch))
	}
	if _, ok := h.add(); !ok {
		t.Fatal("second viewer refused")
	}
	if _, ok := h.add(); ok {
		t.Fatal("a viewer over MaxViewers was let in")
	}
	// A viewer that stops reading is dropped, not waited for.
	for i := 0; i < 100; i++ {
		h.merge(&nodeReport{Host: "a", CDRs: []cdrRow{{CDRID: itoa(int64(i))}}})
	}
	select {
	case <-v1.dropped:
	default:
		t.Fatal("a viewer that never read was not dropped")
	}
}

// A light report keeps the node's calls and tasks from its last full
// report and takes the fast figures from itself.
func TestHubLightReportKeepsFullFigures(t *testing.T) {
	now := time.Now()
	s := &Service{cfg: Config{MaxViewers: 2}, now: func() time.Time { return now }}
	s.hub = newHub(s)
	s.mViewers, s.mDropped = newTestGauge(), newTestCounter()
	s.hub.merge(&nodeReport{Host: "a", Tasks: []dialer.TaskStatus{{Name: "t"}}, Calls: []callRow{{CallRef: "c1"}}, CallsTotal: 1, ActiveCalls: 1})
	s.hub.merge(&nodeReport{Host: "a", Light: true, ActiveCalls: 7})
	got := s.hub.snapshotReports(now)
	if len(got) != 1 || len(got[0].Tasks) != 1 || got[0].CallsTotal != 1 || got[0].ActiveCalls != 7 {
		t.Fatalf("after a light report: %+v", got)
	}
}
