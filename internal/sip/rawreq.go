package sip

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	gosip "github.com/emiago/sipgo/sip"
)

// rawSender writes a dialog's ACK and BYE to the UDP listener as bytes,
// without sipgo (issue 14): sipgo would build a Request object (some 600
// bytes before any header), add a Via, work out the connection from the
// destination string, serialize the message into a pooled buffer and
// write it, for each of the two requests every call sends after its
// INVITE. The bytes are the same as sipgo's for the same request: every
// header is written by sipgo's own StringWrite, only the message around
// them is assembled here. Used for dialogs whose remote target is an IP
// address over UDP and that have no route set (uacDialog.rawTo); all
// others go through sipgo as before.
type rawSender struct {
	conn *guardedPacketConn
	// via is the Via up to the branch's value: "Via: SIP/2.0/UDP
	// <public IP>:<port>;branch=", as sipgo writes its own.
	via  string
	bufs sync.Pool // *rawBuf
}

func newRawSender(conn *guardedPacketConn, publicIP string, port int) *rawSender {
	v := gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: publicIP, Port: port}
	var b strings.Builder
	v.StringWrite(&b)
	return &rawSender{conn: conn, via: b.String() + ";branch="}
}

// rawBuf is a message being written: an io.StringWriter over a byte
// slice, so sipgo's header writers append to it.
type rawBuf struct{ b []byte }

func (w *rawBuf) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

func (s *rawSender) get() *rawBuf {
	if w, _ := s.bufs.Get().(*rawBuf); w != nil {
		w.b = w.b[:0]
		return w
	}
	return &rawBuf{b: make([]byte, 0, 1024)}
}

func (s *rawSender) put(w *rawBuf) {
	if cap(w.b) <= 8192 {
		s.bufs.Put(w)
	}
}

// newBranch returns a Via branch of sipgo's form: the magic cookie, a dot
// and 16 random letters.
func newBranch() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b [len(gosip.RFC3261BranchMagicCookie) + 1 + 16]byte
	n := copy(b[:], gosip.RFC3261BranchMagicCookie)
	b[n] = '.'
	r := rand.Uint64()
	for i := n + 1; i < len(b); i++ {
		if i == n+1+10 {
			r = rand.Uint64() // 10 letters of about 6 bits each per draw
		}
		b[i] = letters[r%uint64(len(letters))]
		r /= uint64(len(letters))
	}
	return string(b[:])
}

// rawTo reports where the dialog's requests go when the engine may write
// them itself: to the remote target, an IP address over UDP, with no
// route set (a Record-Route, strict or loose, goes through sipgo, which
// works the next hop out).
func (u *uacDialog) rawTo() (netip.AddrPort, bool) {
	if !strings.EqualFold(u.transport, "udp") || len(u.routes) > 0 || u.dest != "" {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(u.target.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := u.target.Port
	if port <= 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// renderedDialog is what a dialog's ACK and BYE share, written once by
// sipgo's header writers: the Request-URI, then From, To and Call-ID
// (dlg), then Max-Forwards, Contact and the empty body (tail). Kept for
// the call's life (some 300 bytes), it halves the writing a call does.
type renderedDialog struct {
	uri, dlg, tail string
}

// renderedParts returns the dialog's rendered parts, writing them at the
// first call.
func (u *uacDialog) renderedParts() *renderedDialog {
	if r := u.rendered.Load(); r != nil {
		return r
	}
	var b strings.Builder
	u.target.StringWrite(&b)
	uri := b.String()
	b.Reset()
	if u.from != nil {
		u.from.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if u.to != nil {
		u.to.StringWrite(&b)
		b.WriteString("\r\n")
	}
	u.callID.StringWrite(&b)
	b.WriteString("\r\n")
	dlg := b.String()
	b.Reset()
	b.WriteString("Max-Forwards: 70\r\n")
	u.contact.StringWrite(&b)
	b.WriteString("\r\nContent-Length: 0\r\n\r\n")
	r := &renderedDialog{uri: uri, dlg: dlg, tail: b.String()}
	if u.rendered.CompareAndSwap(nil, r) {
		return r
	}
	return u.rendered.Load()
}

// render writes the dialog's request method with CSeq number cseq and Via
// branch branch into w, as request would build it and sipgo write it:
// Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, an empty body.
func (u *uacDialog) render(w *rawBuf, via string, method gosip.RequestMethod, cseq uint32, branch string) {
	parts := u.renderedParts()
	w.WriteString(string(method))
	w.WriteString(" ")
	w.WriteString(parts.uri)
	w.WriteString(" SIP/2.0\r\n")
	w.WriteString(via)
	w.WriteString(branch)
	w.WriteString("\r\n")
	w.WriteString(parts.dlg)
	w.WriteString("CSeq: ")
	w.b = strconv.AppendUint(w.b, uint64(cseq), 10)
	w.WriteString(" ")
	w.WriteString(string(method))
	w.WriteString("\r\n")
	w.WriteString(parts.tail)
}

// sendRaw renders the request into a pooled buffer and writes it to to.
func (u *uacDialog) sendRaw(to netip.AddrPort, method gosip.RequestMethod, cseq uint32, branch string) error {
	w := u.raw.get()
	defer u.raw.put(w)
	u.render(w, u.raw.via, method, cseq, branch)
	return u.raw.conn.writeToAddrPort(w.b, to)
}
