package ivr

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/media"
)

// recordScript records with props, then lets the snoop copy the file out
// of :TEMP before the session removes it.
func recordScript(props string) string {
	return `{"start":1,"components":[
		{"oId":1,"oType":208,` + props + `,"transfer":2},
		{"oId":2,"oType":999}]}`
}

// runRecording runs a record script while the caller streams src (and
// optionally presses keys once the recording runs); it returns the result
// and the recording's audio.
func runRecording(t *testing.T, v *env, props string, src media.Source, keys string) (Result, []int16) {
	t.Helper()
	id := "rec " + t.Name()
	v.setScript(id, recordScript(props))
	out := filepath.Join(t.TempDir(), "copy.wav")
	var tempPath string
	copied := make(chan error, 1)
	v.setSnoop(func(x *Exec) {
		tempPath = x.Var("recordFile")
		abs, err := x.Resolve(tempPath)
		if err == nil {
			var b []byte
			if b, err = os.ReadFile(abs); err == nil {
				err = os.WriteFile(out, b, 0o644)
			}
		}
		copied <- err
	})
	ch, c := v.newCall(t, nil)
	c.stream(src)
	if keys != "" {
		go func() {
			if v.waitComponent(TypeRecord) {
				c.press(keys)
			}
		}()
	}
	res := v.run(t, ch, id, 20*time.Second)
	if err := <-copied; err != nil {
		t.Fatalf("recordFile %q unreadable: %v", tempPath, err)
	}
	want := ":TEMP/ivr_records/ivr_" + res.IVRID + "_"
	if !strings.HasPrefix(tempPath, want) || !strings.HasSuffix(tempPath, ".wav") {
		t.Errorf("recordFile %q, want %s<unix ms>.wav", tempPath, want)
	}
	return res, readWAV(t, out)
}

func durationVar(t *testing.T, res Result) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(res.Variables["recordDuration"], 64)
	if err != nil {
		t.Fatalf("recordDuration %q: %v", res.Variables["recordDuration"], err)
	}
	return time.Duration(f * float64(time.Second))
}

func near(d, want, tol time.Duration) bool { return d >= want-tol && d <= want+tol }

func TestRecordStopsAtMaxDurationWithTheCallersTone(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	res, pcm := runRecording(t, v, `"recTimeSec":"1","maxSymbolCount":"3","interruptSymbols":"4, 5, 6","abortOnSilence":0`,
		media.NewTone(1000, 16000, 0), "")
	if res.Variables["recordReason"] != "max_duration" {
		t.Fatalf("recordReason %q", res.Variables["recordReason"])
	}
	got := time.Duration(len(pcm)) * time.Second / media.SampleRate
	if !near(got, time.Second, 100*time.Millisecond) || !near(durationVar(t, res), got, 20*time.Millisecond) {
		t.Fatalf("file holds %v, recordDuration %s; want 1 s", got, res.Variables["recordDuration"])
	}
	if share := toneShare(pcm, 1000); share < 0.8 {
		t.Fatalf("1 kHz holds %.2f of the recording's power", share)
	}
	if lvl := media.LevelDBFS(pcm); lvl < -12 || lvl > -3 {
		t.Fatalf("recording at %.1f dBFS, want about -9 (the caller's half-scale tone)", lvl)
	}
}

func TestRecordStopsOnSilence(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	src := &concat{media.NewTone(1000, 16000, time.Second), media.NewSilence(10 * time.Second)}
	res, pcm := runRecording(t, v, `"recTimeSec":10,"abortOnSilence":"1"`, src, "")
	if res.Variables["recordReason"] != "silence" {
		t.Fatalf("recordReason %q", res.Variables["recordReason"])
	}
	// About 1 s of tone, then the 1 s of silence that ended it.
	if got := time.Duration(len(pcm)) * time.Second / media.SampleRate; !near(got, 2*time.Second, 200*time.Millisecond) {
		t.Fatalf("recording holds %v, want about 2 s", got)
	}
	if lvl := media.LevelDBFS(pcm[:media.SampleRate/2]); lvl < -12 {
		t.Fatalf("the tone part is at %.1f dBFS", lvl)
	}
}

func TestRecordStopsOnInterruptDigit(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	res, pcm := runRecording(t, v, `"recTimeSec":10,"interruptSymbols":"4, 5, 6"`, media.NewTone(1000, 16000, 0), "5")
	if res.Variables["recordReason"] != "dtmf" || res.Variables["dtmfBuffer"] != "5" {
		t.Fatalf("recordReason %q dtmfBuffer %q", res.Variables["recordReason"], res.Variables["dtmfBuffer"])
	}
	if got := time.Duration(len(pcm)) * time.Second / media.SampleRate; got <= 0 || got > 3*time.Second {
		t.Fatalf("recording holds %v", got)
	}
}

func TestRecordStopsAtMaxSymbolCount(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	res, _ := runRecording(t, v, `"recTimeSec":10,"maxSymbolCount":"2","interruptSymbols":"#"`, media.NewTone(1000, 16000, 0), "78")
	if res.Variables["recordReason"] != "max_digits" || res.Variables["dtmfBuffer"] != "78" {
		t.Fatalf("recordReason %q dtmfBuffer %q", res.Variables["recordReason"], res.Variables["dtmfBuffer"])
	}
}
