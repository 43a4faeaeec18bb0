package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"redial/internal/batch"
)

// Marking a claim (ledger.go): before its INVITE, a claim's copy moves
// from the processing list to the dialing list, so that a crash sends it
// to :interrupted instead of dialing it blindly again. Calls start in
// bursts, so the marks of concurrent calls go to Redis together: one
// script run, one LREM per member and one LPUSH for all of them.

// maxMarkBatch bounds one mark script run (its LPUSH takes the members as
// arguments).
const maxMarkBatch = 200

// KEYS[1] processing LIST, KEYS[2] dialing LIST, KEYS[3] scores HASH,
// KEYS[4] payload HASH (any key of the slot when ARGV[1] is not '1').
// ARGV[1] '1' when members need a payload, ARGV[2] '1' when the ledger
// never writes its scores HASH (LIST sources), ARGV[3..] the members to
// mark (a member may repeat: each occurrence marks one copy).
// Moves one copy of each member from the processing list to the dialing
// list (scanning from the right, where the oldest claims are).
// Returns one status per member: 1 marked; 0 no unmarked copy held
// (recovered by another node: do not dial); -1 the payload is gone (the
// copy was dropped: do not dial).
var markScript = redis.NewScript(`
local out, moved = {}, {}
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('LREM', KEYS[1], -1, m) == 0 then
    out[#out + 1] = 0
  elseif ARGV[1] == '1' and redis.call('HEXISTS', KEYS[4], m) == 0 then
    out[#out + 1] = -1
    if ARGV[2] ~= '1' and not redis.call('LPOS', KEYS[1], m) and not redis.call('LPOS', KEYS[2], m) then
      local kept = false
      for _, x in ipairs(moved) do if x == m then kept = true end end
      if not kept then redis.call('HDEL', KEYS[3], m) end
    end
  else
    moved[#moved + 1] = m
    out[#out + 1] = 1
  end
end
if #moved > 0 then redis.call('LPUSH', KEYS[2], unpack(moved)) end
return out
`)

// Mark records, before the INVITE is sent, that this claim may be dialed:
// after a crash it then goes to :interrupted (or back to the source, as
// the ledger says) instead of being dialed blindly again. Marks of
// concurrent calls on the ledger share one script run. It returns an
// error wrapping ErrClaimGone when the claim is no longer held, or
// ErrPayloadGone when the item's document was removed meanwhile; do not
// dial then. After a transport error the caller cannot know whether the
// mark was made and must treat the claim as marked.
func (l *Ledger) Mark(ctx context.Context, member string) error {
	l.marksOnce.Do(func() {
		l.marks = batch.New(maxMarkBatch, func(ctx context.Context, _ struct{}, members []string) ([]int64, error) {
			return l.markBatch(ctx, members)
		})
	})
	n, err := l.marks.Do(ctx, struct{}{}, member)
	if err != nil || n == 1 {
		return err
	}
	return settleResult(n, "mark claim in "+l.Keys("").Dialing)
}

func (l *Ledger) markBatch(ctx context.Context, members []string) ([]int64, error) {
	k := l.Keys("")
	keys := []string{k.Processing, k.Dialing, k.Scores, k.payloadKey()}
	args := make([]any, 0, 2+len(members))
	args = append(args, flag(k.Payload != ""), flag(l.shape == ShapeList))
	for _, m := range members {
		args = append(args, m)
	}
	res, err := markScript.Run(ctx, l.s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("store: mark %d claims in %s: %w", len(members), k.Dialing, err)
	}
	return res, nil
}

// PlainAck reports whether op only acknowledges a claim of the current
// layout (no destination, payload, force or unqueue): such ops of one
// ledger can be carried out together by SettleAcks.
func (op SettleOp) PlainAck() bool {
	return op.How == "ack" && op.Payload == "" && !op.Force && !op.Unqueue && op.Keys[6] != ""
}

// AckBatchKey names what plain acks must share to go in one SettleAcks:
// the ledger's processing, scores and dialing keys and whether it keeps
// scores.
type AckBatchKey struct {
	Processing, Scores, Dialing string
	NoScores                    bool
}

// AckBatch is the AckBatchKey of a plain ack.
func (op SettleOp) AckBatch() AckBatchKey {
	return AckBatchKey{Processing: op.Keys[0], Scores: op.Keys[2], Dialing: op.Keys[6], NoScores: op.NoScores}
}

// KEYS[1] processing LIST, KEYS[2] scores HASH, KEYS[3] dialing LIST.
// ARGV[1] '1' when the ledger never writes its scores HASH, ARGV[2..] pairs
// of member and '1' when that claim was marked.
// Removes one copy of each member as the settle script does for an 'ack'.
// Returns one status per member: 1 done; 0 not held (nothing changed).
var settleAcksScript = redis.NewScript(takeCopyLua + `
local out = {}
for i = 2, #ARGV, 2 do
  if take(KEYS[1], KEYS[3], KEYS[2], ARGV[i], ARGV[i + 1] == '1', ARGV[1] == '1') then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`)

// SettleAcks carries out plain acks (PlainAck) that share one AckBatch
// key in one script run. It returns one result per op, as Settle would
// have (nil, or an error wrapping ErrClaimGone), or an error for all of
// them when the script could not be run.
func (s *Store) SettleAcks(ctx context.Context, ops []SettleOp) ([]error, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	key := ops[0].AckBatch()
	args := make([]any, 0, 1+2*len(ops))
	args = append(args, flag(key.NoScores))
	for i, op := range ops {
		if !op.PlainAck() || op.AckBatch() != key {
			return nil, fmt.Errorf("store: settle acks in %s: op %d (%s in %s) does not belong to the batch", key.Processing, i, op.How, op.Keys[0])
		}
		args = append(args, op.Member, flag(op.Marked))
	}
	res, err := settleAcksScript.Run(ctx, s.rdb, []string{key.Processing, key.Scores, key.Dialing}, args...).Int64Slice()
	if err == nil && len(res) != len(ops) {
		err = fmt.Errorf("script returned %d results for %d acks", len(res), len(ops))
	}
	if err != nil {
		return nil, fmt.Errorf("store: settle %d acks in %s: %w", len(ops), key.Processing, err)
	}
	out := make([]error, len(ops))
	for i, n := range res {
		out[i] = settleResult(n, "settle claim in "+key.Processing+" (ack)")
	}
	return out, nil
}
