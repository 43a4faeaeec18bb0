package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/validate"
)

// Agent states of the inbound queues, held in Redis so that every node
// sees one state per agent and one atomic step decides each offer:
//
//	redial:{acd:<domain>}:agent:<ext>  HASH state, reason, call_ref, since,
//	                                   last_call_end, calls, no_answer,
//	                                   wrapup_until, idle_since (when the
//	                                   agent ringing now became free; a
//	                                   release puts it back) (times in unix ms)
//
// Every key of a domain shares the hash slot {acd:<domain>}. An agent with
// no hash is logged out. Every transition driven by a call names the call
// (call_ref) and is refused unless the agent is still held by that call, so
// a node that lost an offer (ring timeout taken over, restart) cannot move
// an agent another call now holds.

// Agent states.
const (
	AgentLoggedOut = "logged_out"
	AgentAvailable = "available"
	AgentRinging   = "ringing"
	AgentOnCall    = "on_call"
	AgentWrapup    = "wrapup"
	AgentPaused    = "paused"
)

// ReasonNoAnswer is the pause reason CallNotAnswered writes at
// max_no_answer.
const ReasonNoAnswer = "no answer"

// MaxPauseReasonLen is the longest pause reason, in characters.
const MaxPauseReasonLen = validate.MaxPauseReasonLen

// ErrAgentNotHeld is returned (wrapped) when a call transition names a call
// that no longer holds the agent.
var ErrAgentNotHeld = errors.New("agent not held by this call")

// AgentState is one agent's state as every node sees it.
type AgentState struct {
	Ext string
	// State is one of the Agent* constants; an agent whose wrap-up has
	// passed reads as AgentAvailable.
	State string
	// Reason is why the agent is paused; "" otherwise.
	Reason string
	// CallRef is the call the agent is ringing for or on; "" otherwise.
	CallRef string
	// Since is when State began (for a passed wrap-up, when it ended).
	Since time.Time
	// LastCallEnd is when the agent's last call ended (longest_idle).
	LastCallEnd time.Time
	// Calls is how many calls the agent answered (fewest_calls).
	Calls int64
	// NoAnswer is how many offers in a row went unanswered.
	NoAnswer int
	// WrapupUntil is when the wrap-up ends; zero outside wrap-up.
	WrapupUntil time.Time
}

// AgentStateKey is the hash holding one agent's state.
func (s *Store) AgentStateKey(ext string) string {
	return "redial:{acd:" + s.cfg.Domain + "}:agent:" + ext
}

func (s *Store) agentError(ext string, err error) error {
	return validate.Short(fmt.Errorf("store: agent %q in %s: %w", validate.Truncate(ext, 64), s.AgentStateKey(validate.Truncate(ext, 64)), err))
}

func unixMs(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// SetAgentState sets an agent's state by hand (registration, the API, the
// agent page): logged_out, available, or paused with a reason of 1 to
// MaxPauseReasonLen printable characters. The states calls drive (ringing,
// on_call, wrapup) are refused. It overrides whatever call held the agent:
// that call's later transitions are refused as stale. Becoming available
// clears the unanswered count, so an agent paused for not answering starts
// afresh.
func (s *Store) SetAgentState(ctx context.Context, ext, state, reason string, now time.Time) error {
	if err := ValidateExtension(ext); err != nil {
		return s.agentError(ext, err)
	}
	if err := validate.AgentState(state, reason); err != nil {
		return s.agentError(ext, err)
	}
	vals := []any{"state", state, "reason", reason, "call_ref", "", "since", unixMs(now), "wrapup_until", "0"}
	if state == AgentAvailable {
		vals = append(vals, "no_answer", "0")
	}
	key := s.AgentStateKey(ext)
	if err := s.rdb.HSet(ctx, key, vals...).Err(); err != nil {
		return fmt.Errorf("store: HSET %s: %w", key, err)
	}
	return nil
}

// AgentStates reads the state of each extension in one round trip, as of
// now. Unknown agents read as logged_out.
func (s *Store) AgentStates(ctx context.Context, exts []string, now time.Time) (map[string]AgentState, error) {
	for _, ext := range exts {
		if err := ValidateExtension(ext); err != nil {
			return nil, s.agentError(ext, err)
		}
	}
	out := make(map[string]AgentState, len(exts))
	if len(exts) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(exts))
	for i, ext := range exts {
		cmds[i] = pipe.HGetAll(ctx, s.AgentStateKey(ext))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: read agent states: %w", err)
	}
	for i, ext := range exts {
		out[ext] = decodeAgentState(ext, cmds[i].Val(), now)
	}
	return out, nil
}

// decodeAgentState reads one agent's hash. Redial alone writes it, so a
// field that does not parse reads as zero rather than failing the queue.
func decodeAgentState(ext string, h map[string]string, now time.Time) AgentState {
	ms := func(f string) time.Time {
		v, err := strconv.ParseInt(h[f], 10, 64)
		if err != nil || v == 0 {
			return time.Time{}
		}
		return time.UnixMilli(v)
	}
	a := AgentState{Ext: ext, State: h["state"], Reason: h["reason"], CallRef: h["call_ref"],
		Since: ms("since"), LastCallEnd: ms("last_call_end"), WrapupUntil: ms("wrapup_until")}
	a.Calls, _ = strconv.ParseInt(h["calls"], 10, 64)
	a.NoAnswer, _ = strconv.Atoi(h["no_answer"])
	switch a.State {
	case AgentAvailable, AgentRinging, AgentOnCall, AgentPaused:
	case AgentWrapup:
		if !now.Before(a.WrapupUntil) {
			a.State, a.Since, a.WrapupUntil = AgentAvailable, a.WrapupUntil, time.Time{}
		}
	default:
		a.State = AgentLoggedOut
	}
	return a
}

// KEYS[1] the agent's state HASH (AgentStateKey).
// ARGV[1] call_ref, ARGV[2] now in unix ms.
// Returns 1 when the agent was available (or its wrap-up had ended by now)
// and now rings for call_ref; 0 when it was in any other state and nothing
// changed.
var offerCallScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
local now = tonumber(ARGV[2])
if st == 'wrapup' then
  if now < (tonumber(redis.call('HGET', KEYS[1], 'wrapup_until')) or 0) then return 0 end
elseif st ~= 'available' then
  return 0
end
local h = redis.call('HMGET', KEYS[1], 'since', 'wrapup_until')
local idle = h[1] or '0'
if st == 'wrapup' then idle = h[2] or idle end
redis.call('HSET', KEYS[1], 'state', 'ringing', 'call_ref', ARGV[1], 'since', ARGV[2], 'idle_since', idle, 'reason', '', 'wrapup_until', '0')
return 1
`)

// OfferCall moves an agent from available (or a passed wrap-up) to ringing
// for callRef in one atomic step, so an agent is never offered two callers
// at once however many nodes offer. ok is false when the agent was not
// free.
func (s *Store) OfferCall(ctx context.Context, ext, callRef string, now time.Time) (ok bool, err error) {
	if err := s.checkCallArgs(ext, callRef); err != nil {
		return false, err
	}
	n, err := offerCallScript.Run(ctx, s.rdb, []string{s.AgentStateKey(ext)}, callRef, now.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("store: offer call %q to agent %q: %w", callRef, ext, err)
	}
	return n == 1, nil
}

func (s *Store) checkCallArgs(ext, callRef string) error {
	if err := ValidateExtension(ext); err != nil {
		return s.agentError(ext, err)
	}
	if callRef == "" {
		return s.agentError(ext, errors.New("call_ref: empty"))
	}
	if err := validate.Ref("call_ref", callRef); err != nil {
		return s.agentError(ext, err)
	}
	return nil
}

// KEYS[1] the agent's state HASH (AgentStateKey).
// ARGV[1] the state the agent must be in, ARGV[2] the call_ref that must
// hold it, ARGV[3] now in unix ms, ARGV[4] what to do: 'answer', 'release',
// 'noanswer' or 'end', ARGV[5] for 'noanswer' the max_no_answer (0 never pauses), for
// 'end' the wrap-up in ms.
// Returns {1, paused (1|0)} when done; {0, state, call_ref} as found when
// the agent is not in ARGV[1] for ARGV[2], and nothing changed.
var callTransitionScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'call_ref')
local st, ref = h[1] or '', h[2] or ''
if st ~= ARGV[1] or ref ~= ARGV[2] then return {0, st, ref} end
local op, now = ARGV[4], ARGV[3]
if op == 'answer' then
  redis.call('HSET', KEYS[1], 'state', 'on_call', 'since', now, 'no_answer', '0')
  redis.call('HINCRBY', KEYS[1], 'calls', 1)
  return {1, 0}
elseif op == 'release' then
  -- back where it was among the idle (longest_idle), as if never offered
  local idle = redis.call('HGET', KEYS[1], 'idle_since') or now
  redis.call('HSET', KEYS[1], 'state', 'available', 'call_ref', '', 'since', idle)
  return {1, 0}
elseif op == 'noanswer' then
  local n = redis.call('HINCRBY', KEYS[1], 'no_answer', 1)
  local max = tonumber(ARGV[5])
  if max > 0 and n >= max then
    redis.call('HSET', KEYS[1], 'state', 'paused', 'reason', 'no answer', 'call_ref', '', 'since', now)
    return {1, 1}
  end
  redis.call('HSET', KEYS[1], 'state', 'available', 'call_ref', '', 'since', now)
  return {1, 0}
end
local w = tonumber(ARGV[5])
if w > 0 then
  redis.call('HSET', KEYS[1], 'state', 'wrapup', 'wrapup_until', tostring(tonumber(now) + w), 'call_ref', '', 'since', now, 'last_call_end', now)
else
  redis.call('HSET', KEYS[1], 'state', 'available', 'wrapup_until', '0', 'call_ref', '', 'since', now, 'last_call_end', now)
end
return {1, 0}
`)

// callTransition runs callTransitionScript and turns a refusal into an
// error wrapping ErrAgentNotHeld.
func (s *Store) callTransition(ctx context.Context, ext, callRef, want, op string, arg int64, now time.Time) (paused bool, err error) {
	if err := s.checkCallArgs(ext, callRef); err != nil {
		return false, err
	}
	res, err := callTransitionScript.Run(ctx, s.rdb, []string{s.AgentStateKey(ext)}, want, callRef, now.UnixMilli(), op, arg).Slice()
	if err != nil {
		return false, fmt.Errorf("store: %s call %q of agent %q: %w", op, callRef, ext, err)
	}
	if len(res) == 3 {
		st, _ := res[1].(string)
		if st == "" {
			st = AgentLoggedOut
		}
		ref, _ := res[2].(string)
		return false, s.agentError(ext, fmt.Errorf("call %q: %w (want %s, found %s with call_ref %q)",
			validate.Truncate(callRef, 64), ErrAgentNotHeld, want, st, validate.Truncate(ref, 64)))
	}
	if len(res) != 2 {
		return false, fmt.Errorf("store: %s call %q of agent %q: unexpected reply %v", op, callRef, ext, res)
	}
	p, _ := res[1].(int64)
	return p == 1, nil
}

// CallAnswered moves an agent ringing for callRef to on_call, counts the
// call and clears the unanswered count.
func (s *Store) CallAnswered(ctx context.Context, ext, callRef string, now time.Time) error {
	_, err := s.callTransition(ctx, ext, callRef, AgentRinging, "answer", 0, now)
	return err
}

// CallNotAnswered moves an agent ringing for callRef back to available and
// counts the miss; at maxNoAnswer misses in a row (0: never) the agent is
// paused with reason ReasonNoAnswer instead, and paused is true.
func (s *Store) CallNotAnswered(ctx context.Context, ext, callRef string, maxNoAnswer int, now time.Time) (paused bool, err error) {
	if maxNoAnswer < 0 {
		maxNoAnswer = 0
	}
	return s.callTransition(ctx, ext, callRef, AgentRinging, "noanswer", int64(maxNoAnswer), now)
}

// CallEnded moves an agent on callRef to wrap-up until now+wrapup (straight
// to available when wrapup <= 0) and records now as its last call's end.
func (s *Store) CallEnded(ctx context.Context, ext, callRef string, wrapup time.Duration, now time.Time) error {
	_, err := s.callTransition(ctx, ext, callRef, AgentOnCall, "end", max(wrapup.Milliseconds(), 0), now)
	return err
}

// ReleaseAgent moves an agent ringing for callRef back to available
// without counting a miss and without losing its place (since is kept): the
// caller hung up while it rang, or another agent of a ring_all answered.
func (s *Store) ReleaseAgent(ctx context.Context, ext, callRef string, now time.Time) error {
	_, err := s.callTransition(ctx, ext, callRef, AgentRinging, "release", 0, now)
	return err
}

// KEYS[1] the agent's state HASH. ARGV[1] now in unix ms.
// An agent without a state, or logged out, becomes available; any other
// state is kept (a pause survives a reload of the agent's page). Returns 1
// when the agent became available.
var agentRegisteredScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st and st ~= 'logged_out' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'available', 'reason', '', 'call_ref', '', 'since', ARGV[1], 'wrapup_until', '0', 'no_answer', '0')
return 1
`)

// AgentRegistered makes an agent that registers a new binding available
// unless it is paused or busy: seed 001's agents only register, so
// registering is how they log in.
func (s *Store) AgentRegistered(ctx context.Context, ext string, now time.Time) (bool, error) {
	if err := ValidateExtension(ext); err != nil {
		return false, s.agentError(ext, err)
	}
	n, err := agentRegisteredScript.Run(ctx, s.rdb, []string{s.AgentStateKey(ext)}, now.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("store: agent %q registered: %w", ext, err)
	}
	return n == 1, nil
}

// Registered tells, for each extension, whether it has a live binding
// (one round trip).
func (s *Store) Registered(ctx context.Context, exts []string, now time.Time) (map[string]bool, error) {
	out := make(map[string]bool, len(exts))
	if len(exts) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(exts))
	for i, ext := range exts {
		if err := ValidateExtension(ext); err != nil {
			return nil, s.agentError(ext, err)
		}
		cmds[i] = pipe.HGetAll(ctx, s.BindingsKey(ext))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: read bindings of %d agents: %w", len(exts), err)
	}
	for i, ext := range exts {
		live, _ := sortBindings(ext, cmds[i].Val(), now)
		out[ext] = len(live) > 0
	}
	return out, nil
}
