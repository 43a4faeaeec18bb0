package media

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// SDPOffer describes the local audio stream for BuildSDP.
type SDPOffer struct {
	// IP is the address written in o= and c= (IPv4 or IPv6).
	IP string
	// Port is the RTP port (Session.LocalPort).
	Port int
	// Codecs lists the payload formats in order of preference, telephone-event
	// included when DTMF is offered. Empty means PCMU, PCMA, telephone-event.
	Codecs []Codec
	// SessionID is used as o= session id and version.
	SessionID uint64
	// Ptime is the packetization time in ms; 0 means 20.
	Ptime int
	// Direction is sendrecv (the default), sendonly, recvonly or inactive.
	Direction string
}

// BuildSDP returns the SDP body for one audio stream.
//
// It writes the text itself, in the form pion/sdp's Marshal gives (the
// tests hold it to that): building pion's description and marshalling it
// cost a few dozen allocations per call (issue 14), this one.
func BuildSDP(o SDPOffer) []byte {
	codecs := o.Codecs
	if len(codecs) == 0 {
		codecs = []Codec{PCMU, PCMA, TelephoneEvent}
	}
	ptime := o.Ptime
	if ptime <= 0 {
		ptime = 20
	}
	dir := o.Direction
	if dir == "" {
		dir = "sendrecv"
	}
	addrType := "IP4"
	if strings.Contains(o.IP, ":") {
		addrType = "IP6"
	}
	b := make([]byte, 0, 160+2*len(o.IP)+48*len(codecs))
	b = append(b, "v=0\r\no=redial "...)
	b = strconv.AppendUint(b, o.SessionID, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, o.SessionID, 10)
	b = append(b, " IN "...)
	b = append(b, addrType...)
	b = append(b, ' ')
	b = append(b, o.IP...)
	b = append(b, "\r\ns=redial\r\nc=IN "...)
	b = append(b, addrType...)
	b = append(b, ' ')
	b = append(b, o.IP...)
	b = append(b, "\r\nt=0 0\r\nm=audio "...)
	b = strconv.AppendInt(b, int64(o.Port), 10)
	b = append(b, " RTP/AVP"...)
	for _, c := range codecs {
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(c.PT), 10)
	}
	b = append(b, "\r\n"...)
	for _, c := range codecs {
		b = append(b, "a=rtpmap:"...)
		b = strconv.AppendUint(b, uint64(c.PT), 10)
		b = append(b, ' ')
		b = append(b, c.Name...)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(c.Rate), 10)
		b = append(b, "\r\n"...)
		if c.IsDTMF() {
			b = append(b, "a=fmtp:"...)
			b = strconv.AppendUint(b, uint64(c.PT), 10)
			b = append(b, " 0-16\r\n"...)
		}
	}
	b = append(b, "a=ptime:"...)
	b = strconv.AppendInt(b, int64(ptime), 10)
	b = append(b, "\r\na="...)
	b = append(b, dir...)
	b = append(b, "\r\n"...)
	return b
}

// RemoteMedia is what the peer's SDP says about its audio stream.
type RemoteMedia struct {
	// Addr is where the peer wants RTP (c= and the m=audio port).
	Addr *net.UDPAddr
	// Codecs are the audio formats in the order the SDP lists them, with the
	// SDP's payload types; telephone-event and comfort noise are not included.
	Codecs []Codec
	// DTMF is the offered telephone-event format (8 kHz preferred), or nil.
	DTMF *Codec
	// Direction is sendrecv, sendonly, recvonly or inactive.
	Direction string
	// Ptime is the requested packetization time in ms, 0 when not given.
	Ptime int
}

// staticPayloadTypes are the RFC 3551 audio formats an SDP may list without rtpmap.
var staticPayloadTypes = map[uint8]Codec{
	0:  PCMU,
	3:  {PT: 3, Name: "GSM", Rate: 8000},
	4:  {PT: 4, Name: "G723", Rate: 8000},
	8:  PCMA,
	9:  {PT: 9, Name: "G722", Rate: 8000},
	13: {PT: 13, Name: "CN", Rate: 8000},
	18: {PT: 18, Name: "G729", Rate: 8000},
}

// ParseSDP reads the first audio stream of an SDP body.
func ParseSDP(b []byte) (RemoteMedia, error) {
	sd, ok := scanSDP(string(b))
	if !ok {
		var err error
		if sd, err = pionSDP(b); err != nil {
			return RemoteMedia{}, err
		}
	}
	var md *sdpMedia
	for i := range sd.media {
		if sd.media[i].name == "audio" {
			md = &sd.media[i]
			break
		}
	}
	if md == nil {
		return RemoteMedia{}, errors.New("media: sdp: no audio m-line")
	}
	port := md.port
	if port == 0 {
		return RemoteMedia{}, errors.New("media: sdp: audio m-line has port 0 (stream rejected)")
	}
	if port < 0 || port > 65535 {
		return RemoteMedia{}, fmt.Errorf("media: sdp: audio m-line port %d out of range", port)
	}
	if md.proto != "RTP/AVP" && md.proto != "RTP/AVPF" {
		return RemoteMedia{}, fmt.Errorf("media: sdp: audio transport %q not supported (want RTP/AVP)", md.proto)
	}

	addr, hasC := md.addr, md.hasC
	if !hasC {
		addr, hasC = sd.addr, sd.hasC
	}
	if !hasC || addr == "" {
		return RemoteMedia{}, errors.New("media: sdp: no connection address (c=) for the audio stream")
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return RemoteMedia{}, fmt.Errorf("media: sdp: connection address %q is not an IP address", addr)
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}

	rtpmaps := make(map[uint8]Codec)
	for _, a := range md.attrs {
		if a.Key != "rtpmap" {
			continue
		}
		c, err := parseRtpmap(a.Value)
		if err != nil {
			return RemoteMedia{}, fmt.Errorf("media: sdp: a=rtpmap:%s: %w", a.Value, err)
		}
		rtpmaps[c.PT] = c
	}

	rm := RemoteMedia{
		Addr:      &net.UDPAddr{IP: ip, Port: port},
		Direction: direction(md.attrs, sd.attrs),
	}
	for _, f := range md.formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			return RemoteMedia{}, fmt.Errorf("media: sdp: audio m-line payload type %q is not a number 0-127", f)
		}
		c, ok := rtpmaps[uint8(n)]
		if !ok {
			c, ok = staticPayloadTypes[uint8(n)]
		}
		if !ok {
			continue // a dynamic payload type without rtpmap means nothing
		}
		switch {
		case c.IsDTMF():
			if rm.DTMF == nil || (rm.DTMF.Rate != 8000 && c.Rate == 8000) {
				cc := c
				rm.DTMF = &cc
			}
		case strings.EqualFold(c.Name, "CN"):
		default:
			rm.Codecs = append(rm.Codecs, c)
		}
	}
	if v, ok := attribute("ptime", md.attrs, sd.attrs); ok {
		if p, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && p > 0 {
			rm.Ptime = p
		}
	}
	return rm, nil
}

// parseRtpmap reads "<pt> <name>/<rate>[/<channels>]", canonicalising the
// names of supported codecs so they compare equal to PCMU, PCMA, ...
func parseRtpmap(v string) (Codec, error) {
	ptStr, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return Codec{}, errors.New("want <payload type> <encoding>/<rate>")
	}
	pt, err := strconv.ParseUint(ptStr, 10, 8)
	if err != nil || pt > 127 {
		return Codec{}, fmt.Errorf("payload type %q is not a number 0-127", ptStr)
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || parts[0] == "" {
		return Codec{}, errors.New("want <encoding>/<rate>")
	}
	rate, err := strconv.Atoi(parts[1])
	if err != nil || rate <= 0 {
		return Codec{}, fmt.Errorf("clock rate %q is not a positive number", parts[1])
	}
	name := parts[0]
	if known, ok := CodecByName(name); ok {
		name = known.Name
	}
	return Codec{PT: uint8(pt), Name: name, Rate: rate}, nil
}

func attribute(key string, media, session []sdp.Attribute) (string, bool) {
	for _, attrs := range [][]sdp.Attribute{media, session} {
		for _, a := range attrs {
			if a.Key == key {
				return a.Value, true
			}
		}
	}
	return "", false
}

// direction applies RFC 3264: a media-level attribute wins over a
// session-level one, and sendrecv is the default.
func direction(media, session []sdp.Attribute) string {
	for _, attrs := range [][]sdp.Attribute{media, session} {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
	}
	return "sendrecv"
}

// Negotiate picks, as the answerer, the first of the offer's audio codecs
// that is also in supported, keeping the offer's payload type. dtmf is the
// offer's telephone-event format when supported includes telephone-event.
func Negotiate(remote RemoteMedia, supported []Codec) (audio Codec, dtmf *Codec, err error) {
	found := false
	for _, rc := range remote.Codecs {
		for _, sc := range supported {
			if !sc.IsDTMF() && strings.EqualFold(rc.Name, sc.Name) && rc.Rate == sc.Rate {
				audio, found = rc, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		names := make([]string, 0, len(remote.Codecs))
		for _, c := range remote.Codecs {
			names = append(names, c.Name)
		}
		offered := strings.Join(names, ", ")
		if offered == "" {
			offered = "none"
		}
		return Codec{}, nil, fmt.Errorf("media: no common codec (offered: %s)", offered)
	}
	if remote.DTMF != nil {
		for _, sc := range supported {
			if sc.IsDTMF() && sc.Rate == remote.DTMF.Rate {
				d := *remote.DTMF
				dtmf = &d
				break
			}
		}
	}
	return audio, dtmf, nil
}

// sdpDesc is what ParseSDP reads of a session description.
type sdpDesc struct {
	addr  string // session-level c= address
	hasC  bool   // a session-level c= line is present
	attrs []sdp.Attribute
	media []sdpMedia
}

type sdpMedia struct {
	name    string
	port    int
	proto   string // the m-line's protos joined by '/'
	formats []string
	addr    string // media-level c= address
	hasC    bool   // a media-level c= line is present
	attrs   []sdp.Attribute
}

// pionSDP reads b with pion/sdp, which knows the whole grammar.
func pionSDP(b []byte) (sdpDesc, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return sdpDesc{}, fmt.Errorf("media: sdp: %w", err)
	}
	d := sdpDesc{attrs: sd.Attributes}
	if ci := sd.ConnectionInformation; ci != nil {
		d.hasC = true
		if ci.Address != nil {
			d.addr = ci.Address.Address
		}
	}
	for _, m := range sd.MediaDescriptions {
		dm := sdpMedia{name: m.MediaName.Media, port: m.MediaName.Port.Value, proto: strings.Join(m.MediaName.Protos, "/"),
			formats: m.MediaName.Formats, attrs: m.Attributes}
		if ci := m.ConnectionInformation; ci != nil {
			dm.hasC = true
			if ci.Address != nil {
				dm.addr = ci.Address.Address
			}
		}
		d.media = append(d.media, dm)
	}
	return d, nil
}

// scanSDP reads the usual shape of an offer or answer without pion/sdp,
// whose parse was most of a call's SDP cost (issue 14):
//
//	v=0, o=, s=, an optional c=, t=, session a= lines, then m= sections of
//	an m=, an optional c= and a= lines
//
// each line ending in CRLF, fields separated by single spaces. ok is false
// for anything else (other line types, other spacing, a value pion
// refuses), which ParseSDP then leaves to pion: scanSDP never takes what
// pion would not, and reads what it takes as pion does (the tests compare
// the two).
func scanSDP(s string) (d sdpDesc, ok bool) {
	state := 0 // 0 v, 1 o, 2 s, 3 c or t, 4 t, 5 session a or m, 6 media c, a or m, 7 media a or m
	for len(s) > 0 {
		line, rest, found := strings.Cut(s, "\r\n")
		if !found || len(line) < 2 || line[1] != '=' || strings.ContainsAny(line, "\r\n") {
			return sdpDesc{}, false
		}
		s = rest
		typ, v := line[0], line[2:]
		switch {
		case state == 0 && typ == 'v':
			if v != "0" {
				return sdpDesc{}, false
			}
			state = 1
		case state == 1 && typ == 'o':
			f := sdpFields(v, 6)
			if f == nil || !sdpUint(f[1]) || !sdpUint(f[2]) || f[3] != "IN" || f[4] != "IP4" && f[4] != "IP6" {
				return sdpDesc{}, false
			}
			state = 2
		case state == 2 && typ == 's':
			state = 3
		case state == 3 && typ == 'c':
			addr, ok := sdpConnection(v)
			if !ok {
				return sdpDesc{}, false
			}
			d.addr, d.hasC = addr, true
			state = 4
		case (state == 3 || state == 4) && typ == 't':
			f := sdpFields(v, 2)
			if f == nil || !sdpUint(f[0]) || !sdpUint(f[1]) {
				return sdpDesc{}, false
			}
			state = 5
		case state == 5 && typ == 'a':
			d.attrs = append(d.attrs, sdpAttribute(v))
		case state >= 5 && typ == 'm':
			m, ok := sdpMediaLine(v)
			if !ok {
				return sdpDesc{}, false
			}
			d.media = append(d.media, m)
			state = 6
		case state == 6 && typ == 'c':
			addr, ok := sdpConnection(v)
			if !ok {
				return sdpDesc{}, false
			}
			m := &d.media[len(d.media)-1]
			m.addr, m.hasC = addr, true
			state = 7
		case (state == 6 || state == 7) && typ == 'a':
			m := &d.media[len(d.media)-1]
			m.attrs = append(m.attrs, sdpAttribute(v))
			state = 7
		default:
			return sdpDesc{}, false
		}
	}
	return d, state >= 5
}

// sdpFields splits v at single spaces into exactly n non-empty fields.
func sdpFields(v string, n int) []string {
	if f := sdpSplit(v); len(f) == n {
		return f
	}
	return nil
}

// sdpSplit splits v at single spaces; nil when a field is empty or holds
// a tab (other spacing is left to pion).
func sdpSplit(v string) []string {
	f := strings.Split(v, " ")
	for _, x := range f {
		if x == "" || strings.IndexByte(x, '\t') >= 0 {
			return nil
		}
	}
	return f
}

// sdpUint reports whether v is a decimal number pion reads as one (its
// reader does not detect overflow: longer ones are left to it).
func sdpUint(v string) bool {
	if v == "" || len(v) > 19 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// sdpConnection reads "IN IP4|IP6 <address>".
func sdpConnection(v string) (string, bool) {
	f := sdpFields(v, 3)
	if f == nil || f[0] != "IN" || f[1] != "IP4" && f[1] != "IP6" {
		return "", false
	}
	return f[2], true
}

// sdpAttribute splits an a= value as pion does: at the first ':' after
// at least one byte, else all of it is the key.
func sdpAttribute(v string) sdp.Attribute {
	if i := strings.IndexByte(v, ':'); i > 0 {
		return sdp.Attribute{Key: v[:i], Value: v[i+1:]}
	}
	return sdp.Attribute{Key: v}
}

// sdpProtos are the transport protocol names pion accepts in an m-line.
var sdpProtos = map[string]bool{"UDP": true, "RTP": true, "AVP": true, "SAVP": true, "SAVPF": true, "TLS": true, "DTLS": true,
	"SCTP": true, "AVPF": true, "TCP": true, "MSRP": true, "BFCP": true, "UDT": true, "IX": true, "MRCPv2": true, "FEC": true}

// sdpMediaLine reads "<media> <port> <proto> <format>...", the port
// without a "/count".
func sdpMediaLine(v string) (sdpMedia, bool) {
	f := sdpSplit(v)
	if len(f) < 3 {
		return sdpMedia{}, false
	}
	switch f[0] {
	case "audio", "video", "text", "application", "message":
	default:
		return sdpMedia{}, false
	}
	if len(f[1]) > 5 || !sdpUint(f[1]) {
		return sdpMedia{}, false
	}
	port, _ := strconv.Atoi(f[1])
	if port > 65535 {
		return sdpMedia{}, false
	}
	for p := range strings.SplitSeq(f[2], "/") {
		if !sdpProtos[p] {
			return sdpMedia{}, false
		}
	}
	m := sdpMedia{name: f[0], port: port, proto: f[2]}
	if len(f) > 3 {
		m.formats = f[3:]
	}
	return m, true
}
