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
	// Both lines are read with sipgo's own header parsers, so both paths
	// find the same transaction.
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
