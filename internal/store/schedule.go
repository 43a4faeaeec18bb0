package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scheduled dialer keys. The first two are seed 004's contract; the others
// are redial's and use the numbers ZSET's whole name as their hash tag, so
// that on a Redis Cluster every script below finds its keys in one slot
// (the seed's name carries no braces and therefore hashes whole).
//
//	cti_schedule_dialer_config@<domain>  HASH  config name -> {"params": {...}, "variables": {...}}
//	cti_schedule_dialer_number@<domain>  ZSET  member = item JSON, score = unix seconds to call
//	                                           (may be fractional); written by integrators
//	redial:{cti_schedule_dialer_number@<domain>}:processing:<host>
//	                                     HASH  member -> claim record
//	                                           {"score":<original score>,"claimed_at":<server unix ms>,"invited":false}
//	redial:{...}:holders                 SET   hosts that have (had) a processing hash
//	redial:{...}:interrupted             LIST  ParkedItem JSON of claims whose INVITE may have
//	                                           gone out when their node died
//	redial:{...}:invalid                 LIST  ParkedItem JSON of malformed members
//
// A member is claimed by moving it from the ZSET into one host's processing
// hash inside one script, so two nodes never dial it twice; the claim
// record keeps the original score, so a claim that was never dialed goes
// back exactly where it was. On a Redis Cluster the domain must not contain
// '}' (the tag could then not cover the numbers key; a domain that carries
// a complete {tag} of its own is handled by reusing that tag).

// ErrClaimInvited means the claim was marked with MarkScheduledInvited: its
// INVITE may have gone out, so it is not put back to be dialed again.
var ErrClaimInvited = errors.New("claim is marked invited")

// ScheduleConfigKey is the hash of scheduled-dialer configs,
// cti_schedule_dialer_config@<domain>.
func (s *Store) ScheduleConfigKey() string { return "cti_schedule_dialer_config@" + s.cfg.Domain }

// ScheduleNumbersKey is the sorted set of scheduled members,
// cti_schedule_dialer_number@<domain>.
func (s *Store) ScheduleNumbersKey() string { return "cti_schedule_dialer_number@" + s.cfg.Domain }

// schedulePrefix is the start of every redial key of the scheduled dialer.
func (s *Store) schedulePrefix() string {
	n := s.ScheduleNumbersKey()
	if QueueHashTagged(n) {
		// The domain brought a tag of its own; only n's own prefix keeps it.
		return n
	}
	return "redial:{" + n + "}"
}

// ScheduleProcessingKey is the hash of members host has claimed.
func (s *Store) ScheduleProcessingKey(host string) string {
	return s.schedulePrefix() + ":processing:" + host
}

// ScheduleHoldersKey is the set of hosts that have (had) a processing hash.
func (s *Store) ScheduleHoldersKey() string { return s.schedulePrefix() + ":holders" }

// ScheduleInterruptedKey is the list of claims whose INVITE may have gone
// out when their node died.
func (s *Store) ScheduleInterruptedKey() string { return s.schedulePrefix() + ":interrupted" }

// ScheduleInvalidKey is the list of members moved aside as malformed.
func (s *Store) ScheduleInvalidKey() string { return s.schedulePrefix() + ":invalid" }

// ScheduleConfigs returns the raw JSON of every scheduled-dialer config, by
// name.
func (s *Store) ScheduleConfigs(ctx context.Context) (map[string]string, error) {
	return s.hgetAll(ctx, s.ScheduleConfigKey())
}

// SetScheduleConfig writes one scheduled-dialer config (CLI, demo, tests).
func (s *Store) SetScheduleConfig(ctx context.Context, name, value string) error {
	key := s.ScheduleConfigKey()
	if err := s.rdb.HSet(ctx, key, name, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", key, name, err)
	}
	return nil
}

// ScheduledClaim is one member of the numbers ZSET with its score (unix
// seconds to call).
type ScheduledClaim struct {
	Member string
	Score  float64
}

// KEYS[1] numbers ZSET, KEYS[2] this host's processing HASH, KEYS[3]
// holders SET.
// ARGV[1] max members to claim, ARGV[2] host.
// Moves up to ARGV[1] members whose score is <= the server's now, earliest
// first, into the processing hash with a claim record that keeps the score
// text exactly as Redis printed it (a JSON string for inf). A due member
// that is already in this host's processing hash (re-added while its first
// claim is in flight) is not claimed twice into one field: its score is
// set to now + 1 s, to be claimed after the first claim is finished.
// Registers host in holders when it claimed anything.
// Returns {next, m_1, s_1, ..., m_n, s_n}: next = score of the earliest
// member left in the ZSET ("" when empty), m_i/s_i claimed members and
// their scores, as strings.
var claimScheduledScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local usec = string.format('%06d', tonumber(t[2]))
local now = t[1] .. '.' .. usec
local later = tostring(tonumber(t[1]) + 1) .. '.' .. usec
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
local out = {''}
for i = 1, #due, 2 do
  local m, sc = due[i], due[i + 1]
  if redis.call('HEXISTS', KEYS[2], m) == 1 then
    redis.call('ZADD', KEYS[1], later, m)
  else
    redis.call('ZREM', KEYS[1], m)
    local js = sc
    if string.find(sc, '[^0-9eE.+-]') then js = '"' .. sc .. '"' end
    redis.call('HSET', KEYS[2], m, '{"score":' .. js .. ',"claimed_at":' .. now_ms .. ',"invited":false}')
    out[#out + 1] = m
    out[#out + 1] = sc
  end
end
if #out > 1 then redis.call('SADD', KEYS[3], ARGV[2]) end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nx == 2 then out[1] = nx[2] end
return out
`)

// ClaimDueScheduled atomically moves up to max members whose score is at
// or before the Redis server's clock from the numbers ZSET into host's
// processing hash and returns them with their scores, earliest first. Two
// nodes never claim the same member. nextDue is the earliest score left in
// the ZSET (0 when it is empty); nextDue at or before now means more
// members are due already and the caller should claim again at once.
func (s *Store) ClaimDueScheduled(ctx context.Context, host string, max int) (claims []ScheduledClaim, nextDue float64, err error) {
	if max < 1 {
		max = 1
	}
	zset := s.ScheduleNumbersKey()
	keys := []string{zset, s.ScheduleProcessingKey(host), s.ScheduleHoldersKey()}
	res, err := claimScheduledScript.Run(ctx, s.rdb, keys, max, host).StringSlice()
	if err != nil {
		return nil, 0, fmt.Errorf("store: claim due members of %s: %w", zset, err)
	}
	if len(res)%2 != 1 {
		return nil, 0, fmt.Errorf("store: claim due members of %s: script returned %d values", zset, len(res))
	}
	if res[0] != "" {
		if nextDue, err = strconv.ParseFloat(res[0], 64); err != nil {
			return nil, 0, fmt.Errorf("store: claim due members of %s: next score %q: %w", zset, res[0], err)
		}
	}
	claims = make([]ScheduledClaim, 0, len(res)/2)
	for i := 1; i < len(res); i += 2 {
		sc, err := strconv.ParseFloat(res[i+1], 64)
		if err != nil {
			// The member is claimed already; report it rather than lose it.
			sc = math.NaN()
		}
		claims = append(claims, ScheduledClaim{Member: res[i], Score: sc})
	}
	return claims, nextDue, nil
}

// KEYS[1] processing HASH.
// ARGV[1] member.
// Sets the claim record's invited flag.
// Returns 1 when the claim is held (now marked), 0 when it is gone.
var markScheduledScript = redis.NewScript(`
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
rec = string.gsub(rec, '"invited":false', '"invited":true')
redis.call('HSET', KEYS[1], ARGV[1], rec)
return 1
`)

// MarkScheduledInvited records, before the INVITE is sent, that the claim
// may be dialed: a crash then parks it in the interrupted list instead of
// dialing it again. It returns an error wrapping ErrClaimGone when host no
// longer holds the claim (another node recovered it); do not dial then.
func (s *Store) MarkScheduledInvited(ctx context.Context, host, member string) error {
	key := s.ScheduleProcessingKey(host)
	n, err := markScheduledScript.Run(ctx, s.rdb, []string{key}, member).Int64()
	if err != nil {
		return fmt.Errorf("store: mark invited in %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("store: mark invited in %s: %w", key, ErrClaimGone)
	}
	return nil
}

// AckScheduled finishes a claim after its CDR is written. It returns an
// error wrapping ErrClaimGone when the claim was not held (recovered by
// another node after this node's heartbeat lapsed: log-worthy).
func (s *Store) AckScheduled(ctx context.Context, host, member string) error {
	key := s.ScheduleProcessingKey(host)
	n, err := s.rdb.HDel(ctx, key, member).Result()
	if err != nil {
		return fmt.Errorf("store: HDEL %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("store: ack claim in %s: %w", key, ErrClaimGone)
	}
	return nil
}

// KEYS[1] processing HASH, KEYS[2] numbers ZSET.
// ARGV[1] member, ARGV[2] new score.
// Returns 1 when the claim went back into the ZSET at ARGV[2], 0 when it
// was not held, -1 when it is marked invited (nothing changed).
var rescheduleScheduledScript = redis.NewScript(`
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
if string.find(rec, '"invited":true', 1, true) then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`)

// RescheduleScheduled puts a claim that was never dialed back into the
// numbers ZSET at score at (unix seconds), e.g. now+60 when no line was
// free. It refuses, with an error wrapping ErrClaimInvited, a claim marked
// with MarkScheduledInvited, and returns one wrapping ErrClaimGone when the
// claim was not held.
func (s *Store) RescheduleScheduled(ctx context.Context, host, member string, at float64) error {
	proc, zset := s.ScheduleProcessingKey(host), s.ScheduleNumbersKey()
	n, err := rescheduleScheduledScript.Run(ctx, s.rdb, []string{proc, zset}, member, formatZScore(at)).Int64()
	if err != nil {
		return fmt.Errorf("store: reschedule claim from %s to %s: %w", proc, zset, err)
	}
	switch n {
	case 0:
		return fmt.Errorf("store: reschedule claim from %s to %s: %w", proc, zset, ErrClaimGone)
	case -1:
		return fmt.Errorf("store: reschedule claim from %s to %s: %w", proc, zset, ErrClaimInvited)
	}
	return nil
}

// KEYS[1] processing HASH, KEYS[2] destination LIST.
// ARGV[1] member, ARGV[2] value to LPUSH.
// Returns 1 when the claim was moved, 0 when it was not held (nothing
// pushed).
var parkScheduledScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
`)

// InvalidScheduled moves a malformed claim to the invalid list as a
// ParkedItem with reason. It returns an error wrapping ErrClaimGone when
// the claim was not held.
func (s *Store) InvalidScheduled(ctx context.Context, host, member, reason string) error {
	proc, dest := s.ScheduleProcessingKey(host), s.ScheduleInvalidKey()
	v := parkedJSON(member, reason, host, time.Now())
	n, err := parkScheduledScript.Run(ctx, s.rdb, []string{proc, dest}, member, v).Int64()
	if err != nil {
		return fmt.Errorf("store: move claim from %s to %s: %w", proc, dest, err)
	}
	if n == 0 {
		return fmt.Errorf("store: move claim from %s to %s: %w", proc, dest, ErrClaimGone)
	}
	return nil
}

// KEYS[1] the host's processing HASH, KEYS[2] numbers ZSET, KEYS[3]
// interrupted LIST, KEYS[4] holders SET, KEYS[5] (optional, omitted on
// Cluster where it lives in another slot) the host's heartbeat key.
// ARGV[1] host, ARGV[2] ParkedItem JSON tail after the item value.
// Claims marked invited are LPUSHed to interrupted; the others go back
// into the ZSET with the score their record kept. Then the processing hash
// is deleted and host leaves holders. The hash holds one node's claims in
// flight only, so it is done in one script.
// Returns {status, requeued, interrupted}: status 0 = heartbeat alive,
// nothing done; 1 = done.
var recoverScheduledScript = redis.NewScript(`
if #KEYS >= 5 and redis.call('EXISTS', KEYS[5]) == 1 then
  return {0, 0, 0}
end
local all = redis.call('HGETALL', KEYS[1])
local rq, intr = 0, 0
for i = 1, #all, 2 do
  local m, rec = all[i], all[i + 1]
  if string.find(rec, '"invited":true', 1, true) then
    redis.call('LPUSH', KEYS[3], '{"item":' .. cjson.encode(m) .. ARGV[2])
    intr = intr + 1
  else
    local sc = string.match(rec, '^{"score":"?([^,"]+)"?,') or '0'
    redis.call('ZADD', KEYS[2], sc, m)
    rq = rq + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[1])
return {1, rq, intr}
`)

// RecoverScheduled moves every claim of deadHost back: claims never marked
// invited into the numbers ZSET with their original score (so they are due
// at once), claims marked invited to the interrupted list as ParkedItems,
// for the operator. It refuses, with an error wrapping ErrHostAlive, while
// deadHost's heartbeat (AliveKey) exists; the check is inside the script,
// except on Cluster where it is an EXISTS just before. Two nodes
// recovering one host at once move each claim exactly once.
func (s *Store) RecoverScheduled(ctx context.Context, deadHost string) (requeued, interrupted int, err error) {
	return s.recoverScheduled(ctx, deadHost, true)
}

// RecoverOwnScheduled recovers the claims a previous run of this node
// (same host name) left behind, without the heartbeat check; call it at
// startup before the first ClaimDueScheduled. Host names must be unique
// among running nodes, or this steals a live node's claims.
func (s *Store) RecoverOwnScheduled(ctx context.Context, host string) (requeued, interrupted int, err error) {
	return s.recoverScheduled(ctx, host, false)
}

func (s *Store) recoverScheduled(ctx context.Context, host string, checkAlive bool) (int, int, error) {
	proc := s.ScheduleProcessingKey(host)
	keys := []string{proc, s.ScheduleNumbersKey(), s.ScheduleInterruptedKey(), s.ScheduleHoldersKey()}
	if err := s.recoverAliveCheck(ctx, proc, host, checkAlive, &keys); err != nil {
		return 0, 0, err
	}
	tail := parkedTail("node "+host+" stopped while the call was in progress", host, time.Now())
	res, err := recoverScheduledScript.Run(ctx, s.rdb, keys, host, tail).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("store: recover %s: %w", proc, err)
	}
	if len(res) != 3 {
		return 0, 0, fmt.Errorf("store: recover %s: script returned %v", proc, res)
	}
	if res[0] == 0 {
		return 0, 0, fmt.Errorf("store: recover %s: %w", proc, ErrHostAlive)
	}
	return int(res[1]), int(res[2]), nil
}

// recoverAliveCheck prepares the heartbeat check of a recover script for host:
// outside Cluster it appends the heartbeat key to keys (the script checks
// it atomically); on Cluster, where that key lives in another slot, it
// checks it now and returns an error wrapping ErrHostAlive if it exists.
// what names the keys being recovered, for errors.
func (s *Store) recoverAliveCheck(ctx context.Context, what, host string, check bool, keys *[]string) error {
	if !check {
		return nil
	}
	alive := s.AliveKey(host)
	if !s.IsCluster() {
		*keys = append(*keys, alive)
		return nil
	}
	n, err := s.rdb.Exists(ctx, alive).Result()
	if err != nil {
		return fmt.Errorf("store: recover %s: EXISTS %s: %w", what, alive, err)
	}
	if n == 1 {
		return fmt.Errorf("store: recover %s: %w", what, ErrHostAlive)
	}
	return nil
}

// AddScheduled adds member to the numbers ZSET, due at at (unix seconds);
// an existing identical member only has its score changed (ZADD).
func (s *Store) AddScheduled(ctx context.Context, member string, at float64) error {
	key := s.ScheduleNumbersKey()
	if math.IsNaN(at) {
		return fmt.Errorf("store: ZADD %s: score is NaN", key)
	}
	if err := s.rdb.ZAdd(ctx, key, redis.Z{Score: at, Member: member}).Err(); err != nil {
		return fmt.Errorf("store: ZADD %s: %w", key, err)
	}
	return nil
}

// ListScheduled returns the members due between from and to (unix seconds,
// inclusive; ±Inf for open ends), earliest first, at most limit of them
// (limit < 1: all). Claimed members are not in the ZSET and not listed.
func (s *Store) ListScheduled(ctx context.Context, from, to float64, limit int) ([]ScheduledClaim, error) {
	key := s.ScheduleNumbersKey()
	by := &redis.ZRangeBy{Min: formatZScore(from), Max: formatZScore(to)}
	if limit > 0 {
		by.Count = int64(limit)
	}
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, key, by).Result()
	if err != nil {
		return nil, fmt.Errorf("store: ZRANGEBYSCORE %s: %w", key, err)
	}
	out := make([]ScheduledClaim, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = ScheduledClaim{Member: m, Score: z.Score}
	}
	return out, nil
}

// EnsureScheduleHolder registers host in the holders set, so that its
// claims are found after it dies. ClaimDueScheduled registers too; call
// this on every heartbeat tick as well, since RecoverScheduled drops a
// host it declared dead.
func (s *Store) EnsureScheduleHolder(ctx context.Context, host string) error {
	key := s.ScheduleHoldersKey()
	if err := s.rdb.SAdd(ctx, key, host).Err(); err != nil {
		return fmt.Errorf("store: SADD %s %s: %w", key, host, err)
	}
	return nil
}

// ScheduleHolders lists the hosts registered in the holders set.
func (s *Store) ScheduleHolders(ctx context.Context) ([]string, error) {
	key := s.ScheduleHoldersKey()
	v, err := s.rdb.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", key, err)
	}
	return v, nil
}

// formatZScore prints a score so that Redis parses back the same float64.
func formatZScore(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
