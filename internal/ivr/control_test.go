package ivr

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/testenv"
)

// events collects what a subscriber gets.
type events struct {
	mu   sync.Mutex
	list []Event
}

func subscribe(t *testing.T, v *env) *events {
	ev := &events{}
	cancel := v.eng.Subscribe(func(e Event) {
		ev.mu.Lock()
		ev.list = append(ev.list, e)
		ev.mu.Unlock()
	})
	t.Cleanup(cancel)
	return ev
}

// wait returns the first event matching name and type (the ivrevents type
// for "notify", "" otherwise) after skipping skip of them.
func (ev *events) wait(t *testing.T, name, typ string, skip int) Event {
	t.Helper()
	var got Event
	testenv.WaitFor(t, 5*time.Second, func() error {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		n := 0
		for _, e := range ev.list {
			if e.Name == name && (typ == "" || e.Body["type"] == typ) {
				if n == skip {
					got = e
					return nil
				}
				n++
			}
		}
		return fmt.Errorf("no %s %s event #%d among %d", name, typ, skip, len(ev.list))
	})
	return got
}

const controlScript = `{"start":14,"components":[
	{"oId":14,"oType":305,"name":"External management 3","key":"abc","params":"{\"asdf\":\"zxcv\"}","timeoutSec":"%s",
	 "transfer":20,"transfers":{"timeout":30}},
	{"oId":20,"oType":304,"variables":{"after":"script"}},
	{"oId":30,"oType":304,"variables":{"after":"timeout"}}]}`

// startControlled runs the control script in the background and returns
// the api_start event and the channel delivering the result.
func startControlled(t *testing.T, v *env, ev *events, timeoutSec string) (*testChannel, *caller, Event, <-chan Result) {
	t.Helper()
	v.setScript("ctl", fmt.Sprintf(controlScript, timeoutSec))
	ch, c := v.newCall(t, map[string]string{"sip_call_id": "rB2-002-SuDtIE@192.168.0.149"})
	done := make(chan Result, 1)
	go func() { done <- v.eng.Run(t.Context(), ch, "ctl") }()
	start := ev.wait(t, EventNotify, "api_start", 0)
	return ch, c, start, done
}

func waitResult(t *testing.T, done <-chan Result) Result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
		return Result{}
	}
}

func TestExternalControlAPIStartEventShape(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ev := subscribe(t, v)
	before := time.Now().UnixMilli()
	ch, _, start, done := startControlled(t, v, ev, "30")

	// The body must marshal to exactly the seed's JSON object.
	b, _ := json.Marshal(start.Body)
	var body map[string]any
	json.Unmarshal(b, &body)
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	if got := keys(body); !reflect.DeepEqual(got, []string{"class", "data", "eventts", "type"}) {
		t.Fatalf("body keys %v", got)
	}
	data := body["data"].(map[string]any)
	if got := keys(data); !reflect.DeepEqual(got, []string{"callid", "cid", "componentid", "componentname",
		"ivrid", "ivrts", "key", "params", "sm_id"}) {
		t.Fatalf("data keys %v", got)
	}
	ts, _ := body["eventts"].(float64)
	ivrts, _ := data["ivrts"].(float64)
	if body["class"] != "ivrevents" || body["type"] != "api_start" || int64(ts) < before || int64(ivrts) < before || ivrts > ts {
		t.Fatalf("body %s", b)
	}
	sess := v.eng.Sessions()
	if len(sess) != 1 || data["ivrid"] != sess[0].IVRID || start.IVRID != sess[0].IVRID || start.Key != "abc" || start.Owner != "" {
		t.Fatalf("event %+v for sessions %+v", start, sess)
	}
	if data["callid"] != "rB2-002-SuDtIE@192.168.0.149" || data["cid"] != ch.CallRef() || data["componentid"] != 14.0 ||
		data["componentname"] != "External management 3" || data["key"] != "abc" || data["params"] != `{"asdf":"zxcv"}` {
		t.Fatalf("data %s", b)
	}
	if s, _ := data["sm_id"].(string); len(s) != 36 {
		t.Fatalf("sm_id %q", data["sm_id"])
	}
	if sess[0].ControlKey != "abc" || sess[0].Owner != "" || sess[0].OType != TypeExtControl {
		t.Fatalf("SessionInfo %+v", sess[0])
	}
	ch.callerHangup()
	waitResult(t, done)
	if stop := ev.wait(t, EventNotify, "api_stop", 0); stop.IVRID != start.IVRID {
		t.Fatalf("api_stop %+v", stop)
	}
}

func TestExternalControlAcceptApplyAbort(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	writeWAV(t, v.storeFile(":GS_PUB/x/y/14.wav"), 8000, tone(1000, 8000, 600*time.Millisecond))
	ev := subscribe(t, v)
	_, c, start, done := startControlled(t, v, ev, "30")
	id := start.IVRID
	playback := json.RawMessage(`{"oType":204,"mode":0,"file":":GS_PUB/x/y/14.wav"}`)

	if _, err := v.eng.Apply("abc", id, "ws1", playback); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Apply before Accept: %v", err)
	}
	if err := v.eng.Accept("wrong", id, "ws1", false); !errors.Is(err, ErrNotControlled) {
		t.Fatalf("Accept with a wrong key: %v", err)
	}
	if err := v.eng.Accept("abc", "nope", "ws1", false); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Accept of an unknown session: %v", err)
	}
	if err := v.eng.Accept("abc", id, "ws1", false); err != nil {
		t.Fatal(err)
	}
	if err := v.eng.Accept("abc", id, "ws2", false); !errors.Is(err, ErrOwned) {
		t.Fatalf("second Accept: %v, want ErrOwned", err)
	}
	if err := v.eng.Accept("abc", id, "ws1", false); err != nil {
		t.Fatalf("Accept again by the owner: %v", err)
	}

	oid, err := v.eng.Apply("abc", id, "ws1", playback)
	if err != nil || oid != 0 {
		t.Fatalf("Apply = %d, %v", oid, err)
	}
	if _, err := v.eng.Apply("abc", id, "ws1", json.RawMessage(`{"oType":201}`)); !errors.Is(err, ErrBusy) {
		t.Fatalf("Apply while a component runs: %v, want ErrBusy", err)
	}
	c.waitAudio(800)
	c.press("5")
	dtmf := ev.wait(t, EventDTMF, "", 0)
	if want := map[string]any{"key": "abc", "ivrid": id, "mode": "component", "oId": 0, "dtmf": "5"}; !reflect.DeepEqual(dtmf.Body, want) || dtmf.Owner != "ws1" {
		t.Fatalf("ivrapi_dtmf %+v, want body %v", dtmf, want)
	}
	stopped := ev.wait(t, EventComponentStopped, "", 0)
	want := map[string]any{"key": "abc", "ivrid": id, "oId": 0, "transferKey": "transfer", "results": map[string]any{"dtmfBuffer": "5"}}
	if !reflect.DeepEqual(stopped.Body, want) || stopped.Owner != "ws1" || stopped.IVRID != id {
		t.Fatalf("component_stopped %+v, want body %v", stopped, want)
	}
	if n := c.received(); abs(n-4800) > 800 {
		t.Fatalf("caller heard %d samples of the applied playback, want 4800", n)
	}
	if share := toneShare(c.samples(), 1000); share < 0.9 {
		t.Fatalf("applied playback: 1 kHz holds %.2f of the power", share)
	}

	// Idle digits go to the owner, not to a later component.
	c.press("8")
	idle := ev.wait(t, EventDTMF, "", 1)
	if want := map[string]any{"key": "abc", "ivrid": id, "mode": "idle", "dtmf": "8"}; !reflect.DeepEqual(idle.Body, want) {
		t.Fatalf("idle ivrapi_dtmf %v", idle.Body)
	}

	// A bad component is refused with the field named; control stays.
	if _, err := v.eng.Apply("abc", id, "ws1", json.RawMessage(`{"oType":204,"mode":0}`)); err == nil ||
		!strings.Contains(err.Error(), "file: required") {
		t.Fatalf("Apply without file: %v", err)
	}
	if _, err := v.eng.Apply("abc", id, "ws1", json.RawMessage(`{"oType":305,"key":"x"}`)); err == nil {
		t.Fatal("external control applied inside external control")
	}
	oid, err = v.eng.Apply("abc", id, "ws1", json.RawMessage(`{"oType":304,"oId":7,"variables":{"set":"by owner"}}`))
	if err != nil || oid != 7 {
		t.Fatalf("Apply set variables = %d, %v", oid, err)
	}
	if s := ev.wait(t, EventComponentStopped, "", 1); s.Body["oId"] != 7 {
		t.Fatalf("second component_stopped %v", s.Body)
	}

	if err := v.eng.Abort("abc", id, "ws2"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Abort by a stranger: %v", err)
	}
	if err := v.eng.Abort("abc", id, "ws1"); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, done)
	if res.Variables["after"] != "script" || res.Variables["set"] != "by owner" || res.Variables["dtmfBuffer"] != "5" {
		t.Fatalf("after Abort: %v", res.Variables)
	}
	if stop := ev.wait(t, EventNotify, "api_stop", 0); stop.Owner != "ws1" {
		t.Fatalf("api_stop %+v", stop)
	}
	if _, err := v.eng.Apply("abc", id, "ws1", playback); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Apply after the session: %v", err)
	}
}

func TestExternalControlReacceptTerminateOwnerGone(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	writeWAV(t, v.storeFile(":GS_PUB/long.wav"), 8000, tone(1000, 8000, 20*time.Second))
	ev := subscribe(t, v)
	_, c, start, done := startControlled(t, v, ev, "30")
	id := start.IVRID
	if err := v.eng.Accept("abc", id, "ws1", false); err != nil {
		t.Fatal(err)
	}
	if err := v.eng.Accept("abc", id, "ws2", true); err != nil {
		t.Fatalf("Reaccept: %v", err)
	}
	if _, err := v.eng.Apply("abc", id, "ws1", json.RawMessage(`{"oType":201}`)); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Apply by the old owner: %v", err)
	}
	if err := v.eng.Terminate("abc", id, "ws2"); !errors.Is(err, ErrIdle) {
		t.Fatalf("Terminate with nothing running: %v", err)
	}
	if _, err := v.eng.Apply("abc", id, "ws2", json.RawMessage(`{"oType":204,"oId":3,"file":":GS_PUB/long.wav"}`)); err != nil {
		t.Fatal(err)
	}
	c.waitAudio(1600)
	began := time.Now()
	if err := v.eng.Terminate("abc", id, "ws2"); err != nil {
		t.Fatal(err)
	}
	// Terminate returns after the stop event, so the next Apply is welcome.
	if s := ev.wait(t, EventComponentStopped, "", 0); s.Body["oId"] != 3 || time.Since(began) > time.Second {
		t.Fatalf("component_stopped %v after %v", s.Body, time.Since(began))
	}
	if _, err := v.eng.Apply("abc", id, "ws2", json.RawMessage(`{"oType":304,"variables":{"x":"1"}}`)); err != nil {
		t.Fatalf("Apply after Terminate: %v", err)
	}
	ev.wait(t, EventComponentStopped, "", 1)
	v.eng.OwnerGone("ws1") // not the owner any more: no effect
	if v.eng.Sessions()[0].Owner != "ws2" {
		t.Fatal("OwnerGone of the old owner released control")
	}
	v.eng.OwnerGone("ws2")
	if res := waitResult(t, done); res.Variables["after"] != "script" || res.Variables["x"] != "1" {
		t.Fatalf("after OwnerGone: %v", res.Variables)
	}
}

func TestExternalControlTimesOutWithoutOwner(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ev := subscribe(t, v)
	_, _, start, done := startControlled(t, v, ev, "0.3")
	res := waitResult(t, done)
	if res.Variables["after"] != "timeout" {
		t.Fatalf("vars %v", res.Variables)
	}
	if stop := ev.wait(t, EventNotify, "api_stop", 0); stop.IVRID != start.IVRID || stop.Owner != "" {
		t.Fatalf("api_stop %+v", stop)
	}
	if err := v.eng.Accept("abc", start.IVRID, "late", false); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Accept after the timeout: %v", err)
	}
}

func TestExternalControlAppliedHangupEndsSession(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ev := subscribe(t, v)
	ch, _, start, done := startControlled(t, v, ev, "30")
	if err := v.eng.Accept("abc", start.IVRID, "ws1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := v.eng.Apply("abc", start.IVRID, "ws1", json.RawMessage(`{"oType":201}`)); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, done)
	if res.Ended != EndedHangup || ch.hangups.Load() != 1 || res.Variables["after"] != "" {
		t.Fatalf("Ended %q hangups %d vars %v", res.Ended, ch.hangups.Load(), res.Variables)
	}
	ev.wait(t, EventComponentStopped, "", 0)
	ev.wait(t, EventNotify, "api_stop", 0)
}
