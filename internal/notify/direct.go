package notify

import (
	"context"
	"time"

	"redial/internal/batch"
	"redial/internal/store"
)

// Straight pushes (the spool empty) of concurrent calls share round trips
// and Redis commands: the CDRs of calls ending within a millisecond go in
// one LPUSH and one pipeline, and their claims' acknowledgements in one
// script run per ledger. Order is kept: a call's CDR is published before
// its claim is settled, and records of one batch are pushed in the order
// they came.

// maxDirectBatch bounds one combined push.
const maxDirectBatch = 200

// directLinger is how long a straight push waits for others to share its
// round trip. CDRs and acks are written at the end of a call, where nobody
// waits on them to make progress; at a few thousand calls a second each
// round trip saved is a write and a Redis wake-up (issue 14), and a record
// landing in Redis a millisecond later costs nothing.
const directLinger = time.Millisecond

// directBatches are the Publisher's combiners of straight pushes.
type directBatches struct {
	// cdrs takes CDRs in their envelopes (CDR.encode).
	cdrs *batch.Group[struct{}, []byte, struct{}]
	acks *batch.Group[store.AckBatchKey, store.SettleOp, error]
}

func (p *Publisher) newDirectBatches() directBatches {
	return directBatches{
		cdrs: batch.New(maxDirectBatch, func(ctx context.Context, _ struct{}, envs [][]byte) ([]struct{}, error) {
			ctx, cancel := context.WithTimeout(ctx, p.cfg.PushTimeout)
			defer cancel()
			if err := p.store.PushCDREnvelopes(ctx, envs); err != nil {
				return nil, err
			}
			return make([]struct{}, len(envs)), nil
		}, batch.Linger(directLinger)),
		acks: batch.New(maxDirectBatch, func(ctx context.Context, _ store.AckBatchKey, ops []store.SettleOp) ([]error, error) {
			ctx, cancel := context.WithTimeout(ctx, p.cfg.PushTimeout)
			defer cancel()
			return p.store.SettleAcks(ctx, ops)
		}, batch.Linger(directLinger)),
	}
}

// pushDirect pushes one record that did not go through the spool, bounded
// by PushTimeout. A batched record is bounded by its batch's own timeout
// once the batch runs, and by a deadline on its wait before: a context
// with a timeout of its own would cost every call a timer and a context.
func (p *Publisher) pushDirect(ctx context.Context, kind string, payload, env []byte, op *store.SettleOp) error {
	switch {
	case kind == kindCDR && env != nil:
		_, err := p.direct.cdrs.DoBy(ctx, time.Now().Add(p.cfg.PushTimeout), struct{}{}, env)
		return err
	case op != nil && op.PlainAck():
		res, err := p.direct.acks.DoBy(ctx, time.Now().Add(p.cfg.PushTimeout), op.AckBatch(), *op)
		if err != nil {
			return err
		}
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PushTimeout)
	defer cancel()
	if op != nil {
		return p.store.Settle(ctx, *op)
	}
	return p.push(ctx, kind, payload)
}
