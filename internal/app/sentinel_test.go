package app

import (
	"fmt"
	"testing"
	"time"

	"redial/internal/testenv"
)

// Behind Redis Sentinel (redis-sentinel:// URL): a campaign, scheduled
// calls and callbacks run on two nodes while the master is moved to the
// replica the lossless way (testenv's Switchover: writes paused, SENTINEL
// FAILOVER, old master demoted at once). The nodes follow the new master;
// every number gets one INVITE and one CDR and nothing stays claimed.
// (SENTINEL FAILOVER alone loses the writes of the switch window: see the
// chaos suite.)
func TestSentinelFlows(t *testing.T) {
	s := testenv.StartSentinel(t, testenv.SentinelOptions{})
	const queue = "sentinel_q" // no hash tag needed outside a Cluster
	f := setupFlows(t, s.Client, queue, 60, 10, 5)
	hosts := []string{"s1", "s2"}
	for _, h := range hosts {
		startNode(t, s.URL, h)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		cdrs, err := uniCDRs(t, s.Client)
		if err != nil || len(cdrs) < 10 {
			return fmt.Errorf("%d CDRs so far (%v)", len(cdrs), err)
		}
		return nil
	})
	old, now := s.Switchover(t, 30*time.Second)
	t.Logf("master moved from %s to %s", old, now)
	f.wait(t, s.Client, hosts, 60*time.Second)
}
