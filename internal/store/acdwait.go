package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/validate"
)

// Waiting callers of the inbound queues: the ACD's claim ledger. A caller
// stays on the node its call arrived on (the media are there), but its
// place in line is cluster-wide, so the queue order is one order whatever
// node each caller came in on:
//
//	redial:{acd:<domain>}:queue:<q>:waiting  ZSET  call_ref, score = join time (unix ms)
//	redial:{acd:<domain>}:caller:<ref>       HASH  queue, host, joined, score,
//	                                               state (waiting | offered | connected),
//	                                               offered (exts rung, space-separated), agent
//	redial:{acd:<domain>}:callers:<host>     SET   the call_refs <host> holds
//	redial:{acd:<domain>}:holders            SET   hosts that have (had) callers
//	redial:{acd:<domain>}:queue:<q>:rr       STRING the ext last offered (round_robin)
//	redial:{acd:<domain>}:queue:<q>:outcomes ZSET  "<ref> <a|x|o> <hold ms>", score = unix ms,
//	                                               the last hour (service level)
//
// Like the agents' hashes every key shares the slot {acd:<domain>}, so one
// script decides an offer: it takes the caller out of the line and moves
// its agent(s) to ringing together, and nothing else can take either. A
// node that dies loses only its own callers: the Recoverer (the same one
// every ledger uses) drops them from their lines and frees the agents that
// rang or talked for them. Unlike a number claim there is nothing to
// requeue: the call died with its node.

// Outcomes of a queue call, for the service level.
const (
	OutcomeAnswered  = "a"
	OutcomeAbandoned = "x"
	OutcomeOverflow  = "o"
)

// ServiceWindow is how far back the service level looks.
const ServiceWindow = time.Hour

// ErrQueueFull is returned by JoinQueue when max_len callers wait.
var ErrQueueFull = errors.New("queue full")

// ErrCallerQueued is returned by JoinQueue for a call_ref already in a
// queue.
var ErrCallerQueued = errors.New("call already queued")

func (s *Store) acdKey(rest string) string { return "redial:{acd:" + s.cfg.Domain + "}:" + rest }

// WaitingKey is the ZSET of a queue's waiting callers.
func (s *Store) WaitingKey(queue string) string { return s.acdKey("queue:" + queue + ":waiting") }

func (s *Store) callerKey(ref string) string     { return s.acdKey("caller:" + ref) }
func (s *Store) callersKey(host string) string   { return s.acdKey("callers:" + host) }
func (s *Store) acdHoldersKey() string           { return s.acdKey("holders") }
func (s *Store) rrKey(queue string) string       { return s.acdKey("queue:" + queue + ":rr") }
func (s *Store) outcomesKey(queue string) string { return s.acdKey("queue:" + queue + ":outcomes") }

// KEYS[1] waiting ZSET, KEYS[2] caller HASH, KEYS[3] the host's callers
// SET, KEYS[4] holders SET.
// ARGV[1] call_ref, ARGV[2] host, ARGV[3] queue, ARGV[4] now (unix ms),
// ARGV[5] max_len (0: no limit).
// Returns the caller's position (1 = first), -1 when max_len callers wait
// already, -2 when the call_ref is queued already; nothing changes then.
var joinQueueScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return -1 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], 'queue', ARGV[3], 'host', ARGV[2], 'joined', ARGV[4], 'score', ARGV[4], 'state', 'waiting', 'offered', '', 'agent', '')
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return redis.call('ZRANK', KEYS[1], ARGV[1]) + 1
`)

// JoinQueue puts callRef, held by this node, at the end of queue's line
// and returns its position. maxLen > 0 refuses a caller when that many
// wait (ErrQueueFull).
func (s *Store) JoinQueue(ctx context.Context, queue, callRef string, maxLen int, now time.Time) (int, error) {
	if err := s.checkWaitArgs(queue, callRef); err != nil {
		return 0, err
	}
	keys := []string{s.WaitingKey(queue), s.callerKey(callRef), s.callersKey(s.cfg.Host), s.acdHoldersKey()}
	n, err := joinQueueScript.Run(ctx, s.rdb, keys, callRef, s.cfg.Host, queue, now.UnixMilli(), maxLen).Int()
	switch {
	case err != nil:
		return 0, fmt.Errorf("store: join queue %q with call %q: %w", queue, callRef, err)
	case n == -1:
		return 0, fmt.Errorf("store: queue %q: %w (%d waiting)", queue, ErrQueueFull, maxLen)
	case n == -2:
		return 0, fmt.Errorf("store: queue %q: call %q: %w", queue, callRef, ErrCallerQueued)
	}
	return n, nil
}

func (s *Store) checkWaitArgs(queue, callRef string) error {
	if err := validateQueueName(queue); err != nil {
		return s.queueError(queue, err)
	}
	if callRef == "" {
		return s.queueError(queue, errors.New("call_ref: empty"))
	}
	if err := validate.Ref("call_ref", callRef); err != nil {
		return s.queueError(queue, err)
	}
	return nil
}

// Candidate is an agent a waiting caller may be offered to, in the order
// the queue's strategy prefers; Level is its tier (lower first).
type Candidate struct {
	Ext   string
	Level int
}

// OfferResult is what one offer attempt decided.
type OfferResult struct {
	// Agents are the agents now ringing for the caller (one, or every
	// free agent of the lowest level for ring_all); nil when none.
	Agents []string
	// Gone is true when the caller was not waiting in the line (it left,
	// or a recovery dropped it).
	Gone bool
	// Ahead is how many callers wait before this one; Free how many
	// candidates were free. An offer is made when Free > Ahead.
	Ahead, Free int
	// NextFree is the earliest end of a candidate's wrap-up, zero if none:
	// when to try again without a notice.
	NextFree time.Time
}

// KEYS[1] waiting ZSET, KEYS[2] caller HASH, KEYS[3] the queue's rr
// STRING, KEYS[4..] the candidates' agent state HASHes in preference order.
// ARGV[1] call_ref, ARGV[2] now (unix ms), ARGV[3] 'one' or 'all'
// (ring_all), ARGV[4] '1' to remember the agent offered (round_robin),
// then per candidate (KEYS[4] first) its level and its ext.
// A caller is offered the (ahead+1)-th free candidate, ahead being the
// callers before it in the line, so the first in line gets the most
// preferred agent whichever node each is on; with 'all' the first in line
// alone gets every free candidate of the lowest level among the free.
// Returns {-1} when the caller is not waiting; {0, ahead, free, next
// wrap-up end or 0} when no offer was made; {1, ext, ...} when those
// agents now ring for the caller and the caller left the line (state
// offered, offered = the exts).
var offerScript = redis.NewScript(`
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return {-1} end
local now = tonumber(ARGV[2])
local free, nextw = {}, 0
for i = 4, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'state', 'wrapup_until')
  local ok = h[1] == 'available'
  if h[1] == 'wrapup' then
    local w = tonumber(h[2]) or 0
    if now >= w then ok = true elseif nextw == 0 or w < nextw then nextw = w end
  end
  if ok then free[#free + 1] = i end
end
local function level(i) return ARGV[5 + 2 * (i - 4)] end
local function ext(i) return ARGV[6 + 2 * (i - 4)] end
local pick = {}
if ARGV[3] == 'all' then
  if rank == 0 and #free > 0 then
    for _, i in ipairs(free) do
      if level(i) == level(free[1]) then pick[#pick + 1] = i end
    end
  end
elseif #free > rank then
  pick[1] = free[rank + 1]
end
if #pick == 0 then return {0, rank, #free, nextw} end
local out, names = {1}, {}
for _, i in ipairs(pick) do
  local h = redis.call('HMGET', KEYS[i], 'state', 'since', 'wrapup_until')
  local idle = h[2] or '0'
  if h[1] == 'wrapup' then idle = h[3] or idle end
  redis.call('HSET', KEYS[i], 'state', 'ringing', 'call_ref', ARGV[1], 'since', ARGV[2], 'idle_since', idle, 'reason', '', 'wrapup_until', '0')
  out[#out + 1] = ext(i)
  names[#names + 1] = ext(i)
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'offered', 'offered', table.concat(names, ' '))
if ARGV[4] == '1' then redis.call('SET', KEYS[3], ext(pick[1])) end
return out
`)

// Offer tries, in one atomic step, to offer the waiting caller callRef of
// queue to its candidates: see offerScript. Every candidate offered moves
// to ringing for callRef and the caller leaves the line until Unoffer puts
// it back.
func (s *Store) Offer(ctx context.Context, queue, callRef string, cands []Candidate, ringAll, remember bool, now time.Time) (OfferResult, error) {
	var out OfferResult
	if err := s.checkWaitArgs(queue, callRef); err != nil {
		return out, err
	}
	if len(cands) == 0 {
		rank, err := s.rdb.ZRank(ctx, s.WaitingKey(queue), callRef).Result()
		if errors.Is(err, redis.Nil) {
			out.Gone = true
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("store: queue %q: rank of call %q: %w", queue, callRef, err)
		}
		out.Ahead = int(rank)
		return out, nil
	}
	keys := make([]string, 0, 3+len(cands))
	keys = append(keys, s.WaitingKey(queue), s.callerKey(callRef), s.rrKey(queue))
	args := make([]any, 0, 4+2*len(cands))
	mode := "one"
	if ringAll {
		mode = "all"
	}
	args = append(args, callRef, now.UnixMilli(), mode, flag(remember))
	for _, c := range cands {
		if err := ValidateExtension(c.Ext); err != nil {
			return out, s.agentError(c.Ext, err)
		}
		keys = append(keys, s.AgentStateKey(c.Ext))
		args = append(args, c.Level, c.Ext)
	}
	res, err := offerScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return out, fmt.Errorf("store: queue %q: offer call %q: %w", queue, callRef, err)
	}
	num := func(i int) int64 {
		if i < len(res) {
			if n, ok := res[i].(int64); ok {
				return n
			}
		}
		return -2
	}
	switch {
	case len(res) == 1 && num(0) == -1:
		out.Gone = true
	case len(res) == 4 && num(0) == 0:
		out.Ahead, out.Free = int(num(1)), int(num(2))
		if n := num(3); n > 0 {
			out.NextFree = time.UnixMilli(n)
		}
	case len(res) >= 2 && num(0) == 1:
		for _, x := range res[1:] {
			ext, ok := x.(string)
			if !ok {
				return out, fmt.Errorf("store: queue %q: offer call %q: unexpected reply %v", queue, callRef, res)
			}
			out.Agents = append(out.Agents, ext)
		}
	default:
		return out, fmt.Errorf("store: queue %q: offer call %q: unexpected reply %v", queue, callRef, res)
	}
	return out, nil
}

// LastOffered is the agent round_robin offered last in queue ("" when
// none), as Offer with remember stored it.
func (s *Store) LastOffered(ctx context.Context, queue string) (string, error) {
	v, err := s.rdb.Get(ctx, s.rrKey(queue)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("store: GET %s: %w", s.rrKey(queue), err)
	}
	return v, nil
}

// KEYS[1] waiting ZSET, KEYS[2] caller HASH.
// ARGV[1] call_ref.
// Returns 1 when the offered caller is back in line at its first place, 0
// when it was not offered (gone, waiting, connected) and nothing changed.
var unofferScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[2], 'state', 'score')
if h[1] ~= 'offered' then return 0 end
redis.call('ZADD', KEYS[1], h[2], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'waiting', 'offered', '')
return 1
`)

// Unoffer puts a caller whose offer went unanswered back in line, where it
// was: it keeps its join time. The agents are settled separately
// (CallNotAnswered, ReleaseAgent). ok is false when the caller was gone.
func (s *Store) Unoffer(ctx context.Context, queue, callRef string) (ok bool, err error) {
	if err := s.checkWaitArgs(queue, callRef); err != nil {
		return false, err
	}
	n, err := unofferScript.Run(ctx, s.rdb, []string{s.WaitingKey(queue), s.callerKey(callRef)}, callRef).Int()
	if err != nil {
		return false, fmt.Errorf("store: queue %q: put call %q back in line: %w", queue, callRef, err)
	}
	return n == 1, nil
}

// KEYS[1] caller HASH, KEYS[2] the queue's outcomes ZSET.
// ARGV[1] call_ref, ARGV[2] agent ext, ARGV[3] now (unix ms), ARGV[4] hold
// time in ms, ARGV[5] the window start (unix ms): older outcomes go.
// Returns 1, or 0 when the caller is unknown (nothing changed).
var connectedScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'connected', 'agent', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1] .. ' a ' .. ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
return 1
`)

// CallerConnected records that callRef reached agent ext after hold: the
// recovery of a dead node then frees that agent, and the service level
// counts the answer.
func (s *Store) CallerConnected(ctx context.Context, queue, callRef, ext string, hold time.Duration, now time.Time) error {
	if err := s.checkWaitArgs(queue, callRef); err != nil {
		return err
	}
	keys := []string{s.callerKey(callRef), s.outcomesKey(queue)}
	if err := connectedScript.Run(ctx, s.rdb, keys, callRef, ext, now.UnixMilli(), hold.Milliseconds(),
		now.Add(-ServiceWindow).UnixMilli()).Err(); err != nil {
		return fmt.Errorf("store: queue %q: call %q connected to %q: %w", queue, callRef, ext, err)
	}
	return nil
}

// KEYS[1] waiting ZSET, KEYS[2] caller HASH, KEYS[3] the host's callers
// SET, KEYS[4] the queue's outcomes ZSET.
// ARGV[1] call_ref, ARGV[2] outcome (empty: none; 'x' abandoned, 'o'
// overflow), ARGV[3] now (unix ms), ARGV[4] hold time ms, ARGV[5] the
// window start (unix ms).
// Returns 1 when the caller was known, else 0; either way it is gone.
var leaveScript = redis.NewScript(`
local known = redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if known == 1 and ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[5])
end
return known
`)

// LeaveQueue takes callRef off queue for good: it hung up waiting
// (OutcomeAbandoned), went to the overflow (OutcomeOverflow), or its call
// with an agent ended (outcome ""). hold is the time it waited.
func (s *Store) LeaveQueue(ctx context.Context, queue, callRef, outcome string, hold time.Duration, now time.Time) error {
	if err := s.checkWaitArgs(queue, callRef); err != nil {
		return err
	}
	keys := []string{s.WaitingKey(queue), s.callerKey(callRef), s.callersKey(s.cfg.Host), s.outcomesKey(queue)}
	if err := leaveScript.Run(ctx, s.rdb, keys, callRef, outcome, now.UnixMilli(), hold.Milliseconds(),
		now.Add(-ServiceWindow).UnixMilli()).Err(); err != nil {
		return fmt.Errorf("store: queue %q: call %q leaves: %w", queue, callRef, err)
	}
	return nil
}

// KEYS[1] waiting ZSET, KEYS[2] caller HASH, KEYS[3] the host's callers
// SET, KEYS[4..] the agent state HASHes the caller was offered to or
// connected with.
// ARGV[1] call_ref, ARGV[2] now (unix ms).
// Every agent still ringing for or talking to call_ref becomes available
// (one that talked has its last call end now); the caller is gone from
// everywhere. Returns how many agents were freed.
var dropCallerScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
local freed = 0
for i = 4, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'state', 'call_ref')
  if h[2] == ARGV[1] and (h[1] == 'ringing' or h[1] == 'on_call') then
    redis.call('HSET', KEYS[i], 'state', 'available', 'call_ref', '', 'since', ARGV[2], 'wrapup_until', '0')
    if h[1] == 'on_call' then redis.call('HSET', KEYS[i], 'last_call_end', ARGV[2]) end
    freed = freed + 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return freed
`)

// ACDLedger is the waiting callers as the cluster Recoverer sees them: a
// dead node's callers are dropped and their agents freed.
type ACDLedger struct{ s *Store }

// ACDLedger returns the waiting callers' ledger of this node's domain.
func (s *Store) ACDLedger() *ACDLedger { return &ACDLedger{s: s} }

// Name implements cluster.Recoverable.
func (l *ACDLedger) Name() string { return "acd " + l.s.cfg.Domain }

// Holders implements cluster.Recoverable.
func (l *ACDLedger) Holders(ctx context.Context) ([]string, error) {
	h, err := l.s.rdb.SMembers(ctx, l.s.acdHoldersKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", l.s.acdHoldersKey(), err)
	}
	return h, nil
}

// Recover implements cluster.Recoverable: the dead host's callers are
// dropped (counted as Interrupted: their calls died) and every agent
// ringing for or talking to one of them is available again.
func (l *ACDLedger) Recover(ctx context.Context, deadHost string) (RecoverResult, error) {
	alive, err := l.s.Alive(ctx, []string{deadHost})
	if err != nil {
		return RecoverResult{}, err
	}
	if alive[deadHost] {
		return RecoverResult{}, fmt.Errorf("store: recover %s: %w", l.s.callersKey(deadHost), ErrHostAlive)
	}
	return l.drop(ctx, deadHost)
}

// SettleOwn implements cluster.Recoverable: the callers a previous run of
// this node left died with it.
func (l *ACDLedger) SettleOwn(ctx context.Context) (RecoverResult, error) {
	return l.drop(ctx, l.s.cfg.Host)
}

func (l *ACDLedger) drop(ctx context.Context, host string) (RecoverResult, error) {
	var out RecoverResult
	s := l.s
	set := s.callersKey(host)
	for {
		refs, err := s.rdb.SRandMemberN(ctx, set, recoverBatch).Result()
		if err != nil {
			return out, fmt.Errorf("store: SRANDMEMBER %s: %w", set, err)
		}
		if len(refs) == 0 {
			break
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(refs))
		for i, ref := range refs {
			cmds[i] = pipe.HMGet(ctx, s.callerKey(ref), "queue", "offered", "agent")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("store: read callers of %s: %w", host, err)
		}
		now := time.Now().UnixMilli()
		for i, ref := range refs {
			v := cmds[i].Val()
			str := func(j int) string {
				if j < len(v) {
					if x, ok := v[j].(string); ok {
						return x
					}
				}
				return ""
			}
			queue := str(0)
			keys := []string{s.WaitingKey(queue), s.callerKey(ref), set}
			if queue == "" || validateQueueName(queue) != nil {
				// A caller hash gone (or never whole): only the set entry is left.
				keys[0] = s.acdKey("queue::waiting")
			}
			for _, ext := range offeredAgents(str(1), str(2)) {
				keys = append(keys, s.AgentStateKey(ext))
			}
			if err := dropCallerScript.Run(ctx, s.rdb, keys, ref, now).Err(); err != nil {
				return out, fmt.Errorf("store: drop caller %q of %s: %w", ref, host, err)
			}
			out.Interrupted++
		}
	}
	// The host leaves holders only while it has no callers: a caller that
	// joined meanwhile (SettleOwn at start) keeps it there.
	if err := leaveHoldersScript.Run(ctx, s.rdb, []string{set, s.acdHoldersKey()}, host).Err(); err != nil {
		return out, fmt.Errorf("store: %s leaves %s: %w", host, s.acdHoldersKey(), err)
	}
	return out, nil
}

// KEYS[1] the host's callers SET, KEYS[2] holders SET. ARGV[1] host.
// Removes the host from holders when its set is empty; returns 1 then.
var leaveHoldersScript = redis.NewScript(`
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
`)

// offeredAgents lists the agents a caller rang or reached, from its
// hash's offered and agent fields.
func offeredAgents(offered, agent string) []string {
	var out []string
	for _, ext := range append(strings.Fields(offered), agent) {
		if ext != "" && ValidateExtension(ext) == nil && !slices.Contains(out, ext) {
			out = append(out, ext)
		}
	}
	return out
}

// QueueWait is a queue's line as the cluster sees it.
type QueueWait struct {
	// Waiting is how many callers wait in line (not ringing an agent).
	Waiting int
	// Oldest is the join time of the first in line; zero when none.
	Oldest time.Time
	// Over the last ServiceWindow: callers answered, answered within the
	// service level threshold, abandoned, and sent to the overflow.
	Answered, AnsweredWithin, Abandoned, Overflowed int
}

// QueueWaitStats reads queue's line and its outcomes of the last
// ServiceWindow; within is the service level threshold (20 s).
func (s *Store) QueueWaitStats(ctx context.Context, queue string, within time.Duration, now time.Time) (QueueWait, error) {
	var out QueueWait
	if err := validateQueueName(queue); err != nil {
		return out, s.queueError(queue, err)
	}
	pipe := s.rdb.Pipeline()
	card := pipe.ZCard(ctx, s.WaitingKey(queue))
	first := pipe.ZRangeWithScores(ctx, s.WaitingKey(queue), 0, 0)
	outs := pipe.ZRangeByScore(ctx, s.outcomesKey(queue), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Add(-ServiceWindow).UnixMilli(), 10), Max: "+inf"})
	if _, err := pipe.Exec(ctx); err != nil {
		return out, fmt.Errorf("store: queue %q: read line: %w", queue, err)
	}
	out.Waiting = int(card.Val())
	if z := first.Val(); len(z) == 1 {
		out.Oldest = time.UnixMilli(int64(z[0].Score))
	}
	for _, m := range outs.Val() {
		f := strings.Fields(m)
		if len(f) != 3 {
			continue
		}
		hold, _ := strconv.ParseInt(f[2], 10, 64)
		switch f[1] {
		case OutcomeAnswered:
			out.Answered++
			if time.Duration(hold)*time.Millisecond <= within {
				out.AnsweredWithin++
			}
		case OutcomeAbandoned:
			out.Abandoned++
		case OutcomeOverflow:
			out.Overflowed++
		}
	}
	return out, nil
}

// Position is callRef's place in queue's line (1 = next), 0 when it is not
// waiting (ringing an agent, or gone).
func (s *Store) Position(ctx context.Context, queue, callRef string) (int, error) {
	rank, err := s.rdb.ZRank(ctx, s.WaitingKey(queue), callRef).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: queue %q: rank of call %q: %w", queue, callRef, err)
	}
	return int(rank) + 1, nil
}
