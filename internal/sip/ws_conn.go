package sip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The WebSocket framing of a hijacked connection, between the browser and
// sipgo (see ws.go).

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// WebSocket close codes (RFC 6455 section 7.4.1).
const (
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeTooBig        = 1009
)

type frameHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	mask   [4]byte
	length uint64
}

var errFrameLength = errors.New("frame length with its most significant bit set")

func readFrameHeader(r io.Reader) (frameHeader, error) {
	var h frameHeader
	var b [8]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return h, err
	}
	h.fin, h.rsv, h.op = b[0]&0x80 != 0, b[0]>>4&7, b[0]&0x0f
	h.masked = b[1]&0x80 != 0
	switch n := b[1] & 0x7f; n {
	case 126:
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return h, noEOF(err)
		}
		h.length = uint64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(r, b[:8]); err != nil {
			return h, noEOF(err)
		}
		h.length = binary.BigEndian.Uint64(b[:8])
		if h.length>>63 != 0 {
			return h, errFrameLength
		}
	default:
		h.length = uint64(n)
	}
	if h.masked {
		if _, err := io.ReadFull(r, h.mask[:]); err != nil {
			return h, noEOF(err)
		}
	}
	return h, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends a final frame; masked frames (what sipgo, as a
// server, insists on reading) get the zero key, which leaves the payload
// as it is.
func appendFrame(dst []byte, op byte, payload []byte, masked bool) []byte {
	dst = append(dst, 0x80|op)
	var m byte
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, m|byte(n))
	case n <= 0xffff:
		dst = append(dst, m|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, m|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if masked {
		dst = append(dst, 0, 0, 0, 0)
	}
	return append(dst, payload...)
}

// frameSize is the size of the frame p starts with, header included; ok
// is false while p does not hold the whole header.
func frameSize(p []byte) (size int, ok bool) {
	if len(p) < 2 {
		return 0, false
	}
	hl := 2
	var n uint64
	switch l := p[1] & 0x7f; l {
	case 126:
		hl += 2
		if len(p) < hl {
			return 0, false
		}
		n = uint64(binary.BigEndian.Uint16(p[2:4]))
	case 127:
		hl += 8
		if len(p) < hl {
			return 0, false
		}
		n = binary.BigEndian.Uint64(p[2:10])
	default:
		n = uint64(l)
	}
	if p[1]&0x80 != 0 {
		hl += 4
	}
	return hl + int(n), true
}

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// wsConn is a hijacked connection as sipgo sees it (see the top of the
// file).
type wsConn struct {
	net.Conn
	srv    *wsServer
	source string
	secure bool

	// Read side: used by sipgo's goroutine for the socket only (its
	// upgrader, then its reader).
	prefix []byte        // the upgrade request, replayed
	in     *bufio.Reader // net/http's buffered reader, then the socket
	out    []byte        // frames for sipgo
	rerr   error         // returned once out is read
	msg    []byte        // the message being read, maybe from fragments
	inMsg  bool          // a fragmented message is under way
	// readEnded is set once reading stopped: Close then sends no close
	// frame (one went already, or the peer is gone).
	readEnded atomic.Bool

	// Write side.
	wmu      sync.Mutex
	cond     *sync.Cond // on wmu: signalled when pending empties
	upgraded bool       // the upgrader's response went out
	tail     []byte     // the response's last bytes, to find its end
	pending  []byte     // a frame sipgo is writing in pieces
	closing  bool       // a close frame went out: nothing follows it
	werr     error

	closeOnce sync.Once
}

func (c *wsConn) network() string {
	if c.secure {
		return "wss"
	}
	return "ws"
}

// Read gives sipgo's upgrader the request, then sipgo the messages the
// guard passed, one text frame each.
func (c *wsConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	for len(c.out) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		c.out, c.rerr = c.next()
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next reads one frame and returns what sipgo should get of it.
func (c *wsConn) next() ([]byte, error) {
	h, err := readFrameHeader(c.in)
	if err != nil {
		if errors.Is(err, errFrameLength) {
			return nil, c.fail(closeProtocolError, "malformed frame length")
		}
		return nil, c.endRead(err)
	}
	switch {
	case h.rsv != 0:
		return nil, c.fail(closeProtocolError, "reserved bits set without an extension")
	case !h.masked:
		return nil, c.fail(closeProtocolError, "unmasked frame from a client")
	}
	if h.op >= opClose {
		if !h.fin || h.length > 125 {
			return nil, c.fail(closeProtocolError, "fragmented or oversize control frame")
		}
		p := make([]byte, h.length)
		if _, err := io.ReadFull(c.in, p); err != nil {
			return nil, c.endRead(noEOF(err))
		}
		unmask(p, h.mask)
		switch h.op {
		case opClose:
			// Echo the status code (RFC 6455 section 5.5.1); sipgo then
			// sees the end of the stream and closes the socket.
			var echo []byte
			if len(p) >= 2 {
				echo = p[:2]
			}
			c.writeFrame(opClose, echo)
			return nil, c.endRead(io.EOF)
		case opPing:
			c.writeFrame(opPong, p)
		case opPong:
		default:
			return nil, c.fail(closeProtocolError, "reserved control opcode")
		}
		return nil, nil
	}
	switch h.op {
	case opText, opBinary:
		if c.inMsg {
			return nil, c.fail(closeProtocolError, "new message inside a fragmented one")
		}
		c.inMsg, c.msg = true, c.msg[:0]
	case opContinuation:
		if !c.inMsg {
			return nil, c.fail(closeProtocolError, "continuation frame outside a message")
		}
	default:
		return nil, c.fail(closeProtocolError, "reserved data opcode")
	}
	limit := c.srv.guard.limits.MaxMessage
	if h.length > uint64(limit-len(c.msg)) {
		// Refused on the header: the payload is never read.
		c.srv.guard.mBad.WithLabelValues("dropped").Inc()
		return nil, c.fail(closeTooBig, fmt.Sprintf("message larger than %d bytes", limit))
	}
	start := len(c.msg)
	c.msg = slices.Grow(c.msg, int(h.length))[:start+int(h.length)]
	if _, err := io.ReadFull(c.in, c.msg[start:]); err != nil {
		return nil, c.endRead(noEOF(err))
	}
	unmask(c.msg[start:], h.mask)
	if !h.fin {
		return nil, nil
	}
	c.inMsg = false
	return c.deliver(c.msg), nil
}

// deliver returns a whole message framed for sipgo when the guard passes
// it, and answers it otherwise.
func (c *wsConn) deliver(data []byte) []byte {
	// Keep-alives (RFC 5626 3.5.1, SIP.js sends them) go through: sipgo
	// answers CRLFCRLF with CRLF.
	if isKeepalive(data) {
		return appendFrame(nil, opText, data, true)
	}
	v := c.srv.guard.check(data, false)
	if v.pass {
		return appendFrame(nil, opText, data, true)
	}
	if resp := c.srv.guard.refuse(v, c.network(), c.source); resp != nil {
		c.writeFrame(opText, resp)
	}
	return nil
}

func unmask(p []byte, key [4]byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// fail closes the connection for a protocol violation: a close frame with
// code, then the end of the stream for sipgo.
func (c *wsConn) fail(code int, why string) error {
	c.srv.log.Info("sip: WebSocket closed by the node", "transport", c.network(), "source", c.source, "code", code, "why", why)
	c.writeFrame(opClose, closePayload(code, why))
	return c.endRead(errors.New(why))
}

// endRead stops reading. sipgo gets io.EOF whatever happened (it logs
// anything else at ERROR, and a browser going away is routine).
func (c *wsConn) endRead(err error) error {
	c.readEnded.Store(true)
	if err != io.EOF {
		c.srv.log.Debug("sip: WebSocket read ended", "transport", c.network(), "source", c.source, "error", err)
	}
	return io.EOF
}

// writeFrame sends a frame of ours, between sipgo's frames.
func (c *wsConn) writeFrame(op byte, payload []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.pending) > 0 && c.werr == nil {
		c.cond.Wait()
	}
	if c.closing || c.werr != nil || !c.upgraded {
		return
	}
	if op == opClose {
		c.closing = true
	}
	c.rawWrite(appendFrame(nil, op, payload, false), wsWriteTimeout)
}

// Write takes what sipgo writes: the upgrader's HTTP response, then
// frames, each in two pieces (header, payload) that are sent together.
func (c *wsConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	n := len(b)
	if !c.upgraded {
		joined := append(c.tail, b...)
		end := bytes.Index(joined, []byte("\r\n\r\n"))
		if end < 0 {
			c.tail = joined[max(0, len(joined)-3):]
			return n, c.rawWrite(b, wsWriteTimeout)
		}
		end += 4 - len(c.tail)
		c.upgraded, c.tail = true, nil
		if err := c.rawWrite(b[:end], wsWriteTimeout); err != nil {
			return 0, err
		}
		b = b[end:]
	}
	if c.closing {
		// Nothing may follow a close frame; sipgo is about to close.
		return n, nil
	}
	c.pending = append(c.pending, b...)
	sent := 0
	for {
		size, ok := frameSize(c.pending[sent:])
		if !ok || len(c.pending)-sent < size {
			break
		}
		if err := c.rawWrite(c.pending[sent:sent+size], wsWriteTimeout); err != nil {
			return 0, err
		}
		sent += size
	}
	c.pending = append(c.pending[:0], c.pending[sent:]...)
	if len(c.pending) == 0 {
		c.cond.Broadcast()
	}
	return n, nil
}

// rawWrite writes to the socket; wmu is held. A failed write leaves a
// partial frame behind, so the socket is closed: its reader ends and
// sipgo cleans up.
func (c *wsConn) rawWrite(p []byte, timeout time.Duration) error {
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Conn.Write(p)
	if err != nil {
		c.werr = fmt.Errorf("websocket %s: %w", c.source, err)
		c.pending = nil
		c.cond.Broadcast()
		c.Conn.Close()
		return c.werr
	}
	return nil
}

// lockWithin takes wmu if it can within d.
func (c *wsConn) lockWithin(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.wmu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Close closes the socket once, telling a client still there that the
// node is going away, and runs the close hooks.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		// Once reading ended, sipgo calls this holding its pool's lock,
		// and a close frame went already or the peer is gone. Otherwise
		// (shutdown) a writer holding wmu is waited for briefly: a socket
		// stuck full gets no close frame.
		if !c.readEnded.Load() && c.lockWithin(100*time.Millisecond) {
			if c.upgraded && !c.closing && c.werr == nil && len(c.pending) == 0 {
				c.closing = true
				c.rawWrite(appendFrame(nil, opClose, closePayload(closeGoingAway, "going away"), false), 100*time.Millisecond)
			}
			c.wmu.Unlock()
		}
		err = c.Conn.Close()
		c.srv.ended(c)
	})
	return err
}
