package media

import (
	"io"
	"math"
	"testing"
	"time"
)

func TestNewSilence(t *testing.T) {
	pcm := readAll(t, NewSilence(250*time.Millisecond))
	if len(pcm) != 2000 {
		t.Fatalf("250 ms of silence = %d samples, want 2000", len(pcm))
	}
	for i, v := range pcm {
		if v != 0 {
			t.Fatalf("sample %d = %d, want 0", i, v)
		}
	}
	if n, err := NewSilence(0).ReadFrame(make([]int16, 160)); n != 0 || err != io.EOF {
		t.Fatalf("NewSilence(0) read = %d, %v; want 0, EOF", n, err)
	}
}

func TestLevelDBFS(t *testing.T) {
	full := make([]int16, 800)
	NewTone(1000, 32767, 0).ReadFrame(full)
	if l := LevelDBFS(full); math.Abs(l+3.01) > 0.05 {
		t.Fatalf("full-scale sine at %.2f dBFS, want -3.01", l)
	}
	quiet := make([]int16, 800)
	NewTone(1000, 328, 0).ReadFrame(quiet) // 1% of full scale
	if l := LevelDBFS(quiet); math.Abs(l+43.0) > 0.1 {
		t.Fatalf("1%% sine at %.2f dBFS, want -43", l)
	}
	if l := LevelDBFS(make([]int16, 160)); !math.IsInf(l, -1) {
		t.Fatalf("digital silence at %v dBFS, want -Inf", l)
	}
}

func TestSilenceDetector(t *testing.T) {
	frame := func(amp int16) []int16 {
		f := make([]int16, FrameSamples)
		NewTone(1000, amp, 0).ReadFrame(f)
		return f
	}
	speech := frame(3000) // about -24 dBFS
	hiss := frame(200)    // about -47 dBFS: silence at the default -40
	d := SilenceDetector{Hold: 100 * time.Millisecond}
	if d.Fired() {
		t.Fatal("fired before any audio")
	}
	for i := 0; i < 4; i++ {
		if d.Feed(hiss) {
			t.Fatalf("fired after %d silent frames (%v), want 5 for 100 ms", i+1, d.Silent())
		}
	}
	if !d.Feed(hiss) || d.Silent() != 100*time.Millisecond {
		t.Fatalf("not fired after 100 ms of silence (Silent %v)", d.Silent())
	}
	if d.Feed(speech) || d.Silent() != 0 {
		t.Fatal("speech did not end the silence")
	}
	// A stricter threshold calls the hiss sound.
	strict := SilenceDetector{Threshold: -50}
	if strict.Feed(hiss) {
		t.Fatal("-47 dBFS is silence at a -50 dBFS threshold")
	}
	if !strict.Feed(make([]int16, FrameSamples)) {
		t.Fatal("digital silence not silent with Hold 0")
	}
	strict.Reset()
	if strict.Fired() {
		t.Fatal("fired after Reset")
	}
}
