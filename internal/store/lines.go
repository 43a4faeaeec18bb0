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

// LineAcquireStatus is the outcome of acquiring one lease.
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

// LineGrant answers the acquisition of one lease.
type LineGrant struct {
	Status LineAcquireStatus
	// RetryAfter is set with LineCPSLimited.
	RetryAfter time.Duration
	// InUse is the number of unexpired leases of the line after this
	// lease's turn (see acquireLineScript).
	InUse int
	// At is the Redis server time of the grant (LineGranted only).
	At time.Time
}

// The acquire script is the hot path (one call per originated call), so it
// stays O(log n) with n = leases of one line, and it answers a whole burst
// of requests for one line in one run: the node combines concurrent
// acquires of a line (lines.Manager, internal/batch), and the run costs one
// TIME, one ZCARD, one multi-member ZADD and one PEXPIRE however many
// leases it grants (plus the same for the cps ZSET when the line has a CPS
// limit). Expired leases are pruned only when they could cost a grant (the
// line looks full) — RenewLineLeases prunes them on every renewal anyway.
//
// The ids are answered in order, each as if it had been acquired alone
// right after the ones before it: all grants of a run share the grant time
// now, so an id refused for CPS waits for the slot that the grants before
// it (in Redis or earlier in this run) leave open. Once an id is refused,
// nothing changes for the ids after it, and they get the same answer.
//
// KEYS[1] leases ZSET (LineLeasesKey), KEYS[2] cps ZSET (LineCPSKey).
// ARGV[1] channel limit (-1 = unlimited), ARGV[2] cps (-1 = unlimited, else
// >= 1), ARGV[3] lease TTL in ms, ARGV[4..] lease ids.
// Returns one triple {status, value, in_use} per id, flattened in id order:
//
//	{1, grant_time_ms, in_use}   granted; grant_time_ms is server unix ms
//	{0, 0, in_use}               line full
//	{2, retry_after_ms, in_use}  channel free but CPS budget spent; the next
//	                             slot opens in retry_after_ms (>= 1)
//
// in_use counts the leases after that id; while the line is not full it
// may include leases that expired since the last prune (renewals prune
// every few seconds), never fewer than the live ones.
var acquireLineScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local cps = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local used = redis.call('ZCARD', KEYS[1])
local pruned = false
local window = -1
local leases, grants, out = {}, {}, {}
local refused, value = -1, 0
for i = 4, #ARGV do
  if refused < 0 and limit >= 0 and used >= limit and not pruned then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    used = redis.call('ZCARD', KEYS[1]) + #leases / 2
    pruned = true
  end
  if refused < 0 and limit >= 0 and used >= limit then
    refused, value = 0, 0
  end
  if refused < 0 and cps >= 1 then
    if window < 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1000)
      window = redis.call('ZCARD', KEYS[2])
    end
    local n = window + #grants / 2
    if n >= cps then
      local wait = 1000
      if n - cps < window then
        local slot = redis.call('ZRANGE', KEYS[2], n - cps, n - cps, 'WITHSCORES')
        wait = tonumber(slot[2]) + 1000 - now
      end
      if wait < 1 then wait = 1 end
      refused, value = 2, wait
    end
  end
  if refused >= 0 then
    out[#out + 1] = refused
    out[#out + 1] = value
    out[#out + 1] = used
  else
    leases[#leases + 1] = now + ttl
    leases[#leases + 1] = ARGV[i]
    if cps >= 1 then
      grants[#grants + 1] = now
      grants[#grants + 1] = ARGV[i]
    end
    used = used + 1
    out[#out + 1] = 1
    out[#out + 1] = now
    out[#out + 1] = used
  end
end
if #grants > 0 then
  redis.call('ZADD', KEYS[2], unpack(grants))
  redis.call('PEXPIRE', KEYS[2], 2000)
end
if #leases > 0 then
  redis.call('ZADD', KEYS[1], unpack(leases))
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
return out
`)

// acquireChunk bounds the ids of one acquire script run: unpack in the
// script is limited to a few thousand values, and a long run blocks Redis.
const acquireChunk = 500

// AcquireLineLeases atomically takes channels of line for ids, in order,
// while the line has a free channel (limit < 0: unlimited) and CPS budget
// (cps < 0: unlimited), in one script run per 500 ids. It returns one
// LineGrant per id. limit 0 always answers LineFull; cps 0 is refused.
// On an error no grant is reported, though leases granted by an earlier
// run of a longer list stay until their TTL passes.
func (s *Store) AcquireLineLeases(ctx context.Context, line string, ids []string, limit, cps int, ttl time.Duration) ([]LineGrant, error) {
	if cps == 0 {
		return nil, fmt.Errorf("store: acquire line %q: cps 0 never grants", line)
	}
	if cps < 0 {
		cps = -1
	}
	if limit < 0 {
		limit = -1
	}
	keys := []string{s.LineLeasesKey(line), s.LineCPSKey(line)}
	out := make([]LineGrant, 0, len(ids))
	for first := 0; first < len(ids); first += acquireChunk {
		chunk := ids[first:min(first+acquireChunk, len(ids))]
		args := make([]any, 0, 3+len(chunk))
		args = append(args, limit, cps, ttlMillis(ttl))
		for _, id := range chunk {
			args = append(args, id)
		}
		res, err := acquireLineScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("store: acquire line %q: %w", line, err)
		}
		if len(res) != 3*len(chunk) {
			return nil, fmt.Errorf("store: acquire line %q: script returned %d values for %d ids", line, len(res), len(chunk))
		}
		for i := 0; i < len(res); i += 3 {
			g := LineGrant{Status: LineAcquireStatus(res[i]), InUse: int(res[i+2])}
			switch g.Status {
			case LineGranted:
				g.At = time.UnixMilli(res[i+1])
			case LineCPSLimited:
				g.RetryAfter = time.Duration(res[i+1]) * time.Millisecond
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// AcquireLineLease is AcquireLineLeases for one lease id.
func (s *Store) AcquireLineLease(ctx context.Context, line, leaseID string, limit, cps int, ttl time.Duration) (LineGrant, error) {
	gs, err := s.AcquireLineLeases(ctx, line, []string{leaseID}, limit, cps, ttl)
	if err != nil {
		return LineGrant{}, err
	}
	return gs[0], nil
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

// LineLease names one lease for ReleaseLineLeases.
type LineLease struct {
	Line, ID string
}

// releaseChunk bounds the members of one ZREM, so releasing a line's
// thousands of leases at shutdown does not block Redis in one command.
const releaseChunk = 1000

// ReleaseLineLeases removes many leases in one pipelined round trip, with
// one ZREM per line naming all its leases (a burst of releases, a clean
// node shutdown). Leases that are gone already are not an error.
func (s *Store) ReleaseLineLeases(ctx context.Context, leases []LineLease) error {
	if len(leases) == 0 {
		return nil
	}
	var order []string
	byLine := map[string][]any{}
	for _, l := range leases {
		if _, ok := byLine[l.Line]; !ok {
			order = append(order, l.Line)
		}
		byLine[l.Line] = append(byLine[l.Line], l.ID)
	}
	pipe := s.rdb.Pipeline()
	for _, line := range order {
		ids := byLine[line]
		for first := 0; first < len(ids); first += releaseChunk {
			pipe.ZRem(ctx, s.LineLeasesKey(line), ids[first:min(first+releaseChunk, len(ids))]...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if len(order) == 1 {
			return fmt.Errorf("store: release %d leases of line %q: %w", len(leases), order[0], err)
		}
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
