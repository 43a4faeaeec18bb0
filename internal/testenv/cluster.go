package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is one redis-server process (a data node or a sentinel) owned by
// a test, with its own directory and log file, restartable on its port.
type server struct {
	name string
	Port int
	Addr string
	dir  string
	args []string // everything after the binary, config file first if any
	cmd  *exec.Cmd
}

// newServer prepares (but does not start) a server on port whose files
// live in dir.
func newServer(name string, port int, dir string, args ...string) *server {
	return &server{name: name, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, args: args}
}

// dataArgs are the arguments of a data node: loopback only, no RDB
// snapshots, AOF with an fsync per write (a kill then keeps every write
// it acknowledged, as a production deployment with AOF does).
func dataArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--logfile", filepath.Join(dir, "redis.log"),
		// A replica (re)joining is synced at once, not after the default
		// 5 s wait for more replicas to share the transfer.
		"--repl-diskless-sync-delay", "0"}
}

func (s *server) start(t testing.TB) {
	t.Helper()
	if err := s.startErr(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func (s *server) startErr() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not installed (run `make deps`): %w", err)
	}
	s.cmd = exec.Command(bin, s.args...)
	s.cmd.Dir = s.dir
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	return waitUntil(10*time.Second, func() error { return pingAddr(s.Addr) })
}

// running reports whether the process was started and not killed.
func (s *server) running() bool { return s.cmd != nil }

// kill ends the process with SIGKILL, as a crash would.
func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	s.cmd = nil
}

func (s *server) signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("%s is not running", s.name)
	}
	return s.cmd.Process.Signal(sig)
}

// logTail is the end of the server's log file.
func (s *server) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return truncate(b, n)
}

// pingAddr sends one PING on a fresh connection.
func pingAddr(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: time.Second, MaxRetries: -1, PoolSize: 1, Protocol: 2})
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

// waitUntil polls cond like WaitFor but returns the last error instead of
// failing the test, for callers that add context first.
func waitUntil(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// infoField returns one "name:value" field of an INFO (or CLUSTER INFO)
// reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// direct is a one-connection client to one server, for administrative
// commands (INFO, CLUSTER ..., SENTINEL ...).
func direct(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 2 * time.Second, MaxRetries: -1, PoolSize: 1, Protocol: 2})
}

// ClusterOptions tune StartCluster.
type ClusterOptions struct {
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica takes over. Default 1500ms.
	NodeTimeout time.Duration
}

// Cluster is a Redis Cluster of three masters with one replica each, on
// loopback, owned by one test.
type Cluster struct {
	// URL is redial's form: redis-cluster://127.0.0.1:p1,...,127.0.0.1:p6.
	URL string
	// Addrs are the six nodes' addresses, masters first as created.
	Addrs []string
	// Client is a go-redis cluster client on every node.
	Client *redis.ClusterClient

	nodes []*server
	t     testing.TB
}

// StartCluster starts six redis-server processes (cluster-enabled, AOF
// with fsync always), joins them with `redis-cli --cluster create
// --cluster-replicas 1` and waits until every node reports
// cluster_state:ok and every replica is in sync. Everything is killed
// when the test ends; node logs are shown if it failed.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	RequireTool(t, "redis-server")
	cli := RequireTool(t, "redis-cli")
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 1500 * time.Millisecond
	}
	c := &Cluster{t: t}
	root := t.TempDir()
	for i := 0; i < 6; i++ {
		port, bus := FreePort(t), FreePort(t)
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append(dataArgs(port, dir), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			// A replica takes over however long it was cut off from its
			// master: in these tests it is only ever the master that dies.
			"--cluster-replica-validity-factor", "0")
		c.nodes = append(c.nodes, newServer(fmt.Sprintf("cluster node %d", i), port, dir, args...))
		c.Addrs = append(c.Addrs, c.nodes[i].Addr)
	}
	t.Cleanup(func() {
		if c.Client != nil {
			c.Client.Close()
		}
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("%s (%s) log:\n%s", n.name, n.Addr, n.logTail(3000))
			}
		}
	})
	for _, n := range c.nodes {
		n.start(t)
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis-cluster://" + strings.Join(c.Addrs, ",")
	c.WaitOK(t, 30*time.Second)
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Protocol: 2})
	WaitFor(t, 10*time.Second, func() error { return c.Client.Ping(context.Background()).Err() })
	return c
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	ID, Addr, Role, MasterID string
	Failed                   bool
	Slots                    []string
}

func (c *Cluster) nodesOf(ctx context.Context, addr string) ([]clusterNode, error) {
	cl := direct(addr)
	defer cl.Close()
	raw, err := cl.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{ID: f[0], Addr: strings.SplitN(f[1], "@", 2)[0], MasterID: f[3], Slots: f[8:]}
		for _, fl := range strings.Split(f[2], ",") {
			switch fl {
			case "master", "slave":
				n.Role = fl
			case "fail", "fail?":
				n.Failed = true
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *Cluster) server(addr string) *server {
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// live are the nodes whose process runs.
func (c *Cluster) live() []*server {
	var out []*server
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}

// healthy checks that every running node says cluster_state:ok, that every
// one of them agrees on which running node serves each of the 3 master
// roles, and that every replica of a running master has its link up.
func (c *Cluster) healthy(ctx context.Context) error {
	masters := map[string]string{} // addr -> seen by
	for _, n := range c.live() {
		cl := direct(n.Addr)
		info, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state %q", n.Addr, st)
		}
		nodes, err := c.nodesOf(ctx, n.Addr)
		if err != nil {
			return fmt.Errorf("%s: CLUSTER NODES: %w", n.Addr, err)
		}
		count := 0
		for _, cn := range nodes {
			if cn.Role != "master" || len(cn.Slots) == 0 {
				continue
			}
			count++
			if srv := c.server(cn.Addr); cn.Failed || srv == nil || !srv.running() {
				return fmt.Errorf("%s sees master %s (failed=%v) still serving slots", n.Addr, cn.Addr, cn.Failed)
			}
			masters[cn.Addr] = n.Addr
		}
		if count != 3 {
			return fmt.Errorf("%s sees %d masters with slots, want 3", n.Addr, count)
		}
	}
	if len(masters) != 3 {
		return fmt.Errorf("nodes disagree on the masters: %v", masters)
	}
	for _, n := range c.live() {
		cl := direct(n.Addr)
		info, err := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", n.Addr, err)
		}
		if infoField(info, "role") == "slave" {
			if st := infoField(info, "master_link_status"); st != "up" {
				return fmt.Errorf("replica %s: master_link_status %q", n.Addr, st)
			}
		}
	}
	return nil
}

// WaitOK waits until the cluster is healthy: cluster_state:ok everywhere,
// three running masters agreed on by all, replicas in sync.
func (c *Cluster) WaitOK(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := waitUntil(timeout, func() error { return c.healthy(context.Background()) }); err != nil {
		t.Fatalf("testenv: redis cluster not ok: %v", err)
	}
}

// MasterOf returns the address of the master serving key's slot.
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	addr, err := c.masterOf(context.Background(), key)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return addr
}

func (c *Cluster) masterOf(ctx context.Context, key string) (string, error) {
	slot := int64(Slot(key))
	for _, n := range c.live() {
		nodes, err := c.nodesOf(ctx, n.Addr)
		if err != nil {
			continue
		}
		for _, cn := range nodes {
			if cn.Role == "master" && !cn.Failed && servesSlot(cn.Slots, slot) {
				return cn.Addr, nil
			}
		}
	}
	return "", fmt.Errorf("no master serves slot %d of %q", slot, key)
}

// Slot is the Redis Cluster hash slot of key: CRC16 of its hash tag (the
// part between the first '{' and the next '}', when not empty) or of the
// whole key, modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func servesSlot(ranges []string, slot int64) bool {
	for _, r := range ranges {
		if strings.HasPrefix(r, "[") {
			continue // a slot being migrated
		}
		lo, hi, found := strings.Cut(r, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			continue
		}
		b := a
		if found {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil {
				continue
			}
		}
		if slot >= a && slot <= b {
			return true
		}
	}
	return false
}

// KillMasterOf kills (SIGKILL) the master serving key's slot, waits until
// its replica has taken over and the cluster is ok again, and returns the
// killed node's address (bring it back with Restart). It returns how long
// the cluster took to be ok again.
func (c *Cluster) KillMasterOf(t testing.TB, key string, timeout time.Duration) (addr string, took time.Duration) {
	t.Helper()
	addr = c.MasterOf(t, key)
	s := c.server(addr)
	start := time.Now()
	s.kill()
	c.WaitOK(t, timeout)
	return addr, time.Since(start)
}

// FailoverMasterOf makes a replica of key's master take over with
// CLUSTER FAILOVER (the master stops accepting writes until the replica
// has caught up, so no acknowledged write is lost) and waits until the
// cluster is ok with the replica as master. It returns the new master.
func (c *Cluster) FailoverMasterOf(t testing.TB, key string, timeout time.Duration) string {
	t.Helper()
	ctx := context.Background()
	old := c.MasterOf(t, key)
	nodes, err := c.nodesOf(ctx, old)
	if err != nil {
		t.Fatalf("testenv: CLUSTER NODES on %s: %v", old, err)
	}
	var oldID, replica string
	for _, cn := range nodes {
		if cn.Addr == old {
			oldID = cn.ID
		}
	}
	for _, cn := range nodes {
		if srv := c.server(cn.Addr); cn.Role == "slave" && cn.MasterID == oldID && !cn.Failed && srv != nil && srv.running() {
			replica = cn.Addr
		}
	}
	if replica == "" {
		t.Fatalf("testenv: master %s has no live replica to fail over to", old)
	}
	cl := direct(replica)
	err = cl.ClusterFailover(ctx).Err()
	cl.Close()
	if err != nil {
		t.Fatalf("testenv: CLUSTER FAILOVER on %s: %v", replica, err)
	}
	if err := waitUntil(timeout, func() error {
		if m, err := c.masterOf(ctx, key); err != nil || m != replica {
			return fmt.Errorf("master of %q is %s (%v), want %s", key, m, err, replica)
		}
		return c.healthy(ctx)
	}); err != nil {
		t.Fatalf("testenv: failover to %s: %v", replica, err)
	}
	return replica
}

// Kill kills the node at addr (SIGKILL) without waiting for anything.
func (c *Cluster) Kill(t testing.TB, addr string) {
	t.Helper()
	s := c.server(addr)
	if s == nil {
		t.Fatalf("testenv: no cluster node %s", addr)
	}
	s.kill()
}

// Restart starts a killed node again on its port with its data and
// cluster config; it rejoins, as a replica if it lost its master role
// meanwhile. It waits until the cluster is healthy.
func (c *Cluster) Restart(t testing.TB, addr string) {
	t.Helper()
	s := c.server(addr)
	if s == nil {
		t.Fatalf("testenv: no cluster node %s", addr)
	}
	if s.running() {
		return
	}
	s.start(t)
	c.WaitOK(t, 30*time.Second)
}
