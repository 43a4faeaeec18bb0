package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"redial/internal/testenv"
)

// Nodes agree on one page session secret, created once under
// redial:sessions:secret, kept without expiry and read back unchanged by
// later calls and other nodes; deleting it makes a new one.
func TestSessionSecretCreatedOnceAndShared(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	const nodes = 8
	got := make([][]byte, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = NewWithClient(r.Client, Config{Host: "n"}).SessionSecret(ctx)
		}()
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("node %d got secret %s, node 0 %s", i, got[i], got[0])
		}
	}
	stored, err := r.Client.Get(ctx, "redial:sessions:secret").Result()
	if err != nil {
		t.Fatalf("GET redial:sessions:secret: %v", err)
	}
	if raw, err := hex.DecodeString(stored); err != nil || len(raw) != 32 || stored != string(got[0]) {
		t.Fatalf("stored secret %q: want the 64 hex digits every node got (%s)", stored, got[0])
	}
	if ttl := r.Client.TTL(ctx, "redial:sessions:secret").Val(); ttl >= 0 {
		t.Fatalf("secret expires in %v; it must not", ttl)
	}
	st := NewWithClient(r.Client, Config{})
	for range 2 {
		again, err := st.SessionSecret(ctx)
		if err != nil || !bytes.Equal(again, got[0]) {
			t.Fatalf("later read: %s, %v; want %s", again, err, got[0])
		}
	}
	digest, err := st.DigestSecret(ctx)
	if err != nil || bytes.Equal(digest, got[0]) {
		t.Fatalf("digest secret %s, %v: must be a different secret", digest, err)
	}
	if err := r.Client.Del(ctx, "redial:sessions:secret").Err(); err != nil {
		t.Fatal(err)
	}
	fresh, err := st.SessionSecret(ctx)
	if err != nil || bytes.Equal(fresh, got[0]) || len(fresh) != 64 {
		t.Fatalf("after DEL: %s, %v; want a new secret", fresh, err)
	}
}

// A secret an operator wrote is used as stored; one too short to sign
// with, and an unreachable Redis, are errors naming the key.
func TestSessionSecretOperatorValueAndErrors(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := NewWithClient(r.Client, Config{})
	own := "my own secret of some length"
	r.Client.Set(ctx, "redial:sessions:secret", own, 0)
	if got, err := st.SessionSecret(ctx); err != nil || string(got) != own {
		t.Fatalf("operator's secret: %q, %v", got, err)
	}
	r.Client.Set(ctx, "redial:sessions:secret", "short", 0)
	if _, err := st.SessionSecret(ctx); err == nil || !strings.Contains(err.Error(), "redial:sessions:secret") ||
		!strings.Contains(err.Error(), "want at least 16") {
		t.Fatalf("short secret: %v", err)
	}
	r.Stop()
	if _, err := st.SessionSecret(ctx); err == nil || !strings.Contains(err.Error(), "redial:sessions:secret") {
		t.Fatalf("Redis down: %v", err)
	}
}
