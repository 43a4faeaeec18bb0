package media

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func TestBuildSDPText(t *testing.T) {
	got := string(BuildSDP(SDPOffer{IP: "10.0.0.5", Port: 16384, Codecs: []Codec{PCMA, PCMU, TelephoneEvent}, SessionID: 42}))
	want := "v=0\r\n" +
		"o=redial 42 42 IN IP4 10.0.0.5\r\n" +
		"s=redial\r\n" +
		"c=IN IP4 10.0.0.5\r\n" +
		"t=0 0\r\n" +
		"m=audio 16384 RTP/AVP 8 0 101\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n"
	if got != want {
		t.Fatalf("BuildSDP:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuildParseRoundTrip(t *testing.T) {
	dtmf := Codec{PT: 96, Name: "telephone-event", Rate: 8000}
	b := BuildSDP(SDPOffer{IP: "192.0.2.7", Port: 20000, Codecs: []Codec{PCMU, PCMA, dtmf}, SessionID: 7, Ptime: 30, Direction: "sendonly"})
	rm, err := ParseSDP(b)
	if err != nil {
		t.Fatalf("ParseSDP(BuildSDP(...)): %v\n%s", err, b)
	}
	if rm.Addr.String() != "192.0.2.7:20000" {
		t.Errorf("Addr = %v, want 192.0.2.7:20000", rm.Addr)
	}
	if !reflect.DeepEqual(rm.Codecs, []Codec{PCMU, PCMA}) {
		t.Errorf("Codecs = %v, want [PCMU PCMA]", rm.Codecs)
	}
	if rm.DTMF == nil || *rm.DTMF != dtmf {
		t.Errorf("DTMF = %v, want %v", rm.DTMF, dtmf)
	}
	if rm.Ptime != 30 || rm.Direction != "sendonly" {
		t.Errorf("Ptime, Direction = %d, %q; want 30, sendonly", rm.Ptime, rm.Direction)
	}
}

const asteriskSDP = "v=0\r\n" +
	"o=- 1889443539 1889443539 IN IP4 203.0.113.20\r\n" +
	"s=Asterisk\r\n" +
	"c=IN IP4 203.0.113.20\r\n" +
	"t=0 0\r\n" +
	"m=audio 13942 RTP/AVP 18 8 0 3 101\r\n" +
	"a=rtpmap:18 G729/8000\r\n" +
	"a=fmtp:18 annexb=no\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:3 GSM/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n" +
	"a=ptime:20\r\n" +
	"a=maxptime:150\r\n" +
	"a=sendrecv\r\n"

func TestParseAsteriskSDP(t *testing.T) {
	rm, err := ParseSDP([]byte(asteriskSDP))
	if err != nil {
		t.Fatal(err)
	}
	if rm.Addr.String() != "203.0.113.20:13942" {
		t.Errorf("Addr = %v", rm.Addr)
	}
	want := []Codec{{18, "G729", 8000}, PCMA, PCMU, {3, "GSM", 8000}}
	if !reflect.DeepEqual(rm.Codecs, want) {
		t.Errorf("Codecs = %v, want %v", rm.Codecs, want)
	}
	if rm.DTMF == nil || *rm.DTMF != TelephoneEvent {
		t.Errorf("DTMF = %v, want 101 telephone-event/8000", rm.DTMF)
	}
	audio, dtmf, err := Negotiate(rm, []Codec{PCMU, PCMA, TelephoneEvent})
	if err != nil {
		t.Fatal(err)
	}
	if audio != PCMA {
		t.Errorf("Negotiate picked %v, want PCMA (the offer's first supported codec)", audio)
	}
	if dtmf == nil || *dtmf != TelephoneEvent {
		t.Errorf("Negotiate dtmf = %v", dtmf)
	}
	if _, dtmf, _ := Negotiate(rm, []Codec{PCMU}); dtmf != nil {
		t.Errorf("Negotiate without telephone-event in supported returned dtmf %v", dtmf)
	}
}

// A SIPp-style body: LF line ends, connection line at media level only,
// static payload types without rtpmap, a dynamic telephone-event type.
func TestParseStaticPayloadTypesMediaConnection(t *testing.T) {
	body := "v=0\n" +
		"o=user1 53655765 2353687637 IN IP4 127.0.0.1\n" +
		"s=-\n" +
		"t=0 0\n" +
		"m=audio 6000 RTP/AVP 8 0 96\n" +
		"c=IN IP4 198.51.100.9\n" +
		"a=rtpmap:96 telephone-event/8000\n"
	rm, err := ParseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !rm.Addr.IP.Equal(net.ParseIP("198.51.100.9")) || rm.Addr.Port != 6000 {
		t.Errorf("Addr = %v, want 198.51.100.9:6000", rm.Addr)
	}
	if !reflect.DeepEqual(rm.Codecs, []Codec{PCMA, PCMU}) {
		t.Errorf("Codecs = %v, want [PCMA PCMU]", rm.Codecs)
	}
	if rm.DTMF == nil || rm.DTMF.PT != 96 {
		t.Errorf("DTMF = %v, want PT 96", rm.DTMF)
	}
	if rm.Direction != "sendrecv" {
		t.Errorf("Direction = %q, want sendrecv", rm.Direction)
	}
}

func TestParseOnlyStaticNoRtpmap(t *testing.T) {
	body := "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
	rm, err := ParseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rm.Codecs, []Codec{PCMU}) || rm.DTMF != nil {
		t.Errorf("Codecs, DTMF = %v, %v; want [PCMU], nil", rm.Codecs, rm.DTMF)
	}
}

func TestParsePrefersNarrowbandTelephoneEvent(t *testing.T) {
	body := "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n" +
		"m=audio 5004 RTP/AVP 111 0 110 126\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n"
	rm, err := ParseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if rm.DTMF == nil || rm.DTMF.PT != 126 {
		t.Errorf("DTMF = %v, want PT 126 (8000 Hz)", rm.DTMF)
	}
	if audio, _, err := Negotiate(rm, []Codec{PCMA, PCMU}); err != nil || audio != PCMU {
		t.Errorf("Negotiate = %v, %v; want PCMU", audio, err)
	}
}

func TestParseSDPErrors(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\n"
	cases := map[string]struct{ body, want string }{
		"no audio":   {head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n", "no audio m-line"},
		"port 0":     {head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n", "port 0"},
		"no c=":      {head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", "no connection address"},
		"hostname":   {head + "c=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", "not an IP address"},
		"srtp":       {head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/SAVP 0\r\n", "RTP/SAVP"},
		"bad pt":     {head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 x\r\n", `payload type "x"`},
		"bad rtpmap": {head + "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 foo\r\n", "a=rtpmap:96 foo"},
		"garbage":    {"hello", "media: sdp:"},
	}
	for name, c := range cases {
		_, err := ParseSDP([]byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "media: sdp: ") {
			t.Errorf("%s: err = %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestNegotiateNoCommonCodec(t *testing.T) {
	rm := RemoteMedia{Codecs: []Codec{{18, "G729", 8000}}, DTMF: &TelephoneEvent}
	_, _, err := Negotiate(rm, []Codec{PCMU, PCMA, TelephoneEvent})
	if err == nil || err.Error() != "media: no common codec (offered: G729)" {
		t.Fatalf("err = %v, want media: no common codec (offered: G729)", err)
	}
	if _, _, err := Negotiate(RemoteMedia{}, []Codec{PCMU}); err == nil || !strings.Contains(err.Error(), "offered: none") {
		t.Fatalf("err = %v, want offered: none", err)
	}
}

func TestNegotiateKeepsOfferPayloadType(t *testing.T) {
	rm := RemoteMedia{Codecs: []Codec{{PT: 97, Name: "PCMU", Rate: 8000}}}
	audio, _, err := Negotiate(rm, []Codec{PCMU})
	if err != nil || audio.PT != 97 {
		t.Fatalf("Negotiate = %v, %v; want PCMU with the offer's PT 97", audio, err)
	}
}

// BuildSDP writes what pion/sdp's Marshal would for the same description.
func TestBuildSDPMatchesPion(t *testing.T) {
	dtmf16 := Codec{PT: 102, Name: "telephone-event", Rate: 16000}
	for _, o := range []SDPOffer{
		{IP: "192.0.2.1", Port: 20000},
		{IP: "2001:db8::1", Port: 40000, Codecs: []Codec{PCMU, TelephoneEvent, dtmf16}, SessionID: 1<<63 + 5, Ptime: 30, Direction: "recvonly"},
		{IP: "10.1.2.3", Port: 1, Codecs: []Codec{PCMA}, Direction: "inactive"},
	} {
		if got, want := string(BuildSDP(o)), string(pionBuildSDP(t, o)); got != want {
			t.Errorf("BuildSDP(%+v):\n%s\npion:\n%s", o, got, want)
		}
	}
}

// pionBuildSDP is BuildSDP as it was written on pion/sdp.
func pionBuildSDP(t testing.TB, o SDPOffer) []byte {
	codecs := o.Codecs
	if len(codecs) == 0 {
		codecs = []Codec{PCMU, PCMA, TelephoneEvent}
	}
	ptime, dir, addrType := o.Ptime, o.Direction, "IP4"
	if ptime <= 0 {
		ptime = 20
	}
	if dir == "" {
		dir = "sendrecv"
	}
	if strings.Contains(o.IP, ":") {
		addrType = "IP6"
	}
	var formats []string
	var attrs []sdp.Attribute
	for _, c := range codecs {
		formats = append(formats, strconv.Itoa(int(c.PT)))
		attrs = append(attrs, sdp.NewAttribute("rtpmap", fmt.Sprintf("%d %s/%d", c.PT, c.Name, c.Rate)))
		if c.IsDTMF() {
			attrs = append(attrs, sdp.NewAttribute("fmtp", fmt.Sprintf("%d 0-16", c.PT)))
		}
	}
	attrs = append(attrs, sdp.NewAttribute("ptime", strconv.Itoa(ptime)), sdp.NewPropertyAttribute(dir))
	sd := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "redial", SessionID: o.SessionID, SessionVersion: o.SessionID,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: o.IP},
		SessionName:           "redial",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: o.IP}},
		TimeDescriptions:      []sdp.TimeDescription{{Timing: sdp.Timing{}}},
		MediaDescriptions: []*sdp.MediaDescription{{
			MediaName:  sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: o.Port}, Protos: []string{"RTP", "AVP"}, Formats: formats},
			Attributes: attrs,
		}},
	}
	b, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scanSDP takes only what pion/sdp takes, and reads it the same: checked
// on real offers and on every one-byte change of them.
func TestScanSDPAgreesWithPion(t *testing.T) {
	seeds := []string{
		string(BuildSDP(SDPOffer{IP: "10.0.0.5", Port: 16384, SessionID: 42})),
		"v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nt=0 0\r\na=sendonly\r\nm=audio 5004 RTP/AVP 8 0 101\r\nc=IN IP4 10.1.1.2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:30\r\n",
		"v=0\r\no=root 1 2 IN IP6 ::1\r\ns=Asterisk PBX\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\nm=audio 7078 RTP/AVPF 0 :x\r\na=:y\r\na=inactive\r\n",
		"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 1 RTP/SAVP 0\r\n",
	}
	check := func(body string) {
		fast, ok := scanSDP(body)
		if !ok {
			return
		}
		slow, err := pionSDP([]byte(body))
		if err != nil {
			t.Errorf("scanSDP took %q, pion refuses it: %v", body, err)
			return
		}
		if !reflect.DeepEqual(norm(fast), norm(slow)) {
			t.Errorf("scanSDP(%q) = %+v, pion %+v", body, fast, slow)
		}
	}
	for _, seed := range seeds {
		if _, ok := scanSDP(seed); !ok {
			t.Errorf("scanSDP refuses the plain offer %q", seed)
		}
		check(seed)
		for i := 0; i <= len(seed); i++ {
			for _, ins := range []string{" ", "\t", "\r", "\n", "\r\n", "x", "0", "/", ":", "=", "a=b\r\n", "m=audio 9 RTP/AVP 0\r\n", "c=IN IP4 9.9.9.9\r\n"} {
				check(seed[:i] + ins + seed[i:])
			}
			if i < len(seed) {
				check(seed[:i] + seed[i+1:])
				check(seed[:i] + "9" + seed[i+1:])
				check(seed[:i])
			}
		}
	}
}

// norm makes empty and nil slices compare equal.
func norm(d sdpDesc) sdpDesc {
	if len(d.attrs) == 0 {
		d.attrs = nil
	}
	for i := range d.media {
		if len(d.media[i].attrs) == 0 {
			d.media[i].attrs = nil
		}
		if len(d.media[i].formats) == 0 {
			d.media[i].formats = nil
		}
	}
	if len(d.media) == 0 {
		d.media = nil
	}
	return d
}

func BenchmarkParseSDP(b *testing.B) {
	body := []byte("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSDP(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanSDPvsPion compares the two readers ParseSDP has.
func BenchmarkScanSDPvsPion(b *testing.B) {
	body := []byte("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := scanSDP(string(body)); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("pion", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pionSDP(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBuildSDP(b *testing.B) {
	o := SDPOffer{IP: "192.0.2.1", Port: 20000, Codecs: []Codec{PCMU, PCMA, TelephoneEvent}}
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			BuildSDP(o)
		}
	})
	b.Run("pion", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pionBuildSDP(b, o)
		}
	})
}
