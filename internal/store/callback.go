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
// it hashes whole; the claim ledger of events (ledger.go) uses that whole
// name as its tag and shares its slot:
//
//	redial:events                                  LIST  event JSON; producers LPUSH, claimed from the right
//	redial:{redial:events}:processing:<host>       LIST  events claimed by <host>, newest at the left
//	redial:{redial:events}:holders                 SET   hosts that have (had) claims
//	redial:{redial:events}:invalid                 LIST  ParkedItem JSON of events that could not be used
//
// Plans. One plan per vmbox across all nodes. The due-time ZSET is the
// source of the plans' claim ledger, whose payload is the plans hash; all
// plan keys share the slot {callback}:
//
//	redial:{callback}:plans              HASH  "<account>/<vmbox>" -> plan JSON (callback package's codec)
//	redial:{callback}:due                ZSET  member = plan field, score = unix ms of the next attempt;
//	                                           a plan being attempted is not in it
//	redial:{callback}:claimed:<host>     LIST  plan fields <host> is attempting
//	redial:{callback}:dialing:<host>     LIST  plan fields whose attempt's INVITE may have gone out
//	redial:{callback}:scores:<host>      HASH  plan field -> due score when claimed
//	redial:{callback}:holders            SET   hosts that have (had) claimed plans
//	redial:{callback}:ended              LIST  EndedPlan JSON, newest first, capped at EndedPlansCap
//
// A plan's JSON stays in the plans hash while it is claimed, so a second
// voicemail_saved for the same vmbox (on any node) finds it and creates
// nothing. Documents and cron:
//
//	account, user@<account>, vmbox@<account>, callflow@<account>, system_config
//	                                     HASH  document JSON by id (seed 000; system_config field "ananke")
//	redial:cron:<entry>:<tick unix s>    STRING the node that runs that tick, PX ttl

// EndedPlansCap is how many ended plans the ended list keeps.
const EndedPlansCap = 1000

// EventsLedger is the claim ledger of callback events. Events are never
// marked invited; a dead node's claimed events go back to be read again
// (handling an event twice is harmless: a vmbox has at most one plan).
func (s *Store) EventsLedger() *Ledger {
	return &Ledger{s: s, name: "events", shape: ShapeList, source: s.EventsKey(),
		prefix: "redial:{" + s.EventsKey() + "}", procWord: "processing", requeueInvited: true}
}

// PlansLedger is the claim ledger of callback plans. A plan whose attempt
// was cut short by a node's death is due again at once, with the same
// attempt number: whether that call happened is unknown, and a callback is
// a notification — one extra ring beats a voicemail nobody is told about.
func (s *Store) PlansLedger() *Ledger {
	return &Ledger{s: s, name: "plans", shape: ShapeZSet, source: s.PlansDueKey(), prefix: "redial:{callback}",
		procWord: "claimed", payload: s.PlansKey(), msScores: true, requeueInvited: true, recoverNow: true}
}

// EventsKey is the list producers LPUSH events onto.
func (s *Store) EventsKey() string { return "redial:events" }

// PushEvent LPUSHes one event JSON onto the events list.
func (s *Store) PushEvent(ctx context.Context, eventJSON string) error {
	key := s.EventsKey()
	if err := s.rdb.LPush(ctx, key, eventJSON).Err(); err != nil {
		return fmt.Errorf("store: LPUSH %s: %w", key, err)
	}
	return nil
}

// PlanField is the plans hash field of one vmbox: "<account>/<vmbox>".
func PlanField(account, vmbox string) string { return account + "/" + vmbox }

// PlansKey is the hash of plan JSON by plan field.
func (s *Store) PlansKey() string { return "redial:{callback}:plans" }

// PlansDueKey is the ZSET of plans waiting for their next attempt.
func (s *Store) PlansDueKey() string { return "redial:{callback}:due" }

// PlansEndedKey is the capped list of ended plans.
func (s *Store) PlansEndedKey() string { return "redial:{callback}:ended" }

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

// zscoreMillis turns a ZSET score printed by Redis (unix ms) into a time;
// an unreadable score (someone else's write) reads as the zero time.
func zscoreMillis(v string) time.Time {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f || f > 1e15 || f < -1e15 {
		return time.Time{}
	}
	return time.UnixMilli(int64(f))
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

// PlanEndOp ends the plan of field for reason ("answered", "no unread
// messages", "schedule used up", ...) whoever holds it, recording planJSON
// (the plan as the caller last knew it) in the ended list: an answered
// callback must stop the plan even if another node recovered it meanwhile
// (that node's write-back then fails with ErrPlanGone). Carried out, it
// fails with ErrPlanGone when there was no plan.
func (s *Store) PlanEndOp(field, planJSON, reason string) SettleOp {
	plan := json.RawMessage(planJSON)
	if !json.Valid(plan) {
		plan, _ = json.Marshal(planJSON)
	}
	rec, _ := json.Marshal(EndedPlan{Field: field, Plan: plan, Reason: reason,
		At: time.Now().UTC().Format(time.RFC3339), Host: s.cfg.Host}) // valid JSON parts only: cannot fail
	return s.PlansLedger().EndOp(field, s.PlansEndedKey(), string(rec), EndedPlansCap)
}

// EndPlan ends the plan of field for reason (an operator's cancel, or a
// plan that cannot be read), reading its JSON first for the ended list.
// It returns an error wrapping ErrPlanGone when there was no plan.
func (s *Store) EndPlan(ctx context.Context, field, reason string) error {
	js, ok, err := s.Plan(ctx, field)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("store: end plan %q in %s: %w", field, s.PlansKey(), ErrPlanGone)
	}
	return s.Settle(ctx, s.PlanEndOp(field, js, reason))
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

// CallbackConfigField is the system_config field of seed 000's callback
// and cron settings.
const CallbackConfigField = "ananke"

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
