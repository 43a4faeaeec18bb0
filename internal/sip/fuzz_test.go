package sip

// Fuzz targets for the SIP-facing parsing redial owns beyond sipgo: digest
// credentials (Proxy-Authorization / Authorization of any INVITE or
// REGISTER) and the nonces they carry. SDP has its own targets in
// internal/media. `make test` runs these on their seed corpus;
// scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"redial/internal/testenv"
)

// Limits of issue 9.
const (
	// fuzzMaxReason bounds an error about outsider input: it becomes a
	// reason stored in Redis, a 400 body or a log line ("a short reason").
	fuzzMaxReason = 1 << 10
)

// fuzzPassword is the one password the fuzzed engine knows (user trunk);
// no error may ever quote it.
const fuzzPassword = "s3cret-Fuzz"

func fuzzPasswords(user string) (string, bool) { return fuzzPassword, user == "trunk" }

// fuzzEngine runs an engine whose guessing limits never block, so that
// every input is checked rather than refused for earlier ones.
func fuzzEngine(f *testing.F) *Engine {
	return startEngineWith(f, engineOpts{log: io.Discard,
		cfg: Config{Auth: AuthLimits{MaxFailures: 1 << 30, MaxUserFailures: 1 << 30}}})
}

// fuzzInvite is an INVITE from source carrying header: value.
func fuzzInvite(header, value string) *gosip.Request {
	req := gosip.NewRequest(gosip.INVITE, gosip.Uri{Scheme: "sip", User: "7100", Host: "127.0.0.1"})
	req.AppendHeader(gosip.NewHeader(header, value))
	req.SetSource("192.0.2.7:5060")
	return req
}

// fuzzValidCredentials are credentials for user and password answering a
// fresh nonce of e.
func fuzzValidCredentials(t testing.TB, e *Engine, user, uri, password string) string {
	cred, err := digest.Digest(&digest.Challenge{Realm: "redial", Nonce: e.newNonce(time.Now()), Algorithm: "MD5"},
		digest.Options{Method: "INVITE", URI: uri, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// FuzzVerifyDigest checks credentials headers holding anything: never a
// panic, never an acceptance without a nonce this cluster issued and the
// right response, and short errors that never quote the password.
func FuzzVerifyDigest(f *testing.F) {
	e := fuzzEngine(f)
	for _, s := range []string{
		fuzzValidCredentials(f, e, "trunk", "sip:7100@127.0.0.1", fuzzPassword),
		fuzzValidCredentials(f, e, "trunk", "sip:7100@127.0.0.1", "wrong"),
		fuzzValidCredentials(f, e, "nobody", "sip:7100@127.0.0.1", fuzzPassword),
		`Digest username="trunk", realm="redial", nonce="1700000000.000000000000000000000000", uri="sip:7100@127.0.0.1", response="00000000000000000000000000000000", algorithm=MD5`,
		`Digest username="trunk", realm="redial", nonce="x", uri="sip:a", response="y", qop=auth, nc=zz, cnonce="c"`,
		`Digest username="` + strings.Repeat("u", 3000) + `", nonce="1.2", response="3"`,
		`Digest username="a\"b", nonce="\\", uri=sip:x, response=`,
		`Basic dHJ1bms6czNjcmV0`,
		`Digest`, ``, "Digest username=\"\xff\x00\"",
		`Digest username="trunk", nonce="99999999999999999999.abc", response="r"`,
	} {
		f.Add("Proxy-Authorization", s)
		f.Add("Authorization", s)
	}
	f.Fuzz(func(t *testing.T, header, value string) {
		if !strings.EqualFold(header, "Proxy-Authorization") && !strings.EqualFold(header, "Authorization") {
			header = "Proxy-Authorization"
		}
		var user string
		var err error
		testenv.FuzzRun(t, "VerifyRequestDigest", func() { user, err = e.VerifyRequestDigest(fuzzInvite(header, value), "redial", fuzzPasswords) })
		what := fmt.Sprintf("%s: %s", header, testenv.FuzzQuote(value))
		if err != nil {
			testenv.FuzzShortErr(t, what, err)
			if strings.Contains(err.Error(), fuzzPassword) {
				t.Errorf("%s: error %q quotes the password", what, err)
			}
			if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrAuthBlocked) && !strings.HasPrefix(err.Error(), "sip: credentials") {
				t.Errorf("%s: error %q does not say it is about credentials", what, err)
			}
			return
		}
		// Accepted: only with the right password over a nonce this engine
		// issued, recomputed here independently of the header's claims.
		cred, perr := digest.ParseCredentials(value)
		if user != "trunk" || perr != nil || cred.Username != "trunk" {
			t.Fatalf("%s: accepted user %q (credentials %+v, %v)", what, user, cred, perr)
		}
		if err := e.checkNonce(cred.Nonce, time.Now()); err != nil {
			t.Fatalf("%s: accepted with nonce %q: %v", what, cred.Nonce, err)
		}
		want, err := digest.Digest(&digest.Challenge{Realm: "redial", Nonce: cred.Nonce, Algorithm: "MD5"},
			digest.Options{Method: "INVITE", URI: cred.URI, Username: "trunk", Password: fuzzPassword})
		if err != nil || want.Response != cred.Response {
			t.Fatalf("%s: accepted a response that is not the password's", what)
		}
	})
}

// FuzzDigestRoundTrip: credentials a client computes over a fresh nonce
// are accepted exactly when the user and password are right.
func FuzzDigestRoundTrip(f *testing.F) {
	e := fuzzEngine(f)
	f.Add("trunk", "sip:7100@127.0.0.1", fuzzPassword)
	f.Add("trunk", "sip:7100@127.0.0.1;transport=tcp", fuzzPassword+"x")
	f.Add("Trunk", "sip:7100@127.0.0.1", fuzzPassword)
	f.Add("trunk", "sip:%41@[::1]:5060", "")
	f.Fuzz(func(t *testing.T, user, uri, password string) {
		// A quoted-string cannot carry these as they are, nor control
		// characters or bytes that are not UTF-8 (RFC 3261 §25.1 qdtext).
		for _, s := range []string{user, uri} {
			if strings.ContainsAny(s, "\"\\") || strings.TrimSpace(s) != s || !utf8.ValidString(s) ||
				strings.IndexFunc(s, unicode.IsControl) >= 0 {
				return
			}
		}
		hdr := fuzzValidCredentials(t, e, user, uri, password)
		got, err := e.VerifyRequestDigest(fuzzInvite("Proxy-Authorization", hdr), "redial", fuzzPasswords)
		right := user == "trunk" && password == fuzzPassword
		if right && (err != nil || got != "trunk") {
			t.Errorf("right credentials %s refused: %v", testenv.FuzzQuote(hdr), err)
		}
		if !right && err == nil {
			t.Errorf("wrong credentials %s accepted as %q", testenv.FuzzQuote(hdr), got)
		}
	})
}

// FuzzCheckNonce: a nonce verifies only when this engine signed its
// timestamp, within nonceTTL.
func FuzzCheckNonce(f *testing.F) {
	e := fuzzEngine(f)
	now := time.Now()
	for _, s := range []string{
		e.newNonce(now), e.newNonce(now.Add(-nonceTTL - time.Second)), e.newNonce(now.Add(time.Hour)),
		"", ".", "1700000000.", "x.y", "1700000000.000000000000000000000000", "+" + e.newNonce(now), e.newNonce(now) + ".",
		strconv.FormatInt(now.Unix(), 10) + "." + strings.Repeat("0", 3000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, nonce string) {
		now := time.Now()
		if err := e.checkNonce(nonce, now); err != nil {
			return
		}
		ts, sig, _ := strings.Cut(nonce, ".")
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || sig != sign(e.localKey, ts) && (e.clusterKey.Load() == nil || sig != sign(*e.clusterKey.Load(), ts)) {
			t.Fatalf("checkNonce accepted %s, which this engine did not sign", testenv.FuzzQuote(nonce))
		}
		if now.Sub(time.Unix(sec, 0)) > nonceTTL {
			t.Fatalf("checkNonce accepted %s, older than %v", testenv.FuzzQuote(nonce), nonceTTL)
		}
	})
}
