package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// rtpHeaderLen is the size of an RTP header without CSRCs or extensions.
const rtpHeaderLen = 12

// readBufferBytes is the socket receive buffer a Session asks for; bursts from
// a stalled peer or a GC pause must not overflow the kernel's default.
const readBufferBytes = 1 << 20

// Session is one RTP endpoint: a UDP socket bound to a port from a PortPool,
// or a WebRTC leg's SRTP stream behind the same interface (NewWebRTCOffer,
// NewWebRTCAnswer).
//
// The remote address comes from SDP (SetRemote) and is then corrected by
// symmetric RTP: the first RTP packet received after SetRemote decides where
// the peer really is (NAT routinely rewrites the source port). From then on
// packets from any other source are dropped (and counted), so a stray or
// malicious sender cannot take over the stream; a later SetRemote (re-INVITE)
// opens the next latching window.
//
// A Session is safe for concurrent use, with one reader at a time.
type Session struct {
	// connMu guards conn and release. A polled relay swaps conn while it
	// holds the socket (relay_detach_linux.go); writers, deadline setters
	// and Close hold connMu so that none of them ever uses a conn being
	// swapped out. A reader takes the current conn under it but reads
	// without it: while a relay runs it is the only reader.
	connMu sync.RWMutex
	conn   packetConn
	// release gives the socket back from the polled relay holding it;
	// nil when none does. Close calls it.
	release func()

	pool    *PortPool
	port    int
	localIP string

	remote atomic.Pointer[remoteState]
	clock  atomic.Pointer[Clock]
	params atomic.Pointer[mediaParams]
	log    atomic.Pointer[slog.Logger]

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
	// readers counts ReadPacket calls under way. Close parks the socket
	// for reuse (ports.go) only when none is: a parked socket does not
	// wake a blocked read, which would then read the next call's packets.
	readers atomic.Int32

	// in and out are written by different goroutines in a relay; the padding
	// keeps them on separate cache lines.
	in      counters
	out     counters
	dropped atomic.Uint64

	// listenMu guards listener, the running Listen (nil when none), so that
	// waking it through the read deadline never hits a later reader.
	listenMu sync.Mutex
	listener *listenState
	dtmfOut  dtmfSender

	// hook is set while a relay may forward the session's packets in the
	// kernel (relay_kernel_linux.go).
	hook atomic.Pointer[relayHook]
}

// relayHook is how a relay that forwards a session's packets in the kernel
// hears that the session's remote or payload formats changed (its rules
// must go: the kernel neither latches nor transcodes), and adds the
// packets the kernel forwarded to the session's counters.
type relayHook struct {
	changed func()
	stats   func(s *Session, st *SessionStats)
}

// notifyChanged tells a relay forwarding in the kernel that the remote or
// the payload formats changed; it is called after the change is stored.
func (s *Session) notifyChanged() {
	if h := s.hook.Load(); h != nil {
		h.changed()
	}
}

// packetConn is a Session's transport. *net.UDPConn is the plain RTP one;
// a WebRTC leg plugs in an adapter over its SRTP stream, so Listen, Play,
// DTMF, Recorder and Relay work on both unchanged. Read deadlines must wake
// a blocked read: Listen and Relay stop their readers that way.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

type counters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [48]byte
}

// remoteState is replaced as a whole, so readers never see a half-updated address.
type remoteState struct {
	addr     *net.UDPAddr   // nil while unknown
	ap       netip.AddrPort // invalid while unknown
	learning bool           // the next received packet may re-latch the remote
}

type mediaParams struct {
	codec  Codec
	law    law
	dtmf   *Codec
	dtmfPT int // -1 when the telephone-event payload type is unknown
}

// audioLaw is the G.711 law of an audio packet of payload type pt: the
// session's codec, or the static PCMU/PCMA types a peer may switch to;
// lawOther for anything else.
func (p *mediaParams) audioLaw(pt uint8) law {
	switch {
	case pt == p.codec.PT:
		return p.law
	case pt == PCMU.PT:
		return lawUlaw
	case pt == PCMA.PT:
		return lawAlaw
	}
	return lawOther
}

// SessionStats counts a Session's traffic since it was created.
type SessionStats struct {
	PacketsIn, BytesIn   uint64
	PacketsOut, BytesOut uint64
	// Dropped counts received datagrams discarded because they came from a
	// source other than the latched remote or were not RTP.
	Dropped uint64
}

// NewSession binds a UDP socket on localIP to a port from pool. A port that
// another process holds is skipped (it goes back to the pool) and the next one
// tried. An empty localIP binds all IPv4 addresses. The codec starts as PCMU.
func NewSession(localIP string, pool *PortPool) (*Session, error) {
	conn, port, err := bindUDP(localIP, pool)
	if err != nil {
		return nil, fmt.Errorf("media: rtp session on %s: %w", localIP, err)
	}
	return newSession(conn, pool, port, localIP), nil
}

// newSession wraps a transport whose port came from pool; Close returns it.
func newSession(conn packetConn, pool *PortPool, port int, localIP string) *Session {
	s := &Session{conn: conn, pool: pool, port: port, localIP: localIP}
	s.params.Store(&mediaParams{codec: PCMU, law: lawUlaw, dtmfPT: -1})
	s.log.Store(slog.Default())
	return s
}

// bindUDP binds a UDP socket on localIP (empty: all IPv4 addresses) to a
// port from pool, skipping ports another process holds.
func bindUDP(localIP string, pool *PortPool) (*net.UDPConn, int, error) {
	ip := net.IPv4zero
	network := "udp4"
	if localIP != "" {
		ip = net.ParseIP(localIP)
		if ip == nil {
			return nil, 0, fmt.Errorf("local ip %q is not an IP address", localIP)
		}
		if ip.To4() == nil {
			network = "udp6"
		}
	}
	var lastErr error
	for attempt := 0; attempt < pool.Size(); attempt++ {
		port, conn, err := pool.take(localIP, true)
		if err != nil {
			if lastErr != nil {
				return nil, 0, fmt.Errorf("%w (last bind error: %v)", err, lastErr)
			}
			return nil, 0, err
		}
		if conn != nil {
			if quiet(conn) {
				// A Listen may have left a deadline behind.
				_ = conn.SetReadDeadline(time.Time{})
				return conn, port, nil
			}
			// Something still reaches this port: it goes to the back
			// of the free ports, its socket closed.
			conn.Close()
			pool.Put(port)
			continue
		}
		conn, err = net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			pool.Put(port)
			lastErr = err
			continue
		}
		_ = conn.SetReadBuffer(readBufferBytes) // the kernel may cap it; a smaller buffer still works
		return conn, port, nil
	}
	return nil, 0, fmt.Errorf("no bindable port in the pool: %w", lastErr)
}

// SetLogger sets the logger for the session's few log lines (the remote
// re-latching); pass one carrying call_ref.
func (s *Session) SetLogger(l *slog.Logger) {
	if l != nil {
		s.log.Store(l)
	}
}

// LocalPort returns the bound UDP port, for the SDP m-line.
func (s *Session) LocalPort() int { return s.port }

// LocalIP returns the address the session was asked to bind.
func (s *Session) LocalIP() string { return s.localIP }

// SetRemote sets the peer address announced in SDP (nil = unknown) and opens
// a new symmetric-RTP latching window.
func (s *Session) SetRemote(addr *net.UDPAddr) {
	st := &remoteState{learning: true}
	if addr != nil {
		c := *addr
		c.IP = append(net.IP(nil), addr.IP...)
		st.addr = &c
		st.ap = unmap(c.AddrPort())
	}
	s.remote.Store(st)
	s.notifyChanged()
}

// Remote returns the address RTP is sent to, or nil while unknown.
func (s *Session) Remote() *net.UDPAddr {
	st := s.remote.Load()
	if st == nil || st.addr == nil {
		return nil
	}
	c := *st.addr
	c.IP = append(net.IP(nil), st.addr.IP...)
	return &c
}

// SetCodec sets the negotiated audio codec.
func (s *Session) SetCodec(c Codec) {
	for {
		old := s.params.Load()
		p := *old
		p.codec, p.law = c, lawOf(c)
		if s.params.CompareAndSwap(old, &p) {
			s.notifyChanged()
			return
		}
	}
}

// Codec returns the negotiated audio codec.
func (s *Session) Codec() Codec { return s.params.Load().codec }

// SetDTMF sets the negotiated telephone-event format, nil when the peer
// offered none. The relay uses it to rewrite RFC 4733 payload types.
func (s *Session) SetDTMF(c *Codec) {
	for {
		old := s.params.Load()
		p := *old
		p.dtmf, p.dtmfPT = nil, -1
		if c != nil {
			cc := *c
			p.dtmf, p.dtmfPT = &cc, int(c.PT)
		}
		if s.params.CompareAndSwap(old, &p) {
			s.notifyChanged()
			return
		}
	}
}

// DTMF returns the negotiated telephone-event format, or nil.
func (s *Session) DTMF() *Codec {
	p := s.params.Load()
	if p.dtmf == nil {
		return nil
	}
	c := *p.dtmf
	return &c
}

// Close releases the socket and returns the port to the pool. It unblocks a
// pending ReadPacket (which then fails with an error matching net.ErrClosed)
// and may be called any number of times.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		// Once closed is set under connMu no relay takes or gives back
		// the socket, so conn stays what it is now.
		s.connMu.Lock()
		s.closed.Store(true)
		c, release := s.conn, s.release
		// A reader counted after closed was set sees it and does not
		// read (ReadPacket); one counted before is woken by a real close.
		uc, plain := c.(*net.UDPConn)
		park := canPark && release == nil && plain && s.readers.Load() == 0
		if park {
			// Whoever still holds the session must never reach the
			// socket once the next call has it.
			s.conn = closedTransport()
		}
		s.connMu.Unlock()
		switch {
		case release != nil:
			// A relay holds the socket: it stops, lets go of the socket
			// and closes it, seeing the session closed.
			release()
			s.pool.Put(s.port)
		case park:
			s.closeErr = s.pool.release(s.port, uc, s.localIP)
		default:
			s.closeErr = c.Close()
			s.pool.Put(s.port)
		}
	})
	return s.closeErr
}

// readConn returns the transport to read from; see connMu.
func (s *Session) readConn() packetConn {
	s.connMu.RLock()
	defer s.connMu.RUnlock()
	return s.conn
}

// setReadDeadline sets the transport's read deadline.
func (s *Session) setReadDeadline(t time.Time) error {
	s.connMu.RLock()
	defer s.connMu.RUnlock()
	return s.conn.SetReadDeadline(t)
}

// Stats returns the session's traffic counters.
func (s *Session) Stats() SessionStats {
	st := SessionStats{
		PacketsIn:  s.in.packets.Load(),
		BytesIn:    s.in.bytes.Load(),
		PacketsOut: s.out.packets.Load(),
		BytesOut:   s.out.bytes.Load(),
		Dropped:    s.dropped.Load(),
	}
	if h := s.hook.Load(); h != nil {
		h.stats(s, &st)
	}
	return st
}

// ReadPacket reads the next RTP packet from the remote into buf. Datagrams
// that are not RTP version 2, or that come from a source other than the
// latched remote, are dropped. Errors come straight from the socket, so
// errors.Is(err, net.ErrClosed) tells a closed session.
func (s *Session) ReadPacket(buf []byte) (n int, err error) {
	s.readers.Add(1)
	defer s.readers.Add(-1)
	if s.closed.Load() {
		return 0, fmt.Errorf("media: read rtp: %w", net.ErrClosed)
	}
	for {
		var from netip.AddrPort
		n, from, err = s.readConn().ReadFromUDPAddrPort(buf)
		if err != nil {
			return n, err
		}
		if n < rtpHeaderLen || buf[0]>>6 != 2 {
			s.dropped.Add(1)
			continue
		}
		if !s.accept(unmap(from)) {
			s.dropped.Add(1)
			continue
		}
		s.in.packets.Add(1)
		s.in.bytes.Add(uint64(n))
		return n, nil
	}
}

// accept applies symmetric RTP to a packet's source address.
func (s *Session) accept(from netip.AddrPort) bool {
	for {
		st := s.remote.Load()
		if st != nil && !st.learning {
			return st.ap == from
		}
		next := &remoteState{ap: from}
		if st != nil && st.ap == from {
			next.addr = st.addr
		} else {
			next.addr = net.UDPAddrFromAddrPort(from)
		}
		if !s.remote.CompareAndSwap(st, next) {
			continue // SetRemote raced with us; judge the packet against the new state
		}
		if st == nil || st.ap != from {
			sdp := "unknown"
			if st != nil && st.addr != nil {
				sdp = st.addr.String()
			}
			s.log.Load().Info("media: rtp remote latched to packet source",
				"local_port", s.port, "sdp_remote", sdp, "source", from.String())
		}
		return true
	}
}

// WritePacket sends one RTP packet to the remote. Without a known remote the
// packet is silently discarded: media before the answer SDP has nowhere to go.
func (s *Session) WritePacket(b []byte) error {
	st := s.remote.Load()
	if st == nil || !st.ap.IsValid() {
		return nil
	}
	s.connMu.RLock()
	_, err := s.conn.WriteToUDPAddrPort(b, st.ap)
	s.connMu.RUnlock()
	if err != nil {
		return err
	}
	s.out.packets.Add(1)
	s.out.bytes.Add(uint64(len(b)))
	return nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

// isClosed reports whether err means the session's socket is gone.
func (s *Session) isClosed(err error) bool {
	return s.closed.Load() || errors.Is(err, net.ErrClosed)
}

// Handler receives what Listen hears. Its methods are called from Listen's
// goroutine, one at a time; pcm is only valid during the call (Listen
// reuses the buffer), so copy what must be kept.
type Handler interface {
	// Audio gets one packet's audio decoded to 8 kHz linear PCM, with the
	// packet's RTP sequence number and timestamp (so a recorder can tell
	// lost and late packets).
	Audio(pcm []int16, seq uint16, ts uint32)
	// DTMF gets each key press once, when it ends: RFC 4733 events from
	// RTP and digits given to InjectDTMF (SIP INFO).
	DTMF(digit rune, durationMs int)
}

// HandlerFuncs adapts two functions to a Handler; nil ones ignore their
// events.
type HandlerFuncs struct {
	OnAudio func(pcm []int16, seq uint16, ts uint32)
	OnDTMF  func(digit rune, durationMs int)
	// OnReady is called once Listen has dropped what was queued before it
	// and hears every packet from then on.
	OnReady func()
}

// Ready calls OnReady.
func (f HandlerFuncs) Ready() {
	if f.OnReady != nil {
		f.OnReady()
	}
}

// ReadyHandler is a Handler that wants to know when Listen hears packets:
// whoever tells a peer to start talking (an IVR announcing control to an
// application) waits for it, or the first key presses would be discarded
// as stale.
type ReadyHandler interface {
	Handler
	Ready()
}

// Audio calls OnAudio.
func (f HandlerFuncs) Audio(pcm []int16, seq uint16, ts uint32) {
	if f.OnAudio != nil {
		f.OnAudio(pcm, seq, ts)
	}
}

// DTMF calls OnDTMF.
func (f HandlerFuncs) DTMF(digit rune, durationMs int) {
	if f.OnDTMF != nil {
		f.OnDTMF(digit, durationMs)
	}
}

type listenState struct {
	inject chan injectedDigit
	woken  bool        // the read deadline was expired to wake Listen; guarded by Session.listenMu
	ready  atomic.Bool // stale datagrams are discarded; packets from now on are heard
}

type injectedDigit struct {
	digit rune
	ms    int
}

// Listen reads the session's RTP and hands decoded audio and DTMF to h
// until ctx is done (it returns ctx.Err()) or the session is closed (an
// error matching net.ErrClosed). It may run while Play sends, but it must
// be the only reader: not together with Relay or another Listen (that one
// gets an error).
//
// Audio in the negotiated codec, and PCMU/PCMA on their static payload
// types, is decoded; RFC 4733 telephone-events on the payload type set by
// SetDTMF are reported once per key press, on the first end packet (the
// three retransmitted end packets and late updates are recognised by the
// event's RTP timestamp, so lost start packets do not matter; if all end
// packets are lost the digit is reported when the next event or later
// audio shows it is over). Other payload types are ignored.
//
// Datagrams queued in the socket before Listen starts are discarded: audio
// from before must not end up in a recording. Keep one Listen running for
// a call's whole IVR dialogue to catch type-ahead digits.
//
// After the first packets Listen does not allocate.
func (s *Session) Listen(ctx context.Context, h Handler) error {
	l := &listenState{inject: make(chan injectedDigit, 16)}
	s.listenMu.Lock()
	if s.listener != nil {
		s.listenMu.Unlock()
		return errors.New("media: listen: another Listen is already reading this session")
	}
	s.listener = l
	s.listenMu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.wakeListener(l) })
	defer func() {
		stop()
		s.listenMu.Lock()
		s.listener = nil
		if l.woken {
			_ = s.setReadDeadline(time.Time{})
		}
		s.listenMu.Unlock()
	}()

	buf := make([]byte, maxPacket)
	pcm := make([]int16, maxPacket)
	var rx dtmfReceiver
	s.discardQueued(buf, l)
	l.ready.Store(true)
	if r, ok := h.(ReadyHandler); ok {
		r.Ready()
	}
	errs := 0
	for {
		for len(l.inject) > 0 {
			d := <-l.inject
			h.DTMF(d.digit, d.ms)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := s.ReadPacket(buf)
		if err != nil {
			if s.isClosed(err) {
				return fmt.Errorf("media: listen: %w", err)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.rearm(l)
				continue
			}
			if errs++; errs > maxConsecutiveErrors {
				return fmt.Errorf("media: listen: rtp socket keeps failing: %w", err)
			}
			continue
		}
		errs = 0
		pkt := buf[:n]
		off, end, ok := payloadBounds(pkt)
		if !ok {
			continue
		}
		pt := pkt[1] & 0x7f
		ts := binary.BigEndian.Uint32(pkt[4:8])
		p := s.params.Load()
		if p.dtmfPT >= 0 && int(pt) == p.dtmfPT {
			rx.event(ts, pkt[off:end], p.dtmf.Rate, h)
			continue
		}
		lw := p.audioLaw(pt)
		if lw == lawOther {
			continue
		}
		out := pcm[:end-off]
		tbl := &ulawDecode
		if lw == lawAlaw {
			tbl = &alawDecode
		}
		for i, b := range pkt[off:end] {
			out[i] = tbl[b]
		}
		rx.audio(ts, h)
		h.Audio(out, binary.BigEndian.Uint16(pkt[2:4]), ts)
	}
}

// InjectDTMF hands a digit received outside RTP (SIP INFO) to the running
// Listen, which reports it to its handler like an RFC 4733 digit. It
// returns false when no Listen runs, the digit is not a DTMF key, or 16
// digits are already waiting.
func (s *Session) InjectDTMF(digit rune, durationMs int) bool {
	digit, ok := normalizeDigit(digit)
	if !ok {
		return false
	}
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	l := s.listener
	if l == nil {
		return false
	}
	select {
	case l.inject <- injectedDigit{digit, durationMs}:
	default:
		return false
	}
	l.woken = true
	_ = s.setReadDeadline(time.Unix(1, 0))
	return true
}

// wakeListener makes l's pending read return at once, unless l has ended.
func (s *Session) wakeListener(l *listenState) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listener == l {
		l.woken = true
		_ = s.setReadDeadline(time.Unix(1, 0))
	}
}

// rearm clears the deadline a wake-up set. Listen checks ctx and the digit
// queue after this, so a wake-up racing with it is never lost.
func (s *Session) rearm(l *listenState) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	l.woken = false
	_ = s.setReadDeadline(time.Time{})
}

// discardQueued drops the datagrams waiting in the socket: whatever arrived
// within a millisecond counts as queued.
func (s *Session) discardQueued(buf []byte, l *listenState) {
	for i := 0; i < 1<<16; i++ {
		if err := s.setReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			break
		}
		if _, err := s.ReadPacket(buf); err != nil {
			break
		}
	}
	s.rearm(l)
}
