package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/testenv"
)

// go-redis resubscribes after Redis restarts and the server confirms the
// channels again: Listen reports each full confirmation, and messages
// published after the restart arrive.
func TestListenResubscribesAfterRedisRestart(t *testing.T) {
	r := testenv.StartRedis(t)
	st := newStore(t, r, "a")
	var subscribed atomic.Int32
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Listen(ctx, st, []string{"ch1", "ch2"}, func(channel, payload string) {
			mu.Lock()
			got = append(got, channel+"="+payload)
			mu.Unlock()
		}, func() { subscribed.Add(1) })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Listen: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Listen did not return within 10s of cancel")
		}
	}()
	waitSubscribed := func(n int32) {
		t.Helper()
		testenv.WaitFor(t, 15*time.Second, func() error {
			if v := subscribed.Load(); v < n {
				return fmt.Errorf("onSubscribed called %d times, want %d", v, n)
			}
			return nil
		})
	}
	received := func(want string) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, g := range got {
				if g == want {
					return nil
				}
			}
			return fmt.Errorf("received %v, want %s among them", got, want)
		})
	}
	waitSubscribed(1)
	r.Client.Publish(ctx, "ch1", "before")
	received("ch1=before")

	r.Stop()
	r.Restart(t)
	waitSubscribed(2)
	if v := subscribed.Load(); v != 2 {
		t.Fatalf("onSubscribed called %d times after one restart, want 2 (once per full confirmation)", v)
	}
	if err := r.Client.Publish(ctx, "ch2", "after").Err(); err != nil {
		t.Fatal(err)
	}
	received("ch2=after")
}

func TestListenReturnsOnCancelWhileRedisIsDown(t *testing.T) {
	r := testenv.StartRedis(t)
	st := newStore(t, r, "a")
	r.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Listen(ctx, st, []string{"ch"}, func(string, string) {}, func() {}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Listen did not return within 10s of cancel")
	}
}

// A quiet subscription is pinged, answered, and kept: no resubscription,
// and messages still arrive.
func TestListenQuietSubscriptionSurvivesPings(t *testing.T) {
	old := listenPing
	listenPing = 50 * time.Millisecond
	defer func() { listenPing = old }()
	r := testenv.StartRedis(t)
	st := newStore(t, r, "a")
	var subscribed atomic.Int32
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Listen(ctx, st, []string{"ch"}, func(_, p string) { got <- p }, func() { subscribed.Add(1) })
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if subscribed.Load() == 0 {
			return fmt.Errorf("not subscribed")
		}
		return nil
	})
	// The subscriber's connection pings (its last command is a PING) and
	// is still the same connection over a second later, some twenty ping
	// rounds on: every ping was answered.
	var id string
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, line := range strings.Split(r.Client.ClientList(ctx).Val(), "\n") {
			f := clientFields(line)
			if f["sub"] != "1" || f["cmd"] != "ping" {
				continue
			}
			if id == "" {
				id = f["id"]
			}
			if f["id"] != id {
				return fmt.Errorf("subscriber connection replaced: id %s, was %s", f["id"], id)
			}
			// age counts whole seconds of the server's clock: 2 is more
			// than one second.
			if age, _ := strconv.Atoi(f["age"]); age < 2 {
				return fmt.Errorf("connection %s only %ss old", id, f["age"])
			}
			return nil
		}
		return fmt.Errorf("no pinging subscriber in CLIENT LIST")
	})
	r.Client.Publish(ctx, "ch", "still here")
	select {
	case p := <-got:
		if p != "still here" {
			t.Fatalf("got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("message lost after pings")
	}
	if n := subscribed.Load(); n != 1 {
		t.Fatalf("resubscribed %d times on a healthy connection", n-1)
	}
}

// clientFields splits one CLIENT LIST line into its key=value fields.
func clientFields(line string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}
