package cluster

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// testTTL is short so deaths show within seconds; generous enough for a
// loaded 2-core machine to heartbeat every TTL/4.
const testTTL = time.Second

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB, host string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("REDIAL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})).With("node", host)
}

// testNode is one node's directory and (optionally) bus, each on its own
// Redis connection pool like a real node.
type testNode struct {
	host   string
	st     *store.Store
	dir    *Directory
	bus    *Bus
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func newStore(t testing.TB, r *testenv.Redis, host string) *store.Store {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return store.NewWithClient(rdb, store.Config{Host: host})
}

// startNode runs a directory (and a bus when withBus) for host until the
// test ends or kill is called. Cancelling without any cleanup write is
// what a crash looks like to the others: the alive key just expires.
func startNode(t testing.TB, r *testenv.Redis, host string, withBus bool, info NodeInfo) *testNode {
	t.Helper()
	n := &testNode{host: host, st: newStore(t, r, host), reg: prometheus.NewRegistry(), done: make(chan struct{})}
	info.Host = host
	log := testLogger(t, host)
	var err error
	n.dir, err = NewDirectory(DirectoryConfig{Self: info, TTL: testTTL}, DirectoryDeps{Store: n.st, Logger: log, Registry: n.reg})
	if err != nil {
		t.Fatal(err)
	}
	if withBus {
		if n.bus, err = NewBus(BusConfig{Host: host}, BusDeps{Store: n.st, Directory: n.dir, Logger: log, Registry: n.reg}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	runs := 1
	errc := make(chan error, 2)
	go func() { errc <- n.dir.Run(ctx) }()
	if n.bus != nil {
		runs++
		go func() { errc <- n.bus.Run(ctx) }()
	}
	go func() {
		defer close(n.done)
		for i := 0; i < runs; i++ {
			if err := <-errc; err != nil {
				t.Errorf("%s: Run: %v", host, err)
			}
		}
	}()
	t.Cleanup(n.kill)
	waitClosed(t, n.dir.Ready(), host+" directory ready")
	if n.bus != nil {
		waitClosed(t, n.bus.Ready(), host+" bus ready")
	}
	return n
}

// kill stops the node's directory and bus and waits for their Run.
func (n *testNode) kill() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		panic(n.host + ": Run did not return within 30s of cancel")
	}
}

func waitClosed(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: not within 15s", what)
	}
}

func waitTrusted(t testing.TB, d *Directory) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, func() error {
		if !d.Trusted() {
			return errNotYet("not trusted")
		}
		return nil
	})
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) }

// metricValue is the value of a collector holding one counter or gauge.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	close(ch)
	var pb dto.Metric
	for m := range ch {
		m.Write(&pb)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}
