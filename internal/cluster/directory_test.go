package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"redial/internal/testenv"
)

func TestDirectoryListsNodesWithAddresses(t *testing.T) {
	r := testenv.StartRedis(t)
	started := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	a := startNode(t, r, "a", false, NodeInfo{SIP: map[string]string{"udp": "127.0.0.1:5060", "tcp": "127.0.0.1:5060"},
		HTTP: "127.0.0.1:8088", PublicURL: "http://a.example:8088", Version: "v1.2.3", Started: started})
	startNode(t, r, "b", false, NodeInfo{SIP: map[string]string{"udp": "127.0.0.1:5070"}, HTTP: "127.0.0.1:8089",
		Version: "v1.2.4", Started: time.Now()})
	nodes, err := a.dir.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Host != "a" || nodes[1].Host != "b" {
		t.Fatalf("nodes %+v, want a and b", nodes)
	}
	na, nb := nodes[0], nodes[1]
	if !na.Alive || na.SIP["udp"] != "127.0.0.1:5060" || na.SIP["tcp"] != "127.0.0.1:5060" || na.HTTP != "127.0.0.1:8088" ||
		na.PublicURL != "http://a.example:8088" || na.Version != "v1.2.3" || !na.Started.Equal(started) || na.DeadSince != nil {
		t.Fatalf("node a: %+v", na)
	}
	if na.Age < time.Minute || na.HeartbeatTTL != testTTL || time.Since(na.LastSeen) > 10*time.Second {
		t.Fatalf("node a: age %v, ttl %v, last seen %v", na.Age, na.HeartbeatTTL, na.LastSeen)
	}
	if !nb.Alive || nb.SIP["udp"] != "127.0.0.1:5070" || nb.HTTP != "127.0.0.1:8089" || nb.Version != "v1.2.4" {
		t.Fatalf("node b: %+v", nb)
	}
	// The JSON the API serves round-trips.
	b, _ := json.Marshal(na)
	var back NodeState
	if err := json.Unmarshal(b, &back); err != nil || back.Host != "a" || back.SIP["udp"] != "127.0.0.1:5060" ||
		back.PublicURL != na.PublicURL || back.HeartbeatTTL != testTTL || back.Age < time.Minute {
		t.Fatalf("JSON %s -> %+v, %v", b, back, err)
	}
	alive, err := a.dir.Alive(context.Background(), []string{"a", "b", "ghost"})
	if err != nil || !alive["a"] || !alive["b"] || alive["ghost"] {
		t.Fatalf("Alive = %v, %v", alive, err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if v := metricValue(a.dir.mNodes.WithLabelValues("alive")); v != 2 {
			return fmt.Errorf("redial_cluster_nodes{state=alive} = %v", v)
		}
		return nil
	})
}

// A node that stops heartbeating without a word (its Run context gone, no
// cleanup: what a crash looks like from Redis) is reported dead within one
// TTL plus one poll, in Nodes and on Deaths.
func TestDirectoryReportsDeathWithinTTL(t *testing.T) {
	r := testenv.StartRedis(t)
	watcher := startNode(t, r, "watcher", false, NodeInfo{})
	victim := startNode(t, r, "victim", false, NodeInfo{})
	deaths, unsubscribe := watcher.dir.Deaths()
	defer unsubscribe()
	waitTrusted(t, watcher.dir)
	victim.kill()
	killed := time.Now()
	select {
	case h := <-deaths:
		if h != "victim" {
			t.Fatalf("death notice for %q", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no death notice within 10s")
	}
	// One TTL plus one poll (TTL/4), plus slack for a loaded machine.
	if el := time.Since(killed); el > testTTL+testTTL/4+time.Second {
		t.Fatalf("death reported %v after the kill, want within TTL+TTL/4 (%v)", el, testTTL+testTTL/4)
	}
	nodes, err := watcher.dir.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		switch n.Host {
		case "victim":
			if n.Alive || n.DeadSince == nil || !n.DeadSince.Equal(n.LastSeen.Add(testTTL)) {
				t.Fatalf("victim: %+v", n)
			}
		case "watcher":
			if !n.Alive {
				t.Fatalf("watcher: %+v", n)
			}
		}
	}
	// Once per death: no second notice for the same death.
	select {
	case h := <-deaths:
		t.Fatalf("second notice for %q", h)
	case <-time.After(testTTL / 2):
	}
}

func TestDirectoryTrustedAfterOneTTLAndNotAfterRedisRestart(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", false, NodeInfo{})
	ready := time.Now()
	if a.dir.Trusted() {
		t.Fatalf("trusted right after the first heartbeat")
	}
	waitTrusted(t, a.dir)
	if el := time.Since(ready); el < testTTL-testTTL/4 {
		t.Fatalf("trusted %v after registering, want about one TTL (%v)", el, testTTL)
	}

	r.Stop()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a.dir.Trusted() {
			return fmt.Errorf("still trusted with Redis down")
		}
		return nil
	})
	if v := metricValue(a.dir.mHBFailed); v == 0 {
		t.Fatalf("no heartbeat failure counted while Redis was down")
	}
	r.Restart(t)
	back := time.Now()
	if a.dir.Trusted() {
		t.Fatalf("trusted right after Redis came back")
	}
	waitTrusted(t, a.dir)
	if el := time.Since(back); el < testTTL {
		t.Fatalf("trusted %v after Redis came back, want at least one TTL", el)
	}
}

// Redis losing its data without any connection error (FLUSHALL, a failover
// to an empty replica) makes every alive key vanish at once: no live node
// may be declared dead for it.
func TestDirectoryNoDeathsWhenRedisLosesItsData(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", false, NodeInfo{})
	startNode(t, r, "b", false, NodeInfo{})
	deaths, unsubscribe := a.dir.Deaths()
	defer unsubscribe()
	waitTrusted(t, a.dir)
	if err := r.Client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a.dir.Trusted() {
			return fmt.Errorf("still trusted after FLUSHALL")
		}
		return nil
	})
	// b's alive key was missing only while a distrusted the directory:
	// by the time a trusts it again, b has heartbeated again.
	waitTrusted(t, a.dir)
	select {
	case h := <-deaths:
		t.Fatalf("node %q declared dead after Redis lost its data, while alive", h)
	default:
	}
	nodes, err := a.dir.Nodes(context.Background())
	if err != nil || len(nodes) != 2 || !nodes[0].Alive || !nodes[1].Alive {
		t.Fatalf("nodes after FLUSHALL: %+v, %v", nodes, err)
	}
}

// A node dead before the watcher started is announced once the watcher is
// trusted (its leftovers still need recovering); one dead for more than a
// day is forgotten.
func TestDirectoryAnnouncesOldDeathsAndForgetsAfterADay(t *testing.T) {
	r := testenv.StartRedis(t)
	st := newStore(t, r, "x")
	ctx := context.Background()
	if _, err := st.NodeHeartbeat(ctx, "recent", []byte(`{"host":"recent"}`), testTTL, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.NodeHeartbeat(ctx, "ancient", []byte(`{"host":"ancient"}`), testTTL, time.Now().Add(-25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.Client.Del(ctx, st.AliveKey("recent"), st.AliveKey("ancient"), st.LegacyAliveKey("recent"), st.LegacyAliveKey("ancient"))
	a := startNode(t, r, "a", false, NodeInfo{})
	deaths, unsubscribe := a.dir.Deaths()
	defer unsubscribe()
	select {
	case h := <-deaths:
		if h != "recent" {
			t.Fatalf("death notice for %q, want recent", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no notice for the node that died before we started")
	}
	if !a.dir.Trusted() {
		t.Fatalf("notice sent while not trusted")
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if r.Client.HExists(ctx, st.NodesInfoKey(), "ancient").Val() {
			return fmt.Errorf("ancient still registered")
		}
		return nil
	})
	nodes, err := a.dir.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Host != "a" || nodes[1].Host != "recent" || nodes[1].Alive {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
}

func TestDeathsUnsubscribeClosesChannel(t *testing.T) {
	r := testenv.StartRedis(t)
	d, err := NewDirectory(DirectoryConfig{Self: NodeInfo{Host: "a"}}, DirectoryDeps{Store: newStore(t, r, "a")})
	if err != nil {
		t.Fatal(err)
	}
	ch, unsubscribe := d.Deaths()
	unsubscribe()
	unsubscribe()
	if _, ok := <-ch; ok {
		t.Fatalf("channel open after unsubscribe")
	}
	if d.Self() != "a" || d.TTL() != 10*time.Second {
		t.Fatalf("Self %q TTL %v", d.Self(), d.TTL())
	}
	if _, err := NewDirectory(DirectoryConfig{}, DirectoryDeps{Store: newStore(t, r, "a")}); err == nil {
		t.Fatalf("no error without a host")
	}
}
