package sip

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"redial/internal/media"
)

// Inbound is an INVITE received by the node, before it is answered or
// rejected. Its handler must end with Answer or Reject: sipgo ends the
// transaction when the handler returns.
type Inbound struct {
	e      *Engine
	Req    *gosip.Request
	tx     gosip.ServerTransaction
	dialog *sipgo.DialogServerSession
	// Offer is the caller's SDP.
	Offer media.RemoteMedia
	// OfferErr is set when the SDP is missing or unusable.
	OfferErr error
	// finished is set once a final response was sent.
	finished bool
}

// SourceIP is the address the INVITE came from (not what it claims).
func (in *Inbound) SourceIP() string { return sourceHost(in.Req.Source()) }

// Caller is the From user, Dialed the Request-URI user.
func (in *Inbound) Caller() string { return in.Req.From().Address.User }

// Dialed is the number the caller dialed (Request-URI user).
func (in *Inbound) Dialed() string { return in.Req.Recipient.User }

// CallID is the SIP Call-ID.
func (in *Inbound) CallID() string { return in.Req.CallID().Value() }

// newInbound wraps an initial INVITE.
func (e *Engine) newInbound(req *gosip.Request, tx gosip.ServerTransaction) (*Inbound, error) {
	dua := e.dlg[strings.ToLower(req.Transport())]
	if dua == nil {
		dua = e.dlg["udp"]
	}
	d, err := dua.ReadInvite(req, tx)
	if err != nil {
		return nil, err
	}
	in := &Inbound{e: e, Req: req, tx: tx, dialog: d}
	in.Offer, in.OfferErr = media.ParseSDP(req.Body())
	return in, nil
}

// Reject sends a final error response.
func (in *Inbound) Reject(code int, reason string) {
	in.finished = true
	if err := in.dialog.Respond(code, reason, nil); err != nil {
		in.e.log.Debug("sip: reject", "code", code, "error", err)
	}
	in.dialog.Close()
}

// Ringing sends 180.
func (in *Inbound) Ringing() { in.dialog.Respond(180, "Ringing", nil) }

// Cancelled returns a channel closed when the caller CANCELs the INVITE or
// its transaction ends before a final response: a handler that rings
// somebody before answering stops then. Call it once.
func (in *Inbound) Cancelled() <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(ch) }) }
	if !in.tx.OnCancel(func(*gosip.Request) { stop() }) {
		stop()
	}
	// The transaction's end needs no goroutine of ours: whoever selects on
	// the channel also selects on TxDone.
	return ch
}

// TxDone is closed when the INVITE's server transaction ends.
func (in *Inbound) TxDone() <-chan struct{} { return in.tx.Done() }

// nonceTTL bounds how long a digest challenge stays valid.
const nonceTTL = 5 * time.Minute

// Challenge answers 407 with a digest challenge. Nonces are stateless: a
// timestamp signed with the cluster's secret, so any retry within nonceTTL
// verifies on any node without remembering anything.
func (in *Inbound) Challenge(realm string) {
	in.finished = true
	chal := &digest.Challenge{Realm: realm, Nonce: in.e.newNonce(time.Now()), Algorithm: "MD5"}
	res := gosip.NewResponseFromRequest(in.dialog.InviteRequest, 407, "Proxy Authentication Required", nil)
	res.AppendHeader(gosip.NewHeader("Proxy-Authenticate", chal.String()))
	if err := in.dialog.WriteResponse(res); err != nil {
		in.e.log.Debug("sip: challenge", "error", err)
	}
	in.dialog.Close()
}

// newNonce returns "<unix seconds>.<signature>", signed with the cluster
// key once loaded, else with this process's key.
func (e *Engine) newNonce(now time.Time) string {
	key := e.localKey
	if k := e.clusterKey.Load(); k != nil {
		key = *k
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + sign(key, ts)
}

// checkNonce verifies that nonce was issued by a node of this cluster (or
// by this process before it had the cluster key) within nonceTTL of now.
func (e *Engine) checkNonce(nonce string, now time.Time) error {
	ts, sig, ok := strings.Cut(nonce, ".")
	if !ok {
		return errors.New("nonce not issued by this cluster")
	}
	valid := hmac.Equal([]byte(sig), []byte(sign(e.localKey, ts)))
	if k := e.clusterKey.Load(); k != nil && !valid {
		valid = hmac.Equal([]byte(sig), []byte(sign(*k, ts)))
	}
	if !valid {
		return errors.New("nonce not issued by this cluster")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)) > nonceTTL {
		return errors.New("nonce expired")
	}
	return nil
}

func sign(key []byte, s string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))[:24]
}

// secretFirstTry bounds Run's first load of the cluster secret, so a Redis
// that hangs delays the listeners only this long (a refused connection
// fails at once).
const secretFirstTry = time.Second

// Retry pacing of the cluster secret while Redis is unreachable.
const (
	secretRetryMin = 100 * time.Millisecond
	secretRetryMax = 5 * time.Second
)

// loadSecret fetches the cluster's digest secret once, waiting at most
// timeout, and puts it in use.
func (e *Engine) loadSecret(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k, err := e.secretFn(ctx)
	if err != nil {
		return fmt.Errorf("sip: cluster digest secret: %w", err)
	}
	if len(k) == 0 {
		return errors.New("sip: cluster digest secret: empty")
	}
	k = append([]byte(nil), k...)
	e.clusterKey.Store(&k)
	e.log.Info("sip: digest nonces signed with the cluster secret")
	return nil
}

// startSecret loads the cluster secret before the node takes calls; when
// that fails it says so once and returns false, and the caller retries in
// the background with retrySecret.
func (e *Engine) startSecret(ctx context.Context) bool {
	err := e.loadSecret(ctx, secretFirstTry)
	if err != nil {
		e.log.Warn("sip: signing digest nonces with this node's own key until the cluster secret loads (a challenge answered to another node fails meanwhile)", "error", err)
	}
	return err == nil
}

// retrySecret keeps loading the cluster secret, backing off, until it
// succeeds or ctx ends.
func (e *Engine) retrySecret(ctx context.Context) {
	delay := secretRetryMin
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.loadSecret(ctx, secretRetryMax)
		if err == nil {
			return
		}
		e.log.Debug("sip: cluster digest secret still not available", "error", err, "retry_in", min(2*delay, secretRetryMax))
		delay = min(2*delay, secretRetryMax)
		t.Reset(delay)
	}
}

// ErrNoCredentials means the INVITE carried no Proxy-Authorization or
// Authorization header.
var ErrNoCredentials = errors.New("no credentials")

// ErrAuthBlocked means the request's source address, or the user it
// claims, failed digest authentication too often lately (see AuthLimits):
// it is refused without checking anything and must be answered 403. The
// engine logs once when a block begins; callers should not log each
// refused request.
var ErrAuthBlocked = errors.New("digest authentication blocked after repeated failures")

// VerifyDigest checks the INVITE's digest credentials against password(user)
// and returns the authenticated user (see Engine.VerifyRequestDigest).
func (in *Inbound) VerifyDigest(realm string, password func(user string) (string, bool)) (string, error) {
	return in.e.VerifyRequestDigest(in.Req, realm, password)
}

// VerifyRequestDigest checks a request's digest credentials (INVITE,
// REGISTER) against password(user) and returns the authenticated user.
// Failures are counted per source address and per user; while either is
// blocked the request fails with ErrAuthBlocked before any check, even
// with the right password or with no credentials at all.
func (e *Engine) VerifyRequestDigest(req *gosip.Request, realm string, password func(user string) (string, bool)) (string, error) {
	source := sourceHost(req.Source())
	if e.auth.blocked(source, "") {
		return "", ErrAuthBlocked
	}
	h := req.GetHeader("Proxy-Authorization")
	if h == nil {
		h = req.GetHeader("Authorization")
	}
	if h == nil {
		return "", ErrNoCredentials
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return "", e.authFailed(source, "", false, fmt.Errorf("sip: credentials: %w", err))
	}
	if e.auth.blocked("", cred.Username) {
		return "", ErrAuthBlocked
	}
	// A nonce from another cluster, or expired, says nothing about the
	// password and is not counted: a node that cannot load the cluster
	// secret must not get a trunk blocked.
	if err := e.checkNonce(cred.Nonce, time.Now()); err != nil {
		return "", fmt.Errorf("sip: credentials of %s: %w", quoteShort(cred.Username), err)
	}
	pw, ok := password(cred.Username)
	if !ok {
		return "", e.authFailed(source, cred.Username, false, fmt.Errorf("sip: credentials: unknown user %s", quoteShort(cred.Username)))
	}
	want, err := digest.Digest(&digest.Challenge{Realm: realm, Nonce: cred.Nonce, Algorithm: "MD5"},
		digest.Options{Method: req.Method.String(), URI: cred.URI, Username: cred.Username, Password: pw})
	if err != nil {
		return "", e.authFailed(source, cred.Username, true, fmt.Errorf("sip: credentials: %w", err))
	}
	if !hmac.Equal([]byte(want.Response), []byte(cred.Response)) {
		return "", e.authFailed(source, cred.Username, true, fmt.Errorf("sip: credentials: wrong password for %s", quoteShort(cred.Username)))
	}
	return cred.Username, nil
}

// authFailed counts a refused credential and logs it, rate limited (a
// guesser chooses how often this runs), and returns err.
func (e *Engine) authFailed(source, user string, knownUser bool, err error) error {
	e.auth.failed(source, user, knownUser)
	e.noisy.Info("sip: digest authentication failed", "source", source, "error", err)
	return err
}

// sourceHost is the host of a "host:port" source address.
func sourceHost(source string) string {
	host, _, err := net.SplitHostPort(source)
	if err != nil {
		return source
	}
	return host
}

// answerCodecs is what an inbound call may negotiate. telephone-event is
// in it so that a caller's RFC 4733 keys are answered and heard (on the
// payload type the caller offered): without it an IVR cannot hear a desk
// phone's keypad and a bridge cannot pass its keys on.
var answerCodecs = []media.Codec{media.PCMU, media.PCMA, media.TelephoneEvent}

// Answer negotiates a codec from the offer (PCMU, PCMA) and, when offered,
// telephone-event with the offer's payload type; opens an RTP session that
// decodes RFC 4733 on that payload type; answers 200 with SDP and waits for
// the ACK.
func (in *Inbound) Answer(ctx context.Context, callRef string) (*Leg, error) {
	e := in.e
	if in.OfferErr != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("sip: call %s: offer: %w", callRef, in.OfferErr)
	}
	codec, dtmf, err := media.Negotiate(in.Offer, answerCodecs)
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("sip: call %s: %w", callRef, err)
	}
	sess, err := media.NewSession(e.mediaBindIP(), e.ports)
	if err != nil {
		in.Reject(503, "Service Unavailable")
		return nil, fmt.Errorf("sip: call %s: rtp: %w", callRef, err)
	}
	sess.SetClock(e.clock)
	sess.SetRemote(in.Offer.Addr)
	sess.SetCodec(codec)
	sess.SetDTMF(dtmf)
	codecs := []media.Codec{codec}
	if dtmf != nil {
		codecs = append(codecs, *dtmf)
	}
	answer := media.BuildSDP(media.SDPOffer{IP: e.cfg.PublicIP, Port: sess.LocalPort(), Codecs: codecs})
	d := in.dialog
	leg := &Leg{e: e, CallRef: callRef, CallID: in.CallID(), Media: sess, Codec: codec, DTMF: dtmf,
		done: make(chan struct{}), id: legKey(false, d.ID), bye: d.Bye, readBye: d.ReadBye, ack: d.ReadAck, localSDP: answer}
	confirmed := make(chan struct{})
	d.OnState(func(s gosip.DialogState) {
		if s == gosip.DialogStateConfirmed {
			select {
			case <-confirmed:
			default:
				close(confirmed)
			}
		}
	})
	e.addLeg(leg.id, leg)
	if err := d.RespondSDP(answer); err != nil {
		leg.end()
		return nil, fmt.Errorf("sip: call %s: answer: %w", callRef, err)
	}
	in.finished = true
	t := time.NewTimer(64 * gosip.T1)
	defer t.Stop()
	select {
	case <-confirmed:
	case <-leg.done:
		return nil, fmt.Errorf("sip: call %s: caller hung up before ACK", callRef)
	case <-t.C:
		leg.Hangup(context.Background())
		return nil, fmt.Errorf("sip: call %s: no ACK for 200", callRef)
	case <-ctx.Done():
		leg.Hangup(context.Background())
		return nil, ctx.Err()
	}
	return leg, nil
}

// newSecret makes this process's own nonce key, used until the cluster's
// is loaded.
func newSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}
