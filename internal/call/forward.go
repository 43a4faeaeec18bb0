package call

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EventTopic is the cluster bus topic the EventForwarder publishes on.
const EventTopic = "call.events"

// EventPublisher sends one message to every subscriber of a topic across
// the cluster. The cluster bus satisfies it; package call does not import
// it, so any publisher (or a test double) will do.
type EventPublisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// EventForwarderConfig tunes an EventForwarder.
type EventForwarderConfig struct {
	// Node is stamped on every forwarded event (Event.Node), so consumers
	// know which node holds the call.
	Node string
	// Topic defaults to EventTopic.
	Topic string
	// Buffer is how many events may wait for the publisher (default 4096);
	// beyond that they are dropped and counted, never waited for.
	Buffer int
	// PublishTimeout bounds one Publish (default 2s), so a stuck bus costs
	// a bounded number of events rather than all of them.
	PublishTimeout time.Duration
	// DrainTimeout bounds how long Run keeps forwarding the events already
	// buffered after ctx is cancelled (default 2s): the last calls' ended
	// events matter most to consumers.
	DrainTimeout time.Duration
}

// EventForwarderDeps are what an EventForwarder reads from and writes to.
type EventForwarderDeps struct {
	Manager   *Manager
	Publisher EventPublisher
	Logger    *slog.Logger
	// Registry, if set, gets redial_call_events_forward_errors_total.
	Registry *prometheus.Registry
}

// EventForwarder publishes this node's call events, as JSON, on the cluster
// bus, for nodes and integrations that asked for them.
type EventForwarder struct {
	cfg  EventForwarderConfig
	pub  EventPublisher
	log  *slog.Logger
	sub  *EventSub
	errs prometheus.Counter

	failing bool // the last publish failed; only Run's goroutine uses it
	failed  int  // publishes failed since the last success
}

// NewEventForwarder builds a forwarder. It subscribes at once, so events of
// calls placed before Run starts are kept (up to Buffer) and forwarded.
func NewEventForwarder(cfg EventForwarderConfig, deps EventForwarderDeps) (*EventForwarder, error) {
	if deps.Manager == nil || deps.Publisher == nil {
		return nil, errors.New("call: event forwarder needs a manager and a publisher")
	}
	if cfg.Topic == "" {
		cfg.Topic = EventTopic
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	f := &EventForwarder{cfg: cfg, pub: deps.Publisher, log: deps.Logger.With("component", "call-events"),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_call_events_forward_errors_total",
			Help: "Call events the cluster bus did not take."})}
	if deps.Registry != nil {
		if err := deps.Registry.Register(f.errs); err != nil {
			return nil, fmt.Errorf("call: event forwarder metrics: %w", err)
		}
	}
	f.sub = deps.Manager.Subscribe(cfg.Buffer)
	return f, nil
}

// Run forwards events until ctx is cancelled, then forwards what is still
// buffered (bounded by DrainTimeout) and unsubscribes. Run once.
func (f *EventForwarder) Run(ctx context.Context) error {
	defer f.sub.Close()
	for {
		select {
		case <-ctx.Done():
			f.drain(ctx)
			return nil
		case ev, ok := <-f.sub.C:
			if !ok {
				return errors.New("call: event forwarder: subscription closed (Run called twice?)")
			}
			f.forward(ctx, ev)
		}
	}
}

// drain forwards the buffered events on a context of its own: ctx is
// already cancelled, and the calls that just drained on shutdown emitted
// their ended events into the buffer.
func (f *EventForwarder) drain(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.DrainTimeout)
	defer cancel()
	for dctx.Err() == nil {
		select {
		case ev := <-f.sub.C:
			f.forward(dctx, ev)
		default:
			return
		}
	}
	if n := len(f.sub.C); n > 0 {
		f.log.Warn("call: event forwarder stopped with events unsent", "events", n)
	}
}

func (f *EventForwarder) forward(ctx context.Context, ev Event) {
	ev.Node = f.cfg.Node
	payload, err := json.Marshal(ev)
	if err != nil {
		// An Event is plain data; this cannot happen, but say so if it does.
		f.log.Error("call: event not encodable", "call_ref", ev.CallRef, "event", ev.Type, "error", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, f.cfg.PublishTimeout)
	err = f.pub.Publish(pctx, f.cfg.Topic, payload)
	cancel()
	if err != nil {
		f.errs.Inc()
		f.failed++
		// One line per outage, not per event: at thousands of calls per
		// second a down bus would flood the log.
		if !f.failing {
			f.failing = true
			f.log.Warn("call: publishing call events failed", "call_ref", ev.CallRef, "event", ev.Type,
				"topic", f.cfg.Topic, "error", err)
		}
		return
	}
	if f.failing {
		f.log.Info("call: publishing call events works again", "call_ref", ev.CallRef, "topic", f.cfg.Topic,
			"events_lost", f.failed)
		f.failing, f.failed = false, 0
	}
}
