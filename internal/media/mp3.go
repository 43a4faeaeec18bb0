package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/hajimehoshi/go-mp3"
)

// mp3DecoderDelay is the delay of the standard MP3 synthesis filterbank in
// samples; go-mp3 has it like every reference-derived decoder. Gapless
// trimming (the LAME tag) counts it on top of the encoder's delay.
const mp3DecoderDelay = 529

// MP3Source is a Source decoding an MP3 file (MPEG-1/2/2.5 Layer III) with
// github.com/hajimehoshi/go-mp3, mixed down to mono and resampled to 8 kHz.
// When the file has a LAME/Xing info tag, the encoder's delay and padding
// are cut off (gapless decoding), so the audio has exactly the original
// length; without one, up to about 50 ms of silence lead and trail.
//
// go-mp3 allocates a buffer per decoded MP3 frame (26 ms at 44.1 kHz), so
// MP3 playback is not allocation-free; for prompts played by many calls at
// once, prefer 8 kHz WAV.
type MP3Source struct {
	name  string
	dec   *mp3.Decoder
	owned io.Closer
	rate  int

	skip  int64 // decoded sample frames still to drop at the start
	left  int64 // sample frames still to deliver, -1 = until the end
	raw   []byte
	mono  []int16
	rs    *Resampler
	out   []int16
	pos   int
	eof   bool
	rdErr error
}

// OpenMP3 opens an MP3 file for playback. The file is closed when the
// source reaches its end; call Close to release it earlier.
func OpenMP3(path string) (*MP3Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: mp3: %w", err)
	}
	return openMP3File(f, path)
}

// openMP3File decodes the MP3 in f, which it owns from now on.
func openMP3File(f *os.File, path string) (*MP3Source, error) {
	m, err := newMP3(f, strconv.Quote(path))
	if err != nil {
		f.Close()
		return nil, err
	}
	m.owned = f
	return m, nil
}

// NewMP3 decodes an MP3 stream from r. Close does not close r.
func NewMP3(r io.Reader) (*MP3Source, error) { return newMP3(r, "") }

func newMP3(r io.Reader, name string) (*MP3Source, error) {
	m := &MP3Source{name: name, left: -1}
	br := bufio.NewReaderSize(r, 16<<10)
	if err := skipID3v2(br); err != nil {
		return nil, m.errorf("id3 tag: %w", err)
	}
	gl := readGapless(br)
	// go-mp3 gets a reader that cannot seek, so it decodes as it reads
	// instead of scanning the whole file for frame offsets first.
	dec, err := mp3.NewDecoder(struct{ io.Reader }{br})
	if err != nil {
		return nil, m.errorf("%w", err)
	}
	m.dec, m.rate = dec, dec.SampleRate()
	if gl.infoFrame {
		m.skip = int64(gl.samplesPerFrame)
		if gl.lame {
			m.skip += int64(gl.delay) + mp3DecoderDelay
			if gl.frames > 0 {
				m.left = max(0, int64(gl.frames)*int64(gl.samplesPerFrame)-int64(gl.delay)-int64(gl.padding))
			}
		}
	}
	rs, err := NewResampler(m.rate, SampleRate)
	if err != nil {
		return nil, m.errorf("%w", err)
	}
	m.rs = rs
	frames := max(m.rate/50, FrameSamples)
	m.raw = make([]byte, 4*frames)
	m.mono = make([]int16, frames)
	m.out = make([]int16, 0, 2*(frames*SampleRate/m.rate+1)+4*FrameSamples)
	return m, nil
}

func (m *MP3Source) errorf(format string, args ...any) error {
	if m.name == "" {
		return fmt.Errorf("media: mp3: "+format, args...)
	}
	return fmt.Errorf("media: mp3 "+m.name+": "+format, args...)
}

// SampleRate returns the MP3's own sample rate.
func (m *MP3Source) SampleRate() int { return m.rate }

// ReadFrame fills pcm with 8 kHz mono samples and returns io.EOF after the
// last one. A corrupt frame in the middle ends the audio with an error.
func (m *MP3Source) ReadFrame(pcm []int16) (int, error) {
	for len(m.out)-m.pos < len(pcm) && !m.eof {
		m.fill()
	}
	n := copy(pcm, m.out[m.pos:])
	m.pos += n
	if n == 0 && m.eof {
		m.Close()
		if m.rdErr != nil {
			return 0, m.rdErr
		}
		return 0, io.EOF
	}
	return n, nil
}

func (m *MP3Source) fill() {
	if m.pos > 0 {
		k := copy(m.out, m.out[m.pos:])
		m.out, m.pos = m.out[:k], 0
	}
	got, err := io.ReadFull(m.dec, m.raw)
	frames := got / 4
	b := m.raw[:frames*4]
	if m.skip > 0 {
		d := min(m.skip, int64(frames))
		m.skip -= d
		b = b[4*d:]
	}
	if m.left >= 0 && int64(len(b)/4) > m.left {
		b = b[:4*m.left]
	}
	if n := len(b) / 4; n > 0 {
		if m.left >= 0 {
			m.left -= int64(n)
		}
		mono := m.mono[:n]
		for i := range mono {
			l := int32(int16(binary.LittleEndian.Uint16(b[4*i:])))
			r := int32(int16(binary.LittleEndian.Uint16(b[4*i+2:])))
			mono[i] = int16((l + r) / 2)
		}
		m.out = m.rs.Resample(m.out, mono)
	}
	if err == nil && m.left != 0 {
		return
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		m.rdErr = m.errorf("decoding: %w", err)
	}
	m.out = m.rs.Flush(m.out)
	m.eof = true
}

// Close releases the file opened by OpenMP3; later reads return io.EOF.
func (m *MP3Source) Close() error {
	m.eof = true
	m.out, m.pos = m.out[:0], 0
	if m.owned != nil {
		c := m.owned
		m.owned = nil
		return c.Close()
	}
	return nil
}

// skipID3v2 consumes an ID3v2 tag at the start, which may be far larger
// than the peek buffer (cover art), so readGapless can see the first frame.
func skipID3v2(br *bufio.Reader) error {
	h, err := br.Peek(10)
	if err != nil || string(h[0:3]) != "ID3" {
		return nil // too short for a tag; the decoder reports what is wrong
	}
	size := int(h[6]&0x7f)<<21 | int(h[7]&0x7f)<<14 | int(h[8]&0x7f)<<7 | int(h[9]&0x7f)
	size += 10
	if h[5]&0x10 != 0 { // footer present
		size += 10
	}
	if _, err := br.Discard(size); err != nil {
		return eofAsUnexpected(err)
	}
	return nil
}

// gapless is what the Xing/Info and LAME tags of the first frame say.
type gapless struct {
	infoFrame       bool // the first frame is a Xing/Info frame, not audio
	lame            bool // encoder delay and padding are known
	frames          int  // audio frames after the info frame, 0 = unknown
	delay, padding  int
	samplesPerFrame int
}

// readGapless peeks at the first MP3 frame for a Xing/Info tag and its LAME
// extension (also written by ffmpeg as "Lavc"/"Lavf").
func readGapless(br *bufio.Reader) gapless {
	var g gapless
	b, _ := br.Peek(512)
	if len(b) < 4 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 || (b[1]>>1)&3 != 1 {
		return g // not a Layer III frame header at the start
	}
	mpeg1 := (b[1]>>3)&3 == 3
	mono := b[3]>>6 == 3
	off := 4
	if b[1]&1 == 0 {
		off += 2 // CRC
	}
	switch {
	case mpeg1 && mono:
		off += 17
	case mpeg1:
		off += 32
	case mono:
		off += 9
	default:
		off += 17
	}
	g.samplesPerFrame = 576
	if mpeg1 {
		g.samplesPerFrame = 1152
	}
	if len(b) < off+8 || (string(b[off:off+4]) != "Xing" && string(b[off:off+4]) != "Info") {
		return g
	}
	g.infoFrame = true
	flags := binary.BigEndian.Uint32(b[off+4:])
	off += 8
	if flags&1 != 0 && len(b) >= off+4 {
		g.frames = int(binary.BigEndian.Uint32(b[off:]))
		off += 4
	}
	if flags&2 != 0 {
		off += 4
	}
	if flags&4 != 0 {
		off += 100
	}
	if flags&8 != 0 {
		off += 4
	}
	if len(b) < off+24 {
		return g
	}
	switch string(b[off : off+4]) {
	case "LAME", "Lavc", "Lavf":
		d := b[off+21:]
		g.delay = int(d[0])<<4 | int(d[1])>>4
		g.padding = int(d[1]&0x0F)<<8 | int(d[2])
		g.lame = true
	}
	return g
}
