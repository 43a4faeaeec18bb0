package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/config"
	"redial/internal/media"
	"redial/internal/store"
	"redial/internal/testenv"
)

// extScript is an IVR whose first component hands the call to an
// application (key "abc", the seed's params), then marks that the script
// went on and hangs up.
const extScript = `{"start":1,"components":[
 {"oId":1,"oType":305,"name":"External management 3","key":"abc","params":"{\"asdf\":\"zxcv\"}","timeoutSec":30,"transfer":2},
 {"oId":2,"oType":304,"variables":{"after_control":"continued"},"transfer":3},
 {"oId":3,"oType":201}]}`

// ivrapiToken creates a token as `redial token create` does.
func ivrapiToken(t testing.TB, r *testenv.Redis, name, domain string, caps ...string) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	tok, _, err := store.NewWithClient(rdb, store.Config{}).CreateToken(context.Background(), name, caps, domain)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ivrapiNode starts a node whose URL fetches may reach 127.0.0.1 (the
// test's file server) and nothing else on loopback.
func ivrapiNode(t testing.TB, r *testenv.Redis, host string, adjust func(*config.Node), opts ...Option) *node {
	t.Helper()
	return startNodeCfg(t, r.URL, host, func(c *config.Node) {
		c.FetchAllow = []string{"127.0.0.1/32"}
		if adjust != nil {
			adjust(c)
		}
	}, opts...)
}

// toneFile writes a WAV of freq for d and returns its bytes.
func toneFile(t testing.TB, freq float64, d time.Duration) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tone.wav")
	writeToneWAV(t, p, freq, d)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serveBytes(b []byte, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Write(b)
	}
}

// answerRTP is redial's RTP address in the 200 OK a traced SIPp UAC got.
func answerRTP(t testing.TB, caller *testenv.Sipp) *net.UDPAddr {
	t.Helper()
	m := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(sippAnswerSDP(t, caller))
	if m == nil {
		t.Fatal("no m=audio in the answer")
	}
	port, _ := strconv.Atoi(m[1])
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
}

// listenPCMU collects the µ-law audio the node sends to phone until stop
// is closed.
func listenPCMU(phone *testPhone, stop <-chan struct{}) func() []int16 {
	var mu sync.Mutex
	var pcm []int16
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			select {
			case <-stop:
				return
			default:
			}
			phone.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := phone.conn.Read(buf)
			if err != nil || n <= 12 || buf[1]&0x7f != 0 {
				continue
			}
			mu.Lock()
			for _, b := range buf[12:n] {
				pcm = append(pcm, media.UlawToLinear(b))
			}
			mu.Unlock()
		}
	}()
	return func() []int16 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return pcm
	}
}

// An application connected to node A controls a call that node B runs:
// it learns of it by api_start with every field of the seed, accepts it,
// hears a key pressed while idle, uploads a WAV that the caller hears as
// that tone, collects digits (heard as component DTMF and returned as the
// seed's results), records, downloads the recording through a signed link
// that outlives the call by 5 minutes and no more, stops a playback early,
// and gives control back, after which the script goes on.
func TestIVRAPIControlsASessionOnAnotherNode(t *testing.T) {
	r := testenv.StartRedis(t)
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7300", `{"type":"ivr","script":"ext"}`)
	setScript(t, r, "ext", extScript)
	tone := toneFile(t, 1000, time.Second)
	long := toneFile(t, 1000, 20*time.Second)
	fs := startFileServer(t, map[string]http.HandlerFunc{
		"/prompts/tone.wav": serveBytes(tone, "audio/wav"),
		"/prompts/long.wav": serveBytes(long, "audio/wav"),
	})
	token := ivrapiToken(t, r, "app", "default", "ivrapi")
	a := ivrapiNode(t, r, "a", nil, WithClock(clock))
	b := ivrapiNode(t, r, "b", nil, WithClock(clock))

	app := dialWS(t, a.api, token, "app@a")
	if got := app.ok("subscribe", map[string]any{"class": "ivrevents"}); got != "ok" {
		t.Fatalf("subscribe: %v", got)
	}
	phone := newTestPhone(t)
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Trace: true,
		Args: []string{"-m", "1", "-s", "7300", "-key", "rtp_port", strconv.Itoa(phone.port()),
			"-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101"},
		Remote: b.SIP.Addr("udp")})

	start := app.event("notify:api_start", "", 1)
	data, _ := start.Body["data"].(map[string]any)
	ivrid, _ := data["ivrid"].(string)
	if start.Body["class"] != "ivrevents" || seqOf(start) != 1 || start.Body["eventts"] == nil {
		t.Errorf("api_start envelope: %s", start.Raw)
	}
	for _, f := range []string{"callid", "cid", "componentid", "componentname", "ivrid", "ivrts", "key", "params", "sm_id"} {
		if data[f] == nil || data[f] == "" {
			t.Errorf("api_start data lacks %s: %s", f, start.Raw)
		}
	}
	if data["key"] != "abc" || data["params"] != `{"asdf":"zxcv"}` || fmt.Sprint(data["componentid"]) != "1" ||
		data["componentname"] != "External management 3" || !strings.Contains(fmt.Sprint(data["callid"]), "@") {
		t.Errorf("api_start data: %s", start.Raw)
	}
	onB := false
	for _, s := range b.IVR.Sessions() {
		onB = onB || s.IVRID == ivrid
	}
	if !onB {
		t.Fatalf("session %s does not run on node b", ivrid)
	}
	sess := map[string]any{"key": "abc", "ivrid": ivrid}
	with := func(kv ...any) map[string]any {
		m := map[string]any{"key": "abc", "ivrid": ivrid}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	if res, _ := app.ok("ivrapi_accept", sess).(map[string]any); res["state"] != "idle" {
		t.Fatalf("accept: %v", res)
	}
	leg := answerRTP(t, caller)

	// A key pressed while nothing runs: idle DTMF.
	phone.press(t, leg, 0, 101, 5)
	idle := app.event("ivrapi_dtmf", ivrid, 1)
	if idle.Body["mode"] != "idle" || idle.Body["dtmf"] != "5" || idle.Body["key"] != "abc" || idle.Body["oId"] != nil {
		t.Errorf("idle dtmf: %s", idle.Raw)
	}

	// Upload a prompt into the session's :TEMP and play it: the caller
	// hears 1 kHz.
	path := app.ok("ivrapi_file_upload_temp", with("url", fs.url+"/prompts/tone.wav"))
	if path != ":TEMP/tone.wav" {
		t.Fatalf("upload_temp: %v", path)
	}
	stopListen := make(chan struct{})
	heard := listenPCMU(phone, stopListen)
	if res, _ := app.ok("ivrapi_component_apply", with("data", map[string]any{"oType": 204, "mode": 0, "file": path})).(map[string]any); fmt.Sprint(res["oId"]) != "0" {
		t.Fatalf("apply playback: %v", res)
	}
	played := app.event("ivrapi_component_stopped", ivrid, 1)
	close(stopListen)
	if played.Body["transferKey"] != "transfer" || fmt.Sprint(played.Body["oId"]) != "0" {
		t.Errorf("playback stopped: %s", played.Raw)
	}
	pcm := heard()
	if got := time.Duration(len(pcm)) * time.Second / 8000; got < 900*time.Millisecond {
		t.Fatalf("heard %v of audio, want the 1 s prompt", got)
	}
	if share := media.Goertzel(pcm, 1000, 8000) / media.MeanPower(pcm); share < 0.8 {
		t.Fatalf("1 kHz holds %.2f of what the caller heard, want >= 0.8", share)
	}

	// Collect two digits: component DTMF, then the seed's stopped event.
	app.ok("ivrapi_component_apply", with("data", map[string]any{"oType": 302, "maxSymbolCount": 2, "timeoutSec": 10, "interDigitSec": 5}))
	phone.press(t, leg, 0, 101, 7)
	phone.press(t, leg, 0, 101, 8)
	for i, want := range []string{"7", "8"} {
		d := app.event("ivrapi_dtmf", ivrid, 2+i)
		if d.Body["mode"] != "component" || d.Body["dtmf"] != want || fmt.Sprint(d.Body["oId"]) != "0" {
			t.Errorf("component dtmf %d: %s", i, d.Raw)
		}
	}
	collected := app.event("ivrapi_component_stopped", ivrid, 2)
	results, _ := collected.Body["results"].(map[string]any)
	if collected.Body["transferKey"] != "transfer" || results["dtmfBuffer"] != "78" {
		t.Errorf("collect stopped: %s", collected.Raw)
	}

	// Record 2 s (the seed's string-typed properties) while the phone
	// talks, then download it through the signed link.
	stopTalking := startTalking(t, phone, leg)
	app.ok("ivrapi_component_apply", with("data", map[string]any{"oType": 208, "recTimeSec": "2", "maxSymbolCount": "3",
		"interruptSymbols": "4, 5, 6", "abortOnSilence": 0}))
	recorded := app.event("ivrapi_component_stopped", ivrid, 3)
	stopTalking()
	results, _ = recorded.Body["results"].(map[string]any)
	recFile, _ := results["recordFile"].(string)
	if !strings.HasPrefix(recFile, ":TEMP/ivr_records/") || recorded.Body["transferKey"] != "transfer" {
		t.Fatalf("record stopped: %s", recorded.Raw)
	}
	link, _ := app.ok("ivrapi_file_get_path", with("path", recFile)).(string)
	if !strings.HasPrefix(link, b.PublicURL()+"/files/") {
		t.Fatalf("link %q is not under node b's public URL %s", link, b.PublicURL())
	}
	if d := wavSeconds(t, httpGet(t, link, http.StatusOK)); d < 1.9 || d > 2.1 {
		t.Fatalf("recording lasts %.3f s, want 2", d)
	}

	// A long playback is stopped early: its stopped event comes before
	// the terminate's result, and a second apply meanwhile is busy.
	lp := app.ok("ivrapi_file_upload_temp", with("url", fs.url+"/prompts/long.wav"))
	app.ok("ivrapi_component_apply", with("data", map[string]any{"oType": 204, "mode": 0, "file": lp}))
	app.code("ivrapi_component_apply", with("data", map[string]any{"oType": 201}), "busy")
	began := time.Now()
	if res, _ := app.ok("ivrapi_component_terminate", sess).(map[string]any); fmt.Sprint(res["oId"]) != "0" {
		t.Fatalf("terminate: %v", res)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("terminate took %v of a 20 s prompt", took)
	}
	app.event("ivrapi_component_stopped", ivrid, 4)
	if raw := app.dump(); strings.Index(raw, `"ivrapi_component_terminate_result"`) < strings.LastIndex(raw, `"ivrapi_component_stopped"`) {
		t.Fatalf("terminate answered before the component stopped:\n%s", raw)
	}

	// Control goes back: api_stop, and the script goes on to its next
	// component (a CDR variable says so) and hangs up.
	if got := app.ok("ivrapi_abort", sess); got != "ok" {
		t.Fatalf("abort: %v", got)
	}
	app.event("notify:api_stop", ivrid, 1)
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
	if vars, _ := cdr["variables"].(map[string]any); vars["after_control"] != "continued" {
		t.Errorf("the script did not go on after abort: %v", cdr)
	}

	// Every event of the session reached the owner once, numbered from 1
	// without a gap.
	var seqs []int64
	for _, f := range app.all() {
		if eventIs(f, "notify:api_start", ivrid) || eventIs(f, "notify:api_stop", ivrid) || eventIs(f, "ivrapi_dtmf", ivrid) || eventIs(f, "ivrapi_component_stopped", ivrid) {
			seqs = append(seqs, seqOf(f))
		}
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("event seqs %v, want 1..%d", seqs, len(seqs))
		}
	}

	// The call is over and its :TEMP dir gone, yet the link works; a
	// tampered link does not; 5 minutes later neither does the link.
	httpGet(t, link, http.StatusOK)
	i := strings.LastIndex(link, "/") + 3
	swap := byte('A')
	if link[i] == 'A' {
		swap = 'B'
	}
	tampered := link[:i] + string(swap) + link[i+1:]
	if code := httpStatus(t, tampered); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Errorf("tampered link: %d", code)
	}
	skew.Store(int64(5*time.Minute + time.Second))
	httpGet(t, link, http.StatusGone)
}

// startTalking makes phone send a 1 kHz tone to leg in real time (one
// packet per 20 ms) until the returned function is called.
func startTalking(t testing.TB, phone *testPhone, leg *net.UDPAddr) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 160)
		for i := range payload {
			payload[i] = media.LinearToUlaw(int16(8000 * sinAt(1000, i)))
		}
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				phone.send(t, leg, 0, false, phoneAudioSSRC, phone.ts, payload)
				phone.ts += 160
			}
		}
	}()
	return func() { close(quit); <-done }
}

// sinAt is sin(2*pi*freq*i/8000).
func sinAt(freq float64, i int) float64 {
	return math.Sin(2 * math.Pi * freq * float64(i) / 8000)
}

func httpStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpGet(t testing.TB, url string, want int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, want)
	}
	return b
}

// wavSeconds is the length of a PCM WAV's data chunk in seconds.
func wavSeconds(t testing.TB, b []byte) float64 {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("not a WAV (%d bytes)", len(b))
	}
	var rate, align uint32
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), binary.LittleEndian.Uint32(b[off+4:])
		body := off + 8
		switch id {
		case "fmt ":
			rate = binary.LittleEndian.Uint32(b[body+4:])
			align = uint32(binary.LittleEndian.Uint16(b[body+12:]))
		case "data":
			if rate == 0 || align == 0 {
				t.Fatal("WAV data before fmt")
			}
			return float64(size) / float64(rate*align)
		}
		off = body + int(size) + int(size&1)
	}
	t.Fatal("WAV without data chunk")
	return 0
}
