package ivr

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

func TestPlaybackToneArrivesWithItsLength(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	// 16 kHz on disk, so the resampler is on the path too.
	writeWAV(t, v.storeFile(":GS_PUB/prompts/tone.wav"), 16000, tone(1000, 16000, 1500*time.Millisecond))
	v.setScript("play", `{"start":1,"components":[
		{"oId":1,"oType":204,"mode":"0","file":":GS_PUB/prompts/tone.wav","transfer":2},
		{"oId":2,"oType":201}]}`)
	ch, c := v.newCall(t, nil)
	go func() {
		c.waitAudio(8000 / 2)
		c.press("7")
	}()
	res := v.run(t, ch, "play", 10*time.Second)
	if res.Ended != EndedHangup {
		t.Fatalf("Ended %q (%v)", res.Ended, res.Err)
	}
	if res.Variables["dtmfBuffer"] != "7" {
		t.Errorf("dtmfBuffer %q, want the 7 pressed during playback", res.Variables["dtmfBuffer"])
	}
	want := 12000 // 1.5 s at 8 kHz
	testenv.WaitFor(t, 2*time.Second, func() error {
		if n := c.received(); abs(n-want) > 800 {
			return fmt.Errorf("caller heard %d samples (%.3f s), want 1.5 s ± 100 ms", n, float64(n)/8000)
		}
		return nil
	})
	pcm := c.samples()
	if share := toneShare(pcm, 1000); share < 0.9 {
		t.Fatalf("1 kHz holds %.2f of the power heard, want > 0.9", share)
	}
	if lvl := media.LevelDBFS(pcm); lvl < -12 {
		t.Fatalf("level %.1f dBFS, want about -9 (half-scale sine)", lvl)
	}
}

func TestPlaybackErrorsExitError(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	os.WriteFile(v.storeFile(":GS_PUB/junk.wav"), []byte("not audio"), 0o644)
	for _, path := range []string{":GS_PUB/../../../etc/passwd", ":NOPE/x.wav", ":GS_PUB/missing.wav", ":GS_PUB/junk.wav", "/etc/passwd"} {
		id := "bad " + path
		v.setScript(id, fmt.Sprintf(`{"start":1,"components":[
			{"oId":1,"oType":204,"mode":0,"file":%q,"transfer":3,"transfers":{"error":2}},
			{"oId":2,"oType":304,"variables":{"failed":"yes"}},
			{"oId":3,"oType":304,"variables":{"failed":"no"}}]}`, path))
		ch, _ := v.newCall(t, nil)
		res := v.run(t, ch, id, 5*time.Second)
		if res.Variables["failed"] != "yes" {
			t.Errorf("file %q: exit was not error (vars %v, Ended %q)", path, res.Variables, res.Ended)
		}
		if !strings.Contains(v.logs.String(), path) {
			t.Errorf("file %q: no log line names the path", path)
		}
	}
}

func TestCallerHangupMidPlaybackEndsPromptly(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	writeWAV(t, v.storeFile(":GS_PUB/long.wav"), 8000, tone(440, 8000, 20*time.Second))
	v.setScript("long", `{"start":1,"components":[
		{"oId":1,"oType":999,"transfer":2},
		{"oId":2,"oType":204,"mode":0,"file":":GS_PUB/long.wav","transfer":3},
		{"oId":3,"oType":201}]}`)
	var temp string
	v.setSnoop(func(x *Exec) {
		temp = x.TempDir()
		os.WriteFile(temp+"/upload.mp3", []byte("x"), 0o644)
	})
	ch, c := v.newCall(t, nil)
	var hungUp time.Time
	go func() {
		c.waitAudio(1600)
		hungUp = time.Now()
		ch.callerHangup()
	}()
	res := v.run(t, ch, "long", 10*time.Second)
	if took := time.Since(hungUp); took > 500*time.Millisecond {
		t.Errorf("session ended %v after the hangup", took)
	}
	if res.Ended != EndedCallerHangup || ch.hangups.Load() != 0 {
		t.Fatalf("Ended %q, hangups %d; want caller_hangup and no hangup component", res.Ended, ch.hangups.Load())
	}
	if temp == "" {
		t.Fatal("snoop did not run")
	}
	if _, err := os.Stat(temp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(":TEMP %s still exists after the session: %v", temp, err)
	}
	if n := len(v.eng.Sessions()); n != 0 {
		t.Fatalf("%d sessions listed after the end", n)
	}
}

func TestMenuRoutesByDigit(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	writeWAV(t, v.storeFile(":GS_PUB/menu.wav"), 8000, tone(600, 8000, 2*time.Second))
	v.setScript("menu", `{"start":1,"components":[
		{"oId":1,"oType":301,"file":":GS_PUB/menu.wav","timeoutSec":"0.5","retries":1,
		 "transfers":{"1":10,"2":20,"timeout":30,"error":40}},
		{"oId":10,"oType":304,"variables":{"choice":"one"}},
		{"oId":20,"oType":304,"variables":{"choice":"two"}},
		{"oId":30,"oType":304,"variables":{"choice":"timeout"}},
		{"oId":40,"oType":304,"variables":{"choice":"invalid"}}]}`)

	t.Run("digit during the prompt", func(t *testing.T) {
		ch, c := v.newCall(t, nil)
		go func() { c.waitAudio(800); c.press("2") }()
		start := time.Now()
		res := v.run(t, ch, "menu", 10*time.Second)
		if res.Variables["choice"] != "two" || res.Variables["dtmfBuffer"] != "2" {
			t.Fatalf("vars %v", res.Variables)
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Errorf("the key did not stop the 2 s prompt (took %v)", time.Since(start))
		}
	})
	t.Run("invalid then valid", func(t *testing.T) {
		ch, c := v.newCall(t, nil)
		go func() {
			c.waitAudio(800)
			c.press("9")
			c.waitAudio(16000 + 800) // the prompt again
			c.press("1")
		}()
		res := v.run(t, ch, "menu", 10*time.Second)
		if res.Variables["choice"] != "one" {
			t.Fatalf("vars %v", res.Variables)
		}
	})
	t.Run("invalid twice", func(t *testing.T) {
		ch, c := v.newCall(t, nil)
		go func() {
			c.waitAudio(800)
			c.press("9")
			c.waitAudio(16000 + 800)
			c.press("8")
		}()
		if res := v.run(t, ch, "menu", 10*time.Second); res.Variables["choice"] != "invalid" || res.Variables["dtmfBuffer"] != "8" {
			t.Fatalf("vars %v", res.Variables)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ch, c := v.newCall(t, nil)
		res := v.run(t, ch, "menu", 10*time.Second)
		if res.Variables["choice"] != "timeout" {
			t.Fatalf("vars %v", res.Variables)
		}
		// Two attempts: the prompt twice.
		if n := c.received(); abs(n-32000) > 1600 {
			t.Errorf("caller heard %.2f s of prompt, want 4", float64(n)/8000)
		}
	})
}

func TestCollectDigits(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("collect", `{"start":1,"components":[
		{"oId":1,"oType":302,"maxSymbolCount":"4","terminator":"#","timeoutSec":"1","interDigitSec":"2",
		 "transfer":2,"transfers":{"timeout":3}},
		{"oId":2,"oType":304,"variables":{"got":"${dtmfBuffer}"}},
		{"oId":3,"oType":304,"variables":{"got":"timeout"}}]}`)
	cases := []struct{ press, want string }{
		{"12#", "12"},
		{"98765", "9876"}, // stops at maxSymbolCount; the 5 is not part of it
		{"", "timeout"},
		{"#", "timeout"},
	}
	for _, tc := range cases {
		ch, c := v.newCall(t, nil)
		go func() {
			if tc.press != "" {
				v.waitComponent(TypeCollect)
				c.press(tc.press)
			}
		}()
		res := v.run(t, ch, "collect", 10*time.Second)
		if res.Variables["got"] != tc.want {
			t.Errorf("pressed %q: got %q, want %q", tc.press, res.Variables["got"], tc.want)
		}
	}
}

func TestCollectStopsAfterInterDigitTimeout(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("c", `{"start":1,"components":[{"oId":1,"oType":302,"maxSymbolCount":10,"timeoutSec":5,"interDigitSec":0.5}]}`)
	ch, c := v.newCall(t, nil)
	go func() { v.waitComponent(TypeCollect); c.press("42") }()
	res := v.run(t, ch, "c", 10*time.Second)
	if res.Variables["dtmfBuffer"] != "42" || res.Ended != EndedEnd {
		t.Fatalf("Ended %q, vars %v", res.Ended, res.Variables)
	}
}

func TestDigitsPressedDuringPauseReachTheNextComponent(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("ahead", `{"start":1,"components":[
		{"oId":1,"oType":303,"timeSec":1.5,"transfer":2},
		{"oId":2,"oType":302,"maxSymbolCount":5,"timeoutSec":0.2,"interDigitSec":0.2}]}`)
	ch, c := v.newCall(t, nil)
	go func() {
		if v.waitComponent(TypePause) {
			c.press("12#")
		}
	}()
	if res := v.run(t, ch, "ahead", 10*time.Second); res.Variables["dtmfBuffer"] != "12" {
		t.Fatalf("dtmfBuffer %q, want the 12 typed ahead", res.Variables["dtmfBuffer"])
	}
}

func TestPauseSendsSilenceForItsTime(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("p", `{"start":1,"components":[{"oId":1,"oType":303,"timeSec":"0.6"}]}`)
	ch, c := v.newCall(t, nil)
	start := time.Now()
	v.run(t, ch, "p", 5*time.Second)
	if took := time.Since(start); took < 550*time.Millisecond {
		t.Fatalf("pause took %v, want 0.6 s", took)
	}
	testenv.WaitFor(t, 2*time.Second, func() error {
		if n := c.received(); abs(n-4800) > 320 {
			return fmt.Errorf("caller heard %d samples of silence, want 4800", n)
		}
		return nil
	})
	if lvl := media.LevelDBFS(c.samples()); !math.IsInf(lvl, -1) && lvl > -60 {
		t.Fatalf("pause audio at %.1f dBFS, want silence", lvl)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
