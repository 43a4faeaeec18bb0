// Package notify publishes CDRs and call notifications to Redis, keeping
// them in a local append-only spool while Redis is unreachable and
// replaying the spool, in order, when it is back.
//
// Delivery is at least once: a notification accepted by PublishCDR (nil
// error) is on Redis or fsynced in the spool. A crash or a push that failed
// part-way can deliver one twice; consumers drop the duplicate by cdr_id.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"redial/internal/logtext"
	"redial/internal/store"
)

// Config configures a Publisher.
type Config struct {
	// SpoolDir holds the spool (created if missing). Required.
	SpoolDir string
	// RetryEvery is how often a spool that cannot be delivered is retried
	// (default 1s).
	RetryEvery time.Duration
	// PushTimeout bounds one Redis push before the notification goes to the
	// spool instead (default 2s).
	PushTimeout time.Duration
	// FlushTimeout bounds the last replay attempt when Run stops
	// (default 5s). What is left stays in the spool for the next start.
	FlushTimeout time.Duration
}

// Deps are the Publisher's collaborators.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	// Registry receives the metrics; nil leaves them unregistered.
	Registry *prometheus.Registry
}

// ErrClosed is returned by the Publish methods after Close.
var ErrClosed = errors.New("notify: publisher closed")

// Publisher delivers notifications to Redis through the local spool.
//
// A notification is pushed straight to Redis when the spool is empty. If
// the push fails, or the spool already holds something (order is kept), it
// is appended to the spool and Run delivers it later.
type Publisher struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	m     metrics
	kick  chan struct{}
	// outage logs failed pushes once per Redis outage, not once per
	// notification or retry.
	outage *logtext.Outage

	// direct combines straight pushes of concurrent calls.
	direct directBatches

	mu     sync.Mutex
	sp     *spool
	closed bool

	// Only Run's goroutine touches these.
	down     bool
	replayed int

	// spoolEmpty is closed the first time the spool is found empty: what a
	// previous run left (CDRs and the claim settlements after them) is on
	// Redis.
	spoolEmpty     chan struct{}
	spoolEmptyOnce sync.Once
}

type metrics struct {
	notifications *prometheus.CounterVec // kind, result
	spoolItems    prometheus.Gauge
	redisErrors   *prometheus.CounterVec // op
}

// New opens (or creates) the spool in cfg.SpoolDir; records left by a
// previous run are replayed by Run. Only one Publisher (or process) may use
// a spool directory at a time.
func New(cfg Config, deps Deps) (*Publisher, error) {
	if cfg.SpoolDir == "" {
		return nil, errors.New("notify: config: spool dir is required")
	}
	if deps.Store == nil {
		return nil, errors.New("notify: deps: store is required")
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = time.Second
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = 2 * time.Second
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 5 * time.Second
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(cfg.SpoolDir, logger)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, store: deps.Store, log: logger, m: m, kick: make(chan struct{}, 1), sp: sp,
		spoolEmpty: make(chan struct{}), outage: logtext.NewOutage(logger, logtext.OutageConfig{Name: "notify"})}
	p.direct = p.newDirectBatches()
	m.spoolItems.Set(float64(sp.pending))
	if sp.pending > 0 {
		logger.Info("notify: spool holds undelivered notifications from a previous run",
			"items", sp.pending, "dir", cfg.SpoolDir)
	}
	return p, nil
}

func newMetrics(reg *prometheus.Registry) (metrics, error) {
	m := metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redial_notifications_total",
			Help: "Notifications by kind (cdr, inbound, outbound_call, settle) and result: published reached Redis (directly or replayed from the spool), spooled went to the local spool.",
		}, []string{"kind", "result"}),
		spoolItems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redial_notify_spool_items",
			Help: "Notifications in the local spool waiting for Redis.",
		}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redial_redis_errors_total",
			Help: "Failed Redis operations by operation.",
		}, []string{"op"}),
	}
	var err error
	if m.notifications, err = register(reg, m.notifications); err != nil {
		return m, err
	}
	if m.spoolItems, err = register(reg, m.spoolItems); err != nil {
		return m, err
	}
	if m.redisErrors, err = register(reg, m.redisErrors); err != nil {
		return m, err
	}
	for _, k := range []string{kindCDR, kindInbound, kindOutboundCall, kindSettle, kindDisposition} {
		m.notifications.WithLabelValues(k, "published")
		m.notifications.WithLabelValues(k, "spooled")
		m.redisErrors.WithLabelValues(pushOp(k))
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same name (redial_redis_errors_total is shared with other components).
func register[T prometheus.Collector](reg *prometheus.Registry, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("notify: register metrics: %w", err)
	}
	return c, nil
}

func pushOp(kind string) string { return "notify_push_" + kind }

// PublishCDR publishes one CDR, filling c.CDRID with NewID when empty. It
// returns nil once the CDR is on Redis or fsynced in the spool; the error
// is non-nil only when even the spool write failed (the CDR is then lost
// and the caller should log it in full).
func (p *Publisher) PublishCDR(ctx context.Context, c *CDR) error {
	if c == nil {
		return errors.New("notify: PublishCDR: nil CDR")
	}
	if c.CDRID == "" {
		c.CDRID = NewID()
	}
	// Straight to the CDR's own encoder: json.Marshal would check and
	// compact its output again.
	env, payload := c.encode(true)
	return p.publish(ctx, kindCDR, payload, env, nil, logAttrs{slog.String("call_ref", c.CallRef), slog.String("cdr_id", c.CDRID)})
}

// PublishInbound publishes an inbound-call notification: payload (any
// JSON-encodable value) goes into {"type":"call","payload":...} on
// <prefix>:inbound, with the same spool guarantees as PublishCDR.
func (p *Publisher) PublishInbound(ctx context.Context, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("notify: inbound notification: encode: %w", err)
	}
	return p.publish(ctx, kindInbound, b, nil, nil, logAttrs{})
}

// Settle finishes a claim (acknowledges it, writes it back, parks it)
// with the same durability as the CDR published before it: straight to
// Redis when the spool is empty, otherwise (or when Redis fails) appended
// to the spool behind that CDR and carried out, in order, when Redis is
// back. A claim whose call has a CDR must never be left claimed: a
// recovery would take it for an interrupted call.
//
// It returns the store's ErrClaimGone or ErrPayloadGone when Redis said
// so at once (nothing to retry), nil when done or spooled, and an error
// only when even the spool write failed.
func (p *Publisher) Settle(ctx context.Context, op store.SettleOp) error {
	return p.publish(ctx, kindSettle, nil, nil, &op, logAttrs{slog.String("ledger", op.Ledger), slog.String("member", logtext.Truncate(op.Member, 200))})
}

// Replayed is closed once the spool has been found empty: everything a
// previous run of this node spooled has been carried out.
func (p *Publisher) Replayed() <-chan struct{} { return p.spoolEmpty }

// Spooled returns how many notifications wait in the spool.
func (p *Publisher) Spooled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	return p.sp.pending
}

// logAttrs name a notification in log lines. They become arguments only
// when a line is written, which a successful push never does: boxed up
// front, they cost every CDR two allocations (issue 14).
type logAttrs [2]slog.Attr

// args returns the set attributes followed by more.
func (a logAttrs) args(more ...any) []any {
	out := make([]any, 0, len(a)+len(more))
	for _, x := range a {
		if x.Key != "" {
			out = append(out, x)
		}
	}
	return append(out, more...)
}

// publish delivers one record: payload, or for a settle op (payload nil)
// op, encoded only if it goes to the spool. A CDR comes with its envelope
// too (CDR.encode), which holds the payload.
func (p *Publisher) publish(ctx context.Context, kind string, payload, env []byte, op *store.SettleOp, attrs logAttrs) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	direct := p.sp.pending == 0
	p.mu.Unlock()

	if direct {
		// The caller's cancellation must not cost a CDR: only our timeout
		// bounds the push (pushDirect), and a failure falls through to the
		// spool.
		if ctx.Done() != nil {
			// Not wrapped again when the caller stripped it already.
			ctx = context.WithoutCancel(ctx)
		}
		err := p.pushDirect(ctx, kind, payload, env, op)
		if err == nil {
			p.outage.OK()
			p.m.notifications.WithLabelValues(kind, "published").Inc()
			return nil
		}
		if settled(err) {
			// Redis answered: the claim was gone. Nothing to keep.
			return err
		}
		p.m.redisErrors.WithLabelValues(pushOp(kind)).Inc()
		p.outage.Fail("notify: Redis push failed; notifications are spooled until it is back", err, attrs.args("kind", kind)...)
	}

	if op != nil {
		b, err := json.Marshal(*op)
		if err != nil {
			return fmt.Errorf("notify: settle claim in %s: encode: %w", op.Keys[0], err)
		}
		payload = b
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	err := p.sp.append(kind, payload)
	pending := p.sp.pending
	p.m.spoolItems.Set(float64(pending))
	p.mu.Unlock()
	if err != nil {
		p.log.Error("notify: notification LOST: spool write failed",
			attrs.args("kind", kind, "payload", string(payload), "err", err)...)
		return err
	}
	p.m.notifications.WithLabelValues(kind, "spooled").Inc()
	p.log.Debug("notify: spooled", attrs.args("kind", kind, "spooled", pending)...)
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

func (p *Publisher) push(ctx context.Context, kind string, payload []byte) error {
	switch kind {
	case kindInbound:
		return p.store.PushInbound(ctx, payload)
	case kindOutboundCall:
		return p.store.PushCampaignCall(ctx, payload)
	case kindDisposition:
		return p.store.PushDisposition(ctx, payload)
	case kindSettle:
		var op store.SettleOp
		if err := json.Unmarshal(payload, &op); err != nil {
			return fmt.Errorf("%w: settle record: %v", errUnusable, err)
		}
		return p.store.Settle(ctx, op)
	}
	return p.store.PushCDR(ctx, payload)
}

// errUnusable marks a spooled record that can never be carried out.
var errUnusable = errors.New("unusable record")

// settled reports whether err is Redis's definite answer to a settle op
// (the claim or its payload was gone): done, not to be retried.
func settled(err error) bool {
	return errors.Is(err, store.ErrClaimGone) || errors.Is(err, store.ErrPayloadGone)
}

// permanent reports whether a replayed record failed for good: undecodable,
// or refused by Redis itself (a script error, a wrong type) rather than
// lost on the way or refused while Redis is loading or failing over.
func permanent(err error) bool {
	if errors.Is(err, errUnusable) {
		return true
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, transient := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"} {
		if strings.HasPrefix(rerr.Error(), transient) {
			return false
		}
	}
	return true
}

// Run replays the spool whenever there is something in it and Redis takes
// it, retrying every RetryEvery while Redis is away. When ctx is cancelled
// it makes one last replay attempt (bounded by FlushTimeout) and returns
// nil; anything left stays in the spool for the next start.
func (p *Publisher) Run(ctx context.Context) error {
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		drained := p.drain(ctx)
		if ctx.Err() != nil {
			return p.flush(ctx)
		}
		if drained {
			var recheck <-chan time.Time
			if p.outage.Down() {
				// The outage ends (and says so) on a success at least
				// its quiet time after the last failure: keep checking.
				retry.Reset(p.cfg.RetryEvery)
				recheck = retry.C
			}
			select {
			case <-ctx.Done():
				return p.flush(ctx)
			case <-p.kick:
			case <-recheck:
			}
			continue
		}
		// Redis is away: ignore kicks until the retry interval has passed.
		retry.Reset(p.cfg.RetryEvery)
		select {
		case <-ctx.Done():
			return p.flush(ctx)
		case <-retry.C:
		}
	}
}

func (p *Publisher) flush(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FlushTimeout)
	defer cancel()
	p.drain(fctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if err := p.sp.syncProgress(); err != nil {
		p.log.Error("notify: spool progress sync failed; some notifications may be sent twice", "err", err)
	}
	if p.sp.pending > 0 {
		p.log.Warn("notify: stopping with undelivered notifications in the spool; they are sent on next start",
			"items", p.sp.pending, "dir", p.cfg.SpoolDir)
	}
	return nil
}

// drain delivers spooled records in order until the spool is empty (true)
// or a push fails or ctx ends (false).
func (p *Publisher) drain(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return false
		}
		rec, raw, end, ok, err := p.sp.peek()
		if !ok {
			if cerr := p.sp.compactIfDrained(); cerr != nil {
				p.log.Error("notify: spool compaction failed", "err", cerr)
			}
			p.mu.Unlock()
			p.recovered()
			if p.outage.Down() {
				// Nothing to replay: ask Redis itself.
				if perr := p.store.Ping(ctx); perr != nil {
					p.outage.Fail("notify: Redis unreachable; notifications are spooled until it is back", perr)
				} else {
					p.outage.OK()
				}
			}
			return true
		}
		if errors.Is(err, errCorrupt) {
			qerr := p.sp.quarantine(raw)
			aerr := p.sp.advance(end)
			p.m.spoolItems.Set(float64(p.sp.pending))
			p.mu.Unlock()
			p.log.Error("notify: unreadable spool record moved to "+corruptName,
				"dir", p.cfg.SpoolDir, "record", string(raw), "err", err, "quarantine_err", qerr, "progress_err", aerr)
			continue
		}
		p.mu.Unlock()
		if err != nil {
			p.log.Error("notify: spool read failed; retrying", "err", err)
			return false
		}

		pctx, cancel := context.WithTimeout(ctx, p.cfg.PushTimeout)
		err = p.push(pctx, rec.Kind, rec.Payload)
		cancel()
		switch {
		case err == nil:
		case settled(err):
			// Another node recovered the claim while this one was cut off.
			p.log.Warn("notify: spooled claim settlement found the claim gone", "record", logtext.Truncate(string(rec.Payload), 300), "err", err)
			err = nil
		case permanent(err):
			p.mu.Lock()
			qerr := p.sp.quarantine(raw)
			p.mu.Unlock()
			p.log.Error("notify: spooled record refused by Redis; moved to "+corruptName,
				"kind", rec.Kind, "record", logtext.Truncate(string(rec.Payload), 300), "err", err, "quarantine_err", qerr)
			err = nil
		}
		if err != nil {
			p.m.redisErrors.WithLabelValues(pushOp(rec.Kind)).Inc()
			p.down = true
			p.outage.Fail("notify: Redis unreachable; notifications are spooled until it is back", err, "spooled", p.Spooled())
			return false
		}
		p.outage.OK()
		p.mu.Lock()
		aerr := p.sp.advance(end)
		p.m.spoolItems.Set(float64(p.sp.pending))
		p.mu.Unlock()
		if aerr != nil {
			p.log.Error("notify: spool progress write failed; a restart may send some notifications twice", "err", aerr)
		}
		p.replayed++
		p.m.notifications.WithLabelValues(rec.Kind, "published").Inc()
	}
}

func (p *Publisher) recovered() {
	p.spoolEmptyOnce.Do(func() { close(p.spoolEmpty) })
	if p.replayed > 0 || p.down {
		p.log.Info("notify: spool replayed to Redis", "items", p.replayed)
	}
	p.down, p.replayed = false, 0
}

// Close releases the spool. Call it after Run has returned; notifications
// published afterwards fail with ErrClosed.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.sp.close(); err != nil {
		return fmt.Errorf("notify: close spool: %w", err)
	}
	return nil
}
