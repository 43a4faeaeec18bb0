package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// mountAgentPage checks that n serves the agent page (from the module's
// webui/node_modules, which the node finds by itself).
func mountAgentPage(t *testing.T, n *node) {
	t.Helper()
	testenv.NodeModules(t) // fails with the fix when make deps has not run
	resp, err := http.Get(n.api + "/agent/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /agent/: %d", resp.StatusCode)
	}
}

// pageEval runs a statement in the page, failing the test on error.
func pageEval(t *testing.T, b *testenv.Browser, expr string) {
	t.Helper()
	if err := b.Eval(expr, nil); err != nil {
		t.Fatal(err)
	}
}

// farScript collects three keys and keeps them in "collected" (the
// play's own dtmfBuffer replaces collect's), then plays a tone (so the
// test sees when the keys have arrived, and the agent hears the far side),
// waits and hangs up.
const farScript = `{"start":1,"components":[
	{"oId":1,"oType":302,"maxSymbolCount":3,"timeoutSec":15,"interDigitSec":10,"transfer":2},
	{"oId":2,"oType":304,"variables":{"collected":"${dtmfBuffer}"},"transfer":3},
	{"oId":3,"oType":204,"mode":0,"file":":GS_PUB/prompts/tone.wav","transfer":4},
	{"oId":4,"oType":303,"timeSec":60,"transfer":5},
	{"oId":5,"oType":201}]}`

// The agent page at /agent in a real browser, against two nodes: A (the
// agent's) and B (the far side, whose IVR collects keys).
//
// A wrong password shows the registrar's refusal; the right one registers
// over the node's own /ws. Then two calls, each answered on the page, keys
// pressed on its keypad reaching B's IVR collect component as RFC 4733
// through A, and hung up from the page:
//   - inbound: B calls 7500 at A, which rings the agent; the page shows the
//     caller's number and A's call_ref;
//   - click-to-dial: the page posts the number 7600 and line group g2 to
//     A's /api/v1/click2dial; A rings the agent first, then calls B's 7600.
//
// Nothing loads from elsewhere, nothing is logged as an error, and
// screenshots at desktop and phone sizes are kept.
func TestAgentPageAnswersAndSendsKeysToFarIVR(t *testing.T) {
	ra := testenv.StartRedis(t)
	rb := testenv.StartRedis(t)
	// Node B, the far side. Its line to A also names 127.0.0.1, so A's
	// calls come in on it and go through the context "public".
	setDialplan(t, rb, "default:far", `{"type":"ivr","script":"far"}`)
	setDialplan(t, rb, "public:7600", `{"type":"ivr","script":"far"}`)
	setScript(t, rb, "far", farScript)
	b := startNode(t, rb.URL, "b")
	tone, err := b.Files.ResolveForWrite("", ":GS_PUB/prompts/tone.wav")
	if err != nil {
		t.Fatal(err)
	}
	writeToneWAV(t, tone, 1000, 30*time.Second)

	// Node A: calls from 127.0.0.1 come in on its trunk and 7500 rings
	// agent 1001; line group g2 leads to B.
	setLine(t, ra, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setLine(t, ra, "toB", "g2", "sip:"+b.SIP.Addr("udp"), "")
	setDialplan(t, ra, "public:7500", `{"type":"user","user":"1001"}`)
	if err := ra.Client.HSet(context.Background(), "cti_user@default", "1001",
		`{"params":{"password":"s3cret","name":"Agent One","enable":true}}`).Err(); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, ra.URL, "a")
	mountAgentPage(t, a)
	setLine(t, rb, "toA", "g1", "sip:"+a.SIP.Addr("udp"), "")
	if err := b.Lines.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}

	br := testenv.StartBrowser(t, testenv.BrowserOptions{Args: []string{"--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns"}})
	br.Goto(a.api + "/agent")
	pageState(t, br, "String(!!(window.agentPage && window.agentPage.ready))", func(s string) bool { return s == "true" }, 10*time.Second)
	if got := pageText(t, br, "reg-state"); got != "unregistered" {
		t.Fatalf("registration state before login: %q", got)
	}

	login := func(ext, password string) {
		t.Helper()
		pageEval(t, br, fmt.Sprintf(`document.getElementById("ext").value = %q;
			document.getElementById("password").value = %q;
			document.getElementById("login").click()`, ext, password))
	}
	// A wrong password: the page says the registrar refused, and why.
	login("1001", "wrong")
	got := pageState(t, br, `document.getElementById("reg-state").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "failed") }, 20*time.Second)
	if got != "failed: 403" {
		t.Errorf("wrong password: registration state %q, want \"failed: 403\"", got)
	}
	var registered bool
	if err := br.Eval("window.agentPage.registered", &registered); err != nil || registered {
		t.Fatalf("agentPage.registered after a refusal: %v %v", registered, err)
	}

	login("1001", "s3cret")
	pageState(t, br, `document.getElementById("reg-state").textContent`, func(s string) bool { return s == "registered" }, 20*time.Second)
	testenv.WaitFor(t, 5*time.Second, func() error {
		list, err := a.Store.AllBindings(context.Background(), time.Now())
		if err != nil || len(list) != 1 || list[0].Ext != "1001" || list[0].Transport != "ws" {
			return fmt.Errorf("bindings %+v %v", list, err)
		}
		return nil
	})

	t.Run("inbound", func(t *testing.T) {
		ref := originate(t, b, map[string]any{"number": "7500", "line_group": []string{"g1"}, "destination": dest("far")})
		pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "ringing" }, 20*time.Second)
		// B's line presents 15550001111; A passes it on in From.
		if got := pageText(t, br, "caller"); !strings.Contains(got, "15550001111") {
			t.Errorf("caller shown %q, want 15550001111", got)
		}
		// A's call to the agent carries its call_ref; no contact_ref was
		// given, so the page shows a dash.
		if got := pageText(t, br, "call-ref"); !regexpMatch(`^[0-9a-f]{32}$`, got) {
			t.Errorf("call ref shown %q", got)
		}
		if got := pageText(t, br, "contact-ref"); got != "—" {
			t.Errorf("contact ref shown %q, want —", got)
		}
		answerAndPress(t, br, b, "427", true)
		c := cdrsFor(t, rb, ref, 1, 30*time.Second)[0]
		if c.Variables["collected"] != "427" {
			t.Errorf("far IVR collected %q, want \"427\" (cdr %+v)", c.Variables["collected"], c)
		}
		testenv.WaitFor(t, 10*time.Second, func() error {
			cdrs := campaignCDRs(t, ra, "inbound")
			if len(cdrs) != 1 || cdrs[0]["ext"] != "1001" || cdrs[0]["disposition"] != "ANSWERED" {
				return fmt.Errorf("node A's inbound CDRs: %v", cdrs)
			}
			return nil
		})
	})

	t.Run("click-to-dial", func(t *testing.T) {
		pageEval(t, br, `document.getElementById("dial-number").value = "7600";
			document.getElementById("dial-group").value = "g2";
			document.getElementById("dial").click()`)
		status := pageState(t, br, `document.getElementById("dial-status").textContent`,
			func(s string) bool { return s != "" && s != "dialing…" }, 10*time.Second)
		if !strings.HasPrefix(status, "calling 7600") {
			t.Fatalf("click-to-dial status %q", status)
		}
		// A rings the agent first.
		pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "ringing" }, 20*time.Second)
		answerAndPress(t, br, b, "123", false)
		testenv.WaitFor(t, 30*time.Second, func() error {
			cdrs := campaignCDRs(t, rb, "inbound")
			if len(cdrs) != 1 {
				return fmt.Errorf("%d inbound CDRs on node B", len(cdrs))
			}
			vars, _ := cdrs[0]["variables"].(map[string]any)
			if cdrs[0]["disposition"] != "ANSWERED" || vars["collected"] != "123" {
				return fmt.Errorf("node B's CDR: %v", cdrs[0])
			}
			return nil
		})
	})

	if off := br.Offsite(); len(off) != 0 {
		t.Errorf("requests left the machine: %v", off)
	}
	if errs := br.ConsoleErrors(); len(errs) != 0 {
		t.Errorf("console errors: %v", errs)
	}
}

// answerAndPress answers the ringing call on the page, checks Mute, presses
// keys on the keypad, waits until the far IVR has them (it starts its
// tone then), optionally keeps screenshots, and hangs up from the page.
func answerAndPress(t *testing.T, br *testenv.Browser, far *node, keys string, screenshots bool) {
	t.Helper()
	pageEval(t, br, `document.getElementById("answer").click()`)
	pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "established" }, 20*time.Second)
	// The microphone's audio reaches node A before the keys go.
	testenv.WaitFor(t, 20*time.Second, func() error {
		_, sent, err := agentPageRTP(br)
		if err != nil {
			return err
		}
		if sent < 25 {
			return fmt.Errorf("browser sent %d RTP packets", sent)
		}
		return nil
	})
	// Mute disables the microphone's track and unmute enables it again.
	const trackOn = `window.agentPage.pc().getSenders().some((s) => s.track && s.track.kind === "audio" && s.track.enabled)`
	pageEval(t, br, `document.getElementById("mute").click()`)
	pageState(t, br, "String("+trackOn+")", func(s string) bool { return s == "false" }, 5*time.Second)
	if got := pageAttr(t, br, "mute", "aria-pressed"); got != "true" {
		t.Errorf("Mute's aria-pressed %q after muting", got)
	}
	pageEval(t, br, `document.getElementById("mute").click()`)
	pageState(t, br, "String("+trackOn+")", func(s string) bool { return s == "true" }, 5*time.Second)

	// The far IVR answered and is collecting, silent.
	farCall(t, far, func(c farInfo) error {
		if c.State != "answered" || len(c.Legs) == 0 || c.Legs[0].PacketsOut != 0 {
			return fmt.Errorf("far call %+v", c)
		}
		return nil
	})
	// Keys pressed faster than their tones play: the page queues them.
	for _, k := range keys {
		pageEval(t, br, fmt.Sprintf(`document.querySelector('#keypad button[data-tone="%c"]').click()`, k))
	}
	pageState(t, br, "window.agentPage.dtmfPlayed", func(s string) bool { return s == keys }, 10*time.Second)
	if got := pageText(t, br, "dtmf-sent"); got != keys {
		t.Errorf("page shows keys sent %q, want %q", got, keys)
	}
	// The far IVR plays its tone once it has collected the three keys,
	// and the agent hears it.
	farCall(t, far, func(c farInfo) error {
		if len(c.Legs) == 0 || c.Legs[0].PacketsOut < 10 {
			return fmt.Errorf("far IVR still collecting: %+v", c)
		}
		return nil
	})
	testenv.WaitFor(t, 10*time.Second, func() error {
		got, _, err := agentPageRTP(br)
		if err != nil {
			return err
		}
		if got < 10 {
			return fmt.Errorf("browser received %d RTP packets from the far IVR", got)
		}
		return nil
	})
	if timer := pageText(t, br, "call-timer"); !regexpMatch(`^00:\d\d$`, timer) || timer == "00:00" {
		t.Errorf("call timer shows %q", timer)
	}
	if screenshots {
		dir := screenshotDir(t)
		br.Screenshot(filepath.Join(dir, "agent-page-1280x800.png"), 1280, 800)
		br.Screenshot(filepath.Join(dir, "agent-page-390x844.png"), 390, 844)
		t.Logf("screenshots in %s", dir)
	}
	pageEval(t, br, `document.getElementById("hangup").click()`)
	pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "ended" }, 15*time.Second)
}

// farInfo is what GET /api/v1/calls says of a call.
type farInfo struct {
	CallRef string `json:"call_ref"`
	State   string `json:"state"`
	Legs    []struct {
		PacketsIn  uint64 `json:"packets_in"`
		PacketsOut uint64 `json:"packets_out"`
	} `json:"legs"`
}

// farCall waits until the one call in progress on n satisfies ok.
func farCall(t *testing.T, n *node, ok func(farInfo) error) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, func() error {
		var list struct{ Calls []farInfo }
		if code := n.get("/api/v1/calls", &list); code != http.StatusOK {
			return fmt.Errorf("GET /api/v1/calls: %d", code)
		}
		var live []farInfo
		for _, c := range list.Calls {
			if c.State != "ended" {
				live = append(live, c)
			}
		}
		if len(live) != 1 {
			return fmt.Errorf("%d calls in progress on %s: %+v", len(live), n.api, list.Calls)
		}
		return ok(live[0])
	})
}

func pageText(t *testing.T, br *testenv.Browser, id string) string {
	t.Helper()
	var s string
	if err := br.Eval(fmt.Sprintf(`document.getElementById(%q).textContent`, id), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func pageAttr(t *testing.T, br *testenv.Browser, id, attr string) string {
	t.Helper()
	var s string
	if err := br.Eval(fmt.Sprintf(`document.getElementById(%q).getAttribute(%q)`, id, attr), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// screenshotDir is REDIAL_SCREENSHOT_DIR, or artifacts/screenshots at the
// module root (git ignores it; CI keeps it as the run's artifacts),
// created if need be.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REDIAL_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentPageRTP is the page's RTP packet counts of its call.
func agentPageRTP(b *testenv.Browser) (received, sent int, err error) {
	var out struct{ Received, Sent int }
	err = b.Eval(`(async () => {
		const pc = window.agentPage.pc();
		if (!pc) return {Received: 0, Sent: 0};
		let r = 0, s = 0;
		(await pc.getStats()).forEach((x) => {
			if (x.type === "inbound-rtp" && x.kind === "audio") r += x.packetsReceived;
			if (x.type === "outbound-rtp" && x.kind === "audio") s += x.packetsSent;
		});
		return {Received: r, Sent: s};
	})()`, &out)
	return out.Received, out.Sent, err
}
