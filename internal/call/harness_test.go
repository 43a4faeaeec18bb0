package call_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/call"
	"redial/internal/config"
	"redial/internal/dialplan"
	"redial/internal/lines"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/sip"
	"redial/internal/store"
	"redial/internal/testenv"
)

// scenario is the path of a SIPp scenario in testdata/sipp.
func scenario(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "sipp", name)
}

// node is the part of a redial node a call goes through: Redis, notify,
// lines, the SIP engine, the dialplan and the call manager, all real.
type node struct {
	redis    *testenv.Redis
	calls    *call.Manager
	registry *prometheus.Registry
}

// startNode runs the call path on loopback against r; lines and dialplan
// entries must be in Redis before (lines are loaded at start).
func startNode(t *testing.T, r *testenv.Redis) *node {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("REDIAL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	st, err := store.New(store.Config{URL: r.URL, Domain: "default", Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := notify.New(notify.Config{SpoolDir: t.TempDir()}, notify.Deps{Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := lines.New(lines.Config{NodeID: "n1"}, lines.Deps{Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sipPort := testenv.FreePort(t)
	// This package's range, 30000-32699 (see testenv's package comment).
	rtpBase := 30000 + (sipPort%27)*100
	ports, err := media.NewPortPool(rtpBase, rtpBase+98)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: parked sockets free their ports.
	t.Cleanup(func() { ports.Close() })
	eng, err := sip.New(sip.Config{PublicIP: "127.0.0.1", Listeners: []config.Listener{
		{Network: "udp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)},
		{Network: "tcp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)}}},
		sip.Deps{Logger: log, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	m, err := call.NewManager(call.Config{}, call.Deps{Lines: ln, SIP: eng, Dialplan: dialplan.New(st),
		Notify: pub, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	// Started in dependency order, stopped in reverse, each waited for.
	var stops []func()
	for _, run := range []func(context.Context) error{pub.Run, ln.Run, eng.Run, m.Run} {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("component stopped: %v", err)
			}
		}()
		stops = append(stops, func() { cancel(); wg.Wait() })
	}
	t.Cleanup(func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		st.Close()
	})
	<-eng.Ready()
	return &node{redis: r, calls: m, registry: reg}
}

// setLine writes a line definition.
func setLine(t *testing.T, r *testenv.Redis, name, group, uri string) {
	t.Helper()
	v := fmt.Sprintf(`{"params":{"group":%q,"uri":%q,"enable":true},"variables":{"origination_caller_id_number":"15550001111"}}`, group, uri)
	if err := r.Client.HSet(context.Background(), "cti_line@default", name, v).Err(); err != nil {
		t.Fatal(err)
	}
}

// setDialplan writes a dialplan entry.
func setDialplan(t *testing.T, r *testenv.Redis, key, target string) {
	t.Helper()
	if err := r.Client.HSet(context.Background(), "cti_dialplan@default", key, target).Err(); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
