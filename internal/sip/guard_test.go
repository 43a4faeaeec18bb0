package sip

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// rawPeer is a test-owned UDP socket on loopback talking raw SIP.
type rawPeer struct {
	t  testing.TB
	c  *net.UDPConn
	to *net.UDPAddr
}

func newRawPeer(t testing.TB, engineAddr string) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	to, err := net.ResolveUDPAddr("udp", engineAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, c: c, to: to}
}

func (p *rawPeer) addr() string { return p.c.LocalAddr().String() }

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.c.WriteToUDP(b, p.to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next datagram, or an error when none came within d.
func (p *rawPeer) recv(d time.Duration) (string, error) {
	buf := make([]byte, 65536)
	p.c.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.c.ReadFromUDP(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// sipMessage joins a start line, header lines and a body.
func sipMessage(start string, headers []string, body string) []byte {
	var b strings.Builder
	b.WriteString(start + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return []byte(b.String())
}

// requestHeaders are the mandatory headers of a request from peer.
func requestHeaders(transport, peer, callID, method string) []string {
	return []string{
		"Via: SIP/2.0/" + transport + " " + peer + ";branch=z9hG4bK-" + callID,
		"From: <sip:tester@127.0.0.1>;tag=t-" + callID,
		"To: <sip:redial@127.0.0.1>",
		"Call-ID: " + callID,
		"CSeq: 7 " + method,
		"Max-Forwards: 70",
	}
}

// without drops the headers starting with prefix.
func without(headers []string, prefix string) []string {
	var out []string
	for _, h := range headers {
		if !strings.HasPrefix(h, prefix) {
			out = append(out, h)
		}
	}
	return out
}

// responseHeader returns the value of a header of a raw response.
func responseHeader(resp, name string) string {
	for _, line := range strings.Split(resp, "\r\n")[1:] {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Requests sipgo would answer wrongly (SIP/9.9 as if 2.0) or not at all
// (it drops what it cannot parse) are answered as RFC 3261 says, with
// Via, From, To, Call-ID and CSeq copied and never a header value holding
// CR, LF or NUL.
func TestMalformedRequestsAnswered(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	p := newRawPeer(t, e.Addr("udp"))
	std := func(id, method string) []string { return requestHeaders("UDP", p.addr(), id, method) }
	cases := []struct {
		name   string
		msg    func(id string) []byte
		code   string
		why    string
		noCSeq bool
	}{
		{"version SIP/9.9", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/9.9", append(std(id, "OPTIONS"), "Content-Length: 0"), "")
		}, "505 Version Not Supported", "only SIP/2.0", false},
		{"no From", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", without(std(id, "OPTIONS"), "From:"), "")
		}, "400 Bad Request", "missing From header", false},
		{"no To", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", without(std(id, "OPTIONS"), "To:"), "")
		}, "400 Bad Request", "missing To header", false},
		{"no Call-ID", func(id string) []byte {
			return sipMessage("INVITE sip:redial@127.0.0.1 SIP/2.0", without(std(id, "INVITE"), "Call-ID:"), "")
		}, "400 Bad Request", "missing Call-ID header", false},
		{"no CSeq", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", without(std(id, "OPTIONS"), "CSeq:"), "")
		}, "400 Bad Request", "missing CSeq header", true},
		{"Content-Length not a number", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(std(id, "OPTIONS"), "Content-Length: ten"), "")
		}, "400 Bad Request", "malformed Content-Length", false},
		{"Content-Length beyond the datagram", func(id string) []byte {
			return sipMessage("INVITE sip:redial@127.0.0.1 SIP/2.0", append(std(id, "INVITE"), "Content-Length: 300"), "v=0\r\n")
		}, "400 Bad Request", "Content-Length larger than the body", false},
		{"two Content-Lengths", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(std(id, "OPTIONS"), "Content-Length: 0", "l: 5"), "hello")
		}, "400 Bad Request", "malformed Content-Length", false},
		{"CSeq of another method", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(std(id, "INVITE"), "Content-Length: 0"), "")
		}, "400 Bad Request", "CSeq method differs", false},
		{"bare LF in From forging a header", func(id string) []byte {
			h := std(id, "OPTIONS")
			h[1] = "From: <sip:tester@127.0.0.1>;tag=x\nX-Evil: 1"
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(h, "Content-Length: 0"), "")
		}, "400 Bad Request", "control characters in header from", false},
		{"NUL in a header", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(std(id, "OPTIONS"), "Subject: a\x00b", "Content-Length: 0"), "")
		}, "400 Bad Request", "control characters in header subject", false},
		{"body over MaxBody", func(id string) []byte {
			body := strings.Repeat("a", 9000)
			return sipMessage("INVITE sip:redial@127.0.0.1 SIP/2.0", append(std(id, "INVITE"), fmt.Sprintf("Content-Length: %d", len(body))), body)
		}, "413 Request Entity Too Large", "body larger than", false},
		{"message over MaxMessage", func(id string) []byte {
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(std(id, "OPTIONS"), "X-Pad: "+strings.Repeat("p", 20000), "Content-Length: 0"), "")
		}, "513 Message Too Large", "message of", false},
		{"malformed To URI", func(id string) []byte {
			h := std(id, "OPTIONS")
			h[2] = "To: <sip:redial@127.0.0.1"
			return sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(h, "Content-Length: 0"), "")
		}, "400 Bad Request", "malformed request", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("bad-%d-%d", i, rand.Int())
			p.send(tc.msg(id))
			resp, err := p.recv(5 * time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.HasPrefix(resp, "SIP/2.0 "+tc.code+"\r\n") {
				t.Fatalf("answer %q, want %s", firstLine(resp), tc.code)
			}
			if strings.Count(resp, "\n") != strings.Count(resp, "\r\n") || strings.ContainsAny(resp, "\x00") || strings.Contains(resp, "X-Evil") {
				t.Fatalf("answer carries a bare LF, a NUL or the forged header:\n%q", resp)
			}
			if got := responseHeader(resp, "Warning"); !strings.Contains(got, tc.why) {
				t.Fatalf("Warning %q, want it to say %q", got, tc.why)
			}
			if got, want := responseHeader(resp, "Via"), "SIP/2.0/UDP "+p.addr()+";branch=z9hG4bK-"+id; got != want {
				t.Fatalf("Via %q, want %q", got, want)
			}
			if got := responseHeader(resp, "Call-ID"); tc.name != "no Call-ID" && got != id {
				t.Fatalf("Call-ID %q, want %q", got, id)
			}
			if got := responseHeader(resp, "CSeq"); !tc.noCSeq && !strings.HasPrefix(got, "7 ") {
				t.Fatalf("CSeq %q not copied", got)
			}
			if to := responseHeader(resp, "To"); tc.name != "no To" && !strings.Contains(to, ";tag=") {
				t.Fatalf("To %q has no tag", to)
			}
			from := responseHeader(resp, "From")
			if tc.name == "bare LF in From forging a header" {
				if from != "" {
					t.Fatalf("the From holding a bare LF was copied: %q", from)
				}
			} else if tc.name != "no From" && from != "<sip:tester@127.0.0.1>;tag=t-"+id {
				t.Fatalf("From %q not copied", from)
			}
		})
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// optionsAnswered sends a valid OPTIONS until its 200 comes back, skipping
// answers to earlier messages, and returns the answers skipped.
func optionsAnswered(t testing.TB, p *rawPeer) []string {
	t.Helper()
	var skipped []string
	n := 0
	testenv.WaitFor(t, 15*time.Second, func() error {
		n++
		id := fmt.Sprintf("ok-%d-%d", n, rand.Int())
		p.send(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(requestHeaders("UDP", p.addr(), id, "OPTIONS"), "Content-Length: 0"), ""))
		for {
			resp, err := p.recv(300 * time.Millisecond)
			if err != nil {
				return fmt.Errorf("no 200 to OPTIONS %s: %w", id, err)
			}
			if responseHeader(resp, "Call-ID") == id && strings.HasPrefix(resp, "SIP/2.0 200 ") {
				return nil
			}
			skipped = append(skipped, firstLine(resp))
		}
	})
	return skipped
}

// What cannot be answered is dropped without a word: no usable Via, an
// ACK, a response of another version, garbage.
func TestUnanswerableDropped(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	p := newRawPeer(t, e.Addr("udp"))
	std := requestHeaders("UDP", p.addr(), "drop-1", "OPTIONS")
	p.send(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", without(std, "Via:"), ""))
	p.send(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append([]string{"Via: garbage"}, std[1:]...), ""))
	p.send(sipMessage("ACK sip:redial@127.0.0.1 SIP/9.9", requestHeaders("UDP", p.addr(), "drop-2", "ACK"), ""))
	p.send(sipMessage("SIP/3.0 200 OK", std, ""))
	p.send([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	p.send([]byte{0xff, 0xfe, 0x00, 0x01, '\r', '\n', 'x'})
	if skipped := optionsAnswered(t, p); len(skipped) != 0 {
		t.Fatalf("unanswerable messages were answered: %q", skipped)
	}
}

// Over TCP a request refused with its framing intact is answered and the
// connection goes on; a broken framing is answered and ends the
// connection.
func TestMalformedRequestsOverTCP(t *testing.T) {
	e := startEngineWith(t, engineOpts{tcp: true})
	c, err := net.Dial("tcp", e.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(c)
	local := c.LocalAddr().String()
	read := func() string {
		t.Helper()
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a response: %v (so far %q)", err, b.String())
			}
			b.WriteString(line)
			if line == "\r\n" {
				return b.String()
			}
		}
	}
	c.Write(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/9.9", append(requestHeaders("TCP", local, "tcp-1", "OPTIONS"), "Content-Length: 0"), ""))
	if resp := read(); !strings.HasPrefix(resp, "SIP/2.0 505 ") || responseHeader(resp, "Call-ID") != "tcp-1" {
		t.Fatalf("SIP/9.9 over TCP: %q", resp)
	}
	c.Write(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(requestHeaders("TCP", local, "tcp-2", "OPTIONS"), "Content-Length: 0"), ""))
	if resp := read(); !strings.HasPrefix(resp, "SIP/2.0 200 ") || responseHeader(resp, "Call-ID") != "tcp-2" {
		t.Fatalf("valid OPTIONS after a refused one: %q", resp)
	}
	c.Write(sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", append(requestHeaders("TCP", local, "tcp-3", "OPTIONS"), "Content-Length: -4"), ""))
	if resp := read(); !strings.HasPrefix(resp, "SIP/2.0 400 ") || responseHeader(resp, "Call-ID") != "tcp-3" {
		t.Fatalf("bad Content-Length over TCP: %q", resp)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection still open after a broken framing: %v", err)
	}
}

// 10,000 garbage datagrams to the SIP port (random bytes, cut and
// malformed SIP, one of 60 KB) make little log, and the engine still
// answers OPTIONS afterwards.
func TestGarbageDatagramsLogLittle(t *testing.T) {
	sink := &logSink{}
	e := startEngineWith(t, engineOpts{log: sink})
	libBefore := librarySink.Len()
	p := newRawPeer(t, e.Addr("udp"))
	rng := rand.New(rand.NewPCG(9, 9))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	invite := string(sipMessage("INVITE sip:1000@127.0.0.1 SIP/2.0", append(requestHeaders("UDP", p.addr(), "g", "INVITE"),
		"Content-Type: application/sdp", "Content-Length: 100"), strings.Repeat("v", 100)))
	sent := 0
	for i := 0; i < 10000; i++ {
		var d []byte
		switch i % 8 {
		case 0:
			d = randBytes(1 + rng.IntN(1400))
		case 1: // an INVITE cut anywhere
			d = []byte(invite[:1+rng.IntN(len(invite)-1)])
		case 2: // a response with a garbage Via
			d = append([]byte("SIP/2.0 200 OK\r\nVia: "), randBytes(200)...)
		case 3: // another SIP version
			d = sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/9.9", requestHeaders("UDP", p.addr(), fmt.Sprint("v", i), "OPTIONS"), "")
		case 4: // a mandatory header missing
			d = sipMessage("OPTIONS sip:redial@127.0.0.1 SIP/2.0", without(requestHeaders("UDP", p.addr(), fmt.Sprint("m", i), "OPTIONS"), "Call-ID"), "")
		case 5: // random text lines
			d = []byte(strings.Repeat(fmt.Sprintf("%x\r\n", randBytes(40)), 1+rng.IntN(20)))
		case 6: // a response to no transaction of ours
			d = sipMessage("SIP/2.0 180 Ringing", requestHeaders("UDP", p.addr(), fmt.Sprint("r", i), "INVITE"), "")
		case 7: // a request line with random headers
			d = append([]byte("INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"), randBytes(300)...)
		}
		if i == 5000 {
			d = sipMessage("INVITE sip:1000@127.0.0.1 SIP/2.0", append(requestHeaders("UDP", p.addr(), "huge", "INVITE"),
				"X-Pad: "+strings.Repeat("A", 60<<10)), "")
		}
		p.send(d)
		sent += len(d)
	}
	optionsAnswered(t, p)
	logged := sink.Len() + librarySink.Len() - libBefore
	t.Logf("%d garbage datagrams (%d bytes) made %d bytes of log", 10000, sent, logged)
	if logged >= 100<<10 {
		t.Fatalf("%d bytes of log for 10,000 garbage datagrams, want < 100 KB; engine log:\n%s", logged, sink.String())
	}
}

// The guard's cost per valid INVITE (it parses each request once more
// with sipgo's parser, to answer 400 what sipgo would drop).
func BenchmarkGuardCheckInvite(b *testing.B) {
	g := newGuard(MessageLimits{}, "127.0.0.1", slog.New(slog.DiscardHandler))
	msg := sipMessage("INVITE sip:15551230001@127.0.0.1:5060 SIP/2.0", append(requestHeaders("UDP", "127.0.0.1:5062", "bench-1", "INVITE"),
		"Contact: <sip:caller@127.0.0.1:5062>", "Content-Type: application/sdp", fmt.Sprintf("Content-Length: %d", len(testOffer))), testOffer)
	for b.Loop() {
		if v := g.check(msg, false); !v.pass {
			b.Fatalf("refused: %s", v.why)
		}
	}
}

// Responses are judged by their start line and size alone: passed when
// SIP/2.0 with a valid code and within the size limit, dropped otherwise.
func TestGuardResponses(t *testing.T) {
	g := newGuard(MessageLimits{MaxMessage: 2048}, "192.0.2.1", slog.New(slog.DiscardHandler))
	rest := "\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
	for _, c := range []struct {
		msg  string
		pass bool
		why  string
	}{
		{"SIP/2.0 200 OK" + rest, true, ""},
		{"sip/2.0 180 Ringing" + rest, true, ""},
		{"SIP/2.0 200 " + rest, true, ""},
		{"SIP/3.0 200 OK" + rest, false, "response of another SIP version"},
		{"SIP/2.0 99 Odd" + rest, false, "not a SIP message"},
		{"SIP/2.0 700 Odd" + rest, false, "not a SIP message"},
		{"SIP/2.0 2x0 OK" + rest, false, "not a SIP message"},
		{"SIP/2.0 200" + rest, false, "not a SIP message"},
		{"SIP/2.0 200 O\x00K" + rest, false, "not a SIP message"},
		{"SIP/2.0 200 OK" + rest + strings.Repeat("x", 2048), false, "oversize response"},
	} {
		v := g.check([]byte(c.msg), false)
		if v.pass != c.pass || !c.pass && v.why != c.why || v.code != 0 {
			t.Errorf("check(%.30q...) = pass %v, code %d, %q; want pass %v, %q", c.msg, v.pass, v.code, v.why, c.pass, c.why)
		}
	}
}
