package call_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/call"
	"redial/internal/testenv"
)

// fakeBus is a test double for the cluster bus: it keeps what is
// published, or fails with err.
type fakeBus struct {
	mu     sync.Mutex
	topics []string
	events []call.Event
	err    error
}

func (b *fakeBus) Publish(ctx context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	var ev call.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return fmt.Errorf("fake bus: payload %s: %w", payload, err)
	}
	b.topics = append(b.topics, topic)
	b.events = append(b.events, ev)
	return nil
}

func (b *fakeBus) setErr(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
}

// of returns the published events of ref and their topics.
func (b *fakeBus) of(ref string) (evs []call.Event, topics []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, ev := range b.events {
		if ev.CallRef == ref {
			evs = append(evs, ev)
			topics = append(topics, b.topics[i])
		}
	}
	return evs, topics
}

// runForwarder runs f until the test ends.
func runForwarder(t *testing.T, f *call.EventForwarder) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("forwarder: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// notDialed is a request that stops before its INVITE (OnInvite fails):
// a call with events and no SIP traffic.
func notDialed(ref string) call.Request {
	req := request(ref, "15551250000", "8888")
	req.OnInvite = func() error { return errors.New("claim lost") }
	return req
}

// The forwarder publishes each event of a call, as JSON on call.events,
// in order and stamped with the node.
func TestForwarderPublishesCallEvents(t *testing.T) {
	r := testenv.StartRedis(t)
	busy := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+busy.Addr)
	n := startNode(t, r)
	bus := &fakeBus{}
	f, err := call.NewEventForwarder(call.EventForwarderConfig{Node: "n1"},
		call.EventForwarderDeps{Manager: n.calls, Publisher: bus})
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)

	if _, err := n.calls.Place(context.Background(), request("fw-1", "15551250001", "8888")); err != nil {
		t.Fatal(err)
	}
	var evs []call.Event
	var topics []string
	testenv.WaitFor(t, 5*time.Second, func() error {
		evs, topics = bus.of("fw-1")
		if len(evs) == 0 || evs[len(evs)-1].Type != call.EventEnded {
			return fmt.Errorf("published so far: %v", types(evs))
		}
		return nil
	})
	wantTypes(t, evs, call.EventCreated, call.EventEnded)
	for i, ev := range evs {
		if topics[i] != "call.events" || ev.Node != "n1" || ev.CampaignRef != "camp" || ev.ContactRef != "contact-fw-1" {
			t.Fatalf("event %d on %q: %+v", i, topics[i], ev)
		}
	}
	if end := evs[1]; end.Disposition != call.Busy || end.SIPCode != 486 || end.Number != "15551250001" ||
		end.Line != "l1" || end.Attempt != 1 || end.Time.IsZero() {
		t.Fatalf("ended: %+v", end)
	}
}

// A failing bus costs events, counted, never the calls; once it works
// again events flow. Events still buffered when Run is cancelled are
// forwarded before Run returns.
func TestForwarderSurvivesBusErrorsAndDrains(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "l1", "g1", "sip:127.0.0.1:9") // never dialed: OnInvite fails first
	n := startNode(t, r)
	bus := &fakeBus{err: errors.New("bus down")}
	reg := prometheus.NewRegistry()
	f, err := call.NewEventForwarder(call.EventForwarderConfig{Node: "n1"},
		call.EventForwarderDeps{Manager: n.calls, Publisher: bus, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop := runForwarder(t, f)

	out, err := n.calls.Place(context.Background(), notDialed("fw-2"))
	if err != nil || !out.NotDialed {
		t.Fatalf("place: %+v, %v", out, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got, _ := testenv.Metric(t, reg, "redial_call_events_forward_errors_total", nil); got != 2 {
			return fmt.Errorf("forward errors: %v, want 2", got)
		}
		return nil
	})

	bus.setErr(nil)
	// Placed before Run starts draining, forwarded by the drain at the
	// latest: Place returns after the ended event is in the buffer.
	if _, err := n.calls.Place(context.Background(), notDialed("fw-3")); err != nil {
		t.Fatal(err)
	}
	stop()
	evs, _ := bus.of("fw-3")
	wantTypes(t, evs, call.EventCreated, call.EventEnded)
	if !evs[1].NotDialed || evs[1].Disposition != "" {
		t.Fatalf("ended: %+v", evs[1])
	}
	if evs, _ := bus.of("fw-2"); len(evs) != 0 {
		t.Fatalf("events published while the bus was down: %v", types(evs))
	}
}

// NewEventForwarder needs its manager and publisher.
func TestNewEventForwarderValidates(t *testing.T) {
	if _, err := call.NewEventForwarder(call.EventForwarderConfig{}, call.EventForwarderDeps{Publisher: &fakeBus{}}); err == nil {
		t.Fatal("no error without a manager")
	}
}
