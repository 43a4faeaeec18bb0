package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/testenv"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// digestClient sends INVITEs answering one 407 challenge, from a chosen
// loopback address.
type digestClient struct {
	t    testing.TB
	c    *sipgo.Client
	host string
	to   string
	chal *digest.Challenge
	req  *gosip.Request
}

func newDigestClient(t testing.TB, host, to string) *digestClient {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host),
		sipgo.WithClientConnectionAddr(host+":"+strconv.Itoa(testenv.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	return &digestClient{t: t, c: c, host: host, to: to}
}

// invite sends the INVITE: without credentials the first time, then with
// the password given ("" for none) as a retry of it.
func (d *digestClient) invite(password string) int {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var req *gosip.Request
	if d.req == nil {
		req = newInvite(d.to)
		d.req = req
	} else {
		req = d.req.Clone()
		req.RemoveHeader("Via")
		req.RemoveHeader("Proxy-Authorization")
		req.CSeq().SeqNo++
		d.req = req
		if password != "" {
			cred, err := digest.Digest(d.chal, digest.Options{Method: "INVITE", URI: req.Recipient.String(), Username: "trunk", Password: password})
			if err != nil {
				d.t.Fatal(err)
			}
			req.AppendHeader(gosip.NewHeader("Proxy-Authorization", cred.String()))
		}
	}
	opts := []sipgo.ClientRequestOption{}
	if req.Via() == nil && req.CSeq() != nil {
		opts = append(opts, sipgo.ClientRequestAddVia)
	}
	res, err := d.c.Do(ctx, req, opts...)
	if err != nil {
		d.t.Fatalf("INVITE from %s: %v", d.host, err)
	}
	if res.StatusCode == 407 && d.chal == nil {
		chal, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
		if err != nil {
			d.t.Fatal(err)
		}
		d.chal = chal
	}
	return res.StatusCode
}

// Five wrong passwords from one address block it: the sixth attempt,
// with the right password, is refused with 403 without a digest check
// (the password is not even looked up), as is a request without
// credentials; another address is still served; the block is warned
// once; the metrics count failures and refusals.
func TestSixthGuessRefusedWithoutDigestCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	sink := &logSink{}
	var lookups atomic.Int32
	accepted := make(chan string, 4)
	e := startEngineWith(t, engineOpts{log: sink, deps: Deps{Registry: reg, OnInvite: func(in *Inbound) {
		user, err := in.VerifyDigest("redial", func(u string) (string, bool) {
			lookups.Add(1)
			return "s3cret", u == "trunk"
		})
		switch {
		case errors.Is(err, ErrNoCredentials):
			in.Challenge("redial")
		case err != nil:
			in.Reject(403, "Forbidden")
		default:
			accepted <- in.SourceIP() + ":" + user
			in.Reject(404, "Not Found")
		}
	}}})
	attacker := newDigestClient(t, "127.0.0.1", e.Addr("udp"))
	if code := attacker.invite(""); code != 407 {
		t.Fatalf("first INVITE: %d, want 407", code)
	}
	for i := 1; i <= 5; i++ {
		if code := attacker.invite("guess" + strconv.Itoa(i)); code != 403 {
			t.Fatalf("wrong password %d: %d, want 403", i, code)
		}
	}
	if n := lookups.Load(); n != 5 {
		t.Fatalf("%d password lookups for 5 guesses", n)
	}
	if code := attacker.invite("s3cret"); code != 403 {
		t.Fatalf("sixth attempt with the right password: %d, want 403 (blocked)", code)
	}
	if code := attacker.invite(""); code != 403 {
		t.Fatalf("blocked source without credentials: %d, want 403, not a challenge", code)
	}
	if n := lookups.Load(); n != 5 {
		t.Fatalf("the blocked source's attempts were checked: %d password lookups, want 5", n)
	}

	other := newDigestClient(t, "127.0.0.2", e.Addr("udp"))
	if code := other.invite(""); code != 407 {
		t.Fatalf("other source's first INVITE: %d, want 407", code)
	}
	if code := other.invite("s3cret"); code != 404 {
		t.Fatalf("other source with the right password: %d, want 404 (authenticated, no route)", code)
	}
	if got := <-accepted; got != "127.0.0.2:trunk" {
		t.Fatalf("accepted %s", got)
	}

	if got := testenv.MustMetric(t, reg, "redial_sip_auth_failures_total", nil); got != 5 {
		t.Errorf("redial_sip_auth_failures_total = %v, want 5", got)
	}
	if got := testenv.MustMetric(t, reg, "redial_sip_auth_blocked_total", nil); got != 2 {
		t.Errorf("redial_sip_auth_blocked_total = %v, want 2", got)
	}
	if n := strings.Count(sink.String(), "blocked for a source"); n != 1 {
		t.Errorf("%d block warnings, want 1:\n%s", n, sink.String())
	}
}

func newTestThrottle(clock *fakeClock, maxTracked int) (*authThrottle, *logSink) {
	sink := &logSink{}
	log := slog.New(slog.NewTextHandler(sink, nil))
	return newAuthThrottle(AuthLimits{Now: clock.Now, MaxTracked: maxTracked}, log), sink
}

// Failures count within their window; a block lasts its period; users are
// blocked after MaxUserFailures from any source; IPv6 counts per /64.
func TestAuthThrottleWindows(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	th, _ := newTestThrottle(clock, 0)

	for i := 0; i < 4; i++ {
		th.failed("192.0.2.1", "trunk", true)
	}
	clock.Add(61 * time.Second) // the window passed: the count starts over
	th.failed("192.0.2.1", "trunk", true)
	if th.blocked("192.0.2.1", "") {
		t.Fatal("blocked after 4 failures in one window and 1 in the next")
	}
	for i := 0; i < 4; i++ {
		th.failed("192.0.2.1", "trunk", true)
	}
	if !th.blocked("192.0.2.1", "") {
		t.Fatal("not blocked after 5 failures within 60 s")
	}
	clock.Add(5*time.Minute - time.Second)
	if !th.blocked("192.0.2.1", "") {
		t.Fatal("block ended before 5 minutes")
	}
	clock.Add(2 * time.Second)
	if th.blocked("192.0.2.1", "") {
		t.Fatal("still blocked after 5 minutes")
	}
	th.failed("192.0.2.1", "trunk", true)
	if th.blocked("192.0.2.1", "") {
		t.Fatal("one failure after a block blocks again")
	}

	// A user guessed from 20 addresses, once each.
	clock.Add(time.Hour)
	for i := 0; i < 20; i++ {
		if th.blocked(fmt.Sprintf("198.51.100.%d", i), "alice") {
			t.Fatalf("alice blocked after %d failures", i)
		}
		th.failed(fmt.Sprintf("198.51.100.%d", i), "alice", true)
	}
	if !th.blocked("203.0.113.1", "alice") || th.blocked("203.0.113.1", "bob") || th.blocked("198.51.100.1", "") {
		t.Fatal("want alice blocked from anywhere, bob and the sources not")
	}
	// Unknown users are not counted per user.
	for i := 0; i < 30; i++ {
		th.failed(fmt.Sprintf("198.51.100.%d", 100+i), "nobody", false)
	}
	if th.blocked("203.0.113.1", "nobody") {
		t.Fatal("an unknown user was blocked")
	}

	for i := 1; i <= 5; i++ {
		th.failed(fmt.Sprintf("2001:db8:1:2::%x", i), "", false)
	}
	if !th.blocked("2001:db8:1:2:ffff::1", "") || th.blocked("2001:db8:1:3::1", "") {
		t.Fatal("IPv6 failures not counted per /64")
	}
}

// An attacker rotating source addresses does not grow memory past the
// cap, and a source blocked before the flood stays blocked.
func TestAuthThrottleMemoryBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	th, log := newTestThrottle(clock, 1000)
	for i := 0; i < 5; i++ {
		th.failed("192.0.2.7", "", false)
	}
	for i := 0; i < 50_000; i++ {
		th.failed(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "", false)
		clock.Add(time.Millisecond)
	}
	if s, u := th.tracked(); s > 1000 || u > 1000 {
		t.Fatalf("tracking %d sources and %d users, cap 1000", s, u)
	}
	if !th.blocked("192.0.2.7", "") {
		t.Fatal("the blocked source was forgotten during the flood")
	}
	if n := strings.Count(log.String(), "blocked for a source"); n != 1 {
		t.Fatalf("%d block warnings, want 1", n)
	}
}
