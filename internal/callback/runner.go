// Package callback runs the voicemail callback notifications of seed 000:
// on voicemail_saved (from the event list, a cron tick or redial's own
// voicemail component) it plans calls to the mailbox owner, one plan per
// vmbox across all nodes, kept in Redis so a restart or a dead node loses
// nothing.
package callback

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
	"redial/internal/logtext"
	"redial/internal/schedule"
	"redial/internal/store"
	"redial/internal/validate"
)

// Config tunes the callback runner.
type Config struct {
	Host string
	// Poll bounds the lateness of a due attempt. Default 50ms.
	Poll time.Duration
	// NoLineDelay is when an attempt that found no free line is tried
	// again. Default 60s.
	NoLineDelay time.Duration
	// CronEvery is how often cron schedules are evaluated. Default 1s.
	CronEvery time.Duration
}

// Deps are what the runner drives.
type Deps struct {
	Store *store.Store
	Calls *call.Manager
	// Recoverer settles this node's leftover claims of events and plans
	// and recovers dead nodes' claims.
	Recoverer *cluster.Recoverer
	// Settler finishes plan attempts after their calls' CDRs.
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

// Runner takes voicemail events, plans callbacks and places them.
type Runner struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	wg   sync.WaitGroup
	wake chan struct{}
	// outage logs Redis failures of every loop once per outage, not once
	// per poll.
	outage *logtext.Outage

	events, plans *store.Ledger

	mEvents  *prometheus.CounterVec
	mPlans   *prometheus.CounterVec
	mCronRun prometheus.Counter
}

// New builds a runner.
func New(cfg Config, deps Deps) (*Runner, error) {
	if deps.Store == nil || deps.Calls == nil || deps.Recoverer == nil || deps.Settler == nil || cfg.Host == "" {
		return nil, errors.New("callback: needs store, call manager, recoverer, settler and host")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.NoLineDelay <= 0 {
		cfg.NoLineDelay = 60 * time.Second
	}
	if cfg.CronEvery <= 0 {
		cfg.CronEvery = time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	r := &Runner{cfg: cfg, deps: deps, log: deps.Logger.With("component", "callback"), wake: make(chan struct{}, 1),
		events: deps.Store.EventsLedger(), plans: deps.Store.PlansLedger(),
		mEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_callback_events_total",
			Help: "Events taken from redial:events, by result."}, []string{"result"}),
		mPlans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_callback_plans_total",
			Help: "Callback plans, by what happened to them."}, []string{"result"}),
		mCronRun: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_cron_ticks_total", Help: "Cron ticks run by this node."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(r.mEvents, r.mPlans, r.mCronRun)
	}
	r.outage = logtext.NewOutage(r.log, logtext.OutageConfig{Name: "callback"})
	return r, nil
}

// Run reads events, runs due plans and cron ticks until ctx is cancelled.
func (r *Runner) Run(ctx context.Context) error {
	for _, l := range []*store.Ledger{r.plans, r.events} {
		if err := l.EnsureHolder(ctx); err != nil {
			r.outage.Fail("callback: registering as holder failed", err, "ledger", l.Name())
		}
	}
	waitPlans, unregPlans := r.deps.Recoverer.Register(r.plans)
	defer unregPlans()
	waitEvents, unregEvents := r.deps.Recoverer.Register(r.events)
	defer unregEvents()
	r.wg.Add(3)
	go func() {
		defer r.wg.Done()
		if waitEvents(ctx) == nil {
			r.readEvents(ctx)
		}
	}()
	go func() {
		defer r.wg.Done()
		if waitPlans(ctx) == nil {
			r.runPlans(ctx)
		}
	}()
	go func() { defer r.wg.Done(); r.cron(ctx) }()
	r.wg.Wait()
	return nil
}

// Event is a voicemail_saved event in either naming.
type Event struct {
	Name      string
	AccountID string
	VmboxID   string
}

// ParseEvent reads {"event_name":"voicemail_saved","account_id","vmbox_id"}
// or Kazoo's {"Event-Name","Account-ID","Voicemail-Box"}.
func ParseEvent(raw string) (Event, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return Event{}, fmt.Errorf("malformed JSON: %w", err)
	}
	pick := func(keys ...string) (string, error) {
		for _, k := range keys {
			if v, ok := m[k]; ok && v != nil {
				s, ok := v.(string)
				if !ok {
					return "", fmt.Errorf("%s: want string, got %T", k, v)
				}
				return s, nil
			}
		}
		return "", nil
	}
	var e Event
	var err error
	if e.Name, err = pick("event_name", "Event-Name", "name"); err != nil {
		return e, err
	}
	if e.Name == "" {
		e.Name = "voicemail_saved"
	}
	if e.AccountID, err = pick("account_id", "Account-ID"); err != nil {
		return e, err
	}
	if e.VmboxID, err = pick("vmbox_id", "Voicemail-Box"); err != nil {
		return e, err
	}
	if e.AccountID == "" {
		return e, errors.New("account_id: required (or Account-ID)")
	}
	if e.VmboxID == "" {
		return e, errors.New("vmbox_id: required (or Voicemail-Box)")
	}
	// Ids become key names and channel variables; all three are quoted in
	// logs and reasons.
	for _, f := range [...]struct{ field, v string }{{"event_name", e.Name}, {"account_id", e.AccountID}, {"vmbox_id", e.VmboxID}} {
		if err := validate.Ref(f.field, f.v); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (r *Runner) readEvents(ctx context.Context) {
	st := r.deps.Store
	for ctx.Err() == nil {
		raw, ok, err := r.events.ClaimBlocking(ctx, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				r.outage.Fail("callback: reading redial:events failed; retrying", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		r.outage.OK()
		if !ok {
			continue
		}
		bg := context.WithoutCancel(ctx)
		ev, err := ParseEvent(raw)
		if err == nil && ev.Name != "voicemail_saved" {
			err = fmt.Errorf("event_name: %q is not handled (want voicemail_saved)", ev.Name)
		}
		if err != nil {
			r.mEvents.WithLabelValues("invalid").Inc()
			r.log.Warn("callback: malformed event moved aside", "key", st.EventsKey(), "event", logtext.Truncate(raw, 200), "error", err)
			if err := r.events.Invalid(bg, raw, err.Error()); err != nil {
				r.log.Error("callback: moving event aside failed", "error", err)
			}
			continue
		}
		result, err := r.VoicemailSaved(bg, ev.AccountID, ev.VmboxID)
		if err != nil {
			// Documents unreadable (Redis trouble): leave the event claimed;
			// it is re-read on restart or by recovery.
			r.log.Warn("callback: event not handled", "account_id", ev.AccountID, "vmbox_id", ev.VmboxID, "error", err)
			continue
		}
		r.mEvents.WithLabelValues(result).Inc()
		if err := r.events.Ack(bg, raw); err != nil {
			r.log.Warn("callback: ack event failed", "error", err)
		}
	}
}

// Plan is a callback plan as stored in Redis.
type Plan struct {
	AccountID   string            `json:"account_id"`
	VmboxID     string            `json:"vmbox_id"`
	Number      string            `json:"number"`
	CheckNumber string            `json:"check_number"`
	Schedule    []float64         `json:"schedule_s"`
	TimeoutS    float64           `json:"timeout_s"`
	Attempt     int               `json:"attempt"` // attempts made so far
	Created     time.Time         `json:"created"`
	LineGroups  []string          `json:"line_group"`
	Context     string            `json:"destination_context"`
	Sources     map[string]string `json:"sources,omitempty"`
}

// docs loads the documents a policy is resolved from.
func (r *Runner) docs(ctx context.Context, account, vmbox string) (Docs, error) {
	st := r.deps.Store
	var d Docs
	load := func(hash, field string) (map[string]any, error) {
		raw, ok, err := st.Doc(ctx, hash, field)
		if err != nil || !ok {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return nil, fmt.Errorf("callback: %s %s: malformed JSON: %w", hash, field, err)
		}
		return m, nil
	}
	var err error
	if d.Vmbox, err = load(st.VMBoxDocsKey(account), vmbox); err != nil {
		return d, err
	}
	if d.Vmbox == nil {
		return d, nil
	}
	if owner, _ := d.Vmbox["owner_id"].(string); owner != "" {
		if d.Owner, err = load(st.UserDocsKey(account), owner); err != nil {
			return d, err
		}
	}
	if d.Account, err = load(st.AccountDocsKey(), account); err != nil {
		return d, err
	}
	d.System, err = load(st.SystemConfigKey(), store.CallbackConfigField)
	return d, err
}

// VoicemailSaved plans callbacks for a vmbox with unread messages, unless
// it already has a plan. It returns what it did ("planned", "exists",
// "disabled", "no_number", "no_unread", "no_vmbox", "no_check_callflow",
// "invalid_config").
func (r *Runner) VoicemailSaved(ctx context.Context, account, vmbox string) (string, error) {
	log := r.log.With("account_id", account, "vmbox_id", vmbox)
	d, err := r.docs(ctx, account, vmbox)
	if err != nil {
		return "", err
	}
	if d.Vmbox == nil {
		log.Warn("callback: no such vmbox", "key", r.deps.Store.VMBoxDocsKey(account))
		return "no_vmbox", nil
	}
	pol, err := Resolve(d)
	if err != nil {
		log.Warn("callback: callback settings rejected", "error", err)
		return "invalid_config", nil
	}
	switch {
	case pol.Disabled:
		log.Info("callback: disabled for this vmbox", "source", pol.Sources["disabled"])
		return "disabled", nil
	case pol.Number == "":
		log.Info("callback: no callback number in vmbox or owner")
		return "no_number", nil
	case UnreadCount(d.Vmbox) == 0:
		return "no_unread", nil
	case len(pol.Schedule) == 0:
		return "no_attempts", nil
	}
	flows, err := r.deps.Store.Docs(ctx, r.deps.Store.CallflowDocsKey(account))
	if err != nil {
		return "", err
	}
	parsed := map[string]map[string]any{}
	for id, raw := range flows {
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) == nil {
			parsed[id] = m
		}
	}
	check, _ := CheckCallflowNumber(parsed)
	if check == "" {
		log.Warn("callback: account has no voicemail-check callflow (module voicemail, action check) with a number", "key", r.deps.Store.CallflowDocsKey(account))
		return "no_check_callflow", nil
	}
	p := Plan{AccountID: account, VmboxID: vmbox, Number: pol.Number, CheckNumber: check,
		TimeoutS: pol.Timeout.Seconds(), Created: r.deps.Now().UTC(), Sources: pol.Sources,
		LineGroups: stringList(d.System, "line_group", []string{"callback"}),
		Context:    stringOr(d.System, "destination_context", "default")}
	for _, s := range pol.Schedule {
		p.Schedule = append(p.Schedule, s.Seconds())
	}
	b, _ := json.Marshal(p)
	due := r.deps.Now().Add(pol.Schedule[0])
	created, err := r.deps.Store.CreatePlan(ctx, store.PlanField(account, vmbox), string(b), due)
	if err != nil {
		return "", err
	}
	if !created {
		return "exists", nil
	}
	r.mPlans.WithLabelValues("created").Inc()
	log.Info("callback: plan created", "number", pol.Number, "check_number", check, "attempts", len(p.Schedule), "first_at", due)
	r.poke()
	return "planned", nil
}

func stringList(m map[string]any, key string, def []string) []string {
	switch v := m[key].(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return def
}

func stringOr(m map[string]any, key, def string) string {
	if s, ok := m[key].(string); ok && s != "" {
		return s
	}
	return def
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *Runner) runPlans(ctx context.Context) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	// One timer for every wait (a poll's timer was garbage of an idle
	// node; issue 14); a stopped or reset timer delivers no stale tick.
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	t.Stop()
	for ctx.Err() == nil {
		claims, next, err := r.plans.ClaimDue(ctx, 100)
		if err != nil && ctx.Err() == nil {
			r.outage.Fail("callback: claiming due plans failed; retrying", err)
		} else if err == nil {
			r.outage.OK()
		}
		for _, c := range claims {
			inflight.Add(1)
			go func(c store.Claim) {
				defer inflight.Done()
				r.attempt(context.WithoutCancel(ctx), c)
			}(c)
		}
		wait := r.cfg.Poll
		if err != nil {
			// Redis is away: retrying every Poll would only load the CPU.
			wait = time.Second
		} else if !math.IsNaN(next) {
			if d := time.UnixMilli(int64(next)).Sub(r.deps.Now()); d < wait {
				wait = d
			}
		}
		if wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
			case <-r.wake:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// attempt places one callback call of a plan and plans the next one.
func (r *Runner) attempt(ctx context.Context, c store.Claim) {
	field := c.Member
	var p Plan
	if err := json.Unmarshal([]byte(c.Payload), &p); err != nil {
		r.end(ctx, field, c.Payload, "plan unreadable: "+err.Error(), false)
		return
	}
	log := r.log.With("account_id", p.AccountID, "vmbox_id", p.VmboxID, "attempt", p.Attempt+1)
	// Messages may have been listened to since: re-check before calling.
	d, err := r.docs(ctx, p.AccountID, p.VmboxID)
	if err != nil {
		log.Warn("callback: vmbox unreadable; retrying the attempt later", "error", err)
		r.reschedule(ctx, field, p, r.deps.Now().Add(r.cfg.NoLineDelay), false)
		return
	}
	if d.Vmbox == nil || UnreadCount(d.Vmbox) == 0 {
		r.end(ctx, field, c.Payload, "no unread messages", false)
		return
	}
	req := call.Request{
		Numbers: []string{p.Number}, LineGroups: p.LineGroups,
		Destination: dialplan.Destination{Extension: p.CheckNumber, Dialplan: "XML", Context: p.Context},
		Variables: map[string]string{"originate_timeout": strconv.FormatFloat(p.TimeoutS, 'f', -1, 64),
			"redial_callback_vmbox": p.VmboxID, "redial_callback_account": p.AccountID},
		CampaignRef: "callback:" + p.VmboxID, ReturnOnNoLine: true,
		OnInvite: func() error { return r.plans.Mark(ctx, field) },
	}
	out, err := r.deps.Calls.Place(ctx, req)
	if err != nil || out.NotDialed {
		if errors.Is(out.NotDialedErr, store.ErrPlanGone) {
			log.Info("callback: plan ended meanwhile; not dialed")
			return
		}
		log.Info("callback: no free line; attempt delayed")
		r.reschedule(ctx, field, p, r.deps.Now().Add(r.cfg.NoLineDelay), false)
		return
	}
	p.Attempt++
	b, _ := json.Marshal(p)
	if out.Connected {
		r.end(ctx, field, string(b), "answered", true)
		return
	}
	if p.Attempt >= len(p.Schedule) {
		r.end(ctx, field, string(b), fmt.Sprintf("%d attempts made, none answered", p.Attempt), true)
		return
	}
	next := r.deps.Now().Add(time.Duration(p.Schedule[p.Attempt] * float64(time.Second)))
	log.Info("callback: not answered; next attempt planned", "disposition", out.Disposition, "at", next)
	r.reschedule(ctx, field, p, next, true)
}

// settle carries out op: after a call, through the notify spool so it
// lands even while Redis is away (the attempt's CDR is spooled too);
// before any call, directly (a failure leaves the claim to recovery).
func (r *Runner) settle(ctx context.Context, op store.SettleOp, afterCall bool) error {
	if afterCall {
		return r.deps.Settler.Settle(ctx, op.AfterMark())
	}
	return r.deps.Store.Settle(ctx, op)
}

func (r *Runner) reschedule(ctx context.Context, field string, p Plan, at time.Time, afterCall bool) {
	b, _ := json.Marshal(p)
	if err := r.settle(ctx, r.plans.WriteBackOp(field, string(b), at), afterCall); err != nil {
		r.log.Error("callback: rescheduling plan failed; recovery will resume it", "plan", field, "error", err)
	}
}

func (r *Runner) end(ctx context.Context, field, planJSON, reason string, afterCall bool) {
	r.mPlans.WithLabelValues("ended").Inc()
	r.log.Info("callback: plan ended", "plan", field, "reason", reason)
	if err := r.settle(ctx, r.deps.Store.PlanEndOp(field, planJSON, reason), afterCall); err != nil {
		r.log.Error("callback: ending plan failed", "plan", field, "error", err)
	}
}

// cron evaluates the `schedules` of system config ananke: every tick runs
// once per cluster, and edits apply at the next evaluation.
func (r *Runner) cron(ctx context.Context) {
	last := r.deps.Now()
	t := time.NewTicker(r.cfg.CronEvery)
	defer t.Stop()
	var lastErrs string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.deps.Now()
		raw, ok, err := r.deps.Store.Doc(ctx, r.deps.Store.SystemConfigKey(), store.CallbackConfigField)
		if err != nil || !ok {
			last = now
			continue
		}
		var doc struct {
			Schedules json.RawMessage `json:"schedules"`
		}
		if err := json.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Schedules) == 0 {
			last = now
			continue
		}
		entries, errs := schedule.ParseSchedules(doc.Schedules)
		if e := fmt.Sprint(errs); len(errs) > 0 && e != lastErrs {
			r.log.Warn("callback: cron schedules rejected", "key", r.deps.Store.SystemConfigKey()+" "+store.CallbackConfigField, "errors", errors.Join(errs...))
			lastErrs = e
		}
		for _, e := range entries {
			for tick := e.Next(last); !tick.IsZero() && !tick.After(now); tick = e.Next(tick) {
				mine, err := r.deps.Store.CronTickOnce(ctx, e.ID, tick, 24*time.Hour)
				if err != nil || !mine {
					continue
				}
				r.mCronRun.Inc()
				r.runAction(ctx, e, tick)
			}
		}
		last = now
	}
}

func (r *Runner) runAction(ctx context.Context, e schedule.CronEntry, tick time.Time) {
	if !strings.EqualFold(e.Action.Type, schedule.ActionCheckVoicemail) {
		return
	}
	res, err := r.VoicemailSaved(ctx, e.Action.AccountID, e.Action.VmboxID)
	r.log.Info("callback: cron check_voicemail", "entry", e.Index, "tick", tick, "result", res, "error", err)
}
