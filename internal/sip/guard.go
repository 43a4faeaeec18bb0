package sip

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// The guard checks every message that reaches a listener before sipgo
// does. sipgo answers a request of any SIP version as if it were 2.0 and
// drops what it cannot parse without a word (logging it whole); the guard
// answers what RFC 3261 says to answer (505, 400, 413, 513) when the
// request carries a usable Via, drops the rest quietly (counted, rate
// limited Debug log), and never copies a header holding CR, LF or NUL
// into its answer.

// MessageLimits bound what a listener accepts. Zero fields take the
// defaults.
type MessageLimits struct {
	// MaxMessage is the largest message, headers and body, in bytes;
	// larger requests are answered 513. Default 16 KiB; at most 32 KiB
	// (sipgo's read buffer).
	MaxMessage int
	// MaxBody is the largest body (Content-Length); larger requests are
	// answered 413. Default 8 KiB, far above any SDP offer.
	MaxBody int
}

func (l MessageLimits) withDefaults() MessageLimits {
	if l.MaxMessage <= 0 {
		l.MaxMessage = 16 << 10
	}
	if l.MaxMessage > int(gosip.TransportBufferReadSize) {
		l.MaxMessage = int(gosip.TransportBufferReadSize)
	}
	if l.MaxBody <= 0 {
		l.MaxBody = 8 << 10
	}
	if l.MaxBody > l.MaxMessage {
		l.MaxBody = l.MaxMessage
	}
	return l
}

// guard decides what happens to each message arriving on a listener.
type guard struct {
	limits   MessageLimits
	publicIP string
	// log is rate limited: outsiders choose how often it is called.
	log    *slog.Logger
	parser *gosip.Parser
	mBad   *prometheus.CounterVec
}

func newGuard(limits MessageLimits, publicIP string, log *slog.Logger) *guard {
	return &guard{limits: limits.withDefaults(), publicIP: publicIP, log: log, parser: gosip.NewParser(),
		mBad: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_sip_malformed_messages_total",
			Help: "Messages refused before sipgo saw them, by what was done: the response code sent, or dropped."},
			[]string{"action"})}
}

// verdict is what to do with one message.
type verdict struct {
	pass bool
	// code is the response to send when not passed; 0 drops the message.
	code int
	// why says what is wrong, in words of ours only (never text from the
	// message, so it can go into a Warning header and a log line).
	why string
	msg *rawMessage
}

func passed() verdict { return verdict{pass: true} }

func dropped(why string) verdict { return verdict{why: why} }

// rawMessage is a message split into its start line and headers, without
// interpreting them: enough to answer requests sipgo would not.
type rawMessage struct {
	response bool
	method   string
	version  string
	headers  []rawHeader
	// bodyAt is where the body starts; -1 when the header section has
	// no end (no empty line).
	bodyAt int
	// problem is the first malformed header line met.
	problem string
}

type rawHeader struct {
	// name is lower case, compact forms expanded.
	name  string
	value string
	// safe is false when value holds CR, LF or NUL: it is never copied.
	safe bool
}

var compactNames = map[string]string{
	"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length",
	"m": "contact", "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding",
}

// scanMessage splits data into start line and headers. ok is false when
// the start line is not that of a SIP message.
func scanMessage(data []byte) (m *rawMessage, ok bool) {
	m = &rawMessage{bodyAt: -1}
	headB := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		headB, m.bodyAt = data[:i], i+4
	}
	// One copy of the header section: names and values are slices of it,
	// not a string per line (every message on the listener comes here).
	head := string(headB)
	line, rest, _ := strings.Cut(head, "\r\n")
	if !m.startLine(line) {
		return m, false
	}
	m.headers = make([]rawHeader, 0, strings.Count(rest, "\r\n")+1)
	for len(rest) > 0 {
		line, rest, _ = strings.Cut(rest, "\r\n")
		m.headerLine(line)
	}
	return m, true
}

// responseLine reads the start line of a response in data, if data is
// one: its SIP version and whether the status code is valid. Responses
// need no more than that (check), so they are not split into headers.
func responseLine(data []byte) (version string, isResponse, ok bool) {
	if len(data) < 4 || !hasSIPPrefix(string(data[:4])) {
		return "", false, false
	}
	line := data
	if i := bytes.Index(data, []byte("\r\n")); i >= 0 {
		line = data[:i]
	}
	if bytes.ContainsAny(line, "\r\n\x00") {
		return "", true, false
	}
	v, rest, ok1 := bytes.Cut(line, []byte(" "))
	codeB, _, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 {
		return "", true, false
	}
	code, err := strconv.Atoi(string(codeB))
	if err != nil || code < 100 || code > 699 {
		return "", true, false
	}
	if string(v) == "SIP/2.0" {
		return "SIP/2.0", true, true // no copy for the usual case
	}
	return string(v), true, true
}

// startLine reads "METHOD URI SIP/x.y" or "SIP/x.y CODE reason".
func (m *rawMessage) startLine(line string) bool {
	if strings.ContainsAny(line, "\r\n\x00") {
		return false
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) != 3 {
		return false
	}
	if hasSIPPrefix(parts[0]) {
		m.response, m.version = true, parts[0]
		code, err := strconv.Atoi(parts[1])
		return err == nil && code >= 100 && code <= 699
	}
	if !isToken(parts[0]) || parts[1] == "" || !hasSIPPrefix(parts[2]) || strings.ContainsAny(parts[2], " \t") {
		return false
	}
	m.method, m.version = parts[0], parts[2]
	return true
}

func hasSIPPrefix(s string) bool { return len(s) >= 4 && strings.EqualFold(s[:4], "SIP/") }

func (m *rawMessage) headerLine(line string) {
	if line == "" {
		return
	}
	if line[0] == ' ' || line[0] == '\t' {
		// Folded continuation of the previous header (RFC 3261 7.3.1).
		if len(m.headers) == 0 {
			m.fail("continuation line before any header")
			return
		}
		h := &m.headers[len(m.headers)-1]
		h.value += " " + strings.Trim(line, " \t")
		if h.safe && !safeValue(h.value) {
			h.safe = false
			m.fail("control characters in header " + h.name)
		}
		return
	}
	name, value, ok := strings.Cut(line, ":")
	name = strings.TrimRight(name, " \t")
	if !ok || !isToken(name) {
		m.fail("malformed header line")
		return
	}
	if hasUpper(name) {
		name = strings.ToLower(name)
	}
	if long, ok := compactNames[name]; ok {
		name = long
	}
	h := rawHeader{name: name, value: strings.Trim(value, " \t")}
	h.safe = safeValue(h.value)
	if !h.safe {
		m.fail("control characters in header " + name)
	}
	m.headers = append(m.headers, h)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

func (m *rawMessage) fail(problem string) {
	if m.problem == "" {
		m.problem = problem
	}
}

func safeValue(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }

// values returns the values of a header, split at commas only for Via.
func (m *rawMessage) values(name string) []rawHeader {
	var out []rawHeader
	for _, h := range m.headers {
		if h.name != name {
			continue
		}
		if name != "via" {
			out = append(out, h)
			continue
		}
		for _, v := range strings.Split(h.value, ",") {
			out = append(out, rawHeader{name: name, value: strings.Trim(v, " \t"), safe: h.safe})
		}
	}
	return out
}

func (m *rawMessage) has(name string) bool {
	for _, h := range m.headers {
		if h.name == name {
			return true
		}
	}
	return false
}

// maxCopied bounds a header value copied into a response.
const maxCopied = 1024

// viaRE is a Via value good enough to answer along: sent-protocol and
// sent-by.
var viaRE = regexp.MustCompile(`(?i)^SIP\s*/\s*[0-9]+\.[0-9]+\s*/\s*[A-Z]+\s+[^\s;,]+`)

// answerable reports whether the top Via is usable for a response.
func (m *rawMessage) answerable() bool {
	vias := m.values("via")
	return len(vias) > 0 && vias[0].safe && len(vias[0].value) <= maxCopied && viaRE.MatchString(vias[0].value)
}

var cseqRE = regexp.MustCompile(`^([0-9]{1,10})[ \t]+([A-Za-z0-9!%*_+.~'` + "`" + `-]+)$`)

// check decides what to do with one complete message (a datagram, or one
// message framed from a stream).
func (g *guard) check(data []byte, stream bool) verdict {
	if version, isResponse, ok := responseLine(data); isResponse {
		// Responses are never answered (RFC 3261 8.1.3.1, 18.1.2): drop
		// what no transaction of ours can use.
		switch {
		case !ok:
			return dropped("not a SIP message")
		case !strings.EqualFold(version, "SIP/2.0"):
			return dropped("response of another SIP version")
		case len(data) > g.limits.MaxMessage:
			return dropped("oversize response")
		}
		return passed()
	}
	m, ok := scanMessage(data)
	if !ok || m.response {
		return dropped("not a SIP message")
	}
	if !m.answerable() {
		return dropped("request without a usable Via")
	}
	v := g.checkRequest(data, m, stream)
	v.msg = m
	if !v.pass && m.method == "ACK" {
		// An ACK is never answered (RFC 3261 17.2.1).
		v.code = 0
	}
	return v
}

func (g *guard) checkRequest(data []byte, m *rawMessage, stream bool) verdict {
	if len(data) > g.limits.MaxMessage {
		return verdict{code: 513, why: fmt.Sprintf("message of %d bytes, at most %d", len(data), g.limits.MaxMessage)}
	}
	if !strings.EqualFold(m.version, "SIP/2.0") {
		return verdict{code: 505, why: "only SIP/2.0 is supported"}
	}
	if m.bodyAt < 0 {
		return verdict{code: 400, why: "header section not ended by an empty line"}
	}
	for _, name := range [...]string{"from", "to", "call-id", "cseq"} {
		if !m.has(name) {
			return verdict{code: 400, why: "missing " + canonicalName(name) + " header"}
		}
	}
	if m.problem != "" {
		return verdict{code: 400, why: m.problem}
	}
	cseq := cseqRE.FindStringSubmatch(m.values("cseq")[0].value)
	if cseq == nil {
		return verdict{code: 400, why: "malformed CSeq"}
	}
	if n, _ := strconv.ParseUint(cseq[1], 10, 64); n > 1<<31-1 {
		return verdict{code: 400, why: "CSeq number out of range"}
	}
	if !strings.EqualFold(cseq[2], m.method) {
		return verdict{code: 400, why: "CSeq method differs from the request method"}
	}
	body := len(data) - m.bodyAt
	length, ok := contentLength(m)
	switch {
	case !ok:
		return verdict{code: 400, why: "malformed Content-Length"}
	case stream && length < 0:
		// RFC 3261 18.3; sipgo would wait for a body that never ends.
		return verdict{code: 400, why: "missing Content-Length (required over TCP)"}
	case length > g.limits.MaxBody || length < 0 && body > g.limits.MaxBody:
		return verdict{code: 413, why: fmt.Sprintf("body larger than %d bytes", g.limits.MaxBody)}
	case length > body:
		// RFC 3261 18.3: a datagram ending before its body does.
		return verdict{code: 400, why: "Content-Length larger than the body"}
	}
	// Whatever sipgo's parser refuses it would drop unanswered.
	if _, err := g.parser.ParseSIP(data); err != nil {
		return verdict{code: 400, why: "malformed request"}
	}
	return passed()
}

// contentLength returns the Content-Length (-1 when absent); ok is false
// when a value is not a number or two values differ.
func contentLength(m *rawMessage) (n int, ok bool) {
	n = -1
	for _, h := range m.values("content-length") {
		v, err := strconv.Atoi(h.value)
		if err != nil || v < 0 || h.value == "" || h.value[0] == '+' || n >= 0 && v != n {
			return 0, false
		}
		n = v
	}
	return n, true
}

func canonicalName(name string) string {
	switch name {
	case "call-id":
		return "Call-ID"
	case "cseq":
		return "CSeq"
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

var reasonPhrases = map[int]string{
	400: "Bad Request",
	413: "Request Entity Too Large",
	505: "Version Not Supported",
	513: "Message Too Large",
}

// response builds the answer to a refused request: the Vias, From, To
// (with a tag added), Call-ID and CSeq copied (RFC 3261 8.2.6.2), each
// only when it holds no CR, LF or NUL and is not oversize, and a Warning
// saying what was wrong.
func (g *guard) response(v verdict) []byte {
	m := v.msg
	var b bytes.Buffer
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", v.code, reasonPhrases[v.code])
	for i, via := range m.values("via") {
		if i >= 32 {
			break
		}
		if via.safe && len(via.value) <= maxCopied {
			fmt.Fprintf(&b, "Via: %s\r\n", via.value)
		}
	}
	for _, name := range [...]string{"from", "to", "call-id", "cseq"} {
		vals := m.values(name)
		if len(vals) == 0 || !vals[0].safe || len(vals[0].value) > maxCopied {
			continue
		}
		value := vals[0].value
		if name == "to" && !strings.Contains(strings.ToLower(value), ";tag=") {
			// RFC 3261 8.2.6.2: a UAS adds a To tag to its response.
			var tag [8]byte
			rand.Read(tag[:])
			value += ";tag=" + hex.EncodeToString(tag[:])
		}
		fmt.Fprintf(&b, "%s: %s\r\n", canonicalName(name), value)
	}
	fmt.Fprintf(&b, "Warning: 399 %s \"%s\"\r\n", g.publicIP, strings.ReplaceAll(v.why, `"`, "'"))
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// refuse counts and logs a message that is not passed on and returns the
// response to send, nil when it is dropped.
func (g *guard) refuse(v verdict, transport, source string) []byte {
	if v.code == 0 {
		g.mBad.WithLabelValues("dropped").Inc()
		g.log.Debug("sip: malformed message dropped", "transport", transport, "source", source, "why", v.why)
		return nil
	}
	g.mBad.WithLabelValues(strconv.Itoa(v.code)).Inc()
	g.log.Info("sip: malformed request refused", "transport", transport, "source", source,
		"method", v.msg.method, "code", v.code, "why", v.why)
	return g.response(v)
}

// isKeepalive reports whether a datagram is a CRLF keep-alive or padding
// that sipgo skips by itself.
func isKeepalive(data []byte) bool {
	if len(bytes.Trim(data, "\x00")) == 0 {
		return true
	}
	return len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0
}
