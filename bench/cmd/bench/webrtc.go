package main

// Part 6, WebRTC legs: in this process, N WebRTC legs (media.NewWebRTCOffer)
// answered by pion peers standing in for browsers, each relayed
// (media.Relay) to a plain RTP Session whose far end is a socket of the
// bench sending PCMU in real time; next to it, in the same run, the same
// shape with a plain RTP Session instead of the WebRTC leg and a plain UDP
// socket instead of the browser (the reference). No SIP, no node process.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"redial/internal/media"
)

const (
	wrtcWarmup    = 2 * time.Second
	wrtcWindow    = 5 * time.Second
	wrtcJitterMax = 5 * time.Millisecond
	// wrtcConnectMax bounds one step's set-up: every leg connected and
	// every stream heard at both ends.
	wrtcConnectMax = 60 * time.Second
	// wrtcSetupWorkers legs are negotiated at a time.
	wrtcSetupWorkers = 16
	wrtcFrame        = 20 * time.Millisecond
	// wrtcQuietMax is how long each scenario waits for other work on the
	// machine to stop (as part 4 does) before it starts anyway; a window
	// in which the rest of the machine used over mediaOtherMax of a core
	// is measured again, up to wrtcMaxWindows.
	wrtcQuietMax   = 6 * time.Second
	wrtcMaxWindows = 2
)

// wrtcLadder is the number of bridged legs per step; the ladder stops at
// the first step that misses p99 ≤ 5 ms or fails to connect.
var wrtcLadder = []int{100, 250, 500, 1000}

// rxWin is the measuring window all receivers share, in ns since epoch.
type rxWin struct {
	epoch    time.Time
	from, to atomic.Int64
}

func (w *rxWin) now() int64 { return int64(time.Since(w.epoch)) }

// rxStream is what one receiver heard of one stream.
type rxStream struct {
	mu               sync.Mutex
	prevAt           int64
	prevSeq          uint16
	prev             bool
	heard            bool
	n                int64 // packets in the window
	firstSeq, maxSeq uint16
	iv               []time.Duration // inter-arrival intervals of consecutive packets in the window
}

func (s *rxStream) add(w *rxWin, seq uint16, at int64) {
	from, to := w.from.Load(), w.to.Load()
	s.mu.Lock()
	if at >= from && at < to {
		if s.n == 0 {
			s.firstSeq, s.maxSeq = seq, seq
		} else if int16(seq-s.maxSeq) > 0 {
			s.maxSeq = seq
		}
		s.n++
		if s.prev && seq == s.prevSeq+1 && s.prevAt >= from {
			s.iv = append(s.iv, time.Duration(at-s.prevAt))
		}
	}
	s.prevAt, s.prevSeq, s.prev, s.heard = at, seq, true, true
	s.mu.Unlock()
}

// reset forgets the previous window.
func (s *rxStream) reset() {
	s.mu.Lock()
	s.n, s.iv = 0, s.iv[:0]
	s.mu.Unlock()
}

func (s *rxStream) wasHeard() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heard
}

// wrtcDir is one direction's reception over all streams in the window.
type wrtcDir struct {
	silent             int // streams with no packet in the window
	received, expected int64
	jit                [3]time.Duration // p50, p99, max of |interval − 20 ms| over all intervals of all streams
	worstP99           time.Duration    // the highest per-stream p99
	over5              float64          // share of intervals off by more than 5 ms
}

func analyseDir(streams []*rxStream) wrtcDir {
	var d wrtcDir
	var all []time.Duration
	for _, s := range streams {
		s.mu.Lock()
		if s.n == 0 {
			d.silent++
		} else {
			d.received += s.n
			d.expected += int64(uint16(s.maxSeq-s.firstSeq)) + 1
		}
		dev := make([]time.Duration, len(s.iv))
		for i, v := range s.iv {
			dev[i] = (v - wrtcFrame).Abs()
		}
		s.mu.Unlock()
		sortDurations(dev)
		d.worstP99 = max(d.worstP99, percentile(dev, 99))
		all = append(all, dev...)
	}
	sortDurations(all)
	d.jit = [3]time.Duration{percentile(all, 50), percentile(all, 99), percentile(all, 100)}
	over := 0
	for _, v := range all {
		if v > wrtcJitterMax {
			over++
		}
	}
	if len(all) > 0 {
		d.over5 = float64(over) / float64(len(all))
	}
	return d
}

// wrtcRun is one scenario of one step.
type wrtcRun struct {
	n                int
	connected        int
	setup            time.Duration
	err              error
	quiet            quietWait
	windows          int // measured; the one with the least other work is kept
	wrtcWindowResult     // of that window
	sendErrs         int64
	teardown         time.Duration
	leftoverSessions int
}

// wrtcWindowResult is one measuring window.
type wrtcWindowResult struct {
	toFar, toNear wrtcDir // toFar: RTP socket → relay → browser (or plain far socket); toNear: back
	relayed       int64
	cpu, other    time.Duration
	rss           int64
	goroutines    int
	sendLate      time.Duration // the senders' worst tick: time to send all of one tick's packets
	sent          int64
}

func (r *wrtcRun) perPacket() float64 { return perPacket(r.cpu, r.relayed) }

func (r *wrtcRun) ok() bool {
	return r.err == nil && r.connected == r.n && r.toFar.silent == 0 && r.toFar.jit[1] <= wrtcJitterMax
}

// farEnd is one stream's far end: a pion browser or a plain UDP socket.
type farEnd interface {
	// send writes one RTP packet (hdr filled but for the SSRC the end owns).
	send(pkt []byte) error
	close()
}

// pair is one bridged stream.
type pair struct {
	near    *media.Session // plain RTP, far end the bench's near socket
	far     *media.Session // the WebRTC leg's Session, or plain RTP in the reference
	end     farEnd
	toFar   *rxStream
	toNear  *rxStream
	nearDst netip.AddrPort
}

type wrtcStep struct {
	n           int
	ref, webrtc *wrtcRun
}

func runWebRTC(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	loadBefore := loadAverage()
	pool, err := media.NewPortPool(20000, 30000)
	if err != nil {
		return "", err
	}
	var steps []wrtcStep
	for _, n := range wrtcLadder {
		st := wrtcStep{n: n}
		fmt.Printf("webrtc: %d legs: RTP↔RTP reference\n", n)
		st.ref = wrtcScenario(ctx, n, pool, false)
		fmt.Printf("webrtc: %d legs: reference: %s\n", n, st.ref.summary())
		if ctx.Err() != nil {
			break
		}
		fmt.Printf("webrtc: %d legs: WebRTC↔RTP\n", n)
		st.webrtc = wrtcScenario(ctx, n, pool, true)
		fmt.Printf("webrtc: %d legs: webrtc: %s\n", n, st.webrtc.summary())
		steps = append(steps, st)
		// A miss the reference shares is the machine's (other work on
		// the shared cores), not WebRTC's: the ladder goes on for the
		// CPU figures.
		if ctx.Err() != nil || st.webrtc.err != nil || !st.webrtc.ok() && st.ref.ok() {
			break
		}
	}
	if len(steps) == 0 {
		return "", ctx.Err()
	}
	return wrtcReport(b, steps, loadBefore, loadAverage(), time.Since(began)), ctx.Err()
}

func (r *wrtcRun) summary() string {
	s := fmt.Sprintf("connected %d/%d in %s; to far p50/p99/max %s ms, loss %s; to near %s ms, loss %s; %.1f µs/packet (%d relayed, CPU %s)",
		r.connected, r.n, r.setup.Round(10*time.Millisecond), triple(r.toFar.jit), lossPct(r.toFar.received, r.toFar.expected),
		triple(r.toNear.jit), lossPct(r.toNear.received, r.toNear.expected), r.perPacket(), r.relayed, r.cpu.Round(time.Millisecond))
	if r.err != nil {
		s += "; error: " + r.err.Error()
	}
	return s
}

// wrtcScenario sets up n bridged streams (WebRTC legs with pion browsers
// when webrtcLegs, else plain RTP on both sides), sends PCMU both ways,
// measures a window and tears everything down.
func wrtcScenario(ctx context.Context, n int, pool *media.PortPool, webrtcLegs bool) *wrtcRun {
	r := &wrtcRun{n: n}
	r.quiet = waitQuiet(ctx, wrtcQuietMax)
	win := &rxWin{epoch: time.Now()}
	win.from.Store(-1)
	win.to.Store(-1)

	near, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.err = err
		return r
	}
	bigBuffers(near)
	nearAddr := near.LocalAddr().(*net.UDPAddr)

	pairs := make([]*pair, n)
	byPort := make(map[uint16]*rxStream, n) // near session port → its stream back to the near socket
	var readers sync.WaitGroup
	defer func() {
		start := time.Now()
		for _, p := range pairs {
			if p == nil {
				continue
			}
			if p.end != nil {
				p.end.close()
			}
			p.near.Close()
			if p.far != nil {
				p.far.Close()
			}
		}
		near.Close()
		readers.Wait()
		r.teardown = time.Since(start)
		r.leftoverSessions = pool.InUse()
	}()

	// Set-up, wrtcSetupWorkers at a time.
	setupStart := time.Now()
	setupCtx, cancelSetup := context.WithTimeout(ctx, wrtcConnectMax)
	defer cancelSetup()
	var mu sync.Mutex
	var firstErr error
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < wrtcSetupWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p, err := newPair(setupCtx, i, pool, nearAddr, webrtcLegs, win, &readers)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("stream %d: %w", i, err)
					}
				} else {
					pairs[i] = p
					r.connected++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && setupCtx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		r.err = firstErr
		return r
	}
	if r.connected < n {
		r.err = fmt.Errorf("set-up: %d of %d legs connected: %w", r.connected, n, setupCtx.Err())
		return r
	}
	for _, p := range pairs {
		byPort[uint16(p.near.LocalPort())] = p.toNear
	}
	readers.Add(1)
	go func() {
		defer readers.Done()
		readNear(near, win, byPort)
	}()

	relayCtx, stopRelays := context.WithCancel(ctx)
	var relays sync.WaitGroup
	for _, p := range pairs {
		relays.Add(1)
		go func() {
			defer relays.Done()
			media.Relay(relayCtx, p.near, p.far)
		}()
	}
	sendCtx, stopSend := context.WithCancel(ctx)
	var senders sync.WaitGroup
	var sent, sendErrs atomic.Int64
	var lateNear, lateFar atomic.Int64
	senders.Add(2)
	go func() {
		defer senders.Done()
		sendTicks(sendCtx, n, &sent, &sendErrs, &lateNear, func(i int, pkt []byte) error {
			binary.BigEndian.PutUint32(pkt[8:12], uint32(i+1))
			_, err := near.WriteToUDPAddrPort(pkt, pairs[i].nearDst)
			return err
		})
	}()
	go func() {
		defer senders.Done()
		sendTicks(sendCtx, n, &sent, &sendErrs, &lateFar, func(i int, pkt []byte) error {
			return pairs[i].end.send(pkt)
		})
	}()
	stop := func() {
		stopSend()
		senders.Wait()
		stopRelays()
		relays.Wait()
	}

	// Every stream heard at both ends, then the warm-up.
	for {
		heard := 0
		for _, p := range pairs {
			if p.toFar.wasHeard() && p.toNear.wasHeard() {
				heard++
			}
		}
		if heard == n {
			break
		}
		if setupCtx.Err() != nil {
			r.err = fmt.Errorf("set-up: %d of %d streams heard at both ends: %w", heard, n, setupCtx.Err())
			stop()
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.setup = time.Since(setupStart)
	if err := sleepCtx(ctx, wrtcWarmup); err != nil {
		r.err = err
		stop()
		return r
	}

	relayed := func() int64 {
		var t uint64
		for _, p := range pairs {
			t += p.near.Stats().PacketsOut + p.far.Stats().PacketsOut
		}
		return int64(t)
	}
	toFar := make([]*rxStream, n)
	toNear := make([]*rxStream, n)
	for i, p := range pairs {
		toFar[i], toNear[i] = p.toFar, p.toNear
	}
	measure := func() (wrtcWindowResult, error) {
		var m wrtcWindowResult
		for i := range toFar {
			toFar[i].reset()
			toNear[i].reset()
		}
		lateNear.Store(0)
		lateFar.Store(0)
		rel0, cpu0, busy0, sent0 := relayed(), processCPU(), machineBusy(), sent.Load()
		from := win.now()
		win.to.Store(from + int64(wrtcWindow))
		win.from.Store(from)
		err := sleepCtx(ctx, wrtcWindow)
		m.cpu = processCPU() - cpu0
		m.other = max(0, machineBusy()-busy0-m.cpu)
		m.relayed = relayed() - rel0
		m.sent = sent.Load() - sent0
		m.rss = procStatusBytes(os.Getpid(), "VmRSS:")
		m.goroutines = runtime.NumGoroutine()
		m.sendLate = time.Duration(max(lateNear.Load(), lateFar.Load()))
		time.Sleep(100 * time.Millisecond) // the window's last packets in flight
		m.toFar, m.toNear = analyseDir(toFar), analyseDir(toNear)
		return m, err
	}
	for r.windows = 1; ; r.windows++ {
		m, err := measure()
		if err != nil {
			r.err = err
			break
		}
		if r.windows == 1 || m.other < r.other {
			r.wrtcWindowResult = m
		}
		if m.other.Seconds() < mediaOtherMax*wrtcWindow.Seconds() || r.windows == wrtcMaxWindows {
			break
		}
		fmt.Printf("webrtc: the rest of the machine used %s of a core in window %d; measuring again\n", pct(m.other, wrtcWindow), r.windows)
	}
	stop()
	r.sendErrs = sendErrs.Load()
	return r
}

// bigBuffers gives a bench socket 4 MiB each way, so a descheduled reader
// does not show up as loss.
func bigBuffers(c *net.UDPConn) {
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
}

// newPair sets up stream i: the near RTP Session (its far end the bench's
// near socket) and the far side, a WebRTC leg answered by a pion browser,
// or a plain RTP Session with a plain UDP socket as its far end.
func newPair(ctx context.Context, i int, pool *media.PortPool, nearAddr *net.UDPAddr, webrtcLegs bool, win *rxWin, readers *sync.WaitGroup) (*pair, error) {
	p := &pair{toFar: &rxStream{iv: make([]time.Duration, 0, 2*int(wrtcWindow/wrtcFrame))},
		toNear: &rxStream{iv: make([]time.Duration, 0, 2*int(wrtcWindow/wrtcFrame))}}
	var err error
	if p.near, err = media.NewSession("127.0.0.1", pool); err != nil {
		return nil, err
	}
	p.near.SetRemote(nearAddr)
	p.nearDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p.near.LocalPort()))
	fail := func(err error) (*pair, error) {
		if p.end != nil {
			p.end.close()
		}
		if p.far != nil {
			p.far.Close()
		}
		p.near.Close()
		return nil, err
	}
	if !webrtcLegs {
		if p.far, err = media.NewSession("127.0.0.1", pool); err != nil {
			return fail(err)
		}
		e, err := newUDPEnd(p.far.LocalPort(), uint32(0x10000+i), p.toFar, win, readers)
		if err != nil {
			return fail(err)
		}
		p.end = e
		p.far.SetRemote(e.conn.LocalAddr().(*net.UDPAddr))
		return p, nil
	}
	leg, offer, err := media.NewWebRTCOffer(ctx, media.WebRTCConfig{PublicIP: "127.0.0.1", Ports: pool,
		Codecs: []media.Codec{media.PCMU}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fail(err)
	}
	p.far = leg.Session()
	br, err := newPionBrowser(p.toFar, win, readers)
	if err != nil {
		return fail(err)
	}
	p.end = br
	answer, err := br.answer(ctx, offer)
	if err != nil {
		return fail(err)
	}
	if err := leg.Answer(answer); err != nil {
		return fail(err)
	}
	select {
	case <-leg.Connected():
	case <-leg.Done():
		return fail(errors.New("webrtc leg failed instead of connecting"))
	case <-ctx.Done():
		return fail(fmt.Errorf("webrtc leg not connected: %w", ctx.Err()))
	}
	select {
	case <-br.track.bound:
	case <-ctx.Done():
		return fail(fmt.Errorf("browser track not bound: %w", ctx.Err()))
	}
	return p, nil
}

// readNear reads what the relays send back to the near socket; the source
// port names the stream.
func readNear(c *net.UDPConn, win *rxWin, byPort map[uint16]*rxStream) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		at := win.now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if s := byPort[from.Port()]; s != nil && n >= 12 {
			s.add(win, binary.BigEndian.Uint16(buf[2:4]), at)
		}
	}
}

// sendTicks sends one 20 ms PCMU packet (160-byte payload) per stream on
// every tick of a 20 ms ticker, as part 4 does; send gets the stream index
// and the packet, whose SSRC it may set. late keeps the longest tick.
func sendTicks(ctx context.Context, n int, sent, errs, late *atomic.Int64, send func(i int, pkt []byte) error) {
	pkt := make([]byte, 12+160)
	for i := 12; i < len(pkt); i++ {
		pkt[i] = 0xff // µ-law silence
	}
	seqs := make([]uint16, n)
	t := time.NewTicker(wrtcFrame)
	defer t.Stop()
	for k := 0; ; k++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			pkt[0], pkt[1] = 0x80, 0 // PCMU
			if k == 0 {
				pkt[1] |= 0x80
			}
			binary.BigEndian.PutUint16(pkt[2:4], seqs[i])
			binary.BigEndian.PutUint32(pkt[4:8], uint32(k*160))
			if err := send(i, pkt); err != nil {
				errs.Add(1)
			} else {
				sent.Add(1)
			}
			seqs[i]++
		}
		if d := int64(time.Since(start)); d > late.Load() {
			late.Store(d)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// udpEnd is the reference's far end: a plain UDP socket and its reader.
type udpEnd struct {
	conn *net.UDPConn
	dst  netip.AddrPort
	ssrc uint32
}

func newUDPEnd(port int, ssrc uint32, rx *rxStream, win *rxWin, readers *sync.WaitGroup) (*udpEnd, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	e := &udpEnd{conn: c, ssrc: ssrc, dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))}
	readers.Add(1)
	go func() {
		defer readers.Done()
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			at := win.now()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n >= 12 {
				rx.add(win, binary.BigEndian.Uint16(buf[2:4]), at)
			}
		}
	}()
	return e, nil
}

func (e *udpEnd) send(pkt []byte) error {
	binary.BigEndian.PutUint32(pkt[8:12], e.ssrc)
	_, err := e.conn.WriteToUDPAddrPort(pkt, e.dst)
	return err
}

func (e *udpEnd) close() { e.conn.Close() }

// pionBrowser stands in for a browser: a pion peer connection with full
// ICE, host candidates on 127.0.0.1 only, no mDNS, DTLS client when it
// answers (as Chrome), no interceptors; its track writes raw RTP.
type pionBrowser struct {
	pc    *webrtc.PeerConnection
	track *rawRTPTrack
	hdr   rtp.Header
	// readerDone ends the reader's part in the teardown's wait: when the
	// reader returns, or at close if no track ever arrived.
	readerDone func()

	mu               sync.Mutex
	closing, reading bool
}

func newPionBrowser(rx *rxStream, win *rxWin, readers *sync.WaitGroup) (*pionBrowser, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []media.Codec{media.PCMU, media.TelephoneEvent} {
		p := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: uint32(c.Rate)}, PayloadType: webrtc.PayloadType(c.PT)}
		if c.IsDTMF() {
			p.SDPFmtpLine = "0-15"
		}
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		return nil, fmt.Errorf("browser peer connection: %w", err)
	}
	b := &pionBrowser{pc: pc, track: &rawRTPTrack{bound: make(chan struct{})}}
	if _, err := pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		pc.Close()
		return nil, fmt.Errorf("browser transceiver: %w", err)
	}
	readers.Add(1)
	b.readerDone = readers.Done
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		b.mu.Lock()
		if b.closing || b.reading {
			b.mu.Unlock()
			return
		}
		b.reading = true
		b.mu.Unlock()
		defer b.readerDone()
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			at := win.now()
			if err != nil && n < 12 {
				if errors.Is(err, webrtc.ErrCodecNotFound) {
					continue
				}
				return
			}
			rx.add(win, binary.BigEndian.Uint16(buf[2:4]), at)
		}
	})
	return b, nil
}

// answer answers the leg's offer and returns the answer with its
// candidates.
func (b *pionBrowser) answer(ctx context.Context, offer string) (string, error) {
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("browser: the leg's offer: %w", err)
	}
	ans, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("browser: answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("browser: answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("browser: gathering candidates: %w", ctx.Err())
	}
	return b.pc.LocalDescription().SDP, nil
}

func (b *pionBrowser) send(pkt []byte) error {
	select {
	case <-b.track.bound:
	default:
		return errors.New("browser track not bound")
	}
	h := &b.hdr
	if _, err := h.Unmarshal(pkt); err != nil {
		return err
	}
	h.SSRC = b.track.ssrc
	_, err := b.track.w.WriteRTP(h, pkt[12:])
	return err
}

func (b *pionBrowser) close() {
	b.pc.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closing && !b.reading {
		b.readerDone()
	}
	b.closing = true
}

// rawRTPTrack writes packets as given, keeping their payload type.
type rawRTPTrack struct {
	bound chan struct{}
	w     webrtc.TrackLocalWriter
	ssrc  uint32
}

func (r *rawRTPTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	r.w, r.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
	close(r.bound)
	return ctx.CodecParameters()[0], nil
}
func (r *rawRTPTrack) Unbind(webrtc.TrackLocalContext) error { return nil }
func (r *rawRTPTrack) ID() string                            { return "mic" }
func (r *rawRTPTrack) RID() string                           { return "" }
func (r *rawRTPTrack) StreamID() string                      { return "browser" }
func (r *rawRTPTrack) Kind() webrtc.RTPCodecType             { return webrtc.RTPCodecTypeAudio }
