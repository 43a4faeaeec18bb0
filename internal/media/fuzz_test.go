package media

// Fuzz targets for SDP, the one SIP-facing body redial parses itself: any
// peer (a carrier, a caller, a browser) sends it. `make test` runs them on
// their seed corpus; scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"

	"redial/internal/testenv"
)

// FuzzParseSDP parses offers and answers: never a panic, errors that say
// they are about SDP, a result that is usable as it is (a real port and
// address, payload types in range), a negotiation that picks only what
// both sides have, and an answer built from it that parses back the same.
func FuzzParseSDP(f *testing.F) {
	head := "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\n"
	for _, s := range []string{
		asteriskSDP,
		string(BuildSDP(SDPOffer{IP: "192.0.2.1", Port: 40000, SessionID: 7})),
		string(BuildSDP(SDPOffer{IP: "2001:db8::1", Port: 5004, Codecs: []Codec{PCMA, {PT: 96, Name: "telephone-event", Rate: 8000}}, Ptime: 30, Direction: "sendonly"})),
		"v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=audio 6000 RTP/AVP 8 0 96\nc=IN IP4 198.51.100.9\na=rtpmap:96 telephone-event/8000\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 111 0 110 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
		head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
		head + "c=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/SAVP 0\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 x\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 foo\r\n",
		"hello",
		// Hostile.
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
		head + "c=IN IP6 ::ffff:10.1.1.1\r\nt=0 0\r\nm=audio 5000/2 RTP/AVPF 0 0 8 255 -1\r\na=rtpmap:0 PCMA/0\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 \xff\x00/8000\r\na=ptime:-5\r\na=inactive\r\n",
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP " + strings.Repeat("0 ", 300) + "\r\n" + strings.Repeat("a=rtpmap:0 PCMU/8000\r\n", 50),
		head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\na=recvonly\r\nm=audio 5000 RTP/AVP 101\r\na=rtpmap:101 TELEPHONE-EVENT/8000\r\nm=audio 6000 RTP/AVP 8\r\n",
	} {
		f.Add([]byte(s))
	}
	supported := []Codec{PCMU, PCMA, TelephoneEvent}
	f.Fuzz(func(t *testing.T, body []byte) {
		var rm RemoteMedia
		var err error
		testenv.FuzzRun(t, "ParseSDP", func() { rm, err = ParseSDP(body) })
		if err != nil {
			if !strings.HasPrefix(err.Error(), "media: sdp") {
				t.Errorf("ParseSDP(%s): error %q does not say it is about SDP", testenv.FuzzQuote(string(body)), err)
			}
			return
		}
		what := fmt.Sprintf("ParseSDP(%s)", testenv.FuzzQuote(string(body)))
		if rm.Addr == nil || rm.Addr.Port < 1 || rm.Addr.Port > 65535 || (len(rm.Addr.IP) != net.IPv4len && len(rm.Addr.IP) != net.IPv6len) {
			t.Fatalf("%s: Addr %v", what, rm.Addr)
		}
		for _, c := range append(rm.Codecs, *fuzzOr(rm.DTMF)) {
			if c.PT > 127 || c.Rate <= 0 || c.Name == "" {
				t.Errorf("%s: codec %+v", what, c)
			}
		}
		if rm.DTMF != nil && !rm.DTMF.IsDTMF() {
			t.Errorf("%s: DTMF %+v", what, rm.DTMF)
		}
		switch rm.Direction {
		case "sendrecv", "sendonly", "recvonly", "inactive":
		default:
			t.Errorf("%s: Direction %q", what, rm.Direction)
		}
		if rm.Ptime < 0 {
			t.Errorf("%s: Ptime %d", what, rm.Ptime)
		}

		audio, dtmf, nerr := Negotiate(rm, supported)
		if nerr == nil {
			found := false
			for _, c := range rm.Codecs {
				found = found || c == audio
			}
			if !found || audio.IsDTMF() {
				t.Errorf("%s: Negotiate picked %+v, not an offered audio codec", what, audio)
			}
			if _, ok := CodecByName(audio.Name); !ok || audio.Rate != 8000 {
				t.Errorf("%s: Negotiate picked unsupported %+v", what, audio)
			}
			if dtmf != nil && (rm.DTMF == nil || *dtmf != *rm.DTMF) {
				t.Errorf("%s: Negotiate DTMF %+v, offer's %+v", what, dtmf, rm.DTMF)
			}
		}

		// The streams redial can handle, written back with BuildSDP (as an
		// answer is), parse to the same thing.
		var codecs []Codec
		for _, c := range rm.Codecs {
			if _, ok := CodecByName(c.Name); ok {
				codecs = append(codecs, c)
			}
		}
		if len(codecs) == 0 {
			return
		}
		offer := SDPOffer{IP: rm.Addr.IP.String(), Port: rm.Addr.Port, Codecs: codecs, Ptime: rm.Ptime, Direction: rm.Direction}
		if rm.DTMF != nil {
			offer.Codecs = append(offer.Codecs, *rm.DTMF)
		}
		built := BuildSDP(offer)
		again, err := ParseSDP(built)
		if err != nil {
			t.Fatalf("%s: BuildSDP(%+v) = %s does not parse: %v", what, offer, testenv.FuzzQuote(string(built)), err)
		}
		want := RemoteMedia{Addr: rm.Addr, Codecs: codecs, DTMF: rm.DTMF, Direction: rm.Direction, Ptime: rm.Ptime}
		if want.Ptime == 0 {
			want.Ptime = 20
		}
		if !again.Addr.IP.Equal(want.Addr.IP) || again.Addr.Port != want.Addr.Port {
			t.Errorf("%s: rebuilt address %v, want %v", what, again.Addr, want.Addr)
		}
		again.Addr, want.Addr = nil, nil
		if !reflect.DeepEqual(again, want) {
			t.Errorf("%s: rebuilt as %s, which parses to\n %+v\nwant %+v", what, testenv.FuzzQuote(string(built)), again, want)
		}
	})
}

func fuzzOr(c *Codec) *Codec {
	if c == nil {
		return &PCMU
	}
	return c
}

// FuzzBuildSDP: every offer redial can build parses back to what it says.
func FuzzBuildSDP(f *testing.F) {
	f.Add(uint32(0xc0000201), uint16(40000), uint8(7), uint8(101), uint8(0), uint8(0), uint64(1))
	f.Add(uint32(0x7f000001), uint16(1), uint8(2), uint8(96), uint8(30), uint8(3), uint64(1<<63))
	f.Fuzz(func(t *testing.T, ip uint32, port uint16, mask, dtmfPT, ptime, dir uint8, session uint64) {
		if port == 0 {
			return
		}
		addr := net.IPv4(byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip)).To4()
		var codecs []Codec
		if mask&1 != 0 {
			codecs = append(codecs, PCMU)
		}
		if mask&2 != 0 {
			codecs = append(codecs, PCMA)
		}
		if len(codecs) == 0 {
			codecs = []Codec{PCMU, PCMA}
		}
		te := Codec{PT: 96 + dtmfPT%32, Name: "telephone-event", Rate: 8000}
		withDTMF := mask&4 != 0
		if withDTMF {
			codecs = append(codecs, te)
		}
		direction := []string{"sendrecv", "sendonly", "recvonly", "inactive"}[dir%4]
		o := SDPOffer{IP: addr.String(), Port: int(port), Codecs: codecs, SessionID: session, Ptime: int(ptime), Direction: direction}
		b := BuildSDP(o)
		rm, err := ParseSDP(b)
		if err != nil {
			t.Fatalf("BuildSDP(%+v) = %s does not parse: %v", o, testenv.FuzzQuote(string(b)), err)
		}
		wantPtime := int(ptime)
		if wantPtime == 0 {
			wantPtime = 20
		}
		audio := codecs
		if withDTMF {
			audio = codecs[:len(codecs)-1]
		}
		if !rm.Addr.IP.Equal(addr) || rm.Addr.Port != int(port) || !reflect.DeepEqual(rm.Codecs, audio) ||
			rm.Direction != direction || rm.Ptime != wantPtime || (rm.DTMF != nil) != withDTMF || withDTMF && *rm.DTMF != te {
			t.Errorf("BuildSDP(%+v) parses to %+v (DTMF %v)", o, rm, rm.DTMF)
		}
	})
}
