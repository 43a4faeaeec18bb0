package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Line leases. Every line has two keys sharing one hash slot
// ({line:<domain>:<name>}), so one script can touch both in Redis Cluster:
//
//	redial:{line:<domain>:<name>}:leases  ZSET member = lease id, score = expiry (server unix ms)
//	redial:{line:<domain>:<name>}:cps     ZSET member = lease id, score = grant time (server unix ms),
//	                                      only grants of the last 1000 ms
//
// Scores come from the Redis server's clock (TIME inside the scripts), so
// the nodes' clocks never need to agree. A lease whose node stops renewing
// it simply falls out of the ZSET once its score is in the past.

// LineLeasesKey is the ZSET of channel leases of one line.
func (s *Store) LineLeasesKey(line string) string {
	return "redial:{line:" + s.cfg.Domain + ":" + line + "}:leases"
}

// LineCPSKey is the ZSET of the last second's call grants of one line.
func (s *Store) LineCPSKey(line string) string {
	return "redial:{line:" + s.cfg.Domain + ":" + line + "}:cps"
}

// LineAcquireStatus is the outcome of one AcquireLineLease.
type LineAcquireStatus int

const (
	// LineFull means the line has no free channel.
	LineFull LineAcquireStatus = 0
	// LineGranted means the lease was added.
	LineGranted LineAcquireStatus = 1
	// LineCPSLimited means a channel is free but the line's CPS budget for
	// the last 1000 ms is spent; RetryAfter says when the next slot opens.
	LineCPSLimited LineAcquireStatus = 2
)

// LineGrant is the answer of AcquireLineLease.
type LineGrant struct {
	Status LineAcquireStatus
	// RetryAfter is set with LineCPSLimited.
	RetryAfter time.Duration
	// InUse is the number of unexpired leases of the line after the call.
	InUse int
	// At is the Redis server time of the grant (LineGranted only).
	At time.Time
}

// The acquire script is the hot path (one call per originated call), so it
// stays O(log n) with n = leases of one line, in one round trip, and runs
// as few commands as it can: expired leases are pruned only when they
// could cost a grant (the line looks full) — RenewLineLeases prunes them
// on every renewal anyway — and the key's expiry is pushed forward with
// one PEXPIRE.
//
// KEYS[1] leases ZSET (LineLeasesKey), KEYS[2] cps ZSET (LineCPSKey).
// ARGV[1] lease id, ARGV[2] channel limit (-1 = unlimited), ARGV[3] cps
// (-1 = unlimited, else >= 1), ARGV[4] lease TTL in ms.
// Returns {status, value, in_use}:
//
//	{1, grant_time_ms, in_use}   granted; grant_time_ms is server unix ms
//	{0, 0, in_use}               line full
//	{2, retry_after_ms, in_use}  channel free but CPS budget spent; the next
//	                             slot opens in retry_after_ms (>= 1)
//
// in_use counts the leases after the call; while the line is not full it
// may include leases that expired since the last prune (renewals prune
// every few seconds), never fewer than the live ones.
var acquireLineScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local cps = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local used = redis.call('ZCARD', KEYS[1])
if limit >= 0 and used >= limit then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  used = redis.call('ZCARD', KEYS[1])
  if used >= limit then
    return {0, 0, used}
  end
end
if cps >= 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1000)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= cps then
    local slot = redis.call('ZRANGE', KEYS[2], n - cps, n - cps, 'WITHSCORES')
    local wait = tonumber(slot[2]) + 1000 - now
    if wait < 1 then wait = 1 end
    return {2, wait, used}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 2000)
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return {1, now, used + 1}
`)

// AcquireLineLease atomically takes a channel of line for leaseID when the
// line has a free channel (limit < 0: unlimited) and CPS budget (cps < 0:
// unlimited). limit 0 always answers LineFull; cps 0 is refused.
func (s *Store) AcquireLineLease(ctx context.Context, line, leaseID string, limit, cps int, ttl time.Duration) (LineGrant, error) {
	if cps == 0 {
		return LineGrant{}, fmt.Errorf("store: acquire line %q: cps 0 never grants", line)
	}
	if cps < 0 {
		cps = -1
	}
	if limit < 0 {
		limit = -1
	}
	keys := []string{s.LineLeasesKey(line), s.LineCPSKey(line)}
	res, err := acquireLineScript.Run(ctx, s.rdb, keys, leaseID, limit, cps, ttlMillis(ttl)).Int64Slice()
	if err != nil {
		return LineGrant{}, fmt.Errorf("store: acquire line %q: %w", line, err)
	}
	if len(res) != 3 {
		return LineGrant{}, fmt.Errorf("store: acquire line %q: script returned %v", line, res)
	}
	g := LineGrant{Status: LineAcquireStatus(res[0]), InUse: int(res[2])}
	switch g.Status {
	case LineGranted:
		g.At = time.UnixMilli(res[1])
	case LineCPSLimited:
		g.RetryAfter = time.Duration(res[1]) * time.Millisecond
	}
	return g, nil
}

// KEYS[1] leases ZSET (LineLeasesKey).
// ARGV[1] lease TTL in ms, ARGV[2] channel limit (-1 = unlimited),
// ARGV[3..] lease ids held by the calling node.
// Pushes every listed lease's expiry to now+TTL. A lease that already
// expired (its node could not reach Redis in time) is re-added only while
// the line has room, so renewing never breaks the limit.
// Returns {in_use, s_1, ..., s_n}: in_use = unexpired leases afterwards,
// s_i for ARGV[2+i]: 1 renewed, 2 re-added after expiry, 0 lost (line full).
var renewLineScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local used = redis.call('ZCARD', KEYS[1])
local out = {0}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
    out[#out + 1] = 1
  elseif limit < 0 or used < limit then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
    used = used + 1
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
if used > 0 and redis.call('PTTL', KEYS[1]) < 2 * ttl then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
out[1] = used
return out
`)

// LeaseRenewStatus is the fate of one lease in RenewLineLeases.
type LeaseRenewStatus int

const (
	// LeaseLost means the lease had expired and the line had no room to
	// take it back.
	LeaseLost LeaseRenewStatus = 0
	// LeaseRenewed means the lease's expiry was pushed forward.
	LeaseRenewed LeaseRenewStatus = 1
	// LeaseReAdded means the lease had expired and was added again.
	LeaseReAdded LeaseRenewStatus = 2
)

// LineRenewal lists the leases one node holds on one line.
type LineRenewal struct {
	Line  string
	Limit int // < 0: unlimited
	IDs   []string
}

// LineRenewResult answers one LineRenewal.
type LineRenewResult struct {
	Line   string
	InUse  int
	Status []LeaseRenewStatus // one per ID, same order
	Err    error
}

// renewChunk bounds ARGV of one renew script call, so one line with many
// leases does not block Redis in one long script.
const renewChunk = 500

// RenewLineLeases renews the given leases in one pipelined round trip. A
// per-line failure is reported in that result's Err; the returned error is
// set only when no result could be read at all.
func (s *Store) RenewLineLeases(ctx context.Context, renewals []LineRenewal, ttl time.Duration) ([]LineRenewResult, error) {
	type part struct {
		res   int // index into out
		first int // index of the chunk's first ID
		cmd   *redis.Cmd
	}
	out := make([]LineRenewResult, len(renewals))
	var parts []part
	pipe := s.rdb.Pipeline()
	for i, r := range renewals {
		limit := r.Limit
		if limit < 0 {
			limit = -1
		}
		out[i] = LineRenewResult{Line: r.Line, Status: make([]LeaseRenewStatus, len(r.IDs))}
		for first := 0; first < len(r.IDs); first += renewChunk {
			ids := r.IDs[first:min(first+renewChunk, len(r.IDs))]
			args := make([]any, 0, 2+len(ids))
			args = append(args, ttlMillis(ttl), limit)
			for _, id := range ids {
				args = append(args, id)
			}
			// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT,
			// and renewals run every few seconds only.
			cmd := renewLineScript.Eval(ctx, pipe, []string{s.LineLeasesKey(r.Line)}, args...)
			parts = append(parts, part{res: i, first: first, cmd: cmd})
		}
	}
	if len(parts) == 0 {
		return out, nil
	}
	_, execErr := pipe.Exec(ctx)
	failed := 0
	for _, p := range parts {
		r := &out[p.res]
		vals, err := p.cmd.Int64Slice()
		if err == nil && len(vals) < 1 {
			err = errors.New("empty script reply")
		}
		if err != nil {
			if r.Err == nil {
				r.Err = fmt.Errorf("store: renew leases of line %q: %w", r.Line, err)
			}
			failed++
			continue
		}
		r.InUse = int(vals[0])
		for j, v := range vals[1:] {
			if p.first+j < len(r.Status) {
				r.Status[p.first+j] = LeaseRenewStatus(v)
			}
		}
	}
	if failed == len(parts) && execErr != nil {
		return out, fmt.Errorf("store: renew line leases: %w", execErr)
	}
	return out, nil
}

// ReleaseLineLease removes one lease (ZREM); releasing a lease that is gone
// already is not an error.
func (s *Store) ReleaseLineLease(ctx context.Context, line, leaseID string) error {
	if err := s.rdb.ZRem(ctx, s.LineLeasesKey(line), leaseID).Err(); err != nil {
		return fmt.Errorf("store: release lease %q of line %q: %w", leaseID, line, err)
	}
	return nil
}

// LineLease names one lease for ReleaseLineLeases.
type LineLease struct {
	Line, ID string
}

// ReleaseLineLeases removes many leases in one pipelined round trip (clean
// node shutdown).
func (s *Store) ReleaseLineLeases(ctx context.Context, leases []LineLease) error {
	if len(leases) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, l := range leases {
		pipe.ZRem(ctx, s.LineLeasesKey(l.Line), l.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: release %d line leases: %w", len(leases), err)
	}
	return nil
}

// KEYS[1] leases ZSET (LineLeasesKey). No ARGV.
// Returns the number of leases whose expiry is after the server's now.
var lineInUseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// LinesInUse counts the unexpired leases of each named line in one
// pipelined round trip.
func (s *Store) LinesInUse(ctx context.Context, lines []string) (map[string]int, error) {
	out := make(map[string]int, len(lines))
	if len(lines) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(lines))
	for i, l := range lines {
		cmds[i] = lineInUseScript.Eval(ctx, pipe, []string{s.LineLeasesKey(l)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return out, fmt.Errorf("store: count line leases: %w", err)
	}
	for i, l := range lines {
		n, err := cmds[i].Int64()
		if err != nil {
			return out, fmt.Errorf("store: count leases of line %q: %w", l, err)
		}
		out[l] = int(n)
	}
	return out, nil
}

// ttlMillis rounds a TTL to whole milliseconds, at least 1.
func ttlMillis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return ms
}

// SetLine writes one line definition (the seed's JSON) into
// cti_line@<domain>. Nodes pick it up on their next reload.
func (s *Store) SetLine(ctx context.Context, name, value string) error {
	if err := s.rdb.HSet(ctx, s.LinesKey(), name, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", s.LinesKey(), name, err)
	}
	return nil
}

// SetDialplanEntry writes the target JSON of one destination into
// cti_dialplan@<domain>; key is "<context>:<extension>".
func (s *Store) SetDialplanEntry(ctx context.Context, key, value string) error {
	if err := s.rdb.HSet(ctx, s.DialplanKey(), key, value).Err(); err != nil {
		return fmt.Errorf("store: HSET %s %s: %w", s.DialplanKey(), key, err)
	}
	return nil
}
