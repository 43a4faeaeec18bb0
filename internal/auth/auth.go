// Package auth decides who may use a node's HTTP API: API tokens (only
// their SHA-256 digests live in Redis, cached here and refreshed cluster-wide
// within a second of a change), capabilities and domains, the loopback-only
// open mode, the Host allow-list against DNS rebinding, the refusal of
// cross-site requests that change state, and the browser pages' cookie
// sessions with their CSRF tokens.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/cluster"
	"redial/internal/store"
)

// Capabilities a route can require (DESIGN.md "APIs and access").
const (
	Rest      = store.CapabilityRest
	IVRAPI    = store.CapabilityIVRAPI
	Files     = store.CapabilityFiles
	Dashboard = store.CapabilityDashboard
)

// Config is what access depends on.
type Config struct {
	// Listen is the --http address as configured; open mode is possible
	// only when its host is loopback (127.0.0.0/8, ::1, localhost).
	Listen string
	// Domain is this node's --domain: a token for another domain is
	// refused.
	Domain string
	// Host is this node's --host name, accepted in the Host header.
	Host string
	// PublicURL is --http-public-url; its host is accepted in the Host
	// header.
	PublicURL string
	// AllowHosts are further names accepted in the Host header
	// (--http-allow-host).
	AllowHosts []string
	// Refresh is how often the token list is re-read besides change
	// notices (default 3s).
	Refresh time.Duration
	// ReadyWait is how long a request waits for the first token list
	// before it is answered 503 (default 5s).
	ReadyWait time.Duration
	// SessionTTL is how long a browser page session lasts after its
	// ?token= login (default 12h).
	SessionTTL time.Duration
}

// Deps are the Authenticator's collaborators.
type Deps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of the refusal log's rate limit and of session
	// expiry (default time.Now).
	Now func() time.Time
}

// Mode is how the node currently treats requests without a token.
type Mode int

const (
	// ModeLoading: the token list has not been read yet; requests wait.
	ModeLoading Mode = iota
	// ModeTokens: tokens exist; every request needs one.
	ModeTokens
	// ModeOpen: no token exists and --http is loopback; requests without a
	// token are served with every capability.
	ModeOpen
	// ModeClosed: no token exists and --http is not loopback; every
	// request is refused until a token is created.
	ModeClosed
)

func (m Mode) String() string {
	switch m {
	case ModeTokens:
		return "tokens"
	case ModeOpen:
		return "open"
	case ModeClosed:
		return "closed"
	}
	return "loading"
}

// Identity is who a request was authenticated as.
type Identity struct {
	// Name is the token's name; empty in open mode.
	Name         string
	Capabilities []string
	Domain       string
	// Digest is the token's digest; empty in open mode.
	Digest string
	// Open is true for a request served in open mode.
	Open bool
}

// Has reports whether the identity grants capability.
func (id Identity) Has(capability string) bool { return slices.Contains(id.Capabilities, capability) }

type ctxKey struct{}

// FromContext returns the identity Require put on a request's context.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Authenticator holds the cached token digests and checks requests.
type Authenticator struct {
	cfg      Config
	st       *store.Store
	log      *slog.Logger
	now      func() time.Time
	secret   secretCache
	loopback bool
	allowed  map[string]bool
	kickc    chan struct{}
	ready    chan struct{}
	refusals *refusalLog

	mu     sync.RWMutex
	tokens map[string]store.Token
	mode   Mode
	// sawTokens: a token existed at some point since start.
	sawTokens bool
	loadErr   bool
	badSeen   map[string]bool
	watchers  map[string]chan struct{} // digest ("" = open mode) -> closed when it ends

	mRefused *prometheus.CounterVec
	mOpen    prometheus.Gauge
	mTokens  prometheus.Gauge
}

// New builds an Authenticator; it serves nothing until Run has read the
// token list once.
func New(cfg Config, deps Deps) (*Authenticator, error) {
	if deps.Store == nil {
		return nil, errors.New("auth: no store")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 3 * time.Second
	}
	if cfg.ReadyWait <= 0 {
		cfg.ReadyWait = 5 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = defaultSessionTTL
	}
	if cfg.Domain == "" {
		return nil, errors.New("auth: no domain")
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("auth: listen address %q: %w", cfg.Listen, err)
	}
	a := &Authenticator{cfg: cfg, st: deps.Store, log: deps.Logger.With("component", "auth"), now: deps.Now,
		loopback: IsLoopbackHost(host), allowed: map[string]bool{"localhost": true},
		kickc: make(chan struct{}, 1), ready: make(chan struct{}), tokens: map[string]store.Token{},
		badSeen: map[string]bool{}, watchers: map[string]chan struct{}{},
		mRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_api_auth_refused_total",
			Help: "HTTP requests refused by access control, by reason (host, cross_site, content_type, no_token, unknown_token, bad_credential, capability, domain, csrf, not_ready)."}, []string{"reason"}),
		mOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_api_open",
			Help: "1 while the API is open (no token exists and --http is loopback)."}),
		mTokens: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_api_tokens", Help: "API tokens this node knows of."}),
	}
	a.refusals = newRefusalLog(a.log, deps.Now)
	for _, h := range append([]string{cfg.Host}, cfg.AllowHosts...) {
		if h = normalizeHost(h); h != "" {
			a.allowed[h] = true
		}
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("auth: public URL %q: want scheme://host[:port]", cfg.PublicURL)
		}
		a.allowed[normalizeHost(u.Hostname())] = true
	}
	for _, r := range []string{"host", "cross_site", "content_type", "no_token", "unknown_token", "bad_credential", "capability", "domain", "csrf", "not_ready"} {
		a.mRefused.WithLabelValues(r)
	}
	if deps.Registry != nil {
		for _, c := range []prometheus.Collector{a.mRefused, a.mOpen, a.mTokens} {
			if err := deps.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("auth: metrics: %w", err)
			}
		}
	}
	return a, nil
}

// IsLoopbackHost reports whether a listen host is loopback only: an address
// in 127.0.0.0/8, ::1, or the name localhost. An empty host, 0.0.0.0 and
// :: listen on every interface and are not.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// Run keeps the token cache current until ctx is cancelled: a read at
// start, one on every change notice (and after every resubscription, when
// notices may have been missed), and one every Refresh as a backstop. The
// session secret is re-read with it, so a secret deleted to end every
// session is replaced on every node within Refresh.
func (a *Authenticator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		cluster.Listen(ctx, a.st, []string{a.st.TokensChangedChannel()}, func(string, string) { a.kick() }, a.kick)
	}()
	t := time.NewTicker(a.cfg.Refresh)
	defer t.Stop()
	a.load(ctx)
	a.refreshSecret(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kickc:
		case <-t.C:
		}
		a.load(ctx)
		a.refreshSecret(ctx)
	}
}

func (a *Authenticator) kick() {
	select {
	case a.kickc <- struct{}{}:
	default:
	}
}

// Mode is the current mode.
func (a *Authenticator) Mode() Mode {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.mode
}

// Ready is closed once the token list has been read.
func (a *Authenticator) Ready() <-chan struct{} { return a.ready }

// Revoked returns a channel that is closed when id stops being valid: its
// token is revoked, or, for an open-mode identity, open mode ends. A
// long-lived connection (a WebSocket) watches it and closes itself.
func (a *Authenticator) Revoked(id Identity) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := id.Digest
	if id.Open {
		key = ""
	}
	if ch, ok := a.watchers[key]; ok {
		return ch
	}
	ch := make(chan struct{})
	valid := a.mode == ModeOpen
	if !id.Open {
		_, valid = a.tokens[key]
	}
	if !valid {
		close(ch)
		return ch
	}
	a.watchers[key] = ch
	return ch
}

// load reads the token list and swaps the cache. A failed read keeps the
// last list: tokens keep working through a Redis outage, and revoked ones
// stay refused.
func (a *Authenticator) load(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tokens, bad, err := a.st.TokenSet(lctx)
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if !a.loadErr {
			a.loadErr = true
			a.log.Warn("auth: cannot read the API tokens; keeping the last list read", "error", err)
		}
		return
	}
	if a.loadErr {
		a.loadErr = false
		a.log.Info("auth: API tokens readable again", "tokens", len(tokens))
	}
	for digest, reason := range bad {
		if !a.badSeen[digest] {
			a.badSeen[digest] = true
			a.log.Warn("auth: ignoring a malformed token record", "key", a.st.TokensKey(), "digest_prefix", digest[:min(12, len(digest))], "error", reason)
		}
	}
	a.tokens = tokens
	mode := ModeTokens
	// A malformed record still counts as a token: an operator who wrote
	// one meant to close the API, not to open it.
	if len(tokens)+len(bad) == 0 {
		mode = ModeClosed
		// Once tokens have existed, their disappearance (the last one
		// revoked, or a Redis that lost its data) closes the API until
		// the node restarts rather than opening it: open mode is for a
		// fresh development set-up, never a fallback.
		if a.loopback && !a.sawTokens {
			mode = ModeOpen
		}
	} else {
		a.sawTokens = true
	}
	for key, ch := range a.watchers {
		_, valid := tokens[key]
		if key == "" {
			valid = mode == ModeOpen
		}
		if !valid {
			close(ch)
			delete(a.watchers, key)
		}
	}
	prev := a.mode
	a.mode = mode
	a.mTokens.Set(float64(len(tokens)))
	if mode == ModeOpen {
		a.mOpen.Set(1)
	} else {
		a.mOpen.Set(0)
	}
	if prev == ModeLoading {
		close(a.ready)
	}
	if prev != mode {
		a.logMode(prev, mode, len(tokens))
	}
}

func (a *Authenticator) logMode(prev, mode Mode, n int) {
	switch mode {
	case ModeOpen:
		a.log.Warn("API open: no token exists and --http is loopback; create one with redial token create",
			"http", a.cfg.Listen, "was", prev.String())
	case ModeClosed:
		a.log.Warn("API closed: no token exists and --http is not loopback, so every API request gets 401; create one with redial token create",
			"http", a.cfg.Listen, "was", prev.String())
	case ModeTokens:
		if prev == ModeLoading {
			a.log.Info("auth: API tokens loaded; every API request needs one", "tokens", n)
			return
		}
		a.log.Warn("API access changed: a token exists now; every API request needs one", "tokens", n, "was", prev.String())
	}
}

// lookup returns the cached token of digest and the mode.
func (a *Authenticator) lookup(digest string) (store.Token, bool, Mode) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	t, ok := a.tokens[digest]
	return t, ok, a.mode
}
