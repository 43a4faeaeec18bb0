package sip

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	gosip "github.com/emiago/sipgo/sip"
)

// rawSender writes an outbound leg's requests to the UDP listener as
// bytes, without sipgo's transport (issue 14). For the ACK and BYE sipgo
// would build a Request object (some 600 bytes before any header), add a
// Via, work out the connection from the destination string, serialize the
// message into a pooled buffer and write it; here they are assembled
// around headers written by sipgo's own StringWrite, the same bytes as
// sipgo's, for dialogs whose remote target is an IP address over UDP and
// that have no route set (uacDialog.rawTo). The INVITE keeps its Request
// object (its CANCEL, ACK and digest answer are built from it) but gets
// its Via, CSeq and Max-Forwards here and is serialized by sipgo's writer
// into the same buffers (buildInvite, send). All else goes through sipgo
// as before.
type rawSender struct {
	conn *guardedPacketConn
	// via is the Via up to the branch's value: "Via: SIP/2.0/UDP
	// <public IP>:<port>;branch=", as sipgo writes its own.
	via  string
	bufs sync.Pool // *rawBuf
	// host and port are the Via's sent-by, laddr the listener's address
	// as the UDP client has it (sipgo.WithClientConnectionAddr): what
	// sipgo's ClientRequestBuild gives an INVITE (buildInvite).
	host  string
	port  int
	laddr gosip.Addr
	// tail is the last tailFor written.
	tail atomic.Pointer[renderedTail]
}

// newRawSender returns the writer for conn, the UDP listener at listen
// (host:port, as the engine's UDP client was given it), whose Via names
// publicIP and port.
func newRawSender(conn *guardedPacketConn, publicIP string, port int, listen string) *rawSender {
	v := gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: publicIP, Port: port}
	var b strings.Builder
	v.StringWrite(&b)
	s := &rawSender{conn: conn, via: b.String() + ";branch=", host: publicIP, port: port}
	// As sipgo.WithClientConnectionAddr parses it.
	if h, p, err := gosip.ParseAddr(listen); err == nil {
		s.laddr = gosip.Addr{IP: net.ParseIP(h), Port: p, Hostname: h}
	}
	return s
}

// buildInvite gives req what sipgo's ClientRequestBuild gives a request
// that has its From, To and Call-ID (Dial's INVITE, withCredentials'
// copy of it): a Via with a new branch, a CSeq and Max-Forwards where
// they are missing, put first in that order, and the listener as local
// address. It reports false, changing nothing, for a request that lacks
// one of those three, which sipgo then builds. Unlike sipgo's, it works
// out no names and formats no addresses per call (issue 14).
func (s *rawSender) buildInvite(req *gosip.Request) bool {
	if req.From() == nil || req.To() == nil || req.CallID() == nil {
		return false
	}
	hs := make([]gosip.Header, 0, 3)
	if req.Via() == nil {
		hs = append(hs, &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: s.host, Port: s.port,
			Params: gosip.HeaderParams{{K: "branch", V: newBranch()}}})
	}
	if req.CSeq() == nil {
		// sipgo starts a CSeq anywhere in 0-32767 too.
		hs = append(hs, &gosip.CSeqHeader{SeqNo: rand.Uint32() & 0x7FFF, MethodName: req.Method})
	}
	if req.MaxForwards() == nil {
		mf := gosip.MaxForwardsHeader(70)
		hs = append(hs, &mf)
	}
	req.PrependHeader(hs...)
	if req.Body() == nil {
		req.SetBody(nil)
	}
	// Shared: nothing writes into a request's local address.
	req.Laddr = s.laddr
	return true
}

// send writes req, whole, to to.
func (s *rawSender) send(req *gosip.Request, to netip.AddrPort) error {
	w := s.get()
	defer s.put(w)
	req.StringWrite(w)
	return s.conn.writeToAddrPort(w.b, to)
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
	return ipAddrPort(u.target.Host, u.target.Port)
}

// renderedDialog is what a dialog's ACK and BYE share, written once by
// sipgo's header writers: the Request-URI, then From, To and Call-ID
// (dlg), then Max-Forwards, Contact and the empty body (tail). Kept for
// the call's life (some 300 bytes), it halves the writing a call does.
type renderedDialog struct {
	uri, dlg, tail string
}

// renderedParts returns the dialog's rendered parts, writing them at the
// first call: into one buffer turned into one string that the parts
// slice, and with the tail the legs share (rawSender.tailFor).
func (u *uacDialog) renderedParts() *renderedDialog {
	if r := u.rendered.Load(); r != nil {
		return r
	}
	w := rawBuf{b: make([]byte, 0, 384)}
	u.target.StringWrite(&w)
	uriEnd := len(w.b)
	if u.from != nil {
		u.from.StringWrite(&w)
		w.WriteString("\r\n")
	}
	if u.to != nil {
		u.to.StringWrite(&w)
		w.WriteString("\r\n")
	}
	u.callID.StringWrite(&w)
	w.WriteString("\r\n")
	s := string(w.b)
	r := &renderedDialog{uri: s[:uriEnd], dlg: s[uriEnd:], tail: u.raw.tailFor(u.contact)}
	if u.rendered.CompareAndSwap(nil, r) {
		return r
	}
	return u.rendered.Load()
}

// renderedTail is the end of a raw request from a given Contact on:
// Max-Forwards, the Contact, the empty body.
type renderedTail struct {
	contact *gosip.ContactHeader
	s       string
}

// tailFor returns the end of a request sent with contact, written once
// per Contact: the legs share the engine's (uacDialog.contact), which
// nothing changes once built.
func (s *rawSender) tailFor(contact *gosip.ContactHeader) string {
	if t := s.tail.Load(); t != nil && t.contact == contact {
		return t.s
	}
	var b strings.Builder
	b.WriteString("Max-Forwards: 70\r\n")
	contact.StringWrite(&b)
	b.WriteString("\r\nContent-Length: 0\r\n\r\n")
	t := &renderedTail{contact: contact, s: b.String()}
	s.tail.Store(t)
	return t.s
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
