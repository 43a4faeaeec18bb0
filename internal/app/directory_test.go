package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"redial/internal/cluster"
	"redial/internal/config"
	"redial/internal/testenv"
)

// Two nodes, one of them a `redial serve` process with no task config:
// both are in the directory with their addresses and version, the idle
// one stays alive, and after kill -9 it is reported dead (Nodes and
// Deaths) within one heartbeat TTL plus one poll.
func TestDirectoryKillNineReportedDead(t *testing.T) {
	const ttl = 2 * time.Second // startProcess runs with --heartbeat-ttl 2s
	r := testenv.StartRedis(t)
	n1 := startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.HeartbeatTTL = ttl })
	victim := startProcess(t, r.URL, "victim")
	ctx := context.Background()

	find := func(nodes []cluster.NodeState, host string) (cluster.NodeState, bool) {
		for _, n := range nodes {
			if n.Host == host {
				return n, true
			}
		}
		return cluster.NodeState{}, false
	}
	// The victim has no task at all and must still be alive to n1, well
	// past one TTL after it started.
	var v cluster.NodeState
	testenv.WaitFor(t, 60*time.Second, func() error {
		nodes, err := n1.Directory.Nodes(ctx)
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = find(nodes, "victim"); !ok || !v.Alive {
			return fmt.Errorf("victim not alive in %+v", nodes)
		}
		if v.Age < 2*ttl {
			return fmt.Errorf("victim up for %v only", v.Age)
		}
		return nil
	})
	if !strings.HasPrefix(v.SIP["udp"], "127.0.0.1:") || !strings.HasPrefix(v.HTTP, "127.0.0.1:") || v.Version != Version ||
		v.PublicURL != "http://"+v.HTTP || v.HeartbeatTTL != ttl {
		t.Fatalf("victim registered as %+v", v)
	}

	// GET /api/v1/nodes on n1 lists both, with n1's own addresses.
	var body struct {
		Nodes []cluster.NodeState `json:"nodes"`
	}
	if code := n1.get("/api/v1/nodes", &body); code != http.StatusOK || len(body.Nodes) != 2 {
		t.Fatalf("GET /api/v1/nodes: %d %+v", code, body)
	}
	self, _ := find(body.Nodes, "n1")
	if !self.Alive || self.SIP["udp"] != n1.SIP.Addr("udp") || self.SIP["tcp"] != n1.SIP.Addr("tcp") ||
		self.HTTP != n1.Web.Addr() || self.Version != Version {
		t.Fatalf("n1 in the API: %+v", self)
	}
	if api, _ := find(body.Nodes, "victim"); api.SIP["udp"] != v.SIP["udp"] || !api.Alive {
		t.Fatalf("victim in the API: %+v", api)
	}

	deaths, unsubscribe := n1.Directory.Deaths()
	defer unsubscribe()
	testenv.WaitFor(t, 30*time.Second, func() error {
		if !n1.Directory.Trusted() {
			return fmt.Errorf("n1 not trusted yet")
		}
		return nil
	})
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	victim.Wait()
	killed := time.Now()
	select {
	case h := <-deaths:
		if h != "victim" {
			t.Fatalf("death notice for %q", h)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no death notice within 30s of kill -9")
	}
	// One TTL plus one poll (TTL/4), and a second of slack for a loaded
	// machine.
	if el := time.Since(killed); el > ttl+ttl/4+time.Second {
		t.Fatalf("death reported %v after kill -9, want within %v", el, ttl+ttl/4)
	}
	nodes, err := n1.Directory.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := find(nodes, "victim"); d.Alive || d.DeadSince == nil || d.DeadSince.After(time.Now()) {
		t.Fatalf("victim after kill -9: %+v", d)
	}
}
