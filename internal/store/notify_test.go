package store

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"redial/internal/testenv"
)

func TestPushCDRWritesListEnvelopeAndStream(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	payload := []byte(`{"cdr_id":"a1","disposition":"BUSY"}`)
	if err := s.PushCDR(ctx, payload); err != nil {
		t.Fatal(err)
	}
	v, err := r.Client.RPop(ctx, "enigma:notifications:campaigns").Result()
	if err != nil {
		t.Fatalf("RPOP campaigns list: %v", err)
	}
	var env struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(v), &env); err != nil {
		t.Fatalf("list value %q is not JSON: %v", v, err)
	}
	if env.Type != "cdr" || string(env.Payload) != string(payload) {
		t.Fatalf("list value = %s, want type cdr and payload %s", v, payload)
	}
	xs, err := r.Client.XRange(ctx, "redial:cdr", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 1 || len(xs[0].Values) != 1 || xs[0].Values["cdr"] != string(payload) {
		t.Fatalf("stream entries = %+v, want one with cdr=%s", xs, payload)
	}
}

func TestPushCDRTrimsStreamApproximately(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{NotifyPrefix: "p", CDRStreamMaxLen: 10})
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if err := s.PushCDR(ctx, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.Client.XLen(ctx, "redial:cdr").Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries by default).
	if n < 10 || n > 200 {
		t.Fatalf("stream length %d after 1000 adds with MAXLEN ~ 10", n)
	}
	if l := r.Client.LLen(ctx, "p:campaigns").Val(); l != 1000 {
		t.Fatalf("p:campaigns has %d items, want 1000 (the list is never trimmed)", l)
	}
}

func TestPushInbound(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{NotifyPrefix: "x:notifications"})
	ctx := context.Background()
	if err := s.PushInbound(ctx, []byte(`{"number":"100"}`)); err != nil {
		t.Fatal(err)
	}
	v, err := r.Client.RPop(ctx, "x:notifications:inbound").Result()
	if err != nil {
		t.Fatal(err)
	}
	if v != `{"type":"call","payload":{"number":"100"}}` {
		t.Fatalf("inbound value = %s", v)
	}
}

func TestPushCDRReportsRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	r.Stop()
	err := s.PushCDR(context.Background(), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "enigma:notifications:campaigns") {
		t.Fatalf("PushCDR with Redis down: err = %v, want one naming the list", err)
	}
}
