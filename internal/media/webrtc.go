package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5/deadline"
	"github.com/pion/webrtc/v4"
)

// WebRTCConfig describes where a WebRTC leg listens and what it offers.
type WebRTCConfig struct {
	// PublicIP is the address of the leg's only ICE candidate (a host
	// candidate): the address browsers send media to.
	PublicIP string
	// BindIP is the local address the leg's UDP socket binds; empty means
	// PublicIP. Set it (to the private address or "0.0.0.0") when PublicIP
	// is a 1:1 NAT address the host does not have.
	BindIP string
	// Ports hands out the leg's single UDP port, from redial's RTP range.
	Ports *PortPool
	// Codecs lists the audio codecs, PCMU and/or PCMA, in order of
	// preference; empty means PCMU, PCMA. telephone-event/8000 is always
	// offered and accepted as well.
	Codecs []Codec
	// Logger gets the leg's log lines (pass one carrying call_ref) and
	// pion's warnings; nil means slog.Default().
	Logger *slog.Logger
}

// WebRTCLeg is one browser's audio: ICE-lite with a single host candidate
// on one UDP port from the RTP pool, DTLS-SRTP, rtcp-mux and BUNDLE, with
// PCMU/PCMA and telephone-event. Its media is a *Session, so Listen, Play,
// SendDTMF, the Recorder and Relay work on it as on an RTP leg, and a relay
// to an RTP leg of the same G.711 law passes payloads untouched.
//
// What the Session sends goes out as one RTP stream on the SSRC announced
// in the SDP: browsers demultiplex by SSRC, and SRTP needs sequence numbers
// without jumps. So the SSRC is replaced, and a new stream (another Play,
// the DTMF events, a relayed peer) continues the sequence numbers and
// timestamps of the previous one; packets of the first stream, and of one
// stream between switches, keep their sequence number and timestamp
// differences, payload type and marker. The Session's remote address is a
// fixed placeholder (0.0.0.0:9, as in WebRTC SDP): where the browser
// really is, is ICE's business.
//
// ICE restarts are not supported (the browser then needs a new call).
type WebRTCLeg struct {
	pc        *webrtc.PeerConnection
	conn      *webrtcConn
	sess      *Session
	codecs    []Codec
	connected chan struct{}

	mu       sync.Mutex
	answered bool
}

// NewWebRTCOffer creates a leg for a call redial places to a browser: the
// returned SDP offer (all candidates included) goes into the INVITE, and
// the browser's answer into Answer. ctx bounds candidate gathering.
func NewWebRTCOffer(ctx context.Context, cfg WebRTCConfig) (*WebRTCLeg, string, error) {
	l, err := newWebRTCLeg(cfg)
	if err != nil {
		return nil, "", err
	}
	offer, err := l.pc.CreateOffer(nil)
	if err != nil {
		l.Close()
		return nil, "", fmt.Errorf("media: webrtc offer: %w", err)
	}
	local, err := l.setLocal(ctx, offer)
	if err != nil {
		l.Close()
		return nil, "", fmt.Errorf("media: webrtc offer: %w", err)
	}
	return l, local, nil
}

// NewWebRTCAnswer creates a leg for a call a browser places to redial from
// its SDP offer and returns the answer. The answer lists the offered codecs
// in WebRTCConfig.Codecs order, so the browser sends the preferred one; the
// Session's codec and telephone-event format are set from it. ctx bounds
// candidate gathering.
func NewWebRTCAnswer(ctx context.Context, cfg WebRTCConfig, offerSDP string) (*WebRTCLeg, string, error) {
	l, err := newWebRTCLeg(cfg)
	if err != nil {
		return nil, "", err
	}
	answer, err := l.answerOffer(ctx, offerSDP)
	if err != nil {
		l.Close()
		return nil, "", fmt.Errorf("media: webrtc answer: %w", err)
	}
	return l, answer, nil
}

func (l *WebRTCLeg) answerOffer(ctx context.Context, offerSDP string) (string, error) {
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return "", fmt.Errorf("offer: %w", err)
	}
	trs := l.pc.GetTransceivers()
	if len(trs) != 1 {
		return "", fmt.Errorf("offer has %d media streams, want one audio stream", len(trs))
	}
	// pion answers in the offer's codec order; reorder by ours, keeping the
	// offer's payload types.
	offered := trs[0].Receiver().GetParameters().Codecs
	var prefs []webrtc.RTPCodecParameters
	for _, want := range l.codecs {
		for _, c := range offered {
			if strings.EqualFold(c.MimeType, "audio/"+want.Name) {
				prefs = append(prefs, c)
			}
		}
	}
	if len(prefs) == 0 {
		return "", fmt.Errorf("no common codec (offered: %s)", mimeList(offered))
	}
	for _, c := range offered {
		if strings.EqualFold(c.MimeType, "audio/"+TelephoneEvent.Name) {
			prefs = append(prefs, c)
		}
	}
	if err := trs[0].SetCodecPreferences(prefs); err != nil {
		return "", fmt.Errorf("codec preferences: %w", err)
	}
	answer, err := l.pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	local, err := l.setLocal(ctx, answer)
	if err != nil {
		return "", err
	}
	if err := l.negotiated(local); err != nil {
		return "", err
	}
	l.answered = true
	return local, nil
}

// Answer applies the browser's answer to the offer from NewWebRTCOffer and
// sets the Session's codec and telephone-event format from it. On error
// the leg stays open; Close it.
func (l *WebRTCLeg) Answer(answerSDP string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.answered {
		return errors.New("media: webrtc answer: the leg is already negotiated")
	}
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		return fmt.Errorf("media: webrtc answer: %w", err)
	}
	if err := l.negotiated(answerSDP); err != nil {
		return fmt.Errorf("media: webrtc answer: %w", err)
	}
	l.answered = true
	return nil
}

// negotiated sets the Session's formats from the answer: the browser sends
// the first codec the answer lists, and redial sends the same.
func (l *WebRTCLeg) negotiated(answerSDP string) error {
	audio, dtmf, err := answerFormats(answerSDP)
	if err != nil {
		return err
	}
	l.sess.SetCodec(audio)
	l.sess.SetDTMF(dtmf)
	return nil
}

// setLocal applies a local description and waits until its candidates are
// gathered (immediate with one socket and no STUN), returning its SDP.
func (l *WebRTCLeg) setLocal(ctx context.Context, desc webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(desc); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gathering candidates: %w", ctx.Err())
	}
	return l.pc.LocalDescription().SDP, nil
}

// Session returns the leg's media. It can be used at once: reads wait for
// the browser's first packet, and packets written before DTLS completes
// are dropped.
func (l *WebRTCLeg) Session() *Session { return l.sess }

// Connected is closed once ICE and DTLS are up and media flows.
func (l *WebRTCLeg) Connected() <-chan struct{} { return l.connected }

// Done is closed when the connection failed (ICE consent lost: the browser
// is gone) or was closed, by Close or by the browser's DTLS close.
func (l *WebRTCLeg) Done() <-chan struct{} { return l.conn.ended }

// Close ends the leg: it closes the peer connection, waits for its
// goroutines, and returns the port to the pool. It may be called any
// number of times; closing the Session does the same.
func (l *WebRTCLeg) Close() error { return l.sess.Close() }

// newWebRTCLeg binds the leg's socket and sets up a peer connection with
// one sendrecv audio transceiver.
func newWebRTCLeg(cfg WebRTCConfig) (*WebRTCLeg, error) {
	if cfg.Ports == nil {
		return nil, errors.New("media: webrtc leg: no port pool")
	}
	pub, err := netip.ParseAddr(cfg.PublicIP)
	if err != nil {
		return nil, fmt.Errorf("media: webrtc leg: public ip %q is not an IP address", cfg.PublicIP)
	}
	pub = pub.Unmap()
	codecs := cfg.Codecs
	if len(codecs) == 0 {
		codecs = []Codec{PCMU, PCMA}
	}
	for _, c := range codecs {
		if lawOf(c) == lawOther || c.Rate != SampleRate {
			return nil, fmt.Errorf("media: webrtc leg: codec %s/%d not supported (want PCMU or PCMA)", c.Name, c.Rate)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	bindIP := cfg.BindIP
	if bindIP == "" {
		bindIP = pub.String()
	}
	sock, port, err := bindUDP(bindIP, cfg.Ports)
	if err != nil {
		return nil, fmt.Errorf("media: webrtc leg on %s: %w", bindIP, err)
	}
	api, err := webrtcAPI(codecs, pub, port, sock, log)
	if err != nil {
		sock.Close()
		cfg.Ports.Put(port)
		return nil, fmt.Errorf("media: webrtc leg: %w", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		sock.Close()
		cfg.Ports.Put(port)
		return nil, fmt.Errorf("media: webrtc leg: peer connection: %w", err)
	}
	c := &webrtcConn{pc: pc, sock: sock, log: log, wait: deadline.New(),
		trackSet: make(chan struct{}), closed: make(chan struct{}), ended: make(chan struct{})}
	l := &WebRTCLeg{
		pc: pc, conn: c, codecs: codecs, connected: make(chan struct{}),
		sess: newSession(c, cfg.Ports, port, bindIP),
	}
	l.sess.SetLogger(log)
	l.sess.SetRemote(net.UDPAddrFromAddrPort(webrtcRemote))

	var connectedOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			connectedOnce.Do(func() {
				log.Info("media: webrtc leg connected", "local_port", port)
				close(l.connected)
			})
		case webrtc.PeerConnectionStateFailed:
			log.Info("media: webrtc leg failed (ice or dtls)", "local_port", port)
			c.end()
		case webrtc.PeerConnectionStateClosed:
			c.end()
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { c.setTrack(t) })

	tr, err := pc.AddTransceiverFromTrack(&localTrack{c: c}, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("media: webrtc leg: audio transceiver: %w", err)
	}
	// Unread RTCP would pile up in pion's buffers; nothing here uses it.
	c.drainRTCP(tr.Sender().Read)
	c.drainRTCP(tr.Receiver().Read)
	return l, nil
}

// webrtcAPI builds the pion API of one leg: only G.711 and
// telephone-event, no interceptors (no NACK, reports or congestion
// control for 64 kbit/s audio), ICE-lite on the leg's socket.
func webrtcAPI(codecs []Codec, pub netip.Addr, port int, sock *net.UDPConn, log *slog.Logger) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range append(append([]Codec(nil), codecs...), TelephoneEvent) {
		p := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: uint32(c.Rate)},
			PayloadType:        webrtc.PayloadType(c.PT),
		}
		if c.IsDTMF() {
			p.SDPFmtpLine = "0-16"
		}
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.Name, err)
		}
	}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{log}}
	se.SetLite(true)
	se.SetICEUDPMux(&legMux{sock: sock, addr: &net.UDPAddr{IP: pub.AsSlice(), Port: port}})
	network := webrtc.NetworkTypeUDP4
	if pub.Is6() {
		network = webrtc.NetworkTypeUDP6
	}
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Host candidates come from legMux alone; no interface is scanned for more.
	se.SetIPFilter(func(net.IP) bool { return false })
	return webrtc.NewAPI(
		webrtc.WithMediaEngine(me),
		webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	), nil
}

// legMux hands the leg's socket to pion's ICE agent as its only host
// candidate. One socket per leg from the PortPool keeps WebRTC media in
// the RTP port range with the pool's accounting, binds nothing else, and
// lets PublicIP differ from the bound address (NAT) without pion scanning
// interfaces; unlike ice.UDPMuxDefault it adds no demultiplexing goroutine
// or copy per packet, since the socket serves one agent.
type legMux struct {
	sock *net.UDPConn
	addr *net.UDPAddr // the advertised candidate address

	mu    sync.Mutex
	given bool
}

func (m *legMux) GetConn(string, net.Addr) (net.PacketConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.given {
		return nil, errors.New("media: webrtc: the leg's socket is taken (ICE restarts are not supported)")
	}
	m.given = true
	return m.sock, nil
}

func (m *legMux) RemoveConnByUfrag(string) {}

func (m *legMux) GetListenAddresses() []net.Addr { return []net.Addr{m.addr} }

// Close does nothing: the socket belongs to the leg, which closes it.
func (m *legMux) Close() error { return nil }

// answerFormats reads the negotiated formats from an answer's audio
// m-line: the first G.711 format (the one the browser sends) and
// telephone-event/8000, if present.
func answerFormats(answerSDP string) (Codec, *Codec, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answerSDP); err != nil {
		return Codec{}, nil, fmt.Errorf("sdp: %w", err)
	}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "audio" && m.MediaName.Port.Value != 0 {
			md = m
			break
		}
	}
	if md == nil {
		return Codec{}, nil, errors.New("sdp: no accepted audio stream")
	}
	rtpmaps := make(map[uint8]Codec)
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		if c, err := parseRtpmap(a.Value); err == nil {
			rtpmaps[c.PT] = c
		}
	}
	var audio *Codec
	var dtmf *Codec
	for _, f := range md.MediaName.Formats {
		var pt uint8
		if _, err := fmt.Sscan(f, &pt); err != nil || pt > 127 {
			continue
		}
		c, ok := rtpmaps[pt]
		if !ok {
			c, ok = staticPayloadTypes[pt]
		}
		switch {
		case !ok:
		case c.IsDTMF():
			if dtmf == nil && c.Rate == SampleRate {
				cc := c
				dtmf = &cc
			}
		case audio == nil && lawOf(c) != lawOther && c.Rate == SampleRate:
			cc := c
			audio = &cc
		}
	}
	if audio == nil {
		return Codec{}, nil, fmt.Errorf("no common codec (answered: %s)", strings.Join(md.MediaName.Formats, " "))
	}
	return *audio, dtmf, nil
}

func mimeList(cs []webrtc.RTPCodecParameters) string {
	if len(cs) == 0 {
		return "none"
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, strings.TrimPrefix(c.MimeType, "audio/"))
	}
	return strings.Join(names, ", ")
}
