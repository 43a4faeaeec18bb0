package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

func recv(t testing.TB, s *Subscription, what string) Message {
	t.Helper()
	select {
	case m, ok := <-s.C:
		if !ok {
			t.Fatalf("%s: subscription closed", what)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10s", what)
	}
	return Message{}
}

func TestBusRequestReachesTheRightNode(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	b := startNode(t, r, "b", true, NodeInfo{})
	c := startNode(t, r, "c", true, NodeInfo{})
	type call struct{ node, from, req string }
	calls := make(chan call, 10)
	for _, n := range []*testNode{a, b, c} {
		n.bus.Handle("echo", func(ctx context.Context, from string, req []byte) ([]byte, error) {
			calls <- call{n.host, from, string(req)}
			return append([]byte(n.host+":"), req...), nil
		})
	}
	ctx := context.Background()
	rep, err := a.bus.Request(ctx, "b", "echo", []byte("hello b"), 10*time.Second)
	if err != nil || string(rep) != "b:hello b" {
		t.Fatalf("reply %q, %v", rep, err)
	}
	if got := <-calls; got != (call{"b", "a", "hello b"}) {
		t.Fatalf("handler call %+v, want b handling a's request", got)
	}
	// To itself: handled locally.
	rep, err = a.bus.Request(ctx, "a", "echo", []byte("me"), 10*time.Second)
	if err != nil || string(rep) != "a:me" {
		t.Fatalf("self reply %q, %v", rep, err)
	}
	if got := <-calls; got != (call{"a", "a", "me"}) {
		t.Fatalf("handler call %+v", got)
	}
	select {
	case got := <-calls:
		t.Fatalf("extra handler call %+v", got)
	default:
	}

	// A handler's error comes back with its message.
	c.bus.Handle("fail", func(context.Context, string, []byte) ([]byte, error) {
		return nil, errors.New("session 42 not found")
	})
	_, err = a.bus.Request(ctx, "c", "fail", nil, 10*time.Second)
	var remote *RemoteError
	if !errors.As(err, &remote) || remote.Host != "c" || remote.Method != "fail" || !strings.Contains(err.Error(), "session 42 not found") {
		t.Fatalf("remote error: %v", err)
	}

	// No handler on a live node.
	start := time.Now()
	_, err = a.bus.Request(ctx, "b", "nope", nil, 10*time.Second)
	if !errors.Is(err, ErrNoHandler) || time.Since(start) > 5*time.Second {
		t.Fatalf("no handler: %v after %v", err, time.Since(start))
	}
	if _, err = a.bus.Request(ctx, "a", "nope", nil, time.Second); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("no local handler: %v", err)
	}

	// A handler slower than the timeout.
	b.bus.Handle("slow", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	start = time.Now()
	_, err = a.bus.Request(ctx, "b", "slow", nil, 300*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("slow: %v after %v", err, time.Since(start))
	}
	a.bus.Handle("slow", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if _, err = a.bus.Request(ctx, "a", "slow", nil, 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("slow local: %v", err)
	}

	// Too large, both ways.
	big := bytes.Repeat([]byte("x"), DefaultMaxPayload+1)
	if _, err = a.bus.Request(ctx, "b", "echo", big, time.Second); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "max") {
		t.Fatalf("big request: %v", err)
	}
	if err = a.bus.Publish(ctx, "t", big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big publish: %v", err)
	}
	b.bus.Handle("big", func(context.Context, string, []byte) ([]byte, error) { return big, nil })
	if _, err = a.bus.Request(ctx, "b", "big", nil, 10*time.Second); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("big reply: %v", err)
	}
}

func TestBusRequestToDeadNodeFailsFast(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	b := startNode(t, r, "b", true, NodeInfo{})
	ctx := context.Background()

	// Never registered.
	start := time.Now()
	if _, err := a.bus.Request(ctx, "ghost", "echo", nil, 10*time.Second); !errors.Is(err, ErrNodeDead) {
		t.Fatalf("ghost: %v", err)
	}
	// Dead by its heartbeat: stopped without a word, alive key expired.
	b.kill()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if r.Client.Exists(ctx, b.st.AliveKey("b")).Val() == 1 {
			return fmt.Errorf("b's alive key still there")
		}
		return nil
	})
	start = time.Now()
	_, err := a.bus.Request(ctx, "b", "echo", nil, 10*time.Second)
	if !errors.Is(err, ErrNodeDead) || time.Since(start) > time.Second {
		t.Fatalf("dead node: %v after %v, want ErrNodeDead at once", err, time.Since(start))
	}
}

// A node alive by its heartbeat whose bus is not listening (starting up,
// or its bus stopped) fails fast too, instead of waiting for the timeout.
func TestBusRequestToNodeWithoutBusFailsFast(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	startNode(t, r, "nobus", false, NodeInfo{})
	start := time.Now()
	_, err := a.bus.Request(context.Background(), "nobus", "echo", nil, 10*time.Second)
	if !errors.Is(err, ErrNodeDead) || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

// A node that dies while a request to it waits: the death notice ends the
// request before its timeout.
func TestBusRequestEndsWhenTargetDies(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	b := startNode(t, r, "b", true, NodeInfo{})
	waitTrusted(t, a.dir)
	entered := make(chan struct{})
	b.bus.Handle("hang", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := a.bus.Request(context.Background(), "b", "hang", nil, 30*time.Second)
		errc <- err
	}()
	<-entered
	b.kill()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNodeDead) {
			t.Fatalf("request to a node that died: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("request still waiting %v after its target died", time.Since(start))
	}
}

func TestBusPublishFansOutToEveryNode(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	b := startNode(t, r, "b", true, NodeInfo{})
	sa, sb := a.bus.Subscribe("calls", 4), b.bus.Subscribe("calls", 4)
	other := b.bus.Subscribe("other", 4)
	defer sa.Close()
	defer sb.Close()
	if err := a.bus.Publish(context.Background(), "calls", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Subscription{sa, sb} {
		m := recv(t, s, "fan-out")
		if m.Topic != "calls" || m.From != "a" || string(m.Payload) != `{"n":1}` || m.Gap {
			t.Fatalf("message %+v", m)
		}
	}
	select {
	case m := <-other.C:
		t.Fatalf("other topic got %+v", m)
	default:
	}
	other.Close()
	other.Close()
	if _, ok := <-other.C; ok {
		t.Fatalf("channel open after Close")
	}
}

// A subscriber that does not keep up loses messages, never the bus: the
// drops are counted and a Gap notice comes before the next message.
func TestBusSlowSubscriberDropsAndGetsGap(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	slow := a.bus.Subscribe("t", 1)
	fast := a.bus.Subscribe("t", 16)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := a.bus.Publish(ctx, "t", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if m := recv(t, fast, "fast"); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("fast got %+v", m)
		}
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if v := metricValue(a.bus.mDropped.WithLabelValues("t")); v != 2 {
			return fmt.Errorf("dropped %v, want 2", v)
		}
		return nil
	})
	if m := recv(t, slow, "slow"); string(m.Payload) != "0" {
		t.Fatalf("slow got %+v first", m)
	}
	// Room again: the owed Gap arrives without waiting for a message.
	if m := recv(t, slow, "slow gap"); !m.Gap || m.Topic != "t" {
		t.Fatalf("slow got %+v, want a gap notice", m)
	}
}

func TestBusResumesAfterRedisRestart(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	b := startNode(t, r, "b", true, NodeInfo{})
	sub := b.bus.Subscribe("t", 8)
	ctx := context.Background()
	if err := a.bus.Publish(ctx, "t", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub, "before"); string(m.Payload) != "before" {
		t.Fatalf("got %+v", m)
	}
	r.Stop()
	r.Restart(t)
	if m := recv(t, sub, "gap"); !m.Gap {
		t.Fatalf("got %+v, want a gap notice after the restart", m)
	}
	// a's own bus may take a moment longer to resubscribe; its publish
	// does not depend on that.
	testenv.WaitFor(t, 10*time.Second, func() error { return a.bus.Publish(ctx, "t", []byte("after")) })
	if m := recv(t, sub, "after"); string(m.Payload) != "after" || m.Gap {
		t.Fatalf("got %+v", m)
	}
	// Requests work again once both nodes heartbeat again.
	b.bus.Handle("echo", func(_ context.Context, _ string, req []byte) ([]byte, error) { return req, nil })
	testenv.WaitFor(t, 15*time.Second, func() error {
		_, err := a.bus.Request(ctx, "b", "echo", []byte("x"), 2*time.Second)
		return err
	})
}

// Garbage on the bus channels is counted and dropped; the bus keeps
// working.
func TestBusMalformedMessagesAreDropped(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startNode(t, r, "a", true, NodeInfo{})
	sub := a.bus.Subscribe("t", 8)
	ctx := context.Background()
	bad := []string{
		"not json",
		`{"kind":"pub","topic":"t"}`,                           // no sender
		`{"kind":"req","from":"x","topic":"t"}`,                // request on the all channel
		`{"kind":"weird","from":"x"}`,                          // unknown kind
		`{"kind":"pub","from":"x","topic":"t","payload":"!!"}`, // payload not base64
		strings.Repeat("x", DefaultMaxPayload*2),
	}
	for _, p := range bad {
		r.Client.Publish(ctx, a.st.BusAllChannel(), p)
	}
	r.Client.Publish(ctx, a.st.BusNodeChannel("a"), `{"kind":"rep","from":"x","id":"nope"}`) // late reply: dropped quietly
	r.Client.Publish(ctx, a.st.BusNodeChannel("a"), `{"kind":"pub","from":"x","topic":"t"}`) // pub on a node channel
	if err := a.bus.Publish(ctx, "t", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub, "after garbage"); string(m.Payload) != "ok" {
		t.Fatalf("got %+v", m)
	}
	if v := metricValue(a.bus.mMalformed); v != float64(len(bad)+1) {
		t.Fatalf("malformed counted %v, want %d", v, len(bad)+1)
	}
}
