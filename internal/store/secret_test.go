package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"sync"
	"testing"

	"redial/internal/testenv"
)

// Nodes starting together agree on one digest secret: 32 random bytes in
// hex, created once, kept under redial:secret:digest.
func TestDigestSecretCreatedOnceAndShared(t *testing.T) {
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
			got[i], errs[i] = NewWithClient(r.Client, Config{Host: "n"}).DigestSecret(ctx)
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
	stored, err := r.Client.Get(ctx, "redial:secret:digest").Result()
	if err != nil {
		t.Fatalf("GET redial:secret:digest: %v", err)
	}
	if raw, err := hex.DecodeString(stored); err != nil || len(raw) != 32 || stored != string(got[0]) {
		t.Fatalf("stored secret %q: want the 64 hex digits every node got (%s)", stored, got[0])
	}
	if ttl := r.Client.TTL(ctx, "redial:secret:digest").Val(); ttl >= 0 {
		t.Fatalf("secret expires in %v; it must not", ttl)
	}
	// Later calls read it back unchanged.
	again, err := NewWithClient(r.Client, Config{}).DigestSecret(ctx)
	if err != nil || !bytes.Equal(again, got[0]) {
		t.Fatalf("second read: %s, %v; want %s", again, err, got[0])
	}
}

// An unreachable Redis is an error naming the key, not an empty secret.
func TestDigestSecretRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	_, err := NewWithClient(r.Client, Config{}).DigestSecret(context.Background())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("redial:secret:digest")) {
		t.Fatalf("err = %v, want one naming redial:secret:digest", err)
	}
}
