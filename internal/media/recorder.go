package media

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// StopReason says why a recording ended.
type StopReason string

// The reasons a recording ends.
const (
	// StopMaxDuration: RecordOptions.MaxDuration was reached (or, when the
	// peer stopped sending, that much wall-clock time passed).
	StopMaxDuration StopReason = "max_duration"
	// StopSilence: RecordOptions.SilenceAbort of continuous silence, or of
	// no audio packets at all.
	StopSilence StopReason = "silence"
	// StopDTMF: a digit of RecordOptions.TerminateOn was pressed.
	StopDTMF StopReason = "dtmf"
	// StopMaxDigits: RecordOptions.MaxDigits digits were pressed.
	StopMaxDigits StopReason = "max_digits"
	// StopHangup: the session was closed (the call ended).
	StopHangup StopReason = "hangup"
	// StopCancelled: the caller ended the recording (context cancelled,
	// Stop or Close without another reason).
	StopCancelled StopReason = "cancelled"
	// StopError: writing the file failed; Close returns the error.
	StopError StopReason = "error"
)

// RecordOptions are the limits of a recording. The zero value records
// until the caller stops it.
type RecordOptions struct {
	// MaxDuration ends the recording when it holds this much audio; 0 means
	// no limit (but at most the 4 GiB a WAV file can hold, 74 hours).
	MaxDuration time.Duration
	// SilenceAbort ends the recording after this much continuous silence
	// (see SilenceThreshold), which includes time without any audio
	// packets (a silent or suppressed sender); 0 disables it. The silence
	// stays in the file.
	SilenceAbort time.Duration
	// SilenceThreshold is the level in dBFS below which audio counts as
	// silence; 0 means DefaultSilenceThreshold (-40).
	SilenceThreshold float64
	// TerminateOn lists the DTMF keys that end the recording, e.g. "#" or
	// "*#"; empty means none do.
	TerminateOn string
	// MaxDigits ends the recording once this many keys were pressed; 0
	// means no limit.
	MaxDigits int
}

// RecordResult describes a finished recording.
type RecordResult struct {
	// Duration is the length of the audio in the file.
	Duration time.Duration
	// Reason is why the recording ended.
	Reason StopReason
	// Digits are the DTMF keys pressed during the recording, in order,
	// including the one that ended it.
	Digits string
}

const (
	wavHeaderLen = 44
	// maxWAVSamples keeps the RIFF sizes within 32 bits.
	maxWAVSamples = (1<<32 - 1 - wavHeaderLen) / 2
	// wallGrace is how far wall-clock time may run ahead of the recorded
	// audio before MaxDuration ends a recording whose peer went quiet;
	// it covers network delay and jitter.
	wallGrace = 500 * time.Millisecond
	// silenceGrace is how long packets may be missing before the gap
	// counts towards SilenceAbort; while audio flows, the audio decides.
	silenceGrace = 200 * time.Millisecond
)

// Recorder writes 8 kHz 16-bit mono audio to a WAV file, enforcing
// RecordOptions. It implements Handler, so a Listen (Record's, or one an
// IVR keeps running) can feed it; lost packets are filled with silence
// from the RTP timestamps so the file keeps real time.
//
// The file is written under a temporary name in the same directory and
// renamed to its path by Close once the header is final, so the path never
// holds a half-written file. Its methods are safe for concurrent use.
type Recorder struct {
	mu         sync.Mutex
	opts       RecordOptions
	path, tmp  string
	f          *os.File
	w          *bufio.Writer
	enc        []byte
	samples    int64
	maxSamples int64
	det        SilenceDetector
	reason     StopReason
	digits     []rune
	err        error
	done       chan struct{}
	closed     bool

	// Real-time bookkeeping for packets (Audio) and the watchdog.
	haveTS     bool
	nextTS     uint32
	started    time.Time
	lastAudio  time.Time     // zero until the first audio
	silentLast time.Duration // the detector's silence run at lastAudio
	timer      *time.Timer
}

// NewRecorder creates the recording for path (the directory must exist).
// Recording starts at once: the watchdog for MaxDuration and SilenceAbort
// counts from now, so feed it promptly.
func NewRecorder(path string, opts RecordOptions) (*Recorder, error) {
	if opts.MaxDuration < 0 || opts.SilenceAbort < 0 || opts.MaxDigits < 0 {
		return nil, fmt.Errorf("media: record %q: negative limit in options %+v", path, opts)
	}
	for _, d := range opts.TerminateOn {
		if _, ok := normalizeDigit(d); !ok {
			return nil, fmt.Errorf("media: record %q: TerminateOn: %q is not a DTMF key", path, d)
		}
	}
	opts.TerminateOn = strings.ToUpper(opts.TerminateOn)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("media: record %q: %w", path, err)
	}
	r := &Recorder{
		opts:       opts,
		path:       path,
		tmp:        f.Name(),
		f:          f,
		w:          bufio.NewWriterSize(f, 16<<10),
		enc:        make([]byte, 2*FrameSamples),
		maxSamples: maxWAVSamples,
		det:        SilenceDetector{Threshold: opts.SilenceThreshold, Hold: opts.SilenceAbort},
		done:       make(chan struct{}),
		started:    time.Now(),
	}
	if opts.MaxDuration > 0 {
		r.maxSamples = min(r.maxSamples, int64(opts.MaxDuration/(time.Second/SampleRate)))
	}
	var hdr [wavHeaderLen]byte
	putWAVHeader(hdr[:], 0)
	if _, err := r.w.Write(hdr[:]); err != nil {
		f.Close()
		os.Remove(r.tmp)
		return nil, fmt.Errorf("media: record %q: %w", path, err)
	}
	if opts.MaxDuration > 0 || opts.SilenceAbort > 0 {
		r.mu.Lock() // watch may run before the assignment otherwise
		r.timer = time.AfterFunc(r.nextCheck(r.started), r.watch)
		r.mu.Unlock()
	}
	return r, nil
}

// putWAVHeader writes the canonical 44-byte header of an 8 kHz 16-bit mono
// PCM file with dataBytes of audio.
func putWAVHeader(b []byte, dataBytes uint32) { putPCMHeader(b, 1, dataBytes) }

// putPCMHeader writes the canonical 44-byte header of an 8 kHz 16-bit PCM
// file of channels channels with dataBytes of audio.
func putPCMHeader(b []byte, channels uint16, dataBytes uint32) {
	copy(b[0:4], "RIFF")
	binary.LittleEndian.PutUint32(b[4:8], 36+dataBytes)
	copy(b[8:16], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:20], 16)
	binary.LittleEndian.PutUint16(b[20:22], WAVFormatPCM)
	binary.LittleEndian.PutUint16(b[22:24], channels)
	binary.LittleEndian.PutUint32(b[24:28], SampleRate)
	binary.LittleEndian.PutUint32(b[28:32], SampleRate*2*uint32(channels))
	binary.LittleEndian.PutUint16(b[32:34], 2*channels)
	binary.LittleEndian.PutUint16(b[34:36], 16)
	copy(b[36:40], "data")
	binary.LittleEndian.PutUint32(b[40:44], dataBytes)
}

// Write appends 8 kHz audio. Once the recording has stopped (Stopped is
// not empty) further audio is ignored. The error is that of writing the
// file, which also stops the recording.
func (r *Recorder) Write(pcm []int16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writeLocked(pcm, time.Now())
	return r.err
}

func (r *Recorder) writeLocked(pcm []int16, now time.Time) {
	for len(pcm) > 0 && r.reason == "" {
		n := min(len(pcm), FrameSamples, int(r.maxSamples-r.samples))
		for i, v := range pcm[:n] {
			binary.LittleEndian.PutUint16(r.enc[2*i:], uint16(v))
		}
		if _, err := r.w.Write(r.enc[:2*n]); err != nil {
			r.err = fmt.Errorf("media: record %q: %w", r.path, err)
			r.stopLocked(StopError)
			return
		}
		r.samples += int64(n)
		silent := r.det.Feed(pcm[:n])
		pcm = pcm[n:]
		r.lastAudio, r.silentLast = now, r.det.Silent()
		switch {
		case r.samples >= r.maxSamples:
			r.stopLocked(StopMaxDuration)
		case silent && r.opts.SilenceAbort > 0:
			r.stopLocked(StopSilence)
		}
	}
}

// Audio implements Handler: it writes a packet's audio, first filling a
// gap in the RTP timestamps (lost packets, suppressed silence) with
// silence as long as the gap is no longer than the wall-clock time that
// passed. A packet older than the last one (late or duplicated) is dropped;
// a jump of the timestamps further than that is a new stream and starts
// a new timeline.
func (r *Recorder) Audio(pcm []int16, seq uint16, ts uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != "" {
		return
	}
	now := time.Now()
	if r.haveTS {
		gap := int64(int32(ts - r.nextTS))
		switch {
		case gap < 0 && gap > -SampleRate:
			return // late or duplicate packet: its place was filled already
		case gap > 0:
			ref := r.lastAudio
			if ref.IsZero() {
				ref = r.started
			}
			if limit := int64(now.Sub(ref)/(time.Second/SampleRate)) + SampleRate; gap <= limit {
				r.writeSilenceLocked(gap, now)
			}
		}
	}
	r.haveTS, r.nextTS = true, ts+uint32(len(pcm))
	r.writeLocked(pcm, now)
}

func (r *Recorder) writeSilenceLocked(n int64, now time.Time) {
	var zero [FrameSamples]int16
	for n > 0 && r.reason == "" {
		k := min(n, FrameSamples)
		r.writeLocked(zero[:k], now)
		n -= k
	}
}

// DTMF implements Handler: it collects the digit and stops the recording
// on a TerminateOn key or at MaxDigits.
func (r *Recorder) DTMF(digit rune, durationMs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != "" {
		return
	}
	digit, _ = normalizeDigit(digit)
	r.digits = append(r.digits, digit)
	switch {
	case strings.ContainsRune(r.opts.TerminateOn, digit):
		r.stopLocked(StopDTMF)
	case r.opts.MaxDigits > 0 && len(r.digits) >= r.opts.MaxDigits:
		r.stopLocked(StopMaxDigits)
	}
}

// Stop ends the recording with reason, unless it has ended already. The
// file is finished by Close.
func (r *Recorder) Stop(reason StopReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked(reason)
}

func (r *Recorder) stopLocked(reason StopReason) {
	if r.reason != "" {
		return
	}
	r.reason = reason
	close(r.done)
	if r.timer != nil {
		r.timer.Stop()
	}
}

// Done is closed when the recording stops by itself or by Stop.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Stopped returns why the recording stopped, or "" while it runs.
func (r *Recorder) Stopped() StopReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

// Result returns the recording's length, stop reason and digits so far.
func (r *Recorder) Result() RecordResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RecordResult{
		Duration: time.Duration(r.samples) * time.Second / SampleRate,
		Reason:   r.reason,
		Digits:   string(r.digits),
	}
}

// nextCheck returns how long the watchdog may sleep after now.
func (r *Recorder) nextCheck(now time.Time) time.Duration {
	next := time.Duration(1<<63 - 1)
	if r.opts.MaxDuration > 0 {
		next = r.started.Add(r.opts.MaxDuration + wallGrace).Sub(now)
	}
	if r.opts.SilenceAbort > 0 {
		next = min(next, r.silenceSince().Add(r.opts.SilenceAbort+silenceGrace).Sub(now))
	}
	return max(next, time.Millisecond)
}

// silenceSince estimates the wall-clock start of the current silence.
func (r *Recorder) silenceSince() time.Time {
	if r.lastAudio.IsZero() {
		return r.started
	}
	return r.lastAudio.Add(-r.silentLast)
}

// watch ends recordings whose audio stopped arriving: the peer may send
// nothing during silence, or nothing at all.
func (r *Recorder) watch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != "" || r.closed {
		return
	}
	now := time.Now()
	switch {
	case r.opts.MaxDuration > 0 && now.Sub(r.started) >= r.opts.MaxDuration+wallGrace:
		r.stopLocked(StopMaxDuration)
	case r.opts.SilenceAbort > 0 && now.Sub(r.silenceSince()) >= r.opts.SilenceAbort+silenceGrace:
		r.stopLocked(StopSilence)
	default:
		r.timer.Reset(r.nextCheck(now))
	}
}

// Close stops the recording (with StopCancelled unless it had stopped),
// completes the WAV header and moves the file to its path. It returns the
// first error writing the file met; then no file is left behind. Later
// calls return the same error.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	r.stopLocked(StopCancelled)
	err := r.err
	if err == nil {
		err = r.finish()
	}
	if err != nil {
		r.f.Close()
		os.Remove(r.tmp)
		if r.err == nil {
			r.err = fmt.Errorf("media: record %q: %w", r.path, err)
		}
		return r.err
	}
	return nil
}

func (r *Recorder) finish() error {
	var hdr [wavHeaderLen]byte
	putWAVHeader(hdr[:], uint32(2*r.samples))
	// A voicemail must survive a crash right after the caller hung up.
	return finishWAV(r.w, r.f, hdr[:], 0o644, r.tmp, r.path)
}

// finishWAV completes a WAV written under tmp: flushes w, writes its final
// header, syncs (a recording must survive a crash right after the call),
// sets its mode, closes it and moves it to path, where it appears whole.
func finishWAV(w *bufio.Writer, f *os.File, hdr []byte, mode os.FileMode, tmp, path string) error {
	if err := w.Flush(); err != nil {
		return err
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Abort stops the recording and deletes it; nothing appears at the path.
func (r *Recorder) Abort() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked(StopCancelled)
	if r.closed {
		return nil
	}
	r.closed = true
	r.f.Close()
	if err := os.Remove(r.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("media: record %q: %w", r.path, err)
	}
	return nil
}

// Record records what the session receives to a WAV file at path until
// one of opts' limits, a hangup (the session closed) or ctx ends it, and
// says which. The error is only about the file (or another reader of the
// session); a hangup is a normal end with Reason StopHangup, a cancelled
// ctx one with StopCancelled. It runs a Listen of its own; an IVR that
// keeps a Listen running feeds a NewRecorder from its handler instead.
func Record(ctx context.Context, s *Session, path string, opts RecordOptions) (RecordResult, error) {
	rec, err := NewRecorder(path, opts)
	if err != nil {
		return RecordResult{}, err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-rec.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	lerr := s.Listen(lctx, rec)
	switch {
	case rec.Stopped() != "":
		lerr = nil
	case errors.Is(lerr, net.ErrClosed):
		rec.Stop(StopHangup)
		lerr = nil
	case ctx.Err() != nil:
		rec.Stop(StopCancelled)
		lerr = nil
	}
	if lerr != nil {
		rec.Abort()
		return rec.Result(), fmt.Errorf("media: record %q: %w", path, lerr)
	}
	if err := rec.Close(); err != nil {
		return rec.Result(), err
	}
	return rec.Result(), nil
}
