// Package schedule runs the scheduled dialer of seed 004 (numbers in a
// sorted set, dialed when due) and parses the cron strategies of seed 000.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/call"
	"redial/internal/cluster"
	"redial/internal/dialplan"
	"redial/internal/jsonfield"
	"redial/internal/lines"
	"redial/internal/logtext"
	"redial/internal/store"
	"redial/internal/validate"
)

// Config tunes the scheduled dialer.
type Config struct {
	Host string
	// Poll bounds how late a member added by someone else is noticed.
	// Default 20ms.
	Poll time.Duration
	// Batch is how many due members one claim takes. Default 200.
	Batch int
	// NoLineDelay is when a member that found no free line is due again
	// (the seed: now+60).
	NoLineDelay time.Duration
}

// Deps are what the scheduler drives.
type Deps struct {
	Store *store.Store
	Calls *call.Manager
	// Recoverer settles this node's leftover claims and recovers dead
	// nodes' claims.
	Recoverer *cluster.Recoverer
	// Settler acknowledges claims after their calls' CDRs.
	Settler  Settler
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
}

// Settler finishes claims with the durability of the CDRs before them
// (the notify publisher).
type Settler interface {
	Settle(ctx context.Context, op store.SettleOp) error
}

// failBackoff is how long the claim loop waits after a failed claim.
const failBackoff = time.Second

// Scheduler dials members of cti_schedule_dialer_number@<domain> when due.
type Scheduler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// outage logs Redis failures once per outage, not once per poll.
	outage *logtext.Outage

	ledger *store.Ledger

	cfgMu    sync.Mutex
	configs  map[string]scheduleConfig
	cfgAt    time.Time
	wake     chan struct{}
	inflight sync.WaitGroup

	mLate    prometheus.Histogram
	mClaimed prometheus.Counter
	mInvalid prometheus.Counter
}

// scheduleConfig is one entry of cti_schedule_dialer_config@<domain>.
type scheduleConfig struct {
	LineGroups  []string
	Destination dialplan.Destination
	Variables   map[string]string
	Err         error
}

// New builds a scheduler.
func New(cfg Config, deps Deps) (*Scheduler, error) {
	if deps.Store == nil || deps.Calls == nil || deps.Recoverer == nil || deps.Settler == nil || cfg.Host == "" {
		return nil, errors.New("schedule: needs store, call manager, recoverer, settler and host")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 200
	}
	if cfg.NoLineDelay <= 0 {
		cfg.NoLineDelay = 60 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Scheduler{cfg: cfg, deps: deps, log: deps.Logger.With("component", "schedule"), wake: make(chan struct{}, 1),
		ledger: deps.Store.ScheduleLedger(),
		mLate: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "redial_schedule_lateness_seconds",
			Help: "From a scheduled member's due time to its claim.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		mClaimed: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_schedule_claimed_total", Help: "Scheduled members claimed."}),
		mInvalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_schedule_invalid_total", Help: "Malformed scheduled members moved aside."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.mLate, s.mClaimed, s.mInvalid)
	}
	s.outage = logtext.NewOutage(s.log, logtext.OutageConfig{Name: "schedule"})
	return s, nil
}

// Wake makes the scheduler look for due members now (after `schedule add`).
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run claims due members until ctx is cancelled, then waits for the calls
// in progress.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.inflight.Wait()
	if err := s.ledger.EnsureHolder(ctx); err != nil {
		s.outage.Fail("schedule: registering as holder failed", err)
	}
	wait, unregister := s.deps.Recoverer.Register(s.ledger)
	defer unregister()
	if err := wait(ctx); err != nil {
		return nil // stopped before this node's leftovers could be settled
	}
	// One timer for every wait: the loop polls every few tens of
	// milliseconds, and a timer per poll was a good part of an idle node's
	// garbage (issue 14). Since Go 1.23 a stopped or reset timer delivers
	// no stale tick.
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		claims, next, err := s.ledger.ClaimDue(ctx, s.cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.outage.Fail("schedule: claiming due members failed; retrying", err)
		} else {
			s.outage.OK()
		}
		now := s.deps.Now()
		for _, c := range claims {
			s.mClaimed.Inc()
			s.mLate.Observe(math.Max(0, now.Sub(unixFloat(c.Score)).Seconds()))
			s.inflight.Add(1)
			go func(c store.Claim) {
				defer s.inflight.Done()
				s.handle(context.WithoutCancel(ctx), c)
			}(c)
		}
		if len(claims) == s.cfg.Batch {
			continue // more may be due
		}
		wait := s.cfg.Poll
		if err != nil {
			// Redis is away: retrying every Poll would only load the CPU.
			wait = failBackoff
		} else if !math.IsNaN(next) {
			if d := unixFloat(next).Sub(s.deps.Now()); d < wait {
				wait = d
			}
		}
		if wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
				t.Stop()
			case <-t.C:
			}
		}
	}
}

func unixFloat(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// member is one scheduled number (seed 004).
type member struct {
	Numbers   []string
	Expires   int64
	Config    string
	Variables map[string]string
	Contact   string
}

func decodeMember(raw string) (member, error) {
	var m member
	var doc struct {
		Params    map[string]json.RawMessage `json:"params"`
		Variables json.RawMessage            `json:"variables"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return m, fmt.Errorf("malformed JSON: %w", err)
	}
	if doc.Params == nil {
		return m, errors.New("params: required")
	}
	num := doc.Params["number"]
	var one string
	var many []string
	switch {
	case json.Unmarshal(num, &one) == nil && one != "":
		m.Numbers = []string{one}
	case json.Unmarshal(num, &many) == nil && len(many) > 0:
		m.Numbers = many
	default:
		var n json.Number
		if err := json.Unmarshal(num, &n); err == nil {
			if _, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
				m.Numbers = []string{n.String()}
				break
			}
		}
		return m, fmt.Errorf("params.number: want string or array of strings, got %s", validate.Truncate(string(num), 64))
	}
	if err := validate.Numbers("params.number", m.Numbers); err != nil {
		return m, err
	}
	if e, ok := doc.Params["expires"]; ok && string(e) != "null" {
		var f float64
		if err := json.Unmarshal(e, &f); err != nil {
			var s string
			if json.Unmarshal(e, &s) != nil {
				return m, fmt.Errorf("params.expires: want unix seconds, got %s", validate.Truncate(string(e), 64))
			}
			if f, err = strconv.ParseFloat(s, 64); err != nil {
				return m, fmt.Errorf("params.expires: want unix seconds, got %s", validate.Truncate(string(e), 64))
			}
		}
		// 0 means no expiry. A negative time, NaN or one past year 9999
		// is no time anyone means, and int64(f) would turn 1e300 into the
		// past: the member would be dropped as EXPIRED instead of dialed.
		if !(f >= 0 && f <= maxExpires) {
			return m, fmt.Errorf("params.expires: want unix seconds from 0 (never) to %d (end of year 9999), got %s", int64(maxExpires), validate.Truncate(string(e), 64))
		}
		m.Expires = int64(f)
	}
	if err := json.Unmarshal(doc.Params["config"], &m.Config); err != nil || m.Config == "" {
		return m, fmt.Errorf("params.config: want the name of a cti_schedule_dialer_config entry, got %s", validate.Truncate(string(doc.Params["config"]), 64))
	}
	if err := validate.Text("params.config", m.Config, validate.MaxNameLen); err != nil {
		return m, err
	}
	if c, ok := doc.Params["contact_ref"]; ok {
		json.Unmarshal(c, &m.Contact)
	}
	if err := validate.Ref("params.contact_ref", m.Contact); err != nil {
		return m, err
	}
	vars, err := jsonfield.Variables("variables", doc.Variables)
	if err != nil {
		return m, err
	}
	if err := validate.Variables(vars); err != nil {
		return m, err
	}
	m.Variables = vars
	if m.Variables == nil {
		m.Variables = map[string]string{}
	}
	return m, nil
}

// config returns a schedule config, re-reading the hash at most every 2 s.
func (s *Scheduler) config(ctx context.Context, name string) (scheduleConfig, bool) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if s.configs == nil || s.deps.Now().Sub(s.cfgAt) > 2*time.Second {
		raw, err := s.deps.Store.ScheduleConfigs(ctx)
		if err == nil {
			s.configs = map[string]scheduleConfig{}
			for n, v := range raw {
				s.configs[n] = parseConfig(s.deps.Store.ScheduleConfigKey(), n, v)
			}
			s.cfgAt = s.deps.Now()
		} else if s.configs == nil {
			return scheduleConfig{Err: err}, true
		}
	}
	c, ok := s.configs[name]
	return c, ok
}

func decodeConfig(key, name, raw string) scheduleConfig {
	var doc struct {
		Params    map[string]json.RawMessage `json:"params"`
		Variables json.RawMessage            `json:"variables"`
	}
	where := fmt.Sprintf("schedule: config %q in %s", name, key)
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return scheduleConfig{Err: fmt.Errorf("%s: malformed JSON: %w", where, err)}
	}
	var c scheduleConfig
	var one string
	if err := json.Unmarshal(doc.Params["line_group"], &c.LineGroups); err != nil {
		if json.Unmarshal(doc.Params["line_group"], &one) != nil || one == "" {
			return scheduleConfig{Err: fmt.Errorf("%s: params.line_group: want array of strings", where)}
		}
		c.LineGroups = []string{one}
	}
	if len(c.LineGroups) == 0 {
		return scheduleConfig{Err: fmt.Errorf("%s: params.line_group: required", where)}
	}
	if err := validate.LineGroups("params.line_group", c.LineGroups); err != nil {
		return scheduleConfig{Err: fmt.Errorf("%s: %w", where, err)}
	}
	str := func(k, def string) (string, error) {
		v, ok := doc.Params[k]
		if !ok || string(v) == "null" {
			return def, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			var n json.Number
			if json.Unmarshal(v, &n) == nil {
				return n.String(), nil
			}
			return "", fmt.Errorf("%s: params.%s: want string, got %s", where, k, validate.Truncate(string(v), 64))
		}
		return s, nil
	}
	var err error
	if c.Destination.Extension, err = str("destination_extension", ""); err != nil {
		return scheduleConfig{Err: err}
	}
	if c.Destination.Extension == "" {
		return scheduleConfig{Err: fmt.Errorf("%s: params.destination_extension: required", where)}
	}
	if err := validate.NumberField("params.destination_extension", c.Destination.Extension); err != nil {
		return scheduleConfig{Err: fmt.Errorf("%s: %w", where, err)}
	}
	if c.Destination.Dialplan, err = str("destination_dialplan", "XML"); err != nil {
		return scheduleConfig{Err: err}
	}
	if c.Destination.Context, err = str("destination_context", "default"); err != nil {
		return scheduleConfig{Err: err}
	}
	vars, err := jsonfield.Variables("variables", doc.Variables)
	if err == nil {
		err = validate.Variables(vars)
	}
	if err != nil {
		return scheduleConfig{Err: fmt.Errorf("%s: %w", where, err)}
	}
	c.Variables = vars
	return c
}

// handle dials one claimed member, or records why it was not.
func (s *Scheduler) handle(ctx context.Context, c store.Claim) {
	st := s.deps.Store
	log := s.log.With("member", logtext.Truncate(c.Member, 200))
	m, err := parseMember(c.Member)
	if err != nil {
		s.invalid(ctx, c, err.Error())
		return
	}
	cfg, ok := s.config(ctx, m.Config)
	if !ok {
		s.invalid(ctx, c, fmt.Sprintf("params.config: %q is not in %s", m.Config, st.ScheduleConfigKey()))
		return
	}
	if cfg.Err != nil {
		s.invalid(ctx, c, cfg.Err.Error())
		return
	}
	now := s.deps.Now()
	req := call.Request{
		Numbers: m.Numbers, LineGroups: cfg.LineGroups, Destination: cfg.Destination,
		// number < config < line (the line's variables are merged last by
		// the call).
		Variables:   lines.MergeVariables(m.Variables, cfg.Variables),
		CampaignRef: m.Config, ContactRef: m.Contact, ReturnOnNoLine: true,
		OnInvite: func() error { return s.ledger.Mark(ctx, c.Member) },
	}
	if m.Expires > 0 && now.Unix() >= m.Expires {
		s.expired(ctx, c, req, "expired before it could be dialed")
		return
	}
	out, err := s.deps.Calls.Place(ctx, req)
	if err != nil || out.NotDialed {
		retry := now.Add(s.cfg.NoLineDelay)
		if m.Expires > 0 && retry.Unix() >= m.Expires {
			s.expired(ctx, c, req, "no free line before it expired")
			return
		}
		if err := s.ledger.WriteBack(ctx, c.Member, "", retry); err != nil {
			log.Error("schedule: rescheduling failed; recovery will put it back", "error", err)
		}
		log.Info("schedule: no free line; written back", "at", retry)
		return
	}
	s.ack(ctx, c)
}

// ack finishes a claim after its CDR, through the notify spool.
func (s *Scheduler) ack(ctx context.Context, c store.Claim) {
	if err := s.deps.Settler.Settle(ctx, s.ledger.AckOp(c.Member)); err != nil {
		s.log.Error("schedule: ack failed", "member", logtext.Truncate(c.Member, 200), "error", err)
	}
}

func (s *Scheduler) expired(ctx context.Context, c store.Claim, req call.Request, reason string) {
	if err := s.deps.Calls.Record(ctx, req, call.Expired, reason); err != nil {
		s.log.Error("schedule: EXPIRED CDR not written; member kept claimed", "member", logtext.Truncate(c.Member, 200), "error", err)
		return
	}
	s.ack(ctx, c)
}

func (s *Scheduler) invalid(ctx context.Context, c store.Claim, reason string) {
	s.mInvalid.Inc()
	s.log.Warn("schedule: malformed member moved aside", "key", s.deps.Store.ScheduleNumbersKey(), "member", logtext.Truncate(c.Member, 200), "error", reason)
	if err := s.ledger.Invalid(ctx, c.Member, reason); err != nil {
		s.log.Error("schedule: moving member aside failed", "error", err)
	}
}
