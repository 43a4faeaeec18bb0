package sip

import (
	"bytes"
	"net"
	"strconv"

	gosip "github.com/emiago/sipgo/sip"
)

// The responses to the engine's own client transactions (inviteUDP,
// uacDialog.byeUDP) are taken off the UDP listener before sipgo sees them
// (guardedPacketConn.ReadFrom → takeResponse). sipgo would parse every
// header of each, start a goroutine for it, build its transaction key and
// look for a transaction it does not have, to hand it at last to the
// unhandled-response handler; at three responses a call (180, 200, the
// BYE's 200) that was about a tenth of a call's CPU (issue 14). Here a
// scan of the raw datagram finds the top Via and the CSeq lines and parses
// just those, for the branch and the method; the whole response is parsed
// only when its content is needed: a 2xx or a
// failure to an INVITE (the dialog, the ACK, a challenge), or anything
// with a body (a 183's SDP). A 100, a 180 without SDP and the 200 to a
// BYE reach their transaction as a bare status code. What the scan cannot
// read, or matches nothing of ours, goes to sipgo as before, whose
// unhandled-response handler still matches it (pendingTx.deliver): the
// scan only ever saves work.

// scannedResponse is what takeResponse reads of a response datagram.
type scannedResponse struct {
	code   int
	branch string // the top Via's branch parameter
	method gosip.RequestMethod
	// body is true when anything follows the header section.
	body bool
}

// scanResponse reads a response datagram's status code, top Via branch
// and CSeq method, parsing only those two header lines. ok is false for
// anything it does not read with certainty (a request, folded header
// lines, two CSeq headers, a Via or CSeq sipgo refuses): the caller then
// leaves the datagram to sipgo.
func scanResponse(data []byte) (s scannedResponse, ok bool) {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 || len(data) < 12 || !hasSIPPrefix(string(data[:4])) {
		return s, false
	}
	s.body = len(data) > end+4
	head := data[:end+2] // each line ends with CRLF
	eol := bytes.Index(head, []byte("\r\n"))
	first := head[:eol]
	head = head[eol+2:]
	// "SIP/2.0 180 Ringing", the reason phrase possibly empty.
	if len(first) < 12 || !bytes.Equal(first[:8], []byte("SIP/2.0 ")) || first[11] != ' ' {
		return s, false
	}
	code, err := strconv.Atoi(string(first[8:11]))
	if err != nil || code < 100 || code > 699 {
		return s, false
	}
	s.code = code
	var via, cseq []byte
	for len(head) > 0 {
		eol := bytes.Index(head, []byte("\r\n"))
		line := head[:eol]
		head = head[eol+2:]
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return s, false // folded lines: sipgo's parser knows them
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return s, false
		}
		name := bytes.TrimRight(line[:colon], " \t")
		switch {
		case via == nil && (asciiEqualFold(name, "via") || asciiEqualFold(name, "v")):
			via = line
		case asciiEqualFold(name, "cseq"):
			if cseq != nil {
				return s, false
			}
			cseq = line
		}
	}
	if via == nil || cseq == nil {
		return s, false
	}
	// The lines as peers write them back to us (our own Via, a CSeq of
	// number and method) are read here; anything else with sipgo's own
	// header parsers, so both paths find the same transaction.
	if branch, ok := plainViaBranch(via[len("v"):]); ok {
		if method, ok := plainCSeqMethod(cseq); ok {
			s.branch, s.method = branch, method
			return s, true
		}
	}
	parsers := gosip.HeadersParser(gosip.DefaultHeadersParser())
	hs, err := parsers.ParseHeader(nil, via)
	if err != nil || len(hs) == 0 {
		return s, false
	}
	v, isVia := hs[0].(*gosip.ViaHeader)
	if !isVia {
		return s, false
	}
	s.branch, _ = v.Params.Get("branch")
	hs, err = parsers.ParseHeader(hs[:0], cseq)
	if err != nil || len(hs) == 0 {
		return s, false
	}
	cs, isCSeq := hs[0].(*gosip.CSeqHeader)
	if !isCSeq || s.branch == "" || cs.MethodName == "" {
		return s, false
	}
	s.method = cs.MethodName
	return s, true
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// takeResponse hands a response datagram from addr to the engine's own
// client transaction it answers, and reports whether it did; the caller
// passes on to sipgo whatever it did not take.
func (e *Engine) takeResponse(data []byte, addr net.Addr) bool {
	s, ok := scanResponse(data)
	if !ok {
		return false
	}
	rc := e.pending.lookup(s.branch, s.method)
	if rc == nil {
		return false
	}
	bare := s.code < 200 && !s.body || s.code >= 200 && s.code < 300 && s.method == gosip.BYE
	var r *gosip.Response
	if bare {
		r = e.bareResponse(s.code)
	} else {
		msg, err := e.respParser.ParseSIP(data)
		res, isResponse := msg.(*gosip.Response)
		if err != nil || !isResponse {
			return false // sipgo logs it as it always did
		}
		res.SetTransport("UDP")
		res.SetSource(addr.String())
		r = res
	}
	rc.receive(r)
	return true
}

// bareResponse returns the engine's one response that is nothing but
// status code code, made at its first use. Transactions only read the
// responses they get, so one per code serves every call.
func (e *Engine) bareResponse(code int) *gosip.Response {
	p := &e.bare[code-100]
	if r := p.Load(); r != nil {
		return r
	}
	p.CompareAndSwap(nil, &gosip.Response{StatusCode: code})
	return p.Load()
}

// plainViaBranch reads the branch of a Via line (after its name's first
// letter) of the plain form the engine writes and peers copy back:
// "ia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK.x" (or ": ..." for the
// compact "v"), one value, sent-by of host characters, parameters of
// token characters, no spaces but after the colon. ok is false for
// anything else, which sipgo's parser then reads; FuzzScanResponse holds
// both to the same result. It saves a call two header objects and their
// parameters (issue 14).
func plainViaBranch(rest []byte) (branch string, ok bool) {
	if len(rest) >= 2 && asciiEqualFold(rest[:2], "ia") {
		rest = rest[2:]
	}
	if len(rest) == 0 || rest[0] != ':' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " ")
	const proto = "SIP/2.0/"
	if len(rest) < len(proto) || string(rest[:len(proto)]) != proto {
		return "", false
	}
	rest = rest[len(proto):]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return "", false
	}
	for _, c := range rest[:sp] { // UDP, TCP, TLS, WS...
		if c < 'A' || c > 'Z' {
			return "", false
		}
	}
	rest = rest[sp+1:]
	semi := bytes.IndexByte(rest, ';')
	if semi <= 0 || !isSentBy(rest[:semi]) {
		return "", false
	}
	for params := rest[semi+1:]; ; {
		param := params
		next := bytes.IndexByte(params, ';')
		if next >= 0 {
			param, params = params[:next], params[next+1:]
		}
		name, value, hasValue := bytes.Cut(param, []byte("="))
		if !isToken(name) || hasValue && !isToken(value) {
			return "", false
		}
		if asciiEqualFold(name, "branch") {
			if string(name) != "branch" {
				return "", false // how sipgo matches the name's case is its own
			}
			if branch != "" || !hasValue {
				return "", false
			}
			branch = string(value)
		}
		if next < 0 {
			break
		}
	}
	return branch, branch != ""
}

// plainCSeqMethod reads the method of a CSeq line of the plain form
// "CSeq: 4711 INVITE": a number of up to nine digits, one space, an
// upper-case method; ok is false for anything else.
func plainCSeqMethod(line []byte) (gosip.RequestMethod, bool) {
	rest := bytes.TrimLeft(line[len("cseq"):], " ")
	if len(rest) == 0 || rest[0] != ':' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " ")
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 || sp > 9 {
		return "", false
	}
	for _, c := range rest[:sp] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	m := rest[sp+1:]
	if len(m) == 0 {
		return "", false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return "", false
		}
	}
	// The methods the engine's own transactions send, without allocating.
	for _, known := range []gosip.RequestMethod{gosip.INVITE, gosip.BYE, gosip.CANCEL, gosip.ACK} {
		if string(m) == string(known) {
			return known, true
		}
	}
	return gosip.RequestMethod(m), true
}

// isSentBy reports whether b is a plain host[:port]: a host of letters,
// digits, dots and dashes, or a bracketed IPv6 address, and a port of
// one to five digits. Stricter than hostLike, which checks characters
// only: sipgo reads a Via whose port is not a number without its
// parameters (FuzzScanResponse's first find).
func isSentBy(b []byte) bool {
	host, port := b, []byte(nil)
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 2 {
			return false
		}
		for _, c := range b[1:end] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		switch rest := b[end+1:]; {
		case len(rest) == 0:
			return true
		case rest[0] != ':':
			return false
		default:
			port = rest[1:]
		}
		host = nil
	} else if i := bytes.IndexByte(b, ':'); i >= 0 {
		host, port = b[:i], b[i+1:]
		if port == nil {
			port = []byte{}
		}
	}
	if host != nil {
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
				return false
			}
		}
	}
	if port != nil {
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
