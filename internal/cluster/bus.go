package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/store"
)

// Request errors. Match them with errors.Is.
var (
	// ErrNodeDead: the target node is not alive (checked before sending,
	// and while waiting when the directory announces its death).
	ErrNodeDead = errors.New("node dead")
	// ErrTimeout: no reply within the request's timeout.
	ErrTimeout = errors.New("request timed out")
	// ErrNoHandler: the target node has no handler for the method.
	ErrNoHandler = errors.New("no handler for method")
	// ErrTooLarge: a payload is over BusConfig.MaxPayload.
	ErrTooLarge = errors.New("payload too large")
	// ErrBusStopped: the bus stopped while the request was waiting.
	ErrBusStopped = errors.New("bus stopped")
)

// RemoteError is an error returned by the handler on the target node; its
// text travels back in the reply.
type RemoteError struct {
	Host, Method, Message string
	// err is the handler's own error when the request was handled locally.
	err error
}

// Error names the node and method.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("cluster: %s on node %s: %s", e.Method, e.Host, e.Message)
}

// Unwrap is the handler's error for a request this node handled itself.
func (e *RemoteError) Unwrap() error { return e.err }

// DefaultMaxPayload is the default cap on a message, request or reply
// payload: pub/sub delivers a message to every subscriber at once, so one
// huge message stalls every node.
const DefaultMaxPayload = 1 << 20

// DefaultRequestTimeout is used when Request is given no timeout.
const DefaultRequestTimeout = 5 * time.Second

// BusConfig configures a Bus.
type BusConfig struct {
	// Host is this node's name; it receives requests on its own channel.
	Host string
	// MaxPayload caps payloads (default DefaultMaxPayload).
	MaxPayload int
	// MaxHandlers caps requests being handled at once; more are refused
	// with an error reply (default 256).
	MaxHandlers int
}

// BusDeps are the Bus's collaborators.
type BusDeps struct {
	Store *store.Store
	// Directory tells whether a request's target is alive; without one,
	// requests to dead nodes end by timeout.
	Directory *Directory
	Logger    *slog.Logger
	Registry  *prometheus.Registry
}

// Message is one message published on the bus, or a gap notice.
type Message struct {
	Topic string
	// From is the publishing node.
	From    string
	Payload []byte
	// Gap means "you may have missed messages before this one": the bus
	// resubscribed after a Redis reconnect, or this subscriber's buffer
	// was full. Topic is set, From and Payload are empty.
	Gap bool
}

// Handler answers a request; from is the requesting node. ctx ends at the
// requester's timeout or when the bus stops.
type Handler func(ctx context.Context, from string, req []byte) ([]byte, error)

// Subscription receives the messages of one topic.
type Subscription struct {
	// C delivers the messages; it is closed by Close.
	C <-chan Message

	b     *Bus
	topic string
	ch    chan Message
	// gap (guarded by b.mu) means a Gap notice is owed before the next
	// message.
	gap  bool
	once sync.Once
}

// Close unsubscribes and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		delete(s.b.subs[s.topic], s)
		if len(s.b.subs[s.topic]) == 0 {
			delete(s.b.subs, s.topic)
		}
		close(s.ch)
	})
}

// envelope is the JSON of every bus message. Kind "pub" goes to every
// node; "req" and "rep" go to one node's channel.
type envelope struct {
	Kind   string `json:"kind"`
	From   string `json:"from"`
	Topic  string `json:"topic,omitempty"`
	Method string `json:"method,omitempty"`
	ID     string `json:"id,omitempty"`
	// Payload is base64 in JSON.
	Payload   []byte `json:"payload,omitempty"`
	Error     string `json:"error,omitempty"`
	Code      string `json:"code,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

const (
	kindPub = "pub"
	kindReq = "req"
	kindRep = "rep"

	codeNoHandler = "no_handler"
)

// maxHandlerTimeout bounds how long a remote requester may make this node
// work on its request.
const maxHandlerTimeout = 5 * time.Minute

type result struct {
	payload []byte
	err     error
}

type pending struct {
	host, method string
	ch           chan result
}

// Bus is the cluster bus of one node.
type Bus struct {
	cfg BusConfig
	st  *store.Store
	dir *Directory
	log *slog.Logger

	idPrefix string
	seq      atomic.Uint64
	sem      chan struct{}

	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	subs     map[string]map[*Subscription]struct{}
	handlers map[string]Handler
	pending  map[string]*pending

	warnMu     sync.Mutex
	lastWarn   time.Time
	suppressed int

	mDropped   *prometheus.CounterVec
	mMalformed prometheus.Counter
}

// NewBus builds a bus; Run connects it.
func NewBus(cfg BusConfig, deps BusDeps) (*Bus, error) {
	if cfg.Host == "" {
		return nil, errors.New("cluster: bus: Host is required")
	}
	if deps.Store == nil {
		return nil, errors.New("cluster: bus: Store is required")
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.MaxHandlers <= 0 {
		cfg.MaxHandlers = 256
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("cluster: bus: request id prefix: %w", err)
	}
	b := &Bus{cfg: cfg, st: deps.Store, dir: deps.Directory, log: deps.Logger.With("component", "bus"),
		idPrefix: hex.EncodeToString(rnd[:]), sem: make(chan struct{}, cfg.MaxHandlers), ready: make(chan struct{}),
		subs: map[string]map[*Subscription]struct{}{}, handlers: map[string]Handler{}, pending: map[string]*pending{},
		mDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_bus_dropped_total",
			Help: "Bus messages dropped because a subscriber's buffer was full."}, []string{"topic"}),
		mMalformed: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_bus_malformed_total",
			Help: "Bus messages dropped because they did not decode or did not belong on their channel."}),
	}
	if deps.Registry != nil {
		for _, c := range []prometheus.Collector{b.mDropped, b.mMalformed} {
			if err := deps.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: bus: register metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Ready is closed once the bus is first subscribed.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Run listens on the bus channels until ctx is cancelled, then waits for
// the requests it is handling (handlers get a cancelled ctx) and fails the
// requests still waiting for a reply with ErrBusStopped.
func (b *Bus) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if b.dir != nil {
		deaths, unsubscribe := b.dir.Deaths()
		defer unsubscribe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case h := <-deaths:
					b.failPending(func(p *pending) bool { return p.host == h }, ErrNodeDead)
				}
			}
		}()
	}
	// A Gap owed to a subscriber whose buffer was full goes out as soon as
	// it has room, even if no further message comes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.flushGaps()
			}
		}
	}()
	channels := []string{b.st.BusAllChannel(), b.st.BusNodeChannel(b.cfg.Host)}
	err := Listen(ctx, b.st, channels,
		func(channel, payload string) { b.dispatch(ctx, &wg, channel, payload) },
		b.subscribed)
	wg.Wait()
	b.failPending(func(*pending) bool { return true }, ErrBusStopped)
	return err
}

// subscribed runs after every confirmed (re)subscription.
func (b *Bus) subscribed() {
	first := false
	b.readyOnce.Do(func() {
		first = true
		close(b.ready)
	})
	if first {
		return
	}
	b.log.Info("cluster: bus resubscribed; subscribers get a gap notice")
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, set := range b.subs {
		for s := range set {
			s.gap = true
			b.offerGap(s)
		}
	}
	// Replies published while we were away are lost; the requests end by
	// their timeouts.
}

// Subscribe receives every message published on topic from now on. buf is
// the channel's capacity (at least 1): delivery never waits for a slow
// subscriber, it drops the message, counts it and owes a Gap notice.
func (b *Bus) Subscribe(topic string, buf int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	ch := make(chan Message, buf)
	s := &Subscription{C: ch, b: b, topic: topic, ch: ch}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[topic] == nil {
		b.subs[topic] = map[*Subscription]struct{}{}
	}
	b.subs[topic][s] = struct{}{}
	return s
}

// Publish sends payload to the subscribers of topic on every node, this
// one included.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	if topic == "" {
		return errors.New("cluster: bus publish: empty topic")
	}
	if len(payload) > b.cfg.MaxPayload {
		return fmt.Errorf("cluster: bus publish on %q: %d bytes: %w (max %d)", topic, len(payload), ErrTooLarge, b.cfg.MaxPayload)
	}
	data, err := json.Marshal(envelope{Kind: kindPub, From: b.cfg.Host, Topic: topic, Payload: payload})
	if err != nil {
		return fmt.Errorf("cluster: bus publish on %q: encode: %w", topic, err)
	}
	if _, err := b.st.Publish(ctx, b.st.BusAllChannel(), data); err != nil {
		return fmt.Errorf("cluster: bus publish on %q: %w", topic, err)
	}
	return nil
}

// Handle sets the handler of method (nil removes it). Handlers run on
// their own goroutine per request, at most MaxHandlers at once.
func (b *Bus) Handle(method string, h Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h == nil {
		delete(b.handlers, method)
		return
	}
	b.handlers[method] = h
}

func (b *Bus) handler(method string) Handler {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handlers[method]
}

// Request asks node host to run method on req and returns its reply. It
// fails fast with ErrNodeDead when the directory does not see host alive,
// with ErrNoHandler when host has no handler, ErrTimeout after timeout
// (DefaultRequestTimeout when zero), and a *RemoteError carrying the
// handler's message when the handler failed. A request to this node runs
// the handler directly, on the caller's goroutine.
func (b *Bus) Request(ctx context.Context, host, method string, req []byte, timeout time.Duration) ([]byte, error) {
	what := fmt.Sprintf("cluster: request %s to node %s", method, host)
	if len(req) > b.cfg.MaxPayload {
		return nil, fmt.Errorf("%s: %d bytes: %w (max %d)", what, len(req), ErrTooLarge, b.cfg.MaxPayload)
	}
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	if host == b.cfg.Host {
		return b.local(ctx, what, method, req, timeout)
	}
	if b.dir != nil {
		alive, err := b.dir.Alive(ctx, []string{host})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if !alive[host] {
			return nil, fmt.Errorf("%s: %w", what, ErrNodeDead)
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	// The reply comes back on our own channel: wait until we listen on it.
	select {
	case <-b.ready:
	case <-timer.C:
		return nil, fmt.Errorf("%s: %w after %v (this node's bus is not subscribed)", what, ErrTimeout, timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	id := b.idPrefix + "-" + strconv.FormatUint(b.seq.Add(1), 36)
	p := &pending{host: host, method: method, ch: make(chan result, 1)}
	b.mu.Lock()
	b.pending[id] = p
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	data, err := json.Marshal(envelope{Kind: kindReq, From: b.cfg.Host, Method: method, ID: id, Payload: req,
		TimeoutMS: timeout.Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("%s: encode: %w", what, err)
	}
	n, err := b.st.Publish(ctx, b.st.BusNodeChannel(host), data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Nobody listening on its channel: the node is alive by its heartbeat
	// but its bus is not (yet, or any more) subscribed. On Redis Cluster
	// the count covers one shard only, so it proves nothing there.
	if n == 0 && !b.st.IsCluster() {
		return nil, fmt.Errorf("%s: no bus listening on its channel: %w", what, ErrNodeDead)
	}
	select {
	case r := <-p.ch:
		var remote *RemoteError
		if errors.As(r.err, &remote) {
			return nil, remote // names node and method already
		}
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w", what, r.err)
		}
		return r.payload, nil
	case <-timer.C:
		return nil, fmt.Errorf("%s: %w after %v", what, ErrTimeout, timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// local handles a request to this node.
func (b *Bus) local(ctx context.Context, what, method string, req []byte, timeout time.Duration) ([]byte, error) {
	h := b.handler(method)
	if h == nil {
		return nil, fmt.Errorf("%s: %w", what, ErrNoHandler)
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := callHandler(hctx, h, b.cfg.Host, req)
	if hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return nil, fmt.Errorf("%s: %w after %v", what, ErrTimeout, timeout)
	}
	if err != nil {
		return nil, &RemoteError{Host: b.cfg.Host, Method: method, Message: err.Error(), err: err}
	}
	if len(out) > b.cfg.MaxPayload {
		return nil, fmt.Errorf("%s: reply of %d bytes: %w (max %d)", what, len(out), ErrTooLarge, b.cfg.MaxPayload)
	}
	return out, nil
}

// callHandler runs h, turning a panic into an error so one bad request
// cannot take the node down.
func callHandler(ctx context.Context, h Handler, from string, req []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, from, req)
}

// failPending ends the waiting requests that match with err.
func (b *Bus) failPending(match func(*pending) bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, p := range b.pending {
		if match(p) {
			select {
			case p.ch <- result{err: err}:
			default:
			}
			delete(b.pending, id)
		}
	}
}

// maxEnvelope bounds what dispatch decodes: the payload in base64 plus
// room for the other fields.
func (b *Bus) maxEnvelope() int { return b.cfg.MaxPayload/3*4 + 64<<10 }

// dispatch handles one message from Redis. It runs on Listen's goroutine,
// so it never blocks: deliveries are non-blocking and requests are handled
// on goroutines tracked by wg.
func (b *Bus) dispatch(ctx context.Context, wg *sync.WaitGroup, channel, payload string) {
	if len(payload) > b.maxEnvelope() {
		b.malformed(channel, fmt.Sprintf("%d bytes, over the %d byte cap", len(payload), b.maxEnvelope()), nil)
		return
	}
	var env envelope
	if err := json.Unmarshal([]byte(payload), &env); err != nil {
		b.malformed(channel, "not a bus envelope", err)
		return
	}
	mine := b.st.BusNodeChannel(b.cfg.Host)
	switch {
	case env.From == "":
		b.malformed(channel, "no sender", nil)
	case env.Kind == kindPub && channel == b.st.BusAllChannel() && env.Topic != "":
		b.deliver(Message{Topic: env.Topic, From: env.From, Payload: env.Payload})
	case env.Kind == kindReq && channel == mine && env.ID != "" && env.Method != "":
		b.serve(ctx, wg, env)
	case env.Kind == kindRep && channel == mine && env.ID != "":
		b.reply(env)
	default:
		b.malformed(channel, fmt.Sprintf("kind %q does not belong on this channel or lacks fields", env.Kind), nil)
	}
}

// deliver offers m to every subscriber of its topic.
func (b *Bus) deliver(m Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs[m.Topic] {
		if s.gap && !b.offerGap(s) {
			b.mDropped.WithLabelValues(m.Topic).Inc()
			continue
		}
		select {
		case s.ch <- m:
		default:
			s.gap = true
			b.mDropped.WithLabelValues(m.Topic).Inc()
		}
	}
}

// offerGap tries to hand s its owed Gap notice (b.mu held).
func (b *Bus) offerGap(s *Subscription) bool {
	select {
	case s.ch <- Message{Topic: s.topic, Gap: true}:
		s.gap = false
		return true
	default:
		return false
	}
}

func (b *Bus) flushGaps() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, set := range b.subs {
		for s := range set {
			if s.gap {
				b.offerGap(s)
			}
		}
	}
}

// serve runs the handler of a request from another node and publishes the
// reply on that node's channel.
func (b *Bus) serve(ctx context.Context, wg *sync.WaitGroup, req envelope) {
	rep := envelope{Kind: kindRep, From: b.cfg.Host, Method: req.Method, ID: req.ID}
	h := b.handler(req.Method)
	if h == nil {
		rep.Code = codeNoHandler
		b.send(ctx, req.From, rep)
		return
	}
	select {
	case b.sem <- struct{}{}:
	default:
		rep.Error = fmt.Sprintf("node %s is handling %d requests already", b.cfg.Host, b.cfg.MaxHandlers)
		b.send(ctx, req.From, rep)
		return
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > maxHandlerTimeout {
		timeout = maxHandlerTimeout
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-b.sem }()
		hctx, cancel := context.WithTimeout(ctx, timeout)
		out, err := callHandler(hctx, h, req.From, req.Payload)
		cancel()
		switch {
		case err != nil:
			rep.Error = err.Error()
		case len(out) > b.cfg.MaxPayload:
			rep.Error = fmt.Sprintf("reply of %d bytes: %v (max %d)", len(out), ErrTooLarge, b.cfg.MaxPayload)
		default:
			rep.Payload = out
		}
		b.send(ctx, req.From, rep)
	}()
}

// send publishes a reply to host's channel.
func (b *Bus) send(ctx context.Context, host string, rep envelope) {
	data, err := json.Marshal(rep)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = b.st.Publish(sctx, b.st.BusNodeChannel(host), data)
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		b.log.Warn("cluster: bus reply not sent", "to", host, "method", rep.Method, "id", rep.ID, "error", err)
	}
}

// reply hands a reply to the request waiting for it.
func (b *Bus) reply(rep envelope) {
	b.mu.Lock()
	p := b.pending[rep.ID]
	if p != nil && p.host == rep.From {
		delete(b.pending, rep.ID)
	}
	b.mu.Unlock()
	switch {
	case p == nil:
		// The requester gave up already (timeout, death notice).
		b.log.Debug("cluster: late bus reply dropped", "from", rep.From, "id", rep.ID)
		return
	case p.host != rep.From:
		b.malformed(b.st.BusNodeChannel(b.cfg.Host), fmt.Sprintf("reply %s from %s, but the request went to %s", rep.ID, rep.From, p.host), nil)
		return
	}
	var r result
	switch {
	case rep.Code == codeNoHandler:
		r.err = ErrNoHandler
	case rep.Error != "":
		r.err = &RemoteError{Host: rep.From, Method: p.method, Message: rep.Error}
	default:
		r.payload = rep.Payload
	}
	p.ch <- r
}

// malformed counts a dropped message and logs it, at most once every ten
// seconds so a misbehaving publisher cannot flood the log.
func (b *Bus) malformed(channel, reason string, err error) {
	b.mMalformed.Inc()
	b.warnMu.Lock()
	now := time.Now()
	if now.Sub(b.lastWarn) < 10*time.Second {
		b.suppressed++
		b.warnMu.Unlock()
		return
	}
	n := b.suppressed
	b.suppressed = 0
	b.lastWarn = now
	b.warnMu.Unlock()
	b.log.Warn("cluster: malformed bus message dropped", "channel", channel, "reason", reason, "error", err,
		"suppressed_since_last_warning", n)
}
