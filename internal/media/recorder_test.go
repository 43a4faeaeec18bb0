package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// concat plays sources one after the other.
type concat []Source

func (c *concat) ReadFrame(pcm []int16) (int, error) {
	for len(*c) > 0 {
		n, err := (*c)[0].ReadFrame(pcm)
		if errors.Is(err, io.EOF) {
			*c = (*c)[1:]
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
	return 0, io.EOF
}

func toneSamples(freq float64, amp int16, d time.Duration) []int16 {
	pcm := make([]int16, int(d/(time.Second/SampleRate)))
	NewTone(freq, amp, 0).ReadFrame(pcm)
	return pcm
}

// readWAVFile reads a recording back with the package's own reader.
func readWAVFile(t *testing.T, path string) (WAVInfo, []int16) {
	t.Helper()
	src, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return src.Info(), readAll(t, src)
}

func TestRecorderWritesValidWAV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.wav")
	r, err := NewRecorder(path, RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tone := toneSamples(1000, 12000, time.Second)
	for rest := tone; len(rest) > 0; {
		k := min(len(rest), 333) // not a multiple of a frame
		if err := r.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the path exists before Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if res := r.Result(); res.Duration != time.Second || res.Reason != StopCancelled {
		t.Fatalf("Result = %+v, want 1s, cancelled", res)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only rec.wav (no temporary file)", len(entries))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 44+16000 || string(raw[0:4]) != "RIFF" || binary.LittleEndian.Uint32(raw[4:]) != 36+16000 ||
		string(raw[8:16]) != "WAVEfmt " || string(raw[36:40]) != "data" || binary.LittleEndian.Uint32(raw[40:]) != 16000 {
		t.Fatalf("header % x (file %d bytes), want RIFF size 16036 and data size 16000", raw[:44], len(raw))
	}
	info, pcm := readWAVFile(t, path)
	if info != (WAVInfo{Format: WAVFormatPCM, Channels: 1, Rate: 8000, Bits: 16, Frames: 8000}) {
		t.Fatalf("Info = %+v", info)
	}
	if !slices.Equal(pcm, tone) {
		t.Fatal("samples read back differ from those written")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRecorderLimitsOnWrite(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRecorder(filepath.Join(dir, "max.wav"), RecordOptions{MaxDuration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.Write(toneSamples(1000, 8000, 2*time.Second))
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed at MaxDuration")
	}
	r.Close()
	if res := r.Result(); res.Duration != 1500*time.Millisecond || res.Reason != StopMaxDuration {
		t.Fatalf("Result = %+v, want 1.5s, max_duration", res)
	}

	r, err = NewRecorder(filepath.Join(dir, "sil.wav"), RecordOptions{SilenceAbort: 300 * time.Millisecond, SilenceThreshold: -45})
	if err != nil {
		t.Fatal(err)
	}
	r.Write(toneSamples(1000, 8000, 500*time.Millisecond))
	r.Write(toneSamples(1000, 100, time.Second)) // -50 dBFS: below -45
	r.Close()
	if res := r.Result(); res.Duration != 800*time.Millisecond || res.Reason != StopSilence {
		t.Fatalf("Result = %+v, want 800ms (500 ms tone + 300 ms silence), silence", res)
	}
	info, _ := readWAVFile(t, filepath.Join(dir, "sil.wav"))
	if info.Frames != 6400 {
		t.Fatalf("file holds %d frames, want 6400", info.Frames)
	}
}

func TestRecorderTimelineFromRTPTimestamps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gaps.wav")
	r, err := NewRecorder(path, RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	frame := toneSamples(1000, 8000, FrameDuration)
	r.Audio(frame, 1, 0)
	r.Audio(frame, 2, 160)
	r.Audio(frame, 8, 1120)              // 5 packets lost: 800 samples of silence first
	r.Audio(frame, 5, 640)               // late: its place is filled
	r.Audio(frame, 8, 1120)              // duplicate
	r.Audio(frame, 1, 1_000_000_000)     // a new stream (timestamps jumped): no fill
	r.Audio(frame, 2, 1_000_000_000+160) // and it goes on
	r.DTMF('9', 100)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	res := r.Result()
	if want := 1600 * time.Second / SampleRate; res.Duration != want || res.Digits != "9" {
		t.Fatalf("Result = %+v, want %v and digits 9", res, want)
	}
	_, pcm := readWAVFile(t, path)
	if MeanPower(pcm[320:1120]) != 0 || MeanPower(pcm[1120:1280]) == 0 {
		t.Fatal("the gap is not silence where the lost packets were")
	}
}

func TestRecorderAbortAndBadOptions(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRecorder(filepath.Join(dir, "x.wav"), RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Write(make([]int16, 800))
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Abort left %d files", len(entries))
	}
	for _, c := range []struct {
		path string
		opts RecordOptions
		want string
	}{
		{filepath.Join(dir, "a.wav"), RecordOptions{TerminateOn: "#x"}, `TerminateOn: 'x' is not a DTMF key`},
		{filepath.Join(dir, "a.wav"), RecordOptions{MaxDuration: -time.Second}, "negative limit"},
		{filepath.Join(dir, "missing", "a.wav"), RecordOptions{}, "no such file or directory"},
	} {
		_, err := NewRecorder(c.path, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("NewRecorder(%s, %+v) = %v, want an error naming the path and %q", c.path, c.opts, err, c.want)
		}
	}
}

// recordRig runs Record on b in the background while a sends to it.
type recordRig struct {
	a, b *Session
	path string
	res  chan recordOutcome
}

type recordOutcome struct {
	res RecordResult
	err error
	at  time.Duration
}

func startRecord(t *testing.T, ctx context.Context, opts RecordOptions) *recordRig {
	t.Helper()
	a, b := sessionPair(t)
	a.SetDTMF(dtmf96)
	b.SetDTMF(dtmf96)
	r := &recordRig{a: a, b: b, path: filepath.Join(t.TempDir(), "rec.wav"), res: make(chan recordOutcome, 1)}
	start := time.Now()
	go func() {
		res, err := Record(ctx, b, r.path, opts)
		r.res <- recordOutcome{res, err, time.Since(start)}
	}()
	waitListening(t, b)
	return r
}

// play sends src from a until the test ends.
func (r *recordRig) play(t *testing.T, src Source) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.a.Play(ctx, src); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (r *recordRig) wait(t *testing.T) recordOutcome {
	t.Helper()
	select {
	case o := <-r.res:
		if o.err != nil {
			t.Fatalf("Record: %v", o.err)
		}
		return o
	case <-time.After(15 * time.Second):
		t.Fatal("Record did not end")
	}
	return recordOutcome{}
}

func near(d, want, tol time.Duration) bool { return d >= want-tol && d <= want+tol }

func TestRecordStopsOnSilence(t *testing.T) {
	r := startRecord(t, context.Background(), RecordOptions{SilenceAbort: time.Second})
	r.play(t, &concat{NewTone(1000, 8000, 2*time.Second), NewSilence(5 * time.Second)})
	o := r.wait(t)
	if o.res.Reason != StopSilence || !near(o.res.Duration, 3*time.Second, 40*time.Millisecond) {
		t.Fatalf("Result = %+v, want silence after 2 s of tone + 1 s hold", o.res)
	}
	if !near(o.at, 3*time.Second, 300*time.Millisecond) {
		t.Fatalf("Record returned after %v, want about 3 s", o.at)
	}
	info, pcm := readWAVFile(t, r.path)
	if time.Duration(info.Frames)*time.Second/SampleRate != o.res.Duration || len(pcm) != int(info.Frames) {
		t.Fatalf("file: %d frames (%d read), want %v", info.Frames, len(pcm), o.res.Duration)
	}
	tone := pcm[80 : 2*SampleRate-80]
	// Amplitude 8000 of 32768: power 0.0298, all of it at 1 kHz.
	if p := MeanPower(tone); p < 0.027 || p > 0.033 || toneShare(tone, 1000) < 0.9 {
		t.Fatalf("first 2 s: power %.4f (1 kHz share %.2f), want 0.0298 of a 1 kHz tone", p, toneShare(tone, 1000))
	}
	if p := MeanPower(pcm[2*SampleRate+80:]); p > 1e-6 {
		t.Fatalf("last second: power %g, want silence", p)
	}
}

func TestRecordMaxDuration(t *testing.T) {
	r := startRecord(t, context.Background(), RecordOptions{MaxDuration: time.Second, SilenceAbort: 5 * time.Second})
	r.play(t, NewTone(1000, 8000, 0))
	o := r.wait(t)
	if o.res.Reason != StopMaxDuration || o.res.Duration != time.Second {
		t.Fatalf("Result = %+v, want exactly 1 s, max_duration", o.res)
	}
	info, pcm := readWAVFile(t, r.path)
	if info.Frames != SampleRate || toneShare(pcm, 1000) < 0.9 {
		t.Fatalf("file: %d frames, 1 kHz share %.2f; want 8000 frames of tone", info.Frames, toneShare(pcm, 1000))
	}
}

func TestRecordEndsOnDTMF(t *testing.T) {
	for _, c := range []struct {
		name   string
		opts   RecordOptions
		press  string
		reason StopReason
		digits string
	}{
		{"terminate", RecordOptions{TerminateOn: "#*"}, "51#2", StopDTMF, "51#"},
		{"max digits", RecordOptions{MaxDigits: 2}, "123", StopMaxDigits, "12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startRecord(t, context.Background(), c.opts)
			r.play(t, NewTone(1000, 8000, 0))
			go func() {
				for _, d := range c.press {
					if r.a.SendDTMF(context.Background(), d, 60*time.Millisecond) != nil {
						return
					}
				}
			}()
			o := r.wait(t)
			if o.res.Reason != c.reason || o.res.Digits != c.digits {
				t.Fatalf("Result = %+v, want reason %s, digits %q", o.res, c.reason, c.digits)
			}
			info, _ := readWAVFile(t, r.path)
			if got := time.Duration(info.Frames) * time.Second / SampleRate; got != o.res.Duration || got < 100*time.Millisecond {
				t.Fatalf("file holds %v, result says %v; want the same, over 100 ms", got, o.res.Duration)
			}
		})
	}
}

func TestRecordHangupAndCancel(t *testing.T) {
	r := startRecord(t, context.Background(), RecordOptions{})
	r.play(t, NewTone(1000, 8000, 0))
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := r.b.Stats().PacketsIn; n < 15 {
			return fmt.Errorf("%d packets in", n)
		}
		return nil
	})
	r.b.Close()
	o := r.wait(t)
	if o.res.Reason != StopHangup || o.res.Duration < 250*time.Millisecond {
		t.Fatalf("Result = %+v, want hangup after >= 300 ms", o.res)
	}
	if info, _ := readWAVFile(t, r.path); time.Duration(info.Frames)*time.Second/SampleRate != o.res.Duration {
		t.Fatalf("file holds %d frames, result %v", info.Frames, o.res.Duration)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r = startRecord(t, ctx, RecordOptions{MaxDuration: time.Minute})
	cancel()
	if o := r.wait(t); o.res.Reason != StopCancelled {
		t.Fatalf("Result after cancel = %+v, want cancelled", o.res)
	}
	if _, err := os.Stat(r.path); err != nil {
		t.Fatalf("cancelled recording not kept: %v", err)
	}
}

// A peer that sends nothing: the wall clock ends the recording.
func TestRecordWithoutPackets(t *testing.T) {
	r := startRecord(t, context.Background(), RecordOptions{SilenceAbort: 300 * time.Millisecond})
	o := r.wait(t)
	if o.res.Reason != StopSilence || o.res.Duration != 0 || !near(o.at, 500*time.Millisecond, 300*time.Millisecond) {
		t.Fatalf("no packets, SilenceAbort 300ms: %+v after %v; want silence after about 500 ms", o.res, o.at)
	}
	raw, err := os.ReadFile(r.path)
	if err != nil || len(raw) != 44 || !bytes.Equal(raw[40:44], []byte{0, 0, 0, 0}) {
		t.Fatalf("empty recording: %d bytes (%v), want a bare 44-byte header", len(raw), err)
	}

	r = startRecord(t, context.Background(), RecordOptions{MaxDuration: 300 * time.Millisecond})
	o = r.wait(t)
	if o.res.Reason != StopMaxDuration || !near(o.at, 800*time.Millisecond, 300*time.Millisecond) {
		t.Fatalf("no packets, MaxDuration 300ms: %+v after %v; want max_duration after about 800 ms", o.res, o.at)
	}
}
