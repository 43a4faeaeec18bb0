package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5/deadline"
	"github.com/pion/webrtc/v4"
)

// webrtcRemote is the source address a WebRTC leg's packets come from, as
// far as the Session's symmetric-RTP latching is concerned: always the
// same, so the Session accepts every packet pion hands over.
var webrtcRemote = netip.AddrPortFrom(netip.IPv4Unspecified(), 9)

// webrtcConn is a Session's transport over a pion peer connection: reads
// come from the browser's audio track (decrypted RTP), writes go to our
// track's SRTP stream.
type webrtcConn struct {
	pc   *webrtc.PeerConnection
	sock *net.UDPConn
	log  *slog.Logger

	// dmu orders read-deadline changes against the track's arrival, so a
	// deadline set before the browser's first packet applies to the track.
	dmu      sync.Mutex
	rdl      time.Time
	wait     *deadline.Deadline // wakes reads that wait for the track
	track    atomic.Pointer[webrtc.TrackRemote]
	trackSet chan struct{}

	// wmu serialises writers (Play's clock, SendDTMF, a relay), so
	// sequence numbers go out in the order they are assigned.
	wmu    sync.Mutex
	writer webrtc.TrackLocalWriter // nil until pion binds our track
	ssrc   uint32
	hdr    rtp.Header
	out    outStreams

	ended     chan struct{} // the connection failed or closed (WebRTCLeg.Done)
	endOnce   sync.Once
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// setTrack takes the browser's audio track. Only the first counts: the
// leg has one audio transceiver and the browser one sender.
func (c *webrtcConn) setTrack(t *webrtc.TrackRemote) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.track.Load() != nil {
		c.log.Info("media: webrtc leg: ignoring a second remote track", "ssrc", uint32(t.SSRC()))
		return
	}
	_ = t.SetReadDeadline(c.rdl)
	c.track.Store(t)
	close(c.trackSet)
}

// ReadFromUDPAddrPort returns the browser's next RTP packet, decrypted.
func (c *webrtcConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		t := c.track.Load()
		if t == nil {
			select {
			case <-c.trackSet:
				continue
			case <-c.wait.Done():
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			case <-c.closed:
				return 0, netip.AddrPort{}, net.ErrClosed
			case <-c.ended:
				return 0, netip.AddrPort{}, fmt.Errorf("media: webrtc leg ended: %w", net.ErrClosed)
			}
		}
		n, _, err := t.Read(b)
		switch {
		case err == nil:
		case c.isClosed():
			return 0, netip.AddrPort{}, net.ErrClosed
		case c.hasEnded():
			// The connection closed or failed (end woke this read): pion
			// does not always end the track's reads by itself.
			return 0, netip.AddrPort{}, fmt.Errorf("media: webrtc leg ended: %w", net.ErrClosed)
		case isTimeout(err):
			return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
		case errors.Is(err, webrtc.ErrCodecNotFound) && n >= rtpHeaderLen:
			// A payload type the SDP did not name (comfort noise, say):
			// pion complains, a Session passes it on or ignores it.
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe):
			// The browser closed DTLS or the connection failed: this
			// leg's media is over.
			return 0, netip.AddrPort{}, fmt.Errorf("media: webrtc leg ended: %w", net.ErrClosed)
		default:
			return 0, netip.AddrPort{}, err
		}
		return n, webrtcRemote, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// SetReadDeadline applies to the track's reads, or to the wait for the
// track while the browser has sent nothing yet.
func (c *webrtcConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdl = t
	c.wait.Set(t)
	if tr := c.track.Load(); tr != nil {
		return tr.SetReadDeadline(t)
	}
	return nil
}

// WriteToUDPAddrPort sends one RTP packet built by the Session on our
// track's SSRC; the address is ignored. Before DTLS completes pion drops
// it.
func (c *webrtcConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	off, end, ok := payloadBounds(b)
	if !ok || b[0]>>6 != 2 {
		return 0, errors.New("media: webrtc: not an RTP packet")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writer == nil {
		return len(b), nil // not negotiated yet: nowhere to send
	}
	h := &c.hdr
	h.Version = 2
	h.Marker = b[1]&0x80 != 0
	h.PayloadType = b[1] & 0x7f
	// CSRCs and header extensions of a relayed stream mean nothing to the
	// browser (no extension was negotiated), so they are not forwarded.
	h.SequenceNumber, h.Timestamp = c.out.next(binary.BigEndian.Uint32(b[8:12]),
		binary.BigEndian.Uint16(b[2:4]), binary.BigEndian.Uint32(b[4:8]), time.Now())
	h.SSRC = c.ssrc
	if _, err := c.writer.WriteRTP(h, b[off:end]); err != nil {
		if c.isClosed() || c.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
			return 0, fmt.Errorf("media: webrtc leg ended: %w", net.ErrClosed)
		}
		return 0, err
	}
	return len(b), nil
}

// Close closes the peer connection and waits for pion's goroutines and
// ours, then closes the socket (pion's ICE agent normally has already).
func (c *webrtcConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.pc.GracefulClose()
		if err := c.sock.Close(); err != nil && !errors.Is(err, net.ErrClosed) && c.closeErr == nil {
			c.closeErr = err
		}
		c.wg.Wait()
		c.wait.Set(time.Time{}) // stops its timer
		c.end()
	})
	return c.closeErr
}

// end marks the leg's media over and wakes a read waiting on the track.
func (c *webrtcConn) end() {
	c.endOnce.Do(func() {
		close(c.ended)
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if t := c.track.Load(); t != nil {
			_ = t.SetReadDeadline(time.Now())
		}
	})
}

func (c *webrtcConn) hasEnded() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

func (c *webrtcConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// drainRTCP reads and discards RTCP with read until it fails (the peer
// connection closed).
func (c *webrtcConn) drainRTCP(read func([]byte) (int, interceptor.Attributes, error)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := read(buf); err != nil {
				return
			}
		}
	}()
}

// localTrack is the leg's outgoing audio. Unlike pion's
// TrackLocalStaticRTP it keeps each packet's payload type, so RFC 4733
// events go out on the telephone-event payload type.
type localTrack struct{ c *webrtcConn }

func (t *localTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var codec *webrtc.RTPCodecParameters
	for _, p := range ctx.CodecParameters() {
		if c, ok := CodecByName(mimeSubtype(p.MimeType)); ok && !c.IsDTMF() {
			codec = &p
			break
		}
	}
	if codec == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	t.c.wmu.Lock()
	defer t.c.wmu.Unlock()
	t.c.writer = ctx.WriteStream()
	t.c.ssrc = uint32(ctx.SSRC())
	return *codec, nil
}

func (t *localTrack) Unbind(webrtc.TrackLocalContext) error {
	t.c.wmu.Lock()
	defer t.c.wmu.Unlock()
	t.c.writer = nil
	return nil
}

func (t *localTrack) ID() string                { return "audio" }
func (t *localTrack) RID() string               { return "" }
func (t *localTrack) StreamID() string          { return "redial" }
func (t *localTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

func mimeSubtype(mime string) string {
	_, sub, _ := strings.Cut(mime, "/")
	return sub
}

// outStreams maps the RTP streams a Session sends (each Play, the DTMF
// events, a relayed peer: each with its own SSRC, sequence numbers and
// timestamps) onto the leg's one outgoing stream.
//
// Sequence numbers: when the source stream changes, the next packet gets
// the number after the highest sent; while it stays the same, differences
// (gaps from loss upstream) are kept. SRTP receivers estimate the rollover
// counter from them, so a jump of half the space would make the browser
// drop a whole stream as replayed or fail to decrypt it.
//
// Timestamps: each source stream keeps one offset from its first packet
// on (all packets of an RFC 4733 event must share a timestamp), chosen so
// it continues the timeline: the latest timestamp plus the 8 kHz time
// since it was sent, at least one frame.
//
// The first source stream passes unchanged (offsets zero).
type outStreams struct {
	started  bool
	lastSSRC uint32 // source of the previous packet
	seqDelta uint16
	maxSeq   uint16    // highest sequence number sent
	refTS    uint32    // timestamp of that packet
	refAt    time.Time // and when it was sent
	tick     uint64
	src      [4]srcStream // the recently seen source streams
}

type srcStream struct {
	ssrc    uint32
	tsDelta uint32
	used    uint64 // tick of the last packet, 0 for a free slot
}

// next returns the sequence number and timestamp for a packet of source
// stream ssrc.
func (o *outStreams) next(ssrc uint32, seq uint16, ts uint32, now time.Time) (uint16, uint32) {
	o.tick++
	var st *srcStream
	for i := range o.src {
		if o.src[i].used != 0 && o.src[i].ssrc == ssrc {
			st = &o.src[i]
			break
		}
	}
	if st == nil {
		st = &o.src[0]
		for i := range o.src {
			if o.src[i].used < st.used {
				st = &o.src[i]
			}
		}
		*st = srcStream{ssrc: ssrc}
		if o.started {
			// The reference packet holds at least one 20 ms frame, so the
			// new stream starts no earlier than its end.
			elapsed := uint32(max(now.Sub(o.refAt), FrameDuration).Milliseconds() * SampleRate / 1000)
			st.tsDelta = o.refTS + elapsed - ts
		}
	}
	st.used = o.tick
	first := !o.started
	if first {
		o.started = true
	} else if ssrc != o.lastSSRC {
		o.seqDelta = o.maxSeq + 1 - seq
	}
	o.lastSSRC = ssrc
	outSeq, outTS := seq+o.seqDelta, ts+st.tsDelta
	if first || int16(outSeq-o.maxSeq) > 0 {
		o.maxSeq, o.refTS, o.refAt = outSeq, outTS, now
	}
	return outSeq, outTS
}

// pionLogs routes pion's logging to slog. pion warns about routine events
// (every close reports streams "already closed"), so its warnings are
// debug lines here and its errors warnings; what matters for a call shows
// in the leg's own lines and in Done.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) logf(level slog.Level, format string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Trace(string)                      {}
func (p pionLogger) Tracef(string, ...any)             {}
func (p pionLogger) Debug(msg string)                  { p.logf(slog.LevelDebug, "%s", msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p pionLogger) Info(msg string)                   { p.logf(slog.LevelDebug, "%s", msg) }
func (p pionLogger) Infof(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p pionLogger) Warn(msg string)                   { p.logf(slog.LevelDebug, "%s", msg) }
func (p pionLogger) Warnf(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p pionLogger) Error(msg string)                  { p.logf(slog.LevelWarn, "%s", msg) }
func (p pionLogger) Errorf(format string, args ...any) { p.logf(slog.LevelWarn, format, args...) }
