package app

import (
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

func dest(ext string) map[string]any {
	return map[string]any{"extension": ext, "dialplan": "XML", "context": "default"}
}

// An answered call is bridged to the destination; the callee's BYE ends
// both legs and the CDR says ANSWERED with the time talked.
func TestAnswerBridgeThenCalleeBye(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "1200"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, `,"limit":5`)
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r.URL, "n1")

	ref := originate(t, n, map[string]any{"number": "15551230001", "line_group": []string{"g1"}, "destination": dest("8888"),
		"contact_ref": "c-1", "campaign_ref": "camp", "variables": map[string]any{"x_custom": 7}})
	cdrs := cdrsFor(t, r, ref, 1, 15*time.Second)
	c := cdrs[0]
	if c.Disposition != "ANSWERED" || c.SIPCode != 200 || c.HangupCause != "NORMAL_CLEARING" || c.Line != "l1" {
		t.Fatalf("cdr: %+v", c)
	}
	if c.Answer == nil || c.Billsec < 1 || c.ClientNumber != "15551230001" || c.DialNumber != "15550001111" ||
		c.ContactRef != "c-1" || c.CampaignRef != "camp" || c.Attempt != 1 || c.Ext != nil {
		t.Fatalf("cdr fields: %+v", c)
	}
	if c.Variables["x_custom"] != "7" || c.Variables["redial_hangup_side"] != "callee" {
		t.Fatalf("variables: %v", c.Variables)
	}
	waitSipp(t, carrier, 10*time.Second)
	waitSipp(t, destination, 10*time.Second) // received the bridged INVITE and our BYE

	var info map[string]any
	if n.get("/api/v1/calls/"+ref, &info); info["state"] != "ended" {
		t.Fatalf("GET call: %v", info)
	}
}

// 486 ends the call at once: no failover to the second group.
func TestBusyDoesNotFailOver(t *testing.T) {
	r := testenv.StartRedis(t)
	busy := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	other := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "busy", "g1", "sip:"+busy.Addr, "")
	setLine(t, r, "other", "g2", "sip:"+other.Addr, "")
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230002", "line_group": []string{"g1", "g2"}, "destination": dest("8888")})
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "BUSY" || c.SIPCode != 486 || c.HangupCause != "USER_BUSY" || c.Answer != nil || c.Line != "busy" {
		t.Fatalf("cdr: %+v", c)
	}
	waitSipp(t, busy, 5*time.Second)
	if other.Output() != "" && strings.Contains(other.Output(), "INVITE") {
		t.Fatalf("second group was dialed")
	}
}

// 503 on the first group fails over to the second, with one CDR per INVITE.
func TestFailoverOn503(t *testing.T) {
	r := testenv.StartRedis(t)
	down := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_503.xml"), Args: []string{"-m", "1"}})
	up := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "200"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "down", "g1", "sip:"+down.Addr, "")
	setLine(t, r, "up", "g2", "sip:"+up.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230003", "line_group": []string{"g1", "g2"}, "destination": dest("8888")})
	cdrs := cdrsFor(t, r, ref, 2, 15*time.Second)
	if cdrs[0].Disposition != "CONGESTION" || cdrs[0].SIPCode != 503 || cdrs[0].Line != "down" || cdrs[0].Attempt != 1 {
		t.Fatalf("first attempt: %+v", cdrs[0])
	}
	if cdrs[1].Disposition != "ANSWERED" || cdrs[1].Line != "up" || cdrs[1].Attempt != 2 || cdrs[0].CDRID == cdrs[1].CDRID {
		t.Fatalf("second attempt: %+v", cdrs[1])
	}
	waitSipp(t, down, 5*time.Second)
	waitSipp(t, up, 10*time.Second)
}

// A call that rings past originate_timeout is cancelled (CANCEL, 487) and
// recorded as NO_ANSWER.
func TestRingTimeoutCancels(t *testing.T) {
	r := testenv.StartRedis(t)
	ring := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+ring.Addr, "")
	n := startNode(t, r.URL, "n1")
	start := time.Now()
	ref := originate(t, n, map[string]any{"number": "15551230004", "line_group": []string{"g1"}, "destination": dest("8888"),
		"variables": map[string]string{"originate_timeout": "1.5"}})
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "NO_ANSWER" || c.SIPCode != 487 || c.HangupCause != "NO_ANSWER" {
		t.Fatalf("cdr: %+v", c)
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Fatalf("ring timeout took %v", el)
	}
	waitSipp(t, ring, 5*time.Second) // the scenario got CANCEL, sent 487 and got the ACK
}

// 401 and 407 challenges are answered with the line's credentials: the
// UAS checks the digest (SIPp's verifyauth for 401; for 407 the test passes
// the response the right password must give).
func TestDigestAuth(t *testing.T) {
	for _, sc := range []string{"uas_407.xml", "uas_401.xml"} {
		t.Run(sc, func(t *testing.T) {
			r := testenv.StartRedis(t)
			port := testenv.FreePort(t)
			number := "15551230005"
			args := []string{"-m", "1"}
			if sc == "uas_407.xml" {
				// RFC 2617 without qop; sipgo signs the Request-URI.
				md5hex := func(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }
				ha1 := md5hex("alice:redial.test:secret")
				ha2 := md5hex(fmt.Sprintf("INVITE:sip:%s@127.0.0.1:%d", number, port))
				args = append(args, "-set", "expected_response", md5hex(ha1+":4a7f2c9e1b3d5f60718293a4b5c6d7e8:"+ha2))
			}
			carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, sc), Port: port, Args: args})
			setLine(t, r, "auth", "g1", "sip:"+carrier.Addr, `,"username":"alice","password":"secret"`)
			setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
			n := startNode(t, r.URL, "n1")
			ref := originate(t, n, map[string]any{"number": number, "line_group": []string{"g1"}, "destination": dest("8888")})
			c := cdrsFor(t, r, ref, 1, 15*time.Second)[0]
			if c.Disposition != "ANSWERED" || c.SIPCode != 200 {
				t.Fatalf("cdr: %+v", c)
			}
			waitSipp(t, carrier, 10*time.Second) // exit 0: the digest was right
		})
	}
	// A wrong password is refused (403) and recorded as such.
	t.Run("wrong password", func(t *testing.T) {
		r := testenv.StartRedis(t)
		carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_401.xml"), Args: []string{"-m", "1"}})
		setLine(t, r, "auth", "g1", "sip:"+carrier.Addr, `,"username":"alice","password":"wrong"`)
		n := startNode(t, r.URL, "n1")
		ref := originate(t, n, map[string]any{"number": "15551230015", "line_group": []string{"g1"}, "destination": dest("8888")})
		c := cdrsFor(t, r, ref, 1, 15*time.Second)[0]
		if c.SIPCode != 403 || c.Disposition != "FAILED" || c.HangupCause != "CALL_REJECTED" {
			t.Fatalf("cdr: %+v", c)
		}
	})
}

// A destination missing from the dialplan ends the answered call with a
// CDR that says why.
func TestMissingDestination(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230006", "line_group": []string{"g1"}, "destination": dest("9999")})
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "FAILED" || c.Answer == nil || c.HangupCause != "NO_ROUTE_DESTINATION" ||
		!strings.Contains(c.Variables["redial_reason"], "no entry default:9999 in cti_dialplan@default") {
		t.Fatalf("cdr: %+v", c)
	}
	waitSipp(t, carrier, 5*time.Second) // got our BYE
}

// Bad API requests get 400 naming the field.
func TestOriginateValidation(t *testing.T) {
	r := testenv.StartRedis(t)
	n := startNode(t, r.URL, "n1")
	cases := []struct {
		body any
		want string
	}{
		{`{"number": 5}`, "number: want string or array"},
		{`{"number": "1", "line_group": ["g"], "destination": {"extension": "1"}, "numbr": 1}`, "numbr: unknown field"},
		{`{"number": "1", "line_group": ["g"]}`, "destination.extension: required"},
		{`{"number": "1", "destination": {"extension": "1"}}`, "line_group: required"},
		{`{"number": "1;x", "line_group": ["g"], "destination": {"extension": "1"}}`, `number: "1;x": character`},
		{`{"number": "1", "line_group": ["g"], "destination": {"extension": 1}}`, "destination: extension: want string"},
		{`{"number": "1", "line_group": ["g"], "destination": {"extension": "1"}, "variables": {"a": {}}}`, "variables: a: want string"},
		{`{not json`, "body: malformed JSON"},
	}
	for _, c := range cases {
		code, out := n.post("/api/v1/calls", c.body)
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), c.want) {
			t.Errorf("%v: got %d %v, want 400 with %q", c.body, code, out, c.want)
		}
	}
}

// A malformed line is reported by key and field and skipped; the others
// keep working.
func TestMalformedLineIsReported(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "good", "g1", "sip:"+carrier.Addr, "")
	setLine(t, r, "bad", "g1", "sip:"+carrier.Addr, `,"limit":"ten"`)
	setDialplan(t, r, "default:broken", `{"type":"sip","uri":42}`)
	n := startNode(t, r.URL, "n1")
	var lines struct {
		Lines []struct {
			Name, Error string
		} `json:"lines"`
		Dialplan []struct {
			Key, Error string
		} `json:"dialplan"`
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		n.get("/api/v1/lines", &lines)
		if len(lines.Lines) != 2 {
			return fmt.Errorf("lines: %+v", lines.Lines)
		}
		return nil
	})
	if lines.Lines[0].Name != "bad" || !strings.Contains(lines.Lines[0].Error, `line "bad" in cti_line@default: params.limit`) || lines.Lines[1].Error != "" {
		t.Fatalf("lines: %+v", lines.Lines)
	}
	if len(lines.Dialplan) != 1 || !strings.Contains(lines.Dialplan[0].Error, `entry "default:broken" in cti_dialplan@default: uri: want string`) {
		t.Fatalf("dialplan: %+v", lines.Dialplan)
	}
	ref := originate(t, n, map[string]any{"number": "15551230007", "line_group": []string{"g1"}, "destination": dest("8888")})
	if c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]; c.Line != "good" || c.Disposition != "BUSY" {
		t.Fatalf("cdr: %+v", c)
	}
}

// DELETE hangs up a ringing call (CANCEL).
func TestDeleteHangsUpRingingCall(t *testing.T) {
	r := testenv.StartRedis(t)
	ring := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+ring.Addr, "")
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230008", "line_group": []string{"g1"}, "destination": dest("8888")})
	// Once it rings, DELETE sends CANCEL.
	testenv.WaitFor(t, 5*time.Second, func() error {
		var info map[string]any
		n.get("/api/v1/calls/"+ref, &info)
		if info["state"] != "ringing" {
			return fmt.Errorf("state %v", info["state"])
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/"+ref, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
	if c.Disposition != "CANCELLED" || c.HangupCause != "ORIGINATOR_CANCEL" {
		t.Fatalf("cdr: %+v", c)
	}
}

// The node answers OPTIONS (carriers ping trunks with it).
func TestOptionsAnswered(t *testing.T) {
	r := testenv.StartRedis(t)
	n := startNode(t, r.URL, "n1")
	s := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_options.xml"), Args: []string{"-m", "1"}, Remote: n.SIP.Addr("udp")})
	waitSipp(t, s, 10*time.Second)
}

// A line with transport tcp sends its INVITE over TCP.
func TestTCPLine(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1", "-t", "t1"}})
	setLine(t, r, "tcp", "g1", "sip:"+carrier.Addr, `,"transport":"tcp"`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230020", "line_group": []string{"g1"}, "destination": dest("8888")})
	if c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]; c.SIPCode != 486 || c.Disposition != "BUSY" {
		t.Fatalf("cdr: %+v", c)
	}
	waitSipp(t, carrier, 5*time.Second)
}

// The INVITE carries the caller ID variables in From and sip_h_* variables
// as headers; /metrics counts the call and /healthz reports Redis.
func TestInviteHeadersMetricsHealth(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1", "-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, `,"prefix":"00"`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230030", "line_group": []string{"g1"}, "destination": dest("8888"),
		"variables": map[string]string{"origination_caller_id_name": "Acme Sales", "sip_h_X-Campaign": "spring", "origination_caller_id_number": "999"}})
	cdrsFor(t, r, ref, 1, 10*time.Second)
	waitSipp(t, carrier, 5*time.Second)
	msgs := readSippMessages(t, carrier)
	for _, want := range []string{
		"INVITE sip:0015551230030@",            // line prefix
		`From: "Acme Sales" <sip:15550001111@`, // the line's caller ID number wins over the request's
		"X-Campaign: spring",
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("INVITE lacks %q:\n%.1500s", want, msgs)
		}
	}
	resp, err := http.Get(n.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`redial_calls_total{disposition="BUSY"} 1`, "redial_active_calls 0", "redial_line_channels_in_use"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var h map[string]any
	if code := n.get("/healthz", &h); code != 200 || h["redis"] != "ok" {
		t.Fatalf("healthz: %d %v", code, h)
	}
	r.Stop()
	if code := n.get("/healthz", &h); code != http.StatusServiceUnavailable || h["status"] != "degraded" {
		t.Fatalf("healthz with Redis down: %d %v", code, h)
	}
}

// An INVITE from a line's address is routed through the dialplan context
// "public"; the same INVITE from elsewhere without credentials is
// challenged, and with wrong ones refused.
func TestInboundRouting(t *testing.T) {
	r := testenv.StartRedis(t)
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:5000", fmt.Sprintf(`{"type":"sip","uri":"sip:5000@%s"}`, destination.Addr))
	n := startNode(t, r.URL, "n1")
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: "", Args: []string{"-sn", "uac", "-m", "1", "-s", "5000", "-d", "500"}, Remote: n.SIP.Addr("udp")})
	waitSipp(t, caller, 15*time.Second)
	waitSipp(t, destination, 10*time.Second)
	var cdr map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		cdrs := campaignCDRs(t, r, "inbound")
		if len(cdrs) != 1 {
			return fmt.Errorf("%d inbound CDRs", len(cdrs))
		}
		cdr = cdrs[0]
		return nil
	})
	if cdr["disposition"] != "ANSWERED" || cdr["dial_number"] != "5000" || cdr["line"] != "trunk" {
		t.Fatalf("inbound cdr: %v", cdr)
	}

	// Unknown number: 404.
	miss := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_expect_code.xml"), Args: []string{"-m", "1", "-s", "6000", "-set", "expected", "404"}, Remote: n.SIP.Addr("udp")})
	waitSipp(t, miss, 10*time.Second)
}

// With no line at the caller's address, an INVITE without credentials gets
// a 407 challenge: no toll fraud.
func TestInboundFromUnknownAddressChallenged(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:192.0.2.10:5060", "")
	setDialplan(t, r, "public:5000", `{"type":"hangup"}`)
	n := startNode(t, r.URL, "n1")
	s := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_expect_code.xml"), Args: []string{"-m", "1", "-s", "5000", "-set", "expected", "407"}, Remote: n.SIP.Addr("udp")})
	waitSipp(t, s, 10*time.Second)
	if got := counterValue(t, n, "redial_inbound_calls_total"); got != 0 {
		t.Fatalf("an unauthenticated call was handled: %v", got)
	}
}

// A call that comes back to the node that placed it (a line pointing at
// the node itself, as a proxy that keeps Call-ID and tags would do) has
// both its legs on one node with one dialog ID: the ACK and BYE meant for
// the inbound leg must reach the inbound leg, and those for the outbound
// leg the outbound one. The far end answers and hangs up after a second;
// its BYE ends the inbound call, whose BYE ends the outbound call, whose
// BYE ends the parked destination: every SIPp ends cleanly.
func TestCallBackToItsOwnNode(t *testing.T) {
	r := testenv.StartRedis(t)
	far := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "1000"}})
	park := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	n := startNode(t, r.URL, "n1")
	setLine(t, r, "self", "gself", "sip:"+n.SIP.Addr("udp"), "")
	setDialplan(t, r, "public:7700", fmt.Sprintf(`{"type":"sip","uri":"sip:7700@%s"}`, far.Addr))
	setDialplan(t, r, "default:park", fmt.Sprintf(`{"type":"sip","uri":"sip:park@%s"}`, park.Addr))
	if err := n.Lines.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	ref := originate(t, n, map[string]any{"number": "7700", "line_group": []string{"gself"}, "destination": map[string]any{"extension": "park"}})
	waitSipp(t, far, 15*time.Second)
	waitSipp(t, park, 10*time.Second)
	out := cdrsFor(t, r, ref, 1, 10*time.Second)
	if out[0].Disposition != "ANSWERED" || out[0].Billsec < 1 {
		t.Fatalf("the outbound call: %+v", out[0])
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		in := campaignCDRs(t, r, "inbound")
		if len(in) != 1 || in[0]["disposition"] != "ANSWERED" {
			return fmt.Errorf("inbound CDRs %v", in)
		}
		return nil
	})
}
