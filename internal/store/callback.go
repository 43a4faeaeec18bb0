package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Voicemail callbacks (seed 000): the event intake, callback plans, the
// documents they read and the cron tick guard.
//
// Events. redial:events is DESIGN.md's list name and carries no braces, so
// it hashes whole; redial's own event keys use that whole name as their tag
// and share its slot:
//
//	redial:events                                  LIST  event JSON; producers LPUSH, claimed from the right
//	redial:{redial:events}:processing:<host>       LIST  events claimed by <host>, newest at the left
//	redial:{redial:events}:holders                 SET   hosts that have (had) a processing list
//	redial:{redial:events}:invalid                 LIST  ParkedItem JSON of events that could not be used
//
// Plans. One plan per vmbox across all nodes. The due-time ZSET is one key
// for all plans, so all plan keys share the slot {callback}:
//
//	redial:{callback}:plans              HASH  "<account>/<vmbox>" -> plan JSON (callback package's codec)
//	redial:{callback}:due                ZSET  member = plan field, score = unix ms of the next attempt;
//	                                           a plan being attempted is not in it
//	redial:{callback}:processing:<host>  HASH  plan field -> {"claimed_at":<server unix ms>,"invited":false}
//	redial:{callback}:holders            SET   hosts that have (had) a processing hash
//	redial:{callback}:ended              LIST  EndedPlan JSON, newest first, capped at EndedPlansCap
//
// A plan's JSON stays in the plans hash while it is claimed, so a second
// voicemail_saved for the same vmbox (on any node) finds it and creates
// nothing. Documents and cron:
//
//	account, user@<account>, vmbox@<account>, callflow@<account>, system_config
//	                                     HASH  document JSON by id (seed 000; system_config field "ananke")
//	redial:cron:<entry>:<tick unix s>    STRING the node that runs that tick, PX ttl

// ErrPlanGone means the plan no longer exists (it was ended, possibly by
// another node or an operator); nothing was written.
var ErrPlanGone = errors.New("plan no longer exists")

// EndedPlansCap is how many ended plans the ended list keeps.
const EndedPlansCap = 1000

// EventsKey is the list producers LPUSH events onto.
func (s *Store) EventsKey() string { return "redial:events" }

// EventsProcessingKey is the list of events host has claimed.
func (s *Store) EventsProcessingKey(host string) string {
	return "redial:{redial:events}:processing:" + host
}

// EventsHoldersKey is the set of hosts that have (had) an events
// processing list.
func (s *Store) EventsHoldersKey() string { return "redial:{redial:events}:holders" }

// EventsInvalidKey is the list of events moved aside as unusable.
func (s *Store) EventsInvalidKey() string { return "redial:{redial:events}:invalid" }

// PushEvent LPUSHes one event JSON onto the events list.
func (s *Store) PushEvent(ctx context.Context, eventJSON string) error {
	key := s.EventsKey()
	if err := s.rdb.LPush(ctx, key, eventJSON).Err(); err != nil {
		return fmt.Errorf("store: LPUSH %s: %w", key, err)
	}
	return nil
}

// ClaimEvent waits up to timeout for an event and claims it, oldest first:
// BLMOVE redial:events <processing> RIGHT LEFT. It returns ("", false, nil)
// when the timeout passes with no event. The timeout is rounded up to
// whole seconds (at least 1 s) for the reason Claim gives. Call
// EnsureEventHolder before the first claim.
func (s *Store) ClaimEvent(ctx context.Context, host string, timeout time.Duration) (string, bool, error) {
	secs := (timeout + time.Second - 1) / time.Second
	if secs < 1 {
		secs = 1
	}
	src, dst := s.EventsKey(), s.EventsProcessingKey(host)
	raw, err := s.rdb.BLMove(ctx, src, dst, "RIGHT", "LEFT", secs*time.Second).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: BLMOVE %s %s: %w", src, dst, err)
	}
	return raw, true, nil
}

// ClaimedEvents lists the events host holds, newest claim first (for a
// node reconciling after a transport error).
func (s *Store) ClaimedEvents(ctx context.Context, host string) ([]string, error) {
	key := s.EventsProcessingKey(host)
	v, err := s.rdb.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: LRANGE %s: %w", key, err)
	}
	return v, nil
}

// AckEvent finishes a claimed event (LREM of one copy). It returns an
// error wrapping ErrClaimGone when host did not hold it.
func (s *Store) AckEvent(ctx context.Context, host, raw string) error {
	key := s.EventsProcessingKey(host)
	n, err := s.rdb.LRem(ctx, key, 1, raw).Result()
	if err != nil {
		return fmt.Errorf("store: LREM %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("store: ack event in %s: %w", key, ErrClaimGone)
	}
	return nil
}

// KEYS[1] processing LIST, KEYS[2] invalid LIST.
// ARGV[1] raw event, ARGV[2] ParkedItem JSON.
// Returns 1 when one copy of the event was moved, 0 when it was not held.
var invalidEventScript = redis.NewScript(`
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
`)

// InvalidEvent moves a claimed event that cannot be used to the invalid
// list as a ParkedItem with reason. It returns an error wrapping
// ErrClaimGone when host did not hold it.
func (s *Store) InvalidEvent(ctx context.Context, host, raw, reason string) error {
	proc, dest := s.EventsProcessingKey(host), s.EventsInvalidKey()
	v := parkedJSON(raw, reason, host, time.Now())
	n, err := invalidEventScript.Run(ctx, s.rdb, []string{proc, dest}, raw, v).Int64()
	if err != nil {
		return fmt.Errorf("store: move event from %s to %s: %w", proc, dest, err)
	}
	if n == 0 {
		return fmt.Errorf("store: move event from %s to %s: %w", proc, dest, ErrClaimGone)
	}
	return nil
}

// EnsureEventHolder registers host in the events holders set, so that its
// claimed events are found after it dies. Call it before the first
// ClaimEvent and on every heartbeat tick (RecoverEvents drops a host it
// declared dead).
func (s *Store) EnsureEventHolder(ctx context.Context, host string) error {
	key := s.EventsHoldersKey()
	if err := s.rdb.SAdd(ctx, key, host).Err(); err != nil {
		return fmt.Errorf("store: SADD %s %s: %w", key, host, err)
	}
	return nil
}

// EventHolders lists the hosts registered in the events holders set.
func (s *Store) EventHolders(ctx context.Context) ([]string, error) {
	key := s.EventsHoldersKey()
	v, err := s.rdb.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", key, err)
	}
	return v, nil
}

// KEYS[1] the host's processing LIST, KEYS[2] events LIST, KEYS[3] holders
// SET, KEYS[4] (optional, omitted on Cluster) the host's heartbeat key.
// ARGV[1] max events, ARGV[2] host.
// Moves up to ARGV[1] events, newest claim first, to the consumer end of
// the events list (RPUSH), so they are claimed again oldest first. When
// the processing list is empty, host leaves holders.
// Returns {status, moved, remaining}: status 0 = heartbeat alive, nothing
// done; 1 = batch done.
var recoverEventsScript = redis.NewScript(`
if #KEYS >= 4 and redis.call('EXISTS', KEYS[4]) == 1 then
  return {0, 0, redis.call('LLEN', KEYS[1])}
end
local n = 0
for i = 1, tonumber(ARGV[1]) do
  local raw = redis.call('LPOP', KEYS[1])
  if not raw then break end
  redis.call('RPUSH', KEYS[2], raw)
  n = n + 1
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return {1, n, left}
`)

// RecoverEvents puts the events deadHost had claimed back at the consumer
// end of the events list, in their order, in batches of 100 per script.
// Handling an event twice is harmless: a vmbox has at most one plan. It
// refuses, with an error wrapping ErrHostAlive, while deadHost's heartbeat
// exists, returning what it moved so far.
func (s *Store) RecoverEvents(ctx context.Context, deadHost string) (int, error) {
	return s.recoverEvents(ctx, deadHost, true)
}

// RecoverOwnEvents recovers the events a previous run of this node (same
// host name) left claimed, without the heartbeat check; call it at startup
// before the first ClaimEvent.
func (s *Store) RecoverOwnEvents(ctx context.Context, host string) (int, error) {
	return s.recoverEvents(ctx, host, false)
}

func (s *Store) recoverEvents(ctx context.Context, host string, check bool) (int, error) {
	proc := s.EventsProcessingKey(host)
	moved := 0
	for {
		keys := []string{proc, s.EventsKey(), s.EventsHoldersKey()}
		if err := s.recoverAliveCheck(ctx, proc, host, check, &keys); err != nil {
			return moved, err
		}
		res, err := recoverEventsScript.Run(ctx, s.rdb, keys, recoverBatch, host).Int64Slice()
		if err != nil {
			return moved, fmt.Errorf("store: recover %s: %w", proc, err)
		}
		if len(res) != 3 {
			return moved, fmt.Errorf("store: recover %s: script returned %v", proc, res)
		}
		if res[0] == 0 {
			return moved, fmt.Errorf("store: recover %s: %w", proc, ErrHostAlive)
		}
		moved += int(res[1])
		if res[2] == 0 {
			return moved, nil
		}
		if err := ctx.Err(); err != nil {
			return moved, fmt.Errorf("store: recover %s: %w", proc, err)
		}
	}
}

// PlanField is the plans hash field of one vmbox: "<account>/<vmbox>".
func PlanField(account, vmbox string) string { return account + "/" + vmbox }

// PlansKey is the hash of plan JSON by plan field.
func (s *Store) PlansKey() string { return "redial:{callback}:plans" }

// PlansDueKey is the ZSET of plans waiting for their next attempt.
func (s *Store) PlansDueKey() string { return "redial:{callback}:due" }

// PlansProcessingKey is the hash of plans host is attempting.
func (s *Store) PlansProcessingKey(host string) string {
	return "redial:{callback}:processing:" + host
}

// PlansHoldersKey is the set of hosts that have (had) a plans processing
// hash.
func (s *Store) PlansHoldersKey() string { return "redial:{callback}:holders" }

// PlansEndedKey is the capped list of ended plans.
func (s *Store) PlansEndedKey() string { return "redial:{callback}:ended" }

// PlanRecord is one claimed plan.
type PlanRecord struct {
	Field string
	JSON  string
	// Due is when the attempt was due (millisecond precision).
	Due time.Time
}

// KEYS[1] plans HASH, KEYS[2] due ZSET.
// ARGV[1] field, ARGV[2] plan JSON, ARGV[3] due (unix ms).
// Returns 1 when the plan was created, 0 when the field had a plan.
var createPlanScript = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
`)

// CreatePlan creates the plan of field, due at due, unless field already
// has one (waiting or being attempted): the same event twice, or on two
// nodes, yields one plan.
func (s *Store) CreatePlan(ctx context.Context, field, planJSON string, due time.Time) (created bool, err error) {
	keys := []string{s.PlansKey(), s.PlansDueKey()}
	n, err := createPlanScript.Run(ctx, s.rdb, keys, field, planJSON, due.UnixMilli()).Int64()
	if err != nil {
		return false, fmt.Errorf("store: create plan %q in %s: %w", field, keys[0], err)
	}
	return n == 1, nil
}

// KEYS[1] due ZSET, KEYS[2] plans HASH, KEYS[3] this host's processing
// HASH, KEYS[4] holders SET.
// ARGV[1] max plans, ARGV[2] host.
// Takes up to ARGV[1] fields due by the server's clock out of the ZSET,
// earliest first, and records each in the processing hash. A due field
// without plan JSON (ended meanwhile) is dropped. Registers host in
// holders when it claimed anything.
// Returns {next, f_1, json_1, due_1, ...}: next = earliest score left in
// the ZSET ("" when empty), due_i the claimed score (unix ms), as strings.
var claimPlansScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
local out = {''}
for i = 1, #due, 2 do
  local f = due[i]
  redis.call('ZREM', KEYS[1], f)
  local js = redis.call('HGET', KEYS[2], f)
  if js then
    redis.call('HSET', KEYS[3], f, '{"claimed_at":' .. now .. ',"invited":false}')
    out[#out + 1] = f
    out[#out + 1] = js
    out[#out + 1] = due[i + 1]
  end
end
if #out > 1 then redis.call('SADD', KEYS[4], ARGV[2]) end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nx == 2 then out[1] = nx[2] end
return out
`)

// ClaimDuePlans claims up to max plans whose next attempt is due by the
// Redis server's clock, earliest first, for host: each is out of the due
// ZSET and in host's processing hash until ReschedulePlan or EndPlan. Two
// nodes never claim the same plan. next is the earliest due time left
// (zero when none); next at or before now means more plans are due
// already.
func (s *Store) ClaimDuePlans(ctx context.Context, host string, max int) ([]PlanRecord, time.Time, error) {
	if max < 1 {
		max = 1
	}
	keys := []string{s.PlansDueKey(), s.PlansKey(), s.PlansProcessingKey(host), s.PlansHoldersKey()}
	res, err := claimPlansScript.Run(ctx, s.rdb, keys, max, host).StringSlice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("store: claim due plans of %s: %w", keys[0], err)
	}
	if len(res)%3 != 1 {
		return nil, time.Time{}, fmt.Errorf("store: claim due plans of %s: script returned %d values", keys[0], len(res))
	}
	var next time.Time
	if res[0] != "" {
		next = zscoreMillis(res[0])
	}
	out := make([]PlanRecord, 0, len(res)/3)
	for i := 1; i < len(res); i += 3 {
		out = append(out, PlanRecord{Field: res[i], JSON: res[i+1], Due: zscoreMillis(res[i+2])})
	}
	return out, next, nil
}

// zscoreMillis turns a ZSET score printed by Redis (unix ms) into a time;
// an unreadable score (someone else's write) reads as the zero time.
func zscoreMillis(v string) time.Time {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f || f > 1e15 || f < -1e15 {
		return time.Time{}
	}
	return time.UnixMilli(int64(f))
}

// KEYS[1] processing HASH, KEYS[2] plans HASH.
// ARGV[1] field.
// Returns 1 when marked, 0 when the claim is not held, -1 when the plan
// ended meanwhile (the stale claim is dropped).
var markPlanScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return -1
end
local rec = string.gsub(redis.call('HGET', KEYS[1], ARGV[1]), '"invited":false', '"invited":true')
redis.call('HSET', KEYS[1], ARGV[1], rec)
return 1
`)

// MarkPlanInvited records, before the INVITE of an attempt, that host is
// dialing it, and checks that it still may: it returns an error wrapping
// ErrClaimGone when host no longer holds the claim (another node
// recovered it) or ErrPlanGone when the plan was ended meanwhile. Do not
// dial then.
func (s *Store) MarkPlanInvited(ctx context.Context, host, field string) error {
	keys := []string{s.PlansProcessingKey(host), s.PlansKey()}
	n, err := markPlanScript.Run(ctx, s.rdb, keys, field).Int64()
	if err != nil {
		return fmt.Errorf("store: mark plan %q invited in %s: %w", field, keys[0], err)
	}
	return planResult(n, "mark plan "+strconv.Quote(field)+" invited in "+keys[0])
}

func planResult(n int64, what string) error {
	switch n {
	case 0:
		return fmt.Errorf("store: %s: %w", what, ErrClaimGone)
	case -1:
		return fmt.Errorf("store: %s: %w", what, ErrPlanGone)
	}
	return nil
}

// KEYS[1] processing HASH, KEYS[2] plans HASH, KEYS[3] due ZSET.
// ARGV[1] field, ARGV[2] plan JSON, ARGV[3] due (unix ms).
// Returns 1 when the plan was written back and is due at ARGV[3], 0 when
// the claim is not held, -1 when the plan ended meanwhile (the stale claim
// is dropped, nothing written).
var reschedulePlanScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
`)

// ReschedulePlan finishes host's attempt of field and plans the next one:
// the plan JSON (with its attempt counter advanced by the caller) is
// written back and due at due. It returns an error wrapping ErrClaimGone
// when host no longer held the claim (another node recovered the plan and
// owns it now) or ErrPlanGone when the plan was ended meanwhile; nothing
// is written then.
func (s *Store) ReschedulePlan(ctx context.Context, host, field, planJSON string, due time.Time) error {
	keys := []string{s.PlansProcessingKey(host), s.PlansKey(), s.PlansDueKey()}
	n, err := reschedulePlanScript.Run(ctx, s.rdb, keys, field, planJSON, due.UnixMilli()).Int64()
	if err != nil {
		return fmt.Errorf("store: reschedule plan %q from %s: %w", field, keys[0], err)
	}
	return planResult(n, "reschedule plan "+strconv.Quote(field)+" from "+keys[0])
}

// EndedPlan is one entry of the ended list.
type EndedPlan struct {
	Field string `json:"field"`
	// Plan is the plan's last JSON (a JSON string if it was not JSON).
	Plan   json.RawMessage `json:"plan"`
	Reason string          `json:"reason"`
	// At is RFC 3339, UTC, on the clock of the node that ended the plan.
	At   string `json:"at"`
	Host string `json:"host"`
}

// KEYS[1] processing HASH, KEYS[2] plans HASH, KEYS[3] due ZSET, KEYS[4]
// ended LIST.
// ARGV[1] field, ARGV[2] EndedPlan JSON tail after the plan value, ARGV[3]
// ended list cap.
// Drops the caller's claim of field, and, if the plan exists, removes it
// from the plans hash and the due ZSET and LPUSHes an EndedPlan record
// (capped list).
// Returns 1 when a plan was ended, 0 when there was none.
var endPlanScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
local js = redis.call('HGET', KEYS[2], ARGV[1])
if not js then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local plan = js
if not pcall(cjson.decode, js) then plan = cjson.encode(js) end
redis.call('LPUSH', KEYS[4], '{"field":' .. cjson.encode(ARGV[1]) .. ',"plan":' .. plan .. ARGV[2])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[3]) - 1)
return 1
`)

// EndPlan ends the plan of field for reason ("answered", "no unread
// messages", "schedule used up", an operator's cancel, ...) and keeps a
// record in the ended list. The plan ends whoever holds it: an answered
// callback must stop the plan even if another node recovered it meanwhile
// (that node's ReschedulePlan then fails with ErrPlanGone). host is the
// caller's node, whose claim is dropped; empty when no claim is held. It
// returns an error wrapping ErrPlanGone when there was no plan.
func (s *Store) EndPlan(ctx context.Context, host, field, reason string) error {
	keys := []string{s.PlansProcessingKey(host), s.PlansKey(), s.PlansDueKey(), s.PlansEndedKey()}
	r, _ := json.Marshal(reason)
	h, _ := json.Marshal(host)
	tail := `,"reason":` + string(r) + `,"at":"` + time.Now().UTC().Format(time.RFC3339) + `","host":` + string(h) + `}`
	n, err := endPlanScript.Run(ctx, s.rdb, keys, field, tail, EndedPlansCap).Int64()
	if err != nil {
		return fmt.Errorf("store: end plan %q in %s: %w", field, keys[1], err)
	}
	if n == 0 {
		return fmt.Errorf("store: end plan %q in %s: %w", field, keys[1], ErrPlanGone)
	}
	return nil
}

// EndedPlans returns up to n of the most recently ended plans, newest
// first (n < 1: all that are kept).
func (s *Store) EndedPlans(ctx context.Context, n int) ([]EndedPlan, error) {
	key := s.PlansEndedKey()
	raw, err := s.rdb.LRange(ctx, key, 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: LRANGE %s: %w", key, err)
	}
	out := make([]EndedPlan, 0, len(raw))
	for i, v := range raw {
		var e EndedPlan
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, fmt.Errorf("store: %s entry %d: %w", key, i, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Plan returns the JSON of one plan; found is false when field has none.
func (s *Store) Plan(ctx context.Context, field string) (string, bool, error) {
	return s.hgetFound(ctx, s.PlansKey(), field)
}

// Plans returns every plan's JSON by field and, for plans waiting for an
// attempt, its due time, read in one MULTI for a consistent view. A plan
// without a due time is being attempted by a node.
func (s *Store) Plans(ctx context.Context) (map[string]string, map[string]time.Time, error) {
	pk, dk := s.PlansKey(), s.PlansDueKey()
	var plans *redis.MapStringStringCmd
	var due *redis.ZSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		plans = p.HGetAll(ctx, pk)
		due = p.ZRangeWithScores(ctx, dk, 0, -1)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: read plans from %s and %s: %w", pk, dk, err)
	}
	times := make(map[string]time.Time, len(due.Val()))
	for _, z := range due.Val() {
		if f, ok := z.Member.(string); ok {
			times[f] = time.UnixMilli(int64(z.Score))
		}
	}
	return plans.Val(), times, nil
}

// EnsurePlanHolder registers host in the plans holders set, so that its
// claimed plans are found after it dies. ClaimDuePlans registers too; call
// this on every heartbeat tick as well (RecoverPlans drops a host it
// declared dead).
func (s *Store) EnsurePlanHolder(ctx context.Context, host string) error {
	key := s.PlansHoldersKey()
	if err := s.rdb.SAdd(ctx, key, host).Err(); err != nil {
		return fmt.Errorf("store: SADD %s %s: %w", key, host, err)
	}
	return nil
}

// PlanHolders lists the hosts registered in the plans holders set.
func (s *Store) PlanHolders(ctx context.Context) ([]string, error) {
	key := s.PlansHoldersKey()
	v, err := s.rdb.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", key, err)
	}
	return v, nil
}

// KEYS[1] the host's processing HASH, KEYS[2] plans HASH, KEYS[3] due
// ZSET, KEYS[4] holders SET, KEYS[5] (optional, omitted on Cluster) the
// host's heartbeat key.
// ARGV[1] host.
// Every claimed field whose plan still exists is made due at the server's
// now; then the processing hash is deleted and host leaves holders.
// Returns {status, requeued}: status 0 = heartbeat alive, nothing done.
var recoverPlansScript = redis.NewScript(`
if #KEYS >= 5 and redis.call('EXISTS', KEYS[5]) == 1 then
  return {0, 0}
end
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('HEXISTS', KEYS[2], f) == 1 then
    redis.call('ZADD', KEYS[3], now, f)
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[1])
return {1, n}
`)

// RecoverPlans makes the plans deadHost was attempting due now, for any
// node to claim. Whether the interrupted attempt's call happened is
// unknown, and the plan JSON's attempt counter is advanced only by
// ReschedulePlan, so the plan resumes with the same attempt: an attempt
// cut short by a crash is retried once. That is the chosen trade-off — a
// callback is a notification, and one extra ring beats a voicemail nobody
// is told about. It refuses, with an error wrapping ErrHostAlive, while
// deadHost's heartbeat exists.
func (s *Store) RecoverPlans(ctx context.Context, deadHost string) (int, error) {
	return s.recoverPlans(ctx, deadHost, true)
}

// RecoverOwnPlans recovers the plans a previous run of this node (same host
// name) left claimed, without the heartbeat check; call it at startup
// before the first ClaimDuePlans.
func (s *Store) RecoverOwnPlans(ctx context.Context, host string) (int, error) {
	return s.recoverPlans(ctx, host, false)
}

func (s *Store) recoverPlans(ctx context.Context, host string, check bool) (int, error) {
	proc := s.PlansProcessingKey(host)
	keys := []string{proc, s.PlansKey(), s.PlansDueKey(), s.PlansHoldersKey()}
	if err := s.recoverAliveCheck(ctx, proc, host, check, &keys); err != nil {
		return 0, err
	}
	res, err := recoverPlansScript.Run(ctx, s.rdb, keys, host).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("store: recover %s: %w", proc, err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("store: recover %s: script returned %v", proc, res)
	}
	if res[0] == 0 {
		return 0, fmt.Errorf("store: recover %s: %w", proc, ErrHostAlive)
	}
	return int(res[1]), nil
}

// AccountDocsKey is the hash of account documents by account id.
func (s *Store) AccountDocsKey() string { return "account" }

// UserDocsKey is the hash of an account's user documents by user id.
func (s *Store) UserDocsKey(account string) string { return "user@" + account }

// VMBoxDocsKey is the hash of an account's vmbox documents by vmbox id.
func (s *Store) VMBoxDocsKey(account string) string { return "vmbox@" + account }

// CallflowDocsKey is the hash of an account's callflows by callflow id.
func (s *Store) CallflowDocsKey(account string) string { return "callflow@" + account }

// SystemConfigKey is the hash of system configs (field "ananke").
func (s *Store) SystemConfigKey() string { return "system_config" }

// Doc returns one document's JSON from hash (one of the *DocsKey or
// SystemConfigKey names); found is false when field does not exist.
func (s *Store) Doc(ctx context.Context, hash, field string) (string, bool, error) {
	return s.hgetFound(ctx, hash, field)
}

// Docs returns every document of hash by id (e.g. an account's callflows).
func (s *Store) Docs(ctx context.Context, hash string) (map[string]string, error) {
	return s.hgetAll(ctx, hash)
}

// SetDoc writes one document (CLI, demo, tests, redial's voicemail).
func (s *Store) SetDoc(ctx context.Context, hash, field, docJSON string) error {
	if err := s.rdb.HSet(ctx, hash, field, docJSON).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", hash, field, err)
	}
	return nil
}

func (s *Store) hgetFound(ctx context.Context, key, field string) (string, bool, error) {
	v, err := s.rdb.HGet(ctx, key, field).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: HGET %s %s: %w", key, field, err)
	}
	return v, true, nil
}

// CronTickKey is the guard key of one tick of one cron entry.
func (s *Store) CronTickKey(entryID string, tick time.Time) string {
	return "redial:cron:" + entryID + ":" + strconv.FormatInt(tick.Unix(), 10)
}

// CronTickOnce returns true for exactly one caller per (entryID, tick)
// across the cluster, as long as the callers ask within ttl of the first:
// SET redial:cron:<entryID>:<tick unix s> <host> NX PX ttl. Pick ttl
// longer than the clock skew between nodes plus how late a node may run a
// tick; the key only ever blocks this one tick of this entry, so a long
// ttl costs nothing but memory.
func (s *Store) CronTickOnce(ctx context.Context, entryID string, tick time.Time, ttl time.Duration) (bool, error) {
	key := s.CronTickKey(entryID, tick)
	ok, err := s.rdb.SetNX(ctx, key, s.cfg.Host, time.Duration(ttlMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("store: SET %s NX: %w", key, err)
	}
	return ok, nil
}
