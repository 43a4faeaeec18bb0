package app

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/testenv"
)

// RFC 4733 key presses cross a bridge both ways with each leg's own
// telephone-event payload type: a desk phone calls in offering
// telephone-event on 96 (or 100), the call is bridged through the dialplan
// to a SIPp UAS that answers it on 101. Both phones are sockets of the
// test's (the SIPp SDPs point there), so the test sends the events itself
// and decodes what arrives. The same-law case relays PCMU as is; the
// transcoded one has a PCMA caller and a PCMU destination.
func TestBridgeRelaysRFC4733BothWays(t *testing.T) {
	for _, tc := range []struct {
		name      string
		audioPT   uint8
		audioName string
		tePT      uint8
	}{
		{"same_law", 0, "PCMU", 96},
		{"transcoded", 8, "PCMA", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const destPT, destTE = 0, 101 // what uas_answer_extmedia.xml answers
			r := testenv.StartRedis(t)
			callerPhone := newTestPhone(t)
			calleePhone := newTestPhone(t)
			destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_extmedia.xml"),
				Args: []string{"-m", "1", "-key", "rtp_port", strconv.Itoa(calleePhone.port())}})
			setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
			setDialplan(t, r, "public:7200", fmt.Sprintf(`{"type":"sip","uri":"sip:7200@%s"}`, destination.Addr))
			n := startNode(t, r.URL, "n1")
			caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_extmedia.xml"), Trace: true,
				Args: []string{"-m", "1", "-s", "7200", "-key", "rtp_port", strconv.Itoa(callerPhone.port()),
					"-key", "audio_pt", strconv.Itoa(int(tc.audioPT)), "-key", "audio_name", tc.audioName,
					"-key", "te_pt", strconv.Itoa(int(tc.tePT))},
				Remote: n.SIP.Addr("udp")})

			var info call.Info
			testenv.WaitFor(t, 15*time.Second, func() error {
				var list struct {
					Calls []call.Info `json:"calls"`
				}
				n.get("/api/v1/calls", &list)
				if len(list.Calls) != 1 || list.Calls[0].State != call.StateBridged || len(list.Calls[0].Legs) != 2 {
					return fmt.Errorf("calls: %+v", list.Calls)
				}
				info = list.Calls[0]
				return nil
			})
			var callerLeg, destLeg *net.UDPAddr
			for _, l := range info.Legs {
				a := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.LocalPort}
				if l.Role == "destination" {
					destLeg = a
				} else {
					callerLeg = a
				}
			}
			if callerLeg == nil || destLeg == nil {
				t.Fatalf("legs: %+v", info.Legs)
			}
			answer := sippAnswerSDP(t, caller)
			if !regexpMatch(fmt.Sprintf(`(?m)^m=audio \d+ RTP/AVP %d %d\s*$`, tc.audioPT, tc.tePT), answer) ||
				!strings.Contains(answer, fmt.Sprintf("a=rtpmap:%d telephone-event/8000", tc.tePT)) {
				t.Errorf("200 OK does not answer %s and telephone-event on %d:\n%s", tc.audioName, tc.tePT, answer)
			}

			// Caller keys 5: the destination hears event 5 on 101 and the
			// caller's audio in its own codec.
			callerPhone.press(t, callerLeg, tc.audioPT, tc.tePT, 5)
			calleePhone.expect(t, destPT, destTE, 5)
			// Destination keys # (event 11): the caller hears it on its PT.
			calleePhone.press(t, destLeg, destPT, destTE, 11)
			callerPhone.expect(t, tc.audioPT, tc.tePT, 11)

			req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/"+info.CallRef, nil)
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Fatalf("DELETE: %v %v", resp, err)
			}
			waitSipp(t, caller, 10*time.Second)
			waitSipp(t, destination, 10*time.Second)
			testenv.WaitFor(t, 5*time.Second, func() error {
				if u := n.Ports.InUse(); u != 0 {
					return fmt.Errorf("%d RTP ports still in use", u)
				}
				return nil
			})
		})
	}
}

// testPhone is an RTP endpoint of the test's: it sends one key press as
// RFC 4733 events (after a few audio packets) and checks what the node
// relays to it.
type testPhone struct {
	conn *net.UDPConn
	seq  uint16
	ts   uint32
}

// The SSRCs of what a testPhone sends; the relay keeps SSRCs, so the
// receiving phone tells audio from events by them whatever their PT.
const (
	phoneAudioSSRC = 0xA0D10000
	phoneEventSSRC = 0xE7E70000
)

func newTestPhone(t testing.TB) *testPhone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testPhone{conn: c, seq: 1000, ts: 8000}
}

func (p *testPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *testPhone) send(t testing.TB, to *net.UDPAddr, pt uint8, marker bool, ssrc uint32, ts uint32, payload []byte) {
	t.Helper()
	pkt := make([]byte, 12+len(payload))
	pkt[0], pkt[1] = 0x80, pt
	if marker {
		pkt[1] |= 0x80
	}
	binary.BigEndian.PutUint16(pkt[2:], p.seq)
	binary.BigEndian.PutUint32(pkt[4:], ts)
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	copy(pkt[12:], payload)
	p.seq++
	if _, err := p.conn.WriteToUDP(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// press sends two audio packets (silence in audioPT's law) and then key
// event ev as RFC 4733 on tePT: three updates, the first with the marker
// bit, then the end packet three times, all with the press's timestamp.
func (p *testPhone) press(t testing.TB, to *net.UDPAddr, audioPT, tePT uint8, ev byte) {
	t.Helper()
	silence := make([]byte, 160)
	for i := range silence {
		silence[i] = 0xFF // µ-law silence
		if audioPT == 8 {
			silence[i] = 0xD5 // A-law silence
		}
	}
	for i := 0; i < 2; i++ {
		p.send(t, to, audioPT, false, phoneAudioSSRC, p.ts, silence)
		p.ts += 160
	}
	for i := 1; i <= 6; i++ {
		end := i > 3
		dur := uint16(min(i, 4) * 160)
		flags := byte(10) // volume
		if end {
			flags |= 0x80
		}
		p.send(t, to, tePT, i == 1, phoneEventSSRC, p.ts, []byte{ev, flags, byte(dur >> 8), byte(dur)})
	}
	p.ts += 4 * 160
}

// expect reads what the node relays until it has seen both audio packets on
// audioPT and all six event packets of key ev on tePT; a packet of either
// stream on another payload type, or another event, fails the test.
func (p *testPhone) expect(t testing.TB, audioPT, tePT uint8, ev byte) {
	t.Helper()
	audio, events, ends := 0, 0, 0
	buf := make([]byte, 1500)
	if err := p.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for audio < 2 || events < 6 {
		n, err := p.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("within 5s got %d of 2 audio packets and %d of 6 event packets (%d ends) of key %d", audio, events, ends, ev)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n < 12 {
			continue
		}
		pt := buf[1] & 0x7f
		switch binary.BigEndian.Uint32(buf[8:]) {
		case phoneAudioSSRC:
			if pt != audioPT {
				t.Fatalf("audio arrived with PT %d, want %d", pt, audioPT)
			}
			audio++
		case phoneEventSSRC:
			if pt != tePT {
				t.Fatalf("RFC 4733 event arrived with PT %d, want the leg's telephone-event PT %d", pt, tePT)
			}
			if n != 16 || buf[12] != ev {
				t.Fatalf("RFC 4733 payload %x, want event %d", buf[12:n], ev)
			}
			events++
			if buf[13]&0x80 != 0 {
				ends++
			}
		}
	}
	if ends != 3 {
		t.Fatalf("%d end packets, want 3", ends)
	}
}
