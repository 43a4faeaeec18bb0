package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"redial/internal/logtext"
	"redial/internal/store"
)

// credential is how a request presented a token.
type credential int

const (
	credNone    credential = iota
	credHeader             // Authorization: Bearer
	credQuery              // ?token= on a WebSocket upgrade
	credSession            // the browser pages' session cookie
)

// Require wraps next so that it runs only for requests that pass every
// check, in this order:
//
//  1. Host: an IP literal, localhost, the --host name, the host of
//     --http-public-url or an --http-allow-host name (421 otherwise).
//  2. Cross-site: a request that changes state (POST, PUT, PATCH, DELETE)
//     or opens a WebSocket is refused (403) when Sec-Fetch-Site says
//     cross-site or same-site, or its Origin is not this Host, unless it
//     carries the token itself (a Bearer header or ?token=), which a page
//     of another site cannot send without CORS, which the node never
//     grants.
//  3. Token: a Bearer header, ?token= on WebSocket upgrades only, or the
//     browser pages' session cookie (see RequirePage), whose token is
//     checked as if presented. Without one, only open mode lets it
//     through. No or unknown token: 401 with WWW-Authenticate. Token
//     without capability or for another domain: 403.
//  4. CSRF: a request that changes state on the strength of the session
//     cookie must carry the session's CSRF token in X-CSRF-Token (403).
//  5. A body on a request that changes state must be application/json
//     (415), so an HTML form or a text/plain simple request never reaches
//     a handler.
//
// The identity is on the request's context (FromContext). capability must
// be one of rest, ivrapi, files, dashboard; anything else panics at route
// setup.
func (a *Authenticator) Require(capability string, next http.Handler) http.Handler {
	return a.RequireAny([]string{capability}, next)
}

// RequireAny is Require for a route that any one of capabilities opens
// (the ivrapi WebSocket serves both ivrapi and files tokens and checks
// each request against the identity's capabilities itself).
func (a *Authenticator) RequireAny(capabilities []string, next http.Handler) http.Handler {
	if len(capabilities) == 0 {
		panic("auth: RequireAny: no capability")
	}
	for _, capability := range capabilities {
		if !slices.Contains(store.TokenCapabilities, capability) {
			panic(fmt.Sprintf("auth: Require: unknown capability %q (want one of %s)", capability, strings.Join(store.TokenCapabilities, ", ")))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.checkHost(w, r) {
			return
		}
		upgrade := isWebSocketUpgrade(r)
		p, r, ok := a.credential(w, r, upgrade)
		if !ok {
			return
		}
		if (changesState(r.Method) || upgrade) && p.kind != credHeader && p.kind != credQuery {
			if why, bad := crossSite(r); bad {
				a.refuse(w, r, http.StatusForbidden, "cross_site", "cross-site request refused: "+why+
					"; send the token in an Authorization: Bearer header")
				return
			}
		}
		id, ok := a.identify(w, r, p.kind, p.digest, capabilities)
		if !ok {
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, id)
		if p.kind == credSession && !id.Open {
			if changesState(r.Method) && !csrfMatches(r.Header.Get(CSRFHeader), p.csrf) {
				a.refuse(w, r, http.StatusForbidden, "csrf", "missing or wrong "+CSRFHeader+
					" header: a page request that changes state must carry its session's CSRF token (GET /api/v1/dashboard/session)")
				return
			}
			ctx = context.WithValue(ctx, csrfKey{}, p.csrf)
		}
		if changesState(r.Method) && (r.ContentLength != 0 || r.Header.Get("Content-Type") != "") {
			ct := r.Header.Get("Content-Type")
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				a.refuse(w, r, http.StatusUnsupportedMediaType, "content_type",
					fmt.Sprintf("Content-Type %q: want application/json", logtext.Truncate(ct, 100)))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// CheckHost wraps next with the Host check alone, for routes that carry
// their own proof (signed file links, SIP digest over WebSocket) and for
// paths no route matches.
func (a *Authenticator) CheckHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.checkHost(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// HostAllowed reports whether a Host header names this node: an IP
// literal, localhost, the --host name, the host of --http-public-url or an
// --http-allow-host name, with any port. Names are what DNS rebinding
// plays with; an IP literal cannot be rebound.
func (a *Authenticator) HostAllowed(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if h == "" {
		return false
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Zone() == "" {
		return true
	}
	return a.allowed[normalizeHost(h)]
}

func (a *Authenticator) checkHost(w http.ResponseWriter, r *http.Request) bool {
	if a.HostAllowed(r.Host) {
		return true
	}
	a.refuse(w, r, http.StatusMisdirectedRequest, "host", fmt.Sprintf(
		"Host %q is not a name of this node (accepted: IP addresses, localhost, %s); add it with --http-allow-host",
		logtext.Truncate(r.Host, 100), strings.Join(a.allowedNames(), ", ")))
	return false
}

func (a *Authenticator) allowedNames() []string {
	var out []string
	for h := range a.allowed {
		if h != "localhost" {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

// presented is the credential a request carries.
type presented struct {
	kind   credential
	digest string
	// csrf is the CSRF token of a session cookie's session.
	csrf string
}

// credential finds the token a request presents. ok is false when the
// request was answered (a malformed credential).
func (a *Authenticator) credential(w http.ResponseWriter, r *http.Request, upgrade bool) (presented, *http.Request, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			a.refuse(w, r, http.StatusUnauthorized, "bad_credential", "Authorization: want Bearer <token>")
			return presented{}, r, false
		}
		return presented{kind: credHeader, digest: store.TokenDigest(tok)}, r, true
	}
	if q := r.URL.Query(); q.Has("token") {
		if !upgrade {
			a.refuse(w, r, http.StatusUnauthorized, "bad_credential",
				"?token= is accepted only on WebSocket upgrades (and on a page's first load); send Authorization: Bearer <token>")
			return presented{}, r, false
		}
		tok := q.Get("token")
		// The handler and anything it logs never see the token.
		q.Del("token")
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = q.Encode()
		r2.RequestURI = r2.URL.RequestURI()
		return presented{kind: credQuery, digest: store.TokenDigest(tok)}, r2, true
	}
	if s, ok := a.sessionOf(r); ok {
		return presented{kind: credSession, digest: s.digest, csrf: s.csrf}, r, true
	}
	return presented{}, r, true
}

// identify resolves the credential to an identity allowed capability.
func (a *Authenticator) identify(w http.ResponseWriter, r *http.Request, cred credential, digest string, capabilities []string) (Identity, bool) {
	if !a.waitReady(r) {
		a.refuse(w, r, http.StatusServiceUnavailable, "not_ready", "the API token list could not be read from Redis yet; try again")
		return Identity{}, false
	}
	tok, found, mode := a.lookup(digest)
	if cred == credSession && !found && mode == ModeOpen {
		// A cookie left from an earlier set-up must not lock a browser
		// out of a node that is open now.
		cred = credNone
	}
	if cred == credNone {
		switch mode {
		case ModeOpen:
			return Identity{Open: true, Domain: a.cfg.Domain, Capabilities: slices.Clone(store.TokenCapabilities)}, true
		case ModeClosed:
			a.refuse(w, r, http.StatusUnauthorized, "no_token", fmt.Sprintf(
				"no token: no token exists yet and --http %s is not a loopback address, so the API stays closed; create one with redial token create",
				a.cfg.Listen))
		default:
			a.refuse(w, r, http.StatusUnauthorized, "no_token", "no token: send Authorization: Bearer <token>")
		}
		return Identity{}, false
	}
	if !found && cred == credSession {
		a.refuse(w, r, http.StatusUnauthorized, "unknown_token",
			"session ended: the token it was opened with is revoked; open the page with ?token=<token> again")
		return Identity{}, false
	}
	if !found {
		a.refuse(w, r, http.StatusUnauthorized, "unknown_token", "unknown or revoked token")
		return Identity{}, false
	}
	if tok.Domain != a.cfg.Domain {
		a.refuse(w, r, http.StatusForbidden, "domain", fmt.Sprintf("token %q is for domain %q; this node serves domain %q",
			tok.Name, tok.Domain, a.cfg.Domain))
		return Identity{}, false
	}
	if !slices.ContainsFunc(capabilities, tok.Has) {
		quoted := make([]string, len(capabilities))
		for i, c := range capabilities {
			quoted[i] = strconv.Quote(c)
		}
		a.refuse(w, r, http.StatusForbidden, "capability", fmt.Sprintf("token %q lacks capability %s (it has %s)",
			tok.Name, strings.Join(quoted, " or "), strings.Join(tok.Capabilities, ", ")))
		return Identity{}, false
	}
	return Identity{Name: tok.Name, Capabilities: tok.Capabilities, Domain: tok.Domain, Digest: tok.Digest}, true
}

// waitReady holds a request that arrives before the first token list was
// read (the first moments after start), so it is neither wrongly refused
// nor wrongly let in.
func (a *Authenticator) waitReady(r *http.Request) bool {
	select {
	case <-a.ready:
		return true
	default:
	}
	t := time.NewTimer(a.cfg.ReadyWait)
	defer t.Stop()
	select {
	case <-a.ready:
		return true
	case <-r.Context().Done():
		return false
	case <-t.C:
		return false
	}
}

func changesState(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func isWebSocketUpgrade(r *http.Request) bool {
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// crossSite reports why a request comes from a page of another origin.
// Browsers send Sec-Fetch-Site (all current ones) and Origin (on every
// POST and WebSocket); a request with neither is not from a browser page.
func crossSite(r *http.Request) (string, bool) {
	switch site := strings.ToLower(strings.TrimSpace(r.Header.Get("Sec-Fetch-Site"))); site {
	case "cross-site", "same-site":
		return "Sec-Fetch-Site: " + site, true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "", false
	}
	if !sameOrigin(origin, r) {
		return fmt.Sprintf("Origin %q is not %q", logtext.Truncate(origin, 100), logtext.Truncate(r.Host, 100)), true
	}
	return "", false
}

// sameOrigin compares an Origin with the request's Host: the host names
// must match, and when Host carries a port, so must Origin's (explicit or
// its scheme's default). A Host without a port (behind a proxy that
// terminates TLS) is compared by name alone.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null" (sandboxed frames, file: pages)
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	if normalizeHost(strings.Trim(host, "[]")) != normalizeHost(u.Hostname()) {
		return false
	}
	if port == "" {
		return true
	}
	oport := u.Port()
	if oport == "" {
		oport = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return oport == port
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// refuse answers a refused request and counts it; the log line is rate
// limited per source address.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	a.mRefused.WithLabelValues(reason).Inc()
	a.refusals.note(r, code, reason, msg)
	if code == http.StatusUnauthorized {
		v := `Bearer realm="redial"`
		if reason == "unknown_token" || reason == "bad_credential" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	if code == http.StatusForbidden && reason == "capability" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="redial", error="insufficient_scope"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
