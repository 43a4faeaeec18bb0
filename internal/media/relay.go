package media

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxPacket is the receive buffer per relay direction; larger datagrams
// than an Ethernet MTU do not occur for G.711 but must not be truncated
// silently either, so leave generous room.
const maxPacket = 2048

// maxConsecutiveErrors ends a relay direction whose socket keeps failing
// for a reason other than closing, instead of spinning on it.
const maxConsecutiveErrors = 100

// RelayStats counts the packets a Relay forwarded in each direction.
type RelayStats struct {
	AtoB, BtoA uint64
}

// Relay anchors media between two sessions (B2BUA): RTP received on a goes to
// b's remote and vice versa. It blocks until ctx is done or either session is
// closed. While it runs it must be the only reader of a and b.
//
// SSRC, sequence numbers and timestamps pass through unchanged. When the
// sessions' codecs differ (PCMU vs PCMA) the payload is transcoded and the
// payload type rewritten; telephone-event packets get the other side's
// telephone-event payload type when both are known (SetDTMF). Other payload
// types (comfort noise, ...) pass untouched. No memory is allocated per packet.
func Relay(ctx context.Context, a, b *Session) RelayStats {
	return RelayRecord(ctx, a, b, nil)
}

// RelayRecord is Relay that also hands every packet to rec (a's in the
// left channel, b's in the right) before forwarding it; a nil rec records
// nothing and costs one comparison per packet. The caller closes rec.
func RelayRecord(ctx context.Context, a, b *Session, rec *StereoRecorder) RelayStats {
	return StartRelay(ctx, a, b, rec).Wait()
}

// RelayRun is a relay started by StartRelay.
type RelayRun struct {
	done  chan struct{}
	stop  func()
	wait  func() RelayStats
	once  sync.Once
	stats RelayStats
}

// StartRelay starts RelayRecord(ctx, a, b, rec) without blocking: Done is
// closed when the relay stops (ctx done, a session closed, Stop), and Wait
// returns its counts once it has stopped. Whoever starts it must see that
// it stops (Stop, or ctx) and call Wait.
//
// A relay between two plain UDP sessions runs on the port pool's shared
// poller and costs no goroutine while it is held (a bridged call holds one
// for its whole life); others (WebRTC legs) run one goroutine per direction.
// The poller holds the sessions' sockets outside Go's netpoller while it
// relays them: the sessions still send (WritePacket, Play) meanwhile, and
// read again once the relay has stopped; nothing queued is lost across
// the switch.
func StartRelay(ctx context.Context, a, b *Session, rec *StereoRecorder) *RelayRun {
	if r := startPolled(ctx, a, b, rec); r != nil {
		return r
	}
	pctx, cancel := context.WithCancel(ctx)
	r := &RelayRun{done: make(chan struct{}), stop: cancel}
	var st RelayStats
	go func() {
		defer close(r.done)
		defer cancel()
		st = relayPumped(pctx, a, b, rec)
	}()
	r.wait = func() RelayStats { <-r.done; return st }
	return r
}

// Done is closed when the relay has stopped: its context is done, a
// session was closed or Stop was called.
func (r *RelayRun) Done() <-chan struct{} { return r.done }

// Stop ends the relay, as cancelling its context does; the sessions stay
// usable (a polled relay has given their sockets back when Stop returns).
// It may be called any number of times.
func (r *RelayRun) Stop() { r.stop() }

// Wait blocks until the relay has stopped (Done) and no longer touches the
// sessions, and returns its counts. It may be called more than once.
func (r *RelayRun) Wait() RelayStats {
	r.once.Do(func() { r.stats = r.wait() })
	return r.stats
}

// relayPumped relays a and b with one goroutine per direction.
func relayPumped(ctx context.Context, a, b *Session, rec *StereoRecorder) RelayStats {
	r := &relay{a: a, b: b, rec: rec}
	unwatch := context.AfterFunc(ctx, r.stop)

	var st RelayStats
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.stop()
		st.AtoB = r.pump(a, b, 0)
	}()
	func() {
		defer r.stop()
		st.BtoA = r.pump(b, a, 1)
	}()
	wg.Wait()
	unwatch()
	r.finish()
	return st
}

type relay struct {
	a, b     *Session
	rec      *StereoRecorder
	stopping atomic.Bool

	mu       sync.Mutex
	finished bool
}

// stop wakes both directions by expiring the sockets' read deadlines, which
// (unlike closing) leaves the sessions usable after the relay.
func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished || r.stopping.Load() {
		return
	}
	r.stopping.Store(true)
	past := time.Unix(1, 0)
	_ = r.a.setReadDeadline(past)
	_ = r.b.setReadDeadline(past)
}

// finish clears the deadlines stop set; holding mu guarantees a late
// context.AfterFunc call cannot set them again afterwards.
func (r *relay) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = true
	if r.stopping.Load() {
		_ = r.a.setReadDeadline(time.Time{})
		_ = r.b.setReadDeadline(time.Time{})
	}
}

// pump forwards src's packets to dst until the relay stops; side is src's
// channel in a recording.
func (r *relay) pump(src, dst *Session, side int) uint64 {
	buf := make([]byte, maxPacket)
	var forwarded uint64
	errs := 0
	for {
		n, err := src.ReadPacket(buf)
		if err != nil {
			if r.stopping.Load() || src.isClosed(err) {
				return forwarded
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errs++; errs > maxConsecutiveErrors {
				src.log.Load().Warn("media: relay: giving up on failing rtp socket",
					"local_port", src.port, "error", err)
				return forwarded
			}
			continue
		}
		errs = 0
		pkt := buf[:n]
		sp := src.params.Load()
		if r.rec != nil {
			r.rec.packet(side, pkt, sp)
		}
		translate(pkt, sp, dst.params.Load())
		if err := dst.WritePacket(pkt); err != nil {
			if dst.isClosed(err) {
				return forwarded
			}
			continue // a transient send error (ENOBUFS, firewall) loses this packet only
		}
		forwarded++
	}
}

// translate adapts one packet from src's to dst's payload formats in place.
func translate(pkt []byte, sp, dp *mediaParams) {
	pt := pkt[1] & 0x7f
	switch {
	case pt == sp.codec.PT:
		if sp.law == lawOther || dp.law == lawOther {
			return // nothing we can convert; let the far end cope
		}
		if sp.law != dp.law {
			off, end, ok := payloadBounds(pkt)
			if !ok {
				return
			}
			if sp.law == lawUlaw {
				encodeTable(pkt[off:end], &ulawToAlaw)
			} else {
				encodeTable(pkt[off:end], &alawToUlaw)
			}
		}
		pkt[1] = pkt[1]&0x80 | dp.codec.PT
	case sp.dtmfPT >= 0 && int(pt) == sp.dtmfPT:
		if dp.dtmfPT >= 0 {
			pkt[1] = pkt[1]&0x80 | uint8(dp.dtmfPT)
		}
	}
}

// payloadBounds finds the payload of an RTP packet, past CSRCs and the header
// extension and before padding.
func payloadBounds(pkt []byte) (off, end int, ok bool) {
	if len(pkt) < rtpHeaderLen {
		return 0, 0, false
	}
	off = rtpHeaderLen + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < off+4 {
			return 0, 0, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	end = len(pkt)
	if pkt[0]&0x20 != 0 {
		end -= int(pkt[end-1])
	}
	if off > end {
		return 0, 0, false
	}
	return off, end, true
}
