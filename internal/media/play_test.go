package media

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestPlayToneArrivesPacedAndIntact(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		t.Run(c.Name, func(t *testing.T) {
			s := newTestSession(t, testPool(t))
			s.SetCodec(c)
			p := newPeer(t)
			s.SetRemote(p.addr())

			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- s.Play(context.Background(), NewTone(1000, 8000, time.Second)) }()

			decode := UlawToLinear
			if c == PCMA {
				decode = AlawToLinear
			}
			var pcm []int16
			first := p.recvRTP()
			if !first.Marker {
				t.Error("first packet has no marker bit")
			}
			prev := first
			for i := 0; i < 50; i++ {
				pkt := first
				if i > 0 {
					pkt = p.recvRTP()
					if pkt.SequenceNumber != prev.SequenceNumber+1 || pkt.Timestamp != prev.Timestamp+160 {
						t.Fatalf("packet %d: seq %d ts %d after seq %d ts %d", i, pkt.SequenceNumber, pkt.Timestamp, prev.SequenceNumber, prev.Timestamp)
					}
					if pkt.SSRC != first.SSRC || pkt.Marker {
						t.Fatalf("packet %d: SSRC %x marker %v, want SSRC %x and no marker", i, pkt.SSRC, pkt.Marker, first.SSRC)
					}
				}
				if pkt.PayloadType != c.PT || len(pkt.Payload) != 160 {
					t.Fatalf("packet %d: PT %d with %d bytes, want PT %d with 160", i, pkt.PayloadType, len(pkt.Payload), c.PT)
				}
				for _, b := range pkt.Payload {
					pcm = append(pcm, decode(b))
				}
				prev = pkt
			}
			if err := <-done; err != nil {
				t.Fatalf("Play: %v", err)
			}
			// Packet 49 is due 980 ms after packet 0, so pacing cannot be faster.
			if el := time.Since(start); el < 980*time.Millisecond {
				t.Fatalf("50 packets sent in %v, want >= 980ms", el)
			}
			if st := s.Stats(); st.PacketsOut != 50 {
				t.Fatalf("PacketsOut = %d, want 50", st.PacketsOut)
			}

			total := MeanPower(pcm)
			at1k := Goertzel(pcm, 1000, SampleRate)
			at1k5 := Goertzel(pcm, 1500, SampleRate)
			if at1k < 0.9*total || at1k5 > 0.01*total {
				t.Fatalf("decoded audio: power %.4g, at 1 kHz %.4g, at 1.5 kHz %.4g; want nearly all at 1 kHz", total, at1k, at1k5)
			}
		})
	}
}

func TestPlayCancel(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Play(ctx, NewTone(440, 4000, 0)) }()
	for i := 0; i < 3; i++ {
		p.recvRTP()
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Play after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Play kept running after cancel")
	}
}

func TestPlayRejectsOtherCodecs(t *testing.T) {
	s := newTestSession(t, testPool(t))
	s.SetCodec(Codec{PT: 18, Name: "G729", Rate: 8000})
	if err := s.Play(context.Background(), NewTone(440, 4000, time.Second)); err == nil {
		t.Fatal("Play with G729 succeeded")
	}
}

// shortReads returns at most 7 samples per call and a partial last frame.
type shortReads struct{ left int }

func (s *shortReads) ReadFrame(pcm []int16) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := min(len(pcm), 7, s.left)
	for i := range pcm[:n] {
		pcm[i] = 1000
	}
	s.left -= n
	return n, nil
}

func TestPlayAssemblesShortReadsAndPadsLastFrame(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	if err := s.Play(context.Background(), &shortReads{left: 200}); err != nil {
		t.Fatal(err)
	}
	a, b := p.recvRTP(), p.recvRTP()
	for i, v := range a.Payload {
		if v != LinearToUlaw(1000) {
			t.Fatalf("first packet byte %d = %#02x, want the source's samples", i, v)
		}
	}
	if b.Payload[39] != LinearToUlaw(1000) || b.Payload[40] != LinearToUlaw(0) || b.Payload[159] != LinearToUlaw(0) {
		t.Fatalf("last packet must hold 40 samples then silence: %x", b.Payload)
	}
	if st := s.Stats(); st.PacketsOut != 2 {
		t.Fatalf("PacketsOut = %d, want 2", st.PacketsOut)
	}
}

func TestPacerNoDriftAndSkipAhead(t *testing.T) {
	t0 := time.Now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	p := pacer{start: t0}
	steps := []struct {
		now  time.Time
		want time.Duration
	}{
		{ms(0), 0},                       // packet 0 at once
		{ms(3), 17 * time.Millisecond},   // packet 1 due at 20
		{ms(21), 19 * time.Millisecond},  // packet 2 due at 40, not 21+20: no drift
		{ms(105), 0},                     // packet 3 due at 60, 45 ms late: catch up
		{ms(106), 0},                     // packet 4 due at 80, still catching up
		{ms(300), 0},                     // packet 5 due at 100, 200 ms late: skip ahead
		{ms(301), 19 * time.Millisecond}, // packet 6 is due 20 ms after packet 5 was sent
		{ms(320), 20 * time.Millisecond}, // packet 7 at 340
	}
	for i, s := range steps {
		if got := p.next(s.now); got != s.want {
			t.Fatalf("step %d (packet %d at %v): wait %v, want %v", i, i, s.now.Sub(t0), got, s.want)
		}
	}
}

func TestToneLength(t *testing.T) {
	src := NewTone(1000, 1000, 25*time.Millisecond) // 200 samples
	buf := make([]int16, 160)
	n1, err1 := src.ReadFrame(buf)
	n2, err2 := src.ReadFrame(buf)
	n3, err3 := src.ReadFrame(buf)
	if n1 != 160 || err1 != nil || n2 != 40 || err2 != nil || n3 != 0 || err3 != io.EOF {
		t.Fatalf("reads = (%d %v) (%d %v) (%d %v), want 160, 40, then EOF", n1, err1, n2, err2, n3, err3)
	}
}

func TestGoertzel(t *testing.T) {
	pcm := make([]int16, 800)
	NewTone(697, 16384, 0).ReadFrame(pcm)
	// Amplitude 0.5 of full scale: power 0.125.
	if g := Goertzel(pcm, 697, SampleRate); g < 0.11 || g > 0.14 {
		t.Fatalf("Goertzel at the tone's frequency = %v, want about 0.125", g)
	}
	if g := Goertzel(pcm, 1209, SampleRate); g > 0.001 {
		t.Fatalf("Goertzel at another frequency = %v, want about 0", g)
	}
	if Goertzel(nil, 697, SampleRate) != 0 {
		t.Fatal("Goertzel of no samples is not 0")
	}
}
