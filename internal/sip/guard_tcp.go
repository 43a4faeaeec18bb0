package sip

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
)

// TCP: the guard frames the stream itself (header section up to the empty
// line, then Content-Length bytes) and hands sipgo only whole messages it
// passed. A request refused with its framing intact (505, a missing
// header) is answered and the connection goes on; when the framing itself
// is broken (a header section longer than MaxMessage, a bad or oversize
// Content-Length, a line not ended by CRLF) it is answered when it can be
// and the connection closed, as nothing tells where the next message
// starts. Limits: messages are read as they come, without a deadline, so a
// peer that sends half a message and waits holds its connection (and
// sipgo's goroutine for it) until it closes it; outbound TCP connections
// that redial opens to carriers are not guarded (their peer is a trunk
// the operator configured).

// guardedListener wraps accepted connections in guardedConn.
type guardedListener struct {
	net.Listener
	g *guard
	// serving is closed at sipgo's first Accept.
	serving     chan struct{}
	servingOnce sync.Once
}

func newGuardedListener(l net.Listener, g *guard) *guardedListener {
	return &guardedListener{Listener: l, g: g, serving: make(chan struct{})}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	l.servingOnce.Do(func() { close(l.serving) })
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, g: l.g, r: bufio.NewReaderSize(c, 4096)}, nil
}

// guardedConn is an accepted TCP connection as sipgo reads it.
type guardedConn struct {
	net.Conn
	g *guard
	r *bufio.Reader
	// out is what was passed and not yet read by sipgo.
	out []byte
	// err ends the stream once out is read.
	err error
}

// errBrokenFraming ends a connection whose framing cannot be trusted;
// sipgo sees io.EOF and closes it.
var errBrokenFraming = errors.New("broken SIP framing")

// Read returns bytes of messages the guard passed.
func (c *guardedConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			if errors.Is(c.err, errBrokenFraming) {
				return 0, io.EOF
			}
			return 0, c.err
		}
		c.out, c.err = c.next()
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next reads one message (or keep-alive) and returns what sipgo should
// see of it: the message when passed, nothing when refused.
func (c *guardedConn) next() ([]byte, error) {
	// Keep-alives (RFC 5626 3.5.1) go through alone, so sipgo pongs them.
	if b, _ := c.r.Peek(1); len(b) == 1 && (b[0] == '\r' || b[0] == '\n') {
		ka := make([]byte, 0, 4)
		for len(ka) < 4 {
			b, err := c.r.Peek(1)
			if err != nil || b[0] != '\r' && b[0] != '\n' {
				break
			}
			c.r.ReadByte()
			ka = append(ka, b[0])
		}
		return ka, nil
	}
	max := c.g.limits.MaxMessage
	var head []byte
	for {
		line, err := c.r.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > max {
			return nil, c.refuseFraming(head, 513, "header section larger than the message limit")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			// The peer closed or the read failed mid-message: nothing
			// to answer.
			return nil, err
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			return nil, c.refuseFraming(head, 400, "line not ended by CRLF")
		}
		if len(line) == 2 {
			break // the empty line
		}
	}
	m, ok := scanMessage(head)
	if !ok {
		return nil, c.refuseFraming(head, 0, "not a SIP message")
	}
	length, ok := contentLength(m)
	switch {
	case !ok:
		return nil, c.refuseFraming(head, 400, "malformed Content-Length")
	case length > c.g.limits.MaxBody || len(head)+length > max:
		return nil, c.refuseFraming(head, 413, "body larger than the limit")
	case length < 0:
		length = 0
	}
	msg := make([]byte, len(head)+length)
	copy(msg, head)
	if _, err := io.ReadFull(c.r, msg[len(head):]); err != nil {
		return nil, err
	}
	v := c.g.check(msg, true)
	if v.pass {
		return msg, nil
	}
	c.send(v)
	if v.code == 0 && v.why == "not a SIP message" {
		return nil, errBrokenFraming
	}
	return nil, nil
}

// refuseFraming answers a message whose framing is broken, when it can be
// answered, and ends the connection.
func (c *guardedConn) refuseFraming(head []byte, code int, why string) error {
	v := verdict{code: code, why: why}
	m, ok := scanMessage(head)
	if code == 0 || !ok || m.response || !m.answerable() || m.method == "ACK" {
		v.code = 0
	}
	v.msg = m
	c.send(v)
	return errBrokenFraming
}

func (c *guardedConn) send(v verdict) {
	if resp := c.g.refuse(v, "tcp", c.RemoteAddr().String()); resp != nil {
		c.Conn.Write(resp)
	}
}
