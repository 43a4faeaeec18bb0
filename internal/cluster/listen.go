package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
)

// listenPing is how long a subscription may stay silent before Listen
// pings it; a ping unanswered for as long again means a dead connection
// (one that died without the kernel telling us), which is then replaced.
// A variable so tests can shorten it.
var listenPing = 5 * time.Second

// Listen keeps a pub/sub subscription on channels alive until ctx is
// cancelled, across Redis restarts and reconnects, and returns nil then.
// onMessage is called for every message, in order, from Listen's goroutine
// (it must not block for long). onSubscribed is called each time the
// server has confirmed every channel: after the first subscription and
// after every resubscription, when messages published in between are lost,
// so the caller re-reads whatever state it follows.
//
// go-redis reconnects a PubSub on its next Receive after a connection
// error and sends SUBSCRIBE again; the server's confirmations come back
// from Receive as *redis.Subscription, which is what Listen counts.
func Listen(ctx context.Context, st *store.Store, channels []string, onMessage func(channel, payload string), onSubscribed func()) error {
	var (
		mu     sync.Mutex
		ps     *redis.PubSub
		closed bool
	)
	open := func() *redis.PubSub {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return nil
		}
		ps = st.Subscribe(ctx, channels...)
		return ps
	}
	// Receive does not return on ctx cancellation; closing the PubSub
	// makes it return at once.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		if ps != nil {
			ps.Close()
		}
	}()
	defer func() { <-stopped }()

	want := map[string]bool{}
	for _, c := range channels {
		want[c] = true
	}
	confirmed := map[string]bool{}
	cur := open()
	pingSent := false
	backoff := 50 * time.Millisecond
	for cur != nil {
		msg, err := cur.ReceiveTimeout(ctx, listenPing)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isTimeout(err) {
				if pingSent {
					// The ping went out but nothing came back: replace
					// the connection (go-redis only reconnects on errors).
					cur.Close()
					cur = open()
					clear(confirmed)
					pingSent = false
					continue
				}
				if perr := cur.Ping(ctx); perr != nil {
					clear(confirmed)
				} else {
					pingSent = true
				}
				continue
			}
			// The connection failed; the next Receive reconnects and
			// subscribes again. Wait a little so a Redis that is down is
			// not hammered.
			clear(confirmed)
			pingSent = false
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		pingSent = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" || !want[m.Channel] {
				continue
			}
			confirmed[m.Channel] = true
			if len(confirmed) == len(want) {
				clear(confirmed)
				onSubscribed()
			}
		case *redis.Message:
			onMessage(m.Channel, m.Payload)
		}
	}
	return nil
}

// isTimeout reports whether err is a read timeout (a quiet subscription),
// not a broken connection.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
