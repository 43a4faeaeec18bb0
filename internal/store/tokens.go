package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// API tokens.
//
//	redial:tokens           HASH field = hex SHA-256 of the token, value =
//	                        {"name","capabilities":[...],"domain","created"}
//	                        (created RFC3339 UTC). The token itself is never
//	                        stored: it is printed once when created.
//	redial:tokens:changed   pub/sub channel; a message (payload: the token's
//	                        name) after every create and revoke, so every
//	                        node refreshes its cache at once.

// Capabilities a token can grant.
const (
	// CapabilityRest is the REST API under /api/v1/.
	CapabilityRest = "rest"
	// CapabilityIVRAPI is the WebSocket Token API (seed 002) at /api/v1/ws.
	CapabilityIVRAPI = "ivrapi"
	// CapabilityFiles is file uploads without a session.
	CapabilityFiles = "files"
	// CapabilityDashboard is the dashboard pages.
	CapabilityDashboard = "dashboard"
)

// TokenCapabilities are every capability a token may name, in display order.
var TokenCapabilities = []string{CapabilityRest, CapabilityIVRAPI, CapabilityFiles, CapabilityDashboard}

// TokenPrefix starts every token, so secret scanners and humans recognise
// one in a log or a repository.
const TokenPrefix = "rdl_"

// Token is one API token as stored: everything but the secret.
type Token struct {
	Name         string    `json:"name"`
	Capabilities []string  `json:"capabilities"`
	Domain       string    `json:"domain"`
	Created      time.Time `json:"created"`
	// Digest is the hex SHA-256 of the token, the hash field it is stored
	// under.
	Digest string `json:"-"`
}

// Has reports whether the token grants capability.
func (t Token) Has(capability string) bool { return slices.Contains(t.Capabilities, capability) }

// ErrTokenExists is returned by CreateToken for a name already in use.
var ErrTokenExists = errors.New("a token with this name exists (revoke it first)")

// ErrTokenNotFound is returned by RevokeToken for an unknown name.
var ErrTokenNotFound = errors.New("no token with this name")

// TokensKey is the hash of token digests.
func (s *Store) TokensKey() string { return "redial:tokens" }

// TokensChangedChannel is where a notice goes after every token change.
func (s *Store) TokensChangedChannel() string { return "redial:tokens:changed" }

// TokenDigest is the hex SHA-256 of a token as presented: the field it is
// stored under.
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidateTokenName checks a token name: 1 to 64 characters of letters,
// digits, '_', '.' and '-'.
func ValidateTokenName(name string) error {
	if !tokenNameRE.MatchString(name) {
		return fmt.Errorf("name: %q: want 1 to 64 characters of A-Z a-z 0-9 _ . -", truncateForError(name))
	}
	return nil
}

// NormalizeCapabilities checks capability names and returns them without
// duplicates in display order; at least one is required.
func NormalizeCapabilities(caps []string) ([]string, error) {
	want := map[string]bool{}
	for _, c := range caps {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !slices.Contains(TokenCapabilities, c) {
			return nil, fmt.Errorf("capabilities: unknown capability %q (want %s)", truncateForError(c), strings.Join(TokenCapabilities, ", "))
		}
		want[c] = true
	}
	var out []string
	for _, c := range TokenCapabilities {
		if want[c] {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("capabilities: want at least one of %s", strings.Join(TokenCapabilities, ", "))
	}
	return out, nil
}

func validateTokenDomain(domain string) error {
	if domain == "" || len(domain) > 128 || strings.ContainsAny(domain, " \t\r\n@{}") {
		return fmt.Errorf("domain: %q: want a non-empty name of at most 128 characters without spaces, '@' or braces", truncateForError(domain))
	}
	return nil
}

func truncateForError(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// createTokenScript adds a token unless one with the same name exists, in
// one step so two concurrent creates of one name cannot both succeed.
//
// KEYS[1] redial:tokens (HASH)
// ARGV[1] the token's name
// ARGV[2] the token's digest (hash field)
// ARGV[3] the token's JSON record
// Returns 1 when added, 0 when the name is taken, -1 when the digest is
// already stored (a collision of 256 random bits: never in practice).
var createTokenScript = redis.NewScript(`
local all = redis.call('HGETALL', KEYS[1])
for i = 2, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i])
  if ok and type(rec) == 'table' and rec['name'] == ARGV[1] then
    return 0
  end
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then
  return -1
end
return 1
`)

// revokeTokenScript removes every token with a name.
//
// KEYS[1] redial:tokens (HASH)
// ARGV[1] the name
// Returns the number of tokens removed.
var revokeTokenScript = redis.NewScript(`
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 2, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i])
  if ok and type(rec) == 'table' and rec['name'] == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i - 1])
    n = n + 1
  end
end
return n
`)

// CreateToken makes a new random token for domain with the given
// capabilities, stores its digest and returns the token: the only time
// it exists in plain text. A name already in use is refused with
// ErrTokenExists.
func (s *Store) CreateToken(ctx context.Context, name string, capabilities []string, domain string) (string, Token, error) {
	if err := ValidateTokenName(name); err != nil {
		return "", Token{}, fmt.Errorf("store: token: %w", err)
	}
	caps, err := NormalizeCapabilities(capabilities)
	if err != nil {
		return "", Token{}, fmt.Errorf("store: token %q: %w", name, err)
	}
	if err := validateTokenDomain(domain); err != nil {
		return "", Token{}, fmt.Errorf("store: token %q: %w", name, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", Token{}, fmt.Errorf("store: token %q: random: %w", name, err)
	}
	plain := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	tok := Token{Name: name, Capabilities: caps, Domain: domain, Created: time.Now().UTC().Truncate(time.Second), Digest: TokenDigest(plain)}
	rec, err := json.Marshal(tok)
	if err != nil {
		return "", Token{}, fmt.Errorf("store: token %q: %w", name, err)
	}
	key := s.TokensKey()
	res, err := createTokenScript.Run(ctx, s.rdb, []string{key}, name, tok.Digest, rec).Int()
	if err != nil {
		return "", Token{}, fmt.Errorf("store: create token %q in %s: %w", name, key, err)
	}
	switch res {
	case 0:
		return "", Token{}, fmt.Errorf("store: token %q: %w", name, ErrTokenExists)
	case -1:
		return "", Token{}, fmt.Errorf("store: token %q: digest already stored in %s; try again", name, key)
	}
	s.tokensChanged(ctx, name)
	return plain, tok, nil
}

// tokensChanged tells every node to re-read the tokens. A failed publish
// is not an error of the change itself: nodes re-read the hash every few
// seconds anyway.
func (s *Store) tokensChanged(ctx context.Context, name string) {
	s.rdb.Publish(ctx, s.TokensChangedChannel(), name)
}

// ListTokens returns every token record, by name then creation time. A
// field whose value does not decode is returned with only its digest and
// the name "?" so an operator sees it (and nodes never accept it).
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	m, err := s.hgetAll(ctx, s.TokensKey())
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(m))
	for digest, raw := range m {
		t, err := decodeToken(digest, raw)
		if err != nil {
			t = Token{Name: "?", Digest: digest}
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out, nil
}

// TokenSet reads every token at once, keyed by digest: what a node caches.
// Records that do not decode are left out and reported in bad (digest ->
// reason), so one hand-edited field cannot lock everyone out.
func (s *Store) TokenSet(ctx context.Context) (tokens map[string]Token, bad map[string]string, err error) {
	m, err := s.hgetAll(ctx, s.TokensKey())
	if err != nil {
		return nil, nil, err
	}
	tokens = make(map[string]Token, len(m))
	for digest, raw := range m {
		t, err := decodeToken(digest, raw)
		if err != nil {
			if bad == nil {
				bad = map[string]string{}
			}
			bad[digest] = err.Error()
			continue
		}
		tokens[digest] = t
	}
	return tokens, bad, nil
}

// LookupToken returns the token stored under digest; found is false when
// there is none.
func (s *Store) LookupToken(ctx context.Context, digest string) (Token, bool, error) {
	key := s.TokensKey()
	raw, err := s.rdb.HGet(ctx, key, digest).Result()
	if errors.Is(err, redis.Nil) {
		return Token{}, false, nil
	}
	if err != nil {
		return Token{}, false, fmt.Errorf("store: HGET %s: %w", key, err)
	}
	t, err := decodeToken(digest, raw)
	if err != nil {
		return Token{}, false, err
	}
	return t, true, nil
}

// HasTokens reports whether any token exists.
func (s *Store) HasTokens(ctx context.Context) (bool, error) {
	key := s.TokensKey()
	n, err := s.rdb.HLen(ctx, key).Result()
	if err != nil {
		return false, fmt.Errorf("store: HLEN %s: %w", key, err)
	}
	return n > 0, nil
}

// RevokeToken removes every token named name and tells the nodes.
func (s *Store) RevokeToken(ctx context.Context, name string) error {
	if err := ValidateTokenName(name); err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	key := s.TokensKey()
	n, err := revokeTokenScript.Run(ctx, s.rdb, []string{key}, name).Int()
	if err != nil {
		return fmt.Errorf("store: revoke token %q in %s: %w", name, key, err)
	}
	if n == 0 {
		return fmt.Errorf("store: revoke token %q: %w", name, ErrTokenNotFound)
	}
	s.tokensChanged(ctx, name)
	return nil
}

// decodeToken reads one record; unknown fields are ignored.
func decodeToken(digest, raw string) (Token, error) {
	var t Token
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return Token{}, fmt.Errorf("store: token %s…: malformed JSON: %w", shortDigest(digest), err)
	}
	if err := ValidateTokenName(t.Name); err != nil {
		return Token{}, fmt.Errorf("store: token %s…: %w", shortDigest(digest), err)
	}
	// A capability this version does not know (written by a newer one)
	// grants nothing here; it does not invalidate the token.
	var caps []string
	for _, c := range TokenCapabilities {
		if slices.Contains(t.Capabilities, c) {
			caps = append(caps, c)
		}
	}
	if err := validateTokenDomain(t.Domain); err != nil {
		return Token{}, fmt.Errorf("store: token %q: %w", t.Name, err)
	}
	t.Capabilities, t.Digest = caps, digest
	return t, nil
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
