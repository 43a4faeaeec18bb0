package app

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/ivrapi"
	"redial/internal/testenv"
)

// homeSession returns node n's view of session ivrid under control.
func homeSession(n *node, ivrid string) (ivrapi.SessionState, bool) {
	for _, s := range n.IVRAPI.Sessions() {
		if s.IVRID == ivrid {
			return s, true
		}
	}
	return ivrapi.SessionState{}, false
}

// Two applications, one on each node, race to accept every session: for
// each, exactly one wins and the other is told "owned", whichever node
// runs the call.
func TestIVRAPIAcceptRaceHasOneWinner(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7301", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	a := ivrapiNode(t, r, "a", nil)
	b := ivrapiNode(t, r, "b", nil)
	// Both on the node that does not run the calls: their accepts travel
	// the same way and arrive in either order.
	c1 := dialWS(t, a.api, "", "app1@a")
	c2 := dialWS(t, a.api, "", "app2@a")
	c1.ok("subscribe", map[string]any{"class": "ivrevents", "key": "abc"})
	c2.ok("subscribe", map[string]any{"class": "ivrevents"})
	const calls = 20
	phone := newTestPhone(t)
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"),
		Args: []string{"-m", strconv.Itoa(calls), "-l", "5", "-r", "20", "-s", "7301", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: b.SIP.Addr("udp")})
	wins := map[string]int{}
	for i := 1; i <= calls; i++ {
		start := c1.event("notify:api_start", "", i)
		ivrid := start.Body["data"].(map[string]any)["ivrid"].(string)
		frame := fmt.Sprintf(`["ivrapi_accept",{"qid":"race-%d","key":"abc","ivrid":%q}]`, i, ivrid)
		done := make(chan struct{})
		go func() { defer close(done); c2.ws.Write(t.Context(), 1, []byte(frame)) }()
		c1.send(frame)
		<-done
		isReply := func(f wsFrame) bool {
			return f.Name == "ivrapi_accept_result" && f.Body["qid"] == fmt.Sprintf("race-%d", i)
		}
		r1, r2 := c1.wait(10*time.Second, isReply), c2.wait(10*time.Second, isReply)
		var winner *wsClient
		switch {
		case r1.Body["result"] != nil && r2.Body["error"] != nil:
			winner = c1
			if e := r2.Body["error"].(map[string]any); e["code"] != "owned" {
				t.Fatalf("loser got %v", e)
			}
		case r2.Body["result"] != nil && r1.Body["error"] != nil:
			winner = c2
			if e := r1.Body["error"].(map[string]any); e["code"] != "owned" {
				t.Fatalf("loser got %v", e)
			}
		default:
			t.Fatalf("session %d: %s / %s: want exactly one winner", i, r1.Raw, r2.Raw)
		}
		wins[winner.name]++
		if st, _ := homeSession(b, ivrid); st.Owner == "" {
			t.Fatalf("node b does not know the owner of %s", ivrid)
		}
		winner.ok("ivrapi_abort", map[string]any{"key": "abc", "ivrid": ivrid})
	}
	waitSipp(t, caller, 30*time.Second)
	t.Logf("wins: %v", wins)
}

// The owner's socket drops: the session waits for it (grace); another
// connection, on the other node, takes over with ivrapi_reaccept and gets
// every event it missed (the caller's RFC 4733 keys, replayed by SIPp from
// Debian's pcaps) in order, then takes it over again from a third one,
// which is told api_replaced. A second call whose owner drops and never
// comes back is handed back to its script when the grace ends.
func TestIVRAPIReacceptRecoversMissedEvents(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7302", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	const grace = 3 * time.Second
	short := func(c *config.Node) { c.IVRAPIGrace = grace }
	a := ivrapiNode(t, r, "a", short)
	b := ivrapiNode(t, r, "b", short)
	watcher := dialWS(t, a.api, "", "watcher@a")
	watcher.ok("subscribe", map[string]any{"class": "ivrevents"})
	o1 := dialWS(t, b.api, "", "owner1@b")
	o1.ok("subscribe", map[string]any{"class": "ivrevents", "key": "abc"})
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_dtmf_pcap.xml"),
		Args: []string{"-m", "1", "-s", "7302"}, Remote: b.SIP.Addr("udp")})
	start := o1.event("notify:api_start", "", 1)
	ivrid := start.Body["data"].(map[string]any)["ivrid"].(string)
	sess := map[string]any{"key": "abc", "ivrid": ivrid}
	o1.ok("ivrapi_accept", sess)
	// The first key reaches the owner; then its socket drops.
	seven := o1.event("ivrapi_dtmf", ivrid, 1)
	if seven.Body["dtmf"] != "7" || seven.Body["mode"] != "idle" {
		t.Fatalf("first key: %s", seven.Raw)
	}
	o1.ws.CloseNow()
	testenv.WaitFor(t, 10*time.Second, func() error {
		st, ok := homeSession(b, ivrid)
		if !ok || !st.Grace || st.Seq < 4 {
			return fmt.Errorf("session on b: %+v (want in grace, with the keys 0 and 9 numbered 3 and 4)", st)
		}
		return nil
	})

	o2 := dialWS(t, a.api, "", "owner2@a")
	res, _ := o2.ok("ivrapi_reaccept", map[string]any{"key": "abc", "ivrid": ivrid, "since": seqOf(seven)}).(map[string]any)
	if res["state"] != "idle" {
		t.Fatalf("reaccept: %v", res)
	}
	var got []string
	for i, want := range []string{"0", "9"} {
		d := o2.event("ivrapi_dtmf", ivrid, i+1)
		got = append(got, fmt.Sprint(d.Body["dtmf"]))
		if d.Body["dtmf"] != want || seqOf(d) != seqOf(seven)+int64(i)+1 {
			t.Fatalf("replayed events %v: %s", got, o2.dump())
		}
	}
	if st, _ := homeSession(b, ivrid); st.Grace || !strings.HasPrefix(st.Owner, "a/") {
		t.Fatalf("after reaccept: %+v", st)
	}

	// A third application takes it over; the second is told so.
	o3 := dialWS(t, b.api, "", "owner3@b")
	o3.ok("ivrapi_reaccept", sess)
	replaced := o2.event("notify:api_replaced", ivrid, 1)
	if d := replaced.Body["data"].(map[string]any); d["key"] != "abc" || replaced.Body["class"] != "ivrevents" {
		t.Fatalf("api_replaced: %s", replaced.Raw)
	}
	o2.code("ivrapi_abort", sess, "not_owner")
	o3.ok("ivrapi_abort", sess)
	watcher.event("notify:api_stop", ivrid, 1)
	waitSipp(t, caller, 15*time.Second)

	// The second call's owner drops and never comes back.
	o4 := dialWS(t, a.api, "", "owner4@a")
	o4.ok("subscribe", map[string]any{"class": "ivrevents"})
	caller2 := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_dtmf_pcap.xml"),
		Args: []string{"-m", "1", "-s", "7302"}, Remote: b.SIP.Addr("udp")})
	start2 := o4.event("notify:api_start", "", 1)
	ivrid2 := start2.Body["data"].(map[string]any)["ivrid"].(string)
	o4.ok("ivrapi_accept", map[string]any{"key": "abc", "ivrid": ivrid2})
	o4.ws.CloseNow()
	dropped := time.Now()
	watcher.event("notify:api_stop", ivrid2, 1)
	if waited := time.Since(dropped); waited < grace-500*time.Millisecond {
		t.Fatalf("control ended %v after the owner dropped, before the %v grace", waited, grace)
	}
	waitSipp(t, caller2, 15*time.Second)
	testenv.WaitFor(t, 10*time.Second, func() error {
		cdrs := campaignCDRs(t, r, "inbound")
		if len(cdrs) != 2 {
			return fmt.Errorf("%d inbound CDRs", len(cdrs))
		}
		for _, c := range cdrs {
			if vars, _ := c["variables"].(map[string]any); vars["after_control"] != "continued" {
				return fmt.Errorf("a script did not go on after control ended: %v", c)
			}
		}
		return nil
	})
}

// The example client of docs/ivrapi.md, run as an integrator would run it,
// against a node with a token: it takes a call, plays a prompt it had the
// node fetch, collects the keys the caller presses, records, downloads
// the recording and gives control back.
func TestIVRAPIExampleClient(t *testing.T) {
	testenv.RequireTool(t, "go")
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7303", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", strings.Replace(extScript, `"key":"abc"`, `"key":"demo"`, 1))
	fs := startFileServer(t, map[string]http.HandlerFunc{"/hello.wav": serveBytes(toneFile(t, 600, 500*time.Millisecond), "audio/wav")})
	token := ivrapiToken(t, r, "example", "default", "ivrapi")
	n := ivrapiNode(t, r, "a", nil)

	out := filepath.Join(t.TempDir(), "recording.wav")
	cmd := exec.Command("go", "run", "./examples/ivrapi-client", "-url", "ws"+strings.TrimPrefix(n.api, "http")+"/api/v1/ws",
		"-key", "demo", "-prompt", fs.url+"/hello.wav", "-digits", "2", "-record", "2", "-out", out, "-timeout", "90s")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "REDIAL_TOKEN="+token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(90 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					cmd.Wait()
					t.Fatalf("the example ended before %q; stderr:\n%s", prefix, stderr.String())
				}
				t.Logf("example: %s", l)
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %q from the example; stderr:\n%s", prefix, stderr.String())
			}
		}
	}
	next("subscribed")
	phone := newTestPhone(t)
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Trace: true,
		Args: []string{"-m", "1", "-s", "7303", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: n.SIP.Addr("udp")})
	next("accepted")
	leg := answerRTP(t, caller)
	next("played")
	next("started oType 302")
	phone.press(t, leg, 0, 101, 4)
	phone.press(t, leg, 0, 101, 2)
	if l := next("collected"); l != `collected "42"` {
		t.Fatalf("example: %s", l)
	}
	stopTalking := startTalking(t, phone, leg)
	rec := next("recorded")
	stopTalking()
	next("done")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("example: %v; stderr:\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%s: %v", rec, err)
	}
	if d := wavSeconds(t, b); d < 1.9 || d > 2.1 {
		t.Fatalf("downloaded recording lasts %.3f s, want 2", d)
	}
	waitSipp(t, caller, 15*time.Second)
}

// repoRoot is the module's root directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Through the API an application sets variables, pauses, transfers the
// caller to a SIP destination (the seed's 203 with reinviteMode) and, on a
// second call, hangs up (201): each component does on the call what it does
// in a script.
func TestIVRAPIAppliesTransferHangupAndRedialComponents(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7305", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	dest := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "500"}})
	setDialplan(t, r, "default:8800", fmt.Sprintf(`{"type":"sip","uri":"sip:8800@%s"}`, dest.Addr))
	n := ivrapiNode(t, r, "a", nil)
	app := dialWS(t, n.api, "", "app")
	app.ok("subscribe", map[string]any{"class": "ivrevents"})
	phone := newTestPhone(t)
	call := func() *testenv.Sipp {
		return testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"),
			Args: []string{"-m", "1", "-s", "7305", "-key", "rtp_port", strconv.Itoa(phone.port()),
				"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
			Remote: n.SIP.Addr("udp")})
	}
	apply := func(ivrid string, nth int, data map[string]any) wsFrame {
		t.Helper()
		app.ok("ivrapi_component_apply", map[string]any{"key": "abc", "ivrid": ivrid, "data": data})
		return app.event("ivrapi_component_stopped", ivrid, nth)
	}

	caller := call()
	ivrid := app.event("notify:api_start", "", 1).Body["data"].(map[string]any)["ivrid"].(string)
	app.ok("ivrapi_accept", map[string]any{"key": "abc", "ivrid": ivrid})
	if st := apply(ivrid, 1, map[string]any{"oType": 304, "variables": map[string]any{"app_said": "hi"}}); st.Body["transferKey"] != "transfer" {
		t.Fatalf("set variables: %s", st.Raw)
	}
	if st := apply(ivrid, 2, map[string]any{"oType": 303, "timeSec": "0.2"}); st.Body["transferKey"] != "transfer" {
		t.Fatalf("pause: %s", st.Raw)
	}
	st := apply(ivrid, 3, map[string]any{"oType": 203, "number": "8800", "reinviteMode": 2})
	if res, _ := st.Body["results"].(map[string]any); res["transferResult"] != "connected" {
		t.Fatalf("transfer: %s", st.Raw)
	}
	app.event("notify:api_stop", ivrid, 1)
	waitSipp(t, dest, 15*time.Second)
	waitSipp(t, caller, 15*time.Second)

	caller2 := call()
	ivrid2 := app.event("notify:api_start", "", 2).Body["data"].(map[string]any)["ivrid"].(string)
	app.ok("ivrapi_accept", map[string]any{"key": "abc", "ivrid": ivrid2})
	app.ok("ivrapi_component_apply", map[string]any{"key": "abc", "ivrid": ivrid2, "data": map[string]any{"oType": 201}})
	app.event("notify:api_stop", ivrid2, 1)
	waitSipp(t, caller2, 15*time.Second)

	testenv.WaitFor(t, 10*time.Second, func() error {
		cdrs := campaignCDRs(t, r, "inbound")
		ended := map[string]string{}
		for _, c := range cdrs {
			vars, _ := c["variables"].(map[string]any)
			ended[fmt.Sprint(vars["redial_ivr_ended"])] = fmt.Sprint(vars["app_said"])
		}
		if _, hungUp := ended["hangup"]; len(cdrs) < 2 || ended["transfer"] != "hi" || !hungUp {
			return fmt.Errorf("inbound CDRs: %v", cdrs)
		}
		return nil
	})
}

// A node running a controlled call dies (kill -9): the application that
// owns it (connected to a node that started after the call and found it by
// asking the others) and the one watching it are told api_stop with reason
// node_died once the directory sees the death, and requests for the
// session are not_found.
func TestIVRAPISessionNodeDies(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7306", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	a := ivrapiNode(t, r, "a", nil)
	victim := startProcess(t, r.URL, "victim")
	var sipAddr string
	testenv.WaitFor(t, 20*time.Second, func() error {
		nodes, err := a.Directory.Nodes(t.Context())
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Host == "victim" && n.Alive && n.SIP["udp"] != "" {
				sipAddr = n.SIP["udp"]
				return nil
			}
		}
		return fmt.Errorf("victim not in the directory: %+v", nodes)
	})
	app := dialWS(t, a.api, "", "app@a")
	app.ok("subscribe", map[string]any{"class": "ivrevents"})
	phone := newTestPhone(t)
	testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"),
		Args: []string{"-m", "1", "-s", "7306", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: sipAddr})
	ivrid := app.event("notify:api_start", "", 1).Body["data"].(map[string]any)["ivrid"].(string)
	sess := map[string]any{"key": "abc", "ivrid": ivrid}
	app.ok("ivrapi_accept", sess)
	// A node started after api_start never saw it: it finds the session by
	// asking the others.
	late := ivrapiNode(t, r, "late", nil)
	app2 := dialWS(t, late.api, "", "app@late")
	app2.ok("ivrapi_reaccept", sess)
	app.event("notify:api_replaced", ivrid, 1)
	victim.Process.Kill()
	for _, c := range []*wsClient{app, app2} {
		stop := c.event("notify:api_stop", ivrid, 1)
		if d := stop.Body["data"].(map[string]any); d["reason"] != "node_died" {
			t.Fatalf("%s: api_stop: %s", c.name, stop.Raw)
		}
	}
	app2.code("ivrapi_component_apply", map[string]any{"key": "abc", "ivrid": ivrid, "data": map[string]any{"oType": 201}}, "not_found")
}
