package media

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The MP3 fixtures were made once with LAME 3.100 from a 1 s, 1 kHz sine
// at half scale (see testdata/media/README.md): tone1k.mp3 is MPEG-1
// 44.1 kHz joint stereo with a LAME tag, tone1k_22k_mono.mp3 MPEG-2
// 22.05 kHz mono at 64 kbit/s written without the tag (lame -t).
func mp3Fixture(name string) string { return filepath.Join("..", "..", "testdata", "media", name) }

func TestMP3GaplessDecodeHasToneAndExactLength(t *testing.T) {
	src, err := OpenMP3(mp3Fixture("tone1k.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.SampleRate() != 44100 {
		t.Fatalf("SampleRate = %d, want 44100", src.SampleRate())
	}
	pcm := readAll(t, src)
	// The LAME tag's delay and padding are cut: 1 s exactly, within a frame.
	if d := len(pcm) - SampleRate; d < -FrameSamples || d > FrameSamples {
		t.Fatalf("decoded %d samples, want %d ± one frame", len(pcm), SampleRate)
	}
	if share := toneShare(pcm, 1000); share < 0.9 {
		t.Fatalf("1 kHz holds %.3f of the power, want >= 0.9", share)
	}
	// No encoder delay left at the start and no padding at the end: the
	// first and last frames carry the tone at full level.
	for _, fr := range [][]int16{pcm[:FrameSamples], pcm[len(pcm)-FrameSamples:]} {
		if p := MeanPower(fr); p < 0.08 {
			t.Fatalf("edge frame power %.4f, want the tone's (about 0.125)", p)
		}
	}
}

func TestMP3WithoutTagMPEG2Mono(t *testing.T) {
	b, err := os.ReadFile(mp3Fixture("tone1k_22k_mono.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewMP3(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if src.SampleRate() != 22050 {
		t.Fatalf("SampleRate = %d, want 22050", src.SampleRate())
	}
	pcm := readAll(t, src)
	// Without a tag the encoder delay and padding stay (about 75 ms here).
	if len(pcm) < SampleRate || len(pcm) > SampleRate+800 {
		t.Fatalf("decoded %d samples, want 1 s plus at most 100 ms", len(pcm))
	}
	if share := toneShare(pcm, 1000); share < 0.9 {
		t.Fatalf("1 kHz holds %.3f of the power, want >= 0.9", share)
	}
}

func TestMP3SkipsID3v2Tag(t *testing.T) {
	b, err := os.ReadFile(mp3Fixture("tone1k.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	// A 3000-byte ID3v2.3 tag (larger than the peek buffer) in front.
	tag := append([]byte("ID3\x03\x00\x00"), 0, 0, 3000>>7, 3000&0x7f)
	tag = append(tag, make([]byte, 3000)...)
	src, err := NewMP3(bytes.NewReader(append(tag, b...)))
	if err != nil {
		t.Fatal(err)
	}
	pcm := readAll(t, src)
	if d := len(pcm) - SampleRate; d < -FrameSamples || d > FrameSamples {
		t.Fatalf("decoded %d samples behind an ID3 tag, want %d ± one frame (gapless info found)", len(pcm), SampleRate)
	}
}

func TestMP3Errors(t *testing.T) {
	p := writeFile(t, "bad.mp3", bytes.Repeat([]byte("not an mp3 "), 100))
	_, err := OpenMP3(p)
	if err == nil || !strings.HasPrefix(err.Error(), `media: mp3 "`+p+`": `) {
		t.Fatalf("OpenMP3 of garbage: %v, want an error naming the file", err)
	}
	if _, err := NewMP3(bytes.NewReader(nil)); err == nil || !strings.HasPrefix(err.Error(), "media: mp3: ") {
		t.Fatalf("NewMP3 of nothing: %v", err)
	}
}
