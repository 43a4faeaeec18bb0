package dashboard

import (
	"sort"
	"sync"
	"time"

	"redial/internal/call"
	"redial/internal/notify"
)

const (
	// seriesSeconds is how far back the charts go.
	seriesSeconds = 3600
	// maxCDRsPerReport bounds the CDR rows one report carries (four
	// reports a second): at 1,000 calls per second a page could not show
	// every row anyway, and each row costs its JSON on every node with
	// viewers, so a node sends at most 100 rows a second; the counts and
	// charts still take every CDR.
	maxCDRsPerReport = 25
	// recentCPS is how many seconds of calls per second a report repeats,
	// so a lost report leaves no hole in the chart.
	recentCPS = 5
)

// collector turns this node's call events into the figures of its
// reports: calls started per second, CDRs per minute and disposition,
// failovers per line, and the CDR rows written since the last report.
// Everything is counted by the event's own wall-clock time.
type collector struct {
	host string

	mu sync.Mutex
	// cps[sec % seriesSeconds] counts the calls started in second sec.
	cps [seriesSeconds]cpsPoint
	// disp[minute % 60] counts CDRs per disposition, cluster minute m.
	disp [60]minuteCounts
	// camp keeps the same per campaign.
	camp      map[string]*[60]minuteCounts
	failovers map[string]int64
	cdrs      []cdrRow
}

type minuteCounts struct {
	minute int64
	counts map[string]int
}

func newCollector(host string) *collector {
	return &collector{host: host, camp: map[string]*[60]minuteCounts{}, failovers: map[string]int64{}}
}

// started counts a call started at t.
func (c *collector) started(t time.Time) {
	sec := t.Unix()
	c.mu.Lock()
	p := &c.cps[sec%seriesSeconds]
	if p[0] != sec {
		*p = cpsPoint{sec, 0}
	}
	p[1]++
	c.mu.Unlock()
}

// ended takes the CDRs of a call that ended: one per attempt, in order.
func (c *collector) ended(cdrs []notify.CDR) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cdr := range cdrs {
		if i < len(cdrs)-1 && cdr.Line != "" {
			// Another attempt followed on the next line.
			c.failovers[cdr.Line]++
		}
		d := string(cdr.Disposition)
		minute := cdr.End.Unix() / 60 * 60
		bump(&c.disp, minute, d)
		if cdr.CampaignRef != "" {
			ring := c.camp[cdr.CampaignRef]
			if ring == nil {
				ring = &[60]minuteCounts{}
				c.camp[cdr.CampaignRef] = ring
			}
			bump(ring, minute, d)
		}
		if len(c.cdrs) >= maxCDRsPerReport {
			// Keep the newest: drop the oldest half at once rather than
			// shifting on every row.
			c.cdrs = append(c.cdrs[:0], c.cdrs[maxCDRsPerReport/2:]...)
		}
		c.cdrs = append(c.cdrs, cdrRow{CDRID: cdr.CDRID, Time: cdr.End, Node: c.host, CallRef: cdr.CallRef,
			CampaignRef: cdr.CampaignRef, ContactRef: cdr.ContactRef, Number: cdr.ClientNumber, Line: cdr.Line,
			Attempt: cdr.Attempt, Disposition: d, SIPCode: cdr.SIPCode, HangupCause: cdr.HangupCause,
			Duration: cdr.Duration, Billsec: cdr.Billsec, Ext: cdr.Ext})
	}
}

func bump(ring *[60]minuteCounts, minute int64, d string) {
	b := &ring[(minute/60)%60]
	if b.minute != minute || b.counts == nil {
		*b = minuteCounts{minute: minute, counts: map[string]int{}}
	}
	b.counts[d]++
}

// takeCDRs returns the CDR rows since the last call and forgets them.
func (c *collector) takeCDRs() []cdrRow {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.cdrs
	c.cdrs = nil
	return out
}

// recent returns the calls started per second over the last n seconds
// before now (zeros included) and the CDR counts of the current and the
// previous minute.
func (c *collector) recent(now time.Time, n int) ([]cpsPoint, []dispPoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cpsSince(now, n), c.dispSince(now, 2)
}

// history returns the last hour.
func (c *collector) history(now time.Time) history {
	c.mu.Lock()
	defer c.mu.Unlock()
	return history{CPS: c.cpsSince(now, seriesSeconds), Disp: c.dispSince(now, 60)}
}

func (c *collector) cpsSince(now time.Time, n int) []cpsPoint {
	end := now.Unix()
	out := make([]cpsPoint, 0, n)
	for sec := end - int64(n) + 1; sec <= end; sec++ {
		p := c.cps[((sec%seriesSeconds)+seriesSeconds)%seriesSeconds]
		if p[0] != sec {
			p = cpsPoint{sec, 0}
		}
		out = append(out, p)
	}
	return out
}

func (c *collector) dispSince(now time.Time, minutes int) []dispPoint {
	cur := now.Unix() / 60 * 60
	out := make([]dispPoint, 0, minutes)
	for m := cur - int64(minutes-1)*60; m <= cur; m += 60 {
		b := c.disp[(m/60)%60]
		counts := map[string]int{}
		if b.minute == m {
			for k, v := range b.counts {
				counts[k] = v
			}
		}
		out = append(out, dispPoint{Minute: m, Counts: counts})
	}
	return out
}

// campaigns sums each campaign's last hour by disposition; campaigns with
// nothing in the hour are forgotten.
func (c *collector) campaigns(now time.Time) map[string]map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	from := now.Unix()/60*60 - 59*60
	out := make(map[string]map[string]int, len(c.camp))
	for name, ring := range c.camp {
		sum := map[string]int{}
		for _, b := range ring {
			if b.minute >= from {
				for k, v := range b.counts {
					sum[k] += v
				}
			}
		}
		if len(sum) == 0 {
			delete(c.camp, name)
			continue
		}
		out[name] = sum
	}
	return out
}

// failoverCounts copies the failovers per line.
func (c *collector) failoverCounts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.failovers))
	for k, v := range c.failovers {
		out[k] = v
	}
	return out
}

// newestCalls turns the calls in progress into rows, newest first, at most
// max of them.
func newestCalls(host string, infos []call.Info, max int) []callRow {
	sort.Slice(infos, func(i, j int) bool { return infos[i].Start.After(infos[j].Start) })
	if len(infos) > max {
		infos = infos[:max]
	}
	out := make([]callRow, len(infos))
	for i, in := range infos {
		out[i] = callRow{CallRef: in.CallRef, Node: host, State: string(in.State), CampaignRef: in.CampaignRef,
			ContactRef: in.ContactRef, Number: in.Number, Line: in.Line, Attempt: in.Attempt, Start: in.Start, Answer: in.Answer}
	}
	return out
}
