package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// Hostile input to the ivrapi, each answered with its error code and
// nothing else disturbed: the connection that sent it keeps working, the
// other application keeps control of its call, and no URL fetch reaches an
// address it must not. Only loopback addresses are used, never one off the
// machine (the private and link-local ranges are checked by the address
// policy's unit tests, which open no connection).
func TestIVRAPIHostileInput(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7304", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	good := ivrapiToken(t, r, "app", "default", "ivrapi")
	other := ivrapiToken(t, r, "intruder", "default", "ivrapi")
	acme := ivrapiToken(t, r, "acme", "acme", "ivrapi")
	rest := ivrapiToken(t, r, "rest-only", "default", "rest")
	filesTok := ivrapiToken(t, r, "uploader", "default", "files")
	a := ivrapiNode(t, r, "a", nil)
	b := ivrapiNode(t, r, "b", nil)

	// Upgrades without a usable token.
	for _, tc := range []struct {
		name, token string
		want        int
	}{{"no token", "", 401}, {"wrong token", "not-a-token", 401}, {"other domain", acme, 403}, {"no ivrapi capability", rest, 403}} {
		_, resp, err := tryDialWS(a.api, tc.token)
		if err == nil || resp == nil || resp.StatusCode != tc.want {
			t.Errorf("%s: %v %v, want HTTP %d", tc.name, resp, err, tc.want)
		}
	}

	// Behind 127.0.0.2 (loopback, but outside --fetch-allow): a server that
	// must never be reached.
	forbidden := startCountingServer(t, "127.0.0.2:0")
	var sent atomic.Int64
	fs := startFileServer(t, map[string]http.HandlerFunc{
		"/tone.wav": serveBytes(toneFile(t, 1000, 200*time.Millisecond), "audio/wav"),
		"/text.wav": serveBytes([]byte(strings.Repeat("not audio at all\n", 100)), "audio/wav"),
		"/redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, forbidden.url+"/x.wav", http.StatusFound)
		},
		"/huge.wav": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "audio/wav")
			buf := make([]byte, 1<<20)
			for i := 0; i < 1024; i++ { // 1 GiB, if nobody stops reading
				if _, err := w.Write(buf); err != nil {
					return
				}
				sent.Add(int64(len(buf)))
			}
		},
	})

	owner := dialWS(t, a.api, good, "owner")
	owner.ok("subscribe", map[string]any{"class": "ivrevents"})
	evil := dialWS(t, b.api, other, "evil")
	phone := newTestPhone(t)
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"),
		Args: []string{"-m", "1", "-s", "7304", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: b.SIP.Addr("udp")})
	ivrid := owner.event("notify:api_start", "", 1).Body["data"].(map[string]any)["ivrid"].(string)
	sess := func(kv ...any) map[string]any {
		m := map[string]any{"key": "abc", "ivrid": ivrid}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	owner.ok("ivrapi_accept", sess())

	// Malformed frames: each gets its reply, the connection stays.
	for _, tc := range []struct{ frame, reply string }{
		{`not json`, "error"},
		{`{"qid":"m"}`, "error"},
		{`["ivrapi_accept"]`, "error"},
		{`[42,{"qid":"m"}]`, "error"},
		{`["ivrapi_accept",{"key":"abc","ivrid":"x"}]`, "ivrapi_accept_result"},
		{`["ivrapi_accept",{"qid":{"a":1},"key":"abc","ivrid":"x"}]`, "ivrapi_accept_result"},
		{`["ivrapi_accept",{"qid":"m","key":7,"ivrid":"x"}]`, "ivrapi_accept_result"},
		{`["ivrapi_fly",{"qid":"m"}]`, "ivrapi_fly_result"},
		{`["ivrapi_component_apply",{"qid":"m","key":"abc","ivrid":"x","data":"204"}]`, "ivrapi_component_apply_result"},
		{`["subscribe",{"qid":"m","class":"callevents"}]`, "subscribe_result"},
	} {
		before := len(evil.all())
		evil.send(tc.frame)
		f := evil.nth(5*time.Second, func(f wsFrame) bool { return true }, before+1)
		e, _ := f.Body["error"].(map[string]any)
		if f.Name != tc.reply || e["code"] != "bad_request" {
			t.Errorf("%s: got %s, want %s with bad_request", tc.frame, f.Raw, tc.reply)
		}
	}

	// Somebody else's session: every request is refused with its code.
	evil.code("ivrapi_accept", sess(), "owned")
	evil.code("ivrapi_component_apply", sess("data", map[string]any{"oType": 201}), "not_owner")
	evil.code("ivrapi_component_terminate", sess(), "not_owner")
	evil.code("ivrapi_abort", sess(), "not_owner")
	evil.code("ivrapi_file_get_path", sess("path", ":TEMP/x.wav"), "not_owner")
	evil.code("ivrapi_file_upload_temp", sess("url", fs.url+"/tone.wav"), "not_owner")
	evil.code("ivrapi_accept", map[string]any{"key": "abc", "ivrid": "no-such-session"}, "not_found")
	evil.code("ivrapi_accept", map[string]any{"key": "other", "ivrid": ivrid}, "not_found")

	// The owner's own bad requests.
	owner.code("ivrapi_component_apply", sess("data", map[string]any{"oType": 999}), "invalid_component")
	owner.code("ivrapi_component_apply", sess("data", map[string]any{"oType": 305, "key": "x"}), "invalid_component")
	owner.code("ivrapi_component_apply", sess("data", map[string]any{"oType": 204, "mode": 0}), "invalid_component")
	owner.code("ivrapi_component_terminate", sess(), "not_found")
	for _, tc := range []struct{ url, code string }{
		{forbidden.url + "/x.wav", "forbidden_url"},
		{"http://[::1]:" + forbidden.port + "/x.wav", "forbidden_url"},
		{fs.url + "/redirect", "forbidden_url"},
		{"file:///etc/passwd", "forbidden_url"},
		{"gopher://127.0.0.1:70/1", "forbidden_url"},
		{fs.url + "/missing.wav", "fetch_failed"},
		{fs.url + "/huge.wav", "too_large"},
		{fs.url + "/text.wav", "unsupported_media"},
	} {
		owner.code("ivrapi_file_upload_temp", sess("url", tc.url), tc.code)
	}
	if n := forbidden.hits.Load(); n != 0 {
		t.Fatalf("the forbidden server was reached %d times", n)
	}
	if got := sent.Load(); got > 64<<20 {
		t.Fatalf("the node read %d MiB of a 1 GiB download, over its 50 MiB limit", got>>20)
	}
	for _, dest := range []string{":GS_PUB/../../etc/", ":NOPE/a/", ":TEMP/x/"} {
		owner.code("ivrapi_file_upload_static", sess("url", fs.url+"/tone.wav", "destpath", dest), "bad_request")
	}
	owner.code("ivrapi_file_get_path", sess("path", ":TEMP/../../etc/passwd"), "bad_request")
	owner.code("ivrapi_file_get_path", sess("path", ":TEMP/nothing.wav"), "not_found")
	// Uploading to static storage needs the files capability.
	owner.code("file_upload_static", map[string]any{"url": fs.url + "/tone.wav", "destpath": ":GS_PUB/prompts/"}, "bad_request")

	// A frame of 10 MB closes only the connection that sent it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evil.ws.Write(ctx, websocket.MessageText, []byte(`["subscribe",{"qid":1,"class":"ivrevents","key":"`+strings.Repeat("x", 10<<20)+`"}]`))
	if code, reason := evil.closedWith(10 * time.Second); code != websocket.StatusMessageTooBig {
		t.Errorf("10 MB frame: closed with %d %q, want 1009", code, reason)
	}

	// The owner still controls its call: a prompt it uploads plays.
	p := owner.ok("ivrapi_file_upload_temp", sess("url", fs.url+"/tone.wav"))
	owner.ok("ivrapi_component_apply", sess("data", map[string]any{"oType": 204, "mode": 0, "file": p}))
	if st := owner.event("ivrapi_component_stopped", ivrid, 1); st.Body["transferKey"] != "transfer" {
		t.Fatalf("playback after the attacks: %s", st.Raw)
	}

	// A session-less static upload lands on every node.
	up := dialWS(t, b.api, filesTok, "uploader")
	if got := up.ok("file_upload_static", map[string]any{"url": fs.url + "/tone.wav", "destpath": ":GS_PUB/prompts/"}); got != ":GS_PUB/prompts/tone.wav" {
		t.Fatalf("file_upload_static: %v", got)
	}
	for _, n := range []*node{a, b} {
		abs, err := n.Files.Resolve("", ":GS_PUB/prompts/tone.wav")
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			t.Errorf("node %s: %v", n.Cfg.Host, err)
		}
	}
	// ... which the uploader cannot use to control sessions.
	up.code("ivrapi_accept", sess(), "bad_request")

	// Revoking the owner's token closes its connection; its session waits
	// out the grace as for any dropped owner.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	if err := store.NewWithClient(rdb, store.Config{}).RevokeToken(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	if code, reason := owner.closedWith(5 * time.Second); code != 4001 {
		t.Errorf("revoked token: closed with %d %q, want 4001", code, reason)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st, _ := homeSession(b, ivrid); !st.Grace {
			return fmt.Errorf("session after the revoke: %+v", st)
		}
		return nil
	})
	caller.Kill()
}

// countingServer answers every request 200 and counts them.
type countingServer struct {
	url, port string
	hits      atomic.Int64
}

func startCountingServer(t testing.TB, addr string) *countingServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingServer{url: "http://" + ln.Addr().String()}
	_, cs.port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cs.hits.Add(1) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return cs
}
