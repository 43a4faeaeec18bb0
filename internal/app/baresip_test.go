package app

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

// baresip is a real media peer with its own RTP stack, jitter buffer and
// codecs: an IVR script plays it a generated 1 kHz WAV, which must arrive
// whole (tone for 2.0 s ± 100 ms in what baresip heard), then records a
// voicemail from it, which must hold baresip's sine; the call is ANSWERED
// and frees its RTP ports.
func TestBaresipMediaPeer(t *testing.T) {
	const (
		toneHz   = 1000
		toneLen  = 2 * time.Second
		sineHz   = 700 // baresip's source; apart from the tone and its harmonics
		maxSec   = 2
		tolLen   = 100 * time.Millisecond
		minShare = 0.8
	)
	r := testenv.StartRedis(t)
	b := testenv.StartBaresip(t, testenv.BaresipOptions{User: "15557770001", SineHz: sineHz})
	ctx := context.Background()
	setLine(t, r, "bs", "g1", "sip:"+b.Addr, "")
	setDialplan(t, r, "default:ivrtest", `{"type":"ivr","script":"bp"}`)
	// beep 0: the voicemail beep is 1 kHz too and would follow the prompt
	// without a gap, so the tone's length could not be measured.
	script := fmt.Sprintf(`{"start":1,"components":[
		{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/tone1k.wav","transfer":2},
		{"oId":2,"oType":306,"account_id":"acc1","vmbox_id":"vb1","maxSec":%d,"beep":0,"transfer":3},
		{"oId":3,"oType":201}]}`, maxSec)
	if err := r.Client.HSet(ctx, "ivr_script@default", "bp", script).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.HSet(ctx, "vmbox@acc1", "vb1", `{"name":"baresip test","owner_id":"u1","messages":[]}`).Err(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, r.URL, "n1")
	prompt, err := n.Files.ResolveForWrite("", ":GS_PUB/tone1k.wav")
	if err != nil {
		t.Fatal(err)
	}
	bsWriteToneWAV(t, prompt, toneHz, 0.5, toneLen)

	ref := originate(t, n, map[string]any{"number": b.User, "line_group": []string{"g1"}, "destination": dest("ivrtest")})
	c := cdrsFor(t, r, ref, 1, 30*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.SIPCode != 200 || c.Answer == nil {
		t.Fatalf("cdr: %+v", c)
	}

	// (1) baresip heard the whole prompt.
	rec := b.WaitRecording(t, 1, 10*time.Second)[0]
	heard := bsReadWAV(t, rec.Heard)
	seg := bsLoudestRun(heard)
	if seg.len() == 0 {
		t.Fatalf("baresip heard no tone (%d samples, %s)", len(heard), rec.Heard)
	}
	if d := seg.duration(); d < toneLen-tolLen || d > toneLen+tolLen {
		t.Errorf("tone heard by baresip lasts %v, want %v ± %v (%s)", d, toneLen, tolLen, seg.describe(heard))
	}
	share := bsToneShare(heard[seg.start:seg.end], toneHz)
	t.Logf("baresip heard: %s, %d Hz share %.3f", seg.describe(heard), toneHz, share)
	if s := share; s < minShare {
		t.Errorf("%d Hz share of the tone heard by baresip is %.3f, want >= %.1f", toneHz, s, minShare)
	}

	// (2) the voicemail holds baresip's sine.
	var doc struct {
		Messages []struct {
			MediaID string `json:"media_id"`
			Folder  string `json:"folder"`
			Length  int64  `json:"length"`
			File    string `json:"file"`
		} `json:"messages"`
	}
	raw, err := r.Client.HGet(ctx, "vmbox@acc1", "vb1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Messages) != 1 {
		t.Fatalf("vmbox after the call (%v): %s", err, raw)
	}
	msg := doc.Messages[0]
	if msg.Folder != "new" || msg.MediaID == "" {
		t.Fatalf("voicemail message: %+v", msg)
	}
	if d := time.Duration(msg.Length) * time.Millisecond; d < maxSec*time.Second-tolLen || d > maxSec*time.Second+tolLen {
		t.Errorf("voicemail length %v, want %ds ± %v", d, maxSec, tolLen)
	}
	vmPath, err := n.Files.Resolve("", msg.File)
	if err != nil {
		t.Fatal(err)
	}
	vm := bsReadWAV(t, vmPath)
	if d := bsDuration(len(vm)); d < maxSec*time.Second-tolLen || d > maxSec*time.Second+tolLen {
		t.Errorf("voicemail file holds %v, want %ds ± %v", d, maxSec, tolLen)
	}
	vseg := bsLoudestRun(vm)
	t.Logf("voicemail: length %d ms, %s, %d Hz share %.3f", msg.Length, vseg.describe(vm), sineHz, bsToneShare(vm[vseg.start:vseg.end], sineHz))
	if d := vseg.duration(); d < maxSec*time.Second-2*tolLen {
		t.Errorf("baresip's sine lasts %v of the voicemail, want about %ds (%s)", d, maxSec, vseg.describe(vm))
	}
	if vseg.len() > 0 {
		if s := bsToneShare(vm[vseg.start:vseg.end], sineHz); s < minShare {
			t.Errorf("%d Hz share of the voicemail is %.3f, want >= %.1f", sineHz, s, minShare)
		}
	}

	// (3) the CDR was checked above; (4) every RTP port is free again.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if u := n.Ports.InUse(); u != 0 {
			return fmt.Errorf("%d RTP ports still in use", u)
		}
		return nil
	})
}

// bsWriteToneWAV writes a sine of freq Hz at amp (of full scale) as 8 kHz
// 16-bit mono PCM.
func bsWriteToneWAV(t testing.TB, path string, freq, amp float64, d time.Duration) {
	t.Helper()
	const rate = 8000
	n := int(d * rate / time.Second)
	data := make([]byte, 44+2*n)
	copy(data[0:], "RIFF")
	binary.LittleEndian.PutUint32(data[4:], uint32(36+2*n))
	copy(data[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:], 16)
	binary.LittleEndian.PutUint16(data[20:], 1) // PCM
	binary.LittleEndian.PutUint16(data[22:], 1) // mono
	binary.LittleEndian.PutUint32(data[24:], rate)
	binary.LittleEndian.PutUint32(data[28:], rate*2)
	binary.LittleEndian.PutUint16(data[32:], 2)
	binary.LittleEndian.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	binary.LittleEndian.PutUint32(data[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/rate)))
		binary.LittleEndian.PutUint16(data[44+2*i:], uint16(v))
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bsReadWAV decodes a WAV file to 8 kHz mono samples.
func bsReadWAV(t testing.TB, path string) []int16 {
	t.Helper()
	w, err := media.OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var out []int16
	buf := make([]int16, media.FrameSamples)
	for {
		k, err := w.ReadFrame(buf)
		out = append(out, buf[:k]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

func bsDuration(n int) time.Duration { return time.Duration(n) * time.Second / media.SampleRate }

// Loudness is measured in 10 ms blocks, fine enough for ±100 ms.
const bsBlock = media.SampleRate / 100

// bsSpan is a range of samples, [start, end).
type bsSpan struct{ start, end int }

func (s bsSpan) len() int                { return s.end - s.start }
func (s bsSpan) duration() time.Duration { return bsDuration(s.len()) }

func (s bsSpan) describe(pcm []int16) string {
	return fmt.Sprintf("active %v..%v of %v", bsDuration(s.start), bsDuration(s.end), bsDuration(len(pcm)))
}

// bsLoudestRun finds the longest run of blocks louder than -30 dBFS and a
// tenth of the loudest block, tolerating gaps of up to 2 blocks (a lost
// packet), and returns it trimmed to whole blocks.
func bsLoudestRun(pcm []int16) bsSpan {
	blocks := len(pcm) / bsBlock
	power := make([]float64, blocks)
	var peak float64
	for i := range power {
		power[i] = media.MeanPower(pcm[i*bsBlock : (i+1)*bsBlock])
		peak = max(peak, power[i])
	}
	thr := max(peak/10, 1e-3)
	var best, cur bsSpan
	gap := 0
	inRun := false
	for i, p := range power {
		switch {
		case p >= thr && !inRun:
			cur, inRun, gap = bsSpan{i, i + 1}, true, 0
		case p >= thr:
			cur.end, gap = i+1, 0
		case inRun:
			if gap++; gap > 2 {
				inRun = false
			}
		}
		if inRun && cur.len() > best.len() {
			best = cur
		}
	}
	return bsSpan{best.start * bsBlock, best.end * bsBlock}
}

// bsToneShare is the fraction of the power of pcm at freq, summed over
// 20 ms blocks so a phase jump between packets does not cancel it out.
// 20 ms resolves 50 Hz and holds whole periods of both 1000 and 700 Hz.
func bsToneShare(pcm []int16, freq float64) float64 {
	const n = media.FrameSamples
	var tone, all float64
	for i := 0; i+n <= len(pcm); i += n {
		b := pcm[i : i+n]
		tone += media.Goertzel(b, freq, media.SampleRate)
		all += media.MeanPower(b)
	}
	if all == 0 {
		return 0
	}
	return tone / all
}
