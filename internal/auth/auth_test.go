package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// logBuf collects a component's log lines.
type logBuf struct{ testenv.SyncBuffer }

func (l *logBuf) count(sub string) int { return strings.Count(l.String(), sub) }

type fixture struct {
	a   *Authenticator
	st  *store.Store
	log *logBuf
	reg *prometheus.Registry
	srv *httptest.Server
	// seen is the identity and URL the guarded handler last saw.
	mu   sync.Mutex
	id   Identity
	url  string
	hits int
}

// start runs an Authenticator against r and serves
// Require(capability, handler) on a real loopback listener.
func start(t *testing.T, r *testenv.Redis, cfg Config, capability string, deps ...func(*Deps)) *fixture {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8088"
	}
	if cfg.Domain == "" {
		cfg.Domain = "default"
	}
	f := &fixture{st: store.NewWithClient(r.Client, store.Config{}), log: &logBuf{}, reg: prometheus.NewRegistry()}
	d := Deps{Store: f.st, Logger: slog.New(slog.NewTextHandler(f.log, nil)), Registry: f.reg}
	for _, fn := range deps {
		fn(&d)
	}
	a, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Authenticator.Run did not stop")
		}
	})
	f.srv = httptest.NewServer(a.Require(capability, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := FromContext(r.Context())
		f.mu.Lock()
		f.id, f.url, f.hits = id, r.URL.String(), f.hits+1
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) served() (Identity, string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id, f.url, f.hits
}

type reply struct {
	code int
	body string
	hdr  http.Header
}

// do sends one request; hdr may set "Host".
func (f *fixture) do(t *testing.T, method, path, body string, hdr map[string]string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

func (rp reply) errorText(t *testing.T) string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(rp.body), &m); err != nil || m["error"] == "" {
		t.Fatalf("body %q: want JSON {\"error\": ...}", rp.body)
	}
	return m["error"]
}

func bearer(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

func (f *fixture) refused(t *testing.T, reason string) float64 {
	t.Helper()
	return testenv.MustMetric(t, f.reg, "redial_api_auth_refused_total", map[string]string{"reason": reason})
}

func mustCreate(t *testing.T, st *store.Store, name, domain string, caps ...string) string {
	t.Helper()
	tok, _, err := st.CreateToken(context.Background(), name, caps, domain)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// With no token at all and --http on loopback the API is open, and the
// node says so in a WARN.
func TestOpenModeOnLoopbackWarns(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:8088", "127.0.0.2:0", "[::1]:8088", "localhost:8088"} {
		t.Run(listen, func(t *testing.T) {
			r := testenv.StartRedis(t)
			f := start(t, r, Config{Listen: listen}, Rest)
			rp := f.do(t, "POST", "/api/v1/calls", `{}`, map[string]string{"Content-Type": "application/json"})
			if rp.code != http.StatusAccepted {
				t.Fatalf("open mode: %d %s", rp.code, rp.body)
			}
			if id, _, _ := f.served(); !id.Open || id.Domain != "default" || !id.Has(Rest) || !id.Has(Dashboard) {
				t.Fatalf("identity in open mode: %+v", id)
			}
			if f.a.Mode() != ModeOpen {
				t.Fatalf("mode %v", f.a.Mode())
			}
			if n := f.log.count("level=WARN msg=\"API open: no token exists and --http is loopback; create one with redial token create\""); n != 1 {
				t.Fatalf("want one open-mode WARN, got %d:\n%s", n, f.log)
			}
		})
	}
}

// On any other address the node never falls open: with no token every
// request gets 401, and the node warns at start.
func TestNoTokenOnWildcardAddressIs401(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{Listen: "0.0.0.0:8088"}, Rest)
	for _, method := range []string{"GET", "POST"} {
		rp := f.do(t, method, "/api/v1/calls", "", nil)
		if rp.code != http.StatusUnauthorized || !strings.HasPrefix(rp.hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%s with no token on 0.0.0.0: %d %v %s", method, rp.code, rp.hdr, rp.body)
		}
		if e := rp.errorText(t); !strings.Contains(e, "not a loopback address") || !strings.Contains(e, "redial token create") {
			t.Fatalf("error: %s", e)
		}
	}
	if _, _, hits := f.served(); hits != 0 {
		t.Fatalf("handler ran %d times", hits)
	}
	if f.a.Mode() != ModeClosed || f.log.count("API closed: no token exists and --http is not loopback") != 1 {
		t.Fatalf("mode %v, log:\n%s", f.a.Mode(), f.log)
	}
	for _, h := range []string{"0.0.0.0", "::", "", "192.0.2.1", "myhost", "[::]"} {
		if IsLoopbackHost(h) {
			t.Errorf("IsLoopbackHost(%q) = true", h)
		}
	}
	for _, h := range []string{"127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"} {
		if !IsLoopbackHost(h) {
			t.Errorf("IsLoopbackHost(%q) = false", h)
		}
	}
}

// Tokens: none or unknown is 401, another domain or a missing capability
// 403, a good one passes with its identity; every refusal is counted.
func TestTokenChecks(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	good := mustCreate(t, st, "good", "default", "rest", "dashboard")
	other := mustCreate(t, st, "other-domain", "acme", "rest")
	wsOnly := mustCreate(t, st, "ws-only", "default", "ivrapi")
	f := start(t, r, Config{}, Rest)

	cases := []struct {
		name   string
		hdr    map[string]string
		code   int
		reason string
		want   string
	}{
		{"no token", nil, 401, "no_token", "no token: send Authorization: Bearer <token>"},
		{"unknown token", bearer(good + "x"), 401, "unknown_token", "unknown or revoked token"},
		{"basic auth", map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, 401, "bad_credential", "want Bearer"},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, 401, "bad_credential", "want Bearer"},
		{"wrong domain", bearer(other), 403, "domain", `token "other-domain" is for domain "acme"; this node serves domain "default"`},
		{"missing capability", bearer(wsOnly), 403, "capability", `token "ws-only" lacks capability "rest"`},
	}
	for _, c := range cases {
		rp := f.do(t, "GET", "/api/v1/calls", "", c.hdr)
		if rp.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, rp.code, rp.body, c.code)
			continue
		}
		if e := rp.errorText(t); !strings.Contains(e, c.want) {
			t.Errorf("%s: error %q, want %q", c.name, e, c.want)
		}
		if c.code == 401 && !strings.HasPrefix(rp.hdr.Get("WWW-Authenticate"), `Bearer realm="redial"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, rp.hdr.Get("WWW-Authenticate"))
		}
		if strings.Contains(rp.body, good) || strings.Contains(rp.body, other) {
			t.Errorf("%s: a token is echoed: %s", c.name, rp.body)
		}
		if got := f.refused(t, c.reason); got < 1 {
			t.Errorf("%s: refused{reason=%q} = %v", c.name, c.reason, got)
		}
	}
	if _, _, hits := f.served(); hits != 0 {
		t.Fatalf("handler ran %d times for refused requests", hits)
	}
	rp := f.do(t, "POST", "/api/v1/calls", `{}`, map[string]string{"Authorization": "bearer " + good, "Content-Type": "application/json"})
	if rp.code != http.StatusAccepted {
		t.Fatalf("good token: %d %s", rp.code, rp.body)
	}
	if id, _, _ := f.served(); id.Open || id.Name != "good" || id.Digest != store.TokenDigest(good) || !id.Has(Dashboard) {
		t.Fatalf("identity: %+v", id)
	}
	if f.a.Mode() != ModeTokens {
		t.Fatalf("mode %v", f.a.Mode())
	}
}

// ?token= counts only on a WebSocket upgrade, and the handler never sees
// it in the URL.
func TestQueryTokenOnlyOnWebSocketUpgrade(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "ws", "default", "ivrapi")
	f := start(t, r, Config{}, IVRAPI)
	rp := f.do(t, "GET", "/api/v1/ws?token="+tok, "", nil)
	if rp.code != http.StatusUnauthorized || !strings.Contains(rp.errorText(t), "only on WebSocket upgrades") {
		t.Fatalf("?token= on a plain GET: %d %s", rp.code, rp.body)
	}
	// A WebSocket from a page of another site with the token in the URL
	// is fine: that page was given the token.
	up := map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "websocket", "Origin": "https://app.example"}
	rp = f.do(t, "GET", "/api/v1/ws?a=1&token="+tok, "", up)
	if rp.code != http.StatusAccepted {
		t.Fatalf("?token= on an upgrade: %d %s", rp.code, rp.body)
	}
	id, u, _ := f.served()
	if id.Name != "ws" || strings.Contains(u, "token") || u != "/api/v1/ws?a=1" {
		t.Fatalf("handler saw %+v at %q", id, u)
	}
	rp = f.do(t, "GET", "/api/v1/ws?token=nope", "", up)
	if rp.code != http.StatusUnauthorized {
		t.Fatalf("unknown ?token= on an upgrade: %d %s", rp.code, rp.body)
	}
}

// Requests that change state from a page of another site are refused,
// even in open mode; a Bearer header makes a request not a browser's.
func TestCrossSiteRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{}, Rest)
	self := strings.TrimPrefix(f.srv.URL, "http://")
	port := self[strings.LastIndex(self, ":")+1:]
	refused := []struct {
		name   string
		method string
		hdr    map[string]string
	}{
		{"form post from another site", "POST", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}},
		{"json post from another site", "POST", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}},
		{"another port on this host", "POST", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}},
		{"opaque origin", "POST", map[string]string{"Content-Type": "application/json", "Origin": "null"}},
		{"Sec-Fetch-Site cross-site", "POST", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}},
		{"Sec-Fetch-Site same-site", "DELETE", map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"cross-site WebSocket", "GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Origin": "http://evil.example"}},
	}
	for _, c := range refused {
		rp := f.do(t, c.method, "/api/v1/calls", `{"number":"1"}`, c.hdr)
		if rp.code != http.StatusForbidden || !strings.Contains(rp.errorText(t), "cross-site request refused") {
			t.Errorf("%s: %d %s, want 403 cross-site", c.name, rp.code, rp.body)
		}
	}
	if _, _, hits := f.served(); hits != 0 {
		t.Fatalf("handler ran %d times for cross-site requests", hits)
	}
	if got := f.refused(t, "cross_site"); got != float64(len(refused)) {
		t.Fatalf("refused{cross_site} = %v, want %d", got, len(refused))
	}
	allowed := []struct {
		name   string
		method string
		hdr    map[string]string
	}{
		{"same origin", "POST", map[string]string{"Content-Type": "application/json", "Origin": "http://" + self, "Sec-Fetch-Site": "same-origin"}},
		{"same origin by localhost", "POST", map[string]string{"Content-Type": "application/json", "Host": "localhost:" + port, "Origin": "http://LOCALHOST:" + port}},
		{"no browser headers (curl)", "POST", map[string]string{"Content-Type": "application/json"}},
		{"typed by the user", "POST", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "none"}},
		{"read from another site", "GET", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}},
	}
	for _, c := range allowed {
		if rp := f.do(t, c.method, "/api/v1/calls", `{"number":"1"}`, c.hdr); rp.code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", c.name, rp.code, rp.body)
		}
	}
}

// A client with a token in the Authorization header is not a browser page
// of another site (it could not send one without CORS).
func TestBearerRequestIsNotCrossSite(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "app", "default", "rest")
	f := start(t, r, Config{}, Rest)
	rp := f.do(t, "POST", "/api/v1/calls", `{}`, map[string]string{"Authorization": "Bearer " + tok,
		"Content-Type": "application/json", "Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"})
	if rp.code != http.StatusAccepted {
		t.Fatalf("%d %s", rp.code, rp.body)
	}
}

// A body on a request that changes state must be JSON, so an HTML form or
// a text/plain simple request never reaches a handler.
func TestStateChangingBodyMustBeJSON(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{}, Rest)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		hdr := map[string]string{}
		if ct != "" {
			hdr["Content-Type"] = ct
		}
		rp := f.do(t, "POST", "/api/v1/calls", `{"number":"1"}`, hdr)
		if rp.code != http.StatusUnsupportedMediaType || !strings.Contains(rp.errorText(t), "want application/json") {
			t.Errorf("POST with Content-Type %q: %d %s, want 415", ct, rp.code, rp.body)
		}
	}
	if _, _, hits := f.served(); hits != 0 {
		t.Fatalf("handler ran %d times", hits)
	}
	if rp := f.do(t, "POST", "/api/v1/calls", `{}`, map[string]string{"Content-Type": "application/json; charset=utf-8"}); rp.code != http.StatusAccepted {
		t.Fatalf("json with charset: %d %s", rp.code, rp.body)
	}
	if rp := f.do(t, "DELETE", "/api/v1/calls/x", "", nil); rp.code != http.StatusAccepted {
		t.Fatalf("DELETE without a body: %d %s", rp.code, rp.body)
	}
	if rp := f.do(t, "GET", "/api/v1/calls", "", map[string]string{"Content-Type": "text/plain"}); rp.code != http.StatusAccepted {
		t.Fatalf("GET is not checked: %d %s", rp.code, rp.body)
	}
}

// Host must name this node; anything else is a DNS rebinding attempt (or
// a misconfiguration) and gets 421 naming the Host.
func TestHostCheck(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{Host: "Node-7", PublicURL: "https://redial.example.com:8443/base", AllowHosts: []string{"pbx.lan"}}, Rest)
	for _, h := range []string{"evil.example", "evil.example:8088", "127.0.0.1.nip.io", "node-7.evil.example", "example.com"} {
		rp := f.do(t, "GET", "/api/v1/calls", "", map[string]string{"Host": h})
		if rp.code != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %d %s, want 421", h, rp.code, rp.body)
			continue
		}
		if e := rp.errorText(t); !strings.Contains(e, fmt.Sprintf("Host %q is not a name of this node", h)) || !strings.Contains(e, "--http-allow-host") {
			t.Errorf("Host %q: error %q", h, e)
		}
	}
	if _, _, hits := f.served(); hits != 0 {
		t.Fatalf("handler ran %d times", hits)
	}
	if got := f.refused(t, "host"); got != 5 {
		t.Fatalf("refused{host} = %v", got)
	}
	for _, h := range []string{"127.0.0.1:8088", "127.0.0.1", "[::1]:8088", "10.1.2.3", "localhost", "LocalHost:99", "node-7",
		"NODE-7:8088", "redial.example.com", "redial.example.com.:8443", "pbx.lan:8088"} {
		if rp := f.do(t, "GET", "/api/v1/calls", "", map[string]string{"Host": h}); rp.code != http.StatusAccepted {
			t.Errorf("Host %q: %d %s, want 202", h, rp.code, rp.body)
		}
	}
	// CheckHost alone, for routes that carry their own proof.
	hc := httptest.NewServer(f.a.CheckHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })))
	defer hc.Close()
	req, _ := http.NewRequest("GET", hc.URL+"/files/x", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("CheckHost: %d", resp.StatusCode)
	}
}

// A token created, then revoked, through another node's store takes
// effect here within a second: open mode ends, the token works, then it is
// refused and its watchers are told.
func TestChangesFromAnotherNodeWithinASecond(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{Refresh: time.Hour}, Rest) // only change notices can make it in time
	<-f.a.Ready()
	if f.a.Mode() != ModeOpen {
		t.Fatalf("mode %v", f.a.Mode())
	}
	openGone := f.a.Revoked(Identity{Open: true})
	// "Another node": its own client and store on the same Redis.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	other := store.NewWithClient(rdb, store.Config{Host: "n2"})
	tok := mustCreate(t, other, "late", "default", "rest")
	testenv.WaitFor(t, time.Second, func() error {
		if rp := f.do(t, "GET", "/api/v1/calls", "", bearer(tok)); rp.code != http.StatusAccepted {
			return fmt.Errorf("new token: %d %s", rp.code, rp.body)
		}
		return nil
	})
	if rp := f.do(t, "GET", "/api/v1/calls", "", nil); rp.code != http.StatusUnauthorized {
		t.Fatalf("open mode did not end: %d", rp.code)
	}
	select {
	case <-openGone:
	default:
		t.Fatalf("open-mode watchers were not told that open mode ended")
	}
	if f.log.count("API access changed: a token exists now") != 1 {
		t.Fatalf("mode change not logged:\n%s", f.log)
	}
	revoked := f.a.Revoked(Identity{Name: "late", Digest: store.TokenDigest(tok)})
	if err := other.RevokeToken(context.Background(), "late"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, func() error {
		if rp := f.do(t, "GET", "/api/v1/calls", "", bearer(tok)); rp.code != http.StatusUnauthorized {
			return fmt.Errorf("revoked token: %d %s", rp.code, rp.body)
		}
		return nil
	})
	select {
	case <-revoked:
	default:
		t.Fatalf("watchers of the revoked token were not told")
	}
	// The last token is gone: the API closes rather than opening again
	// (the same as when Redis loses its data), until the node restarts.
	if f.a.Mode() != ModeClosed || f.log.count("API closed: no token exists") != 1 {
		t.Fatalf("mode %v, log:\n%s", f.a.Mode(), f.log)
	}
	if rp := f.do(t, "GET", "/api/v1/calls", "", nil); rp.code != http.StatusUnauthorized {
		t.Fatalf("no token after the last was revoked: %d %s", rp.code, rp.body)
	}
}

// A Redis that comes back empty (every token gone) never opens a loopback
// node that had tokens.
func TestTokensLostWithRedisCloseTheAPI(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "t", "default", "rest")
	f := start(t, r, Config{Refresh: 50 * time.Millisecond}, Rest)
	<-f.a.Ready()
	if rp := f.do(t, "GET", "/api/v1/calls", "", bearer(tok)); rp.code != http.StatusAccepted {
		t.Fatalf("token: %d %s", rp.code, rp.body)
	}
	if err := r.Client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if m := f.a.Mode(); m != ModeClosed {
			return fmt.Errorf("mode %v", m)
		}
		return nil
	})
	if rp := f.do(t, "POST", "/api/v1/calls", `{}`, map[string]string{"Content-Type": "application/json"}); rp.code != http.StatusUnauthorized {
		t.Fatalf("no token after Redis lost the tokens: %d %s", rp.code, rp.body)
	}
}

// Tokens keep working through a Redis outage (the cache is kept), and a
// node that could never read the list answers 503, never open.
func TestRedisOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "t", "default", "rest")
	f := start(t, r, Config{Refresh: 50 * time.Millisecond}, Rest)
	<-f.a.Ready()
	r.Stop()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if f.log.count("cannot read the API tokens") != 1 {
			return fmt.Errorf("no WARN about the unreadable token list yet")
		}
		return nil
	})
	if rp := f.do(t, "GET", "/x", "", bearer(tok)); rp.code != http.StatusAccepted {
		t.Fatalf("token during outage: %d %s", rp.code, rp.body)
	}
	if rp := f.do(t, "GET", "/x", "", nil); rp.code != http.StatusUnauthorized {
		t.Fatalf("no token during outage: %d %s", rp.code, rp.body)
	}

	down := testenv.StartRedis(t)
	down.Stop()
	g := start(t, down, Config{ReadyWait: 100 * time.Millisecond}, Rest)
	rp := g.do(t, "GET", "/x", "", nil)
	if rp.code != http.StatusServiceUnavailable || !strings.Contains(rp.errorText(t), "could not be read") {
		t.Fatalf("never loaded: %d %s", rp.code, rp.body)
	}
	down.Restart(t)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if rp := g.do(t, "GET", "/x", "", nil); rp.code != http.StatusAccepted {
			return fmt.Errorf("after Redis came back: %d %s", rp.code, rp.body)
		}
		return nil
	})
}

// Refusals are logged at most once per source a minute (the next line
// says how many were not), and counted every time.
func TestRefusalLogIsRateLimited(t *testing.T) {
	r := testenv.StartRedis(t)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := start(t, r, Config{Listen: "0.0.0.0:1"}, Rest, func(d *Deps) { d.Now = clock })
	for range 50 {
		f.do(t, "GET", "/api/v1/calls", "", nil)
	}
	if n := f.log.count("API request refused"); n != 1 {
		t.Fatalf("%d refusal lines for 50 refusals from one source:\n%s", n, f.log)
	}
	if got := f.refused(t, "no_token"); got != 50 {
		t.Fatalf("refused{no_token} = %v, want 50", got)
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	f.do(t, "GET", "/api/v1/calls", "", nil)
	if n := f.log.count("API request refused"); n != 2 || !strings.Contains(f.log.String(), "refused_since_last_line=49") {
		t.Fatalf("after a minute: %d lines:\n%s", n, f.log)
	}
}

// Metrics go on the registry given, never the default one.
func TestMetricsOnGivenRegistry(t *testing.T) {
	r := testenv.StartRedis(t)
	f := start(t, r, Config{}, Rest)
	<-f.a.Ready()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if !names["redial_api_auth_refused_total"] || !names["redial_api_open"] || !names["redial_api_tokens"] {
		t.Fatalf("metrics: %v", names)
	}
	def, _ := prometheus.DefaultGatherer.Gather()
	for _, mf := range def {
		if strings.HasPrefix(mf.GetName(), "redial_api_") {
			t.Fatalf("%s on the default registry", mf.GetName())
		}
	}
}

// Require refuses to guard a route with a capability that does not exist.
func TestRequireUnknownCapabilityPanics(t *testing.T) {
	r := testenv.StartRedis(t)
	a, err := New(Config{Listen: "127.0.0.1:0", Domain: "default"}, Deps{Store: store.NewWithClient(r.Client, store.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), `unknown capability "admin"`) {
			t.Fatalf("panic: %v", p)
		}
	}()
	a.Require("admin", http.NotFoundHandler())
}
