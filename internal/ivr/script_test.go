package ivr

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

func TestMalformedScriptsNameTheFieldAndFailOnlyThemselves(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("good", `{"start":1,"extra":{"kept":true},"components":[
		{"oId":1,"oType":304,"name":"vars","variables":{"ok":"yes"},"transfer":"2","ui":{"x":10}},
		{"oId":"2","oType":"201"}]}`)
	cases := []struct{ name, script, want string }{
		{"missing file", `{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/a.wav","transfer":3},{"oId":3,"oType":204,"mode":0}]}`,
			`ivr: script "missing file" in ivr_script@default: component 3 (oType 204): file: required`},
		{"bad number", `{"start":2,"components":[{"oId":2,"oType":208,"recTimeSec":"ten"}]}`,
			`component 2 (oType 208): recTimeSec: want number, got "ten"`},
		{"fraction", `{"start":2,"components":[{"oId":2,"oType":208,"maxSymbolCount":1.5}]}`,
			`component 2 (oType 208): maxSymbolCount: want whole number, got 1.5`},
		{"bad interrupt", `{"start":2,"components":[{"oId":2,"oType":208,"interruptSymbols":"4, x"}]}`,
			`component 2 (oType 208): interruptSymbols: 'X' is not a DTMF key`},
		{"unknown type", `{"start":4,"components":[{"oId":4,"oType":999999}]}`,
			`component 4 (oType 999999): oType: unknown component type 999999`},
		{"dangling transfer", `{"start":1,"components":[{"oId":1,"oType":201,"transfer":9}]}`,
			`component 1 (oType 201): transfer: no component with oId 9`},
		{"dangling menu key", `{"start":1,"components":[{"oId":1,"oType":301,"transfers":{"1":1,"2":8}}]}`,
			`component 1 (oType 301): transfers.2: no component with oId 8`},
		{"menu key", `{"start":1,"components":[{"oId":1,"oType":301,"transfers":{"x":1}}]}`,
			`component 1 (oType 301): transfers.X: not a DTMF key`},
		{"no start", `{"start":7,"components":[{"oId":1,"oType":201}]}`, `start: no component with oId 7`},
		{"no oId", `{"start":1,"components":[{"oId":1,"oType":201},{"oType":201}]}`, `components[1]: oId: required`},
		{"duplicate oId", `{"start":1,"components":[{"oId":1,"oType":201},{"oId":1,"oType":201}]}`, `component 1 (oType 201): oId: used twice`},
		{"not json", `{"start":1,`, `ivr: script "not json" in ivr_script@default: not a JSON object`},
		{"vars", `{"start":1,"components":[{"oId":1,"oType":304,"variables":[1]}]}`, `component 1 (oType 304): variables: want an object`},
		{"external key", `{"start":1,"components":[{"oId":1,"oType":305,"timeoutSec":5}]}`, `component 1 (oType 305): key: required`},
		{"vmbox", `{"start":1,"components":[{"oId":1,"oType":306,"account_id":"a"}]}`, `component 1 (oType 306): vmbox_id: required`},
	}
	for _, c := range cases {
		v.setScript(c.name, c.script)
	}
	for _, c := range cases {
		ch, _ := v.newCall(t, nil)
		res := v.run(t, ch, c.name, 5*time.Second)
		if res.Ended != EndedError || res.Err == nil || !strings.Contains(res.Err.Error(), c.want) {
			t.Errorf("%s: Ended %q, Err %v; want error containing %q", c.name, res.Ended, res.Err, c.want)
		}
	}
	ch, _ := v.newCall(t, nil)
	res := v.run(t, ch, "good", 5*time.Second)
	if res.Ended != EndedHangup || res.Err != nil || res.Variables["ok"] != "yes" {
		t.Fatalf("good script next to broken ones: %+v", res)
	}
	if !strings.Contains(v.logs.String(), `component 3 (oType 204): file: required`) {
		t.Error("the rejected script was not logged")
	}

	ch, _ = v.newCall(t, nil)
	if res := v.run(t, ch, "absent", 5*time.Second); res.Ended != EndedError ||
		!strings.Contains(fmt.Sprint(res.Err), `script "absent" not found in ivr_script@default`) {
		t.Fatalf("missing script: %+v", res)
	}
}

func TestScriptEditsApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("s", `{"start":1,"components":[{"oId":1,"oType":204}]}`)
	ch, _ := v.newCall(t, nil)
	if res := v.run(t, ch, "s", 5*time.Second); res.Ended != EndedError {
		t.Fatalf("broken script ran: %+v", res)
	}
	v.setScript("s", `{"start":1,"components":[{"oId":1,"oType":304,"variables":{"v":"2"}}]}`)
	testenv.WaitFor(t, 5*time.Second, func() error {
		ch, _ := v.newCall(t, nil)
		res := v.eng.Run(context.Background(), ch, "s")
		if res.Ended != EndedEnd || res.Variables["v"] != "2" {
			return fmt.Errorf("after the edit: Ended %q, Err %v, v %q", res.Ended, res.Err, res.Variables["v"])
		}
		return nil
	})
}

func TestRegisterRejectsDuplicates(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	f := func(*Spec) (Component, error) { return hangup{}, nil }
	if err := v.eng.Register(TypePlayback, f); err == nil {
		t.Fatal("built-in type registered twice")
	}
	if err := v.eng.Register(snoopType, f); err == nil {
		t.Fatal("test type registered twice")
	}
}

func TestSetVariablesExpandInOrder(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("vars", `{"start":1,"components":[
		{"oId":1,"oType":304,"variables":{"a":"x","b":"${a}-${caller}-${nope}","n":5,"flag":true,"raw":"$a ${"},"transfer":2},
		{"oId":2,"oType":304,"variables":{"a":"${b}!"}}]}`)
	ch, _ := v.newCall(t, map[string]string{"caller": "100"})
	res := v.run(t, ch, "vars", 5*time.Second)
	want := map[string]string{"a": "x-100-!", "b": "x-100-", "n": "5", "flag": "true", "raw": "$a ${", "caller": "100"}
	for k, w := range want {
		if res.Variables[k] != w {
			t.Errorf("%s = %q, want %q", k, res.Variables[k], w)
		}
	}
	if res.Ended != EndedEnd {
		t.Errorf("Ended %q, want end (no next component)", res.Ended)
	}
}

func TestHangupComponentEndsTheCall(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("h", `{"start":1,"components":[{"oId":1,"oType":201,"transfer":2},{"oId":2,"oType":304,"variables":{"after":"yes"}}]}`)
	ch, _ := v.newCall(t, nil)
	res := v.run(t, ch, "h", 5*time.Second)
	if res.Ended != EndedHangup || ch.hangups.Load() != 1 || res.Variables["after"] != "" || res.IVRID == "" {
		t.Fatalf("Ended %q, hangups %d, vars %v", res.Ended, ch.hangups.Load(), res.Variables)
	}
}

func TestTransferComponent(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("t", `{"start":1,"components":[
		{"oId":1,"oType":203,"number":"${dest}","reinviteMode":"2","transfers":{"error":2}},
		{"oId":2,"oType":304,"variables":{"failed":"${transferResult}"},"transfer":4},
		{"oId":4,"oType":302,"maxSymbolCount":2,"transfer":3},
		{"oId":3,"oType":203,"number":"13"}]}`)
	ch, c := v.newCall(t, map[string]string{"dest": "12"})
	var calls []string
	ch.transfer = func(ctx context.Context, number string, mode int) TransferResult {
		// The bridge must be the only reader of the leg: the IVR's Listen
		// has to be stopped, so this Listen runs until its deadline.
		lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		err := ch.sess.Listen(lctx, media.HandlerFuncs{})
		calls = append(calls, fmt.Sprint(number, "/", mode, "/", err == context.DeadlineExceeded))
		if number == "12" {
			return TransferResult{Reason: "busy"}
		}
		return TransferResult{Connected: true, Reason: "normal clearing"}
	}
	go func() {
		if v.waitComponent(TypeCollect) {
			c.press("34") // heard only if the Listen came back after the failed transfer
		}
	}()
	res := v.run(t, ch, "t", 10*time.Second)
	if strings.Join(calls, " ") != "12/2/true 13/0/true" {
		t.Fatalf("transfers (number/mode/leg free for the bridge) %v", calls)
	}
	if res.Ended != EndedTransfer || !res.Transferred || res.Variables["failed"] != "busy" ||
		res.Variables["transferResult"] != "connected" || res.Variables["dtmfBuffer"] != "34" {
		t.Fatalf("result %+v", res)
	}
}

func TestScriptLoopingWithoutWaitingIsStopped(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("loop", `{"start":1,"components":[{"oId":1,"oType":304,"variables":{"x":"1"},"transfer":1}]}`)
	ch, _ := v.newCall(t, nil)
	res := v.run(t, ch, "loop", 5*time.Second)
	if res.Ended != EndedError || !strings.Contains(fmt.Sprint(res.Err), "loops without waiting") {
		t.Fatalf("Ended %q, Err %v", res.Ended, res.Err)
	}
}
