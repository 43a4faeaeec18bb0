package main

// The section of part 10 (ceiling.go): the phases' figures and what they
// say about one Redis core and the spread over the masters.

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// ceilReport is the section of part 10.
type ceilReport struct {
	b                     *bench
	tasks                 []ceilTask
	phases                []*ceilPhase
	masters, layout       []string
	calib                 float64
	warns                 int
	firstWarn             string
	loadBefore, loadAfter string
	took                  time.Duration
}

func (r ceilReport) String() string {
	var s strings.Builder
	s.WriteString("## 10. Cluster ceiling\n\n")
	fmt.Fprintf(&s, "What one Redis core sustains of the campaign path, and whether campaigns on different queues spread over the masters of a Redis Cluster. "+
		"%d redis-server processes, cluster-enabled, masters only, persistence off like every other part's redis-server (joined with `redis-cli --cluster create --cluster-replicas 0`, as `internal/testenv` does with replicas), "+
		"serve one node run as its own process (`redial serve --redis redis-cluster://h1:p1,h2:p2,h3:p3`, built with `go build`, log level warn). "+
		"Two queue dialer tasks (`limit` %d each, line group `bench`, one line of `limit` 2000, dialplan target `{\"type\":\"hangup\"}`) dial a SIPp UAS (`uas_bench.xml`, `-buff_size %d`) "+
		"from two queues named `{tag}:numbers`, the tags picked with `CLUSTER KEYSLOT` so the two queues (and with them every ledger key, which shares the queue's tag) live on different masters, "+
		"neither the one holding the line's leases when that leaves two. "+
		"A warm-up of %d numbers over both queues, then %d numbers on A alone measure the node's rate (%.0f numbers/s); every phase then pushes N = that rate × %s numbers per task at once "+
		"(`PushNumbers`: pipelined LPUSH of 1000, 20 per round trip), so each runs at least 10 s: **A alone**, **B alone**, **A and B** together (N each), and **A again** at the end, to tell a drift over the run from a difference between the queues.\n\n",
		ceilMasters, ceilLimit, r.b.sippBuff, ceilWarmup, ceilWarmup, r.calib, ceilPhaseFor)
	fmt.Fprintf(&s, "Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), r.loadBefore, r.loadAfter, r.took.Round(time.Second))
	fmt.Fprintf(&s, "Masters: %s. Keys every call shares: %s. Queue A `%s` (task `%s`): slot %d → **M%d**; queue B `%s` (task `%s`): slot %d → **M%d**. "+
		"Each call's record for the API (`redial:callrec:<call_ref>`) hashes on its own, so those spread over all masters.\n\n",
		strings.Join(r.masters, "; "), strings.Join(r.layout, "; "),
		r.tasks[0].queue, r.tasks[0].name, r.tasks[0].slot, r.tasks[0].master+1, r.tasks[1].queue, r.tasks[1].name, r.tasks[1].slot, r.tasks[1].master+1)
	if len(r.phases) == 0 {
		s.WriteString("No phase was measured (see the bench's errors).\n")
		return s.String()
	}
	rateOf := func(p *ceilPhase, task int) string {
		for k, ti := range p.tasks {
			if ti == task {
				return fmt.Sprintf("%.0f", p.rate(k))
			}
		}
		return "—"
	}
	s.WriteString("| phase | numbers | wall | A numbers/s | B numbers/s | together: numbers/s | node CPU / number | node cores busy | Redis CPU / number (all masters) | Redis cores busy (all masters) | SIPp UAS cores busy | rest of the machine, cores busy | CDRs A / B | lost / duplicated / wrong `campaign_ref` | INVITEs at the UAS / CDRs | not ANSWERED |\n")
	s.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.phases {
		total := 0
		for _, v := range p.cdrs {
			total += v
		}
		busy := func(d time.Duration) float64 { return d.Seconds() / p.wall.Seconds() }
		fmt.Fprintf(&s, "| %s | %d | %s | %s | %s | %.0f | %.0f µs | %.2f | %.1f µs | %.2f | %.2f | %.2f | %d / %d | %d / %d / %d | %d / %d | %d |\n",
			p.name, p.numbers(), p.wall.Round(time.Millisecond), rateOf(p, 0), rateOf(p, 1), p.totalRate(),
			p.perNumber(p.nodeCPU), busy(p.nodeCPU), p.perNumber(p.redisCPU()), busy(p.redisCPU()), busy(p.uasCPU), busy(max(p.otherCPU, 0)),
			p.cdrs[r.tasks[0].name], p.cdrs[r.tasks[1].name], p.lost, p.dup, p.wrongRef, p.invites, total, p.notAnswered)
	}
	s.WriteString("\nEach master in each phase:\n\n")
	s.WriteString("| phase | master | holds | CPU, ms/s | CPU / number | commands / number | most called, per number |\n|---|---|---|---:|---:|---:|---|\n")
	for _, p := range r.phases {
		for m := range p.masterCPU {
			fmt.Fprintf(&s, "| %s | M%d | %s | %.0f | %.1f µs | %.2f | %s |\n", p.name, m+1, r.holds(m),
				float64(p.masterCPU[m].Milliseconds())/p.wall.Seconds(), p.perNumber(p.masterCPU[m]),
				float64(ceilTotal(p.cmds[m]))/float64(p.numbers()), ceilTop(p.cmds[m], p.numbers(), 6))
		}
	}
	s.WriteString("\n")
	r.findings(&s)
	s.WriteString("\nNotes:\n\n")
	s.WriteString("- A task's numbers/s = its N ÷ the time from the push to the poll (every 20 ms, LLEN of the queue and of the node's processing list) that found both empty: every number claimed, dialed, its CDR written and the claim settled. " +
		"\"Together\" is all numbers of the phase ÷ the phase's wall time, the push to the last task's end. CDRs are counted per `campaign_ref` (the task's name) in the CDR list after the phase; lost = a pushed number without a CDR, duplicated = more than one, wrong = a CDR whose `campaign_ref` is not the task of the number's queue.\n")
	s.WriteString("- CPU is utime+stime from `/proc/<pid>/stat` (10 ms ticks) of each redis-server and of the `redial serve` process from just before the push to the end of the phase, ÷ the phase's numbers; ms/s is that CPU ÷ wall time (1000 = one core). " +
		"Commands are INFO commandstats calls on each master over the same span (commands run inside a script count under their own name as well as the EVALSHA), including the bench's 20 ms polls (two LLEN per queue), the node's heartbeats and pollers, and pub/sub.\n")
	s.WriteString("- Redis's CPU per command falls as its load rises (more commands per event-loop wake-up and per `read`/`write`); the masters here run far from saturation, so 1 s ÷ CPU per number is a floor of what a core sustains, not a measured saturation point.\n")
	fmt.Fprintf(&s, "- The node, the %d masters and SIPp share the machine's %d cores (cores busy = CPU ÷ wall time). The rest of the machine is `/proc/stat` busy time minus the node, the masters, SIPp and the bench process: other work on the shared machine. Before each phase the bench waited up to 20 s for two seconds in which the rest used under 10%% of a core (%s).\n",
		ceilMasters, runtime.NumCPU(), r.quietSummary())
	if r.warns > 0 {
		fmt.Fprintf(&s, "- The node logged %d line(s) at warn and up (the first: `%s`).\n", r.warns, strings.ReplaceAll(tail(r.firstWarn, 300), "`", "'"))
	} else {
		s.WriteString("- The node logged nothing at warn and up.\n")
	}
	s.WriteString("\nCommand:\n\n```\n" + r.b.command + "\n```\n")
	return s.String()
}

// quietSummary says per phase how the wait for a quiet machine ended.
func (r ceilReport) quietSummary() string {
	var q []string
	for _, p := range r.phases {
		q = append(q, p.name+": "+p.quiet.String())
	}
	return strings.Join(q, "; ")
}

// holds names the queues and shared keys on master m.
func (r ceilReport) holds(m int) string {
	var h []string
	for i, t := range r.tasks {
		if t.master == m {
			h = append(h, "queue "+string(rune('A'+i)))
		}
	}
	for _, l := range r.layout {
		if strings.HasSuffix(l, fmt.Sprintf("→ M%d", m+1)) {
			h = append(h, l[:strings.Index(l, " `")])
		}
	}
	if len(h) == 0 {
		return "call records only"
	}
	return strings.Join(h, ", ")
}

// findings states the ceiling and the spread from the phases measured.
func (r ceilReport) findings(s *strings.Builder) {
	byName := map[string]*ceilPhase{}
	for _, p := range r.phases {
		byName[p.name] = p
	}
	a, b, both, again := byName["A alone"], byName["B alone"], byName["A and B"], byName["A again"]
	s.WriteString("Findings:\n\n")
	if a != nil {
		per := (a.perNumber(a.redisCPU()))
		if b != nil {
			per = (per + b.perNumber(b.redisCPU())) / 2
		}
		fmt.Fprintf(s, "- **Redis CPU per number: %.1f µs** summed over the masters (mean of the phases with one task). "+
			"One Redis core holding every key would sustain **1 s ÷ %.1f µs ≈ %.0f numbers/s**.\n", per, per, 1e6/per)
	}
	if a != nil && b != nil {
		for i, t := range r.tasks {
			own, other := a, b
			if i == 1 {
				own, other = b, a
			}
			m := t.master
			cOwn := float64(ceilTotal(own.cmds[m])) / float64(own.numbers())
			cOther := float64(ceilTotal(other.cmds[m])) / float64(other.numbers())
			fmt.Fprintf(s, "- Queue %c's load lands on its master M%d: %.2f commands and %.1f µs of CPU per number while %s ran, %.2f and %.1f µs while %s ran; "+
				"the queue's own share there is %.2f commands and %.1f µs per number (1 s ÷ that ≈ %s numbers/s of one queue per master core). The rest is the keys every call shares.\n",
				'A'+i, m+1, cOwn, own.perNumber(own.masterCPU[m]), own.name, cOther, other.perNumber(other.masterCPU[m]), other.name,
				cOwn-cOther, own.perNumber(own.masterCPU[m])-other.perNumber(other.masterCPU[m]),
				ceilPerSec(own.perNumber(own.masterCPU[m])-other.perNumber(other.masterCPU[m])))
		}
	}
	if both != nil {
		worst, wm := 0.0, 0
		for m, d := range both.masterCPU {
			if v := both.perNumber(d); v > worst {
				worst, wm = v, m
			}
		}
		fmt.Fprintf(s, "- Both together: A %s + B %s numbers/s while both ran", ceilTogether(both, 0), ceilTogether(both, 1))
		if a != nil && b != nil {
			fmt.Fprintf(s, " (alone: %.0f and %.0f)", a.rate(0), b.rate(0))
		}
		fmt.Fprintf(s, "; %.0f numbers/s over the phase. The busiest master per number is M%d (%s) at %.1f µs, so with campaigns spread over queues the cluster's first core saturates at about **%s numbers/s**: "+
			"the shared keys, not the queues, set the cluster's ceiling.\n", both.totalRate(), wm+1, r.holds(wm), worst, ceilPerSec(worst))
		busiest := 0.0
		for _, d := range both.masterCPU {
			busiest = max(busiest, d.Seconds()/both.wall.Seconds())
		}
		busy := func(d time.Duration) float64 { return d.Seconds() / both.wall.Seconds() }
		nodeCores := busy(both.nodeCPU)
		if busiest < 0.8 {
			fmt.Fprintf(s, "- On this machine Redis is not the limit, the cores are: together the node used %.2f cores (%.0f µs of CPU per number), the %d masters %.2f (the busiest %.0f%% of one), SIPp %.2f, the bench %.2f and other work %.2f: %.2f of %d cores. "+
				"The node is by far the largest consumer, so one node's rate here is what the shared cores leave it, and a second queue on another master adds no throughput.\n",
				nodeCores, both.perNumber(both.nodeCPU), len(both.masterCPU), busy(both.redisCPU()), 100*busiest, busy(both.uasCPU), busy(both.benchCPU), busy(max(both.otherCPU, 0)),
				busy(both.nodeCPU+both.redisCPU()+both.uasCPU+both.benchCPU+max(both.otherCPU, 0)), runtime.NumCPU())
		} else {
			fmt.Fprintf(s, "- A master neared a full core (%.0f%%) while the node used %.2f cores (%.0f µs of CPU per number).\n",
				100*busiest, nodeCores, both.perNumber(both.nodeCPU))
		}
	}
	if a != nil && again != nil {
		fmt.Fprintf(s, "- A again, after the other phases: %.0f numbers/s, node %.0f µs and Redis %.1f µs of CPU per number (first time: %.0f, %.0f µs, %.1f µs).\n",
			again.rate(0), again.perNumber(again.nodeCPU), again.perNumber(again.redisCPU()), a.rate(0), a.perNumber(a.nodeCPU), a.perNumber(a.redisCPU()))
	}
}

// ceilTogether is task k's rate in the phase until its first task ended.
func ceilTogether(p *ceilPhase, k int) string {
	if k >= len(p.doneThen) || p.firstDone <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", float64(p.doneThen[k])/p.firstDone.Seconds())
}

// ceilPerSec is 1 s ÷ perNumber µs, as text.
func ceilPerSec(perNumber float64) string {
	if perNumber <= 0 {
		return "— (no measurable difference)"
	}
	return fmt.Sprintf("%.0f", 1e6/perNumber)
}
