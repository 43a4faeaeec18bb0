package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dtmfKeys lists the DTMF keys by RFC 4733 event code (0-15).
const dtmfKeys = "0123456789*#ABCD"

// normalizeDigit returns the canonical form of a DTMF key (upper-case
// A-D) and whether r is one.
func normalizeDigit(r rune) (rune, bool) {
	if r >= 'a' && r <= 'd' {
		r -= 'a' - 'A'
	}
	return r, strings.ContainsRune(dtmfKeys, r)
}

// dtmfEvent returns the RFC 4733 event code of a DTMF key.
func dtmfEvent(r rune) (uint8, bool) {
	r, ok := normalizeDigit(r)
	if !ok {
		return 0, false
	}
	return uint8(strings.IndexRune(dtmfKeys, r)), true
}

// dtmfReceiver turns RFC 4733 telephone-event packets into one report per
// key press. An event is identified by its RTP timestamp, which all its
// packets share: the first end packet reports it, and anything later with
// that timestamp (the retransmitted ends, a reordered update) is ignored.
// Start packets are not needed, so losing them does not lose the digit.
type dtmfReceiver struct {
	cur     uint32 // timestamp of the event being tracked
	curOK   bool
	curEv   uint8
	curDur  uint16
	curDone bool
	rate    int // clock rate of the events, for durations
	// recent remembers the last reported timestamps, so a late end packet
	// of an event reported early (its end was lost) is not reported again.
	recent  [4]uint32
	nrecent int
}

func (r *dtmfReceiver) reported(ts uint32) bool {
	for i := 0; i < r.nrecent; i++ {
		if r.recent[i] == ts {
			return true
		}
	}
	return false
}

func (r *dtmfReceiver) report(ts uint32, ev uint8, dur uint16, rate int, h Handler) {
	copy(r.recent[1:], r.recent[:len(r.recent)-1])
	r.recent[0] = ts
	r.nrecent = min(r.nrecent+1, len(r.recent))
	if int(ev) >= len(dtmfKeys) {
		return // flash and other non-key events are not digits
	}
	if rate <= 0 {
		rate = SampleRate
	}
	h.DTMF(rune(dtmfKeys[ev]), int(dur)*1000/rate)
}

// event handles one telephone-event payload.
func (r *dtmfReceiver) event(ts uint32, p []byte, rate int, h Handler) {
	if len(p) < 4 || r.reported(ts) {
		return
	}
	ev, end, dur := p[0], p[1]&0x80 != 0, binary.BigEndian.Uint16(p[2:4])
	r.rate = rate
	if r.curOK && ts != r.cur && !r.curDone {
		// A new event started but the previous one never ended: all its
		// end packets were lost. It still was a key press.
		r.report(r.cur, r.curEv, r.curDur, rate, h)
	}
	if !r.curOK || ts != r.cur {
		r.cur, r.curOK, r.curEv, r.curDur, r.curDone = ts, true, ev, 0, false
	}
	r.curDur = max(r.curDur, dur)
	if end {
		r.curDone = true
		r.report(ts, ev, r.curDur, rate, h)
	}
}

// audio uses the audio stream's timestamps to finish an event whose end
// packets were all lost: once audio is more than 100 ms past the event's
// last known extent, the key is up. Timestamps more than 10 s away belong
// to another stream (another SSRC) and say nothing.
func (r *dtmfReceiver) audio(ts uint32, h Handler) {
	if !r.curOK || r.curDone {
		return
	}
	d := int32(ts - (r.cur + uint32(r.curDur)))
	if d > 800 && d < 10*SampleRate {
		r.curDone = true
		r.report(r.cur, r.curEv, r.curDur, r.rate, h)
	}
}

// dtmfSender is a Session's outgoing RFC 4733 stream.
type dtmfSender struct {
	mu    sync.Mutex
	init  bool
	ssrc  uint32
	seq   uint16
	base  uint32
	start time.Time
}

const (
	dtmfVolume  = 10 // -10 dBm0, as RFC 4733 examples and most phones use
	dtmfMinTime = 40 * time.Millisecond
	dtmfEnds    = 3 // the end packet is sent three times (RFC 4733 2.5.1.4)
)

// SendDTMF sends one key press of length d as RFC 4733 telephone-events on
// the payload type set by SetDTMF: an event packet every 20 ms, all with
// the timestamp of the press, the marker bit on the first, the duration
// growing by 20 ms each, volume 10; then the end packet three times, 20 ms
// apart. d is kept between 40 ms and the 8 s the duration field can hold.
// It returns after the last end packet. When ctx ends during the press, the
// end packets are still sent (the far end must not hear a stuck key) and
// ctx.Err() is returned.
//
// The events form their own RTP stream (own SSRC, sequence numbers and
// timestamps), separate from a concurrent Play; receivers key events by
// payload type and timestamp, so that is accepted in practice. Calls are
// serialised per session.
func (s *Session) SendDTMF(ctx context.Context, digit rune, d time.Duration) error {
	dc := s.DTMF()
	if dc == nil {
		return errors.New("media: send dtmf: no telephone-event payload type negotiated (SetDTMF)")
	}
	ev, ok := dtmfEvent(digit)
	if !ok {
		return fmt.Errorf("media: send dtmf: %q is not a DTMF key (0-9 * # A-D)", digit)
	}
	rate := dc.Rate
	if rate <= 0 {
		rate = SampleRate
	}
	step := rate / 50 // timestamp units per 20 ms
	maxD := time.Duration(0xFFFF/step) * FrameDuration
	d = min(max(d, dtmfMinTime), maxD)
	packets := int((d + FrameDuration - 1) / FrameDuration)

	o := &s.dtmfOut
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if !o.init {
		o.init, o.ssrc, o.seq, o.base, o.start = true, rand.Uint32(), uint16(rand.Uint32()), rand.Uint32(), now
	}
	// The event's timestamp is the sampling instant of its start on this
	// stream's clock, so consecutive presses never share one.
	ts := o.base + uint32(now.Sub(o.start)*time.Duration(rate)/time.Second)

	var pkt [rtpHeaderLen + 4]byte
	pkt[0] = 0x80
	binary.BigEndian.PutUint32(pkt[4:8], ts)
	binary.BigEndian.PutUint32(pkt[8:12], o.ssrc)
	pkt[12] = ev
	send := func(marker, end bool, dur int) error {
		pkt[1] = dc.PT
		if marker {
			pkt[1] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[2:4], o.seq)
		o.seq++
		pkt[13] = dtmfVolume
		if end {
			pkt[13] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[14:16], uint16(dur))
		if err := s.WritePacket(pkt[:]); err != nil && s.isClosed(err) {
			return fmt.Errorf("media: send dtmf: %w", err)
		}
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	pace := pacer{start: now}
	// wait sleeps until the next 20 ms slot; false when ctx ended first.
	wait := func() bool {
		w := pace.next(time.Now())
		if w <= 0 {
			return ctx.Err() == nil
		}
		timer.Reset(w)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		}
	}
	var cancelled error
	dur := 0
	for k := 0; k < packets; k++ {
		if !wait() {
			cancelled = ctx.Err()
			break
		}
		dur = (k + 1) * step
		if err := send(k == 0, false, dur); err != nil {
			return err
		}
	}
	if dur == 0 {
		return cancelled // nothing was sent, so nothing needs ending
	}
	for j := 0; j < dtmfEnds; j++ {
		if cancelled == nil && !wait() {
			cancelled = ctx.Err() // the remaining end packets go out back to back
		}
		if err := send(false, true, dur); err != nil {
			return err
		}
	}
	return cancelled
}

// ParseDTMFRelay reads the digit from a SIP INFO body: application/
// dtmf-relay ("Signal=5\r\nDuration=160\r\n", keys in any case) or
// application/dtmf ("5"). The signal may also be an RFC 4733 event number
// (10 = *, 11 = #, 12-15 = A-D). durationMs is 0 when the body gives none.
func ParseDTMFRelay(body []byte) (digit rune, durationMs int, err error) {
	text := strings.TrimSpace(string(body))
	if text == "" {
		return 0, 0, errors.New("media: dtmf-relay: empty body")
	}
	if !strings.Contains(text, "=") {
		d, err := parseSignal(text)
		return d, 0, err
	}
	var signal, duration string
	haveSignal := false
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "signal":
			signal, haveSignal = v, true
		case "duration":
			duration = v
		}
	}
	if !haveSignal {
		return 0, 0, errors.New("media: dtmf-relay: no Signal line")
	}
	d, err := parseSignal(signal)
	if err != nil {
		return 0, 0, err
	}
	if duration != "" {
		durationMs, err = strconv.Atoi(duration)
		if err != nil || durationMs < 0 {
			return 0, 0, fmt.Errorf("media: dtmf-relay: Duration %q is not a number of milliseconds", duration)
		}
	}
	return d, durationMs, nil
}

func parseSignal(v string) (rune, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 10 && n < len(dtmfKeys) {
		return rune(dtmfKeys[n]), nil
	}
	if len(v) == 1 {
		if d, ok := normalizeDigit(rune(v[0])); ok {
			return d, nil
		}
	}
	return 0, fmt.Errorf("media: dtmf-relay: Signal %q is not a DTMF key", v)
}
