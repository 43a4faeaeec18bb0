package media

import (
	"strconv"
	"strings"
)

// Codec is an RTP payload format as negotiated in SDP.
type Codec struct {
	// PT is the RTP payload type number.
	PT uint8
	// Name is the encoding name as written in an SDP rtpmap ("PCMU", "PCMA", "telephone-event").
	Name string
	// Rate is the RTP clock rate in Hz.
	Rate int
}

// The codecs redial supports, with their usual payload types.
var (
	PCMU           = Codec{PT: 0, Name: "PCMU", Rate: 8000}
	PCMA           = Codec{PT: 8, Name: "PCMA", Rate: 8000}
	TelephoneEvent = Codec{PT: 101, Name: "telephone-event", Rate: 8000}
)

// CodecByName returns the supported codec with the given encoding name,
// compared case-insensitively. Codecs redial cannot handle (G729, opus, ...)
// return false.
func CodecByName(name string) (Codec, bool) {
	switch {
	case strings.EqualFold(name, PCMU.Name):
		return PCMU, true
	case strings.EqualFold(name, PCMA.Name):
		return PCMA, true
	case strings.EqualFold(name, TelephoneEvent.Name):
		return TelephoneEvent, true
	}
	return Codec{}, false
}

// IsDTMF reports whether c is the RFC 4733 telephone-event format.
func (c Codec) IsDTMF() bool { return strings.EqualFold(c.Name, TelephoneEvent.Name) }

// String returns the codec as in an rtpmap value, "0 PCMU/8000".
func (c Codec) String() string {
	return strconv.Itoa(int(c.PT)) + " " + c.Name + "/" + strconv.Itoa(c.Rate)
}

// law identifies the G.711 variant of a codec, so the relay compares small
// integers per packet instead of strings.
type law uint8

const (
	lawOther law = iota
	lawUlaw
	lawAlaw
)

func lawOf(c Codec) law {
	switch {
	case strings.EqualFold(c.Name, PCMU.Name):
		return lawUlaw
	case strings.EqualFold(c.Name, PCMA.Name):
		return lawAlaw
	}
	return lawOther
}
