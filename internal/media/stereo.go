package media

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Stereo recording of a bridge: the A leg (the caller, the answered
// customer) in the left channel, the B leg (agent or destination) in the
// right, on one timeline that follows the wall clock from the moment the
// recording starts. A side that sends nothing is silence, so the file is as
// long as the bridge and both sides stay aligned however one of them
// behaves (silence suppression, hold, a dead sender).
//
// Each packet is placed by its RTP timestamp relative to the last packet of
// the same stream, so network jitter does not move audio; a stream is
// (re)anchored to the wall clock when it starts, changes SSRC, or drifts
// further than stereoReanchor from where the wall clock puts it. Audio is
// kept in a short window and written once it is stereoLatency old, so the
// file grows as the call goes on and memory stays bounded.
const (
	// stereoLatency is how long audio waits in the window for late
	// packets before it is written.
	stereoLatency = SampleRate / 2
	// stereoWindow is the window size in frames (per channel): the
	// latency plus room for packets up to stereoReanchor ahead, with
	// margin. 48 KB per recorded call.
	stereoWindow = 3 * SampleRate / 2
	// stereoReanchor is how far (in frames) a stream's timestamps may
	// drift from the wall clock before it is placed by the clock again.
	stereoReanchor = SampleRate / 4
	// stereoHeaderLen is the canonical WAV header length.
	stereoHeaderLen = 44
	// maxStereoFrames keeps the RIFF sizes within 32 bits.
	maxStereoFrames = (1<<32 - 1 - stereoHeaderLen) / 4
)

// StereoResult describes a finished stereo recording.
type StereoResult struct {
	// Duration is the length of the audio in the file.
	Duration time.Duration
	// Bytes is the size of the file, header included.
	Bytes int64
}

// StereoRecorder writes the two directions of a Relay to a stereo 16-bit
// 8 kHz PCM WAV file (see the comment above for the timeline). Pass it to
// RelayRecord. The file is written under a temporary name in the same
// directory and renamed to its path by Close once the header is final, so
// the path never holds a half-written file. Its methods are safe for
// concurrent use.
type StereoRecorder struct {
	mu      sync.Mutex
	path    string
	tmp     string
	f       *os.File
	w       *bufio.Writer
	start   time.Time
	written int64 // frames written to the file
	// win holds, per channel, the frames from written on.
	win    [2][]int16
	ch     [2]stereoStream
	enc    []byte
	err    error
	closed bool
	res    StereoResult
}

// stereoStream is where one channel's RTP stream sits on the timeline.
type stereoStream struct {
	have   bool
	ssrc   uint32
	lastTS uint32
	// lastPos is the frame position of the packet with lastTS.
	lastPos int64
}

// NewStereoRecorder creates the recording for path (the directory must
// exist). The timeline starts now.
func NewStereoRecorder(path string) (*StereoRecorder, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("media: stereo record %q: %w", path, err)
	}
	r := &StereoRecorder{path: path, tmp: f.Name(), f: f, w: bufio.NewWriterSize(f, 32<<10),
		start: time.Now(), enc: make([]byte, 4*FrameSamples)}
	r.win[0] = make([]int16, stereoWindow)
	r.win[1] = make([]int16, stereoWindow)
	var hdr [stereoHeaderLen]byte
	putStereoHeader(hdr[:], 0)
	if _, err := r.w.Write(hdr[:]); err != nil {
		f.Close()
		os.Remove(r.tmp)
		return nil, fmt.Errorf("media: stereo record %q: %w", path, err)
	}
	return r, nil
}

// Path is where Close puts the file.
func (r *StereoRecorder) Path() string { return r.path }

// putStereoHeader writes the header of an 8 kHz 16-bit stereo PCM file
// with dataBytes of audio.
func putStereoHeader(b []byte, dataBytes uint32) { putPCMHeader(b, 2, dataBytes) }

// frameAt is the timeline position of t.
func (r *StereoRecorder) frameAt(t time.Time) int64 {
	d := t.Sub(r.start)
	if d < 0 {
		return 0
	}
	return int64(d / (time.Second / SampleRate))
}

// packet records one RTP packet that a relay received from side 0 (A,
// left) or 1 (B, right), in the sender's formats p. Anything but G.711
// audio (telephone-event, comfort noise) is not audio and is skipped.
func (r *StereoRecorder) packet(side int, pkt []byte, p *mediaParams) {
	off, end, ok := payloadBounds(pkt)
	if !ok || end == off {
		return
	}
	pt := pkt[1] & 0x7f
	lw := p.audioLaw(pt)
	if lw == lawOther || (p.dtmfPT >= 0 && int(pt) == p.dtmfPT) {
		return
	}
	tbl := &ulawDecode
	if lw == lawAlaw {
		tbl = &alawDecode
	}
	ts := binary.BigEndian.Uint32(pkt[4:8])
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	payload := pkt[off:end]
	n := int64(len(payload))

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.err != nil {
		return
	}
	wall := r.frameAt(time.Now())
	r.flushLocked(wall - stereoLatency)
	// The packet's audio ends about now.
	expected := wall - n
	st := &r.ch[side]
	pos := expected
	if st.have && st.ssrc == ssrc {
		pos = st.lastPos + int64(int32(ts-st.lastTS))
		if d := pos - expected; d > stereoReanchor || d < -stereoReanchor {
			pos = expected
		}
	}
	if pos < 0 {
		pos = 0
	}
	*st = stereoStream{have: true, ssrc: ssrc, lastTS: ts, lastPos: pos}
	win := r.win[side]
	for i, b := range payload {
		idx := pos + int64(i) - r.written
		if idx < 0 {
			continue // too late: that part of the file is written
		}
		if idx >= stereoWindow {
			break
		}
		win[idx] = tbl[b]
	}
}

// flushLocked writes the frames before target (silence where the window
// holds nothing) and slides the window.
func (r *StereoRecorder) flushLocked(target int64) {
	target = min(target, maxStereoFrames)
	for r.written < target && r.err == nil {
		k := int(min(target-r.written, stereoWindow))
		for done := 0; done < k; {
			m := min(k-done, FrameSamples)
			for i := range m {
				binary.LittleEndian.PutUint16(r.enc[4*i:], uint16(r.win[0][done+i]))
				binary.LittleEndian.PutUint16(r.enc[4*i+2:], uint16(r.win[1][done+i]))
			}
			if _, err := r.w.Write(r.enc[:4*m]); err != nil {
				r.err = fmt.Errorf("media: stereo record %q: %w", r.path, err)
				return
			}
			done += m
		}
		for c := range r.win {
			w := r.win[c]
			copy(w, w[k:])
			clear(w[len(w)-k:])
		}
		r.written += int64(k)
	}
}

// Close ends the recording at end (the end of the bridge; the zero time
// means now), writes the rest of the audio, completes the header and moves
// the file to its path. On error no file is left behind. Later calls
// return the same result.
func (r *StereoRecorder) Close(end time.Time) (StereoResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.res, r.err
	}
	r.closed = true
	if end.IsZero() {
		end = time.Now()
	}
	r.flushLocked(r.frameAt(end))
	err := r.err
	if err == nil {
		err = r.finish()
	}
	if err != nil {
		r.f.Close()
		os.Remove(r.tmp)
		if r.err == nil {
			r.err = fmt.Errorf("media: stereo record %q: %w", r.path, err)
		}
		return StereoResult{}, r.err
	}
	r.res = StereoResult{Duration: time.Duration(r.written) * time.Second / SampleRate,
		Bytes: stereoHeaderLen + 4*r.written}
	return r.res, nil
}

func (r *StereoRecorder) finish() error {
	var hdr [stereoHeaderLen]byte
	putStereoHeader(hdr[:], uint32(4*r.written))
	// A recording is evidence of what was said: keep it across a crash
	// right after the call.
	return finishWAV(r.w, r.f, hdr[:], 0o640, r.tmp, r.path)
}

// Abort stops the recording and deletes it; nothing appears at the path.
func (r *StereoRecorder) Abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.f.Close()
	os.Remove(r.tmp)
}
