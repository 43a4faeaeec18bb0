package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"redial/internal/media"
	"redial/internal/store"
	"redial/internal/testenv"
)

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startEngine runs an engine on a free loopback UDP port until the test
// ends.
func startEngine(t testing.TB, secret func(context.Context) ([]byte, error), h InviteHandler) *Engine {
	t.Helper()
	return startEngineWith(t, engineOpts{deps: Deps{OnInvite: h, Secret: secret}})
}

// hasClusterKey reports whether the engine signs with the cluster secret.
func (e *Engine) hasClusterKey() bool { return e.clusterKey.Load() != nil }

// newTestClient is a SIP UAC of the test's on loopback.
func newTestClient(t testing.TB) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testOffer = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"

func newInvite(target string) *gosip.Request {
	var uri gosip.Uri
	if err := gosip.ParseUri("sip:7100@"+target, &uri); err != nil {
		panic(err)
	}
	req := gosip.NewRequest(gosip.INVITE, uri)
	req.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "caller", Host: "127.0.0.1"}})
	req.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(testOffer))
	return req
}

// trunkAuth is what call.HandleInbound does with a caller from an unknown
// address: challenge without credentials, 403 with bad ones; an accepted
// caller is reported on ok and, having no route here, gets 404.
func trunkAuth(node string, ok chan<- string, refused chan<- error) InviteHandler {
	return func(in *Inbound) {
		user, err := in.VerifyDigest("redial", func(u string) (string, bool) { return "s3cret", u == "trunk" })
		switch {
		case errors.Is(err, ErrNoCredentials):
			in.Challenge("redial")
		case err != nil:
			refused <- fmt.Errorf("%s: %w", node, err)
			in.Reject(403, "Forbidden")
		default:
			ok <- node + ":" + user
			in.Reject(404, "Not Found")
		}
	}
}

func storeSecret(r *testenv.Redis) func(context.Context) ([]byte, error) {
	return store.NewWithClient(r.Client, store.Config{}).DigestSecret
}

// A nonce one node issues verifies on another node sharing its Redis, and
// not on a node of another cluster.
func TestNonceVerifiesOnAnotherNode(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startEngine(t, storeSecret(r), nil)
	b := startEngine(t, storeSecret(r), nil)
	other := startEngine(t, storeSecret(testenv.StartRedis(t)), nil)
	now := time.Now()
	nonce := a.newNonce(now)
	if err := b.checkNonce(nonce, now.Add(time.Minute)); err != nil {
		t.Fatalf("node B refused node A's nonce %s: %v", nonce, err)
	}
	if err := a.checkNonce(nonce, now); err != nil {
		t.Fatalf("node A refused its own nonce: %v", err)
	}
	if err := other.checkNonce(nonce, now); err == nil {
		t.Fatal("a node of another cluster accepted the nonce")
	}
	if err := b.checkNonce(nonce, now.Add(nonceTTL+time.Second)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("nonce older than %v: err = %v, want expired", nonceTTL, err)
	}
	ts, _, _ := strings.Cut(nonce, ".")
	if err := b.checkNonce(ts+".000000000000000000000000", now); err == nil {
		t.Fatal("a forged signature was accepted")
	}
}

// A 407 from node A answered to node B (a load balancer sent the retry
// elsewhere) is accepted, with real SIP over UDP: the authenticated INVITE
// reaches the routing step (404 here), not 403.
func TestChallengeFromOneNodeAnsweredToAnother(t *testing.T) {
	r := testenv.StartRedis(t)
	ok := make(chan string, 4)
	refused := make(chan error, 4)
	a := startEngine(t, storeSecret(r), trunkAuth("A", ok, refused))
	b := startEngine(t, storeSecret(r), trunkAuth("B", ok, refused))
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	req := newInvite(a.Addr("udp"))
	res, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("INVITE to A: %v", err)
	}
	if res.StatusCode != 407 {
		t.Fatalf("A answered %d, want 407", res.StatusCode)
	}
	h := res.GetHeader("Proxy-Authenticate")
	if h == nil {
		t.Fatal("407 without Proxy-Authenticate")
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: req.Recipient.String(), Username: "trunk", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}

	// The retry: same Call-ID, next CSeq, new branch, sent to B.
	retry := req.Clone()
	retry.RemoveHeader("Via")
	retry.CSeq().SeqNo++
	retry.AppendHeader(gosip.NewHeader("Proxy-Authorization", cred.String()))
	retry.SetDestination(b.Addr("udp"))
	res, err = c.Do(ctx, retry, sipgo.ClientRequestAddVia)
	if err != nil {
		t.Fatalf("authenticated INVITE to B: %v", err)
	}
	select {
	case who := <-ok:
		if who != "B:trunk" {
			t.Fatalf("accepted by %s, want B:trunk", who)
		}
	case err := <-refused:
		t.Fatalf("B refused A's challenge answer (%d): %v", res.StatusCode, err)
	default:
		t.Fatalf("B answered %d and its handler accepted nothing", res.StatusCode)
	}
	if res.StatusCode != 404 {
		t.Fatalf("B answered %d, want 404 (authenticated, no route)", res.StatusCode)
	}

	// A wrong password is still refused on B.
	bad, _ := digest.Digest(chal, digest.Options{Method: "INVITE", URI: req.Recipient.String(), Username: "trunk", Password: "wrong"})
	retry = retry.Clone()
	retry.RemoveHeader("Via")
	retry.RemoveHeader("Proxy-Authorization")
	retry.CSeq().SeqNo++
	retry.AppendHeader(gosip.NewHeader("Proxy-Authorization", bad.String()))
	retry.SetDestination(b.Addr("udp"))
	if res, err = c.Do(ctx, retry, sipgo.ClientRequestAddVia); err != nil || res.StatusCode != 403 {
		t.Fatalf("wrong password on B: %v %v, want 403", res, err)
	}
}

// While Redis is down at start a node signs with its own key and keeps
// trying; once Redis is back it shares the cluster key, and a nonce it
// issued before the switch still verifies on it.
func TestSecretLoadsWhenRedisComesBack(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	a := startEngine(t, storeSecret(r), nil)
	if a.hasClusterKey() {
		t.Fatal("cluster key loaded with Redis down")
	}
	before := a.newNonce(time.Now())
	r.Restart(t)
	b := startEngine(t, storeSecret(r), nil)
	if !b.hasClusterKey() {
		t.Fatal("node B started with Redis up but has no cluster key")
	}
	testenv.WaitFor(t, 15*time.Second, func() error {
		if !a.hasClusterKey() {
			return errors.New("node A still signs with its own key")
		}
		return nil
	})
	if err := a.checkNonce(before, time.Now()); err != nil {
		t.Fatalf("node A refused a nonce it issued before the switch: %v", err)
	}
	if err := b.checkNonce(a.newNonce(time.Now()), time.Now()); err != nil {
		t.Fatalf("node B refused node A's nonce after the switch: %v", err)
	}
}

// An inbound INVITE offering telephone-event on 96 is answered with
// telephone-event on 96, and the leg's RTP session decodes RFC 4733 there.
func TestAnswerNegotiatesTelephoneEvent(t *testing.T) {
	legs := make(chan *Leg, 1)
	e := startEngine(t, nil, func(in *Inbound) {
		leg, err := in.Answer(context.Background(), "ref1")
		if err != nil {
			t.Errorf("answer: %v", err)
			return
		}
		legs <- leg
	})
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := newInvite(e.Addr("udp"))
	dua := &sipgo.DialogUA{Client: c, ContactHDR: *req.Contact()}
	d, err := dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("INVITE: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	res := d.InviteResponse
	rm, err := media.ParseSDP(res.Body())
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Codecs) != 1 || rm.Codecs[0] != media.PCMU || rm.DTMF == nil || rm.DTMF.PT != 96 {
		t.Fatalf("answer SDP codecs %v, telephone-event %v; want PCMU and telephone-event on 96:\n%s", rm.Codecs, rm.DTMF, res.Body())
	}
	var leg *Leg
	select {
	case leg = <-legs:
	case <-ctx.Done():
		t.Fatal("no leg after ACK")
	}
	defer leg.end()
	if leg.DTMF == nil || leg.DTMF.PT != 96 || leg.Media.DTMF() == nil || leg.Media.DTMF().PT != 96 {
		t.Fatalf("leg DTMF %v, session DTMF %v; want PT 96", leg.DTMF, leg.Media.DTMF())
	}

	// A key press sent on 96 is heard by whoever listens on the leg.
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	leg.Media.SetRemote(phone.LocalAddr().(*net.UDPAddr))
	digits := make(chan rune, 4)
	lctx, stop := context.WithCancel(context.Background())
	listening := make(chan error, 1)
	go func() {
		listening <- leg.Media.Listen(lctx, media.HandlerFuncs{OnDTMF: func(d rune, _ int) {
			select {
			case digits <- d:
			default: // later presses of the retries below
			}
		}})
	}()
	defer func() { stop(); <-listening }()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: leg.Media.LocalPort()}
	// Listen drops what was queued before it started, so press 8 again
	// (each press its own timestamp) until one is heard.
	press := uint32(0)
	testenv.WaitFor(t, 10*time.Second, func() error {
		press++
		for j := byte(0); j < 4; j++ {
			pkt := []byte{0x80, 96, 0, byte(4*press) + j, 0, 0, byte(press), 0, 0, 0, 0, 1, 8, 0x0a, 0, 160}
			if j == 3 {
				pkt[13] |= 0x80 // end
			}
			if _, err := phone.WriteToUDP(pkt, to); err != nil {
				return err
			}
		}
		select {
		case d := <-digits:
			if d != '8' {
				t.Fatalf("heard %q, want '8'", d)
			}
			return nil
		default:
			return errors.New("no RFC 4733 key heard on PT 96")
		}
	})
}
