package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"redial/internal/validate"
)

// Queue dialer keys. A number queue is a list named by the task's
// number_queue param, filled by integrators with LPUSH, so its oldest item
// is at the RIGHT end and redial takes from the right. Items are claimed,
// never popped, through the claim ledger (ledger.go) with the queue name as
// its prefix. Every other key of a queue starts with the queue name, so
// all of them share its hash slot when the name carries a Redis Cluster
// hash tag; on Cluster, queue names MUST contain a non-empty {hashtag}
// (e.g. "{sales}:numbers"), see QueueHashTagged.
//
//	<queue>                    LIST  items; LPUSH by integrators, claimed from the right
//	<queue>:processing:<host>  LIST  raw items claimed by <host>, not dialed yet, newest claim at the left
//	<queue>:dialing:<host>     LIST  raw items <host> claimed and marked: their INVITE may have been sent
//	<queue>:invited:<host>     HASH  marks of versions before the dialing list (read by recovery only)
//	<queue>:scores:<host>      HASH  unused by LIST ledgers (the ledger's scripts name it)
//	<queue>:holders            SET   hosts that have (had) a processing list for the queue
//	<queue>:retry              ZSET  delayed items, score = unix ms when due,
//	                                 member = "<id>|<item>" (the id keeps equal items apart)
//	<queue>:interrupted        LIST  ParkedItem JSON of claims whose INVITE may have gone out
//	                                 when their node died (seed name)
//	<queue>:invalid            LIST  ParkedItem JSON of malformed items (seed name)

// QueueLedger is the claim ledger of a number queue. requeueInterrupted is
// the task's redial_interrupted: claims that may have been dialed when
// their node died go back to the queue instead of to :interrupted.
func (s *Store) QueueLedger(queue string, requeueInterrupted bool) *Ledger {
	return &Ledger{s: s, name: "queue " + queue, shape: ShapeList, source: queue, prefix: queue,
		procWord: "processing", retry: queue + ":retry", requeueInvited: requeueInterrupted}
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

// MaxParkedReason bounds the reason stored with a parked item; a longer
// one is cut with its size noted.
const MaxParkedReason = 1024

// parkedJSON is the ParkedItem of raw. The item is stored once, whole: as
// text when it is UTF-8 whose JSON escaping stays within 1.5 times its
// size (plus a little, so short items stay readable whatever they hold),
// else as base64 alone (4/3 of its size). So a 1 MB binary item makes a
// ~1.3 MB entry, not 8 MB.
func parkedJSON(raw, reason, host string, at time.Time) string {
	p := ParkedItem{Reason: validate.Truncate(reason, MaxParkedReason), At: at.UTC().Format(time.RFC3339), Host: host}
	if utf8.ValidString(raw) && jsonStringLen(raw) <= len(raw)*3/2+256 {
		p.Item = raw
	} else {
		p.ItemBase64 = []byte(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // '<' as itself, not \u003c
	_ = enc.Encode(p)        // strings and bytes only: cannot fail
	return strings.TrimSuffix(b.String(), "\n")
}

// jsonStringLen is the length of valid UTF-8 s encoded as a JSON string
// by encoding/json without HTML escaping, quotes included.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			n += 2
		case c < 0x20:
			n += 6 // \u00XX
		case c == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9):
			n += 6 // U+2028, U+2029 as \u2028, \u2029
			i += 2
		default:
			n++
		}
	}
	return n
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
func (s *Store) PromoteDue(ctx context.Context, l *Ledger, max int) (int, time.Time, error) {
	if max < 1 {
		max = 1
	}
	k := l.Keys("")
	if k.Retry == "" {
		return 0, time.Time{}, fmt.Errorf("store: ledger %s has no retry set", l.name)
	}
	res, err := promoteDueScript.Run(ctx, s.rdb, []string{k.Retry, k.Source}, max).Int64Slice()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: promote due items from %s to %s: %w", k.Retry, k.Source, err)
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

// QueueStats describes one number queue for `redial numbers stats`.
type QueueStats struct {
	Queue int64
	// Processing is how many claims each holder has: its processing and
	// dialing lists together.
	Processing map[string]int64
	Retry      int64
	// NextRetry is the earliest due time in the retry set (zero if empty).
	NextRetry            time.Time
	Interrupted, Invalid int64
}

// QueueStats reads the lengths of every list of queue: one pipeline, plus
// one for the holders' processing lists.
func (s *Store) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	l := s.QueueLedger(queue, false)
	k := l.Keys("")
	var st QueueStats
	pipe := s.rdb.Pipeline()
	holders := pipe.SMembers(ctx, k.Holders)
	qlen := pipe.LLen(ctx, k.Source)
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
	lens := make([]*redis.IntCmd, 2*len(hs))
	for i, h := range hs {
		hk := l.Keys(h)
		lens[2*i] = pipe.LLen(ctx, hk.Processing)
		lens[2*i+1] = pipe.LLen(ctx, hk.Dialing)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return st, fmt.Errorf("store: stats of queue %s: processing lists: %w", queue, err)
	}
	for i, h := range hs {
		st.Processing[h] = lens[2*i].Val() + lens[2*i+1].Val()
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
	return s.TasksOf(ctx, s.cfg.Host)
}

// TasksOf reads the template hash and onHost's hash in one pipeline; with
// onHost "" the host map is empty.
func (s *Store) TasksOf(ctx context.Context, onHost string) (template, host map[string]string, err error) {
	if onHost == "" {
		t, err := s.rdb.HGetAll(ctx, s.TaskTemplateKey()).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("store: HGETALL %s: %w", s.TaskTemplateKey(), err)
		}
		return t, map[string]string{}, nil
	}
	tk, hk := s.TaskTemplateKey(), s.TaskHostKey(onHost)
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
