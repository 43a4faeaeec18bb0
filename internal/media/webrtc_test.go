package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"redial/internal/testenv"
)

// browser is a second pion peer connection standing in for Chrome: full
// ICE, host candidates on 127.0.0.1 only, no mDNS, and DTLS client when it
// answers (setup:active, as Chrome and SIP.js do). Its track writes raw RTP
// so it can send telephone-events on the same SSRC as audio, like Chrome.
type browser struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	track  *rawTrack
	got    chan *rtp.Packet
	rssrc  chan uint32 // SSRC of the track redial sends, once it arrives
	wg     sync.WaitGroup
	mu     sync.Mutex
	ending bool // guarded by mu; no track reader starts once set
	closed sync.Once
}

type browserOptions struct {
	dtmfPT   uint8 // telephone-event payload type it offers; 0 means 101
	codecs   []Codec
	dtlsRole webrtc.DTLSRole // when answering; 0 means client (active)
}

func newBrowser(t *testing.T, o browserOptions) *browser {
	t.Helper()
	if o.dtmfPT == 0 {
		o.dtmfPT = 101
	}
	if o.codecs == nil {
		o.codecs = []Codec{PCMU, PCMA}
	}
	if o.dtlsRole == 0 {
		o.dtlsRole = webrtc.DTLSRoleClient
	}
	me := &webrtc.MediaEngine{}
	for _, c := range append(append([]Codec(nil), o.codecs...), Codec{PT: o.dtmfPT, Name: "telephone-event", Rate: 8000}) {
		p := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: uint32(c.Rate)}, PayloadType: webrtc.PayloadType(c.PT)}
		if c.IsDTMF() {
			p.SDPFmtpLine = "0-15"
		}
		if c.Name == "opus" {
			p.Channels = 2
		}
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{slog.New(slog.DiscardHandler)}}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if err := se.SetAnsweringDTLSRole(o.dtlsRole); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, pc: pc, track: &rawTrack{bound: make(chan struct{})}, got: make(chan *rtp.Packet, 1024), rssrc: make(chan uint32, 1)}
	if _, err := pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		b.mu.Lock()
		if b.ending {
			b.mu.Unlock()
			return
		}
		b.wg.Add(1)
		b.mu.Unlock()
		defer b.wg.Done()
		b.rssrc <- uint32(tr.SSRC())
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case b.got <- pkt:
			default:
			}
		}
	})
	t.Cleanup(b.close)
	return b
}

func (b *browser) close() {
	b.closed.Do(func() {
		if err := b.pc.GracefulClose(); err != nil {
			b.t.Errorf("browser close: %v", err)
		}
		b.mu.Lock()
		b.ending = true
		b.mu.Unlock()
		b.wg.Wait()
	})
}

// gatheredLocal sets desc and returns it with all candidates.
func (b *browser) gatheredLocal(desc webrtc.SessionDescription) string {
	b.t.Helper()
	done := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(desc); err != nil {
		b.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.t.Fatal("browser: candidate gathering did not finish")
	}
	return b.pc.LocalDescription().SDP
}

// answer answers redial's offer.
func (b *browser) answer(offer string) string {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		b.t.Fatalf("browser: redial's offer: %v\n%s", err, offer)
	}
	ans, err := b.pc.CreateAnswer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.gatheredLocal(ans)
}

func (b *browser) offer() string {
	b.t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.gatheredLocal(o)
}

func (b *browser) waitConnected() {
	b.t.Helper()
	testenv.WaitFor(b.t, 10*time.Second, func() error {
		if st := b.pc.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
			return fmt.Errorf("browser connection state %s", st)
		}
		return nil
	})
}

// send writes one RTP packet on the browser's track (its SSRC).
func (b *browser) send(h rtp.Header, payload []byte) {
	b.t.Helper()
	select {
	case <-b.track.bound:
	case <-time.After(5 * time.Second):
		b.t.Fatal("browser track not bound")
	}
	h.Version = 2
	h.SSRC = b.track.ssrc
	if _, err := b.track.w.WriteRTP(&h, payload); err != nil {
		b.t.Fatal(err)
	}
}

// recv returns the next packet redial sent that matches keep.
func (b *browser) recv(keep func(*rtp.Packet) bool) *rtp.Packet {
	b.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p := <-b.got:
			if keep == nil || keep(p) {
				return p
			}
		case <-timeout:
			b.t.Fatal("browser: no matching packet from redial")
			return nil
		}
	}
}

// rawTrack writes packets as given, keeping their payload type.
type rawTrack struct {
	bound chan struct{}
	w     webrtc.TrackLocalWriter
	ssrc  uint32
}

func (r *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	r.w, r.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
	close(r.bound)
	return ctx.CodecParameters()[0], nil
}
func (r *rawTrack) Unbind(webrtc.TrackLocalContext) error { return nil }
func (r *rawTrack) ID() string                            { return "mic" }
func (r *rawTrack) RID() string                           { return "" }
func (r *rawTrack) StreamID() string                      { return "browser" }
func (r *rawTrack) Kind() webrtc.RTPCodecType             { return webrtc.RTPCodecTypeAudio }

func webrtcTestConfig(t *testing.T, pool *PortPool) WebRTCConfig {
	return WebRTCConfig{PublicIP: "127.0.0.1", Ports: pool, Logger: slog.New(slog.DiscardHandler)}
}

// dialBrowser is redial calling the browser: our offer, its answer.
func dialBrowser(t *testing.T, cfg WebRTCConfig, b *browser) (*WebRTCLeg, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, offer, err := NewWebRTCOffer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leg.Close() })
	answer := b.answer(offer)
	if err := leg.Answer(answer); err != nil {
		t.Fatalf("Answer: %v\n%s", err, answer)
	}
	waitLegConnected(t, leg)
	b.waitConnected()
	return leg, offer, answer
}

// browserCalls is the browser calling redial: its offer, our answer.
func browserCalls(t *testing.T, cfg WebRTCConfig, b *browser) (*WebRTCLeg, string, string) {
	t.Helper()
	offer := b.offer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, answer, err := NewWebRTCAnswer(ctx, cfg, offer)
	if err != nil {
		t.Fatalf("NewWebRTCAnswer: %v\n%s", err, offer)
	}
	t.Cleanup(func() { leg.Close() })
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("browser: redial's answer: %v\n%s", err, answer)
	}
	waitLegConnected(t, leg)
	b.waitConnected()
	return leg, offer, answer
}

func waitLegConnected(t *testing.T, leg *WebRTCLeg) {
	t.Helper()
	select {
	case <-leg.Connected():
	case <-leg.Done():
		t.Fatal("leg failed instead of connecting")
	case <-time.After(10 * time.Second):
		t.Fatal("leg did not connect")
	}
}

var candidateRE = regexp.MustCompile(`(?m)^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ (\S+)`)

func TestWebRTCOfferIsOneABrowserAccepts(t *testing.T) {
	pool := testPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, offer, err := NewWebRTCOffer(ctx, webrtcTestConfig(t, pool))
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	for _, want := range []string{
		"m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\n",
		"a=ice-lite", "a=fingerprint:sha-256 ", "a=setup:actpass", "a=rtcp-mux", "a=group:BUNDLE 0", "a=mid:0",
		"a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
		"a=sendrecv", "a=ice-ufrag:", "a=ice-pwd:", "a=ssrc:",
	} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer lacks %q", want)
		}
	}
	// pion lists the candidate for component 1 and, for peers without
	// rtcp-mux, again for component 2: the same address either way.
	cands := candidateRE.FindAllStringSubmatch(offer, -1)
	port := strconv.Itoa(leg.Session().LocalPort())
	if len(cands) == 0 {
		t.Errorf("offer has no candidate")
	}
	for _, c := range cands {
		if c[1] != "udp" || c[2] != "127.0.0.1" || c[3] != port || c[4] != "host" {
			t.Errorf("candidate %q, want only udp host candidates 127.0.0.1 %s", c[0], port)
		}
	}
	if p := leg.Session().LocalPort(); p < 8000 || p > 8998 || pool.InUse() != 1 {
		t.Errorf("port %d (pool in use %d), want one port of the RTP pool", p, pool.InUse())
	}
	if got := leg.conn.sock.LocalAddr().String(); got != "127.0.0.1:"+port {
		t.Errorf("socket bound to %s, want 127.0.0.1:%s", got, port)
	}
	if t.Failed() {
		t.Log(offer)
	}

	// Behind 1:1 NAT the candidate names PublicIP, the socket binds BindIP.
	nat := webrtcTestConfig(t, pool)
	nat.PublicIP, nat.BindIP = "192.0.2.10", "127.0.0.1"
	natLeg, natOffer, err := NewWebRTCOffer(ctx, nat)
	if err != nil {
		t.Fatal(err)
	}
	defer natLeg.Close()
	natPort := strconv.Itoa(natLeg.Session().LocalPort())
	for _, c := range candidateRE.FindAllStringSubmatch(natOffer, -1) {
		if c[2] != "192.0.2.10" || c[3] != natPort {
			t.Errorf("NAT candidate %q, want 192.0.2.10 %s", c[0], natPort)
		}
	}
	if got := natLeg.conn.sock.LocalAddr().String(); got != "127.0.0.1:"+natPort {
		t.Errorf("NAT leg socket bound to %s, want 127.0.0.1:%s", got, natPort)
	}

	// PCMA first when preferred.
	cfg := webrtcTestConfig(t, pool)
	cfg.Codecs = []Codec{PCMA}
	leg2, offer2, err := NewWebRTCOffer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer leg2.Close()
	if !strings.Contains(offer2, "m=audio 9 UDP/TLS/RTP/SAVPF 8 101\r\n") {
		t.Errorf("PCMA-only offer:\n%s", offer2)
	}
}

func TestWebRTCLegConnectsBothWays(t *testing.T) {
	t.Run("redial offers, browser answers active", func(t *testing.T) {
		b := newBrowser(t, browserOptions{})
		leg, _, answer := dialBrowser(t, webrtcTestConfig(t, testPool(t)), b)
		if !strings.Contains(answer, "a=setup:active") {
			t.Fatalf("browser answer is not setup:active (redial as DTLS server):\n%s", answer)
		}
		checkAudioAndDTMF(t, leg, b, TelephoneEvent)
	})
	t.Run("redial offers, browser answers passive", func(t *testing.T) {
		b := newBrowser(t, browserOptions{dtlsRole: webrtc.DTLSRoleServer})
		leg, _, answer := dialBrowser(t, webrtcTestConfig(t, testPool(t)), b)
		if !strings.Contains(answer, "a=setup:passive") {
			t.Fatalf("browser answer is not setup:passive:\n%s", answer)
		}
		checkAudioAndDTMF(t, leg, b, TelephoneEvent)
	})
	t.Run("browser offers, redial answers", func(t *testing.T) {
		// Chrome's telephone-event/8000 payload type is 126.
		b := newBrowser(t, browserOptions{dtmfPT: 126})
		leg, _, answer := browserCalls(t, webrtcTestConfig(t, testPool(t)), b)
		for _, want := range []string{"a=ice-lite", "a=setup:active", "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\n", "a=rtcp-mux", "a=group:BUNDLE"} {
			if !strings.Contains(answer, want) {
				t.Fatalf("answer lacks %q:\n%s", want, answer)
			}
		}
		checkAudioAndDTMF(t, leg, b, Codec{PT: 126, Name: "telephone-event", Rate: 8000})
	})
}

// checkAudioAndDTMF plays a tone to the browser and hears one from it,
// and sends DTMF each way.
func checkAudioAndDTMF(t *testing.T, leg *WebRTCLeg, b *browser, dtmf Codec) {
	t.Helper()
	s := leg.Session()
	if s.Codec() != PCMU {
		t.Fatalf("codec %v, want PCMU", s.Codec())
	}
	if d := s.DTMF(); d == nil || *d != dtmf {
		t.Fatalf("DTMF %v, want %v", d, dtmf)
	}

	// Browser -> redial: audio, then a key press.
	c := &collector{}
	stopListen := startListen(t, s, c)
	payload := make([]byte, FrameSamples)
	tone := NewTone(800, 8000, 0)
	pcm := make([]int16, FrameSamples)
	for i := 0; i < 25; i++ {
		tone.ReadFrame(pcm)
		for j, v := range pcm {
			payload[j] = LinearToUlaw(v)
		}
		b.send(rtp.Header{PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(8000 + i*FrameSamples), Marker: i == 0}, payload)
	}
	for k := 0; k < 8; k++ {
		end := byte(0)
		if k >= 5 {
			end = 0x80
		}
		dur := min(k+1, 5) * FrameSamples
		b.send(rtp.Header{PayloadType: dtmf.PT, SequenceNumber: uint16(125 + k), Timestamp: 12000, Marker: k == 0},
			[]byte{7, end | 10, byte(dur >> 8), byte(dur)})
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if d := c.digitString(); d != "7" {
			return fmt.Errorf("digits %q, want 7", d)
		}
		if n := c.samples(); n < 25*FrameSamples {
			return fmt.Errorf("heard %d samples, want %d", n, 25*FrameSamples)
		}
		return nil
	})
	if err := stopListen(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Listen: %v", err)
	}
	c.mu.Lock()
	heard := append([]int16(nil), c.pcm...)
	c.mu.Unlock()
	if total, at := MeanPower(heard), Goertzel(heard, 800, SampleRate); at < 0.9*total {
		t.Fatalf("heard power %.4g, at 800 Hz %.4g: not the browser's tone", total, at)
	}

	// redial -> browser: a tone.
	var ssrc uint32
	playDone := make(chan error, 1)
	go func() { playDone <- s.Play(context.Background(), NewTone(1000, 8000, 600*time.Millisecond)) }()
	select {
	case ssrc = <-b.rssrc:
	case <-time.After(5 * time.Second):
		t.Fatal("browser got no track from redial")
	}
	var got []int16
	var prev *rtp.Packet
	for len(got) < 30*FrameSamples {
		p := b.recv(nil)
		if p.PayloadType != 0 || p.SSRC != ssrc || len(p.Payload) != FrameSamples {
			t.Fatalf("browser got PT %d SSRC %x with %d bytes, want PCMU on %x with 160", p.PayloadType, p.SSRC, len(p.Payload), ssrc)
		}
		if prev != nil && (p.SequenceNumber != prev.SequenceNumber+1 || p.Timestamp != prev.Timestamp+FrameSamples) {
			t.Fatalf("seq %d ts %d after seq %d ts %d", p.SequenceNumber, p.Timestamp, prev.SequenceNumber, prev.Timestamp)
		}
		prev = p
		for _, v := range p.Payload {
			got = append(got, UlawToLinear(v))
		}
	}
	if err := <-playDone; err != nil {
		t.Fatal(err)
	}
	if total, at := MeanPower(got), Goertzel(got, 1000, SampleRate); at < 0.9*total {
		t.Fatalf("browser heard power %.4g, at 1 kHz %.4g: not redial's tone", total, at)
	}

	// redial -> browser: RFC 4733 on the negotiated payload type, the same
	// SSRC, continuing the sequence numbers.
	if err := s.SendDTMF(context.Background(), '5', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	isEvent := func(p *rtp.Packet) bool { return p.PayloadType == dtmf.PT }
	first := b.recv(isEvent)
	if !first.Marker || first.SSRC != ssrc || int16(first.SequenceNumber-prev.SequenceNumber) <= 0 || first.SequenceNumber-prev.SequenceNumber > 40 {
		t.Fatalf("first event packet marker %v SSRC %x seq %d (last audio seq %d)", first.Marker, first.SSRC, first.SequenceNumber, prev.SequenceNumber)
	}
	for p, ends := first, 0; ; p = b.recv(isEvent) {
		if p.SSRC != ssrc || p.Timestamp != first.Timestamp || len(p.Payload) != 4 || p.Payload[0] != 5 {
			t.Fatalf("event packet SSRC %x ts %d payload %x, want event 5 on ts %d", p.SSRC, p.Timestamp, p.Payload, first.Timestamp)
		}
		if p.Payload[1]&0x80 != 0 {
			if ends++; ends == 3 {
				break
			}
		}
	}
}

func TestWebRTCAnswerPrefersConfiguredCodec(t *testing.T) {
	b := newBrowser(t, browserOptions{codecs: []Codec{PCMU, PCMA}})
	cfg := webrtcTestConfig(t, testPool(t))
	cfg.Codecs = []Codec{PCMA, PCMU}
	leg, _, answer := browserCalls(t, cfg, b)
	if !strings.Contains(answer, "m=audio 9 UDP/TLS/RTP/SAVPF 8 0 101\r\n") {
		t.Fatalf("answer does not put PCMA first:\n%s", answer)
	}
	if leg.Session().Codec() != PCMA {
		t.Fatalf("codec %v, want PCMA", leg.Session().Codec())
	}
	go leg.Session().Play(context.Background(), NewTone(1000, 8000, 200*time.Millisecond))
	if p := b.recv(nil); p.PayloadType != 8 {
		t.Fatalf("browser got PT %d, want 8", p.PayloadType)
	}
}

// chromeOffer is the shape of Chrome's audio offer through SIP.js: many
// codecs, header extensions, an mDNS host candidate, telephone-event on
// 126.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS 5a1b\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:3577447226 1 udp 2113937151 1f2e3d4c-5b6a-4789-8abc-def012345678.local 54400 typ host generation 0 network-cost 999\r\n" +
	"a=ice-ufrag:Xy7z\r\n" +
	"a=ice-pwd:abcdefghijABCDEFGHIJ0123\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 5D:2B:7A:A6:9E:3C:11:F0:28:9B:4C:8D:60:E1:7F:A2:33:C4:0B:5E:91:DA:26:84:7F:0C:E3:B5:48:19:6A:D2\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n" +
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendrecv\r\n" +
	"a=msid:5a1b 7c2d\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\n" +
	"a=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:1001 cname:9qT1\r\n" +
	"a=ssrc:1001 msid:5a1b 7c2d\r\n"

func TestWebRTCAnswerToChromeOffer(t *testing.T) {
	pool := testPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, answer, err := NewWebRTCAnswer(ctx, webrtcTestConfig(t, pool), chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	for _, want := range []string{
		"m=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\n", "a=rtpmap:126 telephone-event/8000",
		"a=ice-lite", "a=setup:active", "a=rtcp-mux", "a=group:BUNDLE 0", "a=mid:0", "a=fingerprint:sha-256 ",
		" 127.0.0.1 " + strconv.Itoa(leg.Session().LocalPort()) + " typ host",
	} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer lacks %q", want)
		}
	}
	// No header extension was negotiated, so none needs handling.
	if strings.Contains(answer, "a=extmap:") {
		t.Errorf("answer negotiates header extensions")
	}
	if t.Failed() {
		t.Log(answer)
	}
	if c, d := leg.Session().Codec(), leg.Session().DTMF(); c != PCMU || d == nil || d.PT != 126 {
		t.Fatalf("codec %v, DTMF %v; want PCMU and telephone-event on 126", c, d)
	}
}

func TestWebRTCAnswerWithoutCommonCodec(t *testing.T) {
	pool := testPool(t)
	b := newBrowser(t, browserOptions{codecs: []Codec{{PT: 111, Name: "opus", Rate: 48000}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, _, err := NewWebRTCAnswer(ctx, webrtcTestConfig(t, pool), b.offer())
	if err == nil {
		leg.Close()
		t.Fatal("NewWebRTCAnswer accepted an opus-only offer")
	}
	if !strings.Contains(err.Error(), "no common codec") {
		t.Fatalf("error %q does not say no common codec", err)
	}
	if pool.InUse() != 0 {
		t.Fatalf("pool has %d ports in use after the failed answer", pool.InUse())
	}
}

// TestWebRTCRelayToRTPLegPassesPacketsUnchanged bridges a browser to a
// phone on plain RTP, both PCMU: payloads, payload types, sequence numbers
// and timestamps pass untouched both ways (no transcoding); only the SSRC
// towards the browser is the one its SDP names.
func TestWebRTCRelayToRTPLegPassesPacketsUnchanged(t *testing.T) {
	pool := testPool(t)
	b := newBrowser(t, browserOptions{})
	leg, _, _ := dialBrowser(t, webrtcTestConfig(t, pool), b)
	phone := newPeer(t)
	rtpLeg := newTestSession(t, pool)
	rtpLeg.SetCodec(PCMU)
	rtpLeg.SetDTMF(&TelephoneEvent)
	rtpLeg.SetRemote(phone.addr())

	ctx, cancel := context.WithCancel(context.Background())
	relayed := make(chan RelayStats, 1)
	go func() { relayed <- Relay(ctx, leg.Session(), rtpLeg) }()

	payload := make([]byte, FrameSamples)
	for i := range payload {
		payload[i] = byte(i * 7) // not a valid tone: any transcoding would change it
	}
	// Browser -> phone.
	for i := 0; i < 3; i++ {
		b.send(rtp.Header{PayloadType: 0, SequenceNumber: uint16(500 + i), Timestamp: uint32(4000 + 160*i), Marker: i == 0}, payload)
		got := phone.recvRTP()
		if got.PayloadType != 0 || got.SequenceNumber != uint16(500+i) || got.Timestamp != uint32(4000+160*i) ||
			got.SSRC != b.track.ssrc || got.Marker != (i == 0) || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("phone got PT %d seq %d ts %d SSRC %x marker %v payload changed %v; want the browser's packet unchanged",
				got.PayloadType, got.SequenceNumber, got.Timestamp, got.SSRC, got.Marker, !bytes.Equal(got.Payload, payload))
		}
	}
	b.send(rtp.Header{PayloadType: 101, SequenceNumber: 503, Timestamp: 4480}, []byte{3, 0x80 | 10, 0, 160})
	if got := phone.recvRTP(); got.PayloadType != 101 || !bytes.Equal(got.Payload, []byte{3, 0x8a, 0, 160}) {
		t.Fatalf("phone got PT %d payload %x, want the telephone-event unchanged", got.PayloadType, got.Payload)
	}

	// Payload types the SDP did not name (comfort noise) pass as well.
	b.send(rtp.Header{PayloadType: 13, SequenceNumber: 504, Timestamp: 4640}, []byte{0x40})
	if got := phone.recvRTP(); got.PayloadType != 13 || got.SequenceNumber != 504 || !bytes.Equal(got.Payload, []byte{0x40}) {
		t.Fatalf("phone got PT %d seq %d payload %x, want the comfort noise packet unchanged", got.PayloadType, got.SequenceNumber, got.Payload)
	}

	// Phone -> browser.
	var ssrc uint32
	for i := 0; i < 3; i++ {
		phone.sendTo(rtpLeg, rtpPacket(t, rtp.Header{PayloadType: 0, SequenceNumber: uint16(70 + i), Timestamp: uint32(90000 + 160*i), SSRC: 0xABCDEF, Marker: i == 0}, payload))
		got := b.recv(nil)
		if i == 0 {
			ssrc = <-b.rssrc
		}
		if got.PayloadType != 0 || got.SequenceNumber != uint16(70+i) || got.Timestamp != uint32(90000+160*i) ||
			got.SSRC != ssrc || got.Marker != (i == 0) || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("browser got PT %d seq %d ts %d SSRC %x marker %v payload changed %v; want the phone's packet on SSRC %x",
				got.PayloadType, got.SequenceNumber, got.Timestamp, got.SSRC, got.Marker, !bytes.Equal(got.Payload, payload), ssrc)
		}
	}
	cancel()
	if st := <-relayed; st.AtoB != 5 || st.BtoA != 3 {
		t.Fatalf("relay stats %+v, want 5 and 3", st)
	}
}

// TestWebRTCLegCloseLeavesNothingBehind closes a leg in the middle of a
// Listen: Listen ends with net.ErrClosed, the port goes back to the pool,
// Done fires, and no goroutine is left once the browser is gone too.
func TestWebRTCLegCloseLeavesNothingBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	pool := testPool(t)
	b := newBrowser(t, browserOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, offer, err := NewWebRTCOffer(ctx, webrtcTestConfig(t, pool))
	if err != nil {
		t.Fatal(err)
	}
	if err := leg.Answer(b.answer(offer)); err != nil {
		t.Fatal(err)
	}
	waitLegConnected(t, leg)
	heard := make(chan struct{}, 1)
	listenErr := make(chan error, 1)
	go func() {
		listenErr <- leg.Session().Listen(context.Background(), HandlerFuncs{OnAudio: func([]int16, uint16, uint32) {
			select {
			case heard <- struct{}{}:
			default:
			}
		}})
	}()
	waitListening(t, leg.Session())
	b.send(rtp.Header{PayloadType: 0, SequenceNumber: 1, Timestamp: 160}, make([]byte, FrameSamples))
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen heard nothing")
	}
	if err := leg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := leg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-listenErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Listen after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen still running after Close")
	}
	select {
	case <-leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	if pool.InUse() != 0 {
		t.Fatalf("pool has %d ports in use after Close", pool.InUse())
	}
	if err := leg.Session().WritePacket(rtpPacket(t, rtp.Header{PayloadType: 0}, make([]byte, 160))); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WritePacket after Close: %v, want net.ErrClosed", err)
	}
	b.close()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

// TestWebRTCLegEndsWhenBrowserHangsUp: the browser closing its side ends
// the leg's media, so a relay or Listen on it returns.
func TestWebRTCLegEndsWhenBrowserHangsUp(t *testing.T) {
	b := newBrowser(t, browserOptions{})
	leg, _, _ := dialBrowser(t, webrtcTestConfig(t, testPool(t)), b)
	listenErr := make(chan error, 1)
	go func() { listenErr <- leg.Session().Listen(context.Background(), HandlerFuncs{}) }()
	waitListening(t, leg.Session())
	b.send(rtp.Header{PayloadType: 0, SequenceNumber: 1, Timestamp: 160}, make([]byte, FrameSamples))
	b.close()
	select {
	case <-leg.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the browser hung up")
	}
	select {
	case err := <-listenErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Listen after hang-up: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen still running after the browser hung up")
	}
}

func TestWebRTCOutStreamsKeepSRTPSequenceContinuous(t *testing.T) {
	var o outStreams
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type pkt struct {
		ssrc uint32
		seq  uint16
		ts   uint32
		ms   int
	}
	var seqs []uint16
	send := func(p pkt) (uint16, uint32) {
		s, ts := o.next(p.ssrc, p.seq, p.ts, at(p.ms))
		seqs = append(seqs, s)
		return s, ts
	}
	// The first stream passes unchanged, gaps included.
	if s, ts := send(pkt{1, 1000, 5000, 0}); s != 1000 || ts != 5000 {
		t.Fatalf("first packet -> %d/%d, want 1000/5000", s, ts)
	}
	send(pkt{1, 1001, 5160, 20})
	if s, ts := send(pkt{1, 1003, 5480, 60}); s != 1003 || ts != 5480 {
		t.Fatalf("after a loss -> %d/%d, want 1003/5480", s, ts)
	}
	// A new stream far away in both spaces continues both timelines.
	s, ts := send(pkt{2, 40000, 7, 80})
	if s != 1004 || ts != 5480+160 {
		t.Fatalf("new stream -> %d/%d, want 1004/%d", s, ts, 5480+160)
	}
	// DTMF events interleaved with audio: each event's packets share a
	// timestamp, and no sequence number repeats.
	var evTS []uint32
	for k := 0; k < 4; k++ {
		send(pkt{2, uint16(40001 + k), uint32(7 + 160*(k+1)), 100 + 20*k})
		_, ets := send(pkt{3, uint16(60000 + k), 999, 100 + 20*k})
		evTS = append(evTS, ets)
	}
	for _, v := range evTS {
		if v != evTS[0] {
			t.Fatalf("event timestamps %v, want one value", evTS)
		}
	}
	seen := map[uint16]bool{}
	for i, s := range seqs {
		if seen[s] {
			t.Fatalf("sequence number %d sent twice: %v", s, seqs)
		}
		seen[s] = true
		if i > 0 && s != seqs[i-1]+1 && !(i == 2 && s == 1003) {
			t.Fatalf("sequence numbers %v jump", seqs)
		}
	}
}

// A *net.UDPConn is a Session transport like the WebRTC adapter.
var (
	_ packetConn = (*net.UDPConn)(nil)
	_ packetConn = (*webrtcConn)(nil)
)
