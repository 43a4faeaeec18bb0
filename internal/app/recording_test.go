package app

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/media"
	"redial/internal/testenv"
)

// talk sends a tone from phone to the node's RTP port to, 20 ms a packet
// in PCMU, until stop is closed, counting the packets in sent. It runs in
// its own goroutine: errors end it quietly (the test checks the
// recording, which shows a gap).
func talk(phone *testPhone, to *net.UDPAddr, freq float64, sent *atomic.Int64, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tone := media.NewTone(freq, 8000, 0)
		pcm := make([]int16, media.FrameSamples)
		pkt := make([]byte, 12+media.FrameSamples)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		var ts uint32 = 5000
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			tone.ReadFrame(pcm)
			pkt[0], pkt[1] = 0x80, 0
			binary.BigEndian.PutUint16(pkt[2:], seq)
			binary.BigEndian.PutUint32(pkt[4:], ts)
			binary.BigEndian.PutUint32(pkt[8:], 0x7A1C0001)
			for i, v := range pcm {
				pkt[12+i] = media.LinearToUlaw(v)
			}
			if _, err := phone.conn.WriteToUDP(pkt, to); err != nil {
				return
			}
			seq++
			ts += media.FrameSamples
			sent.Add(1)
		}
	}()
	return done
}

// download GETs a call's recording from n.
func download(t *testing.T, n *node, ref string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(n.api + "/api/v1/calls/" + ref + "/recording")
	if err != nil {
		t.Fatalf("GET recording from %s: %v", n.Cfg.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// stereoPCM parses a 16-bit stereo 8 kHz PCM WAV into its channels.
func stereoPCM(t *testing.T, b []byte) (left, right []int16) {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Fatalf("not a canonical WAV (%d bytes): %.60q", len(b), b)
	}
	ch, rate, bits := binary.LittleEndian.Uint16(b[22:]), binary.LittleEndian.Uint32(b[24:]), binary.LittleEndian.Uint16(b[34:])
	if binary.LittleEndian.Uint16(b[20:]) != 1 || ch != 2 || rate != 8000 || bits != 16 {
		t.Fatalf("WAV format %d, %d channels, %d Hz, %d bits; want PCM stereo 8000 Hz 16 bits", binary.LittleEndian.Uint16(b[20:]), ch, rate, bits)
	}
	if data := binary.LittleEndian.Uint32(b[40:]); int(data) != len(b)-44 {
		t.Fatalf("data chunk says %d bytes, file has %d", data, len(b)-44)
	}
	for i := 44; i+4 <= len(b); i += 4 {
		left = append(left, int16(binary.LittleEndian.Uint16(b[i:])))
		right = append(right, int16(binary.LittleEndian.Uint16(b[i+2:])))
	}
	return left, right
}

// toneShare is the part of pcm's power at freq.
func toneShare(pcm []int16, freq float64) float64 {
	p := media.MeanPower(pcm)
	if p == 0 {
		return 0
	}
	return media.Goertzel(pcm, freq, media.SampleRate) / p
}

// A bridged call with record_call=true is recorded in stereo: the callee
// (the customer, A leg) says 400 Hz from a test-owned phone, the
// destination (SIPp) plays its 1 kHz tone; the CDR names the recording,
// which downloads as a WAV with the callee left and the destination right,
// as long as the bridge, from the node that holds it and, proxied, from
// the other node of the cluster.
func TestRecordedBridgeDownloadsFromEitherNode(t *testing.T) {
	r := testenv.StartRedis(t)
	phone := newTestPhone(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_extmedia.xml"),
		Args: []string{"-m", "1", "-key", "rtp_port", strconv.Itoa(phone.port())}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_dest_rtp.xml"), Args: []string{"-m", "1"},
		Files: []string{scenario(t, "pcmu_tone.ulaw")}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:7300", fmt.Sprintf(`{"type":"sip","uri":"sip:7300@%s"}`, destination.Addr))
	n1 := startNode(t, r.URL, "rec-a")
	n2 := startNode(t, r.URL, "rec-b")

	ref := originate(t, n1, map[string]any{"number": "15557300001", "line_group": "g1", "destination": dest("7300"),
		"call_ref": "rec-1", "variables": map[string]any{"record_call": "true"}})
	var calleeLeg *net.UDPAddr
	testenv.WaitFor(t, 15*time.Second, func() error {
		var info call.Info
		n1.get("/api/v1/calls/"+ref, &info)
		if info.State != call.StateBridged || len(info.Legs) != 2 {
			return fmt.Errorf("call %s: state %s, %d legs", ref, info.State, len(info.Legs))
		}
		for _, l := range info.Legs {
			if l.Role == "callee" {
				calleeLeg = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.LocalPort}
			}
		}
		return nil
	})
	bridged := time.Now()
	stop := make(chan struct{})
	var sent atomic.Int64
	talking := talk(phone, calleeLeg, 400, &sent, stop)
	// Two seconds of the callee talking.
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := sent.Load(); n < 100 {
			return fmt.Errorf("%d of 100 packets sent", n)
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodDelete, n1.api+"/api/v1/calls/"+ref, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	hungUp := time.Now()
	close(stop)
	<-talking

	cdr := cdrsFor(t, r, ref, 1, 15*time.Second)[0]
	want := fmt.Sprintf(":SYN_DOM/recordings/%s/rec-1.wav", cdr.Start.UTC().Format("2006/01/02"))
	if cdr.Recording != want {
		t.Fatalf("CDR recording = %q, want %q (cdr %+v)", cdr.Recording, want, cdr)
	}
	if _, ok := cdr.Variables[call.VarRecording]; ok {
		t.Errorf("CDR variables repeat the recording: %v", cdr.Variables)
	}

	code, hdr, wav := download(t, n1, ref)
	if code != http.StatusOK || hdr.Get("Content-Type") != "audio/wav" {
		t.Fatalf("GET recording from the holder: %d %s %.200s", code, hdr.Get("Content-Type"), wav)
	}
	left, right := stereoPCM(t, wav)
	length := time.Duration(len(left)) * time.Second / media.SampleRate
	// The bridge began before the test saw it (by at most a poll) and
	// ended when the DELETE was answered.
	if bridge := hungUp.Sub(bridged); length < bridge-200*time.Millisecond || length > bridge+200*time.Millisecond {
		t.Fatalf("recording lasts %v, the bridge about %v", length, bridge)
	}
	mid := func(pcm []int16) []int16 { return pcm[len(pcm)/4 : len(pcm)*3/4] }
	t.Logf("recording %v (bridge about %v); left 400 Hz %.2f, right 1 kHz %.2f", length, hungUp.Sub(bridged),
		toneShare(mid(left), 400), toneShare(mid(right), 1000))
	if s := toneShare(mid(left), 400); s < 0.7 {
		t.Errorf("left channel: 400 Hz share %.2f, want the callee's tone", s)
	}
	if s := toneShare(mid(left), 1000); s > 0.1 {
		t.Errorf("left channel: 1 kHz share %.2f: the destination leaked into the callee's channel", s)
	}
	if s := toneShare(mid(right), 1000); s < 0.6 {
		t.Errorf("right channel: 1 kHz share %.2f, want the destination's tone", s)
	}
	if s := toneShare(mid(right), 400); s > 0.1 {
		t.Errorf("right channel: 400 Hz share %.2f: the callee leaked into the destination's channel", s)
	}

	// The other node fetches it from the holder, with the caller's rights.
	code, hdr, proxied := download(t, n2, ref)
	if code != http.StatusOK || hdr.Get("Content-Type") != "audio/wav" || string(proxied) != string(wav) {
		t.Fatalf("GET recording from the other node: %d %s, %d bytes (holder gave %d)", code, hdr.Get("Content-Type"), len(proxied), len(wav))
	}

	// A call without a recording: 404 naming it, from either node.
	for _, n := range []*node{n1, n2} {
		code, _, body := download(t, n, "no-such-call")
		if code != http.StatusNotFound || !strings.Contains(string(body), "no-such-call") {
			t.Errorf("GET recording of an unknown call from %s: %d %s", n.Cfg.Host, code, body)
		}
	}
	var m map[string]any
	if n2.get("/api/v1/calls/"+ref, &m); m["recording"] != want || m["node"] != "rec-a" {
		t.Errorf("GET call from the other node: %v", m)
	}
	waitSipp(t, callee, 10*time.Second)
	waitSipp(t, destination, 10*time.Second)
}

// Agent calls are recorded without asking (click-to-dial here: the
// customer left, the agent's 1 kHz right), and record_call=false turns it
// off: no recording field, and the download is 404 naming the call.
func TestAgentCallsRecordedUnlessTurnedOff(t *testing.T) {
	r := testenv.StartRedis(t)
	agent := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_dest_rtp.xml"), Args: []string{"-m", "2"},
		Files: []string{scenario(t, "pcmu_tone.ulaw")}})
	customer := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "2"}})
	setLine(t, r, "l1", "g1", "sip:"+customer.Addr, "")
	n := startNode(t, r.URL, "n1")
	bindAgent(t, n, "1001", "n1", agent)

	for _, tc := range []struct {
		ref  string
		vars map[string]any
		want bool
	}{
		{"agent-rec-on", nil, true},
		{"agent-rec-off", map[string]any{"record_call": "false"}, false},
	} {
		body := map[string]any{"ext": "1001", "number": "15558100001", "line_group": "g1", "call_ref": tc.ref}
		if tc.vars != nil {
			body["variables"] = tc.vars
		}
		if code, out := n.post("/api/v1/click2dial", body); code != http.StatusAccepted {
			t.Fatalf("click2dial %s: %d %v", tc.ref, code, out)
		}
		// Half a second of the agent's tone relayed, then hang up.
		testenv.WaitFor(t, 15*time.Second, func() error {
			var info call.Info
			n.get("/api/v1/calls/"+tc.ref, &info)
			for _, l := range info.Legs {
				if l.Role == "agent" && info.State == call.StateBridged && l.PacketsIn >= 25 {
					return nil
				}
			}
			return fmt.Errorf("call %s: state %s, legs %+v", tc.ref, info.State, info.Legs)
		})
		req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/"+tc.ref, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cdr := clickCDRs(t, r, tc.ref, 1, 15*time.Second)[0]
		code, hdr, wav := download(t, n, tc.ref)
		if !tc.want {
			if cdr.Recording != "" || code != http.StatusNotFound || !strings.Contains(string(wav), tc.ref) {
				t.Errorf("%s: recording %q, download %d %s; want none", tc.ref, cdr.Recording, code, wav)
			}
			continue
		}
		if cdr.Recording == "" || cdr.Ext == nil || code != http.StatusOK || hdr.Get("Content-Type") != "audio/wav" {
			t.Fatalf("%s: CDR recording %q ext %v, download %d %s", tc.ref, cdr.Recording, cdr.Ext, code, hdr.Get("Content-Type"))
		}
		_, right := stereoPCM(t, wav)
		if s := toneShare(right[len(right)/4:len(right)*3/4], 1000); s < 0.6 {
			t.Errorf("%s: right channel 1 kHz share %.2f, want the agent's tone", tc.ref, s)
		}
	}
}
