package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions tune StartSentinel.
type SentinelOptions struct {
	// Master is the monitored master's name. Default "redial".
	Master string
	// DownAfter is down-after-milliseconds: how long the master may be
	// silent before the sentinels call it down. Default 1s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout. Default 5s.
	FailoverTimeout time.Duration
}

// Sentinel is a Redis master with one replica (both AOF with fsync
// always) watched by three sentinels (`redis-server --sentinel`, quorum
// 2), all on loopback, owned by one test.
type Sentinel struct {
	// URL is redial's form:
	// redis-sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<master>.
	URL string
	// MasterName is the monitored master's name.
	MasterName string
	// SentinelAddrs are the three sentinels' addresses.
	SentinelAddrs []string
	// Client is a go-redis failover client that follows the master.
	Client *redis.Client

	data      []*server // data[0] is the first master
	sentinels []*server
}

// StartSentinel starts the master, its replica and three sentinels, and
// waits until the replica is in sync and every sentinel knows the master,
// the replica and the two other sentinels. Everything is killed when the
// test ends; logs are shown if it failed.
func StartSentinel(t testing.TB, o SentinelOptions) *Sentinel {
	t.Helper()
	RequireTool(t, "redis-server")
	if o.Master == "" {
		o.Master = "redial"
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 5 * time.Second
	}
	s := &Sentinel{MasterName: o.Master}
	root := t.TempDir()
	mkdir := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Cleanup(func() {
		if s.Client != nil {
			s.Client.Close()
		}
		for _, srv := range append(append([]*server{}, s.sentinels...), s.data...) {
			srv.kill()
		}
		if t.Failed() {
			for _, srv := range append(append([]*server{}, s.data...), s.sentinels...) {
				t.Logf("%s (%s) log:\n%s", srv.name, srv.Addr, srv.logTail(3000))
			}
		}
	})
	mport := FreePort(t)
	mdir := mkdir("master")
	s.data = append(s.data, newServer("redis master", mport, mdir, dataArgs(mport, mdir)...))
	rport := FreePort(t)
	rdir := mkdir("replica")
	s.data = append(s.data, newServer("redis replica", rport, rdir,
		append(dataArgs(rport, rdir), "--replicaof", "127.0.0.1", strconv.Itoa(mport))...))
	for _, srv := range s.data {
		srv.start(t)
	}
	for i := 0; i < 3; i++ {
		port := FreePort(t)
		dir := mkdir(fmt.Sprintf("sentinel%d", i))
		conf := filepath.Join(dir, "sentinel.conf")
		// The sentinel rewrites its config file with what it learns, so
		// each has its own.
		body := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "redis.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", o.Master, mport),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.Master, o.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", o.Master, o.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", o.Master),
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		srv := newServer(fmt.Sprintf("sentinel %d", i), port, dir, conf, "--sentinel")
		s.sentinels = append(s.sentinels, srv)
		s.SentinelAddrs = append(s.SentinelAddrs, srv.Addr)
		srv.start(t)
	}
	s.URL = "redis-sentinel://" + strings.Join(s.SentinelAddrs, ",") + "/" + o.Master
	if err := waitUntil(30*time.Second, func() error { return s.ready(context.Background(), "127.0.0.1:"+strconv.Itoa(mport), 1) }); err != nil {
		t.Fatalf("testenv: sentinel deployment not ready: %v", err)
	}
	s.Client = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: o.Master, SentinelAddrs: s.SentinelAddrs, Protocol: 2})
	WaitFor(t, 10*time.Second, func() error { return s.Client.Ping(context.Background()).Err() })
	return s
}

// ready checks that every running sentinel names master as the master,
// sees it up with replicas replicas and knows the two other sentinels, and
// that master says so itself and its replicas are in sync.
func (s *Sentinel) ready(ctx context.Context, master string, replicas int) error {
	for _, sn := range s.sentinels {
		if !sn.running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: 500 * time.Millisecond, MaxRetries: -1, Protocol: 2})
		m, err := sc.Master(ctx, s.MasterName).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("%s: SENTINEL MASTER: %w", sn.Addr, err)
		}
		addr := m["ip"] + ":" + m["port"]
		switch {
		case addr != master:
			return fmt.Errorf("%s: master is %s, want %s", sn.Addr, addr, master)
		case m["flags"] != "master":
			return fmt.Errorf("%s: master %s flags %q", sn.Addr, addr, m["flags"])
		case m["num-other-sentinels"] != "2":
			return fmt.Errorf("%s: knows %s other sentinels, want 2", sn.Addr, m["num-other-sentinels"])
		}
		if n, _ := strconv.Atoi(m["num-slaves"]); n < replicas {
			return fmt.Errorf("%s: knows %d replicas, want %d", sn.Addr, n, replicas)
		}
	}
	cl := direct(master)
	info, err := cl.Info(ctx, "replication").Result()
	cl.Close()
	if err != nil {
		return fmt.Errorf("master %s: INFO replication: %w", master, err)
	}
	if role := infoField(info, "role"); role != "master" {
		return fmt.Errorf("%s says role %s", master, role)
	}
	if n, _ := strconv.Atoi(infoField(info, "connected_slaves")); n < replicas {
		return fmt.Errorf("master %s has %d connected replicas, want %d", master, n, replicas)
	}
	for _, d := range s.data {
		if !d.running() || d.Addr == master {
			continue
		}
		cl := direct(d.Addr)
		info, err := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil {
			return fmt.Errorf("replica %s: INFO replication: %w", d.Addr, err)
		}
		if infoField(info, "role") != "slave" || infoField(info, "master_port") != master[strings.LastIndexByte(master, ':')+1:] ||
			infoField(info, "master_link_status") != "up" {
			return fmt.Errorf("replica %s: role %s, master port %s, link %s", d.Addr, infoField(info, "role"),
				infoField(info, "master_port"), infoField(info, "master_link_status"))
		}
	}
	return nil
}

// MasterAddr is the master address the sentinels agree on.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	addr, err := s.masterAddr(context.Background())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return addr
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var got string
	for _, sn := range s.sentinels {
		if !sn.running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: 500 * time.Millisecond, MaxRetries: -1, Protocol: 2})
		v, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		sc.Close()
		if err != nil {
			return "", fmt.Errorf("%s: SENTINEL GET-MASTER-ADDR-BY-NAME: %w", sn.Addr, err)
		}
		addr := strings.Join(v, ":")
		if got != "" && addr != got {
			return "", fmt.Errorf("sentinels disagree: %s and %s", got, addr)
		}
		got = addr
	}
	return got, nil
}

func (s *Sentinel) server(addr string) *server {
	for _, d := range s.data {
		if d.Addr == addr {
			return d
		}
	}
	return nil
}

// KillMaster kills the current master (SIGKILL) and returns its address;
// WaitNewMaster then waits for the replica's promotion.
func (s *Sentinel) KillMaster(t testing.TB) string {
	t.Helper()
	addr := s.MasterAddr(t)
	srv := s.server(addr)
	if srv == nil {
		t.Fatalf("testenv: sentinels name %s, which is not one of this deployment's servers", addr)
	}
	srv.kill()
	return addr
}

// WaitNewMaster waits until every sentinel names a master other than old,
// which says role:master itself, and returns it.
func (s *Sentinel) WaitNewMaster(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var addr string
	err := waitUntil(timeout, func() error {
		var err error
		if addr, err = s.masterAddr(context.Background()); err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("master is still %s", old)
		}
		cl := direct(addr)
		defer cl.Close()
		info, err := cl.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if r := infoField(info, "role"); r != "master" {
			return fmt.Errorf("%s says role %s", addr, r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: no new master: %v", err)
	}
	return addr
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER) and waits
// until the replica is the master. It returns the old and the new master.
//
// Under writes this loses data: the sentinels promote the replica and only
// then tell clients (+switch-master, about a second later), and the old
// master stays a master, accepting writes, until they demote it (about ten
// seconds later). Whatever clients wrote to it meanwhile is discarded when
// it resyncs from the new master. Switchover is the lossless way.
func (s *Sentinel) Failover(t testing.TB, timeout time.Duration) (old, new string) {
	t.Helper()
	old = s.MasterAddr(t)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], Protocol: 2})
	err := sc.Failover(context.Background(), s.MasterName).Err()
	sc.Close()
	if err != nil {
		t.Fatalf("testenv: SENTINEL FAILOVER %s: %v", s.MasterName, err)
	}
	return old, s.WaitNewMaster(t, old, timeout)
}

// Switchover moves the master to the replica without losing a write, as
// an operator should for planned maintenance: CLIENT PAUSE WRITE on the
// master (writes wait instead of landing where they would be lost), wait
// until the replica has every byte, SENTINEL FAILOVER, wait for the new
// master, REPLICAOF the old master to it at once (rather than when the
// sentinels get to it), then CLIENT UNPAUSE: the writes that waited on the
// old master now fail with READONLY or a closed connection, and clients
// send them again to the new master. It returns the old and new master.
func (s *Sentinel) Switchover(t testing.TB, timeout time.Duration) (old, new string) {
	t.Helper()
	ctx := context.Background()
	old = s.MasterAddr(t)
	oc := direct(old)
	defer oc.Close()
	if err := oc.Do(ctx, "CLIENT", "PAUSE", timeout.Milliseconds()+5000, "WRITE").Err(); err != nil {
		t.Fatalf("testenv: CLIENT PAUSE on %s: %v", old, err)
	}
	if err := waitUntil(timeout, func() error {
		info, err := oc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		want := infoField(info, "master_repl_offset")
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "slave") && !strings.Contains(line, "offset="+want+",") {
				return fmt.Errorf("replica behind master offset %s: %s", want, strings.TrimSpace(line))
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("testenv: replica of %s never caught up: %v", old, err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], Protocol: 2})
	err := sc.Failover(ctx, s.MasterName).Err()
	sc.Close()
	if err != nil {
		t.Fatalf("testenv: SENTINEL FAILOVER %s: %v", s.MasterName, err)
	}
	new = s.WaitNewMaster(t, old, timeout)
	host, port, _ := strings.Cut(new, ":")
	if err := oc.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatalf("testenv: REPLICAOF %s on the old master %s: %v", new, old, err)
	}
	if err := oc.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("testenv: CLIENT UNPAUSE on %s: %v", old, err)
	}
	if err := waitUntil(timeout, func() error { return s.ready(ctx, new, 1) }); err != nil {
		t.Fatalf("testenv: after the switchover to %s: %v", new, err)
	}
	return old, new
}

// Restart starts a killed data server again on its port; the sentinels
// turn it into a replica of the current master. It waits until it is in
// sync and every sentinel lists it.
func (s *Sentinel) Restart(t testing.TB, addr string) {
	t.Helper()
	srv := s.server(addr)
	if srv == nil {
		t.Fatalf("testenv: no data server %s", addr)
	}
	if !srv.running() {
		srv.start(t)
	}
	if err := waitUntil(60*time.Second, func() error {
		m, err := s.masterAddr(context.Background())
		if err != nil {
			return err
		}
		return s.ready(context.Background(), m, 1)
	}); err != nil {
		t.Fatalf("testenv: %s did not rejoin as a replica: %v", addr, err)
	}
}
