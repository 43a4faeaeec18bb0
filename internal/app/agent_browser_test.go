package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// seedPage is seed 001's agent snippet, unchanged but for its
// placeholders, on SIP.js 0.7.8 (the API it is written for). The test
// reads window.agent to follow it.
const seedPage = `<!doctype html><html><head><meta charset="utf-8">
<script src="/node_modules/sip.js-0.7/dist/sip-0.7.8.js"></script></head><body>
<audio id="example-audio-tag" autoplay></audio>
<script>
window.agent = {state: "new", calls: 0};
// Creates the user agent
var userAgent = new SIP.UA({
    uri              : '{{EXT}}@{{SERVER}}',
    wsServers        : ['ws://{{SERVER}}:{{PORT}}/ws'],
    authorizationUser: '{{EXT}}',
    password         : '{{PASSWORD}}',
    hackIpInContact  : true
});
// Call options
var options = {
    media: {
        constraints: {
            audio: true,
            video: false
        },
        render: {
            remote: {
                audio: document.getElementById('example-audio-tag'),
            },
        },
    }
};
// Accept Incoming Call: Listen for the invite
userAgent.on('invite', function (session) {
    console.log('Call Invite Accepted');
    session.accept(options);
    //NO custom SIP headers for v3.0.0
    window.agent.calls++;
    window.agent.session = session;
    window.agent.pc = function () { return session.mediaHandler && session.mediaHandler.peerConnection; };
    window.agent.bye = function () { session.bye(); };
    session.on('terminated', function () { window.agent.ended = true; });
});
userAgent.on('registered', function () { window.agent.state = "registered"; });
userAgent.on('registrationFailed', function (cause) { window.agent.state = "failed: " + cause; });
</script></body></html>`

// currentPage is the same agent on the current SIP.js (0.21).
const currentPage = `<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"sip.js": "/node_modules/sip.js/lib/index.js"}}</script></head><body>
<audio id="remote" autoplay></audio>
<script type="module">
import { UserAgent, Registerer, RegistererState, SessionState } from "sip.js";
window.agent = {state: "new", calls: 0};
const ua = new UserAgent({
  uri: UserAgent.makeURI("sip:{{EXT}}@{{SERVER}}"),
  transportOptions: { server: "ws://{{SERVER}}:{{PORT}}/ws" },
  authorizationUsername: "{{EXT}}",
  authorizationPassword: "{{PASSWORD}}",
  sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] } },
  delegate: {
    onInvite(invitation) {
      window.agent.calls++;
      window.agent.pc = () => invitation.sessionDescriptionHandler && invitation.sessionDescriptionHandler.peerConnection;
      window.agent.bye = () => invitation.bye();
      invitation.stateChange.addListener((s) => {
        if (s === SessionState.Terminated) window.agent.ended = true;
        if (s === SessionState.Established) {
          const pc = invitation.sessionDescriptionHandler.peerConnection;
          const stream = new MediaStream();
          pc.getReceivers().forEach((r) => r.track && stream.addTrack(r.track));
          document.getElementById("remote").srcObject = stream;
        }
      });
      invitation.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } });
    },
  },
});
const registerer = new Registerer(ua);
registerer.stateChange.addListener((s) => {
  if (s === RegistererState.Registered) window.agent.state = "registered";
});
await ua.start();
registerer.register({ requestDelegate: { onReject(r) { window.agent.state = "failed: " + r.message.statusCode; } } });
</script></body></html>`

// agentPageServer serves a page (its placeholders filled) and SIP.js from
// webui/node_modules on loopback: the integrator's own web application.
func agentPageServer(t *testing.T, page, ext, password string, node *node) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(node.Web.Addr())
	body := strings.NewReplacer("{{EXT}}", ext, "{{PASSWORD}}", password, "{{SERVER}}", host, "{{PORT}}", port).Replace(page)
	mux := http.NewServeMux()
	mux.Handle("/node_modules/", http.StripPrefix("/node_modules/", http.FileServer(http.Dir(testenv.NodeModules(t)))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(body))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// pageState polls the page's window.agent.
func pageState(t *testing.T, b *testenv.Browser, expr string, want func(string) bool, d time.Duration) string {
	t.Helper()
	var last string
	testenv.WaitFor(t, d, func() error {
		if err := b.Eval(expr, &last); err != nil {
			return err
		}
		if !want(last) {
			return fmt.Errorf("%s = %q", expr, last)
		}
		return nil
	})
	return last
}

// pcStats is the browser's RTP packet counts of the call.
func pcStats(b *testenv.Browser) (received, sent int, err error) {
	var out struct{ Received, Sent int }
	err = b.Eval(`(async () => {
		const pc = window.agent.pc && window.agent.pc();
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

// waitAudioBothWays waits until the browser has received and sent 50 RTP
// packets of the call and phone (which sends its own audio meanwhile) has
// received 50 of the browser's, relayed by redial.
func waitAudioBothWays(t *testing.T, br *testenv.Browser, phone *testPhone) {
	t.Helper()
	var heard atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			phone.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := phone.conn.Read(buf)
			if err != nil {
				return
			}
			if n > 12 && binary.BigEndian.Uint32(buf[8:]) != phoneAudioSSRC {
				heard.Add(1)
			}
		}
	}()
	testenv.WaitFor(t, 20*time.Second, func() error {
		got, sent, err := pcStats(br)
		if err != nil {
			return err
		}
		if got < 50 || sent < 50 || heard.Load() < 50 {
			return fmt.Errorf("browser received %d and sent %d RTP packets; the phone heard %d", got, sent, heard.Load())
		}
		return nil
	})
}

// Seed 001's agent in a real browser (Debian's chromium), on the SIP.js it
// was written for and on the current one: it registers to node A over
// WebSocket through a digest challenge, a caller's inbound call arrives at
// node B and reaches it, it answers, and RTP flows both ways through
// redial; the agent hangs up and the caller gets the BYE; the CDR names the
// agent; killing the browser ends the binding at once. The call is ended
// once by the agent and once from the caller's side.
func TestBrowserAgentAnswersCallFromAnotherNode(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		// farHangup ends the call from the caller's node (BYE to the
		// caller and, through node A, to the browser) instead of the page.
		farHangup bool
	}{{"sipjs-0.7.8-seed-snippet", seedPage, true}, {"sipjs-0.21", currentPage, false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t)
			setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
			setDialplan(t, r, "public:7400", `{"type":"user","user":"1001"}`)
			if err := r.Client.HSet(context.Background(), "cti_user@default", "1001",
				`{"params":{"password":"s3cret","name":"Agent One","enable":true}}`).Err(); err != nil {
				t.Fatal(err)
			}
			a := startNode(t, r.URL, "a")
			b := startNode(t, r.URL, "b")
			// Chrome leaves loopback out of ICE unless told, and hides host
			// addresses behind mDNS names that redial does not resolve.
			br := testenv.StartBrowser(t, testenv.BrowserOptions{Args: []string{"--allow-loopback-in-peer-connection",
				"--disable-features=WebRtcHideLocalIpsWithMdns"}})
			br.Goto(agentPageServer(t, tc.page, "1001", "s3cret", a))
			pageState(t, br, "window.agent.state", func(s string) bool { return s == "registered" }, 20*time.Second)
			var binding store.Binding
			testenv.WaitFor(t, 5*time.Second, func() error {
				list, err := a.Store.AllBindings(context.Background(), time.Now())
				if err != nil || len(list) != 1 {
					return fmt.Errorf("bindings %v %v", list, err)
				}
				binding = list[0]
				return nil
			})
			if binding.Ext != "1001" || binding.Node != "a" || binding.Transport != "ws" || binding.UserAgent == "" {
				t.Fatalf("binding: %+v", binding)
			}

			phone := newTestPhone(t)
			caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Trace: true,
				Args: []string{"-m", "1", "-s", "7400", "-key", "rtp_port", strconv.Itoa(phone.port()),
					"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
				Remote: b.SIP.Addr("udp")})
			pageState(t, br, "String(window.agent.calls)", func(s string) bool { return s == "1" }, 20*time.Second)
			leg := answerRTP(t, caller)
			stopTalking := startTalking(t, phone, leg)
			waitAudioBothWays(t, br, phone)
			stopTalking()
			if tc.farHangup {
				// Ended on the caller's side: the BYE reaches the browser
				// through both nodes.
				var list struct {
					Calls []struct {
						CallRef string `json:"call_ref"`
					} `json:"calls"`
				}
				b.get("/api/v1/calls", &list)
				if len(list.Calls) != 1 {
					t.Fatalf("calls on node b: %+v", list.Calls)
				}
				req, _ := http.NewRequest(http.MethodDelete, b.api+"/api/v1/calls/"+list.Calls[0].CallRef, nil)
				if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
					t.Fatalf("DELETE: %v %v", resp, err)
				}
				pageState(t, br, "String(window.agent.ended === true)", func(s string) bool { return s == "true" }, 10*time.Second)
			} else if err := br.Eval("window.agent.bye(), 'ok'", nil); err != nil {
				// The agent hangs up: the BYE reaches the caller through both nodes.
				t.Fatal(err)
			}
			waitSipp(t, caller, 15*time.Second)
			var cdr map[string]any
			testenv.WaitFor(t, 10*time.Second, func() error {
				cdrs := campaignCDRs(t, r, "inbound")
				if len(cdrs) != 1 {
					return fmt.Errorf("%d inbound CDRs", len(cdrs))
				}
				cdr = cdrs[0]
				return nil
			})
			if cdr["ext"] != "1001" || cdr["disposition"] != "ANSWERED" {
				t.Fatalf("CDR: %v", cdr)
			}
			br.Screenshot(filepath.Join(screenshotDir(t), "seed-agent-"+tc.name+".png"), 1280, 800)
			if off := br.Offsite(); len(off) != 0 {
				t.Errorf("requests left the machine: %v", off)
			}
			// Killing the browser ends its WebSocket and so its binding.
			br.Kill()
			testenv.WaitFor(t, 5*time.Second, func() error {
				list, err := a.Store.AllBindings(context.Background(), time.Now())
				if err != nil || len(list) != 0 {
					return fmt.Errorf("bindings after the browser died: %v %v", list, err)
				}
				return nil
			})
		})
	}
}

// Click-to-dial with the agent in a browser (SIP.js 0.21) and a SIPp
// customer: the agent's page rings and answers first, then the customer is
// dialed and answers, audio flows both ways, and the CDR has the agent as
// ext and the call_ref given.
func TestBrowserAgentClickToDialSIPpCustomer(t *testing.T) {
	r := testenv.StartRedis(t)
	if err := r.Client.HSet(context.Background(), "cti_user@default", "1001",
		`{"params":{"password":"s3cret","enable":true}}`).Err(); err != nil {
		t.Fatal(err)
	}
	custPhone := newTestPhone(t)
	customer := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_extmedia.xml"),
		Args: []string{"-m", "1", "-key", "rtp_port", strconv.Itoa(custPhone.port())}})
	setLine(t, r, "l1", "g1", "sip:"+customer.Addr, "")
	a := startNode(t, r.URL, "a")
	br := testenv.StartBrowser(t, testenv.BrowserOptions{Args: []string{"--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns"}})
	br.Goto(agentPageServer(t, currentPage, "1001", "s3cret", a))
	pageState(t, br, "window.agent.state", func(s string) bool { return s == "registered" }, 20*time.Second)

	code, out := a.post("/api/v1/click2dial", map[string]any{"ext": "1001", "number": "15558880001", "line_group": "g1", "call_ref": "c2d-browser-1"})
	if code != http.StatusAccepted || out["call_ref"] != "c2d-browser-1" {
		t.Fatalf("click2dial: %d %v", code, out)
	}
	pageState(t, br, "String(window.agent.calls)", func(s string) bool { return s == "1" }, 20*time.Second)
	// The customer's leg: its RTP port on the node, from the call's legs.
	var custLeg *net.UDPAddr
	testenv.WaitFor(t, 20*time.Second, func() error {
		var info struct {
			State string `json:"state"`
			Legs  []struct {
				Role      string `json:"role"`
				LocalPort int    `json:"rtp_local_port"`
			} `json:"legs"`
		}
		a.get("/api/v1/calls/c2d-browser-1", &info)
		for _, l := range info.Legs {
			if l.Role == "callee" && info.State == "bridged" {
				custLeg = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.LocalPort}
				return nil
			}
		}
		return fmt.Errorf("call: %+v", info)
	})
	stopTalking := startTalking(t, custPhone, custLeg)
	defer stopTalking()
	waitAudioBothWays(t, br, custPhone)
	if err := br.Eval("window.agent.bye(), 'ok'", nil); err != nil {
		t.Fatal(err)
	}
	waitSipp(t, customer, 15*time.Second)
	c := cdrsFor(t, r, "c2d-browser-1", 1, 10*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "1001" || c.CallRef != "c2d-browser-1" {
		t.Fatalf("CDR: %+v", c)
	}
}
