package app

import (
	"context"
	"encoding/json"
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
	"redial/internal/store"
	"redial/internal/testenv"
)

// dashRow evaluates, in the page, a field of the row with data-key key in
// section id: "state" is the row's data-state, anything else the text of
// the first element of that class in the row ("" when absent).
func dashRow(t *testing.T, br *testenv.Browser, section, key, what string) string {
	t.Helper()
	var expr string
	if what == "state" {
		expr = fmt.Sprintf(`(() => { const r = document.querySelector(%q + ' [data-key="' + %q + '"]'); return r ? (r.dataset.state || '') : '' })()`,
			"#"+section, key)
	} else {
		expr = fmt.Sprintf(`(() => { const r = document.querySelector(%q + ' [data-key="' + %q + '"]'); if (!r) return ''; const e = r.querySelector('.' + %q); return e ? e.textContent.trim() : '' })()`,
			"#"+section, key, what)
	}
	var s string
	if err := br.Eval(expr, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// firstInt is the first whole number in s, -1 without one.
func firstInt(s string) int {
	start := strings.IndexAny(s, "0123456789")
	if start < 0 {
		return -1
	}
	end := start
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[start:end])
	return n
}

// countInvites counts the INVITEs a SIPp UAS received, from its message
// trace.
func countInvites(t *testing.T, s *testenv.Sipp) int {
	t.Helper()
	return strings.Count(readSippMessages(t, s), "\nINVITE sip:")
}

// runCLI runs the redial binary as an operator would and returns what it
// printed on stdout.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(redialBinary(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("redial %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// The dashboard, in chromium, on a node whose --http is not loopback (so
// tokens are required) in a cluster of two: a campaign started from the
// CLI appears and moves, disabling it on the page stops INVITEs at the
// SIPp carrier, a malformed line shows its field, and the hang-up button
// ends a SIPp call that runs on the other node. Nothing leaves the
// machine and the console stays clean.
func TestDashboardBrowser(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()

	// The campaign's carrier answers and hangs up 1.5 s later; the
	// answered calls go to a parked destination that waits for BYE.
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"),
		Args: []string{"-d", "1500", "-trace_msg"}})
	park := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml")})
	// The call the page hangs up: answered, then held until a BYE.
	held := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setLine(t, r, "lhold", "gh", "sip:"+held.Addr, "")
	if err := r.Client.HSet(ctx, "cti_line@default", "lbad",
		`{"params":{"group":"gx","uri":"sip:127.0.0.1:5","limit":"ten"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	setDialplan(t, r, "default:park", fmt.Sprintf(`{"type":"sip","uri":"sip:park@%s"}`, park.Addr))

	// Node A serves the page on a wildcard address: tokens required.
	a := startNodeCfg(t, r.URL, "dash-a", func(c *config.Node) { c.HTTP = "0.0.0.0:0" })
	b := startNode(t, r.URL, "dash-b")
	_, port, _ := strings.Cut(strings.TrimPrefix(a.api, "http://"), "]:")
	if port == "" {
		port = a.api[strings.LastIndex(a.api, ":")+1:]
	}
	page := "http://127.0.0.1:" + port

	// No token at all on a non-loopback listener: 401, for the page and
	// its stream.
	for _, path := range []string{"/", "/api/v1/dashboard/stream"} {
		resp, err := http.Get(page + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s without a token: %d, want 401", path, resp.StatusCode)
		}
	}
	token := strings.TrimSpace(runCLI(t, "token", "create", "wall", "--capability", "dashboard", "--redis", r.URL))

	br := testenv.StartBrowser(t, testenv.BrowserOptions{})
	br.Goto(page + "/?token=" + token)
	pageState(t, br, `(document.getElementById("conn") || {}).textContent || ""`,
		func(s string) bool { return strings.Contains(s, "live") }, 20*time.Second)
	var href string
	if err := br.Eval(`location.href`, &href); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(href, token) {
		t.Fatalf("the token stayed in the address bar: %s", href)
	}

	// Both nodes show up, alive, with their version.
	for _, host := range []string{"dash-a", "dash-b"} {
		pageState(t, br, fmt.Sprintf(`String(!!document.querySelector('#nodes [data-key="%s"]'))`, host),
			func(s string) bool { return s == "true" }, 15*time.Second)
	}
	// The malformed line shows the field that is wrong.
	testenv.WaitFor(t, 15*time.Second, func() error {
		if e := dashRow(t, br, "lines", "lbad", "error"); !strings.Contains(e, "params.limit") {
			return fmt.Errorf("line lbad error cell %q, want it to name params.limit", e)
		}
		return nil
	})

	// A queue slots into its panel, with its agent logged out.
	if err := a.Store.SetUser(ctx, "3001", `{"params":{"password":"pw3001","name":"agent 3001","enable":true}}`); err != nil {
		t.Fatal(err)
	}
	setQueue(t, a, "support", `{"params":{"agents":["3001"],"join_empty":true}}`)
	pageState(t, br, `(() => { const q = document.querySelector('#queues [data-key="support"]'); return q ? q.textContent : '' })()`,
		func(s string) bool { return strings.Contains(s, "logged") }, 15*time.Second)

	// A campaign started from the CLI appears and moves.
	dir := t.TempDir()
	task := filepath.Join(dir, "task.json")
	os.WriteFile(task, []byte(`{"params":{"enable":true,"line_group":["g1"],"limit":2,"number_queue":"dq","destination_extension":"park"}}`), 0o644)
	var nums strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&nums, "1555300%04d\n", i)
	}
	numbers := filepath.Join(dir, "numbers.txt")
	os.WriteFile(numbers, []byte(nums.String()), 0o644)
	runCLI(t, "numbers", "push", "dq", numbers, "--redis", r.URL)
	runCLI(t, "task", "set", "camp", "--file", task, "--redis", r.URL)
	first := -1
	testenv.WaitFor(t, 20*time.Second, func() error {
		done := firstInt(dashRow(t, br, "campaigns", "camp", "progress-done"))
		if done <= 0 {
			return fmt.Errorf("campaign camp: progress %d", done)
		}
		if first < 0 {
			first = done
		}
		if done <= first {
			return fmt.Errorf("campaign camp: progress still %d", done)
		}
		return nil
	})

	// The hang-up button ends a call that runs on the other node.
	restToken := strings.TrimSpace(runCLI(t, "token", "create", "crm", "--capability", "rest", "--redis", r.URL))
	originateOnB := func(number, group string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"number": number, "line_group": []string{group},
			"destination": map[string]any{"extension": "park"}})
		var ref string
		testenv.WaitFor(t, 5*time.Second, func() error {
			req, _ := http.NewRequest("POST", b.api+"/api/v1/calls", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+restToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var m map[string]any
			json.NewDecoder(resp.Body).Decode(&m)
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("originate on node B: %d %v", resp.StatusCode, m)
			}
			ref, _ = m["call_ref"].(string)
			return nil
		})
		return ref
	}
	ref := originateOnB("15553999999", "gh")
	pageState(t, br, fmt.Sprintf(`(() => { const r = document.querySelector('#calls [data-key="%s"]'); return r ? r.textContent : '' })()`, ref),
		func(s string) bool { return strings.Contains(s, "dash-b") }, 15*time.Second)
	pageEval(t, br, fmt.Sprintf(`document.querySelector('#calls [data-key="%s"] button.hangup').click()`, ref))
	waitSipp(t, held, 15*time.Second)

	// An IVR session shows with its script: node B calls its own IVR
	// number through a line to itself.
	setScript(t, r, "menu", `{"start":1,"components":[{"oId":1,"oType":303,"timeSec":60,"transfer":2},{"oId":2,"oType":201}]}`)
	setDialplan(t, r, "public:7800", `{"type":"ivr","script":"menu"}`)
	setLine(t, r, "self", "gself", "sip:"+b.SIP.Addr("udp"), "")
	if err := b.Lines.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	originateOnB("7800", "gself")
	pageState(t, br, `Array.from(document.querySelectorAll('#ivr tbody tr')).map(r => r.textContent).join('|')`,
		func(s string) bool { return strings.Contains(s, "menu") && strings.Contains(s, "dash-b") }, 15*time.Second)

	// Disabling on the page stops new INVITEs at the carrier.
	pageEval(t, br, `document.querySelector('#campaigns [data-key="camp"] button.disable').click()`)
	testenv.WaitFor(t, 15*time.Second, func() error {
		v, err := r.Client.HGet(ctx, "cti_queue_dialer_task@template", "camp").Result()
		if err != nil || !strings.Contains(strings.ReplaceAll(v, " ", ""), `"enable":false`) {
			return fmt.Errorf("task camp in Redis: %q %v", v, err)
		}
		if st := dashRow(t, br, "campaigns", "camp", "state"); st == "dialing" {
			return fmt.Errorf("campaign camp still dialing")
		}
		if n := firstInt(dashRow(t, br, "campaigns", "camp", "inflight")); n != 0 {
			return fmt.Errorf("campaign camp: %d in flight", n)
		}
		return nil
	})
	invites := countInvites(t, carrier)
	queued, _ := r.Client.LLen(ctx, "dq").Result()
	if queued == 0 {
		t.Fatalf("the campaign finished before it was disabled; nothing to prove")
	}
	// Three more states reach the page (three seconds of dialer loops)
	// without a new INVITE.
	var since string
	br.Eval(`window.dashboard.state.time`, &since)
	for i := 0; i < 3; i++ {
		prev := since
		since = pageState(t, br, `window.dashboard.state.time`, func(s string) bool { return s != prev }, 5*time.Second)
	}
	if n := countInvites(t, carrier); n != invites {
		t.Fatalf("INVITEs at the carrier went from %d to %d after the page disabled the campaign", invites, n)
	}
	if n, _ := r.Client.LLen(ctx, "dq").Result(); n != queued {
		t.Fatalf("queue dq went from %d to %d numbers after the campaign was disabled", queued, n)
	}

	// The latest CDRs came live, and the filter finds a number.
	pageState(t, br, `String(document.querySelectorAll('#cdrs [data-key]').length)`,
		func(s string) bool { n, _ := strconv.Atoi(s); return n > 0 }, 10*time.Second)
	// Filtering by a number shows that number's CDRs and no other.
	pageEval(t, br, `(() => { const i = document.getElementById('filter-number'); i.value = '15553000007';
		i.dispatchEvent(new Event('input', {bubbles: true})) })()`)
	pageState(t, br, `Array.from(document.querySelectorAll('#cdrs tbody tr[data-key] .number')).map(e => e.textContent).join(',')`,
		func(s string) bool { return s == "15553000007" }, 10*time.Second)

	dirShots := screenshotDir(t)
	br.Screenshot(filepath.Join(dirShots, "dashboard-1280x800.png"), 1280, 800)
	br.Screenshot(filepath.Join(dirShots, "dashboard-390x844.png"), 390, 844)
	if errs := br.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
	if off := br.Offsite(); len(off) > 0 {
		t.Errorf("requests that would have left the machine: %v", off)
	}
}

// The dashboard's API with a token: the session a ?token= link opens,
// CSRF on changes, and the campaign change going through the task check
// (a refused value names its field and is not written).
func TestDashboardAPI(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	a := startNodeCfg(t, r.URL, "api-a", func(c *config.Node) { c.HTTP = "0.0.0.0:0" })
	port := a.api[strings.LastIndex(a.api, ":")+1:]
	base := "http://127.0.0.1:" + port
	st, err := store.New(store.Config{URL: r.URL, Domain: "default", Host: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dash, _, err := st.CreateToken(ctx, "wall", []string{store.CapabilityDashboard}, "default")
	if err != nil {
		t.Fatal(err)
	}
	rest, _, err := st.CreateToken(ctx, "rest", []string{store.CapabilityRest}, "default")
	if err != nil {
		t.Fatal(err)
	}
	setTask(t, r, "cti_queue_dialer_task@template", "c1",
		`{"params":{"enable":true,"line_group":["g1"],"limit":5,"number_queue":"q1","destination_extension":"8888"},"variables":{"x":"1"}}`, "")

	do := func(method, path, bearer string, body string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if resp, _ := do("GET", "/api/v1/dashboard/session", dash, "", nil); resp.StatusCode != 200 {
			return fmt.Errorf("session: %d", resp.StatusCode)
		}
		return nil
	})
	if resp, _ := do("GET", "/api/v1/dashboard/session", rest, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a rest-only token on the dashboard: %d, want 403", resp.StatusCode)
	}
	// The ?token= link opens a session and leaves the address.
	resp, _ := do("GET", "/?token="+dash, "", "", nil)
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), dash) {
		t.Fatalf("login: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "redial_session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("login set no session cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	_, sess := do("GET", "/api/v1/dashboard/session", "", "", map[string]string{"Cookie": cookie})
	csrf, _ := sess["csrf"].(string)
	if csrf == "" || sess["self"] != "api-a" {
		t.Fatalf("session: %v", sess)
	}
	path := "/api/v1/dashboard/campaigns/c1"
	if resp, _ := do("POST", path, "", `{"enable":false}`, map[string]string{"Cookie": cookie}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a change without the CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, m := do("POST", path, "", `{"limit":"ten"}`, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}); resp.StatusCode != 400 ||
		!strings.Contains(fmt.Sprint(m["error"]), "limit") {
		t.Fatalf("limit ten: %d %v", resp.StatusCode, m)
	}
	if resp, m := do("POST", path, "", `{"limit":3,"colour":"red"}`, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}); resp.StatusCode != 400 ||
		!strings.Contains(fmt.Sprint(m["error"]), "colour") {
		t.Fatalf("an unknown field: %d %v", resp.StatusCode, m)
	}
	if resp, _ := do("POST", "/api/v1/dashboard/campaigns/nope", "", `{"enable":false}`, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}); resp.StatusCode != 404 {
		t.Fatalf("an unknown campaign: %d, want 404", resp.StatusCode)
	}
	// A change the task check refuses is not written: params.limit 0 is
	// allowed (it pauses), a task whose start_time is broken is not.
	setTask(t, r, "cti_queue_dialer_task@template", "broken", `{"params":{"enable":true,"line_group":["g1"],"start_time":"someday","limit":5,"number_queue":"q2","destination_extension":"8888"}}`, "")
	if resp, m := do("POST", "/api/v1/dashboard/campaigns/broken", "", `{"limit":1}`, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}); resp.StatusCode != 400 ||
		!strings.Contains(fmt.Sprint(m["error"]), "start_time") {
		t.Fatalf("a broken task: %d %v", resp.StatusCode, m)
	}
	if v, _ := r.Client.HGet(ctx, "cti_queue_dialer_task@template", "broken").Result(); !strings.Contains(v, `"limit":5`) {
		t.Fatalf("a refused change was written: %s", v)
	}
	if resp, m := do("POST", path, "", `{"enable":false,"limit":3}`, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf}); resp.StatusCode != 200 {
		t.Fatalf("disable c1: %d %v", resp.StatusCode, m)
	}
	v, _ := r.Client.HGet(ctx, "cti_queue_dialer_task@template", "c1").Result()
	var doc struct {
		Params    map[string]any    `json:"params"`
		Variables map[string]string `json:"variables"`
	}
	json.Unmarshal([]byte(v), &doc)
	if doc.Params["enable"] != false || doc.Params["limit"] != float64(3) || doc.Params["number_queue"] != "q1" || doc.Variables["x"] != "1" {
		t.Fatalf("task c1 after the change: %s", v)
	}
	// The node applied it (the change notice went out).
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, s := range a.Dialer.Statuses(ctx) {
			if s.Name == "c1" && !s.Enable && s.Limit == 3 {
				return nil
			}
		}
		return fmt.Errorf("the dialer has not applied the change: %v", a.Dialer.Statuses(ctx))
	})
}
