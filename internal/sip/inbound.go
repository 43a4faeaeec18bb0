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
func (in *Inbound) SourceIP() string {
	host, _, err := net.SplitHostPort(in.Req.Source())
	if err != nil {
		return in.Req.Source()
	}
	return host
}

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

// nonceTTL bounds how long a digest challenge stays valid.
const nonceTTL = 5 * time.Minute

// Challenge answers 407 with a digest challenge. Nonces are stateless: a
// timestamp signed with the node's secret, so any retry within nonceTTL
// verifies without remembering anything.
func (in *Inbound) Challenge(realm string) {
	in.finished = true
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	chal := &digest.Challenge{Realm: realm, Nonce: ts + "." + in.e.sign(ts), Algorithm: "MD5"}
	res := gosip.NewResponseFromRequest(in.dialog.InviteRequest, 407, "Proxy Authentication Required", nil)
	res.AppendHeader(gosip.NewHeader("Proxy-Authenticate", chal.String()))
	if err := in.dialog.WriteResponse(res); err != nil {
		in.e.log.Debug("sip: challenge", "error", err)
	}
	in.dialog.Close()
}

func (e *Engine) sign(s string) string {
	m := hmac.New(sha256.New, e.secret)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))[:24]
}

// ErrNoCredentials means the INVITE carried no Proxy-Authorization or
// Authorization header.
var ErrNoCredentials = errors.New("no credentials")

// VerifyDigest checks the INVITE's digest credentials against password(user)
// and returns the authenticated user.
func (in *Inbound) VerifyDigest(realm string, password func(user string) (string, bool)) (string, error) {
	h := in.Req.GetHeader("Proxy-Authorization")
	if h == nil {
		h = in.Req.GetHeader("Authorization")
	}
	if h == nil {
		return "", ErrNoCredentials
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return "", fmt.Errorf("sip: credentials: %w", err)
	}
	ts, sig, ok := strings.Cut(cred.Nonce, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(in.e.sign(ts))) {
		return "", errors.New("sip: credentials: nonce not issued by this cluster node")
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)) > nonceTTL {
		return "", errors.New("sip: credentials: nonce expired")
	}
	pw, ok := password(cred.Username)
	if !ok {
		return "", fmt.Errorf("sip: credentials: unknown user %q", cred.Username)
	}
	want, err := digest.Digest(&digest.Challenge{Realm: realm, Nonce: cred.Nonce, Algorithm: "MD5"},
		digest.Options{Method: "INVITE", URI: cred.URI, Username: cred.Username, Password: pw})
	if err != nil {
		return "", fmt.Errorf("sip: credentials: %w", err)
	}
	if !hmac.Equal([]byte(want.Response), []byte(cred.Response)) {
		return "", fmt.Errorf("sip: credentials: wrong password for %q", cred.Username)
	}
	return cred.Username, nil
}

// Answer negotiates a codec from the offer (PCMU, PCMA), opens an RTP
// session, answers 200 with SDP and waits for the ACK.
func (in *Inbound) Answer(ctx context.Context, callRef string) (*Leg, error) {
	e := in.e
	if in.OfferErr != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("sip: call %s: offer: %w", callRef, in.OfferErr)
	}
	codec, dtmf, err := media.Negotiate(in.Offer, []media.Codec{media.PCMU, media.PCMA})
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
		done: make(chan struct{}), id: d.ID, bye: d.Bye, readBye: d.ReadBye, ack: d.ReadAck, localSDP: answer}
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
	e.addLeg(d.ID, leg)
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

// newSecret makes the key that signs this node's digest nonces.
func newSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}
