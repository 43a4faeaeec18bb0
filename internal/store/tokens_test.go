package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A created token is returned once; Redis keeps only its SHA-256 with the
// record DESIGN.md names, and a change notice goes out.
func TestCreateTokenStoresOnlyTheDigest(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	sub := r.Client.Subscribe(ctx, "redial:tokens:changed")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	plain, tok, err := st.CreateToken(ctx, "ops-1", []string{"dashboard", "rest", "rest"}, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, TokenPrefix) || len(plain) != len(TokenPrefix)+43 {
		t.Fatalf("token %q: want %s + 43 base64url characters (32 random bytes)", plain, TokenPrefix)
	}
	all := r.Client.HGetAll(ctx, "redial:tokens").Val()
	if len(all) != 1 {
		t.Fatalf("redial:tokens: %v", all)
	}
	raw, ok := all[TokenDigest(plain)]
	if !ok || tok.Digest != TokenDigest(plain) || len(tok.Digest) != 64 {
		t.Fatalf("field is not the hex SHA-256 of the token: %v (digest %s)", all, tok.Digest)
	}
	if strings.Contains(raw, plain) || strings.Contains(raw, plain[len(TokenPrefix):]) {
		t.Fatalf("the plain token is stored: %s", raw)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatal(err)
	}
	created, _ := rec["created"].(string)
	if ts, err := time.Parse(time.RFC3339, created); err != nil || !strings.HasSuffix(created, "Z") || time.Since(ts) > time.Minute {
		t.Fatalf("created %q: want RFC3339 UTC of now", created)
	}
	caps, _ := json.Marshal(rec["capabilities"])
	if rec["name"] != "ops-1" || rec["domain"] != "acme" || string(caps) != `["rest","dashboard"]` || len(rec) != 4 {
		t.Fatalf("record: %s", raw)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "ops-1" {
		t.Fatalf("change notice: %v %v", msg, err)
	}

	got, found, err := st.LookupToken(ctx, TokenDigest(plain))
	if err != nil || !found || got.Name != "ops-1" || !got.Has("rest") || got.Has("ivrapi") || got.Domain != "acme" {
		t.Fatalf("lookup: %+v %v %v", got, found, err)
	}
	if _, found, err := st.LookupToken(ctx, TokenDigest(plain+"x")); found || err != nil {
		t.Fatalf("lookup of an unknown digest: found=%v err=%v", found, err)
	}
	if has, err := st.HasTokens(ctx); !has || err != nil {
		t.Fatalf("HasTokens = %v, %v", has, err)
	}
}

// Two creates of one name, even at the same moment, leave one token.
func TestCreateTokenRefusesDuplicateName(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = st.CreateToken(ctx, "same", []string{"rest"}, "default")
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrTokenExists) || !strings.Contains(err.Error(), `"same"`):
			t.Fatalf("duplicate create: %v", err)
		}
	}
	if ok != 1 || r.Client.HLen(ctx, "redial:tokens").Val() != 1 {
		t.Fatalf("%d creates succeeded, %d tokens stored; want 1 and 1", ok, r.Client.HLen(ctx, "redial:tokens").Val())
	}
}

// Bad names, capabilities and domains are refused naming the field, and
// nothing is written.
func TestCreateTokenValidation(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	cases := []struct {
		name   string
		caps   []string
		domain string
		want   string
	}{
		{"", []string{"rest"}, "default", "name:"},
		{strings.Repeat("a", 65), []string{"rest"}, "default", "name:"},
		{"has space", []string{"rest"}, "default", "name:"},
		{"x/y", []string{"rest"}, "default", "name:"},
		{"ok", nil, "default", "capabilities: want at least one of rest, ivrapi, files, dashboard"},
		{"ok", []string{"rest", "admin"}, "default", `capabilities: unknown capability "admin"`},
		{"ok", []string{"rest"}, "", "domain:"},
		{"ok", []string{"rest"}, "a@b", "domain:"},
	}
	for _, c := range cases {
		_, _, err := st.CreateToken(ctx, c.name, c.caps, c.domain)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create(%q, %v, %q): %v, want error containing %q", c.name, c.caps, c.domain, err, c.want)
		}
	}
	if n := r.Client.HLen(ctx, "redial:tokens").Val(); n != 0 {
		t.Fatalf("%d tokens written by refused creates", n)
	}
	if has, err := st.HasTokens(ctx); has || err != nil {
		t.Fatalf("HasTokens = %v, %v on an empty hash", has, err)
	}
}

// Revoke removes every token of a name (hand-written duplicates too),
// leaves the others, notifies, and is an error for an unknown name.
func TestRevokeToken(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	keep, _, err := st.CreateToken(ctx, "keep", []string{"rest"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateToken(ctx, "gone", []string{"ivrapi"}, "default"); err != nil {
		t.Fatal(err)
	}
	// A second field of the same name, as an operator copying records by
	// hand might leave; unknown fields are kept and ignored.
	r.Client.HSet(ctx, "redial:tokens", strings.Repeat("ab", 32), `{"name":"gone","capabilities":["rest","future"],"domain":"default","created":"2024-01-01T00:00:00Z","note":"x"}`)
	list, err := st.ListTokens(ctx)
	if err != nil || len(list) != 3 || list[0].Name != "gone" || list[2].Name != "keep" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if caps := list[0].Capabilities; len(caps) != 1 || caps[0] != "rest" {
		t.Fatalf("an unknown capability must grant nothing and keep the token: %v", caps)
	}
	sub := r.Client.Subscribe(ctx, "redial:tokens:changed")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "gone" {
		t.Fatalf("change notice: %v %v", msg, err)
	}
	all := r.Client.HGetAll(ctx, "redial:tokens").Val()
	if _, ok := all[TokenDigest(keep)]; !ok || len(all) != 1 {
		t.Fatalf("after revoke: %v", all)
	}
	err = st.RevokeToken(ctx, "gone")
	if !errors.Is(err, ErrTokenNotFound) || !strings.Contains(err.Error(), `"gone"`) {
		t.Fatalf("second revoke: %v", err)
	}
}

// A malformed record is reported, not served, and still counts as a token
// (so it ends open mode rather than opening the API).
func TestTokenSetReportsMalformedRecords(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	good, _, err := st.CreateToken(ctx, "good", []string{"rest"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	r.Client.HSet(ctx, "redial:tokens", "feedbeef", "not json")
	tokens, bad, err := st.TokenSet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tokens[TokenDigest(good)]; !ok || len(tokens) != 1 {
		t.Fatalf("tokens: %v", tokens)
	}
	if reason := bad["feedbeef"]; !strings.Contains(reason, "malformed JSON") {
		t.Fatalf("bad: %v", bad)
	}
	if _, _, err := st.LookupToken(ctx, "feedbeef"); err == nil {
		t.Fatalf("lookup of a malformed record must fail")
	}
}

// An unreachable Redis is an error naming the key.
func TestTokensRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	st := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	if _, err := st.HasTokens(ctx); err == nil || !strings.Contains(err.Error(), "redial:tokens") {
		t.Fatalf("HasTokens: %v", err)
	}
	if _, _, err := st.CreateToken(ctx, "x", []string{"rest"}, "default"); err == nil || !strings.Contains(err.Error(), "redial:tokens") {
		t.Fatalf("CreateToken: %v", err)
	}
}
