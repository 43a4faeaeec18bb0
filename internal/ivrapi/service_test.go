package ivrapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"redial/internal/cluster"
	"redial/internal/files"
	"redial/internal/ivr"
	"redial/internal/store"
	"redial/internal/testenv"
)

// startService runs a Service on a real Redis with its real collaborators
// (no token check: Auth is nil) and serves it on a loopback httptest
// server.
func startService(t *testing.T, cfg Config) (*Service, *httptest.Server) {
	t.Helper()
	r := testenv.StartRedis(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	st, err := store.New(store.Config{URL: r.URL, Domain: "default", Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus, err := cluster.NewBus(cluster.BusConfig{Host: "n1"}, cluster.BusDeps{Store: st, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	fstores, err := files.New(files.Config{Root: t.TempDir(), Domain: "default"})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := ivr.New(ivr.Config{Domain: "default", Host: "n1"}, ivr.Deps{Store: st, Files: fstores, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	fetcher, err := files.NewFetcher(files.FetchConfig{})
	if err != nil {
		t.Fatal(err)
	}
	links, err := files.NewLinks(files.LinksConfig{Dir: t.TempDir(), Host: "n1", PublicURL: func() string { return "http://127.0.0.1:1" }},
		files.LinksDeps{Secret: st.DigestSecret, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Domain = "n1", "default"
	s, err := New(cfg, Deps{IVR: engine, Bus: bus, Files: fstores, Fetcher: fetcher, Links: links, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { bus.Run(ctx); done <- struct{}{} }()
	go func() { s.Run(ctx); done <- struct{}{} }()
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		cancel()
		<-done
		<-done
		srv.Close()
	})
	// The app starts its web server once Ready is closed (app.go): the
	// tests dial at once after it, as an application may.
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("ivrapi: Ready not closed 5 s after Run started")
	}
	return s, srv
}

func dial(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// A subscriber that stops reading never holds up the events of calls:
// handing it events stays instant, and once its queue is full it is
// disconnected with code 4000 and a reason, while a reading subscriber
// gets every event.
func TestSlowClientIsDisconnectedNotWaitedFor(t *testing.T) {
	s, srv := startService(t, Config{SendQueue: 64})
	slow := dial(t, srv)
	fast := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []*websocket.Conn{slow, fast} {
		c.Write(ctx, websocket.MessageText, []byte(`["subscribe",{"qid":1,"class":"ivrevents"}]`))
		if _, b, err := c.Read(ctx); err != nil || !strings.Contains(string(b), `"result":"ok"`) {
			t.Fatalf("subscribe: %s %v", b, err)
		}
	}
	const events = 2000
	progress := make(chan int, events)
	go func() {
		defer close(progress)
		for n := 1; n <= events; n++ {
			if _, _, err := fast.Read(ctx); err != nil {
				return
			}
			progress <- n
		}
	}()
	pad := strings.Repeat("x", 16<<10)
	var handing time.Duration
	got := 0
	for i := 1; i <= events; i++ {
		frame := fmt.Appendf(nil, `["notify",{"class":"ivrevents","type":"api_start","seq":1,"data":{"ivrid":"s%d","key":"k","pad":%q}}]`, i, pad)
		began := time.Now()
		s.deliverLocal(delivery{Domain: "default", IVRID: fmt.Sprintf("s%d", i), Key: "k", Seq: 1, Type: evAPIStart, Frame: frame})
		handing += time.Since(began)
		// Like calls, events come at the pace of a client that reads: in
		// batches of 32, each once the reading client has the previous.
		if i%32 == 0 || i == events {
			for got < i {
				n, ok := <-progress
				if !ok {
					t.Fatalf("the reading subscriber stopped after %d of %d events", got, i)
				}
				got = n
			}
		}
	}
	// 2,000 events of 16 KiB each: 32 MiB the slow client never reads.
	if handing > 5*time.Second {
		t.Fatalf("handing out %d events took %v: a slow client held them up", events, handing)
	}
	// The slow one reads at last: what fitted, then the close.
	var err error
	for err == nil {
		_, _, err = slow.Read(ctx)
	}
	if st := websocket.CloseStatus(err); st != StatusTooSlow {
		t.Fatalf("slow client closed with %v (%v), want %d", st, err, StatusTooSlow)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "too slow") {
		t.Fatalf("close reason: %v", err)
	}
	if got := value(s.m.closed.WithLabelValues("too_slow")); got != 1 {
		t.Fatalf("redial_ivrapi_disconnects_total{reason=too_slow} = %v", got)
	}
	if got := value(s.m.dropped.WithLabelValues("client_too_slow")); got < 1 {
		t.Fatalf("redial_ivrapi_events_dropped_total{reason=client_too_slow} = %v", got)
	}
}

// Requests are answered by name and qid, and counted by result.
func TestRequestsCountedByResult(t *testing.T) {
	s, srv := startService(t, Config{})
	c := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, f := range []string{
		`["subscribe",{"qid":"a","class":"ivrevents"}]`,
		`["ivrapi_accept",{"qid":"b","key":"k","ivrid":"nope"}]`,
		`["nonsense",{"qid":"c"}]`,
	} {
		c.Write(ctx, websocket.MessageText, []byte(f))
		if _, b, err := c.Read(ctx); err != nil || !strings.Contains(string(b), `"qid":"`) {
			t.Fatalf("%s: %s %v", f, b, err)
		}
	}
	for _, tc := range []struct {
		name, result string
	}{{"subscribe", "ok"}, {"ivrapi_accept", CodeNotFound}, {"unknown", CodeBadRequest}} {
		if got := value(s.m.requests.WithLabelValues(tc.name, tc.result)); got != 1 {
			t.Errorf("requests{%s,%s} = %v", tc.name, tc.result, got)
		}
	}
	if got := value(s.m.conns); got != 1 {
		t.Errorf("connections = %v", got)
	}
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
