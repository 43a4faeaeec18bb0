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

	formats := make([]string, 0, len(codecs))
	attrs := make([]sdp.Attribute, 0, 2*len(codecs)+2)
	for _, c := range codecs {
		formats = append(formats, strconv.Itoa(int(c.PT)))
		attrs = append(attrs, sdp.NewAttribute("rtpmap", fmt.Sprintf("%d %s/%d", c.PT, c.Name, c.Rate)))
		if c.IsDTMF() {
			attrs = append(attrs, sdp.NewAttribute("fmtp", fmt.Sprintf("%d 0-16", c.PT)))
		}
	}
	attrs = append(attrs,
		sdp.NewAttribute("ptime", strconv.Itoa(ptime)),
		sdp.NewPropertyAttribute(dir))

	sd := &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       "redial",
			SessionID:      o.SessionID,
			SessionVersion: o.SessionID,
			NetworkType:    "IN",
			AddressType:    addrType,
			UnicastAddress: o.IP,
		},
		SessionName: "redial",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: addrType,
			Address:     &sdp.Address{Address: o.IP},
		},
		TimeDescriptions: []sdp.TimeDescription{{Timing: sdp.Timing{}}},
		MediaDescriptions: []*sdp.MediaDescription{{
			MediaName: sdp.MediaName{
				Media:   "audio",
				Port:    sdp.RangedPort{Value: o.Port},
				Protos:  []string{"RTP", "AVP"},
				Formats: formats,
			},
			Attributes: attrs,
		}},
	}
	b, err := sd.Marshal()
	if err != nil {
		// Marshal only fails on values pion cannot encode, which the fields
		// above never produce.
		panic("media: sdp marshal: " + err.Error())
	}
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
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return RemoteMedia{}, fmt.Errorf("media: sdp: %w", err)
	}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "audio" {
			md = m
			break
		}
	}
	if md == nil {
		return RemoteMedia{}, errors.New("media: sdp: no audio m-line")
	}
	port := md.MediaName.Port.Value
	if port == 0 {
		return RemoteMedia{}, errors.New("media: sdp: audio m-line has port 0 (stream rejected)")
	}
	if port < 0 || port > 65535 {
		return RemoteMedia{}, fmt.Errorf("media: sdp: audio m-line port %d out of range", port)
	}
	if proto := strings.Join(md.MediaName.Protos, "/"); proto != "RTP/AVP" && proto != "RTP/AVPF" {
		return RemoteMedia{}, fmt.Errorf("media: sdp: audio transport %q not supported (want RTP/AVP)", proto)
	}

	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil || ci.Address.Address == "" {
		return RemoteMedia{}, errors.New("media: sdp: no connection address (c=) for the audio stream")
	}
	ip := net.ParseIP(ci.Address.Address)
	if ip == nil {
		return RemoteMedia{}, fmt.Errorf("media: sdp: connection address %q is not an IP address", ci.Address.Address)
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}

	rtpmaps := make(map[uint8]Codec)
	for _, a := range md.Attributes {
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
		Direction: direction(md.Attributes, sd.Attributes),
	}
	for _, f := range md.MediaName.Formats {
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
	if v, ok := attribute("ptime", md.Attributes, sd.Attributes); ok {
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
