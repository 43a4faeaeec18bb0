package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/batch"
)

// The claim ledger: one set of scripts for every queue-like contract whose
// items are claimed by a node, possibly dialed, and finished (acknowledged,
// parked, written back) — number queues, scheduled members, callback events
// and callback plans today, waiting callers next. An item is never popped:
// it moves from its source into the claiming node's ledger in one atomic
// step and leaves it in one atomic step, so a crash at any point leaves it
// in exactly one place.
//
// A ledger has a source of one of two shapes:
//
//   - LIST (number queues, callback events): producers LPUSH, nodes claim
//     from the right: many at once with one script while items wait
//     (ClaimBatch), with BLMOVE to wait for the next one without polling.
//   - ZSET (scheduled members, callback plans): score = due time; a node
//     claims the members due by the Redis server's clock with a script.
//
// Per ledger, with P its key prefix (which carries the Redis Cluster hash
// tag, so every key below shares one slot):
//
//	P:processing:<host>  LIST  (LIST sources) claimed members not marked yet, newest at the left
//	P:claimed:<host>     LIST  (ZSET sources) the same; another name because
//	                           earlier versions kept a HASH there
//	P:dialing:<host>     LIST  marked members: their INVITE may have been sent;
//	                           Mark moves a copy here from the list above
//	P:scores:<host>      HASH  member -> its score when claimed (ZSET sources),
//	                           so a never-dialed claim goes back where it was;
//	                           kept while a copy is in either list
//	P:holders            SET   hosts that have (had) claims in this ledger
//	P:interrupted        LIST  ParkedItem JSON of claims whose INVITE may have
//	                           gone out when their node died
//	P:invalid            LIST  ParkedItem JSON of malformed items
//	P:invited:<host>     HASH  left by versions before the dialing list: member
//	                           -> how many of the copies in the processing list
//	                           were marked; only recovery and settle ops spooled
//	                           by such a version read it
//
// A ledger may also name a payload HASH (callback plans: the plan document
// lives beside its due-time ZSET under the same member); claims of a member
// whose payload is gone are dropped, not dialed.
//
// Every copy of a claimed member is in exactly one of the two lists, so
// what a crash leaves says by itself which claims may have been dialed.
// A LIST source may hold equal items; their copies are interchangeable,
// and a settle op says which list its copy is in (SettleOp.Marked), trying
// the other when that one has none.

// ErrClaimGone means the claim was no longer held by this node (another
// node recovered it after this node's heartbeat lapsed); nothing was
// changed. The caller must not dial it.
var ErrClaimGone = errors.New("claim no longer held")

// ErrHostAlive means Recover found the host's heartbeat alive and left its
// claims alone.
var ErrHostAlive = errors.New("host heartbeat is alive")

// ErrPayloadGone means the claimed item's payload document no longer
// exists (a callback plan ended, possibly on another node or by an
// operator); the claim was dropped and nothing else was written.
var ErrPayloadGone = errors.New("item payload no longer exists")

// ErrPlanGone is ErrPayloadGone under the name the callback plans use.
var ErrPlanGone = ErrPayloadGone

// LedgerShape is the shape of a ledger's source.
type LedgerShape string

// Ledger source shapes.
const (
	ShapeList LedgerShape = "list"
	ShapeZSet LedgerShape = "zset"
)

// recoverBatch bounds one recover script run, so a long processing list
// never blocks Redis in one script.
const recoverBatch = 100

// Ledger is one claim ledger as seen by this node. Build it with one of
// QueueLedger, ScheduleLedger, EventsLedger or PlansLedger.
type Ledger struct {
	s     *Store
	name  string
	shape LedgerShape
	// source is the LIST or ZSET items are claimed from.
	source string
	// prefix starts every private key of the ledger; procWord names the
	// per-host processing list.
	prefix, procWord string
	// payload is the HASH of item documents ("" when items carry
	// everything themselves).
	payload string
	// retry is the ZSET of delayed items of a LIST ledger ("" none).
	retry string
	// msScores: ZSET scores are unix milliseconds rather than seconds.
	msScores bool
	// requeueInvited sends recovered claims that may have been dialed back
	// to the source instead of to :interrupted.
	requeueInvited bool
	// recoverNow: recovered ZSET claims are due at once instead of at
	// their original score.
	recoverNow bool

	// ownKeys are Keys of this node, built once: the dialers poll their
	// ledgers every few hundred milliseconds, and building the dozen key
	// strings on each poll was most of an idle node's garbage (issue 14).
	ownOnce sync.Once
	ownKeys LedgerKeys

	// marks combines the Marks of concurrent calls into one script run.
	marksOnce sync.Once
	marks     *batch.Group[struct{}, string, int64]
}

// Name identifies the ledger in logs and metrics ("queue sales_q",
// "schedule", "events", "plans").
func (l *Ledger) Name() string { return l.name }

// Host is the node this ledger claims for.
func (l *Ledger) Host() string { return l.s.cfg.Host }

// Shape is the shape of the ledger's source.
func (l *Ledger) Shape() LedgerShape { return l.shape }

// LedgerKeys are the Redis keys of one ledger as seen by one host.
type LedgerKeys struct {
	Source, Processing, Dialing, Scores, Holders, Interrupted, Invalid string
	// Invited is the HASH of marks of versions before the dialing list.
	Invited string
	// Payload is the item document HASH, or "" when the ledger has none.
	Payload string
	// Retry is the delayed-items ZSET of a LIST ledger, or "".
	Retry string
	// Alive and LegacyAlive are the host's heartbeat keys (other hash
	// slots: never passed to a script together with the ledger keys on
	// Cluster).
	Alive, LegacyAlive string
}

// Keys returns the ledger's keys for host ("" = this node).
func (l *Ledger) Keys(host string) LedgerKeys {
	if host == "" || host == l.s.cfg.Host {
		l.ownOnce.Do(func() { l.ownKeys = l.keys(l.s.cfg.Host) })
		return l.ownKeys
	}
	return l.keys(host)
}

func (l *Ledger) keys(host string) LedgerKeys {
	return LedgerKeys{
		Source:      l.source,
		Processing:  l.prefix + ":" + l.procWord + ":" + host,
		Dialing:     l.prefix + ":dialing:" + host,
		Invited:     l.prefix + ":invited:" + host,
		Scores:      l.prefix + ":scores:" + host,
		Holders:     l.prefix + ":holders",
		Interrupted: l.prefix + ":interrupted",
		Invalid:     l.prefix + ":invalid",
		Payload:     l.payload,
		Retry:       l.retry,
		Alive:       l.s.AliveKey(host),
		LegacyAlive: l.s.LegacyAliveKey(host),
	}
}

// payloadKey is the key scripts get in the payload position: the payload
// HASH, or (when there is none) the scores HASH, which shares the slot and
// is then never touched through that position.
func (k LedgerKeys) payloadKey() string {
	if k.Payload != "" {
		return k.Payload
	}
	return k.Scores
}

// ClaimBlocking waits up to timeout for an item of a LIST ledger and claims
// it: BLMOVE <source> <processing> RIGHT LEFT. It returns ("", false, nil) when the timeout passes
// with the source empty. The timeout is rounded up to whole seconds (at
// least 1 s): go-redis extends its read deadline for BLMOVE only when it
// sends the timeout itself, in whole seconds, and a reply lost to a
// client-side deadline would leave the item claimed by nobody who knows.
// After a transport error the item may have moved anyway; it is then
// settled by SettleOwn or a recoverer like any claim.
//
// It registers the node as a holder after the BLMOVE (one SADD), as
// ClaimBatch and ClaimDue do in their scripts, and gives the item back
// when that fails: the mark does not register. ClaimBatch claims without
// waiting and costs one round trip for many items: use it while the
// source has items, and ClaimBlocking to wait for the next one.
func (l *Ledger) ClaimBlocking(ctx context.Context, timeout time.Duration) (string, bool, error) {
	if l.shape != ShapeList {
		return "", false, fmt.Errorf("store: ledger %s: blocking claim needs a LIST source", l.name)
	}
	secs := (timeout + time.Second - 1) / time.Second
	if secs < 1 {
		secs = 1
	}
	k := l.Keys("")
	raw, err := l.s.rdb.BLMove(ctx, k.Source, k.Processing, "RIGHT", "LEFT", secs*time.Second).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: BLMOVE %s %s: %w", k.Source, k.Processing, err)
	}
	// BLMOVE cannot register the holder, and the mark does not: without
	// it, a node a recovery wrongly buried (which drops it from the
	// holders) would keep claims nobody can recover if it then died.
	// Never hand out a claim nobody can recover.
	if err := l.EnsureHolder(ctx); err != nil {
		if rerr := l.Return(ctx, raw, time.Time{}); rerr != nil {
			return "", false, fmt.Errorf("%w; and giving the claim back: %w", err, rerr)
		}
		return "", false, err
	}
	return raw, true, nil
}

// KEYS[1] source LIST, KEYS[2] this host's processing LIST, KEYS[3]
// holders SET.
// ARGV[1] max items (>= 1), ARGV[2] host.
// Moves up to ARGV[1] items from the consumer (right) end of the source
// onto the left of the processing list, as that many BLMOVE source
// processing RIGHT LEFT would, in three commands whatever their number;
// registers host in holders when it moved any.
// Returns the items moved, oldest (first to be dialed) first; empty when
// the source is empty.
var claimBatchScript = redis.NewScript(`
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not items or #items == 0 then return {} end
redis.call('LPUSH', KEYS[2], unpack(items))
redis.call('SADD', KEYS[3], ARGV[2])
return items
`)

// maxClaimBatch bounds one ClaimBatch (the script's LPUSH takes the items
// as arguments).
const maxClaimBatch = 500

// ClaimBatch claims up to n items of a LIST ledger at once, without
// waiting: they move from the consumer end of the source to this node's
// processing list in one atomic script, exactly as n BLMOVEs would, so
// they are claimed (never popped) and a crash leaves each in exactly one
// place. It returns them oldest first, or none when the source is empty.
// After a transport error the items may have moved anyway; they are then
// settled by SettleOwn or a recoverer like any claim.
func (l *Ledger) ClaimBatch(ctx context.Context, n int) ([]string, error) {
	if l.shape != ShapeList {
		return nil, fmt.Errorf("store: ledger %s: batch claim needs a LIST source", l.name)
	}
	n = min(maxClaimBatch, max(1, n))
	k := l.Keys("")
	items, err := claimBatchScript.Run(ctx, l.s.rdb, []string{k.Source, k.Processing, k.Holders}, n, l.s.cfg.Host).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: claim from %s into %s: %w", k.Source, k.Processing, err)
	}
	return items, nil
}

// Claim is one member claimed from a ZSET ledger.
type Claim struct {
	Member string
	// Score is the member's score when claimed (NaN if unreadable).
	Score float64
	// Payload is the member's document from the payload HASH ("" when the
	// ledger has none).
	Payload string
}

// Due is the claim's score as a time.
func (c Claim) Due(ms bool) time.Time {
	if ms {
		return zscoreMillis(strconv.FormatFloat(c.Score, 'f', -1, 64))
	}
	switch {
	case math.IsNaN(c.Score):
		return time.Time{}
	case c.Score <= -maxDueSeconds:
		return time.Unix(-maxDueSeconds, 0)
	case c.Score >= maxDueSeconds:
		return time.Unix(maxDueSeconds, 0)
	}
	sec, frac := math.Modf(c.Score)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// maxDueSeconds bounds Due: ±inf scores (and absurd ones) read as times this
// far from 1970, which WriteBackOp turns back into scores that still sort
// before (after) every real time, instead of overflowing int64.
const maxDueSeconds = 1 << 53

// KEYS[1] source ZSET, KEYS[2] this host's claimed LIST, KEYS[3] its scores
// HASH, KEYS[4] holders SET, KEYS[5] payload HASH (any key of the slot when
// ARGV[3] is not '1').
// ARGV[1] max members, ARGV[2] host, ARGV[3] '1' when members need a
// payload, ARGV[4] 'ms' when scores are unix ms, else unix seconds.
// Claims up to ARGV[1] members due by the server's clock, earliest first:
// each leaves the ZSET and is pushed on the claimed list, its score kept
// as Redis printed it. A due member this host holds already (re-added
// while its first claim is in flight) is not claimed twice: it is moved
// 1 s later. A member whose payload is gone is dropped. Registers host in
// holders when it claimed anything.
// Returns {next, m_1, s_1, p_1, ...}: next = the earliest score left ("" when
// the ZSET is empty); member, score and payload ("" without one) of each
// claim, as strings.
var claimDueScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now, later
if ARGV[4] == 'ms' then
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  now, later = string.format('%d', ms), string.format('%d', ms + 1000)
else
  local usec = string.format('%06d', tonumber(t[2]))
  now, later = t[1] .. '.' .. usec, tostring(tonumber(t[1]) + 1) .. '.' .. usec
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
local out = {''}
for i = 1, #due, 2 do
  local m, sc = due[i], due[i + 1]
  if redis.call('HEXISTS', KEYS[3], m) == 1 then
    redis.call('ZADD', KEYS[1], later, m)
  else
    redis.call('ZREM', KEYS[1], m)
    local p = ''
    if ARGV[3] == '1' then p = redis.call('HGET', KEYS[5], m) end
    if p then
      redis.call('LPUSH', KEYS[2], m)
      redis.call('HSET', KEYS[3], m, sc)
      out[#out + 1] = m
      out[#out + 1] = sc
      out[#out + 1] = p
    end
  end
end
if #out > 1 then redis.call('SADD', KEYS[4], ARGV[2]) end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nx == 2 then out[1] = nx[2] end
return out
`)

// ClaimDue atomically claims up to max members of a ZSET ledger whose
// score is at or before the Redis server's clock, earliest first. Two
// nodes never claim the same member. next is the earliest score left (NaN
// when the ZSET is empty); a next at or before now means more members are
// due already and the caller should claim again at once.
func (l *Ledger) ClaimDue(ctx context.Context, max int) (claims []Claim, next float64, err error) {
	if l.shape != ShapeZSet {
		return nil, 0, fmt.Errorf("store: ledger %s: due claims need a ZSET source", l.name)
	}
	if max < 1 {
		max = 1
	}
	k := l.Keys("")
	keys := []string{k.Source, k.Processing, k.Scores, k.Holders, k.payloadKey()}
	res, err := claimDueScript.Run(ctx, l.s.rdb, keys, max, l.s.cfg.Host, flag(k.Payload != ""), l.unit()).StringSlice()
	if err != nil {
		return nil, 0, fmt.Errorf("store: claim due members of %s: %w", k.Source, err)
	}
	if len(res)%3 != 1 {
		return nil, 0, fmt.Errorf("store: claim due members of %s: script returned %d values", k.Source, len(res))
	}
	next = math.NaN()
	if res[0] != "" {
		if next, err = strconv.ParseFloat(res[0], 64); err != nil {
			return nil, 0, fmt.Errorf("store: claim due members of %s: next score %q: %w", k.Source, res[0], err)
		}
	}
	claims = make([]Claim, 0, len(res)/3)
	for i := 1; i < len(res); i += 3 {
		sc, err := strconv.ParseFloat(res[i+1], 64)
		if err != nil {
			// The member is claimed already; report it rather than lose it.
			sc = math.NaN()
		}
		claims = append(claims, Claim{Member: res[i], Score: sc, Payload: res[i+2]})
	}
	return claims, next, nil
}

func (l *Ledger) unit() string {
	if l.msScores {
		return "ms"
	}
	return "s"
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func settleResult(n int64, what string) error {
	switch n {
	case 0:
		return fmt.Errorf("store: %s: %w", what, ErrClaimGone)
	case -1:
		return fmt.Errorf("store: %s: %w", what, ErrPayloadGone)
	}
	return nil
}

// Claims lists the members this node holds: the unmarked ones, newest
// claim first, then the marked ones, newest mark first.
func (l *Ledger) Claims(ctx context.Context) ([]string, error) {
	k := l.Keys("")
	var out []string
	for _, key := range []string{k.Processing, k.Dialing} {
		v, err := l.s.rdb.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("store: LRANGE %s: %w", key, err)
		}
		out = append(out, v...)
	}
	return out, nil
}

// EnsureHolder registers this node in the ledger's holders, so that a live
// node finds its claims after it dies. Call it before the first claim and
// periodically: Recover drops a host whose claims it settled, and a node
// wrongly declared dead must register again. Every claim registers too.
func (l *Ledger) EnsureHolder(ctx context.Context) error {
	k := l.Keys("")
	if err := l.s.rdb.SAdd(ctx, k.Holders, l.s.cfg.Host).Err(); err != nil {
		return fmt.Errorf("store: SADD %s %s: %w", k.Holders, l.s.cfg.Host, err)
	}
	return nil
}

// Holders lists the hosts registered in the ledger's holders.
func (l *Ledger) Holders(ctx context.Context) ([]string, error) {
	k := l.Keys("")
	v, err := l.s.rdb.SMembers(ctx, k.Holders).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SMEMBERS %s: %w", k.Holders, err)
	}
	return v, nil
}

// KEYS[1] the host's processing LIST, KEYS[2] its dialing LIST, KEYS[3]
// its invited HASH (marks of versions before the dialing list), KEYS[4] its
// scores HASH, KEYS[5] source (LIST or ZSET), KEYS[6] interrupted LIST,
// KEYS[7] holders SET, KEYS[8] payload HASH (any key of the slot when
// ARGV[6] is not '1'), KEYS[9] and KEYS[10] (optional, omitted on Cluster
// where they live in other slots) the host's heartbeat keys, new and
// legacy: the host is alive when either exists.
// ARGV[1] max claims, ARGV[2] source shape 'list' | 'zset', ARGV[3] '1' to
// requeue claims that may have been dialed, ARGV[4] ParkedItem JSON
// without its item (filled in here), ARGV[5] host, ARGV[6] '1' when
// members need a payload, ARGV[7] 'now' to make recovered ZSET members
// due now (unix ms) instead of at their claimed score.
// Takes the marked claims (the dialing list), then the others, newest
// first: never-dialed ones (and, with ARGV[3] = '1', possibly-dialed ones)
// go back to the consumer end of a LIST source (so its order is kept) or
// into a ZSET source; possibly-dialed ones otherwise get LPUSHed to
// interrupted; members whose payload is gone are dropped. A claim in the
// processing list counts as marked while the invited HASH says so. When
// both lists are empty the host leaves holders and its hashes go.
// Returns {status, requeued, interrupted, requeued_invited, remaining}:
// status 0 = heartbeat alive, nothing done; 1 = batch done.
var recoverScript = redis.NewScript(`
if #KEYS >= 10 and redis.call('EXISTS', KEYS[9], KEYS[10]) > 0 then
  return {0, 0, 0, 0, redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])}
end
local now
if ARGV[7] == 'now' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
local zset = ARGV[2] == 'zset'
local legacy = redis.call('EXISTS', KEYS[3]) == 1
local tmpl
local rq, intr, rqi = 0, 0, 0
for i = 1, tonumber(ARGV[1]) do
  local c = 1
  local m = redis.call('LPOP', KEYS[2])
  if not m then
    m = redis.call('LPOP', KEYS[1])
    if not m then break end
    c = 0
    if legacy then
      c = tonumber(redis.call('HGET', KEYS[3], m) or '0')
      if c == 1 then redis.call('HDEL', KEYS[3], m) elseif c > 1 then redis.call('HINCRBY', KEYS[3], m, -1) end
    end
  end
  local sc
  if zset then
    sc = redis.call('HGET', KEYS[4], m)
    if not redis.call('LPOS', KEYS[1], m) and not redis.call('LPOS', KEYS[2], m) then redis.call('HDEL', KEYS[4], m) end
  end
  if ARGV[6] == '1' and redis.call('HEXISTS', KEYS[8], m) == 0 then
    -- the item ended meanwhile: nothing to put back
  elseif c > 0 and ARGV[3] ~= '1' then
    if not tmpl then tmpl = cjson.decode(ARGV[4]) end
    tmpl['item'] = m
    redis.call('LPUSH', KEYS[6], cjson.encode(tmpl))
    intr = intr + 1
  else
    if zset then
      redis.call('ZADD', KEYS[5], now or sc or '0', m)
    else
      redis.call('RPUSH', KEYS[5], m)
    end
    if c > 0 then rqi = rqi + 1 else rq = rq + 1 end
  end
end
local left = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
if left == 0 then
  redis.call('SREM', KEYS[7], ARGV[5])
  redis.call('DEL', KEYS[3], KEYS[4])
end
return {1, rq, intr, rqi, left}
`)

// RecoverResult counts where a host's claims went.
type RecoverResult struct {
	// Requeued claims were never dialed and went back to the source.
	Requeued int
	// Interrupted claims may have been dialed and went to :interrupted.
	Interrupted int
	// RequeuedInterrupted claims may have been dialed and went back to the
	// source because the ledger requeues them.
	RequeuedInterrupted int
}

// Total is how many claims moved.
func (r RecoverResult) Total() int { return r.Requeued + r.Interrupted + r.RequeuedInterrupted }

// Recover settles every claim of deadHost: never-dialed claims go back to
// the source (in their original order, or at their original score),
// claims marked by Mark go to :interrupted or back to the source as the
// ledger says. Each batch of up to 100 claims is one script that pops them
// from the dead host's list, so two live nodes recovering the same host at
// once move every claim exactly once. Each batch re-checks the dead host's
// heartbeat first (inside the script, except on Cluster where it is a
// separate EXISTS just before); if it is alive, Recover stops and returns
// what it moved with an error wrapping ErrHostAlive.
func (l *Ledger) Recover(ctx context.Context, deadHost string) (RecoverResult, error) {
	return l.recover(ctx, deadHost, true)
}

// SettleOwn settles the claims a previous run of this node (same host
// name) left behind, without the heartbeat check; call it at startup,
// before this node's first claim on the ledger (and after the notify spool
// has replayed what that run left, so finished claims are acknowledged
// first). Host names must be unique among running nodes, or this steals a
// live node's claims.
func (l *Ledger) SettleOwn(ctx context.Context) (RecoverResult, error) {
	return l.recover(ctx, l.s.cfg.Host, false)
}

func (l *Ledger) recover(ctx context.Context, host string, checkAlive bool) (RecoverResult, error) {
	var out RecoverResult
	k := l.Keys(host)
	keys := []string{k.Processing, k.Dialing, k.Invited, k.Scores, k.Source, k.Interrupted, k.Holders, k.payloadKey()}
	cluster := l.s.IsCluster()
	if checkAlive && !cluster {
		keys = append(keys, k.Alive, k.LegacyAlive)
	}
	tmpl, _ := json.Marshal(ParkedItem{Reason: "node " + host + " stopped while the call was in progress",
		At: time.Now().UTC().Format(time.RFC3339), Host: host}) // strings only: cannot fail
	now := ""
	if l.recoverNow {
		now = "now"
	}
	for {
		if checkAlive && cluster {
			alive, err := l.s.Alive(ctx, []string{host})
			if err != nil {
				return out, fmt.Errorf("store: recover %s: %w", k.Processing, err)
			}
			if alive[host] {
				return out, fmt.Errorf("store: recover %s: %w", k.Processing, ErrHostAlive)
			}
		}
		res, err := recoverScript.Run(ctx, l.s.rdb, keys, recoverBatch, string(l.shape), flag(l.requeueInvited),
			string(tmpl), host, flag(k.Payload != ""), now).Int64Slice()
		if err != nil {
			return out, fmt.Errorf("store: recover %s: %w", k.Processing, err)
		}
		if len(res) != 5 {
			return out, fmt.Errorf("store: recover %s: script returned %v", k.Processing, res)
		}
		if res[0] == 0 {
			return out, fmt.Errorf("store: recover %s: %w", k.Processing, ErrHostAlive)
		}
		out.Requeued += int(res[1])
		out.Interrupted += int(res[2])
		out.RequeuedInterrupted += int(res[3])
		if res[4] == 0 {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("store: recover %s: %w", k.Processing, err)
		}
	}
}

// ParkedItem is one entry of a ledger's :interrupted or :invalid list.
type ParkedItem struct {
	// Item is the raw item, exactly as it was queued.
	Item string `json:"item"`
	// ItemBase64 holds the item's bytes instead of Item (then "") when
	// they are not valid UTF-8, or when escaping them as a JSON string
	// would take over 1.5 times their size (see parkedJSON). Items parked by
	// a recovery script carry their bytes in Item as they are.
	ItemBase64 []byte `json:"item_base64,omitempty"`
	Reason     string `json:"reason"`
	// At is RFC 3339, UTC, on the clock of the node that parked the item.
	At   string `json:"at"`
	Host string `json:"host"`
}
