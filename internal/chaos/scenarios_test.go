//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"redial/internal/store"
)

// Every campaign: 300 numbers, limit 10 per node, calls of 1 to 2 s.
const (
	campaignSize  = 300
	campaignLimit = 10
	settleTimeout = 3 * time.Minute
)

// settle waits for f to settle and records a failure when it does not.
func (r *run) settle(f flow) {
	if err := r.waitSettled(f, settleTimeout); err != nil {
		r.fig.Failures = append(r.fig.Failures, "did not settle: "+err.Error())
	}
}

func TestChaosA_RedisKilled30s(t *testing.T) {
	r := newRun(t, "a", "Redis killed for 30 s mid-campaign", singleRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555010")
	r.waitProgress(c, 0.25)
	r.dep.single.Stop()
	killed := time.Now()
	// The outage's length is the fault itself, not a wait for a condition.
	<-time.After(30 * time.Second)
	r.dep.single.Restart(t)
	back := time.Now()
	r.fig.Fault = fmt.Sprintf("SIGKILL of redis-server once %d%% of the CDRs were in, restarted with its AOF %.1f s later", 25, back.Sub(killed).Seconds())
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: back})
	r.finish()
}

func TestChaosB_RedisRestartedEmpty(t *testing.T) {
	r := newRun(t, "b", "Redis restarted empty mid-campaign", singleRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555020")
	r.waitProgress(c, 0.25)
	r.dep.single.Stop()
	r.dep.single.RestartEmpty(t)
	back := time.Now()
	r.fig.Fault = "SIGKILL of redis-server, AOF deleted, restarted empty at once"
	// The nodes drop the task (it is gone from Redis) within a resync.
	if err := waitUntil(30*time.Second, func() error {
		for _, n := range r.nodes {
			if has, err := n.hasTask("chaos"); err != nil || has {
				return fmt.Errorf("node %s still runs task chaos (%v)", n.host, err)
			}
		}
		return nil
	}); err != nil {
		r.fig.Failures = append(r.fig.Failures, "after the wipe: "+err.Error())
	}
	// Every call that was up at the wipe ends with its CDR, in the new Redis.
	if err := waitUntil(60*time.Second, func() error {
		has := map[string]bool{}
		for _, cd := range r.watch.snapshot() {
			has[cd.Number] = true
		}
		missing := 0
		for _, inv := range invites(r.carrier) {
			if !has[inv.Number] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d dialed numbers without a CDR", missing)
		}
		return nil
	}); err != nil {
		r.fig.Failures = append(r.fig.Failures, "calls up at the wipe: "+err.Error())
	}
	after := 0
	for _, inv := range invites(r.carrier) {
		if inv.At.After(back) {
			after++
		}
	}
	r.note("INVITEs sent after Redis came back empty: %d", after)
	for _, n := range r.nodes {
		r.note("/healthz of %s after the wipe: %s", n.host, n.healthz())
	}
	r.measure(c, measureOpts{lostByRedis: true})
	if after > 0 {
		r.fig.Failures = append(r.fig.Failures, fmt.Sprintf("%d INVITEs after Redis came back empty (nothing was left to dial)", after))
	}

	// The operator writes the configuration again: the same nodes dial.
	restored := time.Now()
	r.configure(r.fig.destAddr)
	c2 := r.campaign("chaos", 20, campaignLimit, "1555029")
	r.fig.Pushed -= 20
	if err := r.waitSettled(c2, 60*time.Second); err != nil {
		r.fig.Failures = append(r.fig.Failures, "new numbers after the configuration was restored: "+err.Error())
	}
	fresh := map[string]bool{}
	for _, n := range c2.nums {
		fresh[n] = true
	}
	first := time.Duration(-1)
	for _, cd := range r.watch.snapshot() {
		if fresh[cd.Number] && (first < 0 || cd.At.Sub(restored) < first) {
			first = cd.At.Sub(restored)
		}
	}
	dial := time.Duration(-1)
	for _, inv := range invites(r.carrier) {
		if fresh[inv.Number] && (dial < 0 || inv.At.Sub(restored) < dial) {
			dial = inv.At.Sub(restored)
		}
	}
	r.fig.ResumeCDR, r.fig.ResumeDial = first, dial
	r.note("after the operator rewrote line and task: %d new numbers pushed; first INVITE after %s, first CDR after %s (times to resume count from this rewrite)", 20, dur(dial), dur(first))
	r.finish()
}

func TestChaosC_SentinelFailover(t *testing.T) {
	r := newRun(t, "c", "Sentinel failover mid-campaign", sentinelRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555030")
	r.waitProgress(c, 0.25)
	old := r.dep.sentinel.KillMaster(t)
	killed := time.Now()
	nw := r.dep.sentinel.WaitNewMaster(t, old, 60*time.Second)
	r.note("new master elected after: %.1f s (%s replaced %s)", time.Since(killed).Seconds(), nw, old)
	r.fig.Fault = "SIGKILL of the master once 25% of the CDRs were in; the killed server restarted once the replica was promoted"
	r.dep.sentinel.Restart(t, old)
	r.note("old master back as a replica after: %.1f s", time.Since(killed).Seconds())
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: killed})
	r.finish()
}

func TestChaosD_ClusterMasterFailover(t *testing.T) {
	r := newRun(t, "d", "Cluster master failover mid-campaign", clusterRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555040")
	r.waitProgress(c, 0.25)
	killed := time.Now()
	addr, took := r.dep.cluster.KillMasterOf(t, campaignQueue, 60*time.Second)
	r.note("cluster_state ok again after: %.1f s (master %s of slot {chaos} killed)", took.Seconds(), addr)
	r.fig.Fault = "SIGKILL of the master of the queue's slot once 25% of the CDRs were in; restarted once its replica took over"
	r.dep.cluster.Restart(t, addr)
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: killed})
	r.finish()
}

// victim returns the node holding the most claims in l's processing lists.
func (r *run) victim(keysOf func(host string) store.LedgerKeys) *nodeProc {
	var best *nodeProc
	var most int64 = -1
	for _, n := range r.nodes {
		if v := r.claimsOf(keysOf(n.host)); v > most {
			best, most = n, v
		}
	}
	return best
}

// claimsOf counts a host's claims: its processing and dialing lists.
func (r *run) claimsOf(k store.LedgerKeys) int64 {
	ctx := context.Background()
	return r.dep.rdb.LLen(ctx, k.Processing).Val() + r.dep.rdb.LLen(ctx, k.Dialing).Val()
}

// killVictim kills the node with the most claims and records what it held
// and how long the survivors took to recover it.
func (r *run) killVictim(keysOf func(host string) store.LedgerKeys) (victim *nodeProc, marked []string, killed time.Time) {
	ctx := context.Background()
	victim = r.victim(keysOf)
	victim.kill()
	killed = time.Now()
	// Nothing touches a dead node's claims before its heartbeat lapses
	// (2 s): read them now.
	k := keysOf(victim.host)
	held := r.claimsOf(k)
	marked, _ = r.dep.rdb.LRange(ctx, k.Dialing, 0, -1).Result()
	r.note("claims held by the killed node %s: %d, of which possibly dialed: %d", victim.host, held, len(marked))
	if err := waitUntil(60*time.Second, func() error {
		if n := r.claimsOf(k); n > 0 {
			return fmt.Errorf("%d claims of %s not recovered", n, victim.host)
		}
		return nil
	}); err != nil {
		r.fig.Failures = append(r.fig.Failures, err.Error())
	} else {
		r.note("claims recovered by the survivors after: %.1f s", time.Since(killed).Seconds())
	}
	return victim, marked, killed
}

func TestChaosE_NodeKilledMidCampaign(t *testing.T) {
	r := newRun(t, "e", "kill -9 of a node mid-campaign", singleRedis)
	r.startNodes(3)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555050")
	r.waitProgress(c, 0.25)
	_, _, killed := r.killVictim(c.ledger.Keys)
	r.fig.Fault = "SIGKILL of the node holding the most claims once 25% of the CDRs were in"
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: killed})
	r.finish()
}

func TestChaosF_NodeKilledMidSchedule(t *testing.T) {
	r := newRun(t, "f", "kill -9 of a node mid-schedule", singleRedis)
	r.startNodes(2)
	s := r.schedule(campaignSize, 80*time.Millisecond, "1555060")
	r.waitProgress(s, 0.25)
	_, _, killed := r.killVictim(s.ledger.Keys)
	r.fig.Fault = "SIGKILL of the node holding the most scheduled claims once 25% of the CDRs were in"
	r.settle(s)
	r.measure(s, measureOpts{faultEnd: killed})
	r.finish()
}

func TestChaosG_NodeKilledMidCallback(t *testing.T) {
	r := newRun(t, "g", "kill -9 of a node mid-callback", singleRedis)
	r.startNodes(2)
	cb := r.callbacks(150, 12, "1555070")
	r.waitProgress(cb, 0.25)
	_, marked, killed := r.killVictim(cb.plans.Keys)
	r.fig.Fault = "SIGKILL of the node holding the most plan claims once 25% of the callbacks had their CDR"
	repeat := map[string]bool{}
	for _, p := range marked {
		repeat[cb.number(p)] = true
	}
	r.settle(cb)
	ended, _ := r.dep.rdb.LLen(context.Background(), r.st.PlansEndedKey()).Result()
	r.note("plans ended: %d of %d", ended, len(cb.nums))
	r.measure(cb, measureOpts{faultEnd: killed, mayRepeat: repeat})
	r.finish()
}

func TestChaosH_RedisPaused10s(t *testing.T) {
	r := newRun(t, "h", "Redis frozen (SIGSTOP) for 10 s mid-campaign", singleRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555080")
	r.waitProgress(c, 0.25)
	r.dep.single.Pause(t)
	paused := time.Now()
	<-time.After(10 * time.Second) // the stall's length is the fault itself
	r.dep.single.Resume(t)
	back := time.Now()
	r.fig.Fault = fmt.Sprintf("SIGSTOP of redis-server once 25%% of the CDRs were in, SIGCONT %.1f s later", back.Sub(paused).Seconds())
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: back})
	r.finish()
}

func TestChaosI_SentinelFailoverUnpaused(t *testing.T) {
	r := newRun(t, "i", "SENTINEL FAILOVER mid-campaign, writes not paused", sentinelRedis)
	r.fig.documented = true
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555090")
	r.waitProgress(c, 0.25)
	start := time.Now()
	old, nw := r.dep.sentinel.Failover(t, 60*time.Second)
	r.note("sentinels name the new master after: %.1f s (%s replaced %s)", time.Since(start).Seconds(), nw, old)
	r.fig.Fault = "SENTINEL FAILOVER once 25% of the CDRs were in, nothing else (the old master stays a master until the sentinels demote it)"
	if err := r.waitSettled(c, 90*time.Second); err != nil {
		r.note("not settled 90 s after the failover: %s", err)
	}
	r.measure(c, measureOpts{faultEnd: start})
	r.finish()
}

func TestChaosJ_SentinelSwitchover(t *testing.T) {
	r := newRun(t, "j", "Sentinel switchover mid-campaign, writes paused first", sentinelRedis)
	r.startNodes(2)
	c := r.campaign("chaos", campaignSize, campaignLimit, "1555100")
	r.waitProgress(c, 0.25)
	start := time.Now()
	old, nw := r.dep.sentinel.Switchover(t, 60*time.Second)
	r.note("switchover done after: %.1f s (%s replaced %s)", time.Since(start).Seconds(), nw, old)
	r.fig.Fault = "CLIENT PAUSE WRITE on the master, SENTINEL FAILOVER, REPLICAOF of the old master to the new one at once, CLIENT UNPAUSE, once 25% of the CDRs were in"
	r.settle(c)
	r.measure(c, measureOpts{faultEnd: start})
	r.finish()
}

// hasTask asks the node's API whether it runs task name.
func (n *nodeProc) hasTask(name string) (bool, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + n.http + "/api/v1/tasks")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /api/v1/tasks: %s", resp.Status)
	}
	var body struct {
		Tasks []struct {
			Name string `json:"name"`
		} `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err
	}
	for _, t := range body.Tasks {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}
