package files

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"redial/internal/testenv"
)

// linkClock is a settable clock.
type linkClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *linkClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *linkClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// linkNode is one node's Links served over loopback HTTP.
type linkNode struct {
	l   *Links
	srv *httptest.Server
	dir string
}

type linkOpts struct {
	host   string
	secret []byte
	clock  *linkClock
	locate func(ctx context.Context, host string) (string, bool)
	logger *slog.Logger
	secFn  func(ctx context.Context) ([]byte, error)
}

func startLinkNode(t *testing.T, o linkOpts) *linkNode {
	t.Helper()
	n := &linkNode{dir: filepath.Join(t.TempDir(), "links")}
	secFn := o.secFn
	if secFn == nil {
		secFn = func(context.Context) ([]byte, error) { return o.secret, nil }
	}
	var base string
	l, err := NewLinks(LinksConfig{
		Dir:       n.dir,
		Host:      o.host,
		PublicURL: func() string { return base },
	}, LinksDeps{Secret: secFn, Locate: o.locate, Now: o.clock.Now, Logger: o.logger})
	if err != nil {
		t.Fatal(err)
	}
	n.l = l
	mux := http.NewServeMux()
	mux.Handle(LinksPrefix, l)
	n.srv = httptest.NewServer(mux)
	t.Cleanup(n.srv.Close)
	base = n.srv.URL
	return n
}

// held lists the names in the holding dir.
func (n *linkNode) held(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

var linkT0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newLinkClock() *linkClock { return &linkClock{t: linkT0} }

// noRedirect is a client that shows 3xx responses instead of following.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type linkResp struct {
	code int
	h    http.Header
	body string
}

func linkDo(t *testing.T, method, url string, hdr map[string]string) linkResp {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return linkResp{resp.StatusCode, resp.Header, string(b)}
}

func linkGet(t *testing.T, url string) linkResp { return linkDo(t, http.MethodGet, url, nil) }

// tokenOf returns the token part of a published URL.
func tokenOf(t *testing.T, url string) string {
	t.Helper()
	i := strings.Index(url, LinksPrefix)
	if i < 0 {
		t.Fatalf("URL %q has no %s", url, LinksPrefix)
	}
	return url[i+len(LinksPrefix):]
}

// signAs builds a token the way DESIGN.md specifies it, for payloads the
// server would never produce itself.
func signAs(secret []byte, payload string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("redial file links v1"))
	key := m.Sum(nil)
	m = hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(m.Sum(nil))
}

const recording = "RIFF....WAVEfmt this is not really audio but bytes are bytes"

func TestLinkServesFileWithHeadersAndRanges(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock})
	src := filepath.Join(t.TempDir(), `rec "1".wav`)
	writeFile(t, src, recording)

	url, exp, err := n.l.Publish(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, n.srv.URL+"/files/") {
		t.Fatalf("URL %q not under %s/files/", url, n.srv.URL)
	}
	if !exp.Equal(linkT0.Add(5 * time.Minute)) {
		t.Fatalf("expires %v, want %v", exp, linkT0.Add(5*time.Minute))
	}

	r := linkGet(t, url)
	if r.code != 200 || r.body != recording {
		t.Fatalf("GET: %d %q", r.code, r.body)
	}
	want := map[string]string{
		"Content-Type":           "audio/wav",
		"Content-Disposition":    `attachment; filename="rec1.wav"`,
		"Cache-Control":          "private, max-age=300",
		"X-Content-Type-Options": "nosniff",
		"Accept-Ranges":          "bytes",
	}
	for k, v := range want {
		if got := r.h.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}

	r = linkDo(t, http.MethodGet, url, map[string]string{"Range": "bytes=4-11"})
	if r.code != http.StatusPartialContent || r.body != recording[4:12] {
		t.Fatalf("Range: %d %q, want 206 %q", r.code, r.body, recording[4:12])
	}
	if got := r.h.Get("Content-Range"); got != fmt.Sprintf("bytes 4-11/%d", len(recording)) {
		t.Errorf("Content-Range %q", got)
	}

	r = linkDo(t, http.MethodHead, url, nil)
	if r.code != 200 || r.body != "" || r.h.Get("Content-Length") != fmt.Sprint(len(recording)) {
		t.Fatalf("HEAD: %d %q Content-Length %q", r.code, r.body, r.h.Get("Content-Length"))
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if r := linkDo(t, m, url, nil); r.code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, r.code)
		}
	}

	// Content types by extension, case-insensitive; the rest is opaque.
	for name, ct := range map[string]string{"a.MP3": "audio/mpeg", "b.txt": "application/octet-stream", "noext": "application/octet-stream", "c.html": "application/octet-stream"} {
		p := filepath.Join(t.TempDir(), name)
		writeFile(t, p, "<html>x</html>")
		u, _, err := n.l.Publish(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if r := linkGet(t, u); r.code != 200 || r.h.Get("Content-Type") != ct {
			t.Errorf("%s: %d Content-Type %q, want %q", name, r.code, r.h.Get("Content-Type"), ct)
		}
	}
}

func TestLinkOutlivesOriginalAndExpires(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock})
	tmp := filepath.Join(t.TempDir(), "session-1")
	src := filepath.Join(tmp, "rec.wav")
	writeFile(t, src, recording)
	url, exp, err := n.l.Publish(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	// The session ends: its temp dir goes.
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if r := linkGet(t, url); r.code != 200 || r.body != recording {
		t.Fatalf("after session end: %d %q", r.code, r.body)
	}

	clock.Set(exp.Add(-61 * time.Second))
	r := linkGet(t, url)
	if r.code != 200 || r.h.Get("Cache-Control") != "private, max-age=61" {
		t.Fatalf("61 s before expiry: %d Cache-Control %q", r.code, r.h.Get("Cache-Control"))
	}

	clock.Set(exp.Add(-time.Millisecond))
	n.l.sweep()
	if got := n.held(t); len(got) != 1 {
		t.Fatalf("janitor removed a live held file: %v", got)
	}
	if r := linkGet(t, url); r.code != 200 {
		t.Fatalf("just before expiry: %d", r.code)
	}

	clock.Set(exp)
	if r := linkGet(t, url); r.code != http.StatusGone || !strings.Contains(r.body, "link expired") {
		t.Fatalf("at expiry: %d %q, want 410 link expired", r.code, r.body)
	}
	n.l.sweep()
	if got := n.held(t); len(got) != 0 {
		t.Fatalf("janitor left expired held files: %v", got)
	}
	if r := linkGet(t, url); r.code != http.StatusGone {
		t.Fatalf("after sweep: %d, want 410", r.code)
	}
}

func TestLinkJanitorRun(t *testing.T) {
	clock := newLinkClock()
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock, logger: logger})
	now := linkT0.Unix()
	// Leftovers of a previous run, one expired and one still live, plus
	// files the janitor does not own.
	old := fmt.Sprintf("%d-0123456789abcdef.wav", now-1)
	due := fmt.Sprintf("%d-0123456789abcdef", now)
	live := fmt.Sprintf("%d-fedcba9876543210.mp3", now+1)
	for _, name := range []string{old, due, live, "junk.txt", "123-nothex.wav"} {
		writeFile(t, filepath.Join(n.dir, name), "x")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.l.Run(ctx) }()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := n.held(t); len(got) != 3 {
			return fmt.Errorf("held %v", got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := strings.Join(n.held(t), " ")
	for _, name := range []string{live, "junk.txt", "123-nothex.wav"} {
		if !strings.Contains(got, name) {
			t.Errorf("%s removed; left: %s", name, got)
		}
	}
	n.l.sweep()
	n.l.sweep()
	if c := strings.Count(logs.String(), "junk.txt"); c != 1 {
		t.Errorf("junk.txt logged %d times, want once:\n%s", c, logs.String())
	}
}

func TestLinkTamperedTokens(t *testing.T) {
	clock := newLinkClock()
	secret := []byte("s3cret")
	n := startLinkNode(t, linkOpts{host: "node-a", secret: secret, clock: clock})
	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	url, exp, err := n.l.Publish(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, url)
	p64, s64, _ := strings.Cut(tok, ".")
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	held := n.held(t)[0]
	cases := []struct {
		name string
		tok  string
		want int
	}{
		{"payload char changed", flip(p64, 0) + "." + s64, 403},
		{"payload middle char changed", flip(p64, len(p64)/2) + "." + s64, 403},
		{"signature changed", p64 + "." + flip(s64, 0), 403},
		{"signature of another payload", p64 + "." + tokenOf(t, mustPublish(t, n, src))[len(p64)+1:], 403},
		{"raw secret instead of derived key", rawSigned(secret, p64), 403},
		{"truncated signature", tok[:len(tok)-1], 404},
		{"truncated in payload", tok[:len(p64)/2], 404},
		{"no signature", p64, 404},
		{"empty signature", p64 + ".", 404},
		{"extra dot", tok + ".x", 404},
		{"garbage", "!!!not-a-token$$", 404},
		{"empty", "", 404},
		{"slash", p64 + "/" + s64, 404},
		{"too long", tok + strings.Repeat("A", 1025), 404},
		// Correctly signed but not what the server writes: must not
		// reach the file system.
		{"signed traversal", signAs(secret, fmt.Sprintf(`{"h":"node-a","f":"../%s","n":"x","e":%d}`, held, exp.Unix())), 404},
		{"signed other file name", signAs(secret, fmt.Sprintf(`{"h":"node-a","f":"passwd","n":"x","e":%d}`, exp.Unix())), 404},
		{"signed expiry mismatch", signAs(secret, fmt.Sprintf(`{"h":"node-a","f":%q,"n":"x","e":%d}`, held, exp.Unix()+3600)), 404},
		{"signed unknown field", signAs(secret, fmt.Sprintf(`{"h":"node-a","f":%q,"n":"x","e":%d,"z":1}`, held, exp.Unix())), 404},
		{"signed not JSON", signAs(secret, "hello"), 404},
	}
	for _, c := range cases {
		r := linkGet(t, n.srv.URL+LinksPrefix+c.tok)
		if r.code != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, r.code, r.body, c.want)
		}
		if c.want == 403 && !strings.Contains(r.body, "bad signature") {
			t.Errorf("%s: body %q, want bad signature", c.name, r.body)
		}
	}
	// A token built by the spec's recipe is accepted: the format is the
	// one DESIGN.md documents.
	good := signAs(secret, fmt.Sprintf(`{"h":"node-a","f":%q,"n":"a b.wav","e":%d}`, held, exp.Unix()))
	if r := linkGet(t, n.srv.URL+LinksPrefix+good); r.code != 200 || r.body != recording || r.h.Get("Content-Disposition") != `attachment; filename="ab.wav"` {
		t.Fatalf("spec-built token: %d %q %q", r.code, r.body, r.h.Get("Content-Disposition"))
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	if p["h"] != "node-a" || p["f"] != held || p["n"] != "rec.wav" || p["e"] != float64(exp.Unix()) || len(p) != 4 {
		t.Fatalf("payload %s", payload)
	}
}

func mustPublish(t *testing.T, n *linkNode, src string) string {
	t.Helper()
	u, _, err := n.l.Publish(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func rawSigned(secret []byte, p64 string) string {
	payload, _ := base64.RawURLEncoding.DecodeString(p64)
	m := hmac.New(sha256.New, secret)
	m.Write(payload)
	return p64 + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestLinkOfAnotherNode(t *testing.T) {
	clock := newLinkClock()
	secret := []byte("cluster secret")
	b := startLinkNode(t, linkOpts{host: "node-b", secret: secret, clock: clock})
	var asked []string
	var mu sync.Mutex
	a := startLinkNode(t, linkOpts{host: "node-a", secret: secret, clock: clock,
		locate: func(_ context.Context, host string) (string, bool) {
			mu.Lock()
			asked = append(asked, host)
			mu.Unlock()
			if host == "node-b" {
				return b.srv.URL + "/", true
			}
			return "", false
		}})
	alone := startLinkNode(t, linkOpts{host: "node-a", secret: secret, clock: clock})

	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	url := mustPublish(t, b, src)
	path := LinksPrefix + tokenOf(t, url)

	r := linkGet(t, a.srv.URL+path)
	if r.code != http.StatusTemporaryRedirect || r.h.Get("Location") != b.srv.URL+path {
		t.Fatalf("via node-a: %d Location %q, want 307 %q", r.code, r.h.Get("Location"), b.srv.URL+path)
	}
	if len(asked) != 1 || asked[0] != "node-b" {
		t.Fatalf("Locate asked for %v", asked)
	}
	// Following the redirect gets the file.
	resp, err := http.Get(a.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != recording {
		t.Fatalf("followed: %d %q", resp.StatusCode, body)
	}

	if r := linkGet(t, alone.srv.URL+path); r.code != http.StatusNotFound {
		t.Fatalf("without Locate: %d, want 404", r.code)
	}

	c := startLinkNode(t, linkOpts{host: "node-c", secret: secret, clock: clock})
	urlC := mustPublish(t, c, src)
	if r := linkGet(t, a.srv.URL+LinksPrefix+tokenOf(t, urlC)); r.code != http.StatusNotFound {
		t.Fatalf("unknown node: %d, want 404", r.code)
	}
}

func TestLinkSignedWithAnotherSecret(t *testing.T) {
	clock := newLinkClock()
	a := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("ours"), clock: clock})
	other := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("theirs"), clock: clock})
	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	url := mustPublish(t, other, src)
	r := linkGet(t, a.srv.URL+LinksPrefix+tokenOf(t, url))
	if r.code != http.StatusForbidden || !strings.Contains(r.body, "bad signature") {
		t.Fatalf("foreign secret: %d %q, want 403 bad signature", r.code, r.body)
	}
}

func TestLinkSecretRetriedUntilItSucceeds(t *testing.T) {
	clock := newLinkClock()
	down := errors.New("redis down")
	var mu sync.Mutex
	calls := 0
	n := startLinkNode(t, linkOpts{host: "node-a", clock: clock, secFn: func(context.Context) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return nil, down
		}
		return []byte("s3cret"), nil
	}})
	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	if _, _, err := n.l.Publish(context.Background(), src); !errors.Is(err, down) {
		t.Fatalf("first Publish: %v, want it to wrap %v", err, down)
	}
	if got := n.held(t); len(got) != 0 {
		t.Fatalf("failed Publish held %v", got)
	}
	url := mustPublish(t, n, src)
	mustPublish(t, n, src)
	if r := linkGet(t, url); r.code != 200 || r.body != recording {
		t.Fatalf("GET: %d %q", r.code, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("Secret called %d times, want 2 (cached after success)", calls)
	}
}

func TestLinkSecretUnavailableWhileServing(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", clock: clock, secFn: func(context.Context) ([]byte, error) {
		return nil, errors.New("redis down")
	}})
	tok := signAs([]byte("s3cret"), fmt.Sprintf(`{"h":"node-a","f":"%d-0123456789abcdef.wav","n":"x","e":%d}`, linkT0.Unix()+60, linkT0.Unix()+60))
	if r := linkGet(t, n.srv.URL+LinksPrefix+tok); r.code != http.StatusServiceUnavailable {
		t.Fatalf("%d %q, want 503", r.code, r.body)
	}
}

func TestPublishRefusesNonRegularFiles(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock})
	dir := t.TempDir()
	target := filepath.Join(dir, "target.wav")
	writeFile(t, target, recording)
	link := filepath.Join(dir, "link.wav")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, sub, filepath.Join(dir, "missing.wav"), "relative.wav"} {
		if u, _, err := n.l.Publish(context.Background(), p); err == nil {
			t.Errorf("Publish(%q) = %q, want an error", p, u)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("Publish(%q): error %q does not name the file", p, err)
		}
	}
	if got := n.held(t); len(got) != 0 {
		t.Fatalf("refused publishes held %v", got)
	}
}

func TestPublishCopiesWhenHardLinkFails(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock})
	n.l.link = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
	}
	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	url := mustPublish(t, n, src)
	held := n.held(t)
	if len(held) != 1 {
		t.Fatalf("held %v", held)
	}
	sfi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	hfi, err := os.Stat(filepath.Join(n.dir, held[0]))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(sfi, hfi) {
		t.Fatal("held file is the original, want a copy")
	}
	if !hfi.ModTime().Equal(sfi.ModTime()) {
		t.Errorf("copy mtime %v, original %v", hfi.ModTime(), sfi.ModTime())
	}
	// The session rewrites its file; the link keeps what was published.
	writeFile(t, src, "something else")
	if r := linkGet(t, url); r.code != 200 || r.body != recording {
		t.Fatalf("GET copy: %d %q", r.code, r.body)
	}
}

func TestPublishHardLinksByDefault(t *testing.T) {
	clock := newLinkClock()
	n := startLinkNode(t, linkOpts{host: "node-a", secret: []byte("s3cret"), clock: clock})
	src := filepath.Join(t.TempDir(), "rec.wav")
	writeFile(t, src, recording)
	mustPublish(t, n, src)
	mustPublish(t, n, src)
	held := n.held(t)
	if len(held) != 2 {
		t.Fatalf("two publishes held %v, want two files", held)
	}
	sfi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range held {
		hfi, err := os.Stat(filepath.Join(n.dir, h))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(sfi, hfi) {
			t.Errorf("%s is not a hard link of the original", h)
		}
		if !strings.HasPrefix(h, fmt.Sprintf("%d-", linkT0.Add(5*time.Minute).Unix())) || !strings.HasSuffix(h, ".wav") {
			t.Errorf("held name %q, want <expiry>-<hex>.wav", h)
		}
	}
	if held[0] == held[1] {
		t.Fatal("same held name twice")
	}
}

func TestNewLinksValidates(t *testing.T) {
	ok := LinksConfig{Dir: t.TempDir(), Host: "a", PublicURL: func() string { return "http://x" }}
	sec := LinksDeps{Secret: func(context.Context) ([]byte, error) { return []byte("s"), nil }}
	for name, c := range map[string]struct {
		cfg  LinksConfig
		deps LinksDeps
	}{
		"no dir":       {LinksConfig{Host: "a", PublicURL: ok.PublicURL}, sec},
		"no host":      {LinksConfig{Dir: ok.Dir, PublicURL: ok.PublicURL}, sec},
		"no PublicURL": {LinksConfig{Dir: ok.Dir, Host: "a"}, sec},
		"no Secret":    {ok, LinksDeps{}},
	} {
		if _, err := NewLinks(c.cfg, c.deps); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	dir := filepath.Join(t.TempDir(), "a", "links")
	if _, err := NewLinks(LinksConfig{Dir: dir, Host: "a", PublicURL: ok.PublicURL}, sec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o027 != 0 {
		t.Fatalf("holding dir: %v %v", fi, err)
	}
}
