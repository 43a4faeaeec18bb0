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
	"redial/internal/dialplan"
	"redial/internal/lines"
	"redial/internal/store"
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
	// RecoverEvery is how often dead nodes' claims are looked for.
	RecoverEvery time.Duration
}

// Deps are what the scheduler drives.
type Deps struct {
	Store    *store.Store
	Calls    *call.Manager
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
}

// Scheduler dials members of cti_schedule_dialer_number@<domain> when due.
type Scheduler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

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
	if deps.Store == nil || deps.Calls == nil || cfg.Host == "" {
		return nil, errors.New("schedule: needs store, call manager and host")
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
	if cfg.RecoverEvery <= 0 {
		cfg.RecoverEvery = 5 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Scheduler{cfg: cfg, deps: deps, log: deps.Logger.With("component", "schedule"), wake: make(chan struct{}, 1),
		mLate: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "redial_schedule_lateness_seconds",
			Help: "From a scheduled member's due time to its claim.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		mClaimed: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_schedule_claimed_total", Help: "Scheduled members claimed."}),
		mInvalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_schedule_invalid_total", Help: "Malformed scheduled members moved aside."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.mLate, s.mClaimed, s.mInvalid)
	}
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
	st := s.deps.Store
	if err := st.EnsureScheduleHolder(ctx, s.cfg.Host); err != nil {
		s.log.Warn("schedule: registering as holder failed", "error", err)
	}
	if req, intr, err := st.RecoverOwnScheduled(ctx, s.cfg.Host); err != nil {
		s.log.Warn("schedule: settling this node's old claims failed", "error", err)
	} else if req+intr > 0 {
		s.log.Warn("schedule: settled claims left by this node's previous run", "requeued", req, "interrupted", intr)
	}
	go s.recoverLoop(ctx)
	for {
		claims, next, err := st.ClaimDueScheduled(ctx, s.cfg.Host, s.cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("schedule: claim failed", "error", err)
		}
		now := s.deps.Now()
		for _, c := range claims {
			s.mClaimed.Inc()
			s.mLate.Observe(math.Max(0, now.Sub(unixFloat(c.Score)).Seconds()))
			s.inflight.Add(1)
			go func(c store.ScheduledClaim) {
				defer s.inflight.Done()
				s.handle(context.WithoutCancel(ctx), c)
			}(c)
		}
		if len(claims) == s.cfg.Batch {
			continue // more may be due
		}
		wait := s.cfg.Poll
		if next > 0 {
			if d := unixFloat(next).Sub(s.deps.Now()); d < wait {
				wait = d
			}
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
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

func parseMember(raw string) (member, error) {
	var m member
	var doc struct {
		Params    map[string]json.RawMessage `json:"params"`
		Variables map[string]any             `json:"variables"`
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
		return m, fmt.Errorf("params.number: want string or array of strings, got %s", string(num))
	}
	for i, n := range m.Numbers {
		if err := call.ValidateNumber(n); err != nil {
			return m, fmt.Errorf("params.number[%d]: %w", i, err)
		}
	}
	if e, ok := doc.Params["expires"]; ok && string(e) != "null" {
		var f float64
		if err := json.Unmarshal(e, &f); err != nil {
			var s string
			if json.Unmarshal(e, &s) != nil {
				return m, fmt.Errorf("params.expires: want unix seconds, got %s", string(e))
			}
			if f, err = strconv.ParseFloat(s, 64); err != nil {
				return m, fmt.Errorf("params.expires: want unix seconds, got %s", string(e))
			}
		}
		m.Expires = int64(f)
	}
	if err := json.Unmarshal(doc.Params["config"], &m.Config); err != nil || m.Config == "" {
		return m, fmt.Errorf("params.config: want the name of a cti_schedule_dialer_config entry, got %s", string(doc.Params["config"]))
	}
	if c, ok := doc.Params["contact_ref"]; ok {
		json.Unmarshal(c, &m.Contact)
	}
	m.Variables = map[string]string{}
	for k, v := range doc.Variables {
		switch x := v.(type) {
		case string:
			m.Variables[k] = x
		case json.Number:
			m.Variables[k] = x.String()
		case bool:
			m.Variables[k] = strconv.FormatBool(x)
		default:
			return m, fmt.Errorf("variables.%s: want string, number or bool", k)
		}
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

func parseConfig(key, name, raw string) scheduleConfig {
	var doc struct {
		Params    map[string]json.RawMessage `json:"params"`
		Variables map[string]any             `json:"variables"`
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
			return "", fmt.Errorf("%s: params.%s: want string, got %s", where, k, string(v))
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
	if c.Destination.Dialplan, err = str("destination_dialplan", "XML"); err != nil {
		return scheduleConfig{Err: err}
	}
	if c.Destination.Context, err = str("destination_context", "default"); err != nil {
		return scheduleConfig{Err: err}
	}
	c.Variables = map[string]string{}
	for k, v := range doc.Variables {
		c.Variables[k] = fmt.Sprint(v)
	}
	return c
}

// handle dials one claimed member, or records why it was not.
func (s *Scheduler) handle(ctx context.Context, c store.ScheduledClaim) {
	st := s.deps.Store
	log := s.log.With("member", c.Member)
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
		OnInvite: func() error { return st.MarkScheduledInvited(ctx, s.cfg.Host, c.Member) },
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
		if err := st.RescheduleScheduled(ctx, s.cfg.Host, c.Member, float64(retry.UnixMilli())/1000); err != nil {
			log.Error("schedule: rescheduling failed; recovery will put it back", "error", err)
		}
		log.Info("schedule: no free line; written back", "at", retry)
		return
	}
	if err := st.AckScheduled(ctx, s.cfg.Host, c.Member); err != nil {
		log.Error("schedule: ack failed", "error", err)
	}
}

func (s *Scheduler) expired(ctx context.Context, c store.ScheduledClaim, req call.Request, reason string) {
	if err := s.deps.Calls.Record(ctx, req, call.Expired, reason); err != nil {
		s.log.Error("schedule: EXPIRED CDR not written; member kept claimed", "member", c.Member, "error", err)
		return
	}
	if err := s.deps.Store.AckScheduled(ctx, s.cfg.Host, c.Member); err != nil {
		s.log.Error("schedule: ack failed", "member", c.Member, "error", err)
	}
}

func (s *Scheduler) invalid(ctx context.Context, c store.ScheduledClaim, reason string) {
	s.mInvalid.Inc()
	s.log.Warn("schedule: malformed member moved aside", "key", s.deps.Store.ScheduleNumbersKey(), "member", c.Member, "error", reason)
	if err := s.deps.Store.InvalidScheduled(ctx, s.cfg.Host, c.Member, reason); err != nil {
		s.log.Error("schedule: moving member aside failed", "error", err)
	}
}

func (s *Scheduler) recoverLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RecoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := s.deps.Store
		holders, err := st.ScheduleHolders(ctx)
		if err != nil {
			continue
		}
		alive, err := st.Alive(ctx, holders)
		if err != nil {
			continue
		}
		for _, h := range holders {
			if h == s.cfg.Host || alive[h] {
				continue
			}
			req, intr, err := st.RecoverScheduled(ctx, h)
			if err != nil {
				continue
			}
			if req+intr > 0 {
				s.log.Warn("schedule: recovered claims of a dead node", "dead_host", h, "requeued", req, "interrupted", intr)
			}
		}
	}
}
