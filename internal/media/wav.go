package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WAV files are parsed here rather than with github.com/go-audio/wav: its
// PCMBuffer allocates three buffers per call (the per-frame path must not),
// it ignores the format tag (a µ-law file decodes as 8-bit PCM noise), it
// does not look into WAVE_FORMAT_EXTENSIBLE, and it has no float support.
// RIFF is a dozen lines of chunk walking, so owning it is cheaper than
// working around those.

// WAV format tags (the fmt chunk's wFormatTag, or the first two bytes of
// the SubFormat GUID of WAVE_FORMAT_EXTENSIBLE).
const (
	WAVFormatPCM        = 1
	WAVFormatFloat      = 3
	WAVFormatALaw       = 6
	WAVFormatMuLaw      = 7
	wavFormatExtensible = 0xFFFE
)

var wavFormatNames = map[int]string{
	WAVFormatPCM:   "PCM",
	2:              "MS ADPCM",
	WAVFormatFloat: "float",
	WAVFormatALaw:  "A-law",
	WAVFormatMuLaw: "µ-law",
	0x11:           "IMA ADPCM",
	0x31:           "GSM 6.10",
	0x40:           "G.721 ADPCM",
	0x50:           "MPEG",
	0x55:           "MP3",
	0x64:           "G.726 ADPCM",
}

func wavFormatName(f int) string {
	if n, ok := wavFormatNames[f]; ok {
		return strconv.Itoa(f) + " (" + n + ")"
	}
	return strconv.Itoa(f)
}

// WAVInfo describes the audio in a WAV file as stored, before conversion.
type WAVInfo struct {
	// Format is the format tag: WAVFormatPCM, WAVFormatFloat, WAVFormatALaw
	// or WAVFormatMuLaw (for WAVE_FORMAT_EXTENSIBLE, its sub-format).
	Format int
	// Channels is the number of interleaved channels.
	Channels int
	// Rate is the sample rate in Hz.
	Rate int
	// Bits is the stored size of one sample in bits (the container size,
	// so 24-bit audio in 32-bit words says 32).
	Bits int
	// Frames is the number of sample frames in the data chunk, or -1 when
	// the header does not say (a streamed file with size 0xFFFFFFFF).
	Frames int64
}

// Duration returns the playing time of Frames, or -1 when unknown.
func (i WAVInfo) Duration() time.Duration {
	if i.Frames < 0 || i.Rate <= 0 {
		return -1
	}
	return time.Duration(i.Frames) * time.Second / time.Duration(i.Rate)
}

// WAVSource is a Source reading a WAV file: any sample rate, any number of
// channels (mixed down to mono), PCM 8 (unsigned), 16, 24 and 32 bits,
// 32- and 64-bit float, G.711 µ-law and A-law, converted to 8 kHz. After
// the first frames it reads without allocating.
type WAVSource struct {
	info       WAVInfo
	name       string // for errors; "" when built from a reader
	r          io.Reader
	owned      io.Closer // the file OpenWAV opened, closed at the end
	remaining  int64     // data bytes left, -1 = until EOF
	blockAlign int
	width      int // bytes per stored sample

	raw    []byte
	mono   []int16
	rs     *Resampler
	out    []int16 // resampled samples not yet returned
	outPos int
	eof    bool // the input is exhausted and the resampler flushed
}

// OpenWAV opens a WAV file for playback. The file is closed when the
// source reaches its end; call Close to release it earlier.
func OpenWAV(path string) (*WAVSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: wav: %w", err)
	}
	return openWAVFile(f, path)
}

// openWAVFile reads the WAV in f, which it owns from now on.
func openWAVFile(f *os.File, path string) (*WAVSource, error) {
	// Reads of 20 ms would be a system call each; a prompt played by a
	// thousand calls at once wants fewer.
	w, err := newWAV(bufio.NewReaderSize(f, 16<<10), strconv.Quote(path))
	if err != nil {
		f.Close()
		return nil, err
	}
	w.owned = f
	return w, nil
}

// NewWAV reads a WAV stream from r (an io.ReadSeeker such as an *os.File or
// *bytes.Reader; seeking is not needed). Close does not close r.
func NewWAV(r io.Reader) (*WAVSource, error) { return newWAV(r, "") }

func newWAV(r io.Reader, name string) (*WAVSource, error) {
	w := &WAVSource{name: name, r: r}
	if err := w.parseHeader(); err != nil {
		return nil, w.errorf("%w", err)
	}
	rs, err := NewResampler(w.info.Rate, SampleRate)
	if err != nil {
		return nil, w.errorf("%w", err)
	}
	w.rs = rs
	// About 20 ms of input per read keeps buffers small and the latency of
	// the first frame low.
	frames := max(w.info.Rate/50, FrameSamples)
	w.raw = make([]byte, frames*w.blockAlign)
	w.mono = make([]int16, frames)
	w.out = make([]int16, 0, 2*(frames*SampleRate/w.info.Rate+1)+4*FrameSamples)
	return w, nil
}

func (w *WAVSource) errorf(format string, args ...any) error {
	if w.name == "" {
		return fmt.Errorf("media: wav: "+format, args...)
	}
	return fmt.Errorf("media: wav "+w.name+": "+format, args...)
}

// Info returns the stored format of the file.
func (w *WAVSource) Info() WAVInfo { return w.info }

// parseHeader walks the RIFF chunks up to the start of the data chunk.
func (w *WAVSource) parseHeader() error {
	var hdr [12]byte
	if _, err := io.ReadFull(w.r, hdr[:]); err != nil {
		return fmt.Errorf("not a RIFF/WAVE file: %w", eofAsUnexpected(err))
	}
	switch string(hdr[0:4]) {
	case "RIFF", "RF64":
	case "RIFX":
		return errors.New("big-endian RIFX files not supported")
	default:
		return fmt.Errorf("not a RIFF/WAVE file (starts with %q)", hdr[0:4])
	}
	if string(hdr[8:12]) != "WAVE" {
		return fmt.Errorf("RIFF form type %q, want \"WAVE\"", hdr[8:12])
	}
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(w.r, ch[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("no data chunk")
			}
			return fmt.Errorf("reading chunk header: %w", eofAsUnexpected(err))
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if err := w.parseFmt(size); err != nil {
				return err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return errors.New("data chunk before fmt chunk")
			}
			w.remaining = size
			w.info.Frames = size / int64(w.blockAlign)
			if size == math.MaxUint32 { // streamed without a known length (also RF64)
				w.remaining, w.info.Frames = -1, -1
			}
			return nil
		default:
			if _, err := io.CopyN(io.Discard, w.r, size+size&1); err != nil {
				return fmt.Errorf("chunk %q: %w", id, eofAsUnexpected(err))
			}
		}
	}
}

func (w *WAVSource) parseFmt(size int64) error {
	if size < 16 {
		return fmt.Errorf("fmt chunk: size %d, want at least 16", size)
	}
	var b [40]byte
	n := min(size, int64(len(b)))
	if _, err := io.ReadFull(w.r, b[:n]); err != nil {
		return fmt.Errorf("fmt chunk: %w", eofAsUnexpected(err))
	}
	if rest := size - n + size&1; rest > 0 {
		if _, err := io.CopyN(io.Discard, w.r, rest); err != nil {
			return fmt.Errorf("fmt chunk: %w", eofAsUnexpected(err))
		}
	}
	format := int(binary.LittleEndian.Uint16(b[0:2]))
	channels := int(binary.LittleEndian.Uint16(b[2:4]))
	rate := int(binary.LittleEndian.Uint32(b[4:8]))
	blockAlign := int(binary.LittleEndian.Uint16(b[12:14]))
	bits := int(binary.LittleEndian.Uint16(b[14:16]))
	if format == wavFormatExtensible {
		if n < 40 {
			return fmt.Errorf("fmt chunk: WAVE_FORMAT_EXTENSIBLE with size %d, want 40", size)
		}
		format = int(binary.LittleEndian.Uint16(b[24:26])) // SubFormat GUID starts with the tag
	}
	w.info = WAVInfo{Format: format, Channels: channels, Rate: rate, Bits: bits}

	switch format {
	case WAVFormatPCM, WAVFormatFloat, WAVFormatALaw, WAVFormatMuLaw:
	default:
		return fmt.Errorf("format %s not supported (want PCM, float, µ-law or A-law)", wavFormatName(format))
	}
	if channels < 1 || channels > 32 {
		return fmt.Errorf("fmt chunk: channels %d not supported", channels)
	}
	if rate < 1 || rate > 768000 {
		return fmt.Errorf("fmt chunk: sample rate %d not supported", rate)
	}
	if blockAlign == 0 || blockAlign%channels != 0 {
		return fmt.Errorf("fmt chunk: block align %d does not fit %d channels", blockAlign, channels)
	}
	// The container size comes from the block alignment: 24-bit audio in
	// 32-bit words and 12-bit audio in 16-bit words are decoded by container.
	width := blockAlign / channels
	if bits > 8*width || bits == 0 {
		return fmt.Errorf("fmt chunk: %d bits per sample do not fit block align %d for %d channels", bits, blockAlign, channels)
	}
	ok := false
	switch format {
	case WAVFormatPCM:
		ok = width >= 1 && width <= 4
	case WAVFormatFloat:
		ok = width == 4 || width == 8
	case WAVFormatALaw, WAVFormatMuLaw:
		ok = width == 1
	}
	if !ok {
		return fmt.Errorf("format %s with %d bits per sample not supported", wavFormatName(format), bits)
	}
	w.info.Bits = 8 * width
	w.blockAlign, w.width = blockAlign, width
	return nil
}

func eofAsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadFrame fills pcm with 8 kHz mono samples. It returns io.EOF after the
// last sample; a data chunk cut short by the end of the file just ends the
// audio early, as players do.
func (w *WAVSource) ReadFrame(pcm []int16) (int, error) {
	for len(w.out)-w.outPos < len(pcm) && !w.eof {
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(pcm, w.out[w.outPos:])
	w.outPos += n
	if n == 0 && w.eof {
		w.Close()
		return 0, io.EOF
	}
	return n, nil
}

// fill decodes one chunk of input into w.out.
func (w *WAVSource) fill() error {
	if w.outPos > 0 {
		k := copy(w.out, w.out[w.outPos:])
		w.out, w.outPos = w.out[:k], 0
	}
	want := len(w.raw)
	if w.remaining >= 0 && int64(want) > w.remaining {
		want = int(w.remaining)
	}
	got, err := io.ReadFull(w.r, w.raw[:want])
	if w.remaining >= 0 {
		w.remaining -= int64(got)
	}
	frames := got / w.blockAlign
	if frames > 0 {
		w.decode(w.raw[:frames*w.blockAlign], w.mono[:frames])
		w.out = w.rs.Resample(w.out, w.mono[:frames])
	}
	switch {
	case err == nil && w.remaining != 0:
		return nil
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		w.out = w.rs.Flush(w.out)
		w.eof = true
		return nil
	default:
		w.eof = true
		return w.errorf("reading data: %w", err)
	}
}

// decode mixes the interleaved frames in raw down to mono 16-bit samples.
func (w *WAVSource) decode(raw []byte, mono []int16) {
	ch, width := w.info.Channels, w.width
	if ch == 1 && width == 2 && w.info.Format == WAVFormatPCM {
		for i := range mono {
			mono[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		return
	}
	for i := range mono {
		frame := raw[i*w.blockAlign : (i+1)*w.blockAlign]
		var sum int32
		for c := 0; c < ch; c++ {
			sum += int32(w.sample(frame[c*width : (c+1)*width]))
		}
		mono[i] = int16(sum / int32(ch))
	}
}

// sample decodes one stored sample to 16 bits, keeping the top bits of
// wider formats.
func (w *WAVSource) sample(b []byte) int16 {
	switch w.info.Format {
	case WAVFormatMuLaw:
		return UlawToLinear(b[0])
	case WAVFormatALaw:
		return AlawToLinear(b[0])
	case WAVFormatFloat:
		var f float64
		if len(b) == 4 {
			f = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		} else {
			f = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
		return clip16(float32(f * 32768))
	}
	switch len(b) {
	case 1:
		return int16(b[0]-128) << 8 // 8-bit WAV is unsigned
	case 2:
		return int16(binary.LittleEndian.Uint16(b))
	case 3:
		return int16(uint16(b[1]) | uint16(b[2])<<8)
	default:
		return int16(uint16(b[2]) | uint16(b[3])<<8)
	}
}

// Close releases the file opened by OpenWAV; later reads return io.EOF.
// It does not close a reader passed to NewWAV.
func (w *WAVSource) Close() error {
	w.eof = true
	w.out, w.outPos = w.out[:0], 0
	if w.owned != nil {
		c := w.owned
		w.owned = nil
		return c.Close()
	}
	return nil
}

// FileSource is a Source reading an audio file; Close releases the file
// before the end (at the end the source closes it itself).
type FileSource interface {
	Source
	io.Closer
}

// Open opens a WAV or MP3 file for playback. The content decides (a
// "prompt.wav" that is really an MP3 still plays); the extension (.wav,
// .wave, .mp3) only chooses whose error to report for unrecognised content.
func Open(path string) (FileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: open audio: %w", err)
	}
	var head [12]byte
	n, _ := io.ReadFull(f, head[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("media: open audio: %w", err)
	}
	b := head[:n]
	ext := strings.ToLower(filepath.Ext(path))
	switch {
	case n >= 12 && (string(b[0:4]) == "RIFF" || string(b[0:4]) == "RF64") && string(b[8:12]) == "WAVE":
		return openWAVFile(f, path)
	case n >= 3 && string(b[0:3]) == "ID3", n >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		return openMP3File(f, path)
	case ext == ".wav" || ext == ".wave":
		return openWAVFile(f, path)
	case ext == ".mp3":
		return openMP3File(f, path)
	}
	f.Close()
	return nil, fmt.Errorf("media: open audio %q: neither WAV nor MP3 (starts with %q)", path, b)
}
