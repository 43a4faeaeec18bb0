package app

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/config"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/store"
	"redial/internal/testenv"
)

// qeEntry is one entry of <prefix>:campaigns, with its place in the list
// counted from the oldest (0).
type qeEntry struct {
	index   int
	typ     string
	payload map[string]any
	raw     string
}

// qeCampaignEntries returns every entry of <prefix>:campaigns, oldest first.
func qeCampaignEntries(t testing.TB, r *testenv.Redis) []qeEntry {
	t.Helper()
	raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []qeEntry
	for i := len(raw) - 1; i >= 0; i-- {
		var env cdrEnvelope
		if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
			t.Fatalf("campaigns entry %q: %v", raw[i], err)
		}
		out = append(out, qeEntry{index: len(out), typ: env.Type, payload: env.Payload, raw: raw[i]})
	}
	return out
}

// qeInboundCDR waits for the CDR of the inbound call to dialed.
func qeInboundCDR(t testing.TB, r *testenv.Redis, dialed string, timeout time.Duration) notify.CDR {
	t.Helper()
	var cdr notify.CDR
	testenv.WaitFor(t, timeout, func() error {
		for _, e := range qeCampaignEntries(t, r) {
			if e.typ != "cdr" || e.payload["campaign_ref"] != "inbound" || e.payload["dial_number"] != dialed {
				continue
			}
			cdr = notify.CDR{}
			if err := json.Unmarshal([]byte(e.raw), &struct {
				Payload *notify.CDR `json:"payload"`
			}{&cdr}); err != nil {
				t.Fatalf("CDR %q: %v", e.raw, err)
			}
			return nil
		}
		return fmt.Errorf("no CDR for the inbound call to %s", dialed)
	})
	return cdr
}

// qeAgent registers ext at n from a free port, as a desk phone, and then
// runs the UAS o on that port (sippAgents sets o.Port).
func qeAgent(t *testing.T, n *node, ext string, o testenv.SippOptions) *testenv.Sipp {
	t.Helper()
	uas := sippAgents(t, n, []string{ext}, o)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := agentState(t, n, ext); st.State != store.AgentAvailable {
			return fmt.Errorf("agent %s is %q after registering", ext, st.State)
		}
		return nil
	})
	return uas
}

// qeCallerLeg waits until n has exactly one call with a caller leg in state
// want and returns its call_ref and the node's RTP address of that leg.
func qeCallerLeg(t *testing.T, n *node, want call.State) (string, *net.UDPAddr) {
	t.Helper()
	var ref string
	var leg *net.UDPAddr
	testenv.WaitFor(t, 10*time.Second, func() error {
		var list struct {
			Calls []call.Info `json:"calls"`
		}
		n.get("/api/v1/calls", &list)
		if len(list.Calls) != 1 || list.Calls[0].State != want {
			return fmt.Errorf("calls: %+v, want one %s", list.Calls, want)
		}
		for _, l := range list.Calls[0].Legs {
			if l.Role == "caller" {
				ref, leg = list.Calls[0].CallRef, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.LocalPort}
				return nil
			}
		}
		return fmt.Errorf("call %s has no caller leg: %+v", list.Calls[0].CallRef, list.Calls[0].Legs)
	})
	return ref, leg
}

// qeExtCaller calls dialed at n from a SIPp whose media is phone's socket
// (PCMU, telephone-event 101); it waits for the node's BYE.
func qeExtCaller(t *testing.T, n *node, phone *testPhone, dialed string) *testenv.Sipp {
	t.Helper()
	return testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Remote: n.SIP.Addr("udp"),
		Args: []string{"-m", "1", "-s", dialed, "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"}})
}

// Bad input around the queues never stops the good ones: entries that do
// not decode are listed under "invalid" naming their field while a good
// queue next to them connects its calls; an agent of a queue that is no
// user and never registered is skipped, not rung; a target naming a
// missing (or malformed) queue fails the call with a reason naming the
// queue and the key; a state change for another domain's agent is 403.
func TestQueueHostileInput(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7100", `{"type":"queue","queue":"good"}`)
	setDialplan(t, r, "public:7101", `{"type":"queue","queue":"nosuch"}`)
	setDialplan(t, r, "public:7102", `{"type":"queue","queue":"fast"}`)
	// Written as an integrator would, past SetQueue's checks.
	for name, v := range map[string]string{
		"fast":    `{"params":{"agents":["2001"],"strategy":"fastest"}}`,
		"flat":    `{"params":{"agents":"1001"}}`,
		"garbage": `{"params":`,
		"good":    `{"params":{"agents":["9999","2001"],"strategy":"top_down","ring_timeout_s":8,"join_empty":true,"wrapup_s":0}}`,
	} {
		if err := r.Client.HSet(ctx, "cti_acd_queue@default", name, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, r.URL, "n1")

	var body struct {
		Queues  []map[string]any  `json:"queues"`
		Invalid map[string]string `json:"invalid"`
	}
	if code := n.get("/api/v1/queues", &body); code != http.StatusOK {
		t.Fatalf("GET /api/v1/queues: %d %+v", code, body)
	}
	if len(body.Queues) != 1 || body.Queues[0]["name"] != "good" {
		t.Errorf("queues listed: %v, want only good", body.Queues)
	}
	for name, field := range map[string]string{"fast": "params.strategy", "flat": "params.agents", "garbage": "JSON"} {
		e, ok := body.Invalid[name]
		if !ok || !strings.Contains(e, field) || !strings.Contains(e, "cti_acd_queue@default") {
			t.Errorf("invalid[%q] = %q (present %v), want it naming %s and the key", name, e, ok, field)
		}
	}
	if len(body.Invalid) != 3 {
		t.Errorf("invalid: %v, want fast, flat and garbage", body.Invalid)
	}

	// 9999 comes first in top_down order but is nobody: 2001 answers at
	// once, not after 9999's 8 s of ringing.
	agent := qeAgent(t, n, "2001", testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "500"}})
	caller := queueCaller(t, n, "15557100001", "7100")
	waitSipp(t, caller, 15*time.Second)
	waitSipp(t, agent, 5*time.Second)
	c := qeInboundCDR(t, r, "7100", 5*time.Second)
	if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "2001" || c.HoldTime >= 8 {
		t.Errorf("call to the good queue: CDR %+v (ext %v), want ANSWERED by 2001 well before a ring timeout", c, c.Ext)
	}
	if st := agentState(t, n, "9999"); st.State != store.AgentLoggedOut || st.NoAnswer != 0 || st.Calls != 0 {
		t.Errorf("unknown agent 9999 after the call: %+v, want logged_out and never offered", st)
	}

	// A missing queue and a malformed one: the call fails, saying why.
	for _, tc := range []struct{ dialed, want string }{
		{"7101", `"nosuch"`},
		{"7102", "params.strategy"},
	} {
		caller := queueCaller(t, n, "15557100002", tc.dialed)
		waitSipp(t, caller, 10*time.Second)
		c := qeInboundCDR(t, r, tc.dialed, 5*time.Second)
		reason := c.Variables["redial_reason"]
		if c.Disposition != "FAILED" || c.Ext != nil || !strings.Contains(reason, tc.want) || !strings.Contains(reason, "cti_acd_queue@default") {
			t.Errorf("call to %s: disposition %s, ext %v, redial_reason %q; want FAILED naming %s and cti_acd_queue@default",
				tc.dialed, c.Disposition, c.Ext, reason, tc.want)
		}
	}

	// Another domain's agent: refused, and the agent of this domain with
	// that extension is left alone.
	if err := n.Store.SetUser(ctx, "1001", `{"params":{"password":"pw1001","enable":true}}`); err != nil {
		t.Fatal(err)
	}
	before := agentState(t, n, "1001")
	code, out := n.post("/api/v1/agents/1001@otherdomain/state", map[string]any{"state": "paused", "reason": "lunch"})
	if code != http.StatusForbidden {
		t.Errorf("POST /api/v1/agents/1001@otherdomain/state: %d %v, want 403", code, out)
	}
	if after := agentState(t, n, "1001"); after.State != before.State || after.Reason != before.Reason {
		t.Errorf("agent 1001 changed by another domain's request: %+v -> %+v", before, after)
	}
	if code, out := n.post("/api/v1/agents/1001@default/state", map[string]any{"state": "paused", "reason": "lunch"}); code != http.StatusOK {
		t.Errorf("POST /api/v1/agents/1001@default/state: %d %v, want 200 (this node's domain)", code, out)
	}
}

// With --notify-format legacy the inbound notification of a connected
// queue call says "campaign_ref":"inbound" in place of "call_dir", and
// otherwise has the seed's 7 fields.
func TestQueueLegacyNotifyFormat(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7110", `{"type":"queue","queue":"legacy"}`)
	n := startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.NotifyFormat = "legacy" })
	setQueue(t, n, "legacy", `{"params":{"agents":["2001"],"wrapup_s":0}}`)
	agent := qeAgent(t, n, "2001", testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "500"}})
	caller := queueCaller(t, n, "15557110001", "7110")
	waitSipp(t, caller, 15*time.Second)
	waitSipp(t, agent, 5*time.Second)
	var notes []map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		if notes = inboundNotes(t, r); len(notes) != 1 {
			return fmt.Errorf("%d inbound notifications, want 1", len(notes))
		}
		return nil
	})
	nt := notes[0]
	c := qeInboundCDR(t, r, "7110", 5*time.Second)
	want := map[string]any{"number": "15557110001", "dial_number": "7110", "call_ref": c.CallRef, "contact_ref": "",
		"campaign_ref": "inbound", "ref": "2001"}
	for k, v := range want {
		if nt[k] != v {
			t.Errorf("%s = %#v, want %#v (%v)", k, nt[k], v, nt)
		}
	}
	if _, ok := nt["call_dir"]; ok {
		t.Errorf("legacy notification has call_dir: %v", nt)
	}
	if _, ok := nt["hold_time"].(float64); !ok {
		t.Errorf("hold_time %#v is not a number", nt["hold_time"])
	}
	if len(nt) != 7 {
		t.Errorf("notification has %d fields, want 7: %v", len(nt), nt)
	}
}

// A campaign whose destination is a queue: the callee answers, waits in
// the queue and reaches the agent; the outbound "call" notification
// (call_dir outbound, campaign_ref the task, ref the agent) is on
// <prefix>:campaigns before the call's CDR, whose ext is the agent.
func TestQueueCampaignNotificationBeforeCDR(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:8890", `{"type":"queue","queue":"outq"}`)
	n := startNode(t, r.URL, "n1")
	setQueue(t, n, "outq", `{"params":{"agents":["2001"],"wrapup_s":0}}`)
	agent := qeAgent(t, n, "2001", testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "1000"}})
	setTask(t, r, "cti_queue_dialer_task@template", "qe", `{"params":{"enable":true,"line_group":["g1"],"limit":5,
		"number_queue":"qeq","destination_extension":"8890"}}`, "config@all")
	pushNumbers(t, r, "qeq", "15558890001")

	var note, cdr qeEntry
	testenv.WaitFor(t, 20*time.Second, func() error {
		note, cdr = qeEntry{index: -1}, qeEntry{index: -1}
		for _, e := range qeCampaignEntries(t, r) {
			if e.payload["campaign_ref"] != "qe" {
				continue
			}
			switch e.typ {
			case "call":
				note = e
			case "cdr":
				cdr = e
			default:
				return fmt.Errorf("entry of type %q: %s", e.typ, e.raw)
			}
		}
		if note.index < 0 || cdr.index < 0 {
			return fmt.Errorf("notification at %d, CDR at %d", note.index, cdr.index)
		}
		return nil
	})
	waitSipp(t, agent, 5*time.Second)
	waitSipp(t, callee, 5*time.Second)
	if note.index > cdr.index {
		t.Errorf("the call notification (%d) came after the CDR (%d):\n%s\n%s", note.index, cdr.index, note.raw, cdr.raw)
	}
	want := map[string]any{"call_dir": "outbound", "campaign_ref": "qe", "ref": "2001", "number": "15558890001",
		"call_ref": cdr.payload["call_ref"], "contact_ref": ""}
	for k, v := range want {
		if note.payload[k] != v {
			t.Errorf("notification %s = %#v, want %#v (%s)", k, note.payload[k], v, note.raw)
		}
	}
	if _, ok := note.payload["hold_time"].(float64); !ok {
		t.Errorf("notification hold_time %#v is not a number", note.payload["hold_time"])
	}
	if cdr.payload["ext"] != "2001" || cdr.payload["disposition"] != "ANSWERED" || cdr.payload["client_number"] != "15558890001" {
		t.Errorf("campaign CDR: %s, want ANSWERED with ext 2001", cdr.raw)
	}
	if n := len(inboundNotes(t, r)); n != 0 {
		t.Errorf("%d notifications on <prefix>:inbound for an outbound call", n)
	}
}

// qeStream is one RTP stream (one SSRC: each Play is a new one) as a
// test phone received it.
type qeStream struct {
	ssrc        uint32
	pcm         []int16
	packets     int
	first, last time.Duration // arrivals after the first packet of all
}

// qeStreams reads what phone receives in PCMU for d from its first packet
// and splits it into streams in order of their first packet.
func qeStreams(t *testing.T, phone *testPhone, d time.Duration) []*qeStream {
	t.Helper()
	var streams []*qeStream
	by := map[uint32]*qeStream{}
	var first time.Time
	buf := make([]byte, 1500)
	for first.IsZero() || time.Since(first) < d {
		if err := phone.conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		nr, err := phone.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("no RTP for 2 s after %d streams", len(streams))
		}
		if err != nil {
			t.Fatal(err)
		}
		if nr <= 12 || buf[1]&0x7f != 0 {
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		at := time.Since(first)
		ssrc := binary.BigEndian.Uint32(buf[8:])
		st := by[ssrc]
		if st == nil {
			st = &qeStream{ssrc: ssrc, first: at}
			by[ssrc] = st
			streams = append(streams, st)
		}
		st.last = at
		st.packets++
		for _, b := range buf[12:nr] {
			st.pcm = append(st.pcm, media.UlawToLinear(b))
		}
	}
	return streams
}

// A waiting caller hears the queue's music on hold (1 kHz), and every
// announce_position_s (2 s) its position: position.wav (500 Hz) then the
// prompt of digit 1 (700 Hz), never another digit's (900 Hz), then the
// music again, one at a time (the music stops before the announcement
// starts). Pressing the exit key 9 (RFC 4733) takes it to the overflow,
// here a hangup: the CDR says why.
func TestQueueMusicPositionAndExitKey(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7120", `{"type":"queue","queue":"hold"}`)
	setDialplan(t, r, "default:leave", `{"type":"hangup"}`)
	n := startNode(t, r.URL, "n1")
	for path, tone := range map[string]struct {
		freq float64
		d    time.Duration
	}{
		":GS_PUB/moh/tone.wav":       {1000, 5 * time.Second},
		":GS_PUB/queue/position.wav": {500, 400 * time.Millisecond},
		":GS_PUB/queue/1.wav":        {700, 400 * time.Millisecond},
		":GS_PUB/queue/2.wav":        {900, 400 * time.Millisecond},
	} {
		abs, err := n.Files.ResolveForWrite("", path)
		if err != nil {
			t.Fatal(err)
		}
		writeToneWAV(t, abs, tone.freq, tone.d)
	}
	// 2001 is nobody's phone: the caller waits.
	setQueue(t, n, "hold", `{"params":{"agents":["2001"],"join_empty":true,"moh":":GS_PUB/moh/tone.wav",
		"announce_position_s":2,"exit_key":"9","overflow":{"extension":"leave","context":"default"}}}`)
	phone := newTestPhone(t)
	caller := qeExtCaller(t, n, phone, "7120")
	ref, leg := qeCallerLeg(t, n, call.StateAnswered)

	// What the phone hears for 3.6 s from the first packet: the music, the
	// first announcement (position.wav, then 1.wav), the music again; the
	// second announcement would come at 4 s. Each is one Play, one SSRC.
	streams := qeStreams(t, phone, 3600*time.Millisecond)
	for i, st := range streams {
		t.Logf("stream %d: %d packets from %v to %v; 1 kHz %.2f, 500 Hz %.2f, 700 Hz %.2f, 900 Hz %.2f", i, st.packets,
			st.first.Round(time.Millisecond), st.last.Round(time.Millisecond),
			toneShare(st.pcm, 1000), toneShare(st.pcm, 500), toneShare(st.pcm, 700), toneShare(st.pcm, 900))
	}
	want := []struct {
		freq    float64
		what    string
		packets int // 0: any
	}{{1000, "music on hold", 0}, {500, "position.wav", 20}, {700, "1.wav (position 1)", 20}, {1000, "music on hold again", 0}}
	if len(streams) != len(want) {
		t.Fatalf("%d RTP streams in 3.6 s, want %d: music, position.wav, 1.wav, music", len(streams), len(want))
	}
	for i, w := range want {
		st := streams[i]
		if s := toneShare(st.pcm, w.freq); s < 0.9 {
			t.Errorf("stream %d: %v Hz share %.2f, want %s", i, w.freq, s, w.what)
		}
		if s := toneShare(st.pcm, 900); s > 0.05 {
			t.Errorf("stream %d: 900 Hz share %.2f: the prompt of digit 2 was played for position 1", i, s)
		}
		if w.packets != 0 && (st.packets < w.packets-1 || st.packets > w.packets+1) {
			t.Errorf("stream %d (%s): %d packets, want the file's %d", i, w.what, st.packets, w.packets)
		}
	}
	if at := streams[1].first; at < 1700*time.Millisecond || at > 2400*time.Millisecond {
		t.Errorf("position announced %v after the music began, want about announce_position_s 2 s", at)
	}
	// One sound at a time: a stream that is interrupted stops before the
	// next begins (a 20 ms packet of slack).
	for i := 0; i+1 < len(streams); i++ {
		if over := streams[i].last - streams[i+1].first; over > 20*time.Millisecond {
			t.Errorf("stream %d (%s) went on %v after stream %d (%s) began: the caller heard both at once",
				i, want[i].what, over.Round(time.Millisecond), i+1, want[i+1].what)
		}
	}
	// The exit key: the overflow hangs up.
	phone.press(t, leg, 0, 101, 9)
	waitSipp(t, caller, 10*time.Second)
	c := cdrsFor(t, r, ref, 1, 5*time.Second)[0]
	if reason := c.Variables["redial_queue_overflow_reason"]; !strings.Contains(reason, "exit key 9") {
		t.Errorf("redial_queue_overflow_reason %q, want it naming the exit key 9 (CDR %+v)", reason, c)
	}
	if c.Ext != nil || c.Disposition != "ANSWERED" {
		t.Errorf("overflowed caller's CDR: disposition %s, ext %v", c.Disposition, c.Ext)
	}
	if got := waitingRefs(t, r, n, "hold"); len(got) != 0 {
		t.Errorf("callers still waiting after the exit key: %v", got)
	}
}

// A queue call connected to an agent is recorded without asking: the CDR
// names the recording and GET /api/v1/calls/{ref}/recording serves a
// stereo WAV with the caller (400 Hz) left and the agent (1 kHz) right.
func TestQueueCallRecorded(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7130", `{"type":"queue","queue":"rec"}`)
	n := startNode(t, r.URL, "n1")
	setQueue(t, n, "rec", `{"params":{"agents":["2001"],"wrapup_s":0}}`)
	agent := qeAgent(t, n, "2001", testenv.SippOptions{Scenario: scenario(t, "uas_dest_rtp.xml"), Args: []string{"-m", "1"},
		Files: []string{scenario(t, "pcmu_tone.ulaw")}})
	phone := newTestPhone(t)
	caller := qeExtCaller(t, n, phone, "7130")
	ref, leg := qeCallerLeg(t, n, call.StateBridged)
	stop := make(chan struct{})
	var sent atomic.Int64
	talking := talk(phone, leg, 400, &sent, stop)
	testenv.WaitFor(t, 10*time.Second, func() error {
		var info call.Info
		n.get("/api/v1/calls/"+ref, &info)
		for _, l := range info.Legs {
			if l.Role == "agent" && l.PacketsIn >= 50 && sent.Load() >= 50 {
				return nil
			}
		}
		return fmt.Errorf("legs %+v, %d packets sent", info.Legs, sent.Load())
	})
	req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/"+ref, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE /api/v1/calls/%s: %d", ref, resp.StatusCode)
	}
	close(stop)
	<-talking
	waitSipp(t, caller, 10*time.Second)
	waitSipp(t, agent, 10*time.Second)

	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Ext == nil || *c.Ext != "2001" || c.Recording == "" || !strings.HasSuffix(c.Recording, ".wav") {
		t.Fatalf("CDR: ext %v, recording %q; want 2001 and a recording", c.Ext, c.Recording)
	}
	code, hdr, wav := download(t, n, ref)
	if code != http.StatusOK {
		t.Fatalf("GET recording: %d %.200s", code, wav)
	}
	if len(wav) < 44 || binary.LittleEndian.Uint16(wav[22:]) != 2 {
		t.Fatalf("recording (%s, %d bytes) is not a 2-channel WAV", hdr.Get("Content-Type"), len(wav))
	}
	left, right := stereoPCM(t, wav)
	if len(left) < media.SampleRate/2 {
		t.Fatalf("recording holds %d samples per channel, want at least the second of talk", len(left))
	}
	mid := func(pcm []int16) []int16 { return pcm[len(pcm)/4 : len(pcm)*3/4] }
	if s := toneShare(mid(left), 400); s < 0.6 {
		t.Errorf("left channel: 400 Hz share %.2f, want the caller's tone", s)
	}
	if s := toneShare(mid(right), 1000); s < 0.6 {
		t.Errorf("right channel: 1 kHz share %.2f, want the agent's tone", s)
	}
}
