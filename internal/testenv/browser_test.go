package testenv

import (
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// smokePage loads both SIP.js versions the way agent pages will: 0.7.8's
// browser bundle as a classic script (it defines the global SIP), the
// current one as native ES modules through an import map, both served
// from webui/node_modules by the test's own server.
const smokePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>redial browser smoke</title>
<script src="/node_modules/sip.js-0.7/dist/sip-0.7.8.js"></script>
<script type="importmap">{"imports": {"sip.js": "/node_modules/sip.js/lib/index.js"}}</script>
<script type="module">
import * as SIP21 from "sip.js";
window.SIP21 = SIP21;
window.sip21Loaded = true;
</script>
</head><body>
<h1>redial browser smoke test</h1>
<p id="status">loading</p>
<script>
console.error("smoke: an error on purpose");
document.getElementById("status").textContent = "SIP.js " + SIP.version + " loaded";
</script>
</body></html>`

func TestBrowserSmoke(t *testing.T) {
	modules := NodeModules(t)
	var (
		wsOnce sync.Once
		wsDone = make(chan error, 1)
		wsUp   = make(chan struct{})
	)
	mux := http.NewServeMux()
	mux.Handle("/node_modules/", http.StripPrefix("/node_modules/", http.FileServer(http.Dir(modules))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(smokePage))
	})
	// A WebSocket that stays open until the browser goes: it stands for
	// an agent's SIP connection to a node.
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"sip"}})
		if err != nil {
			return
		}
		wsOnce.Do(func() { close(wsUp) })
		_, _, err = c.Read(context.Background())
		wsDone <- err
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	b := StartBrowser(t, BrowserOptions{})
	if !strings.HasPrefix(b.Version, "Chrome/") {
		t.Errorf("chromium version = %q, want Chrome/...", b.Version)
	}
	b.Goto(srv.URL + "/")
	WaitFor(t, 10*time.Second, func() error {
		var loaded bool
		if err := b.Eval("window.sip21Loaded === true", &loaded); err != nil {
			return err
		}
		if !loaded {
			return errors.New("the current SIP.js's modules have not loaded yet")
		}
		return nil
	})

	// SIP.js 0.7.8, as the seed uses it: the constructor takes the seed's
	// options (autostart off: no node is listening here).
	var old struct {
		UA, Version, URI string
	}
	if err := b.Eval(`(() => {
		const ua = new SIP.UA({uri: "1001@127.0.0.1", wsServers: ["ws://127.0.0.1:9/ws"],
			authorizationUser: "1001", password: "secret", hackIpInContact: true, autostart: false});
		return {UA: typeof SIP.UA, Version: SIP.version, URI: ua.configuration.uri.toString()};
	})()`, &old); err != nil {
		t.Fatal(err)
	}
	if old.UA != "function" || old.Version != "0.7.8" || old.URI != "sip:1001@127.0.0.1" {
		t.Errorf("SIP.js 0.7: typeof SIP.UA = %q, version %q, configured URI %q; want function, 0.7.8, sip:1001@127.0.0.1", old.UA, old.Version, old.URI)
	}

	// The current SIP.js: its classes exist and a UserAgent can be built
	// (without start, which would connect).
	var cur struct {
		Version                                                string
		UserAgent, Registerer, Inviter, Invitation, SimpleUser string
		AOR                                                    string
	}
	if err := b.Eval(`(() => {
		const S = window.SIP21;
		const ua = new S.UserAgent({uri: S.UserAgent.makeURI("sip:1001@127.0.0.1"),
			transportOptions: {server: "ws://127.0.0.1:9/ws"}, logLevel: "error"});
		return {Version: S.version, UserAgent: typeof S.UserAgent, Registerer: typeof S.Registerer,
			Inviter: typeof S.Inviter, Invitation: typeof S.Invitation, SimpleUser: typeof S.Web.SimpleUser,
			AOR: ua.configuration.uri.toString()};
	})()`, &cur); err != nil {
		t.Fatal(err)
	}
	for name, typ := range map[string]string{"UserAgent": cur.UserAgent, "Registerer": cur.Registerer, "Inviter": cur.Inviter, "Invitation": cur.Invitation, "Web.SimpleUser": cur.SimpleUser} {
		if typ != "function" {
			t.Errorf("SIP.js %s: typeof %s = %q, want function", cur.Version, name, typ)
		}
	}
	if !strings.HasPrefix(cur.Version, "0.21.") || cur.AOR != "sip:1001@127.0.0.1" {
		t.Errorf("current SIP.js: version %q, user agent URI %q; want 0.21.x, sip:1001@127.0.0.1", cur.Version, cur.AOR)
	}

	// Loading both libraries fetched nothing from outside.
	if off := b.Offsite(); len(off) != 0 {
		t.Errorf("the page requested other hosts: %q", off)
	}

	// The fake microphone: a live audio track that carries sound (the
	// fake device beeps), measured in the page for up to 3 seconds.
	var mic struct {
		Kind, State string
		Peak        float64
	}
	if err := b.Eval(`navigator.mediaDevices.getUserMedia({audio: true}).then(stream => new Promise(resolve => {
		const track = stream.getAudioTracks()[0];
		const ctx = new AudioContext();
		const an = ctx.createAnalyser();
		ctx.createMediaStreamSource(stream).connect(an);
		const buf = new Float32Array(an.fftSize);
		let peak = 0;
		const started = performance.now();
		const tick = setInterval(() => {
			an.getFloatTimeDomainData(buf);
			for (const v of buf) peak = Math.max(peak, Math.abs(v));
			if (peak > 0.01 || performance.now() - started > 3000) {
				clearInterval(tick);
				resolve({Kind: track.kind, State: track.readyState, Peak: peak});
			}
		}, 20);
	}))`, &mic); err != nil {
		t.Fatal(err)
	}
	t.Logf("fake microphone: %s track %s, peak %.3f", mic.Kind, mic.State, mic.Peak)
	if mic.Kind != "audio" || mic.State != "live" || mic.Peak <= 0.01 {
		t.Errorf("fake microphone: kind %q, state %q, peak %.4f; want a live audio track with sound (peak > 0.01)", mic.Kind, mic.State, mic.Peak)
	}

	// A request to the internet is blocked: the page sees a network
	// error and Offsite reports it.
	var fetched string
	if err := b.Eval(`fetch("http://example.com/").then(r => "loaded " + r.status, e => "failed: " + e.message)`, &fetched); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fetched, "failed: ") {
		t.Errorf("fetch of http://example.com/ in the page: %q, want a failure", fetched)
	}
	if off := b.Offsite(); !slices.Equal(off, []string{"http://example.com/"}) {
		t.Errorf("Offsite() = %q, want [http://example.com/]", off)
	}
	// So is a WebSocket to an address literal, which DNS rules cannot stop.
	var wsOut string
	if err := b.Eval(`new Promise(resolve => {
		const ws = new WebSocket("ws://192.0.2.1/ws");
		ws.onopen = () => resolve("open");
		ws.onerror = () => resolve("error");
	})`, &wsOut); err != nil {
		t.Fatal(err)
	}
	if wsOut != "error" {
		t.Errorf("WebSocket to 192.0.2.1: %q, want error", wsOut)
	}
	WaitFor(t, 5*time.Second, func() error {
		if off := b.Offsite(); !slices.Contains(off, "ws://192.0.2.1/ws") {
			return errors.New("Offsite() lacks ws://192.0.2.1/ws: " + strings.Join(off, ", "))
		}
		return nil
	})
	bg := b.Background()
	t.Logf("the loopback proxy dropped: %q", bg)
	if !slices.Contains(bg, "CONNECT 192.0.2.1:80") {
		t.Errorf("Background() = %q, want the WebSocket's CONNECT 192.0.2.1:80 among them", bg)
	}

	console := b.Console()
	if !slices.ContainsFunc(console, func(l string) bool { return strings.HasPrefix(l, "error: smoke: an error on purpose") }) {
		t.Errorf("Console() lacks the page's console.error: %q", console)
	}
	errs := b.ConsoleErrors()
	if !slices.ContainsFunc(errs, func(l string) bool { return strings.HasPrefix(l, "requestfailed: http://example.com/ ") }) {
		t.Errorf("ConsoleErrors() lacks the blocked request: %q", errs)
	}
	if slices.ContainsFunc(errs, func(l string) bool { return strings.Contains(l, "favicon.ico") }) {
		t.Errorf("ConsoleErrors() holds chromium's own favicon request: %q", errs)
	}
	if slices.ContainsFunc(console, func(l string) bool { return strings.HasPrefix(l, "pageerror: ") }) {
		t.Errorf("the page threw: %q", console)
	}

	dir := t.TempDir()
	if d := os.Getenv("REDIAL_SCREENSHOT_DIR"); d != "" {
		dir = d
	}
	shot := filepath.Join(dir, "browser-smoke.png")
	b.Screenshot(shot, 1280, 800)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 1280 || cfg.Height != 800 {
		t.Errorf("screenshot %s: %dx%d (%v), want a 1280x800 PNG", shot, cfg.Width, cfg.Height, err)
	}

	// Killing the browser ends its WebSocket at once.
	if err := b.Eval(`new Promise((resolve, reject) => {
		const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws", "sip");
		ws.onopen = () => resolve(true);
		ws.onerror = () => reject(new Error("websocket to the test server failed"));
	})`, nil); err != nil {
		t.Fatal(err)
	}
	<-wsUp
	killed := time.Now()
	b.Kill()
	select {
	case err := <-wsDone:
		if err == nil {
			t.Errorf("the server read a message instead of the end of the connection")
		}
		t.Logf("WebSocket ended %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
	case <-time.After(5 * time.Second):
		t.Fatalf("the browser's WebSocket still open 5s after Kill")
	}
	if err := b.Eval("1", nil); err == nil {
		t.Errorf("Eval after Kill succeeded")
	}
	if off := b.Offsite(); len(off) != 2 {
		t.Errorf("Offsite() after Kill = %q, want the 2 blocked requests", off)
	}
}
