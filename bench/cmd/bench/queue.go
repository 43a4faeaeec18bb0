package main

// Part 7, queue: inbound callers through an ACD queue to 100 SIPp agents on
// one node: how many callers per second are answered by an agent with none
// lost, next to SIPp callers straight to a SIPp agent UAS as the reference,
// and how long an agent who hangs up stays idle while callers wait.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/store"
)

const (
	queueName     = "bench"
	queueAgents   = 100
	queuePools    = 4 // SIPp UAS processes, queueAgents/queuePools extensions each
	queueTalk     = 100 * time.Millisecond
	queueStep     = 6 * time.Second
	queueLatTalk  = time.Second // talk time of the agent-free-to-INVITE phase
	queueLatCalls = 500
	queueLatRate  = 250
	queueDialed   = "7000"
)

// queueRates is the caller-arrival ladder in callers/s.
var queueRates = []int{50, 100, 200, 300, 400, 500, 600}

// queueStepRun is one step of the ladder, for either side.
type queueStepRun struct {
	rate, callers int
	connected     int // caller SIPp calls successful
	failed        int
	agentCDRs     int // redial: ANSWERED CDRs with an ext
	cdrs          int64
	elapsed       time.Duration
	perS          float64
	maxWaiting    int64
	nodeCPU       time.Duration
	redisCPU      time.Duration
	exitErr       error
	sustained     bool
}

// agentPool is one SIPp UAS answering for several registered extensions.
type agentPool struct {
	port int
	exts []string
	uas  *sippProc
}

func runQueue(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	loadBefore := loadAverage()
	dir := filepath.Join(b.work, "queue")
	var xml [3]string
	for i, name := range []string{"uac_register.xml", "uas_answer_bye.xml", "uac_queue_caller.xml"} {
		p, err := scenarioPath(b.root, name)
		if err != nil {
			return "", err
		}
		xml[i] = p
	}
	regXML, agentXML, callerXML := xml[0], xml[1], xml[2]
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	// A line at 127.0.0.1: SIPp callers on loopback are trunk calls and go
	// through the public context.
	for key, val := range map[string]string{
		"cti_line@default":     `{"params":{"group":"trunk","uri":"sip:127.0.0.1:5999","enable":true}}`,
		"cti_dialplan@default": fmt.Sprintf(`{"type":"queue","queue":%q}`, queueName),
	} {
		field := "trunk"
		if key == "cti_dialplan@default" {
			field = "public:" + queueDialed
		}
		if err := rds.Client.HSet(ctx, key, field, val).Err(); err != nil {
			return "", fmt.Errorf("queue: write %s: %w", key, err)
		}
	}
	node, err := startBenchNode(ctx, rds, filepath.Join(dir, "node"), "bench-q")
	if err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	defer node.stop()
	if err := node.Lines.Reload(ctx); err != nil {
		return "", fmt.Errorf("queue: load lines: %w", err)
	}
	nodeAddr := node.SIP.Addr("udp")

	var exts []string
	for i := 0; i < queueAgents; i++ {
		ext := fmt.Sprintf("50%02d", i)
		exts = append(exts, ext)
		if err := node.Store.SetUser(ctx, ext, fmt.Sprintf(`{"params":{"password":"pw%s","enable":true}}`, ext)); err != nil {
			return "", fmt.Errorf("queue: user %s: %w", ext, err)
		}
	}
	qcfg := fmt.Sprintf(`{"params":{"agents":["%s"],"strategy":"longest_idle","wrapup_s":0,"ring_timeout_s":10,"join_empty":true}}`,
		strings.Join(exts, `","`))
	if err := node.Store.SetQueue(ctx, queueName, qcfg); err != nil {
		return "", fmt.Errorf("queue: queue %s: %w", queueName, err)
	}

	// Register every agent from its pool's port, pools in parallel.
	fmt.Printf("queue: registering %d agents on %d SIPp pools\n", queueAgents, queuePools)
	pools := make([]*agentPool, queuePools)
	per := queueAgents / queuePools
	var wg sync.WaitGroup
	regErrs := make([]error, queuePools)
	for p := range pools {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		pools[p] = &agentPool{port: port, exts: exts[p*per : (p+1)*per]}
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for _, ext := range pools[p].exts {
				reg, err := startSipp(sippOpts{Scenario: regXML, Port: pools[p].port, Remote: nodeAddr, Dir: filepath.Join(dir, "register", ext),
					Args: []string{"-m", "1", "-s", ext, "-au", ext, "-ap", "pw" + ext, "-set", "expected", "200", "-set", "expires", "3600"}})
				if err == nil {
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err = reg.Wait(wctx)
					cancel()
					if err != nil {
						err = fmt.Errorf("%w\n%s", err, tail(reg.Output(), 800))
					}
				}
				if err != nil {
					regErrs[p] = fmt.Errorf("queue: register agent %s: %w", ext, err)
					return
				}
			}
		}(p)
	}
	wg.Wait()
	if err := errors.Join(regErrs...); err != nil {
		return "", err
	}
	if err := waitAgentsAvailable(ctx, node, exts, 15*time.Second); err != nil {
		return "", fmt.Errorf("queue: after registering: %w", err)
	}
	startPools := func(talk time.Duration, sub string, trace bool) error {
		for p, pool := range pools {
			args := []string{"-d", fmt.Sprint(talk.Milliseconds())}
			if trace {
				args = append(args, "-trace_msg", "-message_file", filepath.Join(dir, sub, fmt.Sprintf("pool-%d-messages.log", p)))
			}
			uas, err := startSipp(sippOpts{Scenario: agentXML, Port: pool.port, BuffSize: b.sippBuff, Dir: filepath.Join(dir, sub, fmt.Sprintf("pool-%d", p)), Args: args})
			if err != nil {
				return err
			}
			pool.uas = uas
		}
		return nil
	}
	killPools := func() {
		for _, pool := range pools {
			if pool.uas != nil {
				pool.uas.Kill()
				pool.uas = nil
			}
		}
	}
	defer killPools()
	if err := startPools(queueTalk, "ladder", false); err != nil {
		return "", err
	}

	// Throughput ladder: reference, then redial, at each rate.
	sipp, redial := map[int]*queueStepRun{}, map[int]*queueStepRun{}
	sippOn, redialOn := true, true
	var errs []error
	for _, rate := range queueRates {
		if !sippOn && !redialOn || ctx.Err() != nil {
			break
		}
		n := int(float64(rate) * queueStep.Seconds())
		if sippOn {
			r, err := queueSippReference(ctx, b, agentXML, callerXML, rate, n, filepath.Join(dir, fmt.Sprintf("sipp-%d", rate)))
			if err != nil {
				errs = append(errs, err)
				sippOn = false
			} else {
				sipp[rate], sippOn = r, r.sustained
				fmt.Printf("  SIPp   %4d callers/s: %6.1f connected/s, %d/%d ok\n", rate, r.perS, r.connected, n)
			}
		}
		if redialOn {
			r, err := queueRedialStep(ctx, b, rds, node, exts, callerXML, []string{nodeAddr}, rate, n, filepath.Join(dir, fmt.Sprintf("redial-%d", rate)))
			if err != nil {
				errs = append(errs, err)
				redialOn = false
			} else {
				redial[rate], redialOn = r, r.sustained
				fmt.Printf("  redial %4d callers/s: %6.1f connected/s, %d/%d ok, %d by an agent (CDRs), max waiting %d, node CPU %s\n",
					rate, r.perS, r.connected, n, r.agentCDRs, r.maxWaiting, r.nodeCPU.Round(10*time.Millisecond))
			}
		}
	}

	// Agent free to next INVITE: longer calls, callers arriving faster than
	// agents free up, so someone is always waiting.
	fmt.Printf("queue: agent free to next INVITE (%d callers at %d/s, talk %s)\n", queueLatCalls, queueLatRate, queueLatTalk)
	killPools()
	lat := &queueLatency{}
	if err := waitAgentsAvailable(ctx, node, exts, 15*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("queue: before the latency phase: %w", err))
	} else if err := startPools(queueLatTalk, "latency", true); err != nil {
		errs = append(errs, err)
	} else {
		lat, err = queueLatencyPhase(ctx, b, rds, node, pools, callerXML, nodeAddr, filepath.Join(dir, "latency"))
		if err != nil {
			errs = append(errs, err)
		}
	}
	killPools()

	// Two nodes on the one Redis: callers split over both, agents still
	// registered on the first, so half the calls ring an agent across nodes.
	two := map[int]*queueStepRun{}
	if ctx.Err() == nil {
		fmt.Println("queue: two nodes")
		if err := twoNodeLadder(ctx, b, rds, node, exts, callerXML, startPools, two, dir); err != nil {
			errs = append(errs, err)
		}
		killPools()
	}
	sec := queueReport(b, sipp, redial, two, lat, loadBefore, loadAverage(), time.Since(began))
	return sec, errors.Join(errs...)
}

// twoNodeLadder runs the redial ladder again with a second node sharing
// Redis, callers split evenly over the two.
func twoNodeLadder(ctx context.Context, b *bench, rds *redisServer, a *benchNode, exts []string, callerXML string,
	startPools func(time.Duration, string, bool) error, out map[int]*queueStepRun, dir string) error {
	if err := waitAgentsAvailable(ctx, a, exts, 15*time.Second); err != nil {
		return fmt.Errorf("queue: before the two-node ladder: %w", err)
	}
	nb, err := startBenchNode(ctx, rds, filepath.Join(dir, "node-b"), "bench-q2")
	if err != nil {
		return fmt.Errorf("queue: second node: %w", err)
	}
	defer nb.stop()
	if err := nb.Lines.Reload(ctx); err != nil {
		return fmt.Errorf("queue: second node: load lines: %w", err)
	}
	if err := startPools(queueTalk, "two", false); err != nil {
		return err
	}
	addrs := []string{a.SIP.Addr("udp"), nb.SIP.Addr("udp")}
	for _, rate := range queueRates {
		if ctx.Err() != nil {
			break
		}
		n := int(float64(rate) * queueStep.Seconds())
		r, err := queueRedialStep(ctx, b, rds, a, exts, callerXML, addrs, rate, n, filepath.Join(dir, fmt.Sprintf("two-%d", rate)))
		if err != nil {
			return err
		}
		out[rate] = r
		fmt.Printf("  2 nodes %4d callers/s: %6.1f connected/s, %d/%d ok, %d by an agent (CDRs), max waiting %d, CPU of both %s\n",
			rate, r.perS, r.connected, n, r.agentCDRs, r.maxWaiting, r.nodeCPU.Round(10*time.Millisecond))
		if !r.sustained {
			break
		}
	}
	return nil
}

// waitAgentsAvailable polls the agents' states until every one is
// available (registered, not ringing, not on a call).
func waitAgentsAvailable(ctx context.Context, node *benchNode, exts []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := node.Store.AgentStates(ctx, exts, time.Now())
		busy := 0
		example := ""
		if err == nil {
			for _, e := range exts {
				if st := m[e]; st.State != store.AgentAvailable {
					busy++
					example = e + " " + st.State
				}
			}
			if busy == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d agents not available after %v (e.g. %s; err %v)", busy, len(exts), timeout, example, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func queueCallerArgs(rate, n int) []string {
	limit := queueStep + 30*time.Second
	return []string{"-r", fmt.Sprint(rate), "-rp", "1000", "-m", fmt.Sprint(n), "-l", fmt.Sprint(n),
		"-s", queueDialed, "-key", "caller", "15550009999",
		"-timeout", fmt.Sprintf("%ds", int(limit.Seconds())), "-timeout_error"}
}

// queueSippReference runs SIPp callers straight against one SIPp agent UAS
// (same scenarios and talk time, no queue and no limit of 100 agents).
func queueSippReference(ctx context.Context, b *bench, agentXML, callerXML string, rate, n int, dir string) (*queueStepRun, error) {
	r := &queueStepRun{rate: rate, callers: n}
	uas, err := startSipp(sippOpts{Scenario: agentXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"), Args: []string{"-d", fmt.Sprint(queueTalk.Milliseconds())}})
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	c, err := startSipp(sippOpts{Scenario: callerXML, BuffSize: b.sippBuff, Remote: uas.Addr, Dir: filepath.Join(dir, "callers"), Args: queueCallerArgs(rate, n)})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, queueStep+45*time.Second)
	r.exitErr = c.Wait(wctx)
	cancel()
	st, err := c.Stats()
	if err != nil {
		return nil, fmt.Errorf("queue: SIPp reference at %d callers/s: %w\n%s", rate, err, tail(c.Output(), 1500))
	}
	r.fill(st)
	r.sustained = r.connected == n && r.exitErr == nil && r.perS >= sustainedFrac*float64(rate)
	return r, nil
}

// cores is the node CPU over the caller SIPp's wall time: below the
// machine's cores at an unsustained step, the limit is not CPU.
func (r *queueStepRun) cores() string {
	if r.elapsed <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", r.nodeCPU.Seconds()/r.elapsed.Seconds())
}

func (r *queueStepRun) fill(st sippStats) {
	r.connected, r.elapsed = st.Successful, st.Elapsed()
	r.failed = r.callers - st.Successful
	if r.elapsed > 0 {
		r.perS = float64(r.connected) / r.elapsed.Seconds()
	}
}

// queueRedialStep runs n SIPp callers at rate into the queue, split over
// the nodes at nodeAddrs; node reads the agents' states.
func queueRedialStep(ctx context.Context, b *bench, rds *redisServer, node *benchNode, exts []string, callerXML string, nodeAddrs []string,
	rate, n int, dir string) (*queueStepRun, error) {
	r := &queueStepRun{rate: rate, callers: n}
	rds.Client.Del(ctx, benchCDRList, "enigma:notifications:inbound")
	cpu0, redis0 := processCPU(), rds.CPU()
	// One caller SIPp per node, the rate and the callers split evenly.
	var callers []*sippProc
	for i, addr := range nodeAddrs {
		share := n / len(nodeAddrs)
		if i == 0 {
			share += n % len(nodeAddrs)
		}
		c, err := startSipp(sippOpts{Scenario: callerXML, BuffSize: b.sippBuff, Remote: addr, Dir: filepath.Join(dir, fmt.Sprintf("callers-%d", i)),
			Args: queueCallerArgs(rate/len(nodeAddrs), share)})
		if err != nil {
			for _, c := range callers {
				c.Kill()
			}
			return nil, err
		}
		callers = append(callers, c)
	}
	stopPoll := pollWaiting(ctx, rds, node.Store.WaitingKey(queueName), &r.maxWaiting)
	wctx, cancel := context.WithTimeout(ctx, queueStep+45*time.Second)
	var errs []error
	for _, c := range callers {
		if err := c.Wait(wctx); err != nil {
			errs = append(errs, err)
		}
	}
	r.exitErr = errors.Join(errs...)
	cancel()
	stopPoll()
	r.nodeCPU, r.redisCPU = processCPU()-cpu0, rds.CPU()-redis0
	var total sippStats
	for i, c := range callers {
		st, err := c.Stats()
		if err != nil {
			return nil, fmt.Errorf("queue: redial at %d callers/s: %w\n%s", rate, err, tail(c.Output(), 1500))
		}
		if i == 0 || st.Start.Before(total.Start) {
			total.Start = st.Start
		}
		if st.Current.After(total.Current) {
			total.Current = st.Current
		}
		total.Successful += st.Successful
	}
	r.fill(total)
	// Every caller's CDR, answered by an agent.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.cdrs, _ = rds.Client.LLen(ctx, benchCDRList).Result()
		if r.cdrs >= int64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, err := rds.Client.LRange(ctx, benchCDRList, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	for _, s := range raw {
		var env struct {
			Payload struct {
				Disposition string  `json:"disposition"`
				Ext         *string `json:"ext"`
			} `json:"payload"`
		}
		if json.Unmarshal([]byte(s), &env) == nil && env.Payload.Disposition == "ANSWERED" && env.Payload.Ext != nil {
			r.agentCDRs++
		}
	}
	if err := waitAgentsAvailable(ctx, node, exts, 20*time.Second); err != nil {
		return nil, fmt.Errorf("queue: after %d callers/s: %w", rate, err)
	}
	r.sustained = r.connected == n && r.agentCDRs == n && r.exitErr == nil && r.perS >= sustainedFrac*float64(rate)
	return r, nil
}

// pollWaiting records the longest line seen in max until the returned
// stop is called.
func pollWaiting(ctx context.Context, rds *redisServer, key string, max *int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := rds.Client.ZCard(ctx, key).Result(); err == nil && n > atomic.LoadInt64(max) {
				atomic.StoreInt64(max, n)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// queueLatency is the agent-free-to-INVITE phase.
type queueLatency struct {
	callers, connected, agentInvites int
	maxWaiting                       int64
	gaps                             []time.Duration // sorted
	elapsed                          time.Duration
	exitErr                          error
}

func queueLatencyPhase(ctx context.Context, b *bench, rds *redisServer, node *benchNode, pools []*agentPool, callerXML, nodeAddr, dir string) (*queueLatency, error) {
	l := &queueLatency{callers: queueLatCalls}
	c, err := startSipp(sippOpts{Scenario: callerXML, BuffSize: b.sippBuff, Remote: nodeAddr, Dir: filepath.Join(dir, "callers"), Args: queueCallerArgs(queueLatRate, queueLatCalls)})
	if err != nil {
		return l, err
	}
	stopPoll := pollWaiting(ctx, rds, node.Store.WaitingKey(queueName), &l.maxWaiting)
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	l.exitErr = c.Wait(wctx)
	cancel()
	stopPoll()
	if st, err := c.Stats(); err == nil {
		l.connected, l.elapsed = st.Successful, st.Elapsed()
	}
	for _, p := range pools {
		p.uas.Kill() // flushes the message log
	}
	for p := range pools {
		evs, err := agentEvents(filepath.Join(dir, fmt.Sprintf("pool-%d-messages.log", p)))
		if err != nil {
			return l, fmt.Errorf("queue: agent pool %d messages: %w", p, err)
		}
		for _, e := range evs {
			if e.invite {
				l.agentInvites++
			}
		}
		l.gaps = append(l.gaps, freeToInvite(evs)...)
	}
	sortDurations(l.gaps)
	return l, nil
}

// agentEvent is an INVITE an agent's phone received or the first BYE it
// sent for a call.
type agentEvent struct {
	ext    string
	at     time.Time
	invite bool // else BYE sent
}

var agentMsgHead = regexp.MustCompile(`^-+ (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*$`)

// agentEvents reads a SIPp UAS -trace_msg log: each message is a dashed
// line with SIPp's timestamp, a "UDP message sent/received" line, a blank
// line, then the SIP message. The BYE's Request-URI is redial's Contact,
// so its extension is the one of the INVITE with the same Call-ID.
func agentEvents(path string) ([]agentEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type msg struct {
		at         time.Time
		sent       bool
		first, cid string
	}
	var msgs []msg
	var cur *msg
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := agentMsgHead.FindStringSubmatch(line); m != nil {
			at, err := time.ParseInLocation("2006-01-02 15:04:05.999999", m[1]+" "+m[2], time.Local)
			if err != nil {
				return nil, fmt.Errorf("timestamp %q: %w", line, err)
			}
			msgs = append(msgs, msg{at: at})
			cur = &msgs[len(msgs)-1]
			continue
		}
		if cur == nil {
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "":
		case cur.first == "" && strings.Contains(t, "message sent"):
			cur.sent = true
		case cur.first == "" && strings.Contains(t, "message received"):
		case cur.first == "":
			cur.first = t
		case cur.cid == "" && len(t) > 8 && strings.EqualFold(t[:8], "call-id:"):
			cur.cid = strings.TrimSpace(t[8:])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	extOf := map[string]string{}
	byeSeen := map[string]bool{}
	var out []agentEvent
	for _, m := range msgs {
		switch {
		case !m.sent && strings.HasPrefix(m.first, "INVITE sip:"):
			if _, seen := extOf[m.cid]; seen {
				continue // retransmission
			}
			user := strings.TrimPrefix(m.first, "INVITE sip:")
			if i := strings.IndexAny(user, "@;> "); i >= 0 {
				user = user[:i]
			}
			extOf[m.cid] = user
			out = append(out, agentEvent{ext: user, at: m.at, invite: true})
		case m.sent && strings.HasPrefix(m.first, "BYE "):
			if byeSeen[m.cid] || extOf[m.cid] == "" {
				continue
			}
			byeSeen[m.cid] = true
			out = append(out, agentEvent{ext: extOf[m.cid], at: m.at})
		}
	}
	return out, nil
}

// freeToInvite pairs, per extension, each BYE sent with the next INVITE
// received; a BYE with no INVITE after it (the line was empty) counts
// nothing.
func freeToInvite(evs []agentEvent) []time.Duration {
	byExt := map[string][]agentEvent{}
	for _, e := range evs {
		byExt[e.ext] = append(byExt[e.ext], e)
	}
	var out []time.Duration
	for _, es := range byExt {
		sort.SliceStable(es, func(i, j int) bool { return es[i].at.Before(es[j].at) })
		for i, e := range es {
			if e.invite {
				continue
			}
			for _, next := range es[i+1:] {
				if next.invite {
					out = append(out, next.at.Sub(e.at))
					break
				}
			}
		}
	}
	return out
}

func queueReport(b *bench, sipp, redial, two map[int]*queueStepRun, lat *queueLatency, loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	s.WriteString("## 7. Queue\n\n")
	fmt.Fprintf(&s, "Inbound callers (SIPp `uac_queue_caller.xml`, from 127.0.0.1, a trunk line's address, dialing `%s`; dialplan `public:%s` → `{\"type\":\"queue\",\"queue\":%q}`) "+
		"wait in one ACD queue (`strategy` longest_idle, `wrapup_s` 0, `ring_timeout_s` 10, `join_empty`) on one in-process node, "+
		"answered (hold media) at once and bridged to the agent who answers. %d agents registered with digest (`uac_register.xml`) from %d SIPp UAS processes "+
		"(`uas_answer_bye.xml`, %d extensions each, same port as their REGISTER) that answer and hang up after `-d %d` ms. "+
		"Caller ladder %s callers/s, each step %s of callers (`-r <rate> -rp 1000`); a step is sustained when every caller was connected to an agent "+
		"(SIPp caller successful, and an ANSWERED CDR with `ext` for each) at ≥ %.0f%% of the rate; each side stops at its first step not sustained. "+
		"The reference runs the same SIPp callers straight against one SIPp agent UAS (same `-d`, no queue, no limit of %d agents). "+
		"Every SIPp runs with `-buff_size %d`.\n\n",
		queueDialed, queueDialed, queueName, queueAgents, queuePools, queueAgents/queuePools, queueTalk.Milliseconds(), joinInts(queueRates), queueStep,
		sustainedFrac*100, queueAgents, b.sippBuff)
	fmt.Fprintf(&s, "Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))
	s.WriteString("| callers/s offered | SIPp connected/s (reference) | redial connected/s | ratio redial/SIPp | redial not connected | answered by an agent (CDRs) | max callers waiting | node CPU / connected call | node cores busy | redis-server CPU / call |\n")
	s.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	dash := "—"
	for _, rate := range queueRates {
		sp, rd := sipp[rate], redial[rate]
		if sp == nil && rd == nil {
			continue
		}
		cols := []string{fmt.Sprint(rate), dash, dash, dash, dash, dash, dash, dash, dash, dash}
		if sp != nil {
			cols[1] = fmt.Sprintf("%.0f", sp.perS)
			if sp.failed > 0 {
				cols[1] += fmt.Sprintf(" (%d failed)", sp.failed)
			}
		}
		if rd != nil {
			cols[2] = fmt.Sprintf("%.0f", rd.perS)
			if sp != nil && sp.perS > 0 {
				cols[3] = fmt.Sprintf("%.2f", rd.perS/sp.perS)
			}
			cols[4] = fmt.Sprintf("%d / %d", rd.failed, rd.callers)
			cols[5] = fmt.Sprintf("%d / %d", rd.agentCDRs, rd.callers)
			cols[6] = fmt.Sprint(rd.maxWaiting)
			if rd.connected > 0 {
				cols[7] = fmt.Sprintf("%.0f µs", float64(rd.nodeCPU.Microseconds())/float64(rd.connected))
				cols[8] = rd.cores()
				cols[9] = fmt.Sprintf("%.0f µs", float64(rd.redisCPU.Microseconds())/float64(rd.connected))
			}
		}
		s.WriteString("| " + strings.Join(cols, " | ") + " |\n")
	}
	best := func(m map[int]*queueStepRun) string {
		top := 0
		for _, rate := range queueRates {
			if r := m[rate]; r != nil && r.sustained {
				top = rate
			}
		}
		switch {
		case len(m) == 0:
			return "not run"
		case top == 0:
			return fmt.Sprintf("none (not even %d callers/s)", queueRates[0])
		case top == queueRates[len(queueRates)-1]:
			return fmt.Sprintf("≥ %d callers/s (top of the ladder)", top)
		}
		return fmt.Sprintf("%d callers/s", top)
	}
	fmt.Fprintf(&s, "\nHighest sustained step: SIPp reference %s, redial %s. With %d agents talking %d ms the agents alone cap the queue at %d calls/s.\n\n",
		best(sipp), best(redial), queueAgents, queueTalk.Milliseconds(), int(float64(queueAgents)/queueTalk.Seconds()))

	if len(two) > 0 {
		fmt.Fprintf(&s, "**Two nodes sharing the Redis.** A second node joins; every step's callers are split evenly over the two (two caller SIPps at half the rate each), "+
			"the %d agents stay registered on the first node, so the callers on the second reach their agent across nodes. Same agents, talk time and criteria; both nodes run in the bench process (same cores).\n\n", queueAgents)
		s.WriteString("| callers/s offered | connected/s | ratio to one node | not connected | answered by an agent (CDRs) | max callers waiting | CPU of both nodes / connected call | cores busy (both nodes) | redis-server CPU / call |\n")
		s.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, rate := range queueRates {
			rd := two[rate]
			if rd == nil {
				continue
			}
			ratio := dash
			if one := redial[rate]; one != nil && one.perS > 0 {
				ratio = fmt.Sprintf("%.2f", rd.perS/one.perS)
			}
			cpu, rcpu := dash, dash
			if rd.connected > 0 {
				cpu = fmt.Sprintf("%.0f µs", float64(rd.nodeCPU.Microseconds())/float64(rd.connected))
				rcpu = fmt.Sprintf("%.0f µs", float64(rd.redisCPU.Microseconds())/float64(rd.connected))
			}
			fmt.Fprintf(&s, "| %d | %.0f | %s | %d / %d | %d / %d | %d | %s | %s | %s |\n", rate, rd.perS, ratio, rd.failed, rd.callers, rd.agentCDRs, rd.callers, rd.maxWaiting, cpu, rd.cores(), rcpu)
		}
		fmt.Fprintf(&s, "\nHighest sustained step on two nodes: %s.\n\n", best(two))
	}
	fmt.Fprintf(&s, "**Agent free to next INVITE.** The agents' talk time is raised to `-d %d` ms and %d callers arrive at %d/s, faster than %d agents free up, so callers wait all along. "+
		"Measured per extension in the agent UAS's SIPp `-trace_msg` log, from the agent's BYE sent (first transmission) to the next INVITE that extension received; "+
		"a BYE with no later INVITE (the line had emptied) counts nothing.\n\n",
		queueLatTalk.Milliseconds(), queueLatCalls, queueLatRate, queueAgents)
	s.WriteString("| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&s, "| callers connected | %d / %d (SIPp exit %s) in %s |\n", lat.connected, lat.callers, errOK(lat.exitErr), lat.elapsed.Round(time.Millisecond))
	fmt.Fprintf(&s, "| INVITEs to agents | %d |\n", lat.agentInvites)
	fmt.Fprintf(&s, "| max callers waiting | %d |\n", lat.maxWaiting)
	if len(lat.gaps) > 0 {
		fmt.Fprintf(&s, "| agent BYE → next INVITE, p50 / p99 / max (%d samples), ms | %s / %s / %s |\n", len(lat.gaps),
			ms(percentile(lat.gaps, 50)), ms(percentile(lat.gaps, 99)), ms(percentile(lat.gaps, 100)))
		over := func(d time.Duration) int {
			return len(lat.gaps) - sort.Search(len(lat.gaps), func(i int) bool { return lat.gaps[i] > d })
		}
		fmt.Fprintf(&s, "| samples over 50 / 100 / 400 ms | %d / %d / %d |\n", over(50*time.Millisecond), over(100*time.Millisecond), over(400*time.Millisecond))
	} else {
		s.WriteString("| agent BYE → next INVITE | no samples |\n")
	}
	s.WriteString("\nNotes:\n\n")
	s.WriteString("- connected/s = successful SIPp callers ÷ the caller SIPp's wall time from its first INVITE to its last BYE's 200 (so it includes one talk time at the end).\n")
	s.WriteString("- Node CPU is the bench process's user+system time over the step (the node; SIPp and redis-server are other processes) ÷ connected callers; each connected caller is two SIP dialogs (caller and agent) plus the RTP relay and the hold media while it waits.\n")
	fmt.Fprintf(&s, "- Node cores busy = node CPU ÷ the step's wall time; the machine has %d cores for the node(s), redis-server and 5–6 SIPp processes together.\n", runtime.NumCPU())
	s.WriteString("- Past the highest sustained step the line grows, and every waiting caller is sent RTP (silence, no `moh` set) every 20 ms, so the node's load grows with the line and connected/s can fall below the last sustained step's.\n")
	s.WriteString("- The two-node table measures coordination across nodes (shared line in Redis, agents rung from the other node), not scaling: both nodes run on the same cores.\n")
	s.WriteString("- SIPp, redis-server and the node share the machine's cores, and the load average shows whatever else ran at the time.\n")
	s.WriteString("\nCommand:\n\n```\n" + b.command + "\n```\n")
	return s.String()
}
