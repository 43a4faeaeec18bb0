package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/config"
	"redial/internal/store"
	"redial/internal/testenv"
)

// authAPIDo sends one request to n's API; hdr may set "Host".
func authAPIDo(t *testing.T, base, method, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
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

func authCallBody(ref string) string {
	return fmt.Sprintf(`{"number":"15551239%03d","line_group":["g1"],"destination":{"extension":"8888","dialplan":"XML","context":"default"},"call_ref":%q}`,
		len(ref), ref)
}

// authCDRRefs returns the call_ref of every CDR on the campaigns list.
func authCDRRefs(t *testing.T, r *testenv.Redis) []string {
	t.Helper()
	raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, s := range raw {
		var env struct {
			Payload struct {
				CallRef string `json:"call_ref"`
			} `json:"payload"`
		}
		json.Unmarshal([]byte(s), &env)
		refs = append(refs, env.Payload.CallRef)
	}
	return refs
}

// The attacks of issue 9 against a node in open mode (loopback, no token):
// a cross-site text/plain POST from a web page, a cross-site JSON POST, a
// request with a foreign Host (DNS rebinding) and a text/plain POST are
// all refused, and none of them places a call: the carrier, which takes
// exactly one call, gets only the legitimate one made afterwards.
func TestBrowserAttacksPlaceNoCall(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, `,"limit":5`)
	n := startNode(t, r.URL, "n1")
	_, port, _ := net.SplitHostPort(n.Web.Addr())

	attacks := []struct {
		name string
		ref  string
		hdr  map[string]string
		code int
	}{
		{"cross-site text/plain form", "xsite-form", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", "xsite-fetch", map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"cross-site from another local port", "xsite-port", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"DNS rebinding", "rebind", map[string]string{"Content-Type": "application/json", "Host": "rebind.evil.example:" + port}, http.StatusMisdirectedRequest},
		{"text/plain body", "plain", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
	}
	for _, a := range attacks {
		code, out := authAPIDo(t, n.api, "POST", "/api/v1/calls", authCallBody(a.ref), a.hdr)
		if code != a.code {
			t.Errorf("%s: %d %v, want %d", a.name, code, out, a.code)
		}
		if msg, _ := out["error"].(string); msg == "" {
			t.Errorf("%s: no error in %v", a.name, out)
		}
	}
	if calls := n.Calls.Calls(); len(calls) != 0 {
		t.Fatalf("refused requests placed calls: %+v", calls)
	}
	// The node itself still works for a client that is not a browser page.
	code, out := authAPIDo(t, n.api, "POST", "/api/v1/calls", authCallBody("legit"), map[string]string{"Content-Type": "application/json"})
	if code != http.StatusAccepted {
		t.Fatalf("legitimate call: %d %v", code, out)
	}
	cdrsFor(t, r, "legit", 1, 10*time.Second)
	waitSipp(t, carrier, 10*time.Second)
	if refs := authCDRRefs(t, r); len(refs) != 1 || refs[0] != "legit" {
		t.Fatalf("CDRs: %v; want only the legitimate call's", refs)
	}
	var health map[string]any
	if n.get("/healthz", &health); health["api_access"] != "open" {
		t.Fatalf("healthz: %v", health)
	}
}

// Tokens end to end: a token created from another client ends open mode
// within a second; no token and unknown tokens are 401, another domain or
// a missing capability 403, a good one places the call; revoked, it is
// refused within a second.
func TestTokensOnANode(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, `,"limit":5`)
	n := startNode(t, r.URL, "n1")
	var health map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n.get("/healthz", &health); health["api_access"] != "open" {
			return fmt.Errorf("healthz: %v", health)
		}
		return nil
	})

	// What `redial token create` does, from its own connection.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	cli := store.NewWithClient(rdb, store.Config{})
	ctx := context.Background()
	good, _, err := cli.CreateToken(ctx, "ops", []string{"rest"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	acme, _, _ := cli.CreateToken(ctx, "acme", []string{"rest"}, "acme")
	dash, _, _ := cli.CreateToken(ctx, "dash", []string{"dashboard"}, "default")
	json := map[string]string{"Content-Type": "application/json"}
	with := func(tok string) map[string]string {
		return map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + tok}
	}
	// Wait for the node to see the tokens with a request that places no
	// call (a POST accepted before the change would leave a CDR), then
	// check that placing one is refused.
	testenv.WaitFor(t, time.Second, func() error {
		if code, out := authAPIDo(t, n.api, "GET", "/api/v1/calls", "", nil); code != http.StatusUnauthorized {
			return fmt.Errorf("no token after a token was created: %d %v", code, out)
		}
		return nil
	})
	if code, out := authAPIDo(t, n.api, "POST", "/api/v1/calls", authCallBody("no-token"), json); code != http.StatusUnauthorized {
		t.Fatalf("no token after a token was created: %d %v", code, out)
	}
	for _, c := range []struct {
		name, tok string
		code      int
	}{
		{"unknown token", good[:len(good)-1], http.StatusUnauthorized},
		{"other domain", acme, http.StatusForbidden},
		{"missing capability", dash, http.StatusForbidden},
	} {
		if code, out := authAPIDo(t, n.api, "POST", "/api/v1/calls", authCallBody("refused"), with(c.tok)); code != c.code {
			t.Errorf("%s: %d %v, want %d", c.name, code, out, c.code)
		}
	}
	if calls := n.Calls.Calls(); len(calls) != 0 {
		t.Fatalf("refused requests placed calls: %+v", calls)
	}
	code, out := authAPIDo(t, n.api, "POST", "/api/v1/calls", authCallBody("with-token"), with(good))
	if code != http.StatusAccepted {
		t.Fatalf("good token: %d %v", code, out)
	}
	cdrsFor(t, r, "with-token", 1, 10*time.Second)
	if refs := authCDRRefs(t, r); len(refs) != 1 {
		t.Fatalf("CDRs: %v", refs)
	}
	if code, _ := authAPIDo(t, n.api, "GET", "/api/v1/calls/with-token", "", with(good)); code != http.StatusOK {
		t.Fatalf("GET with token: %d", code)
	}
	if err := cli.RevokeToken(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, func() error {
		if code, _ := authAPIDo(t, n.api, "GET", "/api/v1/calls", "", with(good)); code != http.StatusUnauthorized {
			return fmt.Errorf("revoked token: %d", code)
		}
		return nil
	})
}

// A node whose --http listens on every interface never falls open: with
// no token defined every API request gets 401 (reached over loopback only).
func TestWildcardHTTPWithoutTokenIsClosed(t *testing.T) {
	r := testenv.StartRedis(t)
	n := startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.HTTP = "0.0.0.0:0" })
	_, port, _ := net.SplitHostPort(n.Web.Addr())
	base := "http://127.0.0.1:" + port
	for _, route := range []string{"POST /api/v1/calls", "GET /api/v1/calls", "GET /api/v1/lines", "GET /api/v1/nodes"} {
		method, path, _ := strings.Cut(route, " ")
		body := ""
		if method == "POST" {
			body = authCallBody("open?")
		}
		code, out := authAPIDo(t, base, method, path, body, map[string]string{"Content-Type": "application/json"})
		if code != http.StatusUnauthorized {
			t.Errorf("%s: %d %v, want 401", route, code, out)
		}
	}
	if calls := n.Calls.Calls(); len(calls) != 0 {
		t.Fatalf("a call was placed: %+v", calls)
	}
	if code, _ := authAPIDo(t, base, "GET", "/healthz", "", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	// The node's public URL (used in links and the Host check) is the
	// SIP public IP on a wildcard listener.
	if got := n.PublicURL(); got != "http://127.0.0.1:"+port {
		t.Fatalf("public URL %q", got)
	}
}
