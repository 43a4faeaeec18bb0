package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// One browser agent in a queue, next to a SIPp agent: the agent logs in on
// the agent page at node A (registering over WebSocket makes it available
// in Redis); a caller at node B dials the queue, whose top_down strategy
// offers it to the browser first; the page shows the call, the agent
// answers, audio flows both ways between the caller and the browser
// through both nodes, and the page hangs up. The inbound notification and
// the CDR name the browser's extension. Then the agent pauses on the page,
// and the next caller goes to the SIPp agent while the page stays quiet.
func TestQueueBrowserAgentThenPausedGoesToSippAgent(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7100", `{"type":"queue","queue":"support"}`)
	if err := r.Client.HSet(ctx, "cti_user@default", "2001",
		`{"params":{"password":"s3cret","name":"Browser Agent","enable":true}}`).Err(); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, r.URL, "qa")
	b := startNode(t, r.URL, "qb")
	mountAgentPage(t, a)
	// A ring timeout well above the time the test takes to answer, so the
	// first call can only go to the browser; no wrap-up, so the pause is
	// what keeps the browser from the second.
	setQueue(t, a, "support", `{"params":{"agents":["2001","2002"],"strategy":"top_down","ring_timeout_s":30,"wrapup_s":0}}`)
	sippAgent := registerSippAgent(t, r, a, "2002", "uas_answer_bye.xml", "-m", "1", "-d", "1000")

	br := testenv.StartBrowser(t, testenv.BrowserOptions{Args: []string{"--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns"}})
	br.Goto(a.api + "/agent")
	pageState(t, br, "String(!!(window.agentPage && window.agentPage.ready))", func(s string) bool { return s == "true" }, 10*time.Second)
	pageEval(t, br, `document.getElementById("ext").value = "2001";
		document.getElementById("password").value = "s3cret";
		document.getElementById("login").click()`)
	pageState(t, br, `document.getElementById("reg-state").textContent`, func(s string) bool { return s == "registered" }, 20*time.Second)
	agentStateIs(t, a.Store, "2001", store.AgentAvailable, "")
	agentStateIs(t, a.Store, "2002", store.AgentAvailable, "")
	pageState(t, br, `document.getElementById("queue-state").textContent`, func(s string) bool { return s == "available" }, 10*time.Second)

	// (1) The caller at node B reaches the browser at node A.
	phone := newTestPhone(t)
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Trace: true,
		Args: []string{"-m", "1", "-s", "7100", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: b.SIP.Addr("udp")})
	hold := listenSSRCs(t, phone)
	pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "ringing" }, 20*time.Second)
	agentStateIs(t, a.Store, "2001", store.AgentRinging, "")
	shownRef := pageText(t, br, "call-ref")
	if !regexpMatch(`^[0-9a-f]{32}$`, shownRef) {
		t.Errorf("call ref shown while ringing: %q", shownRef)
	}
	if st := agentState(t, a, "2002"); st.State != store.AgentAvailable {
		t.Errorf("SIPp agent 2002 while the browser rings (top_down): %+v, want available", st)
	}
	// What the caller heard so far came from the node (music on hold),
	// not from the agent.
	holdSSRCs := hold.snapshot()
	pageEval(t, br, `document.getElementById("answer").click()`)
	pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "established" }, 20*time.Second)
	agentStateIs(t, a.Store, "2001", store.AgentOnCall, "")

	// Audio both ways: the caller's tone reaches the browser, and the
	// browser's microphone reaches the caller (by an SSRC that is neither
	// the caller's own nor one heard while it waited on hold).
	leg := answerRTP(t, caller)
	stopTalking := startTalking(t, phone, leg)
	testenv.WaitFor(t, 20*time.Second, func() error {
		got, sent, err := agentPageRTP(br)
		if err != nil {
			return err
		}
		heard := hold.countExcept(holdSSRCs, phoneAudioSSRC)
		if got < 50 || sent < 50 || heard < 50 {
			return fmt.Errorf("browser received %d and sent %d RTP packets; the caller heard %d from the agent", got, sent, heard)
		}
		return nil
	})
	stopTalking()
	// The page shows the queue state Redis holds within its poll.
	pageState(t, br, `document.getElementById("queue-state").textContent`, func(s string) bool { return s == "on call" }, 6*time.Second)
	dir := screenshotDir(t)
	br.Screenshot(filepath.Join(dir, "queue-browser-agent.png"), 1280, 800)
	t.Logf("screenshot in %s", dir)

	var first map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		notes := inboundNotes(t, r)
		if len(notes) != 1 {
			return fmt.Errorf("%d inbound notifications, want 1", len(notes))
		}
		first = notes[0]
		return nil
	})
	if first["ref"] != "2001" || first["dial_number"] != "7100" || first["call_dir"] != "inbound" {
		t.Errorf("first call's notification: %v", first)
	}
	ref, _ := first["call_ref"].(string)
	if ref != shownRef {
		t.Errorf("page showed call ref %q, the notification has %q", shownRef, ref)
	}

	pageEval(t, br, `document.getElementById("hangup").click()`)
	pageState(t, br, "window.agentPage.call", func(s string) bool { return s == "ended" }, 15*time.Second)
	waitSipp(t, caller, 15*time.Second)
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "2001" || c.Billsec < 1 {
		t.Errorf("first call's CDR: %+v, want ANSWERED by 2001 with billsec >= 1", c)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := agentState(t, a, "2001"); st.State != store.AgentAvailable || st.Calls != 1 {
			return fmt.Errorf("browser agent after its call: %+v, want available with 1 call", st)
		}
		return nil
	})

	// (2) Paused on the page: the next caller goes to 2002.
	pageEval(t, br, `const r = document.getElementById("pause-reason");
		r.value = "break"; r.dispatchEvent(new Event("change"));
		document.getElementById("pause").click()`)
	pageState(t, br, `document.getElementById("queue-state").textContent`, func(s string) bool { return s == "paused: break" }, 10*time.Second)
	agentStateIs(t, a.Store, "2001", store.AgentPaused, "break")

	second := queueCaller(t, b, "15557770002", "7100")
	waitSipp(t, second, 30*time.Second)
	waitSipp(t, sippAgent.uas, 10*time.Second)
	var notes []map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		if notes = inboundNotes(t, r); len(notes) != 2 {
			return fmt.Errorf("%d inbound notifications, want 2", len(notes))
		}
		return nil
	})
	if notes[1]["ref"] != "2002" || notes[1]["number"] != "15557770002" {
		t.Errorf("second call's notification: %v, want ref 2002", notes[1])
	}
	ref2, _ := notes[1]["call_ref"].(string)
	c2 := cdrsFor(t, r, ref2, 1, 10*time.Second)[0]
	if c2.Disposition != "ANSWERED" || c2.Ext == nil || *c2.Ext != "2002" {
		t.Errorf("second call's CDR: %+v, want ANSWERED by 2002", c2)
	}
	// The paused page never rang and stays paused.
	var calls int
	if err := br.Eval(`window.agentPage.call === "ended" ? 1 : 0`, &calls); err != nil || calls != 1 {
		t.Errorf("page call state after the second caller: %d %v (want still \"ended\")", calls, err)
	}
	if got := pageText(t, br, "queue-state"); got != "paused: break" {
		t.Errorf("page queue state after the second caller: %q", got)
	}
	if st := agentState(t, a, "2001"); st.State != store.AgentPaused || st.Calls != 1 {
		t.Errorf("browser agent after the second caller: %+v, want paused with 1 call", st)
	}

	if off := br.Offsite(); len(off) != 0 {
		t.Errorf("requests left the machine: %v", off)
	}
	if errs := br.ConsoleErrors(); len(errs) != 0 {
		t.Errorf("console errors: %v", errs)
	}
}

// ssrcCounter counts the RTP packets a test phone receives, by SSRC.
type ssrcCounter struct {
	mu sync.Mutex
	n  map[uint32]int
}

// listenSSRCs reads phone's socket until the test ends.
func listenSSRCs(t *testing.T, phone *testPhone) *ssrcCounter {
	c := &ssrcCounter{n: map[uint32]int{}}
	var stopped atomic.Bool
	t.Cleanup(func() { stopped.Store(true) })
	go func() {
		buf := make([]byte, 1500)
		for !stopped.Load() {
			phone.conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := phone.conn.Read(buf)
			if err != nil {
				if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
					continue
				}
				return
			}
			if n > 12 {
				c.mu.Lock()
				c.n[binary.BigEndian.Uint32(buf[8:])]++
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *ssrcCounter) snapshot() map[uint32]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint32]bool, len(c.n))
	for s := range c.n {
		out[s] = true
	}
	return out
}

// countExcept counts the packets of every SSRC not in skip nor other.
func (c *ssrcCounter) countExcept(skip map[uint32]bool, other uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for s, n := range c.n {
		if !skip[s] && s != other {
			total += n
		}
	}
	return total
}
