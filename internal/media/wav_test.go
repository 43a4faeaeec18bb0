package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// wavSpec describes a WAV file built by makeWAV, independently of the
// package's own writer.
type wavSpec struct {
	format   int // format tag written (1, 3, 6, 7, or anything for error tests)
	channels int
	rate     int
	bits     int
	frames   int
	// signal gives the value in [-1, 1] of channel ch at frame i.
	signal func(i, ch int) float64
	// extensible writes WAVE_FORMAT_EXTENSIBLE with format as sub-format.
	extensible bool
	// junkFirst puts an odd-sized LIST chunk before fmt.
	junkFirst bool
	// dataSize overrides the data chunk's size field when non-zero.
	dataSize uint32
}

func makeWAV(t testing.TB, s wavSpec) []byte {
	t.Helper()
	width := s.bits / 8
	var data bytes.Buffer
	for i := 0; i < s.frames; i++ {
		for ch := 0; ch < s.channels; ch++ {
			v := 0.0
			if s.signal != nil {
				v = s.signal(i, ch)
			}
			switch {
			case s.format == WAVFormatMuLaw:
				data.WriteByte(LinearToUlaw(int16(v * 32767)))
			case s.format == WAVFormatALaw:
				data.WriteByte(LinearToAlaw(int16(v * 32767)))
			case s.format == WAVFormatFloat && width == 4:
				binary.Write(&data, binary.LittleEndian, float32(v))
			case s.format == WAVFormatFloat:
				binary.Write(&data, binary.LittleEndian, v)
			case width == 1:
				data.WriteByte(byte(int(math.Round(v*127)) + 128))
			default:
				x := int64(math.Round(v * float64(int64(1)<<(8*width-1)-1)))
				for b := 0; b < width; b++ {
					data.WriteByte(byte(x >> (8 * b)))
				}
			}
		}
	}
	var fmtChunk bytes.Buffer
	tag := s.format
	if s.extensible {
		tag = wavFormatExtensible
	}
	le := func(v any) { binary.Write(&fmtChunk, binary.LittleEndian, v) }
	le(uint16(tag))
	le(uint16(s.channels))
	le(uint32(s.rate))
	le(uint32(s.rate * s.channels * width))
	le(uint16(s.channels * width))
	le(uint16(s.bits))
	if s.extensible {
		le(uint16(22))
		le(uint16(s.bits))
		le(uint32(0))
		le(uint16(s.format))
		fmtChunk.Write([]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71})
	}

	var body bytes.Buffer
	body.WriteString("WAVE")
	chunk := func(id string, b []byte, size uint32) {
		body.WriteString(id)
		binary.Write(&body, binary.LittleEndian, size)
		body.Write(b)
		if len(b)%2 == 1 {
			body.WriteByte(0)
		}
	}
	if s.junkFirst {
		chunk("LIST", []byte("INFOISFT\x03\x00\x00\x00ab\x00"), 15)
	}
	chunk("fmt ", fmtChunk.Bytes(), uint32(fmtChunk.Len()))
	size := uint32(data.Len())
	if s.dataSize != 0 {
		size = s.dataSize
	}
	chunk("data", data.Bytes(), size)
	var out bytes.Buffer
	out.WriteString("RIFF")
	binary.Write(&out, binary.LittleEndian, uint32(body.Len()))
	out.Write(body.Bytes())
	return out.Bytes()
}

func sine(freq, amp float64, rate int) func(i, ch int) float64 {
	return func(i, _ int) float64 { return amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)) }
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll drains src in 20 ms frames.
func readAll(t testing.TB, src Source) []int16 {
	t.Helper()
	var out []int16
	buf := make([]int16, FrameSamples)
	for i := 0; ; i++ {
		n, err := src.ReadFrame(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		if i > 1_000_000 {
			t.Fatal("source never ends")
		}
	}
}

// toneShare is the fraction of pcm's power at freq.
func toneShare(pcm []int16, freq float64) float64 {
	return Goertzel(pcm, freq, SampleRate) / MeanPower(pcm)
}

func TestWAVFormatsDecodeToneAt8kHz(t *testing.T) {
	for _, c := range []struct {
		name string
		spec wavSpec
	}{
		{"pcm16 8k mono", wavSpec{format: 1, channels: 1, rate: 8000, bits: 16}},
		{"pcm16 44.1k stereo", wavSpec{format: 1, channels: 2, rate: 44100, bits: 16}},
		{"pcm16 48k mono", wavSpec{format: 1, channels: 1, rate: 48000, bits: 16}},
		{"pcm16 16k mono", wavSpec{format: 1, channels: 1, rate: 16000, bits: 16}},
		{"ulaw 8k mono", wavSpec{format: WAVFormatMuLaw, channels: 1, rate: 8000, bits: 8}},
		{"alaw 8k mono", wavSpec{format: WAVFormatALaw, channels: 1, rate: 8000, bits: 8}},
		{"pcm8 11.025k mono", wavSpec{format: 1, channels: 1, rate: 11025, bits: 8}},
		{"pcm24 48k stereo", wavSpec{format: 1, channels: 2, rate: 48000, bits: 24}},
		{"pcm32 96k mono", wavSpec{format: 1, channels: 1, rate: 96000, bits: 32}},
		{"float32 22.05k stereo", wavSpec{format: WAVFormatFloat, channels: 2, rate: 22050, bits: 32}},
		{"float64 8k mono", wavSpec{format: WAVFormatFloat, channels: 1, rate: 8000, bits: 64}},
		{"extensible pcm16 44.1k stereo", wavSpec{format: 1, channels: 2, rate: 44100, bits: 16, extensible: true}},
		{"list chunk first", wavSpec{format: 1, channels: 1, rate: 16000, bits: 16, junkFirst: true}},
		{"streamed size", wavSpec{format: 1, channels: 1, rate: 8000, bits: 16, dataSize: 0xFFFFFFFF}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			s.frames = s.rate // one second
			s.signal = sine(1000, 0.5, s.rate)
			path := writeFile(t, "tone.wav", makeWAV(t, s))
			src, err := OpenWAV(path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			info := src.Info()
			wantFrames := int64(s.rate)
			if s.dataSize == 0xFFFFFFFF {
				wantFrames = -1
			}
			if info.Format != s.format || info.Channels != s.channels || info.Rate != s.rate || info.Bits != s.bits || info.Frames != wantFrames {
				t.Fatalf("Info = %+v, want format %d, %d ch, %d Hz, %d bits, %d frames", info, s.format, s.channels, s.rate, s.bits, wantFrames)
			}
			pcm := readAll(t, src)
			if d := len(pcm) - SampleRate; d < -FrameSamples || d > FrameSamples {
				t.Fatalf("decoded %d samples, want %d ± one frame", len(pcm), SampleRate)
			}
			if share := toneShare(pcm, 1000); share < 0.9 {
				t.Fatalf("1 kHz holds %.3f of the power, want >= 0.9", share)
			}
			// Amplitude 0.5 of full scale: power 0.125 (G.711 and 8 bits are coarser).
			if p := MeanPower(pcm); p < 0.11 || p > 0.14 {
				t.Fatalf("mean power %.4f, want about 0.125", p)
			}
			if n, err := src.ReadFrame(make([]int16, 160)); n != 0 || err != io.EOF {
				t.Fatalf("read after the end = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

// Resampling 48 and 44.1 kHz to 8 kHz must filter what lies above 4 kHz
// rather than fold it into the telephone band.
func TestWAVResamplingSuppressesAliases(t *testing.T) {
	for _, c := range []struct {
		rate        int
		tone, alias float64
	}{
		{48000, 6000, 2000},
		{44100, 5000, 3000},
		{48000, 4600, 3400},
		{16000, 7000, 1000},
	} {
		name := strconv.Itoa(c.rate) + "Hz tone " + strconv.Itoa(int(c.tone))
		t.Run(name, func(t *testing.T) {
			spec := wavSpec{format: 1, channels: 1, rate: c.rate, bits: 16, frames: c.rate, signal: sine(c.tone, 0.5, c.rate)}
			src, err := NewWAV(bytes.NewReader(makeWAV(t, spec)))
			if err != nil {
				t.Fatal(err)
			}
			pcm := readAll(t, src)
			const in = 0.125 // power of the input tone
			alias := 10 * math.Log10(Goertzel(pcm, c.alias, SampleRate)/in)
			total := 10 * math.Log10(MeanPower(pcm)/in)
			t.Logf("alias at %v Hz: %.1f dB, all output %.1f dB relative to the input tone", c.alias, alias, total)
			if alias > -30 || total > -30 {
				t.Fatalf("alias at %v Hz %.1f dB, total output %.1f dB; want both <= -30 dB", c.alias, alias, total)
			}
		})
	}
	// The passband keeps its level: 3 kHz survives 48 kHz -> 8 kHz.
	spec := wavSpec{format: 1, channels: 1, rate: 48000, bits: 16, frames: 48000, signal: sine(3000, 0.5, 48000)}
	src, err := NewWAV(bytes.NewReader(makeWAV(t, spec)))
	if err != nil {
		t.Fatal(err)
	}
	pcm := readAll(t, src)
	if g := 10 * math.Log10(Goertzel(pcm, 3000, SampleRate)/0.125); g < -0.5 {
		t.Fatalf("3 kHz after resampling: %.2f dB, want within 0.5 dB", g)
	}
}

func TestWAVErrorsNameFileAndField(t *testing.T) {
	good := wavSpec{format: 1, channels: 1, rate: 8000, bits: 16, frames: 80}
	bad := func(mod func(*wavSpec)) []byte {
		s := good
		mod(&s)
		return makeWAV(t, s)
	}
	noData := makeWAV(t, good)
	noData = noData[:len(noData)-8-160] // cut the data chunk off
	binary.LittleEndian.PutUint32(noData[4:], uint32(len(noData)-8))
	badFmtSize := makeWAV(t, good)
	binary.LittleEndian.PutUint32(badFmtSize[16:], 12)

	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"adpcm", bad(func(s *wavSpec) { s.format = 2; s.bits = 8 }), `format 2 (MS ADPCM) not supported`},
		{"mp3 in wav", bad(func(s *wavSpec) { s.format = 0x55; s.bits = 8 }), `format 85 (MP3) not supported`},
		{"extensible adpcm", bad(func(s *wavSpec) { s.format = 0x11; s.bits = 8; s.extensible = true }), `format 17 (IMA ADPCM) not supported`},
		{"float16", bad(func(s *wavSpec) { s.format = WAVFormatFloat }), `format 3 (float) with 16 bits per sample not supported`},
		{"channels", bad(func(s *wavSpec) { s.channels = 0 }), `fmt chunk: channels 0 not supported`},
		{"rate", bad(func(s *wavSpec) { s.rate = 0 }), `fmt chunk: sample rate 0 not supported`},
		{"not riff", []byte("ID3\x03\x00\x00\x00\x00\x00\x00hello"), `not a RIFF/WAVE file`},
		{"short", []byte("RIFF"), `not a RIFF/WAVE file: unexpected EOF`},
		{"no data", noData, `no data chunk`},
		{"fmt size", badFmtSize, `fmt chunk: size 12, want at least 16`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "x.wav", c.file)
			_, err := OpenWAV(path)
			want := `media: wav ` + strconv.Quote(path) + `: ` + c.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("OpenWAV error = %v\nwant prefix   %s", err, want)
			}
			if _, err := NewWAV(bytes.NewReader(c.file)); err == nil || !strings.HasPrefix(err.Error(), "media: wav: "+c.want) {
				t.Fatalf("NewWAV error = %v, want prefix media: wav: %s", err, c.want)
			}
		})
	}
	if _, err := OpenWAV(filepath.Join(t.TempDir(), "missing.wav")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenWAV of a missing file: %v, want ErrNotExist", err)
	}
}

// A data chunk longer than the file (a recording cut short) plays what is there.
func TestWAVTruncatedDataEndsEarly(t *testing.T) {
	b := makeWAV(t, wavSpec{format: 1, channels: 1, rate: 8000, bits: 16, frames: 8000, signal: sine(1000, 0.5, 8000)})
	b = b[:len(b)-8000] // drop the last 4000 frames
	src, err := NewWAV(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if pcm := readAll(t, src); len(pcm) != 4000 {
		t.Fatalf("decoded %d samples, want the 4000 present", len(pcm))
	}
}

func TestOpenChoosesByExtensionAndContent(t *testing.T) {
	wav := makeWAV(t, wavSpec{format: 1, channels: 1, rate: 8000, bits: 16, frames: 800, signal: sine(1000, 0.5, 8000)})
	mp3Bytes, err := os.ReadFile(filepath.Join("..", "..", "testdata", "media", "tone1k.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"a.WAV", wav, "*media.WAVSource"},
		{"prompt.bin", wav, "*media.WAVSource"},
		{"b.mp3", mp3Bytes, "*media.MP3Source"},
		{"prompt", mp3Bytes, "*media.MP3Source"},
		{"misnamed.wav", mp3Bytes, "*media.MP3Source"},
	} {
		src, err := Open(writeFile(t, c.name, c.data))
		if err != nil {
			t.Fatalf("Open(%s): %v", c.name, err)
		}
		if got := fmt.Sprintf("%T", src); got != c.want {
			t.Errorf("Open(%s) = %s, want %s", c.name, got, c.want)
		}
		if pcm := readAll(t, src); toneShare(pcm, 1000) < 0.9 {
			t.Errorf("Open(%s): no 1 kHz tone in the audio", c.name)
		}
	}
	p := writeFile(t, "notes.txt", []byte("hello, this is not audio"))
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), strconv.Quote(p)) {
		t.Fatalf("Open of a text file: %v, want an error naming it", err)
	}
}

// OpenWAV closes its file at the end by itself, so Play needs no cleanup.
func TestOpenWAVClosesFileAtEOF(t *testing.T) {
	p := writeFile(t, "a.wav", makeWAV(t, wavSpec{format: 1, channels: 1, rate: 8000, bits: 16, frames: 400}))
	src, err := OpenWAV(p)
	if err != nil {
		t.Fatal(err)
	}
	f := src.owned.(*os.File)
	readAll(t, src)
	if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("file still open after EOF: Stat = %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close after EOF: %v", err)
	}
}

func TestWAVReadFrameDoesNotAllocate(t *testing.T) {
	for _, rate := range []int{8000, 44100, 48000} {
		spec := wavSpec{format: 1, channels: 2, rate: rate, bits: 16, frames: rate * 5, signal: sine(1000, 0.5, rate)}
		src, err := NewWAV(bytes.NewReader(makeWAV(t, spec)))
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, FrameSamples)
		for i := 0; i < 10; i++ {
			src.ReadFrame(pcm)
		}
		if a := testing.AllocsPerRun(100, func() { src.ReadFrame(pcm) }); a != 0 {
			t.Errorf("%d Hz: %v allocations per frame, want 0", rate, a)
		}
	}
}
