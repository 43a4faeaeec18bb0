package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Finishing a claim of the ledger (ledger.go): every way a claim ends is a
// SettleOp, plain data carried out by one script, so that the notify spool
// can keep it behind the CDR it follows while Redis is away.

// SettleOp finishes one claim. It is plain data, so the notify spool can
// keep it, in order, with the CDR it follows while Redis is away, and
// carry it out when Redis is back: a claim must be as durable as its CDR.
// Build it with the Ledger's *Op methods; run it with Store.Settle.
type SettleOp struct {
	// Ledger names the ledger, for logs.
	Ledger string `json:"ledger"`
	// Keys: processing, invited (the HASH of marks of earlier versions),
	// scores, destination, payload, source, dialing. Ops spooled by a
	// version before the dialing list have six keys and are carried out
	// the way that version did.
	Keys   [7]string `json:"keys"`
	Member string    `json:"member"`
	// How is ack, lpush, rpush or zadd (onto the destination).
	How   string `json:"how"`
	Value string `json:"value,omitempty"`
	Score string `json:"score,omitempty"`
	// Payload is "", "require", "set" or "del".
	Payload      string `json:"payload,omitempty"`
	PayloadValue string `json:"payload_value,omitempty"`
	// Cap trims a destination list to this many entries (0: no cap).
	Cap int `json:"cap,omitempty"`
	// Force acts even when the claim is not held (ending a plan that
	// another node holds).
	Force bool `json:"force,omitempty"`
	// Unqueue removes the member from the source as well.
	Unqueue bool `json:"unqueue,omitempty"`
	// NoScores says the ledger never writes its scores HASH (LIST
	// sources), so settling need not clean it. Ops spooled before the
	// field existed read false and clean it, which is always correct.
	NoScores bool `json:"no_scores,omitempty"`
	// Marked says the claim was marked (Ledger.Mark): its copy is looked
	// for in the dialing list first, else in the processing list first.
	Marked bool `json:"marked,omitempty"`
}

// AfterMark returns op for a claim that was marked: what ends a claim
// after its call was placed.
func (op SettleOp) AfterMark() SettleOp {
	op.Marked = true
	return op
}

// settleOpFields is SettleOp without its JSON methods.
type settleOpFields SettleOp

// settleOpJSON is SettleOp's JSON form. encoding/json replaces bytes that
// are not UTF-8 with U+FFFD, and a queue item may hold any bytes; such
// strings travel in Raw instead (base64), by JSON field name ("keys.<i>"
// for Keys), with "" in their own field.
type settleOpJSON struct {
	settleOpFields
	Raw map[string][]byte `json:"raw,omitempty"`
}

func (w *settleOpJSON) strings() map[string]*string {
	m := map[string]*string{"ledger": &w.Ledger, "member": &w.Member, "how": &w.How, "value": &w.Value,
		"score": &w.Score, "payload": &w.Payload, "payload_value": &w.PayloadValue}
	for i := range w.Keys {
		m["keys."+strconv.Itoa(i)] = &w.Keys[i]
	}
	return m
}

// MarshalJSON encodes op so that UnmarshalJSON restores it byte for byte.
func (op SettleOp) MarshalJSON() ([]byte, error) {
	w := settleOpJSON{settleOpFields: settleOpFields(op)}
	for name, p := range w.strings() {
		if !utf8.ValidString(*p) {
			if w.Raw == nil {
				w.Raw = map[string][]byte{}
			}
			w.Raw[name], *p = []byte(*p), ""
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (op *SettleOp) UnmarshalJSON(b []byte) error {
	var w settleOpJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	fields := w.strings()
	for name, v := range w.Raw {
		p, ok := fields[name]
		if !ok {
			return fmt.Errorf("store: settle op: unknown raw field %q", name)
		}
		*p = string(v)
	}
	*op = SettleOp(w.settleOpFields)
	return nil
}

// takeCopyLua removes one copy of a claimed member m: from the dialing
// list first when the claim was marked, else from the processing list
// first, then from the other one; it forgets m's score (ZSET ledgers,
// noscores false) once neither list holds a copy. It returns whether a
// copy was removed (the claim was held).
const takeCopyLua = `
local function take(proc, dialing, scores, m, marked, noscores)
  local first, second = proc, dialing
  if marked then first, second = dialing, proc end
  local held = redis.call('LREM', first, -1, m) == 1 or redis.call('LREM', second, -1, m) == 1
  if held and not noscores and not redis.call('LPOS', proc, m) and not redis.call('LPOS', dialing, m) then
    redis.call('HDEL', scores, m)
  end
  return held
end
`

// settleTailLua is the part of a settle after the claim's copy is gone:
// the source, the payload and the destination. It returns the script's
// result.
const settleTailLua = `
local function finish(src, payload, dest)
  if ARGV[9] == '1' then redis.call('ZREM', src, ARGV[1]) end
  local p = ARGV[5]
  if p == 'require' or p == 'set' then
    if redis.call('HEXISTS', payload, ARGV[1]) == 0 then return -1 end
    if p == 'set' then redis.call('HSET', payload, ARGV[1], ARGV[6]) end
  elseif p == 'del' then
    if redis.call('HDEL', payload, ARGV[1]) == 0 then return -1 end
  end
  local how = ARGV[2]
  if how == 'lpush' or how == 'rpush' then
    redis.call(string.upper(how), dest, ARGV[3])
    local cap = tonumber(ARGV[7])
    if cap > 0 then redis.call('LTRIM', dest, 0, cap - 1) end
  elseif how == 'zadd' then
    redis.call('ZADD', dest, ARGV[4], ARGV[3])
  end
  return 1
end
`

// KEYS[1] processing LIST, KEYS[2] invited HASH of earlier versions
// (untouched), KEYS[3] scores HASH, KEYS[4] destination (LIST or ZSET; any
// key of the slot for 'ack'), KEYS[5] payload HASH (any key of the slot
// when ARGV[5] is empty), KEYS[6] source, KEYS[7] dialing LIST.
// ARGV[1] member, ARGV[2] how: 'ack' | 'lpush' | 'rpush' | 'zadd', ARGV[3]
// value to push (or ZADD member), ARGV[4] ZADD score, ARGV[5] payload: empty
// | 'require' | 'set' | 'del', ARGV[6] payload value for 'set', ARGV[7]
// destination list cap (0: none), ARGV[8] '1' to act although the claim is
// not held, ARGV[9] '1' to ZREM the member from the source too, ARGV[10]
// '1' when the ledger never writes its scores HASH, ARGV[11] '1' when the
// claim was marked.
// Removes one copy of the claim (from the dialing list first when marked,
// else from the processing list first; then from the other one), then
// pushes the value or adds the member to the destination and updates the
// payload.
// Returns 1 when done; 0 when the claim was not held (nothing changed);
// -1 when the payload is gone (the claim is dropped, nothing else written).
var settleScript = redis.NewScript(takeCopyLua + settleTailLua + `
local held = take(KEYS[1], KEYS[7], KEYS[3], ARGV[1], ARGV[11] == '1', ARGV[10] == '1')
if not held and ARGV[8] ~= '1' then return 0 end
return finish(KEYS[6], KEYS[5], KEYS[4])
`)

// legacyTrimLua restores, for the marks of versions before the dialing
// list, the invariant invited[m] <= copies of m in processing after a
// copy left the list, and forgets m's score once no copy is left.
const legacyTrimLua = `
local function trim(proc, inv, scores, m, noscores)
  if not redis.call('LPOS', proc, m) then
    redis.call('HDEL', inv, m)
    if not noscores then redis.call('HDEL', scores, m) end
    return
  end
  local c = tonumber(redis.call('HGET', inv, m) or '0')
  if c > 1 then
    local n = #redis.call('LPOS', proc, m, 'COUNT', c)
    if n < c then redis.call('HSET', inv, m, n) end
  end
end
`

// legacySettleScript carries out an op spooled by a version before the
// dialing list, whose marks are counts in the invited HASH.
// KEYS[1..6] and ARGV[1..10] as for settleScript. Returns as settleScript.
var legacySettleScript = redis.NewScript(legacyTrimLua + settleTailLua + `
local held = redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1
if held then trim(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[10] == '1') end
if not held and ARGV[8] ~= '1' then return 0 end
return finish(KEYS[6], KEYS[5], KEYS[4])
`)

// Settle carries out op. It returns an error wrapping ErrClaimGone when
// the claim was not held (nothing changed) or ErrPayloadGone when the
// payload the op needed is gone.
func (s *Store) Settle(ctx context.Context, op SettleOp) error {
	switch op.How {
	case "ack", "lpush", "rpush", "zadd":
	default:
		return fmt.Errorf("store: settle claim in %s: unknown step %q", op.Keys[0], op.How)
	}
	script, keys := settleScript, op.Keys[:]
	if op.Keys[6] == "" {
		script, keys = legacySettleScript, op.Keys[:6]
	}
	n, err := script.Run(ctx, s.rdb, keys, op.Member, op.How, op.Value, op.Score,
		op.Payload, op.PayloadValue, op.Cap, flag(op.Force), flag(op.Unqueue), flag(op.NoScores), flag(op.Marked)).Int64()
	if err != nil {
		return fmt.Errorf("store: settle claim in %s (%s): %w", op.Keys[0], op.How, err)
	}
	return settleResult(n, "settle claim in "+op.Keys[0]+" ("+op.How+")")
}

func (l *Ledger) op(member, how, dest string) SettleOp {
	k := l.Keys("")
	if dest == "" {
		dest = k.Scores
	}
	op := SettleOp{Ledger: l.name, Keys: [7]string{k.Processing, k.Invited, k.Scores, dest, k.payloadKey(), k.Source, k.Dialing},
		Member: member, How: how, NoScores: l.shape == ShapeList}
	if k.Payload != "" {
		op.Payload = "require"
	}
	return op
}

// AckOp finishes a claim whose work is done (its CDRs are written). The
// claim is taken as marked: work that leaves CDRs placed a call.
func (l *Ledger) AckOp(member string) SettleOp { return l.op(member, "ack", "").AfterMark() }

// Ack carries out AckOp.
func (l *Ledger) Ack(ctx context.Context, member string) error {
	return l.s.Settle(ctx, l.AckOp(member))
}

// ReturnOp puts a claim that was never dialed back: at the consumer end of
// a LIST source (it is claimed next), or into a ZSET source at its
// original score... which the caller passes as at (zero: due now).
func (l *Ledger) ReturnOp(member string, at time.Time) SettleOp {
	k := l.Keys("")
	if l.shape == ShapeList {
		op := l.op(member, "rpush", k.Source)
		op.Value = member
		return op
	}
	return l.WriteBackOp(member, "", at)
}

// Return carries out ReturnOp.
func (l *Ledger) Return(ctx context.Context, member string, at time.Time) error {
	return l.s.Settle(ctx, l.ReturnOp(member, at))
}

// WriteBackOp finishes a claim of a ZSET ledger by adding it back to the
// source, due at at (zero: now); with payload set, the member's document
// is replaced by it (a callback plan with its attempt counter advanced).
func (l *Ledger) WriteBackOp(member, payload string, at time.Time) SettleOp {
	k := l.Keys("")
	op := l.op(member, "zadd", k.Source)
	op.Value = member
	if at.IsZero() {
		at = time.Now()
	}
	if l.msScores {
		op.Score = strconv.FormatInt(at.UnixMilli(), 10)
	} else {
		// Whole seconds plus the fraction, not ms / 1000: a score read with
		// Claim.Due goes back exactly as it was (sub-ms digits included).
		op.Score = formatZScore(float64(at.Unix()) + float64(at.Nanosecond())/1e9)
	}
	if payload != "" {
		op.Payload, op.PayloadValue = "set", payload
	}
	return op
}

// WriteBack carries out WriteBackOp.
func (l *Ledger) WriteBack(ctx context.Context, member, payload string, at time.Time) error {
	return l.s.Settle(ctx, l.WriteBackOp(member, payload, at))
}

// DelayOp moves a claim of a LIST ledger to its retry ZSET, due at at,
// carrying newItem (the item with updated attempt counters, or the same
// item when the callee's window is closed); PromoteDue puts it back in the
// source when due.
func (l *Ledger) DelayOp(member, newItem string, at time.Time) SettleOp {
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand, Go >= 1.24)
	op := l.op(member, "zadd", l.retry)
	op.Value = hex.EncodeToString(id[:]) + "|" + newItem
	op.Score = strconv.FormatInt(at.UnixMilli(), 10)
	return op
}

// Delay carries out DelayOp.
func (l *Ledger) Delay(ctx context.Context, member, newItem string, at time.Time) error {
	if l.retry == "" {
		return fmt.Errorf("store: ledger %s has no retry set", l.name)
	}
	return l.s.Settle(ctx, l.DelayOp(member, newItem, at))
}

// InvalidOp moves a malformed claim to :invalid as a ParkedItem with
// reason.
func (l *Ledger) InvalidOp(member, reason string) SettleOp {
	op := l.op(member, "lpush", l.Keys("").Invalid)
	op.Value = parkedJSON(member, reason, l.s.cfg.Host, time.Now())
	op.Payload = ""
	return op
}

// Invalid carries out InvalidOp.
func (l *Ledger) Invalid(ctx context.Context, member, reason string) error {
	return l.s.Settle(ctx, l.InvalidOp(member, reason))
}

// InterruptOp finishes a claim whose INVITE may have gone out but whose
// call is gone without a result: to :interrupted as a ParkedItem, or back
// to the source when the ledger requeues such claims.
func (l *Ledger) InterruptOp(member, reason string) SettleOp {
	if l.requeueInvited {
		return l.ReturnOp(member, time.Time{})
	}
	op := l.op(member, "lpush", l.Keys("").Interrupted)
	op.Value = parkedJSON(member, reason, l.s.cfg.Host, time.Now())
	op.Payload = ""
	return op
}

// Interrupt carries out InterruptOp.
func (l *Ledger) Interrupt(ctx context.Context, member, reason string) error {
	return l.s.Settle(ctx, l.InterruptOp(member, reason))
}

// EndOp removes member and its payload document for good, whoever holds
// its claim, and LPUSHes record onto list (capped at cap): a callback
// plan that was answered must stop even if another node recovered it
// meanwhile. Carried out, it fails with ErrPayloadGone when there was no
// document.
func (l *Ledger) EndOp(member, list, record string, cap int) SettleOp {
	op := l.op(member, "lpush", list)
	op.Value, op.Cap, op.Force, op.Unqueue, op.Payload = record, cap, true, true, "del"
	return op
}
