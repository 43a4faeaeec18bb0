package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"redial/internal/store"
)

// Browser page sessions (DESIGN.md "APIs and access"). An operator opens
// a page once with ?token=<token>; the node answers with a session cookie
// and sends the browser to the same address without the token. The cookie
// is
//
//	redial_session = "1.<token digest>.<expiry unix s>.<nonce>" "." base64url(HMAC-SHA256(secret, payload))
//
// signed with the cluster-wide secret of store.SessionSecret, so every
// node accepts it and a restart does not end it. It carries no rights of
// its own: the token it names is checked on every request like a presented
// one, so revoking the token ends its sessions. The CSRF token of a
// session is base64url(HMAC-SHA256(secret, "csrf|"+nonce)): the page reads
// it from the API and sends it back in X-CSRF-Token, which a page of
// another site cannot read nor forge.

// CSRFHeader is the request header a page request that changes state
// carries its session's CSRF token in.
const CSRFHeader = "X-CSRF-Token"

// SessionCookie is the name of the browser pages' session cookie.
const SessionCookie = "redial_session"

const (
	defaultSessionTTL = 12 * time.Hour
	// sessionVersion starts every payload, so a later format is told
	// apart rather than misread.
	sessionVersion = "1"
	// maxCookieLen bounds the work done on a cookie value: a valid one is
	// about 150 bytes.
	maxCookieLen = 512
	// secretRetry is how long a failed read of the session secret is not
	// repeated by requests, so an unreachable Redis costs each request
	// carrying a cookie nothing rather than a timeout.
	secretRetry = time.Second
	// secretTimeout bounds one read of the secret.
	secretTimeout = 2 * time.Second
)

// secretCache holds the session secret once read.
type secretCache struct {
	mu      sync.Mutex
	val     []byte
	loading chan struct{} // non-nil while a request reads the secret
	failed  time.Time     // last failed read by a request
	warned  bool          // a WARN about an unreadable secret was written
}

// session is a verified session cookie.
type session struct {
	digest string
	csrf   string
}

type csrfKey struct{}

// CSRF returns the CSRF token of the session that authenticated r, for the
// page to send back in X-CSRF-Token; "" when r was not authenticated by a
// session cookie (a Bearer token, open mode) and needs none. r must have
// passed Require or RequirePage.
func (a *Authenticator) CSRF(r *http.Request) string {
	v, _ := r.Context().Value(csrfKey{}).(string)
	return v
}

// RequirePage wraps a browser page (GET or HEAD of /, /agent/) so that it
// accepts ?token=<token> on its first load: the token is checked like a
// presented one for capability (401, 403 as usual), then the node sets the
// session cookie and answers 303 See Other to the same path and query
// without the token, so the token leaves the address bar and never reaches
// the handler or a log. Every other request is treated exactly as by
// Require(capability): a Bearer header, the session cookie, open mode, or
// 401.
func (a *Authenticator) RequirePage(capability string, next http.Handler) http.Handler {
	guarded := a.Require(capability, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || isWebSocketUpgrade(r) || !r.URL.Query().Has("token") {
			guarded.ServeHTTP(w, r)
			return
		}
		a.login(w, r, capability)
	})
}

// login opens a session for the ?token= of a page request.
func (a *Authenticator) login(w http.ResponseWriter, r *http.Request, capability string) {
	if !a.checkHost(w, r) {
		return
	}
	digest := store.TokenDigest(r.URL.Query().Get("token"))
	if _, ok := a.identify(w, r, credQuery, digest, []string{capability}); !ok {
		return
	}
	secret, err := a.sessionSecret(r.Context())
	if err != nil {
		a.refuse(w, r, http.StatusServiceUnavailable, "not_ready",
			"the session secret could not be read from Redis; try again (an Authorization: Bearer header works meanwhile)")
		return
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		a.refuse(w, r, http.StatusServiceUnavailable, "not_ready", "no randomness for a session: "+err.Error())
		return
	}
	exp := a.now().Add(a.cfg.SessionTTL).Unix()
	payload := strings.Join([]string{sessionVersion, digest, strconv.FormatInt(exp, 10),
		base64.RawURLEncoding.EncodeToString(nonce)}, ".")
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    payload + "." + sign(secret, payload),
		Path:     "/",
		MaxAge:   int(a.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		// Behind a proxy that terminates TLS the node cannot tell; a
		// Secure cookie on plain http would never come back.
		Secure: r.TLS != nil,
	})
	loc := withoutToken(r.URL)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("Sec-Fetch-Site")), "cross-site") {
		// A link followed from another site (a chat message, a wiki): a
		// browser withholds SameSite=Strict cookies from the whole redirect
		// chain of that navigation, so a 303 would land on a 401. A
		// navigation started by a page of this node carries the cookie.
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			e := html.EscapeString(loc)
			fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=%s"><title>redial</title><a href="%s">Continue</a>`+"\n", e, e)
		}
		return
	}
	h.Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
}

// withoutToken is the path and query of u without its token parameters,
// the other parameters kept in their order.
func withoutToken(u *url.URL) string {
	p := u.EscapedPath()
	// "//host/..." in Location is another site: never redirect there.
	p = "/" + strings.TrimLeft(p, "/")
	var keep []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		k, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(k); part == "" || (err == nil && k == "token") {
			continue
		}
		keep = append(keep, part)
	}
	if len(keep) == 0 {
		return p
	}
	return p + "?" + strings.Join(keep, "&")
}

// sessionOf returns the session of r's session cookie when one is valid:
// signed with the current secret and not expired. Anything else is no
// session, never an error: the request is then treated as carrying no
// credential.
func (a *Authenticator) sessionOf(r *http.Request) (session, bool) {
	cookies := r.CookiesNamed(SessionCookie)
	if len(cookies) == 0 {
		return session{}, false
	}
	secret, err := a.sessionSecret(r.Context())
	if err != nil {
		return session{}, false
	}
	now := a.now().Unix()
	// A browser may hold more than one (another Path set by hand, an old
	// one); any valid one will do.
	for _, c := range cookies {
		if s, ok := verifySession(secret, c.Value, now); ok {
			return s, true
		}
	}
	return session{}, false
}

// verifySession checks a cookie value's signature and expiry.
func verifySession(secret []byte, value string, now int64) (session, bool) {
	if len(value) > maxCookieLen {
		return session{}, false
	}
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return session{}, false
	}
	payload, mac := value[:i], value[i+1:]
	// The payload is parsed only once its signature is known to be ours.
	if !hmac.Equal([]byte(mac), []byte(sign(secret, payload))) {
		return session{}, false
	}
	f := strings.Split(payload, ".")
	if len(f) != 4 || f[0] != sessionVersion {
		return session{}, false
	}
	if _, err := hex.DecodeString(f[1]); err != nil || len(f[1]) != sha256.Size*2 {
		return session{}, false
	}
	exp, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || now >= exp {
		return session{}, false
	}
	return session{digest: f[1], csrf: csrfToken(secret, f[3])}, true
}

// sign is the cookie signature of payload.
func sign(secret []byte, payload string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfToken is the CSRF token of the session with nonce. The "csrf|"
// prefix keeps it from ever equalling a cookie signature.
func csrfToken(secret []byte, nonce string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("csrf|" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfMatches compares a presented CSRF token in constant time.
func csrfMatches(got, want string) bool {
	return want != "" && hmac.Equal([]byte(got), []byte(want))
}

// sessionSecret returns the session secret, reading it on first use. One
// request reads at a time, the others wait for it; after a failed read
// requests give up at once for secretRetry.
func (a *Authenticator) sessionSecret(ctx context.Context) ([]byte, error) {
	c := &a.secret
	c.mu.Lock()
	if c.val != nil {
		v := c.val
		c.mu.Unlock()
		return v, nil
	}
	if ch := c.loading; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.val == nil {
			return nil, fmt.Errorf("auth: session secret: not readable")
		}
		return c.val, nil
	}
	if !c.failed.IsZero() && time.Since(c.failed) < secretRetry {
		c.mu.Unlock()
		return nil, fmt.Errorf("auth: session secret: not readable")
	}
	ch := make(chan struct{})
	c.loading = ch
	c.mu.Unlock()

	// Not the request's context: a client that goes away must not make
	// the read fail for the requests waiting on it.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretTimeout)
	v, err := a.st.SessionSecret(lctx)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = nil
	close(ch)
	if err != nil {
		c.failed = time.Now()
		a.secretFailed(err)
		return nil, err
	}
	a.secretRead(v)
	return v, nil
}

// refreshSecret re-reads the secret for Run, so a secret replaced in Redis
// is used within Refresh. A failed read keeps the secret known.
func (a *Authenticator) refreshSecret(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, secretTimeout)
	v, err := a.st.SessionSecret(lctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	c := &a.secret
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.val == nil {
			a.secretFailed(err)
		}
		return
	}
	a.secretRead(v)
}

// secretRead installs a secret read; a.secret.mu is held.
func (a *Authenticator) secretRead(v []byte) {
	c := &a.secret
	if c.val != nil && !bytes.Equal(c.val, v) {
		a.log.Warn("auth: the page session secret changed in Redis; sessions opened before have ended",
			"key", a.st.SessionSecretKey())
	}
	if c.warned {
		c.warned = false
		a.log.Info("auth: page session secret readable again", "key", a.st.SessionSecretKey())
	}
	c.val, c.failed = v, time.Time{}
}

// secretFailed notes an unreadable secret while none is known, once until
// it is read; a.secret.mu is held.
func (a *Authenticator) secretFailed(err error) {
	c := &a.secret
	if !c.warned {
		c.warned = true
		a.log.Warn("auth: cannot read the page session secret; page logins answer 503 and session cookies are not accepted until it is read",
			"key", a.st.SessionSecretKey(), "error", err)
	}
}
