package app

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

// writeToneWAV writes a 16-bit 8 kHz mono WAV of a sine at freq for d.
func writeToneWAV(t testing.TB, path string, freq float64, d time.Duration) {
	t.Helper()
	src := media.NewTone(freq, 12000, d)
	var pcm []int16
	buf := make([]int16, 160)
	for {
		n, err := src.ReadFrame(buf)
		pcm = append(pcm, buf[:n]...)
		if err != nil {
			break
		}
	}
	data := make([]byte, 44+2*len(pcm))
	copy(data, "RIFF")
	binary.LittleEndian.PutUint32(data[4:], uint32(36+2*len(pcm)))
	copy(data[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:], 16)
	binary.LittleEndian.PutUint16(data[20:], 1)
	binary.LittleEndian.PutUint16(data[22:], 1)
	binary.LittleEndian.PutUint32(data[24:], 8000)
	binary.LittleEndian.PutUint32(data[28:], 16000)
	binary.LittleEndian.PutUint16(data[32:], 2)
	binary.LittleEndian.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	binary.LittleEndian.PutUint32(data[40:], uint32(2*len(pcm)))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(data[44+2*i:], uint16(s))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func setScript(t testing.TB, r *testenv.Redis, id, script string) {
	t.Helper()
	if err := r.Client.HSet(context.Background(), "ivr_script@default", id, script).Err(); err != nil {
		t.Fatal(err)
	}
}

// A script plays a 1 kHz WAV to the callee: what arrives is that tone, as
// long as the file within 100 ms. The callee's phone is a socket of the
// test's (the SIPp UAS points its SDP there).
func TestIVRPlaysToneToCallee(t *testing.T) {
	r := testenv.StartRedis(t)
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_extmedia.xml"),
		Args: []string{"-m", "1", "-key", "rtp_port", strconv.Itoa(phone.LocalAddr().(*net.UDPAddr).Port)}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:play", `{"type":"ivr","script":"play"}`)
	setScript(t, r, "play", `{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/prompts/tone.wav","transfer":2},{"oId":2,"oType":201}]}`)
	n := startNode(t, r.URL, "n1")
	path, err := n.Files.ResolveForWrite("", ":GS_PUB/prompts/tone.wav")
	if err != nil {
		t.Fatal(err)
	}
	writeToneWAV(t, path, 1000, 2*time.Second)
	ref := originate(t, n, map[string]any{"number": "15559000001", "line_group": []string{"g1"}, "destination": dest("play")})

	var pcm []int16
	buf := make([]byte, 1500)
	var first, last time.Time
	for {
		phone.SetReadDeadline(time.Now().Add(3 * time.Second))
		nr, err := phone.Read(buf)
		if err != nil {
			break // the script hung up: no more RTP
		}
		if nr <= 12 || buf[1]&0x7f != 0 {
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		last = time.Now()
		for _, b := range buf[12:nr] {
			pcm = append(pcm, media.UlawToLinear(b))
		}
	}
	got := time.Duration(len(pcm)) * time.Second / 8000
	if got < 1900*time.Millisecond || got > 2100*time.Millisecond {
		t.Fatalf("received %v of audio (over %v), want 2s ± 100ms", got, last.Sub(first))
	}
	if share := media.Goertzel(pcm, 1000, 8000) / media.MeanPower(pcm); share < 0.9 {
		t.Fatalf("1 kHz holds %.2f of the received power, want >= 0.9", share)
	}
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.Variables["redial_ivr_ended"] != "hangup" {
		t.Fatalf("cdr: %+v", c)
	}
	waitSipp(t, carrier, 5*time.Second)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if u := n.Ports.InUse(); u != 0 {
			return fmt.Errorf("%d RTP ports in use", u)
		}
		return nil
	})
}

// RFC 4733 digits replayed by SIPp from Debian's DTMF pcaps, and digits
// sent as SIP INFO, are collected exactly.
func TestIVRCollectsDigits(t *testing.T) {
	for _, tc := range []struct{ scenario, want string }{
		{"uas_dtmf_pcap.xml", "123"},
		{"uas_info_dtmf.xml", "456"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			r := testenv.StartRedis(t)
			callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, tc.scenario), Args: []string{"-m", "1"}})
			setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
			setDialplan(t, r, "default:dig", `{"type":"ivr","script":"dig"}`)
			setScript(t, r, "dig", `{"start":1,"components":[{"oId":1,"oType":302,"maxSymbolCount":3,"timeoutSec":8,"interDigitSec":5,"transfer":2},{"oId":2,"oType":303,"timeSec":1.5,"transfer":3},{"oId":3,"oType":201}]}`)
			n := startNode(t, r.URL, "n1")
			ref := originate(t, n, map[string]any{"number": "15559000002", "line_group": []string{"g1"}, "destination": dest("dig")})
			c := cdrsFor(t, r, ref, 1, 20*time.Second)[0]
			if c.Variables["dtmfBuffer"] != tc.want {
				t.Fatalf("collected %q, want %q (cdr variables %v)", c.Variables["dtmfBuffer"], tc.want, c.Variables)
			}
			waitSipp(t, callee, 5*time.Second)
		})
	}
}

// A menu routes by digit; the chosen branch transfers the call to a SIPp
// UAS through the dialplan and bridges it.
func TestIVRMenuRoutesAndTransfers(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_info_dtmf.xml"), Args: []string{"-m", "1"}})
	agent := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "2000"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:menu", `{"type":"ivr","script":"menu"}`)
	setDialplan(t, r, "default:7000", fmt.Sprintf(`{"type":"sip","uri":"sip:7000@%s"}`, agent.Addr))
	// The callee sends 4 (then 5, 6): 4 goes to the transfer branch.
	setScript(t, r, "menu", `{"start":1,"components":[
		{"oId":1,"oType":301,"timeoutSec":5,"transfers":{"4":2,"5":3,"timeout":3}},
		{"oId":2,"oType":304,"variables":{"route":"sales"},"transfer":4},
		{"oId":3,"oType":304,"variables":{"route":"wrong"},"transfer":5},
		{"oId":4,"oType":203,"number":"7000"},
		{"oId":5,"oType":201}]}`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15559000003", "line_group": []string{"g1"}, "destination": dest("menu")})
	c := cdrsFor(t, r, ref, 1, 20*time.Second)[0]
	if c.Variables["route"] != "sales" || c.Variables["redial_ivr_ended"] != "transfer" {
		t.Fatalf("cdr variables: %v", c.Variables)
	}
	waitSipp(t, agent, 10*time.Second) // the agent got the bridged call and hung up
	waitSipp(t, callee, 10*time.Second)
}

// The callee hanging up in the middle of a long prompt ends the session at
// once and frees its RTP ports.
func TestIVRHangupMidPlayback(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "700"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:long", `{"type":"ivr","script":"long"}`)
	setScript(t, r, "long", `{"start":1,"components":[{"oId":1,"oType":204,"file":":GS_PUB/long.wav"}]}`)
	n := startNode(t, r.URL, "n1")
	path, _ := n.Files.ResolveForWrite("", ":GS_PUB/long.wav")
	writeToneWAV(t, path, 440, 20*time.Second)
	start := time.Now()
	ref := originate(t, n, map[string]any{"number": "15559000004", "line_group": []string{"g1"}, "destination": dest("long")})
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("session outlived the caller: ended after %v", el)
	}
	if c.Variables["redial_ivr_ended"] != "caller_hangup" || c.Variables["redial_hangup_side"] != "" && c.Variables["redial_hangup_side"] != "callee" {
		t.Fatalf("cdr variables: %v", c.Variables)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if u := n.Ports.InUse(); u != 0 {
			return fmt.Errorf("%d RTP ports in use", u)
		}
		tmp, _ := os.ReadDir(filepath.Join(n.Cfg.Data, "tmp"))
		if len(tmp) != 0 {
			return fmt.Errorf("%d session temp dirs left", len(tmp))
		}
		return nil
	})
}

// Hostile script input: a path escaping its store or naming an unknown
// store makes playback exit "error" (logged), and the script's error branch
// runs; a malformed script names its field and other scripts still run.
func TestIVRHostileInput(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "3"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:evil", `{"type":"ivr","script":"evil"}`)
	setDialplan(t, r, "default:broken", `{"type":"ivr","script":"broken"}`)
	setScript(t, r, "evil", `{"start":1,"components":[
		{"oId":1,"oType":204,"file":":GS_PUB/../../../../etc/passwd","transfers":{"error":2}},
		{"oId":2,"oType":304,"variables":{"first":"refused"},"transfer":3},
		{"oId":3,"oType":204,"file":":NOPE/x.wav","transfers":{"error":4}},
		{"oId":4,"oType":304,"variables":{"second":"refused"},"transfer":5},
		{"oId":5,"oType":201}]}`)
	setScript(t, r, "broken", `{"start":1,"components":[{"oId":1,"oType":208,"recTimeSec":"ten"}]}`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15559000005", "line_group": []string{"g1"}, "destination": dest("evil")})
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Variables["first"] != "refused" || c.Variables["second"] != "refused" {
		t.Fatalf("unsafe paths were not refused: %v", c.Variables)
	}
	ref = originate(t, n, map[string]any{"number": "15559000006", "line_group": []string{"g1"}, "destination": dest("broken")})
	c = cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "FAILED" || !strings.Contains(c.Variables["redial_reason"], "recTimeSec") {
		t.Fatalf("malformed script: %+v", c)
	}
	// evil still works after broken failed.
	ref = originate(t, n, map[string]any{"number": "15559000007", "line_group": []string{"g1"}, "destination": dest("evil")})
	if c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]; c.Disposition != "ANSWERED" {
		t.Fatalf("cdr: %+v", c)
	}
}

// An inbound call offering only G.729 gets 488.
func TestInboundUnsupportedCodec(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:5000", `{"type":"ivr","script":"x"}`)
	n := startNode(t, r.URL, "n1")
	s := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_g729_only.xml"), Args: []string{"-m", "1", "-s", "5000"}, Remote: n.SIP.Addr("udp")})
	waitSipp(t, s, 10*time.Second)
}

// A voicemail record component stores what SIPp streams (rtp_stream of a
// 1 kHz tone) for maxSec, with that tone's energy, adds the message to the
// vmbox and announces it on redial:events.
func TestIVRRecordsWhatSippStreams(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_dest_rtp.xml"), Args: []string{"-m", "1"},
		Files: []string{scenario(t, "pcmu_tone.ulaw")}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	setDialplan(t, r, "default:vm", `{"type":"ivr","script":"vm"}`)
	setScript(t, r, "vm", `{"start":1,"components":[{"oId":1,"oType":306,"account_id":"acc1","vmbox_id":"vb1","maxSec":2,"beep":0,"transfer":2},{"oId":2,"oType":201}]}`)
	r.Client.HSet(context.Background(), "vmbox@acc1", "vb1", `{"owner_id":"u1","messages":[]}`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15559000008", "line_group": []string{"g1"}, "destination": dest("vm")})
	cdrsFor(t, r, ref, 1, 15*time.Second)
	waitSipp(t, callee, 5*time.Second)
	var box struct {
		Messages []struct {
			MediaID string `json:"media_id"`
			Folder  string `json:"folder"`
			File    string `json:"file"`
			Length  int    `json:"length"`
		} `json:"messages"`
	}
	raw, _ := r.Client.HGet(context.Background(), "vmbox@acc1", "vb1").Result()
	if err := json.Unmarshal([]byte(raw), &box); err != nil || len(box.Messages) != 1 || box.Messages[0].Folder != "new" {
		t.Fatalf("vmbox: %s", raw)
	}
	path, err := n.Files.Resolve("", box.Messages[0].File)
	if err != nil {
		t.Fatal(err)
	}
	src, err := media.OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	var pcm []int16
	buf := make([]int16, 160)
	for {
		k, err := src.ReadFrame(buf)
		pcm = append(pcm, buf[:k]...)
		if err != nil {
			break
		}
	}
	got := time.Duration(len(pcm)) * time.Second / 8000
	if got < 1900*time.Millisecond || got > 2100*time.Millisecond {
		t.Fatalf("recording is %v long, want 2s ± 100ms", got)
	}
	if share := media.Goertzel(pcm, 1000, 8000) / media.MeanPower(pcm); share < 0.8 || media.MeanPower(pcm) < 1e-4 {
		t.Fatalf("recording: 1 kHz share %.2f, power %g", share, media.MeanPower(pcm))
	}
	ev, _ := r.Client.LRange(context.Background(), "redial:events", 0, -1).Result()
	found := false
	for _, e := range ev {
		if strings.Contains(e, `"voicemail_saved"`) && strings.Contains(e, box.Messages[0].MediaID) {
			found = true
		}
	}
	// The node's callback runner may already have taken the event; then
	// it is in its processing list or acked. Either way it was announced:
	// check the callback runner's counter too.
	if !found && counterValue(t, n, "redial_callback_events_total") == 0 {
		t.Fatalf("no voicemail_saved event for %s", box.Messages[0].MediaID)
	}
}
