package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"redial/internal/testenv"
)

var dtmf96 = &Codec{PT: 96, Name: "telephone-event", Rate: 8000}

// collector is a Handler recording what Listen reports.
type collector struct {
	mu     sync.Mutex
	pcm    []int16
	seqs   []uint16
	digits []string // "digit/ms"
}

func (c *collector) Audio(pcm []int16, seq uint16, ts uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pcm = append(c.pcm, pcm...)
	c.seqs = append(c.seqs, seq)
}

func (c *collector) DTMF(d rune, ms int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.digits = append(c.digits, fmt.Sprintf("%c/%d", d, ms))
}

func (c *collector) samples() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pcm)
}

func (c *collector) digitString() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, d := range c.digits {
		b.WriteString(d[:1])
	}
	return b.String()
}

// startListen runs Listen in the background until the test ends and waits
// until it hears packets.
func startListen(t *testing.T, s *Session, h Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, h) }()
	waitListening(t, s)
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Error("Listen did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitListening(t testing.TB, s *Session) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() error {
		s.listenMu.Lock()
		l := s.listener
		s.listenMu.Unlock()
		if l == nil || !l.ready.Load() {
			return errors.New("Listen is not reading yet")
		}
		return nil
	})
}

// sessionPair returns two sessions sending to each other.
func sessionPair(t *testing.T) (a, b *Session) {
	t.Helper()
	pool := testPool(t)
	a, b = newTestSession(t, pool), newTestSession(t, pool)
	a.SetRemote(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: b.LocalPort()})
	b.SetRemote(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.LocalPort()})
	return a, b
}

func TestSendDTMFPacketFormat(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	s.SetDTMF(dtmf96)

	start := time.Now()
	if err := s.SendDTMF(context.Background(), '7', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 140*time.Millisecond {
		t.Fatalf("5 updates and 3 end packets sent in %v, want 20 ms spacing (>= 140 ms)", el)
	}
	var first *rtp.Packet
	for i := 0; i < 8; i++ {
		pkt := p.recvRTP()
		if i == 0 {
			first = pkt
		}
		end := i >= 5
		wantDur := uint16(min(i+1, 5) * 160)
		pl := pkt.Payload
		if pkt.PayloadType != 96 || pkt.Timestamp != first.Timestamp || pkt.SSRC != first.SSRC ||
			pkt.SequenceNumber != first.SequenceNumber+uint16(i) || pkt.Marker != (i == 0) {
			t.Fatalf("packet %d: PT %d ts %d SSRC %x seq %d marker %v; want PT 96, ts %d, SSRC %x, seq %d, marker only on the first",
				i, pkt.PayloadType, pkt.Timestamp, pkt.SSRC, pkt.SequenceNumber, pkt.Marker, first.Timestamp, first.SSRC, first.SequenceNumber+uint16(i))
		}
		if len(pl) != 4 || pl[0] != 7 || (pl[1]&0x80 != 0) != end || pl[1]&0x3f != 10 || binary.BigEndian.Uint16(pl[2:]) != wantDur {
			t.Fatalf("packet %d payload % x, want event 7, end %v, volume 10, duration %d", i, pl, end, wantDur)
		}
	}
	// The next press is a new event: a later timestamp, marker again.
	if err := s.SendDTMF(context.Background(), '#', 40*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pkt := p.recvRTP()
	if !pkt.Marker || pkt.Payload[0] != 11 || int32(pkt.Timestamp-first.Timestamp) < 800 || pkt.SequenceNumber != first.SequenceNumber+8 {
		t.Fatalf("second press starts with marker %v event %d ts +%d seq +%d; want marker, event 11, ts +>=800, seq +8",
			pkt.Marker, pkt.Payload[0], pkt.Timestamp-first.Timestamp, pkt.SequenceNumber-first.SequenceNumber)
	}
}

func TestSendDTMFErrorsAndCancel(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	if err := s.SendDTMF(context.Background(), '1', time.Second); err == nil || !strings.Contains(err.Error(), "no telephone-event") {
		t.Fatalf("SendDTMF without a negotiated telephone-event: %v", err)
	}
	s.SetDTMF(dtmf96)
	if err := s.SendDTMF(context.Background(), 'x', time.Second); err == nil || !strings.Contains(err.Error(), `'x' is not a DTMF key`) {
		t.Fatalf("SendDTMF('x'): %v", err)
	}

	// Cancelled during a long press: the key is released with 3 end packets.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.SendDTMF(ctx, 'a', 5*time.Second) }()
	p.recvRTP()
	p.recvRTP()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("SendDTMF after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SendDTMF kept running after cancel")
	}
	ends := 0
	for ends < 3 {
		pkt := p.recvRTP()
		if pkt.Payload[0] != 12 {
			t.Fatalf("event %d, want 12 (A)", pkt.Payload[0])
		}
		if pkt.Payload[1]&0x80 != 0 {
			ends++
		}
	}
}

func TestSendDTMFListenReportsEachDigitOnceInOrder(t *testing.T) {
	a, b := sessionPair(t)
	a.SetDTMF(dtmf96)
	b.SetDTMF(dtmf96)
	var c collector
	startListen(t, b, &c)
	const digits = "159#*D0"
	for _, d := range digits {
		if err := a.SendDTMF(context.Background(), d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := c.digitString(); len(got) < len(digits) {
			return fmt.Errorf("digits so far %q", got)
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	want := []string{"1/60", "5/60", "9/60", "#/60", "*/60", "D/60", "0/60"}
	if strings.Join(c.digits, " ") != strings.Join(want, " ") {
		t.Fatalf("Listen reported %v, want %v", c.digits, want)
	}
}

// evPkt builds a telephone-event packet on PT 96.
func evPkt(t *testing.T, seq uint16, ts uint32, marker bool, event byte, end bool, dur uint16) []byte {
	p := []byte{event, 10, byte(dur >> 8), byte(dur)}
	if end {
		p[1] |= 0x80
	}
	return rtpPacket(t, rtp.Header{PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Marker: marker}, p)
}

// Hand-made event streams with the losses and duplicates of real networks.
func TestListenDTMFLossesAndDuplicates(t *testing.T) {
	s := newTestSession(t, testPool(t))
	s.SetDTMF(dtmf96)
	p := newPeer(t)
	s.SetRemote(p.addr())
	var c collector
	startListen(t, s, &c)

	seq := uint16(100)
	send := func(b []byte) { p.sendTo(s, b); seq++ }
	audio := func(ts uint32) {
		send(rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: 7}, make([]byte, 160)))
	}
	// '1': every start and update lost, only the three end packets arrive.
	for i := 0; i < 3; i++ {
		send(evPkt(t, seq, 1000, false, 1, true, 800))
	}
	// '2': complete, then a reordered update and a fourth end after the ends.
	send(evPkt(t, seq, 5000, true, 2, false, 160))
	send(evPkt(t, seq, 5000, false, 2, false, 320))
	for i := 0; i < 3; i++ {
		send(evPkt(t, seq, 5000, false, 2, true, 480))
	}
	send(evPkt(t, seq, 5000, false, 2, false, 320))
	send(evPkt(t, seq, 5000, false, 2, true, 480))
	// '3': updates only, all end packets lost; '4' follows and ends normally.
	send(evPkt(t, seq, 9000, true, 3, false, 160))
	send(evPkt(t, seq, 9000, false, 3, false, 640))
	send(evPkt(t, seq, 13000, true, 4, false, 160))
	send(evPkt(t, seq, 13000, false, 4, true, 400))
	send(evPkt(t, seq, 13000, false, 4, true, 400))
	// '5': updates only, ends lost; the audio going on shows it is over.
	send(evPkt(t, seq, 17000, true, 5, false, 480))
	for ts := uint32(17480); ts < 19000; ts += 160 {
		audio(ts)
	}
	// A late end packet of '5' after that must not report it again.
	send(evPkt(t, seq, 17000, false, 5, true, 560))
	// Flash (event 16) is not a digit.
	send(evPkt(t, seq, 21000, true, 16, true, 800))
	send(evPkt(t, seq, 25000, true, 11, true, 800))

	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := c.digitString(); !strings.HasSuffix(got, "#") {
			return fmt.Errorf("digits so far %q", got)
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	want := "1/100 2/60 3/80 4/50 5/60 #/100"
	if got := strings.Join(c.digits, " "); got != want {
		t.Fatalf("reported %q, want %q (each once, in order)", got, want)
	}
}

func TestListenDecodesAudioAndTakesInjectedDigits(t *testing.T) {
	s := newTestSession(t, testPool(t))
	s.SetCodec(PCMA)
	s.SetDTMF(dtmf96)
	p := newPeer(t)
	s.SetRemote(p.addr())
	if s.InjectDTMF('1', 100) {
		t.Fatal("InjectDTMF without a Listen succeeded")
	}
	var c collector
	startListen(t, s, &c)

	alaw := make([]byte, 160)
	for i := range alaw {
		alaw[i] = LinearToAlaw(int16(1000 + i))
	}
	p.sendTo(s, rtpPacket(t, rtp.Header{PayloadType: 8, SequenceNumber: 1, Timestamp: 160}, alaw))
	// A peer switching to PCMU mid-call is still heard; comfort noise is not audio.
	p.sendTo(s, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: 2, Timestamp: 320}, []byte{LinearToUlaw(-500), LinearToUlaw(500)}))
	p.sendTo(s, rtpPacket(t, rtp.Header{PayloadType: 13, SequenceNumber: 3, Timestamp: 480}, []byte{40}))
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := c.samples(); n < 162 {
			return fmt.Errorf("%d samples", n)
		}
		return nil
	})
	if !s.InjectDTMF('b', 250) || s.InjectDTMF('x', 250) {
		t.Fatal("InjectDTMF('b') failed or InjectDTMF('x') succeeded")
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if c.digitString() != "B" {
			return fmt.Errorf("digits %q", c.digitString())
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pcm) != 162 || c.digits[0] != "B/250" || len(c.seqs) != 2 || c.seqs[1] != 2 {
		t.Fatalf("got %d samples, seqs %v, digits %v; want 162 samples, seqs [1 2], digit B/250", len(c.pcm), c.seqs, c.digits)
	}
	for i := 0; i < 160; i++ {
		if want := AlawToLinear(alaw[i]); c.pcm[i] != want {
			t.Fatalf("sample %d = %d, want %d", i, c.pcm[i], want)
		}
	}
	if c.pcm[160] != UlawToLinear(LinearToUlaw(-500)) || c.pcm[161] != UlawToLinear(LinearToUlaw(500)) {
		t.Fatalf("PCMU samples %v", c.pcm[160:])
	}
}

func TestListenCancelCloseAndSingleReader(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	stop := startListen(t, s, &collector{})
	if err := s.Listen(context.Background(), &collector{}); err == nil {
		t.Fatal("a second concurrent Listen succeeded")
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Listen after cancel = %v, want context.Canceled", err)
	}
	// The wake-up deadline is gone: the session reads normally afterwards.
	p.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 9}, []byte{1}))
	if _, err := s.ReadPacket(make([]byte, 1500)); err != nil {
		t.Fatalf("ReadPacket after Listen: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- s.Listen(context.Background(), &collector{}) }()
	waitListening(t, s)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Listen after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen kept running after Close")
	}
}

// Audio that waited in the socket before Listen started is stale.
func TestListenDiscardsQueuedPackets(t *testing.T) {
	s := newTestSession(t, testPool(t))
	p := newPeer(t)
	s.SetRemote(p.addr())
	// Loopback delivers into the socket buffer within the send call.
	for i := 0; i < 20; i++ {
		p.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: uint16(i)}, make([]byte, 160)))
	}
	var c collector
	startListen(t, s, &c)
	p.sendTo(s, rtpPacket(t, rtp.Header{SequenceNumber: 1000}, make([]byte, 160)))
	testenv.WaitFor(t, 5*time.Second, func() error {
		if c.samples() == 0 {
			return errors.New("nothing heard")
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seqs[0] != 1000 {
		t.Fatalf("first packet heard has seq %d, want 1000 (the queued ones discarded)", c.seqs[0])
	}
}

// Play and Listen run on the same session at once: each side plays a file
// or tone to the other and hears the other's.
func TestPlayWAVWhileListeningBothWays(t *testing.T) {
	a, b := sessionPair(t)
	b.SetCodec(PCMA)
	a.SetCodec(PCMA)
	path := writeFile(t, "prompt.wav", makeWAV(t, wavSpec{format: 1, channels: 2, rate: 44100, bits: 16, frames: 44100, signal: sine(1000, 0.5, 44100)}))
	var atA, atB collector
	startListen(t, a, &atA)
	startListen(t, b, &atB)

	src, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- a.Play(context.Background(), src) }()
	go func() { errs <- b.Play(context.Background(), NewTone(600, 8000, time.Second)) }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if atA.samples() < SampleRate || atB.samples() < SampleRate {
			return fmt.Errorf("heard %d and %d samples", atA.samples(), atB.samples())
		}
		return nil
	})
	atA.mu.Lock()
	atB.mu.Lock()
	defer atA.mu.Unlock()
	defer atB.mu.Unlock()
	if n := len(atB.pcm); n != SampleRate {
		t.Errorf("B heard %d samples of the 1 s file, want %d (50 packets)", n, SampleRate)
	}
	if share := toneShare(atB.pcm, 1000); share < 0.9 {
		t.Errorf("B: 1 kHz holds %.3f of the power, want >= 0.9", share)
	}
	if share := toneShare(atA.pcm, 600); share < 0.9 {
		t.Errorf("A: 600 Hz holds %.3f of the power, want >= 0.9", share)
	}
}

type chanHandler chan struct{}

func (c chanHandler) Audio([]int16, uint16, uint32) { c <- struct{}{} }
func (c chanHandler) DTMF(rune, int)                { c <- struct{}{} }

func TestListenDoesNotAllocatePerPacket(t *testing.T) {
	s := newTestSession(t, testPool(t))
	s.SetDTMF(dtmf96)
	p := newPeer(t)
	s.SetRemote(p.addr())
	h := make(chanHandler, 1)
	startListen(t, s, h)
	audio := rtpPacket(t, rtp.Header{PayloadType: 0, SSRC: 1}, make([]byte, 160))
	ts := uint32(0)
	step := func() {
		ts += 160
		binary.BigEndian.PutUint32(audio[4:8], ts)
		p.sendTo(s, audio)
		<-h
	}
	for i := 0; i < 50; i++ {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%v allocations per received packet, want 0", a)
	}
}

func TestParseDTMFRelay(t *testing.T) {
	for _, c := range []struct {
		body  string
		digit rune
		ms    int
	}{
		{"Signal=5\r\nDuration=160\r\n", '5', 160},
		{"Signal= #\nDuration= 250", '#', 250},
		{"signal=*\r\nduration=100\r\n", '*', 100},
		{"Signal=11\r\nDuration=100\r\n", '#', 100},
		{"Signal=10\r\n", '*', 0},
		{"Signal=a\r\nDuration=80", 'A', 80},
		{"Duration=80\r\nSignal=0", '0', 80},
		{"5", '5', 0},
		{" # \r\n", '#', 0},
		{"d", 'D', 0},
		{"11", '#', 0},
	} {
		d, ms, err := ParseDTMFRelay([]byte(c.body))
		if err != nil || d != c.digit || ms != c.ms {
			t.Errorf("ParseDTMFRelay(%q) = %q, %d, %v; want %q, %d", c.body, d, ms, err, c.digit, c.ms)
		}
	}
	for _, c := range []struct{ body, want string }{
		{"", "empty body"},
		{"Duration=100\r\n", "no Signal line"},
		{"Signal=16\r\n", `Signal "16" is not a DTMF key`},
		{"Signal=x\r\n", `Signal "x" is not a DTMF key`},
		{"Signal=1\r\nDuration=long\r\n", `Duration "long" is not a number`},
		{"55", `Signal "55" is not a DTMF key`},
	} {
		if _, _, err := ParseDTMFRelay([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseDTMFRelay(%q) error = %v, want one containing %q", c.body, err, c.want)
		}
	}
}
