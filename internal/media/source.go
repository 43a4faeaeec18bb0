package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
)

const (
	// SampleRate is the audio rate of every Source: 8 kHz, as G.711.
	SampleRate = 8000
	// FrameSamples is the number of samples in one 20 ms RTP packet.
	FrameSamples = 160
	// FrameDuration is the packetization time Play uses.
	FrameDuration = 20 * time.Millisecond
	// maxLateFrames is how far Play may fall behind its schedule before it
	// gives up catching up: bursting a backlog would only overflow the
	// receiver's jitter buffer.
	maxLateFrames = 3
)

// Source produces 8 kHz mono 16-bit audio.
type Source interface {
	// ReadFrame fills up to len(pcm) samples and returns how many it wrote.
	// At the end it returns io.EOF (possibly together with the last samples).
	ReadFrame(pcm []int16) (n int, err error)
}

// NewTone returns a sine tone source; duration 0 makes it endless.
func NewTone(freqHz float64, amplitude int16, duration time.Duration) Source {
	return &tone{
		step:      2 * math.Pi * freqHz / SampleRate,
		amp:       float64(amplitude),
		remaining: int64(duration / (time.Second / SampleRate)),
		endless:   duration == 0,
	}
}

type tone struct {
	step, phase, amp float64
	remaining        int64
	endless          bool
}

func (t *tone) ReadFrame(pcm []int16) (int, error) {
	n := len(pcm)
	if !t.endless {
		if t.remaining == 0 {
			return 0, io.EOF
		}
		if int64(n) > t.remaining {
			n = int(t.remaining)
		}
		t.remaining -= int64(n)
	}
	for i := range pcm[:n] {
		pcm[i] = int16(math.Round(t.amp * math.Sin(t.phase)))
		t.phase += t.step
		if t.phase >= 2*math.Pi {
			t.phase -= 2 * math.Pi
		}
	}
	return n, nil
}

// Play sends src as RTP in the session's codec (PCMU or PCMA), one packet of
// 160 samples every 20 ms. Packet k leaves at start + k*20ms on the monotonic
// clock, so timer jitter never accumulates into drift; after a stall of more
// than three frames the schedule restarts from now instead of bursting the
// backlog. Each Play is a new RTP stream: random SSRC, sequence number and
// timestamp, marker bit on the first packet. A short last frame is padded
// with silence. Play returns nil when src ends and ctx.Err() when cancelled.
func (s *Session) Play(ctx context.Context, src Source) error {
	c := s.Codec()
	l := lawOf(c)
	if l == lawOther {
		return fmt.Errorf("media: play: codec %s not supported (want PCMU or PCMA)", c.Name)
	}

	pcm := make([]int16, FrameSamples)
	pkt := make([]byte, rtpHeaderLen+FrameSamples)
	h := rtp.Header{
		Version:        2,
		Marker:         true,
		PayloadType:    c.PT,
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
		SSRC:           rand.Uint32(),
	}
	if clk := s.clock.Load(); clk != nil {
		return s.playClocked(ctx, clk, src, c, l, h)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	pace := pacer{start: time.Now()}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := readFull(src, pcm)
		if n == 0 {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return fmt.Errorf("media: play: read source: %w", rerr)
		}
		clear(pcm[n:])

		if wait := pace.next(time.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		}

		hn, err := h.MarshalTo(pkt)
		if err != nil {
			return fmt.Errorf("media: play: rtp header: %w", err)
		}
		encodeFrame(pkt[hn:], pcm, l)
		if err := s.WritePacket(pkt[:hn+FrameSamples]); err != nil && s.isClosed(err) {
			return fmt.Errorf("media: play: %w", err)
		}
		h.Marker = false
		h.SequenceNumber++
		h.Timestamp += FrameSamples

		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return fmt.Errorf("media: play: read source: %w", rerr)
		}
	}
}

// pacer schedules packet k at start + k*FrameDuration. Deriving every
// deadline from start (rather than from the previous send) keeps timer
// jitter from accumulating; times from time.Now carry the monotonic clock.
type pacer struct {
	start time.Time
	k     int
}

// next returns how long to wait before sending the next packet at now. When
// the schedule is more than maxLateFrames behind, it is moved so that this
// packet is due now and the following ones keep 20 ms spacing.
func (p *pacer) next(now time.Time) time.Duration {
	due := p.start.Add(time.Duration(p.k) * FrameDuration)
	p.k++
	wait := due.Sub(now)
	if wait < -maxLateFrames*FrameDuration {
		p.start = now.Add(-time.Duration(p.k-1) * FrameDuration)
		return 0
	}
	return max(wait, 0)
}

// readFull fills pcm from src, since a Source may return short reads before
// its end (file chunk boundaries, for instance).
func readFull(src Source, pcm []int16) (int, error) {
	n := 0
	for n < len(pcm) {
		m, err := src.ReadFrame(pcm[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}

// clockAhead is how many encoded packets a clocked Play keeps ready; it
// tops them up when half are gone, so its goroutine wakes once per few
// packets.
const clockAhead = 8

// playClocked decodes and encodes src in this goroutine, clockAhead
// packets ahead, and lets clk send them every 20 ms.
func (s *Session) playClocked(ctx context.Context, clk *Clock, src Source, c Codec, l law, h rtp.Header) error {
	// A ring larger than the channel plus the packet being sent, so a
	// buffer is never rewritten while queued or in flight.
	var ring [clockAhead + 2][rtpHeaderLen + FrameSamples]byte
	st := &clockStream{s: s, frames: make(chan []byte, clockAhead), refill: make(chan struct{}, 1), done: make(chan struct{})}
	clk.register(st)
	pcm := make([]int16, FrameSamples)
	finish := func(err error) error {
		if ctx.Err() != nil {
			st.cancelled.Store(true)
		}
		close(st.frames)
		select {
		case <-st.done:
		case <-ctx.Done():
			// The clock still drains and drops the stream at its next tick.
			if err == nil {
				err = ctx.Err()
			}
		}
		return err
	}
	for i := 0; ; i++ {
		n, rerr := readFull(src, pcm)
		if n == 0 {
			if errors.Is(rerr, io.EOF) {
				return finish(nil)
			}
			return finish(fmt.Errorf("media: play: read source: %w", rerr))
		}
		clear(pcm[n:])
		pkt := ring[i%len(ring)][:]
		hn, err := h.MarshalTo(pkt)
		if err != nil {
			return finish(fmt.Errorf("media: play: rtp header: %w", err))
		}
		encodeFrame(pkt[hn:], pcm, l)
		// Only this goroutine sends on frames, so it never blocks while
		// there is room; when it is full, wait for the clock to ask for more.
		for len(st.frames) == cap(st.frames) {
			select {
			case <-st.refill:
			case <-ctx.Done():
				return finish(ctx.Err())
			}
		}
		st.frames <- pkt[:hn+FrameSamples]
		h.Marker = false
		h.SequenceNumber++
		h.Timestamp += FrameSamples
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return finish(nil)
			}
			return finish(fmt.Errorf("media: play: read source: %w", rerr))
		}
	}
}
