package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Queue dialer keys. A number queue is a list named by the task's
// number_queue param, filled by integrators with LPUSH, so its oldest item
// is at the RIGHT end and redial takes from the right. Items are claimed,
// never popped. Every other key of a queue starts with the queue name, so
// all of them share its hash slot when the name carries a Redis Cluster
// hash tag; on Cluster, queue names MUST contain a non-empty {hashtag}
// (e.g. "{sales}:numbers"), see QueueHashTagged.
//
//	<queue>                    LIST  items; LPUSH by integrators, claimed from the right
//	<queue>:processing:<host>  LIST  raw items claimed by <host>, newest claim at the left
//	<queue>:invited:<host>     HASH  field = raw item, value = how many of <host>'s claims of
//	                                 that raw item may have had their INVITE sent
//	<queue>:holders            SET   hosts that have (had) a processing list for the queue
//	<queue>:retry              ZSET  delayed items, score = unix ms when due,
//	                                 member = "<id>|<item>" (the id keeps equal items apart)
//	<queue>:interrupted        LIST  ParkedItem JSON of claims whose INVITE may have gone out
//	                                 when their node died (seed name)
//	<queue>:invalid            LIST  ParkedItem JSON of malformed items (seed name)
//	redial:node:<host>:alive   STRING heartbeat, PX TTL
//
// Invariant kept by every script: invited[raw] never exceeds the number of
// copies of raw in the processing list. The same raw item may be queued
// (and claimed) twice; the copies are interchangeable, so the counts only
// say how many of them may have been dialed. When a script cannot tell
// which copy it finished, it errs towards "dialed": a crash then parks a
// copy in :interrupted instead of dialing a number twice.

// ErrClaimGone means the claim was no longer in this node's processing list
// (another node recovered it after this node's heartbeat lapsed); nothing
// was changed. The caller must not dial it.
var ErrClaimGone = errors.New("claim no longer in the processing list")

// ErrHostAlive means Recover found the host's heartbeat alive and left its
// claims alone.
var ErrHostAlive = errors.New("host heartbeat is alive")

// DialerKeys are the Redis keys of one number queue as seen by one host.
type DialerKeys struct {
	Queue, Processing, Invited, Holders, Retry, Interrupted, Invalid string
	// Host is the node whose Processing and Invited lists these are.
	Host string
	// Alive is Host's heartbeat key (a different hash slot: never passed to
	// a script together with the queue keys on Cluster).
	Alive string
}

// DialerKeys returns the keys of queue for host.
func (s *Store) DialerKeys(queue, host string) DialerKeys {
	return DialerKeys{
		Queue:       queue,
		Processing:  queue + ":processing:" + host,
		Invited:     queue + ":invited:" + host,
		Holders:     queue + ":holders",
		Retry:       queue + ":retry",
		Interrupted: queue + ":interrupted",
		Invalid:     queue + ":invalid",
		Host:        host,
		Alive:       s.AliveKey(host),
	}
}

// QueueHashTagged reports whether name carries a Redis Cluster hash tag of
// its own: a '{' followed, within name, by a '}' with at least one byte in
// between. Only then do the queue's derived keys share its hash slot, which
// the dialer's scripts need on a Redis Cluster.
func QueueHashTagged(name string) bool {
	i := strings.IndexByte(name, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(name[i+1:], '}')
	return j > 0
}

// ParkedItem is one entry of <queue>:interrupted or <queue>:invalid.
type ParkedItem struct {
	// Item is the raw queue item, exactly as it was queued.
	Item string `json:"item"`
	// ItemBase64 holds the item's bytes when they are not valid UTF-8
	// (Item then carries replacement characters).
	ItemBase64 []byte `json:"item_base64,omitempty"`
	Reason     string `json:"reason"`
	// At is RFC 3339, UTC, on the clock of the node that parked the item.
	At   string `json:"at"`
	Host string `json:"host"`
}

func parkedJSON(raw, reason, host string, at time.Time) string {
	p := ParkedItem{Item: raw, Reason: reason, At: at.UTC().Format(time.RFC3339), Host: host}
	if !utf8.ValidString(raw) {
		p.ItemBase64 = []byte(raw)
	}
	b, _ := json.Marshal(p) // strings and bytes only: cannot fail
	return string(b)
}

// parkedTail is everything of a ParkedItem after its "item" value, for the
// recover script, which writes '{"item":' .. cjson.encode(raw) .. tail.
func parkedTail(reason, host string, at time.Time) string {
	r, _ := json.Marshal(reason)
	h, _ := json.Marshal(host)
	return `,"reason":` + string(r) + `,"at":"` + at.UTC().Format(time.RFC3339) + `","host":` + string(h) + `}`
}

// trimInvitedLua restores the invariant invited[raw] <= copies of raw in
// processing after a copy left the list. LPOS ... COUNT c stops after c
// matches, so the cost is bounded by the processing list (this node's
// claims in flight).
const trimInvitedLua = `
local function trim_invited(inv, proc, raw)
  local c = tonumber(redis.call('HGET', inv, raw) or '0')
  if c > 0 then
    local n = #redis.call('LPOS', proc, raw, 'COUNT', c)
    if n == 0 then
      redis.call('HDEL', inv, raw)
    elseif n < c then
      redis.call('HSET', inv, raw, n)
    end
  end
end
`

// Claim waits up to timeout for an item and claims it: BLMOVE <queue>
// <processing> RIGHT LEFT. It returns ("", false, nil) when the timeout
// passes with the queue empty. The timeout is rounded up to whole seconds
// (at least 1 s): go-redis extends its read deadline for BLMOVE only when
// it sends the timeout itself, in whole seconds, and a reply lost to a
// client-side deadline would leave the item claimed by nobody who knows.
//
// Call EnsureHolder for the queue before the first Claim. If Claim returns
// a transport error the item may still have been moved; Claims lists what
// this node holds so the caller can reconcile.
func (s *Store) Claim(ctx context.Context, k DialerKeys, timeout time.Duration) (string, bool, error) {
	secs := (timeout + time.Second - 1) / time.Second
	if secs < 1 {
		secs = 1
	}
	raw, err := s.rdb.BLMove(ctx, k.Queue, k.Processing, "RIGHT", "LEFT", secs*time.Second).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: BLMOVE %s %s: %w", k.Queue, k.Processing, err)
	}
	return raw, true, nil
}

// Claims lists the raw items host holds in k.Processing, newest claim
// first.
func (s *Store) Claims(ctx context.Context, k DialerKeys) ([]string, error) {
	v, err := s.rdb.LRange(ctx, k.Processing, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: LRANGE %s: %w", k.Processing, err)
	}
	return v, nil
}

// EnsureHolder registers host in k.Holders, so that a live node finds its
// processing list after it dies. Call it before the first Claim of a queue
// and on every heartbeat tick: Recover drops a host whose list it emptied,
// and a node wrongly declared dead must register again. MarkInvited also
// registers.
func (s *Store) EnsureHolder(ctx context.Context, k DialerKeys, host string) error {
	if err := s.rdb.SAdd(ctx, k.Holders, host).Err(); err != nil {
		return fmt.Errorf("store: SADD %s %s: %w", k.Holders, host, err)
	}
	return nil
}

// Holders lists the hosts registered in k.Holders.
func (s *Store) Holders(ctx context.Context, k DialerKeys) ([]string, error) {
	v, err := s.rdb.SMembers(ctx, k.Holders).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", k.Holders, err)
	}
	return v, nil
}

// KEYS[1] processing list, KEYS[2] invited hash, KEYS[3] holders set.
// ARGV[1] raw item, ARGV[2] host.
// Marks one not-yet-marked copy of raw in processing as possibly dialed and
// registers host as a holder.
// Returns 1 when marked, 0 when processing holds no unmarked copy of raw
// (the claim was recovered by another node: do not dial).
var markInvitedScript = redis.NewScript(`
local c = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local n = #redis.call('LPOS', KEYS[1], ARGV[1], 'COUNT', c + 1)
if n <= c then
  if n < c then
    if n == 0 then redis.call('HDEL', KEYS[2], ARGV[1]) else redis.call('HSET', KEYS[2], ARGV[1], n) end
  end
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[2])
return 1
`)

// MarkInvited records, before the INVITE is sent, that this claim may be
// dialed: after a crash it then goes to <queue>:interrupted instead of
// being dialed again. It returns an error wrapping ErrClaimGone when the
// claim is no longer held (recovered by another node); the caller must not
// dial then. Not idempotent: after a transport error the caller cannot know
// whether the mark was made and should treat the claim as marked.
func (s *Store) MarkInvited(ctx context.Context, k DialerKeys, raw string) error {
	keys := []string{k.Processing, k.Invited, k.Holders}
	n, err := markInvitedScript.Run(ctx, s.rdb, keys, raw, k.Host).Int64()
	if err != nil {
		return fmt.Errorf("store: mark invited in %s: %w", k.Invited, err)
	}
	if n == 0 {
		return fmt.Errorf("store: mark invited in %s: %w", k.Invited, ErrClaimGone)
	}
	return nil
}

// KEYS[1] processing list, KEYS[2] invited hash.
// ARGV[1] raw item.
// Removes one copy of raw from processing and trims its invited count.
// Returns 1 when a copy was removed, 0 when none was there.
var ackScript = redis.NewScript(trimInvitedLua + `
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
trim_invited(KEYS[2], KEYS[1], ARGV[1])
return n
`)

// Ack finishes a claim after its CDRs are written. It returns false when
// the claim was no longer in the processing list: another node recovered
// it after this node's heartbeat lapsed (log-worthy: the item may also sit
// in :interrupted or the queue).
func (s *Store) Ack(ctx context.Context, k DialerKeys, raw string) (bool, error) {
	n, err := ackScript.Run(ctx, s.rdb, []string{k.Processing, k.Invited}, raw).Int64()
	if err != nil {
		return false, fmt.Errorf("store: ack claim in %s: %w", k.Processing, err)
	}
	return n == 1, nil
}

// KEYS[1] processing list, KEYS[2] invited hash, KEYS[3] destination list.
// ARGV[1] raw item, ARGV[2] value to push, ARGV[3] "L" (LPUSH) or "R"
// (RPUSH).
// Moves one claim of raw out of processing by pushing ARGV[2] onto KEYS[3],
// then trims raw's invited count.
// Returns 1 when moved, 0 when processing held no copy (nothing pushed).
var moveClaimScript = redis.NewScript(trimInvitedLua + `
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if n == 1 then
  if ARGV[3] == 'L' then
    redis.call('LPUSH', KEYS[3], ARGV[2])
  else
    redis.call('RPUSH', KEYS[3], ARGV[2])
  end
end
trim_invited(KEYS[2], KEYS[1], ARGV[1])
return n
`)

func (s *Store) moveClaim(ctx context.Context, k DialerKeys, raw, dest, value string, left bool) error {
	side := "R"
	if left {
		side = "L"
	}
	n, err := moveClaimScript.Run(ctx, s.rdb, []string{k.Processing, k.Invited, dest}, raw, value, side).Int64()
	if err != nil {
		return fmt.Errorf("store: move claim from %s to %s: %w", k.Processing, dest, err)
	}
	if n == 0 {
		return fmt.Errorf("store: move claim from %s to %s: %w", k.Processing, dest, ErrClaimGone)
	}
	return nil
}

// Return puts a claim that was never dialed back at the consumer end of
// the queue (RPUSH: it is claimed next), e.g. no free line or the task was
// disabled after the claim. It is meant for claims not marked with
// MarkInvited; it does not unmark one (use Interrupt for a claim whose
// INVITE may have gone out). Error wraps ErrClaimGone when the claim was
// no longer held.
func (s *Store) Return(ctx context.Context, k DialerKeys, raw string) error {
	return s.moveClaim(ctx, k, raw, k.Queue, raw, false)
}

// Invalid moves a malformed claim to <queue>:invalid (LPUSH of a ParkedItem
// with reason and host). Error wraps ErrClaimGone when the claim was no
// longer held.
func (s *Store) Invalid(ctx context.Context, k DialerKeys, raw, reason, host string) error {
	return s.moveClaim(ctx, k, raw, k.Invalid, parkedJSON(raw, reason, host, time.Now()), true)
}

// Interrupt finishes a claim whose INVITE may have gone out but whose call
// is gone without a result (e.g. the call was lost in a restart): it goes
// to <queue>:interrupted as a ParkedItem, or back to the consumer end of
// the queue when requeue is true (the task's redial_interrupted). Error
// wraps ErrClaimGone when the claim was no longer held.
func (s *Store) Interrupt(ctx context.Context, k DialerKeys, raw, reason, host string, requeue bool) error {
	if requeue {
		return s.moveClaim(ctx, k, raw, k.Queue, raw, false)
	}
	return s.moveClaim(ctx, k, raw, k.Interrupted, parkedJSON(raw, reason, host, time.Now()), true)
}

// KEYS[1] processing list, KEYS[2] invited hash, KEYS[3] retry zset.
// ARGV[1] raw item, ARGV[2] due time (unix ms), ARGV[3] member
// ("<id>|<new item>").
// Returns 1 when the claim was moved to the retry set, 0 when processing
// held no copy of raw (nothing added).
var delayScript = redis.NewScript(trimInvitedLua + `
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if n == 1 then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[3])
end
trim_invited(KEYS[2], KEYS[1], ARGV[1])
return n
`)

// Delay moves a claim to <queue>:retry, due at at, carrying newItem (the
// item JSON with updated attempt counters, or the same item when the
// callee's window is closed). PromoteDue puts it back in the queue when it
// is due. Error wraps ErrClaimGone when the claim was no longer held.
func (s *Store) Delay(ctx context.Context, k DialerKeys, raw, newItem string, at time.Time) error {
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand, Go >= 1.24)
	member := hex.EncodeToString(id[:]) + "|" + newItem
	n, err := delayScript.Run(ctx, s.rdb, []string{k.Processing, k.Invited, k.Retry}, raw, at.UnixMilli(), member).Int64()
	if err != nil {
		return fmt.Errorf("store: delay claim from %s to %s: %w", k.Processing, k.Retry, err)
	}
	if n == 0 {
		return fmt.Errorf("store: delay claim from %s to %s: %w", k.Processing, k.Retry, ErrClaimGone)
	}
	return nil
}

// KEYS[1] retry zset, KEYS[2] queue list.
// ARGV[1] max members to move.
// Moves up to ARGV[1] members due by the server's clock to the consumer
// end of the queue, earliest due claimed first, stripping the "<id>|"
// prefix. Returns {moved, next_due_ms}, next_due_ms = -1 when the set is
// empty afterwards.
var promoteDueScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i = #due, 1, -1 do
  local m = due[i]
  local p = string.find(m, '|', 1, true)
  if p then
    redis.call('RPUSH', KEYS[2], string.sub(m, p + 1))
  else
    redis.call('RPUSH', KEYS[2], m)
  end
  redis.call('ZREM', KEYS[1], m)
end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nx == 0 then return {#due, -1} end
return {#due, math.floor(tonumber(nx[2]))}
`)

// PromoteDue moves up to max retry items whose due time has passed (by the
// Redis server's clock) to the consumer end of the queue, the earliest due
// of one call to be claimed first (items promoted by a later call are
// claimed before earlier ones still waiting: call it with a max that covers
// what is due). It returns how many moved and the earliest due time
// still in the set (zero when the set is empty).
func (s *Store) PromoteDue(ctx context.Context, k DialerKeys, max int) (int, time.Time, error) {
	if max < 1 {
		max = 1
	}
	res, err := promoteDueScript.Run(ctx, s.rdb, []string{k.Retry, k.Queue}, max).Int64Slice()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: promote due items from %s to %s: %w", k.Retry, k.Queue, err)
	}
	if len(res) != 2 {
		return 0, time.Time{}, fmt.Errorf("store: promote due items from %s: script returned %v", k.Retry, res)
	}
	var next time.Time
	if res[1] >= 0 {
		next = time.UnixMilli(res[1])
	}
	return int(res[0]), next, nil
}

// recoverBatch bounds one recover script run, so a long processing list
// never blocks Redis in one script.
const recoverBatch = 100

// KEYS[1] dead host's processing list, KEYS[2] its invited hash, KEYS[3]
// queue list, KEYS[4] interrupted list, KEYS[5] holders set, KEYS[6]
// (optional, omitted on Cluster where it lives in another slot) the dead
// host's heartbeat key.
// ARGV[1] max items, ARGV[2] "1" to requeue claims that may have been
// dialed, ARGV[3] ParkedItem JSON tail after the item value, ARGV[4] dead
// host.
// Takes claims newest first and RPUSHes never-dialed ones (and, with
// ARGV[2] = "1", possibly-dialed ones) to the consumer end of the queue, so
// the queue's order is kept; possibly-dialed ones otherwise get LPUSHed to
// interrupted. When the list is empty the host leaves holders and its
// invited hash is deleted.
// Returns {status, requeued, interrupted, requeued_invited, remaining}:
// status 0 = heartbeat alive, nothing done; 1 = batch done.
var recoverScript = redis.NewScript(`
if #KEYS >= 6 and redis.call('EXISTS', KEYS[6]) == 1 then
  return {0, 0, 0, 0, redis.call('LLEN', KEYS[1])}
end
local rq, intr, rqi = 0, 0, 0
for i = 1, tonumber(ARGV[1]) do
  local raw = redis.call('LPOP', KEYS[1])
  if not raw then break end
  local c = tonumber(redis.call('HGET', KEYS[2], raw) or '0')
  if c > 0 then
    if c == 1 then redis.call('HDEL', KEYS[2], raw) else redis.call('HINCRBY', KEYS[2], raw, -1) end
    if ARGV[2] == '1' then
      redis.call('RPUSH', KEYS[3], raw)
      rqi = rqi + 1
    else
      redis.call('LPUSH', KEYS[4], '{"item":' .. cjson.encode(raw) .. ARGV[3])
      intr = intr + 1
    end
  else
    redis.call('RPUSH', KEYS[3], raw)
    rq = rq + 1
  end
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('SREM', KEYS[5], ARGV[4])
  redis.call('DEL', KEYS[2])
end
return {1, rq, intr, rqi, left}
`)

// RecoverResult counts where a dead host's claims went.
type RecoverResult struct {
	// Requeued claims were never dialed and went back to the queue.
	Requeued int
	// Interrupted claims may have been dialed and went to <queue>:interrupted.
	Interrupted int
	// RequeuedInterrupted claims may have been dialed and went back to the
	// queue because requeueInterrupted was set.
	RequeuedInterrupted int
}

// Recover moves every claim of deadHost on k's queue back: never-dialed
// claims to the consumer end of the queue (in their original order),
// claims marked by MarkInvited to <queue>:interrupted, or to the queue when
// requeueInterrupted. Each batch of up to 100 claims is one script that
// pops them from the dead host's list, so two live nodes recovering the
// same host at once move every claim exactly once. Each batch re-checks
// the dead host's heartbeat first (inside the script, except on Cluster
// where it is a separate EXISTS just before); if it is alive, Recover stops
// and returns what it moved with an error wrapping ErrHostAlive. k may be
// any host's keys of the queue.
func (s *Store) Recover(ctx context.Context, k DialerKeys, deadHost string, requeueInterrupted bool) (RecoverResult, error) {
	return s.recoverHost(ctx, k.Queue, deadHost, requeueInterrupted, true)
}

// RecoverOwn recovers the claims a previous run of this node (same host
// name) left behind, without the heartbeat check; call it at startup,
// before this node's first Claim on the queue. Host names must be unique
// among running nodes, or this steals a live node's claims.
func (s *Store) RecoverOwn(ctx context.Context, k DialerKeys, requeueInterrupted bool) (RecoverResult, error) {
	return s.recoverHost(ctx, k.Queue, k.Host, requeueInterrupted, false)
}

func (s *Store) recoverHost(ctx context.Context, queue, host string, requeueInterrupted, checkAlive bool) (RecoverResult, error) {
	var out RecoverResult
	d := s.DialerKeys(queue, host)
	keys := []string{d.Processing, d.Invited, d.Queue, d.Interrupted, d.Holders}
	cluster := s.IsCluster()
	if checkAlive && !cluster {
		keys = append(keys, d.Alive)
	}
	rq := "0"
	if requeueInterrupted {
		rq = "1"
	}
	tail := parkedTail("node "+host+" stopped while the call was in progress", host, time.Now())
	for {
		if checkAlive && cluster {
			n, err := s.rdb.Exists(ctx, d.Alive).Result()
			if err != nil {
				return out, fmt.Errorf("store: recover %s: EXISTS %s: %w", d.Processing, d.Alive, err)
			}
			if n == 1 {
				return out, fmt.Errorf("store: recover %s: %w", d.Processing, ErrHostAlive)
			}
		}
		res, err := recoverScript.Run(ctx, s.rdb, keys, recoverBatch, rq, tail, host).Int64Slice()
		if err != nil {
			return out, fmt.Errorf("store: recover %s: %w", d.Processing, err)
		}
		if len(res) != 5 {
			return out, fmt.Errorf("store: recover %s: script returned %v", d.Processing, res)
		}
		if res[0] == 0 {
			return out, fmt.Errorf("store: recover %s: %w", d.Processing, ErrHostAlive)
		}
		out.Requeued += int(res[1])
		out.Interrupted += int(res[2])
		out.RequeuedInterrupted += int(res[3])
		if res[4] == 0 {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("store: recover %s: %w", d.Processing, err)
		}
	}
}

// QueueStats describes one number queue for `redial numbers stats`.
type QueueStats struct {
	Queue int64
	// Processing is the length of each holder's processing list.
	Processing map[string]int64
	Retry      int64
	// NextRetry is the earliest due time in the retry set (zero if empty).
	NextRetry            time.Time
	Interrupted, Invalid int64
}

// QueueStats reads the lengths of every list of queue: one pipeline, plus
// one for the holders' processing lists.
func (s *Store) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	k := s.DialerKeys(queue, "")
	var st QueueStats
	pipe := s.rdb.Pipeline()
	holders := pipe.SMembers(ctx, k.Holders)
	qlen := pipe.LLen(ctx, k.Queue)
	rlen := pipe.ZCard(ctx, k.Retry)
	first := pipe.ZRangeWithScores(ctx, k.Retry, 0, 0)
	ilen := pipe.LLen(ctx, k.Interrupted)
	vlen := pipe.LLen(ctx, k.Invalid)
	if _, err := pipe.Exec(ctx); err != nil {
		return st, fmt.Errorf("store: stats of queue %s: %w", queue, err)
	}
	st.Queue, st.Retry, st.Interrupted, st.Invalid = qlen.Val(), rlen.Val(), ilen.Val(), vlen.Val()
	if z := first.Val(); len(z) == 1 {
		st.NextRetry = time.UnixMilli(int64(z[0].Score))
	}
	hs := holders.Val()
	st.Processing = make(map[string]int64, len(hs))
	if len(hs) == 0 {
		return st, nil
	}
	pipe = s.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(hs))
	for i, h := range hs {
		lens[i] = pipe.LLen(ctx, s.DialerKeys(queue, h).Processing)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return st, fmt.Errorf("store: stats of queue %s: processing lists: %w", queue, err)
	}
	for i, h := range hs {
		st.Processing[h] = lens[i].Val()
	}
	return st, nil
}

const (
	pushBatch     = 1000 // items per LPUSH
	pushPipeBatch = 20   // LPUSHes per round trip
)

// PushNumbers LPUSHes items onto queue in batches of 1000, so items[0] is
// claimed first, and returns how many were pushed (also on error).
func (s *Store) PushNumbers(ctx context.Context, queue string, items []string) (int, error) {
	pushed := 0
	for len(items) > 0 {
		pipe := s.rdb.Pipeline()
		var cmds []*redis.IntCmd
		var sizes []int
		for b := 0; b < pushPipeBatch && len(items) > 0; b++ {
			n := min(pushBatch, len(items))
			args := make([]any, n)
			for i, it := range items[:n] {
				args[i] = it
			}
			cmds = append(cmds, pipe.LPush(ctx, queue, args...))
			sizes = append(sizes, n)
			items = items[n:]
		}
		_, err := pipe.Exec(ctx)
		for i, c := range cmds {
			if c.Err() == nil {
				pushed += sizes[i]
			}
		}
		if err != nil {
			return pushed, fmt.Errorf("store: LPUSH %s: %w", queue, err)
		}
	}
	return pushed, nil
}

// TaskTemplateKey is the hash of task definitions every node runs.
func (s *Store) TaskTemplateKey() string { return "cti_queue_dialer_task@template" }

// TaskHostKey is the hash of task definitions (or overrides) of one node.
func (s *Store) TaskHostKey(host string) string { return "cti_queue_dialer_task@" + host }

// Tasks reads the template hash and this node's host hash in one pipeline.
func (s *Store) Tasks(ctx context.Context) (template, host map[string]string, err error) {
	tk, hk := s.TaskTemplateKey(), s.TaskHostKey(s.cfg.Host)
	pipe := s.rdb.Pipeline()
	tc := pipe.HGetAll(ctx, tk)
	hc := pipe.HGetAll(ctx, hk)
	if _, err := pipe.Exec(ctx); err != nil {
		if tc.Err() != nil {
			return nil, nil, fmt.Errorf("store: HGETALL %s: %w", tk, tc.Err())
		}
		return nil, nil, fmt.Errorf("store: HGETALL %s: %w", hk, err)
	}
	return tc.Val(), hc.Val(), nil
}

// configChannel is the change-notice channel of host ("" = template).
func configChannel(host string) string {
	if host == "" {
		return "config@all"
	}
	return "config@" + host
}

// ConfigChannels are the channels this node subscribes to for change
// notices: config@all and config@<host>.
func (s *Store) ConfigChannels() []string {
	return []string{configChannel(""), configChannel(s.cfg.Host)}
}

// ConfigNotice is the message published on a config channel.
type ConfigNotice struct {
	Type  string `json:"type"`
	Table string `json:"table"`
	Key   string `json:"key"`
}

// TaskTable is the table name in task change notices.
const TaskTable = "cti_queue_dialer_task"

// SetTask writes one task definition into the template (host "") or a
// host's hash, then publishes the change notice on config@all or
// config@<host>. The HSET completes before the PUBLISH, so a node reacting
// to the notice reads the new value.
func (s *Store) SetTask(ctx context.Context, host, name, value string) error {
	key := s.TaskTemplateKey()
	if host != "" {
		key = s.TaskHostKey(host)
	}
	if err := s.rdb.HSet(ctx, key, name, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", key, name, err)
	}
	msg, _ := json.Marshal(ConfigNotice{Type: "config_change", Table: TaskTable, Key: name})
	ch := configChannel(host)
	if err := s.rdb.Publish(ctx, ch, msg).Err(); err != nil {
		return fmt.Errorf("store: PUBLISH %s: %w", ch, err)
	}
	return nil
}
