package ivr

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Event is something subscribers (the ivrapi WebSocket) may forward.
// Every subscriber gets the same Body map, so treat it as read-only.
// Name and Body are the seed 002 message: Name "notify" with Body
// {"class":"ivrevents","type":"api_start"|"api_stop",...}, or Name
// "ivrapi_dtmf" / "ivrapi_component_stopped" with the seed's body. The
// other fields route the event and are not part of the message.
type Event struct {
	Name string
	Body map[string]any
	// IVRID and Key name the session and the external control component.
	IVRID string
	Key   string
	// Owner is who controls the session, "" while nobody does. ivrevents
	// (api_start, api_stop) are for every subscriber of the class;
	// ivrapi_* events only for Owner.
	Owner string
}

// Names of events.
const (
	EventNotify           = "notify"
	EventDTMF             = "ivrapi_dtmf"
	EventComponentStopped = "ivrapi_component_stopped"
)

// subscriberQueue is how many events a slow subscriber may fall behind
// before events to it are dropped; sessions never wait for subscribers.
const subscriberQueue = 1024

type bus struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	dropped prometheus.Counter
}

type subscriber struct {
	ch   chan Event
	quit chan struct{}
	once sync.Once
}

func newBus(dropped prometheus.Counter) *bus {
	return &bus{subs: map[*subscriber]struct{}{}, dropped: dropped}
}

func (b *bus) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.dropped.Inc()
		}
	}
}

// Subscribe calls fn with every event, in order, from a goroutine of its
// own, until cancel is called. A subscriber that falls more than 1024
// events behind loses events (counted in redial_ivr_events_dropped_total)
// rather than stalling calls.
func (e *Engine) Subscribe(fn func(Event)) (cancel func()) {
	s := &subscriber{ch: make(chan Event, subscriberQueue), quit: make(chan struct{})}
	e.bus.mu.Lock()
	e.bus.subs[s] = struct{}{}
	e.bus.mu.Unlock()
	go func() {
		for {
			select {
			case ev := <-s.ch:
				fn(ev)
			case <-s.quit:
				return
			}
		}
	}()
	return func() {
		s.once.Do(func() {
			e.bus.mu.Lock()
			delete(e.bus.subs, s)
			e.bus.mu.Unlock()
			close(s.quit)
		})
	}
}

// control is the state of an external control component while it runs.
type control struct {
	key    string
	oID    int
	name   string
	params string

	owner    string
	accepted chan struct{} // closed by the first Accept
	stop     chan struct{} // closed by Abort or OwnerGone
	stopOnce sync.Once
	apply    chan *applied // holds at most the one running component
	running  *applied
}

func (c *control) abort() { c.stopOnce.Do(func() { close(c.stop) }) }

// applied is a component an owner applied.
type applied struct {
	spec      *Spec
	terminate chan struct{}
	termOnce  sync.Once
	done      chan struct{} // closed after ivrapi_component_stopped went out
}

// SessionInfo describes a running session.
type SessionInfo struct {
	IVRID    string
	CallRef  string
	ScriptID string
	Started  time.Time
	// OID and OType are the script component running; Component is its name.
	OID       int
	OType     int
	Component string
	// ControlKey is the key of the external control component waiting or
	// controlled, Owner who controls it ("" while nobody does).
	ControlKey string
	Owner      string
	// Applied is the oId of the component an owner applied, or -1.
	Applied int
}

// Sessions lists the sessions running on this node, oldest first.
func (e *Engine) Sessions() []SessionInfo {
	e.sessMu.Lock()
	list := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		list = append(list, s)
	}
	e.sessMu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, s := range list {
		s.mu.Lock()
		in := SessionInfo{IVRID: s.id, CallRef: s.ch.CallRef(), ScriptID: s.scriptID, Started: s.started, Applied: -1}
		if s.cur != nil {
			in.OID, in.OType, in.Component = s.cur.OID, s.cur.OType, s.cur.Name
		}
		if s.ctl != nil {
			in.ControlKey, in.Owner = s.ctl.key, s.ctl.owner
			if s.ctl.running != nil {
				in.Applied = s.ctl.running.spec.OID
			}
		}
		s.mu.Unlock()
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// lookup finds the session ivrid in external control key and runs fn with
// the session locked.
func (e *Engine) lookup(key, ivrid string, fn func(s *session, c *control) error) error {
	e.sessMu.Lock()
	s := e.sessions[ivrid]
	e.sessMu.Unlock()
	if s == nil {
		return fmt.Errorf("ivr: session %q: %w", ivrid, ErrNoSession)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl == nil || s.ctl.key != key {
		return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrNotControlled)
	}
	return fn(s, s.ctl)
}

// ControlState is the external control of one session as its owner sees
// it: who owns it, which applied component runs, and the session's :TEMP
// dir (for the file requests of the ivrapi).
type ControlState struct {
	Owner string
	// Applied is the oId of the running applied component, or -1.
	Applied int
	// Temp is the session's :TEMP directory.
	Temp string
}

// Control returns the state of session ivrid in external control key.
func (e *Engine) Control(key, ivrid string) (ControlState, error) {
	var st ControlState
	err := e.lookup(key, ivrid, func(s *session, c *control) error {
		st = ControlState{Owner: c.owner, Applied: -1, Temp: s.temp}
		if c.running != nil {
			st.Applied = c.running.spec.OID
		}
		return nil
	})
	return st, err
}

// Accept gives owner control of session ivrid waiting in the external
// control component key. The first Accept wins: another owner's Accept
// fails with ErrOwned unless reaccept is set, which takes control over (a
// WebSocket that reconnected). Accepting again as the owner is a no-op.
func (e *Engine) Accept(key, ivrid, owner string, reaccept bool) error {
	if owner == "" {
		return fmt.Errorf("ivr: accept session %q: empty owner", ivrid)
	}
	return e.lookup(key, ivrid, func(s *session, c *control) error {
		switch {
		case c.owner == owner:
		case c.owner == "":
			c.owner = owner
			close(c.accepted)
		case reaccept:
			s.log.Info("ivr control taken over", "key", key, "from", c.owner, "to", owner)
			c.owner = owner
		default:
			return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrOwned)
		}
		return nil
	})
}

// Abort returns control to the script, which continues on the external
// control component's exit "transfer". A running applied component is
// stopped first.
func (e *Engine) Abort(key, ivrid, owner string) error {
	return e.lookup(key, ivrid, func(s *session, c *control) error {
		if c.owner != owner {
			return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrNotOwner)
		}
		c.abort()
		return nil
	})
}

// OwnerGone aborts the control of every session owner holds (its
// WebSocket closed); the scripts continue as after Abort.
func (e *Engine) OwnerGone(owner string) {
	e.sessMu.Lock()
	list := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		list = append(list, s)
	}
	e.sessMu.Unlock()
	for _, s := range list {
		s.mu.Lock()
		if s.ctl != nil && s.ctl.owner == owner {
			s.ctl.abort()
		}
		s.mu.Unlock()
	}
}

// Apply starts component (its JSON as in a script; oId defaults to 0,
// routes are ignored) in session ivrid controlled by owner, and returns
// its oId at once; ivrapi_component_stopped reports its end. While an
// applied component runs, further Applies fail with ErrBusy.
func (e *Engine) Apply(key, ivrid, owner string, component json.RawMessage) (int, error) {
	var oid int
	err := e.lookup(key, ivrid, func(s *session, c *control) error {
		if c.owner != owner || owner == "" {
			return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrNotOwner)
		}
		if c.running != nil {
			return fmt.Errorf("ivr: session %q key %q: component %d: %w", ivrid, key, c.running.spec.OID, ErrBusy)
		}
		spec, err := e.parseSpec(component, false)
		if err != nil {
			if spec != nil {
				return fmt.Errorf("ivr: apply to session %q: component %d (oType %d): %w", ivrid, spec.OID, spec.OType, err)
			}
			return fmt.Errorf("ivr: apply to session %q: %w", ivrid, err)
		}
		a := &applied{spec: spec, terminate: make(chan struct{}), done: make(chan struct{})}
		c.running = a
		c.apply <- a // never blocks: the channel is empty while nothing runs
		oid = spec.OID
		return nil
	})
	return oid, err
}

// terminateWait bounds how long Terminate waits for a component to stop.
const terminateWait = 5 * time.Second

// Terminate stops the applied component and returns once its
// ivrapi_component_stopped went out, so the owner may apply the next. It
// fails with ErrIdle when none runs.
func (e *Engine) Terminate(key, ivrid, owner string) error {
	var a *applied
	err := e.lookup(key, ivrid, func(s *session, c *control) error {
		if c.owner != owner || owner == "" {
			return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrNotOwner)
		}
		if c.running == nil {
			return fmt.Errorf("ivr: session %q key %q: %w", ivrid, key, ErrIdle)
		}
		a = c.running
		return nil
	})
	if err != nil {
		return err
	}
	a.termOnce.Do(func() { close(a.terminate) })
	select {
	case <-a.done:
		return nil
	case <-time.After(terminateWait):
		return fmt.Errorf("ivr: session %q: component %d did not stop within %v", ivrid, a.spec.OID, terminateWait)
	}
}

// reportDTMF sends ivrapi_dtmf to the owner of a controlled session and
// reports whether the digit was an idle one (no applied component).
func (s *session) reportDTMF(d rune) (idle bool) {
	s.mu.Lock()
	c := s.ctl
	if c == nil || c.owner == "" {
		s.mu.Unlock()
		return false
	}
	body := map[string]any{"key": c.key, "ivrid": s.id, "mode": "idle", "dtmf": string(d)}
	if c.running != nil {
		body["mode"] = "component"
		body["oId"] = c.running.spec.OID
	}
	ev := Event{Name: EventDTMF, Body: body, IVRID: s.id, Key: c.key, Owner: c.owner}
	idle = c.running == nil
	s.mu.Unlock()
	s.e.bus.publish(ev)
	return idle
}

// ivrevent builds an ivrevents notify event of the seed's shape.
func (s *session) ivrevent(typ string, c *control) Event {
	callid := s.ch.Variables()["sip_call_id"]
	if callid == "" {
		callid = s.ch.CallRef()
	}
	data := map[string]any{
		"callid":        callid,
		"cid":           s.ch.CallRef(),
		"componentid":   c.oID,
		"componentname": c.name,
		"ivrid":         s.id,
		"ivrts":         s.started.UnixMilli(),
		"key":           c.key,
		"params":        c.params,
		"sm_id":         s.smID,
	}
	return Event{Name: EventNotify, IVRID: s.id, Key: c.key, Owner: c.owner, Body: map[string]any{
		"class": "ivrevents", "type": typ, "eventts": s.e.now().UnixMilli(), "data": data}}
}

// extControl is the external control component (oType 305).
type extControl struct {
	key     string
	params  string
	timeout time.Duration
}

func newExtControl(spec *Spec) (Component, error) {
	c := &extControl{}
	var err error
	if c.key, err = spec.Props.RequiredString("key"); err != nil {
		return nil, err
	}
	if c.timeout, err = spec.Props.Seconds("timeoutSec", 30, 0.1, 86400); err != nil {
		return nil, err
	}
	// The seed sends params as a JSON string; an object in the script is
	// passed on as its JSON text.
	if spec.Props.Has("params") {
		raw := spec.Props["params"]
		var s string
		if json.Unmarshal(raw, &s) == nil {
			c.params = s
		} else {
			var v any
			if json.Unmarshal(raw, &v) != nil {
				return nil, fieldErr("params", "not JSON")
			}
			b, _ := json.Marshal(v)
			c.params = string(b)
		}
	}
	return c, nil
}

func (c *extControl) Run(ctx context.Context, x *Exec) string {
	s := x.s
	ctl := &control{key: x.Expand(c.key), oID: x.spec.OID, name: x.spec.Name, params: x.Expand(c.params),
		accepted: make(chan struct{}), stop: make(chan struct{}), apply: make(chan *applied, 1)}
	s.mu.Lock()
	if s.ctl != nil {
		s.mu.Unlock()
		x.Logger().Error("ivr external control inside external control")
		return ExitError
	}
	s.ctl = ctl
	start := s.ivrevent("api_start", ctl)
	s.mu.Unlock()
	s.e.bus.publish(start)
	x.Logger().Info("ivr waiting for external control", "key", ctl.key, "timeout", c.timeout)

	defer func() {
		s.mu.Lock()
		s.ctl = nil
		var pending *applied
		select {
		case pending = <-ctl.apply: // applied just as control ended: it never ran
			ctl.running = nil
		default:
		}
		stop := s.ivrevent("api_stop", ctl)
		s.mu.Unlock()
		if pending != nil {
			s.e.bus.publish(Event{Name: EventComponentStopped, IVRID: s.id, Key: ctl.key, Owner: ctl.owner,
				Body: map[string]any{"key": ctl.key, "ivrid": s.id, "oId": pending.spec.OID, "transferKey": ExitError, "results": map[string]any{}}})
			close(pending.done)
		}
		s.e.bus.publish(stop)
	}()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	accepted := ctl.accepted
	for {
		select {
		case <-ctx.Done():
			return ExitTransfer
		case <-ctl.stop:
			x.Logger().Info("ivr external control returned", "key", ctl.key)
			return ExitTransfer
		case <-accepted:
			accepted = nil
			timer.Stop()
		case <-timer.C:
			s.mu.Lock()
			owned := ctl.owner != ""
			s.mu.Unlock()
			if !owned {
				x.Logger().Info("ivr external control timed out without an owner", "key", ctl.key)
				return ExitTimeout
			}
		case a := <-ctl.apply:
			s.runApplied(ctx, ctl, a)
			s.mu.Lock()
			ended := s.ended
			s.mu.Unlock()
			if ended != "" {
				return ExitTransfer
			}
		}
	}
}

// runApplied runs an owner's component and reports its end.
func (s *session) runApplied(ctx context.Context, ctl *control, a *applied) {
	actx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.terminate:
		case <-ctl.stop:
		case <-actx.Done():
		}
		cancel()
	}()
	exit, results := s.runComponent(actx, a.spec, a.spec.comp)
	cancel()
	res := make(map[string]any, len(results))
	for k, v := range results {
		res[k] = v
	}
	s.mu.Lock()
	ev := Event{Name: EventComponentStopped, IVRID: s.id, Key: ctl.key, Owner: ctl.owner,
		Body: map[string]any{"key": ctl.key, "ivrid": s.id, "oId": a.spec.OID, "transferKey": exit, "results": res}}
	ctl.running = nil
	s.mu.Unlock()
	s.e.bus.publish(ev)
	close(a.done)
}
