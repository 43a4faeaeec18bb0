package media

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// stereoWAV is a parsed 16-bit stereo PCM WAV.
type stereoWAV struct {
	channels, rate, bits int
	left, right          []int16
}

func parseStereoWAV(t *testing.T, b []byte) stereoWAV {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Fatalf("not a canonical WAV file (%d bytes)", len(b))
	}
	w := stereoWAV{channels: int(binary.LittleEndian.Uint16(b[22:])), rate: int(binary.LittleEndian.Uint32(b[24:])),
		bits: int(binary.LittleEndian.Uint16(b[34:]))}
	data := int(binary.LittleEndian.Uint32(b[40:]))
	if data != len(b)-44 || int(binary.LittleEndian.Uint32(b[4:])) != 36+data {
		t.Fatalf("WAV sizes: data %d, RIFF %d, file %d", data, binary.LittleEndian.Uint32(b[4:]), len(b))
	}
	for i := 44; i+4 <= len(b); i += 4 {
		w.left = append(w.left, int16(binary.LittleEndian.Uint16(b[i:])))
		w.right = append(w.right, int16(binary.LittleEndian.Uint16(b[i+2:])))
	}
	return w
}

// share is the part of span's power at freq.
func share(pcm []int16, freq float64) float64 {
	p := MeanPower(pcm)
	if p == 0 {
		return 0
	}
	return Goertzel(pcm, freq, SampleRate) / p
}

// span returns pcm between from and to.
func span(pcm []int16, from, to time.Duration) []int16 {
	a, b := int(from/(time.Second/SampleRate)), int(to/(time.Second/SampleRate))
	return pcm[min(a, len(pcm)):min(b, len(pcm))]
}

// TestStereoRecordingOfRelay sends real RTP through a relay whose legs use
// different laws: A (PCMU) plays 600 Hz for the first 800 ms and sends
// DTMF events; B (PCMA) starts 300 ms late and plays 1400 Hz to the end.
// The file must hold A left and B right, each at its place in time, with
// silence where a side sent nothing, and last as long as the bridge.
func TestStereoRecordingOfRelay(t *testing.T) {
	pool := testPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1, p2 := newPeer(t), newPeer(t)
	a.SetCodec(PCMU)
	b.SetCodec(PCMA)
	a.SetDTMF(&TelephoneEvent)
	b.SetDTMF(&TelephoneEvent)
	a.SetRemote(p1.addr())
	b.SetRemote(p2.addr())
	path := filepath.Join(t.TempDir(), "call.wav")
	rec, err := NewStereoRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan RelayStats, 1)
	go func() { done <- RelayRecord(ctx, a, b, rec) }()

	toneA, toneB := NewTone(600, 8000, 0), NewTone(1400, 8000, 0)
	pcm := make([]int16, FrameSamples)
	enc := make([]byte, FrameSamples)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seqA, seqB uint16
	var tsA, tsB uint32 = 1000, 90000
	for {
		now := <-tick.C
		el := now.Sub(begin)
		if el >= 1200*time.Millisecond {
			break
		}
		if el < 800*time.Millisecond {
			toneA.ReadFrame(pcm)
			encodeFrame(enc, pcm, lawUlaw)
			p1.sendTo(a, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: seqA, Timestamp: tsA, SSRC: 11}, enc))
			if seqA%10 == 0 {
				// An RFC 4733 event is not audio: it must not reach the file.
				p1.sendTo(a, rtpPacket(t, rtp.Header{PayloadType: TelephoneEvent.PT, SequenceNumber: seqA, Timestamp: tsA, SSRC: 11},
					[]byte{1, 0x0a, 0x03, 0x20}))
			}
			seqA++
			tsA += FrameSamples
		}
		if el >= 300*time.Millisecond {
			toneB.ReadFrame(pcm)
			encodeFrame(enc, pcm, lawAlaw)
			p2.sendTo(b, rtpPacket(t, rtp.Header{PayloadType: 8, SequenceNumber: seqB, Timestamp: tsB, SSRC: 22}, enc))
			seqB++
			tsB += FrameSamples
		}
	}
	end := time.Now()
	cancel()
	st := <-done
	if st.AtoB == 0 || st.BtoA == 0 {
		t.Fatalf("relay stats %+v: packets were not relayed", st)
	}
	res, err := rec.Close(end)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != res.Bytes {
		t.Fatalf("file has %d bytes, Close said %d", len(raw), res.Bytes)
	}
	w := parseStereoWAV(t, raw)
	if w.channels != 2 || w.rate != 8000 || w.bits != 16 {
		t.Fatalf("format %d ch %d Hz %d bit, want 2 ch 8000 Hz 16 bit", w.channels, w.rate, w.bits)
	}
	length := time.Duration(len(w.left)) * time.Second / SampleRate
	if bridge := end.Sub(begin); length < bridge-50*time.Millisecond || length > bridge+50*time.Millisecond {
		t.Fatalf("recording lasts %v, the bridge %v", length, bridge)
	}
	if res.Duration != length {
		t.Fatalf("Close says %v, the file holds %v", res.Duration, length)
	}
	// Left: A's tone while A talked, silence after.
	if s := share(span(w.left, 100*time.Millisecond, 700*time.Millisecond), 600); s < 0.8 {
		t.Errorf("left channel 100-700 ms: 600 Hz share %.2f, want A's tone", s)
	}
	if s := share(span(w.left, 100*time.Millisecond, 700*time.Millisecond), 1400); s > 0.05 {
		t.Errorf("left channel 100-700 ms: 1400 Hz share %.2f: B leaked into A's channel", s)
	}
	if p := MeanPower(span(w.left, 950*time.Millisecond, length)); p > 1e-6 {
		t.Errorf("left channel after A stopped: power %g, want silence", p)
	}
	// Right: silence until B started 300 ms in, then B's tone.
	if p := MeanPower(span(w.right, 0, 200*time.Millisecond)); p > 1e-6 {
		t.Errorf("right channel 0-200 ms: power %g, want silence before B spoke", p)
	}
	if s := share(span(w.right, 450*time.Millisecond, 1100*time.Millisecond), 1400); s < 0.8 {
		t.Errorf("right channel 450-1100 ms: 1400 Hz share %.2f, want B's tone", s)
	}
	if s := share(span(w.right, 450*time.Millisecond, 1100*time.Millisecond), 600); s > 0.05 {
		t.Errorf("right channel: 600 Hz share %.2f: A leaked into B's channel", s)
	}
	// No temporary file is left next to the recording.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the recording", len(ents))
	}
}

// TestStereoRecorderSilentBridge: a bridge where nobody sends audio still
// gives a file as long as the bridge, all silence.
func TestStereoRecorderSilentBridge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quiet.wav")
	rec, err := NewStereoRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rec.Close(rec.start.Add(4 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parseStereoWAV(t, raw)
	if len(w.left) != 4*SampleRate || res.Duration != 4*time.Second {
		t.Fatalf("%d frames (%v), want %d", len(w.left), res.Duration, 4*SampleRate)
	}
	if MeanPower(w.left) != 0 || MeanPower(w.right) != 0 {
		t.Fatal("a silent bridge recorded sound")
	}
}

// TestStereoRecorderAbortLeavesNothing: an aborted recording leaves no
// file, partial or final.
func TestStereoRecorderAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	rec, err := NewStereoRecorder(filepath.Join(dir, "x.wav"))
	if err != nil {
		t.Fatal(err)
	}
	rec.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left after Abort", len(ents))
	}
}

// TestStereoRecordingPlacesByTimestamp: packets that arrive out of order
// (each pair swapped, as jitter does) are placed by their RTP timestamps,
// so a continuous tone stays continuous, without holes or overlaps.
func TestStereoRecordingPlacesByTimestamp(t *testing.T) {
	pool := testPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1, p2 := newPeer(t), newPeer(t)
	a.SetRemote(p1.addr())
	b.SetRemote(p2.addr())
	path := filepath.Join(t.TempDir(), "jitter.wav")
	rec, err := NewStereoRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan RelayStats, 1)
	go func() { done <- RelayRecord(ctx, a, b, rec) }()

	tone := NewTone(800, 8000, 0)
	pcm := make([]int16, FrameSamples)
	var frames [][]byte
	for i := range 40 {
		tone.ReadFrame(pcm)
		enc := make([]byte, FrameSamples)
		encodeFrame(enc, pcm, lawUlaw)
		frames = append(frames, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(800 + i*FrameSamples), SSRC: 5}, enc))
	}
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(frames); i += 2 {
		<-tick.C
		p1.sendTo(a, frames[i+1])
		p1.sendTo(a, frames[i])
	}
	<-tick.C
	cancel()
	<-done
	if _, err := rec.Close(time.Time{}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parseStereoWAV(t, raw)
	// Find the tone and check it has no silent hole of a packet's length.
	first, last := -1, -1
	for i, v := range w.left {
		if v != 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatal("left channel is silent")
	}
	got := last - first + 1
	if want := len(frames) * FrameSamples; got < want-20 || got > want+20 {
		t.Fatalf("tone spans %d samples, want %d: packets misplaced", got, want)
	}
	if s := share(w.left[first:last+1], 800); s < 0.95 {
		t.Fatalf("800 Hz share %.3f over the tone: packets overlap or leave holes", s)
	}
}
