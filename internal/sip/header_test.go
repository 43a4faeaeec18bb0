package sip

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A header value holding CR, LF or NUL, whatever its source, fails the
// dial before anything is sent, naming the header and its variable; a
// clean dial right after is the first thing the carrier receives, with
// its display name and user part kept inside their header.
func TestDialRefusesUnsafeHeaders(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	carrier := newRawPeer(t, e.Addr("udp"))
	target := "sip:15551230001@" + carrier.addr()
	cases := []struct {
		name string
		req  DialRequest
		want string
	}{
		{"sip_h_ value with CR/LF", DialRequest{Headers: map[string]string{"X-Test": "ok\r\nX-Evil: 1"}}, "sip_h_X-Test"},
		{"sip_h_ value with a bare LF", DialRequest{Headers: map[string]string{"X-Test": "ok\nX-Evil: 1"}}, "sip_h_X-Test"},
		{"sip_h_ value with NUL", DialRequest{Headers: map[string]string{"X-Test": "ok\x00X-Evil"}}, "contains NUL"},
		{"sip_h_ forging a Via", DialRequest{Headers: map[string]string{"Via": "SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKevil"}}, "sip_h_Via"},
		{"sip_h_ forging a Content-Length", DialRequest{Headers: map[string]string{"l": "0"}}, "sip_h_l"},
		{"sip_h_ name that is no token", DialRequest{Headers: map[string]string{"X-Evil: 1\r\nX": "v"}}, "not a valid header name"},
		{"caller ID name", DialRequest{FromName: "Bob\r\nVia: SIP/2.0/UDP 203.0.113.9"}, "origination_caller_id_name"},
		{"caller ID number", DialRequest{FromUser: "1555\r\nX-Evil: 1"}, "origination_caller_id_number"},
		{"From host", DialRequest{FromHost: "example.com>\r\nX-Evil: 1"}, "sip_from_host"},
		{"line username", DialRequest{Username: "alice\r\nX-Evil: 1", Password: "x"}, "line username"},
		{"Request-URI", DialRequest{Target: target + "\r\nX-Evil: 1"}, "Request-URI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req
			r.CallRef = "inject"
			if r.Target == "" {
				r.Target = target
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res := e.Dial(ctx, r)
			if res.Leg != nil || res.Code != 400 || res.TransportErr == nil || !strings.Contains(res.TransportErr.Error(), tc.want) ||
				!strings.Contains(res.TransportErr.Error(), "not sent") {
				t.Fatalf("dial: code %d, error %v; want 400 and an error naming %q", res.Code, res.TransportErr, tc.want)
			}
		})
	}

	// The control dial: the first datagram the carrier gets is its INVITE.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan DialResult, 1)
	go func() {
		done <- e.Dial(ctx, DialRequest{CallRef: "clean", Target: target, FromUser: "15#5", FromName: `Bo"b \`,
			Headers: map[string]string{"X-Control": "ok"}, RingTimeout: 30 * time.Second})
	}()
	got, err := carrier.recv(10 * time.Second)
	cancel()
	<-done
	if err != nil {
		t.Fatalf("the clean INVITE did not arrive: %v", err)
	}
	if !strings.HasPrefix(got, "INVITE sip:15551230001@") || !strings.Contains(got, "\r\nX-Control: ok\r\n") {
		t.Fatalf("first datagram is not the clean INVITE:\n%s", got)
	}
	if strings.Contains(got, "X-Evil") || strings.Contains(got, "203.0.113.9") {
		t.Fatalf("a refused header reached the wire:\n%s", got)
	}
	if from := responseHeader(got, "From"); !strings.HasPrefix(from, `"Bo\"b \\" <sip:15%235@127.0.0.1>;tag=`) {
		t.Fatalf("From %q: display name or user part not escaped", from)
	}
}

func TestEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"15551230001": "15551230001", "+4930*1#": "+4930*1%23", "a@b": "a%40b", "a>b c": "a%3Eb%20c",
		"%23": "%23", "%2": "%252", "x;y=z?": "x;y=z?",
	} {
		if got := escapeUser(in); got != want {
			t.Errorf("escapeUser(%q) = %q, want %q", in, got, want)
		}
	}
	if got := quoteDisplayName(`a"b\c`); got != `a\"b\\c` {
		t.Errorf("quoteDisplayName = %q", got)
	}
}
