package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/auth"
	"redial/internal/store"
	"redial/internal/testenv"
)

// authServed is a running web.Server with a real Authenticator.
type authServed struct {
	s    *Server
	base string
	st   *store.Store
}

// serveAuth starts a Server listening on listen (its authenticator judging
// open mode by that address) and returns the loopback URL to reach it.
func serveAuth(t *testing.T, r *testenv.Redis, listen string, adjust func(*Deps)) *authServed {
	t.Helper()
	st := store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"})
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := auth.New(auth.Config{Listen: listen, Domain: "default", Host: "n1"}, auth.Deps{Store: st, Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{Store: st, Registry: reg, Logger: log, Auth: a}
	if adjust != nil {
		adjust(&deps)
	}
	s, err := New(Config{Addr: listen}, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { a.Run(ctx); done <- struct{}{} }()
	go func() { s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	_, port, _ := net.SplitHostPort(s.Addr())
	// Whatever the listen address, tests talk to it over loopback only.
	return &authServed{s: s, base: "http://127.0.0.1:" + port, st: st}
}

func (sv *authServed) do(t *testing.T, method, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, sv.base+path, rd)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Every API route needs a token once one exists; /healthz and /metrics
// never do, whatever the Host.
func TestAPIRoutesNeedAToken(t *testing.T) {
	r := testenv.StartRedis(t)
	sv := serveAuth(t, r, "127.0.0.1:0", nil)
	tok, _, err := sv.st.CreateToken(context.Background(), "ops", []string{"rest"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, func() error {
		if code, _ := sv.do(t, "GET", "/api/v1/tasks", "", nil); code != http.StatusUnauthorized {
			return fmt.Errorf("GET /api/v1/tasks without a token: %d", code)
		}
		return nil
	})
	for _, route := range []string{"GET /api/v1/calls", "GET /api/v1/calls/x", "DELETE /api/v1/calls/x", "GET /api/v1/lines",
		"GET /api/v1/schedules", "POST /api/v1/schedules", "GET /api/v1/callbacks", "POST /api/v1/events", "GET /api/v1/nodes",
		"POST /api/v1/calls", "GET /api/v1/queues", "POST /api/v1/agents/1001/state"} {
		method, path, _ := strings.Cut(route, " ")
		if code, out := sv.do(t, method, path, "", nil); code != http.StatusUnauthorized || out["error"] == nil {
			t.Errorf("%s without a token: %d %v", route, code, out)
		}
	}
	if code, out := sv.do(t, "GET", "/api/v1/tasks", "", map[string]string{"Authorization": "Bearer " + tok}); code != http.StatusOK || out["tasks"] == nil {
		t.Fatalf("with the token: %d %v", code, out)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		code, _ := sv.do(t, "GET", path, "", map[string]string{"Host": "monitoring.internal"})
		if code != http.StatusOK {
			t.Errorf("GET %s by name without a token: %d", path, code)
		}
	}
	_, health := sv.do(t, "GET", "/healthz", "", nil)
	if health["api_access"] != "tokens" {
		t.Fatalf("healthz: %v", health)
	}
}

// A foreign Host is refused on every path but /healthz and /metrics,
// routes and unknown paths alike, before any token check.
func TestForeignHostRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	sv := serveAuth(t, r, "127.0.0.1:0", nil)
	for _, path := range []string{"/api/v1/calls", "/api/v1/tasks", "/nope", "/"} {
		code, out := sv.do(t, "GET", path, "", map[string]string{"Host": "rebound.evil.example:8088"})
		msg, _ := out["error"].(string)
		if code != http.StatusMisdirectedRequest || !strings.Contains(msg, `Host "rebound.evil.example:8088"`) {
			t.Errorf("GET %s with a foreign Host: %d %v", path, code, out)
		}
	}
	if code, _ := sv.do(t, "GET", "/api/v1/tasks", "", map[string]string{"Host": "n1:8088"}); code != http.StatusOK {
		t.Fatalf("the node's own name: %d", code)
	}
}

// Routes added later use the capability they name; public ones need no
// token but still a Host of this node.
func TestHandleWithCapability(t *testing.T) {
	r := testenv.StartRedis(t)
	sv := serveAuth(t, r, "127.0.0.1:0", nil)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"ok": "yes"}) })
	sv.s.Handle("GET /api/v1/ivr", auth.IVRAPI, ok)
	sv.s.HandlePublic("GET /files/", ok)
	rest, _, _ := sv.st.CreateToken(context.Background(), "rest-only", []string{"rest"}, "default")
	ivr, _, _ := sv.st.CreateToken(context.Background(), "ivr", []string{"ivrapi"}, "default")
	testenv.WaitFor(t, time.Second, func() error {
		if code, _ := sv.do(t, "GET", "/api/v1/ivr", "", map[string]string{"Authorization": "Bearer " + ivr}); code != 200 {
			return fmt.Errorf("ivrapi token: %d", code)
		}
		return nil
	})
	if code, out := sv.do(t, "GET", "/api/v1/ivr", "", map[string]string{"Authorization": "Bearer " + rest}); code != http.StatusForbidden {
		t.Fatalf("rest token on an ivrapi route: %d %v", code, out)
	}
	if code, _ := sv.do(t, "GET", "/files/a", "", nil); code != 200 {
		t.Fatalf("public route: %d", code)
	}
	if code, _ := sv.do(t, "GET", "/files/a", "", map[string]string{"Host": "evil.example"}); code != http.StatusMisdirectedRequest {
		t.Fatalf("public route with a foreign Host: %d", code)
	}
}

// On 0.0.0.0 with no token defined the node never falls open.
func TestWildcardListenerWithoutTokenIs401(t *testing.T) {
	r := testenv.StartRedis(t)
	sv := serveAuth(t, r, "0.0.0.0:0", nil)
	for _, route := range []string{"GET /api/v1/calls", "POST /api/v1/calls", "GET /api/v1/tasks"} {
		method, path, _ := strings.Cut(route, " ")
		body := ""
		if method == "POST" {
			body = `{"number":"15550001","line_group":["g1"],"destination":{"extension":"1"}}`
		}
		code, out := sv.do(t, method, path, body, map[string]string{"Content-Type": "application/json"})
		if code != http.StatusUnauthorized {
			t.Fatalf("%s on 0.0.0.0 with no token: %d %v", route, code, out)
		}
	}
	_, health := sv.do(t, "GET", "/healthz", "", nil)
	if health["api_access"] != "closed" {
		t.Fatalf("healthz: %v", health)
	}
}

// A cross-site text/plain POST never reaches the call handler, even in
// open mode (which the loopback listener with no token is).
func TestCrossSitePostRefusedInOpenMode(t *testing.T) {
	r := testenv.StartRedis(t)
	sv := serveAuth(t, r, "127.0.0.1:0", nil)
	body := `{"number":"15550001","line_group":["g1"],"destination":{"extension":"1"}}`
	for _, hdr := range []map[string]string{
		{"Content-Type": "text/plain", "Origin": "http://evil.example"},
		{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
	} {
		// Calls is nil here: a request that got through would crash the
		// handler rather than pass unnoticed.
		if code, out := sv.do(t, "POST", "/api/v1/calls", body, hdr); code != http.StatusForbidden {
			t.Fatalf("%v: %d %v", hdr, code, out)
		}
	}
	if code, out := sv.do(t, "POST", "/api/v1/calls", body, map[string]string{"Content-Type": "text/plain"}); code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain without browser headers: %d %v", code, out)
	}
	if code, _ := sv.do(t, "GET", "/api/v1/tasks", "", nil); code != http.StatusOK {
		t.Fatalf("open mode: %d", code)
	}
}

// /healthz reports alarms (Redis lost its data, ...) as degraded with 503.
func TestHealthzAlarms(t *testing.T) {
	r := testenv.StartRedis(t)
	var alarms atomic.Pointer[[]string]
	alarms.Store(&[]string{})
	sv := serveAuth(t, r, "127.0.0.1:0", func(d *Deps) { d.Alarms = func() []string { return *alarms.Load() } })
	if code, out := sv.do(t, "GET", "/healthz", "", nil); code != http.StatusOK || out["status"] != "ok" || out["alarms"] != nil {
		t.Fatalf("no alarm: %d %v", code, out)
	}
	const alarm = "redis lost its data: run id changed and 12 known keys are gone"
	alarms.Store(&[]string{alarm})
	code, out := sv.do(t, "GET", "/healthz", "", nil)
	list, _ := out["alarms"].([]any)
	if code != http.StatusServiceUnavailable || out["status"] != "degraded" || len(list) != 1 || list[0] != alarm || out["redis"] != "ok" {
		t.Fatalf("alarm: %d %v", code, out)
	}
}
