package main

// The phone of part 4: the bench's RTP endpoint that every call's SDP
// points at, in a tight loop of blocking reads or polling with recvmmsg,
// and part B's sender.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// rxSample is one RTP packet as the phone received it.
type rxSample struct {
	ssrc uint32
	seq  uint16
	user int64 // time.Now() right after the read, ns since the phone's epoch (monotonic)
	lag  int64 // that time minus the kernel's receive timestamp (SO_TIMESTAMPNS), ns
	kern int64 // kernel receive timestamp, ns since the phone's epoch
	sent int64 // part B: send time carried in the payload, ns since the epoch; 0 otherwise
}

// phone is the bench's RTP endpoint: one UDP socket that every call's SDP
// points at, read in a tight loop.
type phone struct {
	conn    *net.UDPConn
	port    int
	rcvbuf  int // effective SO_RCVBUF as the kernel reports it
	epoch   time.Time
	epochNs int64 // epoch as Unix ns, to place kernel timestamps

	packets atomic.Int64
	streams atomic.Int64
	polling atomic.Bool
	bad     atomic.Int64 // not RTP, or no kernel timestamp

	// sendFrom and sendTo bound the window whose sent packets sentWin
	// counts (part B).
	sendFrom, sendTo, sentWin atomic.Int64

	mu       sync.Mutex
	from, to int64 // recording window, arrival ns since epoch
	samples  []rxSample
	overflow int

	done chan struct{}
}

// stampMagic marks the bench's own packets in part B (payload bytes 8..11),
// so echoes are told from anything else.
const stampMagic = 0x52444c42 // "RDLB"

func newPhone(capacity int) (*phone, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("phone socket: %w", err)
	}
	p := &phone{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, epoch: time.Now(), done: make(chan struct{}),
		samples: make([]rxSample, 0, capacity)}
	p.epochNs = p.epoch.UnixNano()
	if p.rcvbuf, err = timestampedSocket(c, 4<<20); err != nil {
		c.Close()
		return nil, fmt.Errorf("phone socket: %w", err)
	}
	go p.read()
	return p, nil
}

// timestampedSocket gives a loopback receiver socket an 8 MiB receive
// buffer (and sndbuf bytes of send buffer when not 0) and kernel receive
// timestamps (SO_TIMESTAMPNS), and returns the receive buffer it got.
func timestampedSocket(c *net.UDPConn, sndbuf int) (rcvbuf int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		// SO_RCVBUFFORCE passes net.core.rmem_max when we may (root); the
		// plain option is capped by it.
		const want = 8 << 20
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, want) != nil {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, want)
		}
		if sndbuf > 0 {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, sndbuf)
		}
		rcvbuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if err := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
			serr = fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return rcvbuf, serr
}

// read receives until the socket is closed: first in a tight loop of
// blocking reads, then, once poll is called, in batches every millisecond.
func (p *phone) read() {
	defer close(p.done)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	seen := map[uint32]struct{}{}
	for !p.polling.Load() {
		n, oobn, _, _, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // poll woke us through the read deadline
		}
		p.handle(buf[:n], oob[:oobn], now, seen)
	}
	p.conn.SetReadDeadline(time.Time{})
	p.pollLoop(seen)
}

// poll switches the reader to polling: every millisecond it drains the
// socket with non-blocking recvmmsg batches of 64 and sleeps again, so it
// is woken 1,000 times a second instead of once per packet. Arrival times
// then come from the kernel's stamps; time.Now() is per batch.
func (p *phone) poll() {
	p.polling.Store(true)
	p.conn.SetReadDeadline(time.Unix(1, 0))
}

// mmsghdr is struct mmsghdr of linux/amd64.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
	_   [4]byte
}

func (p *phone) pollLoop(seen map[uint32]struct{}) {
	const batch = 64
	raw, err := p.conn.SyscallConn()
	if err != nil {
		return
	}
	msgs := make([]mmsghdr, batch)
	iovs := make([]syscall.Iovec, batch)
	bufs := make([][512]byte, batch)
	oobs := make([][64]byte, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.Iovlen = 1
		msgs[i].hdr.Control = &oobs[i][0]
	}
	for {
		closed := false
		err := raw.Read(func(fd uintptr) bool {
			for {
				for i := range msgs {
					msgs[i].hdr.SetControllen(len(oobs[i]))
					msgs[i].hdr.Flags = 0
				}
				n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), batch, syscall.MSG_DONTWAIT, 0, 0)
				if e != 0 {
					if e == syscall.EBADF {
						closed = true
					}
					return true // EAGAIN: drained; sleep
				}
				now := time.Now()
				for i := 0; i < int(n); i++ {
					p.handle(bufs[i][:msgs[i].len], oobs[i][:msgs[i].hdr.Controllen], now, seen)
				}
				if int(n) < batch {
					return true
				}
			}
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// poll's wake-up landed after the tight loop had cleared it.
			p.conn.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil || closed {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// handle records one received datagram.
func (p *phone) handle(pkt, oob []byte, now time.Time, seen map[uint32]struct{}) {
	kern, ok := kernelStamp(oob)
	if len(pkt) < 12 || pkt[0]>>6 != 2 || !ok {
		p.bad.Add(1)
		return
	}
	p.packets.Add(1)
	s := rxSample{
		ssrc: binary.BigEndian.Uint32(pkt[8:12]),
		seq:  binary.BigEndian.Uint16(pkt[2:4]),
		user: int64(now.Sub(p.epoch)),
		lag:  now.UnixNano() - kern,
		kern: kern - p.epochNs,
	}
	if len(pkt) >= 12+16 && binary.BigEndian.Uint32(pkt[20:24]) == stampMagic {
		s.sent = int64(binary.BigEndian.Uint64(pkt[12:20]))
	}
	if _, ok := seen[s.ssrc]; !ok {
		seen[s.ssrc] = struct{}{}
		p.streams.Store(int64(len(seen)))
	}
	p.mu.Lock()
	if s.user >= p.from && s.user < p.to {
		if len(p.samples) < cap(p.samples) {
			p.samples = append(p.samples, s)
		} else {
			p.overflow++
		}
	}
	p.mu.Unlock()
}

// kernelStamp finds SCM_TIMESTAMPNS in a control message buffer (Unix ns).
func kernelStamp(oob []byte) (int64, bool) {
	const hdr = 16 // struct cmsghdr on 64-bit Linux: len uint64, level, type int32
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return sec*1e9 + nsec, true
		}
		l = (l + 7) &^ 7
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return 0, false
}

// now is the phone's clock: ns since its epoch.
func (p *phone) now() int64 { return int64(time.Since(p.epoch)) }

// record keeps the packets arriving in [from, to) (phone clock).
func (p *phone) record(from, to int64) {
	p.mu.Lock()
	p.from, p.to = from, to
	p.samples = p.samples[:0]
	p.overflow = 0
	p.mu.Unlock()
}

// take returns what record kept and stops recording.
func (p *phone) take() ([]rxSample, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := append([]rxSample(nil), p.samples...)
	p.from, p.to = 0, 0
	return s, p.overflow
}

func (p *phone) close() {
	p.conn.Close()
	<-p.done
}

// sendStream is one call's outgoing RTP stream in part B.
type sendStream struct {
	to   netip.AddrPort
	ssrc uint32
	seq  uint16
	ts   uint32
}

// sendWindow makes sentWin count the packets sent in [from, to) from now.
func (p *phone) sendWindow(from, to int64) {
	p.sendFrom.Store(from)
	p.sendTo.Store(to)
	p.sentWin.Store(0)
}

// sendLoop sends one 20 ms PCMU packet (160-byte payload) per stream on
// every tick of a 20 ms ticker until ctx ends, from the phone's socket. The
// payload carries the send time (phone clock) and stampMagic so the echo
// gives the round trip.
func (p *phone) sendLoop(ctx context.Context, streams []*sendStream, sent, errs *atomic.Int64) {
	pkt := make([]byte, 12+160)
	for i := 24; i < len(pkt); i++ {
		pkt[i] = 0xff // µ-law silence
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	first := true
	for {
		for _, s := range streams {
			pkt[0] = 0x80
			pkt[1] = 0 // PCMU
			if first {
				pkt[1] |= 0x80 // marker on the first packet of each stream
			}
			binary.BigEndian.PutUint16(pkt[2:4], s.seq)
			binary.BigEndian.PutUint32(pkt[4:8], s.ts)
			binary.BigEndian.PutUint32(pkt[8:12], s.ssrc)
			at := p.now()
			binary.BigEndian.PutUint64(pkt[12:20], uint64(at))
			binary.BigEndian.PutUint32(pkt[20:24], stampMagic)
			if _, err := p.conn.WriteToUDPAddrPort(pkt, s.to); err != nil {
				errs.Add(1)
			} else {
				sent.Add(1)
				if at >= p.sendFrom.Load() && at < p.sendTo.Load() {
					p.sentWin.Add(1)
				}
			}
			s.seq++
			s.ts += 160
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeSamples keeps the phone's samples as CSV (with -keep), for a closer
// look at the timing.
func writeSamples(path string, samples []rxSample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "ssrc,seq,user_ns,kernel_ns,lag_ns,sent_ns")
	for _, s := range samples {
		fmt.Fprintf(w, "%d,%d,%d,%d,%d,%d\n", s.ssrc, s.seq, s.user, s.kern, s.lag, s.sent)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
