package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/validate"
)

// The registrar takes agents' REGISTERs (UDP, TCP, WS, WSS), challenges
// them with a 401 digest in the realm of the node's domain, and keeps their
// bindings in a BindingStore shared by every node, so that any node can
// reach any agent through the node holding its binding. The request's host
// part is not checked (browsers name the server's address): a node
// registers the users of its own domain. Nonces are the engine's (signed
// with the cluster secret), so a challenge from one node can be answered to
// another, and failures are counted and blocked by the engine's
// authThrottle, as for inbound INVITEs.

// RegistrarConfig configures a Registrar. Zero durations take the
// defaults.
type RegistrarConfig struct {
	// Domain is the tenant whose users register here, and the digest
	// realm.
	Domain string
	// Node is this node's name, recorded in every binding it makes.
	Node string
	// MinExpires is the shortest registration accepted (default 60 s):
	// shorter ones are answered 423 with Min-Expires.
	MinExpires time.Duration
	// DefaultExpires applies when the REGISTER names no expiry (default
	// 600 s).
	DefaultExpires time.Duration
	// MaxExpires caps a registration (default 3600 s).
	MaxExpires time.Duration
}

// Users looks up agents' digest passwords. ok is false for an unknown or
// disabled user; err is for a lookup that failed (the REGISTER is then
// answered 500, and not counted as an authentication failure).
type Users interface {
	Password(ctx context.Context, ext string) (password string, ok bool, err error)
}

// Binding is one registration of an agent; see BindingStore. Its fields
// are those of the store's binding, so a store.Binding converts to it and
// back.
type Binding struct {
	// ID tells an extension's bindings apart: for ws/wss the Source, else
	// the Contact URI.
	ID  string
	Ext string
	// Node is the node that took the REGISTER.
	Node string
	// Transport is "udp", "tcp", "ws" or "wss".
	Transport string
	// Contact is the registered Contact URI.
	Contact string
	// Source is the "ip:port" the REGISTER came from; for ws/wss the
	// socket's remote address.
	Source string
	// UserAgent is the agent's User-Agent, cleaned and shortened.
	UserAgent string
	// Expires is when the binding ends unless renewed.
	Expires time.Time
	// Registered is when it was last written.
	Registered time.Time
}

// BindingStore keeps bindings where every node sees them (the store's
// bindings, behind an adapter).
type BindingStore interface {
	// PutBinding adds or renews a binding (same Ext and ID: replaced).
	PutBinding(ctx context.Context, b Binding) error
	// RemoveBinding removes one binding; a missing one is not an error.
	RemoveBinding(ctx context.Context, ext, id string) error
	// RemoveBindingsBySource removes the bindings node made from
	// transport and source and says how many.
	RemoveBindingsBySource(ctx context.Context, node, transport, source string) (int, error)
	// Bindings returns the bindings of ext that expire after now.
	Bindings(ctx context.Context, ext string, now time.Time) ([]Binding, error)
}

// Registration outcomes, the result label of
// redial_sip_registrations_total.
const (
	regOK         = "ok"          // bindings added or renewed, or listed
	regChallenged = "challenged"  // 401 sent
	regForbidden  = "forbidden"   // unknown user, disabled user, wrong password
	regBlocked    = "blocked"     // source or user blocked after repeated failures
	regBadRequest = "bad_request" // malformed REGISTER, or expiry too brief (423)
	regRemoved    = "removed"     // bindings removed (expires 0, Contact: *)
	regError      = "error"       // the store failed: 500
)

const (
	// registerTimeout bounds the store calls of one REGISTER, well within
	// the client's transaction timeout.
	registerTimeout = 5 * time.Second
	// maxContacts bounds the Contacts of one REGISTER.
	maxContacts = 8
	// maxUserBindings bounds one user's bindings; beyond it the ones
	// expiring soonest go (browser tabs opened and left).
	maxUserBindings = 16
	// maxUserAgentLen is what is kept of a User-Agent header, in bytes.
	maxUserAgentLen = 128
	// maxExtensionLen is the longest extension, as store.ValidateExtension
	// says (sip does not import store).
	maxExtensionLen = 32
)

// Registrar serves REGISTER for one engine (Engine.SetRegistrar).
type Registrar struct {
	cfg      RegistrarConfig
	users    Users
	bindings BindingStore
	log      *slog.Logger
	// now is the clock (tests).
	now func() time.Time

	mResults *prometheus.CounterVec
	// states serves agents' queue states over MESSAGE (agentstate.go).
	states  atomic.Pointer[AgentStates]
	mStates *prometheus.CounterVec

	mu sync.Mutex
	// local holds the bindings this node made, by "<ext> <id>", for the
	// redial_agents_registered gauge.
	local map[string]localBinding
}

// localBinding is what the gauge needs of a binding this node made.
type localBinding struct {
	transport, source string
	expires           time.Time
}

// NewRegistrar checks cfg and builds a registrar; its metrics go to reg
// when not nil.
func NewRegistrar(cfg RegistrarConfig, users Users, bindings BindingStore, logger *slog.Logger, reg *prometheus.Registry) (*Registrar, error) {
	if cfg.Domain == "" {
		return nil, errors.New("sip: registrar: no domain")
	}
	// The domain is the realm, written between quotes in WWW-Authenticate.
	if err := validate.Text("registrar domain", cfg.Domain, 255); err != nil || strings.ContainsAny(cfg.Domain, "\"\\") {
		return nil, fmt.Errorf("sip: registrar: domain %s cannot be a digest realm", quoteShort(cfg.Domain))
	}
	if cfg.Node == "" {
		return nil, errors.New("sip: registrar: no node name")
	}
	if users == nil || bindings == nil {
		return nil, errors.New("sip: registrar: users and bindings are required")
	}
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = 60 * time.Second
	}
	if cfg.DefaultExpires <= 0 {
		cfg.DefaultExpires = 600 * time.Second
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = 3600 * time.Second
	}
	if cfg.MinExpires > cfg.DefaultExpires || cfg.DefaultExpires > cfg.MaxExpires {
		return nil, fmt.Errorf("sip: registrar: want min %v <= default %v <= max %v expires", cfg.MinExpires, cfg.DefaultExpires, cfg.MaxExpires)
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Registrar{cfg: cfg, users: users, bindings: bindings, log: logger.With("component", "registrar"), now: time.Now,
		local: map[string]localBinding{},
		mResults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_sip_registrations_total",
			Help: "REGISTER requests by outcome: ok, challenged, forbidden, blocked, bad_request, removed, error."},
			[]string{"result"}),
	}
	for _, res := range []string{regOK, regChallenged, regForbidden, regBlocked, regBadRequest, regRemoved, regError} {
		r.mResults.WithLabelValues(res)
	}
	r.mStates = newAgentStateCounter()
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_agents_registered",
		Help: "Unexpired agent bindings made through this node."}, func() float64 { return float64(r.localCount()) })
	if reg != nil {
		if err := registerAll(reg, r.mResults, gauge, r.mStates); err != nil {
			return nil, fmt.Errorf("sip: registrar metrics: %w", err)
		}
	}
	return r, nil
}

// SetRegistrar makes the engine answer REGISTER with r. Without one,
// REGISTER is answered 405 Method Not Allowed (with Allow): the node takes
// no registrations, which is a matter of configuration, not of
// credentials, so a phone pointed at it must not take a 403 as a wrong
// password, and nothing is counted against its address.
func (e *Engine) SetRegistrar(r *Registrar) { e.registrar.Store(r) }

func (e *Engine) handleRegister(req *gosip.Request, tx gosip.ServerTransaction) {
	r := e.registrar.Load()
	if r == nil {
		res := gosip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(gosip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
		if err := tx.Respond(res); err != nil {
			e.log.Debug("sip: REGISTER response failed", "error", err)
		}
		return
	}
	r.serve(e, req, tx)
}

// SocketClosed removes the bindings this node made over a WebSocket (ws
// or wss) that closed, source being its remote "ip:port" (what
// Engine.OnWSClosed reports), and says how many there were: a socket's
// bindings cannot be reached any other way.
func (r *Registrar) SocketClosed(ctx context.Context, source string) (int, error) {
	r.mu.Lock()
	for k, b := range r.local {
		if (b.transport == "ws" || b.transport == "wss") && b.source == source {
			delete(r.local, k)
		}
	}
	r.mu.Unlock()
	total := 0
	for _, transport := range []string{"ws", "wss"} {
		n, err := r.bindings.RemoveBindingsBySource(ctx, r.cfg.Node, transport, source)
		total += n
		if err != nil {
			return total, fmt.Errorf("sip: registrar: bindings of socket %s: %w", source, err)
		}
	}
	if total > 0 {
		r.log.Debug("sip: registrar: socket closed, its bindings removed", "source", source, "bindings", total)
	}
	return total, nil
}

// localCount is the number of unexpired bindings this node made; expired
// ones are forgotten on the way.
func (r *Registrar) localCount() int {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, b := range r.local {
		if !b.expires.After(now) {
			delete(r.local, k)
		}
	}
	return len(r.local)
}

// regRequest is one REGISTER being served.
type regRequest struct {
	r   *Registrar
	e   *Engine
	req *gosip.Request
	tx  gosip.ServerTransaction
	ext string
	// results counts the outcome: redial_sip_registrations_total, or for
	// a MESSAGE about an agent's state, its own counter.
	results *prometheus.CounterVec
	// source and transport are where the REGISTER came from, not what it
	// claims.
	source, transport string
}

func (r *Registrar) serve(e *Engine, req *gosip.Request, tx gosip.ServerTransaction) {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	g := &regRequest{r: r, e: e, req: req, tx: tx, source: req.Source(), transport: strings.ToLower(req.Transport()), results: r.mResults}
	to := req.To()
	if to == nil {
		g.reply(400, "Bad Request", regBadRequest, nil)
		return
	}
	g.ext = to.Address.User
	if !g.authenticate(ctx) {
		return
	}
	g.update(ctx)
}

// reply sends a final response with extra headers and counts result.
func (g *regRequest) reply(code int, reason, result string, hdrs []gosip.Header) {
	g.results.WithLabelValues(result).Inc()
	res := gosip.NewResponseFromRequest(g.req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := g.tx.Respond(res); err != nil {
		g.e.log.Debug("sip: REGISTER response failed", "code", code, "error", err)
	}
}

// failed answers 500 after a store error; it is logged rate limited, as
// REGISTERs come as fast as agents send them.
func (g *regRequest) failed(err error) {
	g.e.noisy.Warn("sip: registrar: store failed", "ext", g.ext, "source", g.source, "error", err)
	g.reply(500, "Server Internal Error", regError, []gosip.Header{gosip.NewHeader("Retry-After", "5")})
}

// authenticate checks the digest credentials of the To user, answering
// and returning false unless they are right.
func (g *regRequest) authenticate(ctx context.Context) bool {
	e, realm := g.e, g.r.cfg.Domain
	hasCreds := g.req.GetHeader("Authorization") != nil || g.req.GetHeader("Proxy-Authorization") != nil
	var password string
	known := false
	// No lookup for a request without credentials (it is challenged) nor
	// from a blocked source (refused unchecked): neither costs Redis a
	// thing however many are sent.
	if hasCreds && validExtension(g.ext) && !e.auth.sourceBlocked(sourceHost(g.source)) {
		pw, ok, err := g.r.users.Password(ctx, g.ext)
		if err != nil {
			g.failed(fmt.Errorf("user %s: %w", quoteShort(g.ext), err))
			return false
		}
		password, known = pw, ok
	}
	// The digest username must be the To user: an agent registers itself
	// only. Any other username counts as an unknown user.
	_, err := e.VerifyRequestDigest(g.req, realm, func(user string) (string, bool) {
		return password, known && user == g.ext
	})
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrAuthBlocked):
		g.reply(403, "Forbidden", regBlocked, nil)
	case errors.Is(err, ErrNoCredentials):
		g.challenge(false)
	case g.badNonce():
		// A nonce expired or from before a secret change says nothing
		// about the password: challenge again, stale so that the agent
		// retries with the same password without asking anyone.
		g.challenge(true)
	default:
		g.reply(403, "Forbidden", regForbidden, nil)
	}
	return false
}

// badNonce reports whether the request's credentials carry a nonce this
// cluster did not issue lately (VerifyRequestDigest does not count those).
func (g *regRequest) badNonce() bool {
	h := g.req.GetHeader("Proxy-Authorization")
	if h == nil {
		h = g.req.GetHeader("Authorization")
	}
	if h == nil {
		return false
	}
	cred, err := digest.ParseCredentials(h.Value())
	return err == nil && g.e.checkNonce(cred.Nonce, time.Now()) != nil
}

// challenge answers 401 with a digest challenge, the nonce made as for
// inbound INVITEs (Inbound.Challenge).
func (g *regRequest) challenge(stale bool) {
	chal := &digest.Challenge{Realm: g.r.cfg.Domain, Nonce: g.e.newNonce(time.Now()), Algorithm: "MD5", Stale: stale}
	g.reply(401, "Unauthorized", regChallenged, []gosip.Header{gosip.NewHeader("WWW-Authenticate", chal.String())})
}

// contactChange is one Contact of a REGISTER: a binding to write, or to
// remove when expires is 0.
type contactChange struct {
	id, contact string
	expires     time.Duration
}

// update applies an authenticated REGISTER's Contacts and answers 200 with
// the user's bindings.
func (g *regRequest) update(ctx context.Context) {
	r := g.r
	if !validTransport(g.transport) {
		g.reply(400, "Unsupported Transport", regBadRequest, nil)
		return
	}
	headerExpires, hasExpires, err := expiresValue(g.req.GetHeader("Expires"))
	if err != nil {
		g.reply(400, "Bad Expires", regBadRequest, nil)
		return
	}
	var contacts []*gosip.ContactHeader
	for _, h := range g.req.GetHeaders("Contact") {
		c, ok := h.(*gosip.ContactHeader)
		if !ok {
			g.reply(400, "Bad Contact", regBadRequest, nil)
			return
		}
		contacts = append(contacts, c)
	}
	if len(contacts) > maxContacts {
		g.reply(400, "Too Many Contacts", regBadRequest, nil)
		return
	}
	now := r.now()
	for _, c := range contacts {
		if c.Address.Wildcard {
			// RFC 3261 10.3 step 6: "*" only alone and with Expires: 0.
			if len(contacts) != 1 || !hasExpires || headerExpires != 0 {
				g.reply(400, "Bad Wildcard Contact", regBadRequest, nil)
				return
			}
			g.removeSource(ctx, now)
			return
		}
	}

	var changes []contactChange
	tooBrief := false
	for _, c := range contacts {
		uri := c.Address.String()
		if err := validate.SIPURI("Contact", uri); err != nil {
			g.reply(400, "Bad Contact", regBadRequest, nil)
			return
		}
		exp := r.cfg.DefaultExpires
		if hasExpires {
			exp = headerExpires
		}
		for _, p := range c.Params {
			if strings.EqualFold(p.K, "expires") {
				if exp, err = parseExpires(p.V); err != nil {
					g.reply(400, "Bad Expires", regBadRequest, nil)
					return
				}
			}
		}
		if exp != 0 && exp < r.cfg.MinExpires {
			tooBrief = true
		}
		id := uri
		if g.transport == "ws" || g.transport == "wss" {
			id = g.source
		}
		changes = append(changes, contactChange{id: id, contact: uri, expires: min(exp, r.cfg.MaxExpires)})
	}
	if tooBrief {
		// RFC 3261 10.3 step 7: the whole request is refused.
		g.reply(423, "Interval Too Brief", regBadRequest,
			[]gosip.Header{gosip.NewHeader("Min-Expires", strconv.Itoa(int(math.Ceil(r.cfg.MinExpires.Seconds()))))})
		return
	}

	ua := ""
	if h := g.req.GetHeader("User-Agent"); h != nil {
		ua = cleanUserAgent(h.Value())
	}
	written, removed := map[string]bool{}, 0
	for _, ch := range changes {
		if ch.expires == 0 {
			if err := r.bindings.RemoveBinding(ctx, g.ext, ch.id); err != nil {
				g.failed(err)
				return
			}
			r.forget(g.ext, ch.id)
			removed++
			continue
		}
		b := Binding{ID: ch.id, Ext: g.ext, Node: r.cfg.Node, Transport: g.transport, Contact: ch.contact, Source: g.source,
			UserAgent: ua, Expires: now.Add(ch.expires), Registered: now}
		if err := r.bindings.PutBinding(ctx, b); err != nil {
			g.failed(err)
			return
		}
		r.remember(b)
		written[b.ID] = true
	}
	bs, err := r.bindings.Bindings(ctx, g.ext, now)
	if err != nil {
		g.failed(err)
		return
	}
	if bs, err = g.trim(ctx, bs, written); err != nil {
		g.failed(err)
		return
	}
	result := regOK
	if removed > 0 && len(written) == 0 {
		result = regRemoved
	}
	g.e.log.Debug("sip: registrar: REGISTER", "ext", g.ext, "transport", g.transport, "source", g.source,
		"written", len(written), "removed", removed, "bindings", len(bs))
	g.reply(200, "OK", result, contactHeaders(bs, now))
}

// removeSource serves "Contact: *" with Expires 0: every binding of the
// user made from this source and transport goes.
func (g *regRequest) removeSource(ctx context.Context, now time.Time) {
	r := g.r
	bs, err := r.bindings.Bindings(ctx, g.ext, now)
	if err != nil {
		g.failed(err)
		return
	}
	var left []Binding
	for _, b := range bs {
		if b.Source != g.source || b.Transport != g.transport {
			left = append(left, b)
			continue
		}
		if err := r.bindings.RemoveBinding(ctx, g.ext, b.ID); err != nil {
			g.failed(err)
			return
		}
		r.forget(g.ext, b.ID)
	}
	g.reply(200, "OK", regRemoved, contactHeaders(left, now))
}

// trim removes the user's bindings beyond maxUserBindings, those expiring
// soonest first, never one this REGISTER wrote, and returns the rest.
func (g *regRequest) trim(ctx context.Context, bs []Binding, written map[string]bool) ([]Binding, error) {
	if len(bs) <= maxUserBindings {
		return bs, nil
	}
	order := slices.Clone(bs)
	slices.SortFunc(order, func(a, b Binding) int { return a.Expires.Compare(b.Expires) })
	drop := map[string]bool{}
	for _, b := range order {
		if len(bs)-len(drop) <= maxUserBindings {
			break
		}
		if written[b.ID] {
			continue
		}
		if err := g.r.bindings.RemoveBinding(ctx, g.ext, b.ID); err != nil {
			return nil, err
		}
		g.r.forget(g.ext, b.ID)
		drop[b.ID] = true
	}
	g.e.noisy.Info("sip: registrar: too many bindings, the ones expiring soonest were removed", "ext", g.ext, "removed", len(drop))
	return slices.DeleteFunc(bs, func(b Binding) bool { return drop[b.ID] }), nil
}

func (r *Registrar) remember(b Binding) {
	r.mu.Lock()
	r.local[b.Ext+" "+b.ID] = localBinding{transport: b.Transport, source: b.Source, expires: b.Expires}
	r.mu.Unlock()
}

func (r *Registrar) forget(ext, id string) {
	r.mu.Lock()
	delete(r.local, ext+" "+id)
	r.mu.Unlock()
}

// contactHeaders lists bindings for a 200 OK, each with the seconds it has
// left. The URIs come from the store, so each is checked again before it
// goes into a header.
func contactHeaders(bs []Binding, now time.Time) []gosip.Header {
	var hdrs []gosip.Header
	for _, b := range bs {
		if validate.SIPURI("Contact", b.Contact) != nil {
			continue
		}
		left := int64(math.Ceil(b.Expires.Sub(now).Seconds()))
		hdrs = append(hdrs, gosip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.FormatInt(max(left, 1), 10)))
	}
	return hdrs
}

// expiresValue reads an Expires header; set is false when there is none.
func expiresValue(h gosip.Header) (d time.Duration, set bool, err error) {
	if h == nil {
		return 0, false, nil
	}
	d, err = parseExpires(h.Value())
	return d, err == nil, err
}

// parseExpires reads delta-seconds; values beyond any sensible maximum
// are kept as a large duration, which the caller clamps.
func parseExpires(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("bad expires %s", quoteShort(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 100 * 365 * 24 * time.Hour, nil
		}
		return 0, fmt.Errorf("bad expires %s", quoteShort(s))
	}
	return time.Duration(min(n, 100*365*24*3600)) * time.Second, nil
}

// validTransport reports whether a binding can record the transport.
func validTransport(t string) bool {
	return t == "udp" || t == "tcp" || t == "ws" || t == "wss"
}

// validExtension is store.ValidateExtension's rule: 1 to 32 characters
// of letters, digits, '_', '.', '+' and '-', not "." or "..". Anything
// else cannot be a user, and is not looked up.
func validExtension(ext string) bool {
	if ext == "" || len(ext) > maxExtensionLen || ext == "." || ext == ".." {
		return false
	}
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}

// cleanUserAgent keeps at most maxUserAgentLen bytes of printable text
// (control characters and invalid UTF-8 dropped), cut at a character.
func cleanUserAgent(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c == utf8.RuneError || c < 0x20 || c == 0x7f || c >= 0x80 && c < 0xa0 || c == '\u2028' || c == '\u2029' {
			continue
		}
		if b.Len()+utf8.RuneLen(c) > maxUserAgentLen {
			break
		}
		b.WriteRune(c)
	}
	return strings.TrimSpace(b.String())
}

// sourceBlocked reports whether source is blocked now, without counting
// a refusal (VerifyRequestDigest counts it when it refuses).
func (t *authThrottle) sourceBlocked(source string) bool {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sources.blocked(sourceKey(source), now)
}
