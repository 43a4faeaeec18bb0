package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// invites lists the times SIPp (traced) received an INVITE.
func invites(t *testing.T, s *testenv.Sipp) []time.Time {
	t.Helper()
	var out []time.Time
	for _, m := range sippReceived(t, s) {
		if strings.HasPrefix(m.line, "INVITE ") {
			out = append(out, m.at)
		}
	}
	return out
}

// campaignOnlyCDRs waits for n CDRs (not other notifications) of a
// campaign and returns them oldest first.
func campaignOnlyCDRs(t *testing.T, r *testenv.Redis, campaign string, n int) []map[string]any {
	t.Helper()
	var got []map[string]any
	testenv.WaitFor(t, 15*time.Second, func() error {
		raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
		if err != nil {
			return err
		}
		got = got[:0]
		for i := len(raw) - 1; i >= 0; i-- {
			var env cdrEnvelope
			if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
				return err
			}
			if env.Type == "cdr" && env.Payload["campaign_ref"] == campaign {
				got = append(got, env.Payload)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d CDRs for %s", len(got), n, campaign)
		}
		return nil
	})
	return got
}

// A campaign dials a number once; a disposition with callback_at 3 s
// ahead keeps the outcome with the call (GET /api/v1/calls/{ref} shows it,
// also after the node forgot the call), notifies integrators on
// <prefix>:campaigns, and has the number dialed exactly once more at that
// time. Hostile bodies are refused naming the field; an unknown call is
// 404.
func TestDispositionCallbackRedialsOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "3"}, Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:7400", `{"type":"hangup"}`)
	setTask(t, r, "cti_queue_dialer_task@template", "cb", `{"params":{"enable":true,"line_group":["g1"],"limit":1,"number_queue":"qcb","destination_extension":"7400"}}`, "")
	pushNumbers(t, r, "qcb", `{"params":{"number":"15557400001","contact_ref":"k-74"}}`)
	n := startNode(t, r.URL, "n1")

	first := campaignOnlyCDRs(t, r, "cb", 1)[0]
	ref, _ := first["call_ref"].(string)
	if first["disposition"] != "ANSWERED" || ref == "" {
		t.Fatalf("first CDR: %v", first)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := len(invites(t, carrier)); got != 1 {
			return fmt.Errorf("%d INVITEs at the carrier, want 1", got)
		}
		return nil
	})

	// Hostile or wrong bodies: 400 naming the field, nothing kept.
	now := time.Now()
	for _, tc := range []struct {
		body, field string
	}{
		{`{"note":"x"}`, "code"},
		{`{"code":""}`, "code"},
		{`{"code":"` + strings.Repeat("A", 65) + `"}`, "code"},
		{`{"code":"A\u0007B"}`, "code"},
		{`{"code":7}`, "code"},
		{`{"code":"OK","note":"` + strings.Repeat("n", 1025) + `"}`, "note"},
		{`{"code":"OK","agent":"1001"}`, "agent"},
		{`{"code":"OK","callback_at":"tomorrow"}`, "callback_at"},
		{`{"code":"OK","callback_at":{"at":1}}`, "callback_at"},
		{fmt.Sprintf(`{"code":"OK","callback_at":%d}`, now.Add(-time.Hour).Unix()), "callback_at"},
		{fmt.Sprintf(`{"code":"OK","callback_at":"%s"}`, now.AddDate(1, 1, 0).Format(time.RFC3339)), "callback_at"},
		{`{"code":"OK"} {"code":"OK"}`, "trailing"},
		{`[1]`, "body"},
	} {
		code, out := n.post("/api/v1/calls/"+ref+"/disposition", tc.body)
		if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.Contains(msg, tc.field) {
			t.Errorf("POST %.80s: %d %v, want 400 naming %s", tc.body, code, out, tc.field)
		}
	}
	if code, out := n.post("/api/v1/calls/no-such-ref/disposition", `{"code":"OK"}`); code != http.StatusNotFound ||
		!strings.Contains(fmt.Sprint(out["error"]), "no-such-ref") {
		t.Errorf("disposition of an unknown call: %d %v, want 404 naming it", code, out)
	}

	callbackAt := time.Now().Add(3 * time.Second)
	code, out := n.post("/api/v1/calls/"+ref+"/disposition", map[string]any{"code": "CALL_BACK", "note": "after lunch\nask for Ann",
		"callback_at": callbackAt.UTC().Format(time.RFC3339Nano)})
	if code != http.StatusOK {
		t.Fatalf("POST disposition: %d %v", code, out)
	}

	// The notification, on the campaigns list after the call's CDR.
	var note map[string]any
	for _, e := range campaignsEntries(t, r, ref) {
		if e.Type == "disposition" {
			note = e.Payload
		}
	}
	wantNote := map[string]any{"call_ref": ref, "contact_ref": "k-74", "campaign_ref": "cb", "code": "CALL_BACK",
		"note": "after lunch\nask for Ann", "ext": nil}
	if fmt.Sprint(note) != fmt.Sprint(wantNote) {
		t.Errorf("disposition notification = %v, want %v", note, wantNote)
	}

	// GET shows it with the call.
	var got struct {
		CallRef string `json:"call_ref"`
		Outcome *struct {
			Code       string    `json:"code"`
			Note       string    `json:"note"`
			CallbackAt time.Time `json:"callback_at"`
		} `json:"outcome"`
	}
	if n.get("/api/v1/calls/"+ref, &got); got.Outcome == nil || got.Outcome.Code != "CALL_BACK" ||
		!got.Outcome.CallbackAt.Equal(callbackAt.UTC().Truncate(time.Nanosecond)) {
		t.Errorf("GET call: %+v (outcome %+v)", got, got.Outcome)
	}

	// The number is dialed once more, at callback_at.
	var at []time.Time
	testenv.WaitFor(t, 10*time.Second, func() error {
		if at = invites(t, carrier); len(at) != 2 {
			return fmt.Errorf("%d INVITEs at the carrier, want 2", len(at))
		}
		return nil
	})
	if d := at[1].Sub(callbackAt); d < -100*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("callback dialed %v after callback_at, want within about a second", d)
	}
	second := campaignOnlyCDRs(t, r, "cb", 2)[1]
	if second["client_number"] != "15557400001" || second["contact_ref"] != "k-74" || second["call_ref"] == ref {
		t.Errorf("callback CDR: %v", second)
	}
	// Nothing is left that could dial it a third time.
	testenv.WaitFor(t, 5*time.Second, func() error {
		q := r.Client.LLen(ctx, "qcb").Val()
		z := r.Client.ZCard(ctx, "qcb:retry").Val()
		p := r.Client.LLen(ctx, "qcb:processing:n1").Val() + r.Client.LLen(ctx, "qcb:dialing:n1").Val()
		if q+z+p != 0 {
			return fmt.Errorf("queue %d, retry %d, processing %d", q, z, p)
		}
		return nil
	})
	if got := len(invites(t, carrier)); got != 2 {
		t.Errorf("%d INVITEs at the carrier, want 2", got)
	}

	// A later disposition replaces the outcome; the call record answers
	// GET once the node has forgotten the call (another node never knew it).
	if code, out := n.post("/api/v1/calls/"+ref+"/disposition", `{"code":"SALE"}`); code != http.StatusOK {
		t.Fatalf("second disposition: %d %v", code, out)
	}
	n2 := startNode(t, r.URL, "n2")
	var rec map[string]any
	if code := n2.get("/api/v1/calls/"+ref, &rec); code != http.StatusOK {
		t.Fatalf("GET call from a node that never had it: %d %v", code, rec)
	}
	outcome, _ := rec["outcome"].(map[string]any)
	if rec["state"] != "ended" || rec["node"] != "n1" || rec["number"] != "15557400001" || outcome["code"] != "SALE" {
		t.Errorf("call from its record: %v", rec)
	}
	b, _ := json.Marshal(rec)
	if strings.Contains(string(b), "CALL_BACK") {
		t.Errorf("the old outcome is still shown: %s", b)
	}
}
