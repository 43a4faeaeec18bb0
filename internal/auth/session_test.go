package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// clock is a settable clock for session expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// pages serves a node's browser routes as the dashboard mounts them: the
// page under RequirePage, its session endpoint and its API under Require.
type pages struct {
	*fixture
	web *httptest.Server
}

func startPages(t *testing.T, r *testenv.Redis, cfg Config, deps ...func(*Deps)) *pages {
	t.Helper()
	f := start(t, r, cfg, Dashboard, deps...)
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := FromContext(r.Context())
		f.mu.Lock()
		f.id, f.url, f.hits = id, r.URL.String(), f.hits+1
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	page := f.a.RequirePage(Dashboard, record)
	api := f.a.Require(Dashboard, record)
	sess := f.a.Require(Dashboard, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"csrf": f.a.CSRF(r)})
	}))
	// No ServeMux: it would clean "//x" paths before RequirePage sees them.
	p := &pages{fixture: f, web: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/dashboard/session":
			sess.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			api.ServeHTTP(w, r)
		default:
			page.ServeHTTP(w, r)
		}
	}))}
	t.Cleanup(p.web.Close)
	<-f.a.Ready()
	return p
}

// send sends one request without following redirects; hdr may set "Host".
func (p *pages) send(t *testing.T, method, path, body string, hdr map[string]string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.web.URL+path, rd)
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
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

func (rp reply) cookie() *http.Cookie {
	for _, c := range (&http.Response{Header: rp.hdr}).Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	return nil
}

// login opens a session with ?token= and returns its cookie.
func (p *pages) login(t *testing.T, tok string) *http.Cookie {
	t.Helper()
	rp := p.send(t, "GET", "/?token="+tok, "", nil)
	if rp.code != http.StatusSeeOther || rp.cookie() == nil {
		t.Fatalf("login: %d %v %s", rp.code, rp.hdr, rp.body)
	}
	return rp.cookie()
}

// csrf asks the session endpoint for the CSRF token of a request with hdr.
func (p *pages) csrf(t *testing.T, hdr map[string]string) string {
	t.Helper()
	rp := p.send(t, "GET", "/api/v1/dashboard/session", "", hdr)
	var m map[string]string
	if rp.code != http.StatusOK || json.Unmarshal([]byte(rp.body), &m) != nil {
		t.Fatalf("session endpoint: %d %s", rp.code, rp.body)
	}
	return m["csrf"]
}

// with is a request header set carrying the session cookie c.
func with(c *http.Cookie, kv ...string) map[string]string {
	h := map[string]string{"Cookie": SessionCookie + "=" + c.Value}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// The first load with ?token= sets an HttpOnly, SameSite=Strict cookie and
// sends the browser to the same address without the token; the cookie then
// opens the page and its API, and anything that changes state needs the
// session's CSRF token as well.
func TestPageLoginSession(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	app := mustCreate(t, st, "app", "default", "dashboard", "rest")
	p := startPages(t, r, Config{}, func(d *Deps) { d.Now = newClock().Now })

	rp := p.send(t, "GET", "/?view=calls&token="+tok+"&x=a%20b", "", nil)
	if rp.code != http.StatusSeeOther || rp.hdr.Get("Location") != "/?view=calls&x=a%20b" {
		t.Fatalf("login: %d Location %q %s", rp.code, rp.hdr.Get("Location"), rp.body)
	}
	c := rp.cookie()
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 12*3600 {
		t.Fatalf("cookie %+v, want HttpOnly, SameSite=Strict, Path=/, not Secure on plain http, 12h", c)
	}
	if set := rp.hdr.Get("Set-Cookie"); !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") {
		t.Fatalf("Set-Cookie %q", set)
	}
	if strings.Contains(c.Value, tok) || strings.Contains(rp.body, tok) || rp.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("token leaked or cacheable: cookie %q, body %q, %v", c.Value, rp.body, rp.hdr)
	}
	if _, _, hits := p.served(); hits != 0 {
		t.Fatalf("the page ran %d times for the login itself", hits)
	}
	if rp := p.send(t, "GET", "/?view=calls&x=a%20b", "", with(c)); rp.code != http.StatusAccepted {
		t.Fatalf("page with the cookie: %d %s", rp.code, rp.body)
	}
	if id, u, _ := p.served(); id.Name != "wall" || id.Open || u != "/?view=calls&x=a%20b" {
		t.Fatalf("page saw %+v at %q", id, u)
	}
	if rp := p.send(t, "HEAD", "/agent/?token="+tok, "", nil); rp.code != http.StatusSeeOther || rp.hdr.Get("Location") != "/agent/" {
		t.Fatalf("HEAD login on /agent/: %d %q", rp.code, rp.hdr.Get("Location"))
	}
	if rp := p.send(t, "GET", "/", "", nil); rp.code != http.StatusUnauthorized {
		t.Fatalf("page without cookie: %d %s", rp.code, rp.body)
	}

	csrf := p.csrf(t, with(c))
	other := p.csrf(t, with(p.login(t, tok)))
	if csrf == "" || other == "" || csrf == other {
		t.Fatalf("CSRF tokens %q and %q: want one per session", csrf, other)
	}
	if got := p.csrf(t, bearer(app)); got != "" {
		t.Fatalf("CSRF of a Bearer request: %q, want none", got)
	}
	const path = "/api/v1/dashboard/campaigns/c1"
	same := "http://" + strings.TrimPrefix(p.web.URL, "http://")
	for name, h := range map[string]map[string]string{
		"no CSRF header":              with(c, "Content-Type", "application/json", "Origin", same),
		"wrong CSRF token":            with(c, "Content-Type", "application/json", CSRFHeader, csrf+"x"),
		"another session's CSRF":      with(c, "Content-Type", "application/json", CSRFHeader, other),
		"CSRF without its own cookie": {"Content-Type": "application/json", CSRFHeader: csrf},
	} {
		rp := p.send(t, "POST", path, `{"enable":false}`, h)
		if name == "CSRF without its own cookie" {
			if rp.code != http.StatusUnauthorized {
				t.Errorf("%s: %d %s, want 401", name, rp.code, rp.body)
			}
			continue
		}
		if rp.code != http.StatusForbidden || !strings.Contains(rp.errorText(t), CSRFHeader) {
			t.Errorf("%s: %d %s, want 403 csrf", name, rp.code, rp.body)
		}
	}
	if got := p.refused(t, "csrf"); got != 3 {
		t.Fatalf("refused{csrf} = %v, want 3", got)
	}
	_, _, before := p.served()
	if rp := p.send(t, "POST", path, `{"enable":false}`, with(c, "Content-Type", "application/json", CSRFHeader, csrf, "Origin", same)); rp.code != http.StatusAccepted {
		t.Fatalf("POST with cookie and CSRF: %d %s", rp.code, rp.body)
	}
	if rp := p.send(t, "DELETE", path, "", with(c, CSRFHeader, csrf)); rp.code != http.StatusAccepted {
		t.Fatalf("DELETE with cookie and CSRF: %d %s", rp.code, rp.body)
	}
	if _, _, after := p.served(); after != before+2 {
		t.Fatalf("handler ran %d times for 2 accepted requests", after-before)
	}
	// A Bearer client is no browser and needs no CSRF token.
	if rp := p.send(t, "POST", path, `{}`, map[string]string{"Authorization": "Bearer " + app, "Content-Type": "application/json"}); rp.code != http.StatusAccepted {
		t.Fatalf("Bearer POST: %d %s", rp.code, rp.body)
	}
}

// A login is refused as a presented token would be, sets no cookie, and
// never sends the browser to another site.
func TestPageLoginRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	rest := mustCreate(t, st, "api", "default", "rest")
	p := startPages(t, r, Config{})
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		reason             string
	}{
		{"token without capability dashboard", "GET", "/?token=" + rest, nil, 403, "capability"},
		{"unknown token", "GET", "/?token=" + tok + "x", nil, 401, "unknown_token"},
		{"empty token", "GET", "/?token=", nil, 401, "unknown_token"},
		{"Host of another name", "GET", "/?token=" + tok, map[string]string{"Host": "evil.example"}, 421, "host"},
		{"POST is no page load", "POST", "/?token=" + tok, map[string]string{"Content-Type": "application/json"}, 401, "bad_credential"},
	}
	for _, c := range cases {
		rp := p.send(t, c.method, c.path, "", c.hdr)
		if rp.code != c.code || rp.cookie() != nil || rp.hdr.Get("Location") != "" {
			t.Errorf("%s: %d cookie %v Location %q %s, want %d and no session", c.name, rp.code, rp.cookie(), rp.hdr.Get("Location"), rp.body, c.code)
		}
		if got := p.refused(t, c.reason); got < 1 {
			t.Errorf("%s: refused{%s} = %v", c.name, c.reason, got)
		}
		if strings.Contains(rp.body, tok) || strings.Contains(rp.body, rest) {
			t.Errorf("%s: token echoed: %s", c.name, rp.body)
		}
	}
	if strings.Contains(p.log.String(), tok) || strings.Contains(p.log.String(), rest) {
		t.Fatalf("a token in the log:\n%s", p.log)
	}
	if _, _, hits := p.served(); hits != 0 {
		t.Fatalf("page ran %d times", hits)
	}
	if rp := p.send(t, "GET", "//evil.example/x?token="+tok, "", nil); rp.code != http.StatusSeeOther || rp.hdr.Get("Location") != "/evil.example/x" {
		t.Fatalf("login at //evil.example/x: %d Location %q, want a path of this node", rp.code, rp.hdr.Get("Location"))
	}
	// A link followed from another site: browsers withhold a Strict cookie
	// from that navigation's redirects, so the page bounces through a
	// document of this node instead.
	rp := p.send(t, "GET", "/?token="+tok+"&v=1", "", map[string]string{"Sec-Fetch-Site": "cross-site"})
	if rp.code != http.StatusOK || rp.cookie() == nil || !strings.Contains(rp.body, `http-equiv="refresh" content="0; url=/?v=1"`) ||
		strings.Contains(rp.body, tok) || rp.hdr.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("cross-site login: %d %v %s", rp.code, rp.hdr, rp.body)
	}
}

// A session ends with a tampered or foreign signature, at its expiry, and
// when its token is revoked; each is then a request without a credential.
func TestSessionCookieEnds(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	keep := mustCreate(t, st, "other", "default", "dashboard")
	clk := newClock()
	p := startPages(t, r, Config{SessionTTL: time.Hour}, func(d *Deps) { d.Now = clk.Now })
	c := p.login(t, tok)
	if c.MaxAge != 3600 {
		t.Fatalf("MaxAge %d, want SessionTTL", c.MaxAge)
	}
	dot := strings.LastIndex(c.Value, ".")
	payload, mac := c.Value[:dot], c.Value[dot+1:]
	f := strings.Split(payload, ".")
	if len(f) != 4 || f[1] != store.TokenDigest(tok) {
		t.Fatalf("payload %q: want version, digest, expiry, nonce", payload)
	}
	flip := func(s string) string {
		b := []byte(s)
		b[len(b)-1] ^= 1
		return string(b)
	}
	later := strings.Join([]string{f[0], f[1], fmt.Sprint(clk.Now().Add(1000 * time.Hour).Unix()), f[3]}, ".")
	foreign := []byte("a secret of another cluster, 32b")
	secret, err := st.SessionSecret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"signature changed":     payload + "." + flip(mac),
		"expiry pushed out":     later + "." + mac,
		"other token's digest":  strings.Replace(payload, f[1], store.TokenDigest(keep), 1) + "." + mac,
		"signed by another key": later + "." + sign(foreign, later),
		"no signature":          payload,
		"garbage":               "%%%",
		"oversized":             strings.Repeat("a", 5000),
		"signature of the CSRF": payload + "." + csrfToken(secret, f[3]),
	} {
		rp := p.send(t, "GET", "/", "", with(&http.Cookie{Value: v}))
		if rp.code != http.StatusUnauthorized || !strings.Contains(rp.errorText(t), "no token") {
			t.Errorf("%s: %d %s, want 401 no token", name, rp.code, rp.body)
		}
	}
	if rp := p.send(t, "GET", "/", "", with(c)); rp.code != http.StatusAccepted {
		t.Fatalf("untouched cookie: %d %s", rp.code, rp.body)
	}

	clk.add(time.Hour - time.Second)
	if rp := p.send(t, "GET", "/", "", with(c)); rp.code != http.StatusAccepted {
		t.Fatalf("a second before expiry: %d %s", rp.code, rp.body)
	}
	clk.add(time.Second)
	if rp := p.send(t, "GET", "/", "", with(c)); rp.code != http.StatusUnauthorized {
		t.Fatalf("expired cookie: %d %s", rp.code, rp.body)
	}

	c = p.login(t, tok)
	if err := st.RevokeToken(context.Background(), "wall"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, func() error {
		rp := p.send(t, "GET", "/", "", with(c))
		if rp.code != http.StatusUnauthorized || !strings.Contains(rp.errorText(t), "session ended") {
			return fmt.Errorf("after revoking its token: %d %s", rp.code, rp.body)
		}
		return nil
	})
	if rp := p.send(t, "GET", "/?token="+tok, "", nil); rp.code != http.StatusUnauthorized || rp.cookie() != nil {
		t.Fatalf("login with a revoked token: %d %s", rp.code, rp.body)
	}
}

// Every node of a cluster shares the secret, so a session opened on one
// node (and its CSRF token) works on another, also one started later; a
// node of another domain refuses it as it refuses the token.
func TestSessionSharedAcrossNodes(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	a := startPages(t, r, Config{Host: "node-a"})
	c := a.login(t, tok)
	csrf := a.csrf(t, with(c))

	// "Another node", started after the login: its own client on the
	// same Redis.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	b := startPages(t, r, Config{Host: "node-b"}, func(d *Deps) { d.Store = store.NewWithClient(rdb, store.Config{Host: "node-b"}) })
	if rp := b.send(t, "GET", "/", "", with(c)); rp.code != http.StatusAccepted {
		t.Fatalf("node b, cookie of node a: %d %s", rp.code, rp.body)
	}
	if got := b.csrf(t, with(c)); got != csrf {
		t.Fatalf("node b's CSRF token %q, node a's %q", got, csrf)
	}
	if rp := b.send(t, "POST", "/api/v1/dashboard/campaigns/c1", `{}`, with(c, "Content-Type", "application/json", CSRFHeader, csrf)); rp.code != http.StatusAccepted {
		t.Fatalf("node b, POST with node a's session: %d %s", rp.code, rp.body)
	}

	acme := startPages(t, r, Config{Domain: "acme"})
	for name, rp := range map[string]reply{
		"cookie":      acme.send(t, "GET", "/", "", with(c)),
		"login":       acme.send(t, "GET", "/?token="+tok, "", nil),
		"API request": acme.send(t, "GET", "/api/v1/dashboard/cdrs", "", with(c)),
	} {
		if rp.code != http.StatusForbidden || !strings.Contains(rp.errorText(t), `this node serves domain "acme"`) || rp.cookie() != nil {
			t.Errorf("node of domain acme, %s: %d %s, want 403 domain", name, rp.code, rp.body)
		}
	}
}

// The session cookie does not make a request from a page of another site
// acceptable, even with the right CSRF token.
func TestSessionCrossSiteRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	p := startPages(t, r, Config{})
	c := p.login(t, tok)
	csrf := p.csrf(t, with(c))
	for name, h := range map[string]map[string]string{
		"Origin of another site": with(c, "Content-Type", "application/json", CSRFHeader, csrf, "Origin", "http://evil.example"),
		"Sec-Fetch-Site":         with(c, "Content-Type", "application/json", CSRFHeader, csrf, "Sec-Fetch-Site", "cross-site"),
	} {
		rp := p.send(t, "POST", "/api/v1/dashboard/calls/r1/hangup", `{}`, h)
		if rp.code != http.StatusForbidden || !strings.Contains(rp.errorText(t), "cross-site request refused") {
			t.Errorf("%s: %d %s, want 403 cross-site", name, rp.code, rp.body)
		}
	}
	up := with(c, "Connection", "Upgrade", "Upgrade", "websocket", "Origin", "http://evil.example")
	if rp := p.send(t, "GET", "/api/v1/dashboard/stream", "", up); rp.code != http.StatusForbidden {
		t.Fatalf("cross-site WebSocket with the cookie: %d %s", rp.code, rp.body)
	}
	if _, _, hits := p.served(); hits != 0 {
		t.Fatalf("handler ran %d times", hits)
	}
}

// In open mode the page needs no session and no CSRF token, and a cookie
// left from an earlier set-up does not lock the browser out.
func TestSessionInOpenMode(t *testing.T) {
	r := testenv.StartRedis(t)
	p := startPages(t, r, Config{Listen: "127.0.0.1:8088"})
	if p.a.Mode() != ModeOpen {
		t.Fatalf("mode %v", p.a.Mode())
	}
	if got := p.csrf(t, nil); got != "" {
		t.Fatalf("CSRF in open mode: %q", got)
	}
	if rp := p.send(t, "POST", "/api/v1/dashboard/campaigns/c1", `{}`, map[string]string{"Content-Type": "application/json"}); rp.code != http.StatusAccepted {
		t.Fatalf("open-mode POST: %d %s", rp.code, rp.body)
	}
	secret, err := store.NewWithClient(r.Client, store.Config{}).SessionSecret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	payload := "1." + store.TokenDigest("gone") + "." + fmt.Sprint(time.Now().Add(time.Hour).Unix()) + ".bm9uY2U"
	stale := &http.Cookie{Value: payload + "." + sign(secret, payload)}
	if rp := p.send(t, "GET", "/", "", with(stale)); rp.code != http.StatusAccepted {
		t.Fatalf("stale cookie in open mode: %d %s", rp.code, rp.body)
	}
	if id, _, _ := p.served(); !id.Open {
		t.Fatalf("identity %+v, want open", id)
	}
	if got := p.csrf(t, with(stale)); got != "" {
		t.Fatalf("CSRF of a stale cookie in open mode: %q", got)
	}
}

// A node that cannot read the session secret answers a login 503 and does
// not accept session cookies (Bearer tokens still work); once the secret
// is readable, both work without a restart.
func TestSessionSecretUnreadable(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	a := startPages(t, r, Config{})
	c := a.login(t, tok)

	// Node b's Redis user may read the tokens but not the session secret.
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "nodeb", "on", ">pw", "~redial:tokens*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "nodeb", Password: "pw"})
	defer rdb.Close()
	b := startPages(t, r, Config{}, func(d *Deps) { d.Store = store.NewWithClient(rdb, store.Config{}) })
	testenv.WaitFor(t, 5*time.Second, func() error {
		if b.log.count("cannot read the page session secret") != 1 {
			return fmt.Errorf("no WARN about the session secret:\n%s", b.log)
		}
		return nil
	})
	if rp := b.send(t, "GET", "/?token="+tok, "", nil); rp.code != http.StatusServiceUnavailable || rp.cookie() != nil ||
		!strings.Contains(rp.errorText(t), "session secret") {
		t.Fatalf("login without the secret: %d %s", rp.code, rp.body)
	}
	if rp := b.send(t, "GET", "/", "", with(c)); rp.code != http.StatusUnauthorized {
		t.Fatalf("cookie without the secret: %d %s", rp.code, rp.body)
	}
	if rp := b.send(t, "GET", "/", "", bearer(tok)); rp.code != http.StatusAccepted {
		t.Fatalf("Bearer without the secret: %d %s", rp.code, rp.body)
	}
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "nodeb", "~redial:sessions:*").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if rp := b.send(t, "GET", "/", "", with(c)); rp.code != http.StatusAccepted {
			return fmt.Errorf("cookie once the secret is readable: %d %s", rp.code, rp.body)
		}
		return nil
	})
	b.login(t, tok)
	if b.log.count("page session secret readable again") != 1 {
		t.Fatalf("recovery not logged:\n%s", b.log)
	}
}

// Deleting the secret in Redis ends every session on every node within
// the refresh interval; new logins work with the new secret.
func TestSessionSecretReplaced(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{})
	tok := mustCreate(t, st, "wall", "default", "dashboard")
	p := startPages(t, r, Config{Refresh: 50 * time.Millisecond})
	c := p.login(t, tok)
	if err := r.Client.Del(context.Background(), st.SessionSecretKey()).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if rp := p.send(t, "GET", "/", "", with(c)); rp.code != http.StatusUnauthorized {
			return fmt.Errorf("cookie after the secret was replaced: %d", rp.code)
		}
		return nil
	})
	if rp := p.send(t, "GET", "/", "", with(p.login(t, tok))); rp.code != http.StatusAccepted {
		t.Fatalf("new session: %d %s", rp.code, rp.body)
	}
	if p.log.count("page session secret changed") != 1 {
		t.Fatalf("replacement not logged:\n%s", p.log)
	}
}
