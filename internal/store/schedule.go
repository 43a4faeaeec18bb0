package store

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Scheduled dialer keys. The first two are seed 004's contract; the others
// are redial's claim ledger (ledger.go) and use the numbers ZSET's whole
// name as their hash tag, so that on a Redis Cluster every script finds
// its keys in one slot (the seed's name carries no braces and therefore
// hashes whole).
//
//	cti_schedule_dialer_config@<domain>  HASH  config name -> {"params": {...}, "variables": {...}}
//	cti_schedule_dialer_number@<domain>  ZSET  member = item JSON, score = unix seconds to call
//	                                           (may be fractional); written by integrators
//	redial:{cti_schedule_dialer_number@<domain>}:claimed:<host>   LIST  members <host> claimed
//	redial:{...}:dialing:<host>          LIST  members <host> claimed whose INVITE may have gone out
//	redial:{...}:scores:<host>           HASH  member -> its score when claimed
//	redial:{...}:holders                 SET   hosts that have (had) claims
//	redial:{...}:interrupted             LIST  ParkedItem JSON of claims whose INVITE may have
//	                                           gone out when their node died
//	redial:{...}:invalid                 LIST  ParkedItem JSON of malformed members
//
// A member is claimed by moving it out of the ZSET inside one script, so
// two nodes never dial it twice; its score is kept, so a claim that was
// never dialed goes back exactly where it was. On a Redis Cluster the
// domain must not contain '}' (the tag could then not cover the numbers
// key; a domain that carries a complete {tag} of its own is handled by
// reusing that tag).

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

// ScheduleLedger is the claim ledger of the scheduled dialer. Claims that
// may have been dialed when their node died go to its :interrupted list.
func (s *Store) ScheduleLedger() *Ledger {
	return &Ledger{s: s, name: "schedule", shape: ShapeZSet, source: s.ScheduleNumbersKey(),
		prefix: s.schedulePrefix(), procWord: "claimed"}
}

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
func (s *Store) ListScheduled(ctx context.Context, from, to float64, limit int) ([]Claim, error) {
	key := s.ScheduleNumbersKey()
	by := &redis.ZRangeBy{Min: formatZScore(from), Max: formatZScore(to)}
	if limit > 0 {
		by.Count = int64(limit)
	}
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, key, by).Result()
	if err != nil {
		return nil, fmt.Errorf("store: ZRANGEBYSCORE %s: %w", key, err)
	}
	out := make([]Claim, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = Claim{Member: m, Score: z.Score}
	}
	return out, nil
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
