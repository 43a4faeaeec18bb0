package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// CDRStreamField is the one field of each redial:cdr stream entry; its value
// is the CDR payload JSON (the same object as the list envelope's "payload",
// without the envelope: every stream entry is a CDR).
const CDRStreamField = "cdr"

// notifyEnvelope wraps a payload the way the seeds' notification lists carry
// it: {"type":"<typ>","payload":<payload>}. payload must be valid JSON.
func notifyEnvelope(typ string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(typ)+24)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// PushCDR publishes one CDR: LPUSH {"type":"cdr","payload":<payload>} onto
// CampaignsListKey (integrators BRPOP, so they read the oldest first) and
// XADD <CDRStreamKey> MAXLEN ~ <CDRStreamMaxLen> * cdr <payload>.
//
// The two commands share one pipeline but no MULTI: on a Redis Cluster the
// keys live in different hash slots. If the pipeline fails part-way the
// caller sends both again, so a consumer may see a CDR twice and drops the
// duplicate by its cdr_id.
func (s *Store) PushCDR(ctx context.Context, payload []byte) error {
	return s.PushCDRs(ctx, [][]byte{payload})
}

// PushCDRs publishes several CDRs as PushCDR would one after the other,
// with one LPUSH for all of them (in order: the first is read first) and
// one XADD each, in one pipeline.
func (s *Store) PushCDRs(ctx context.Context, payloads [][]byte) error {
	if len(payloads) == 0 {
		return nil
	}
	list, stream := s.CampaignsListKey(), s.CDRStreamKey()
	envs := make([]any, len(payloads))
	for i, p := range payloads {
		envs[i] = notifyEnvelope("cdr", p)
	}
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, list, envs...)
		for _, payload := range payloads {
			p.XAdd(ctx, &redis.XAddArgs{
				Stream: stream,
				MaxLen: s.cfg.CDRStreamMaxLen,
				Approx: true,
				Values: []any{CDRStreamField, payload},
			})
		}
		return nil
	})
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("store: push %d cdrs: %s %s: %w", len(payloads), c.Name(), c.Args()[1], c.Err())
			}
		}
		return fmt.Errorf("store: push %d cdrs to %s and %s: %w", len(payloads), list, stream, err)
	}
	return nil
}

// PushInbound publishes one inbound-call notification: LPUSH
// {"type":"call","payload":<payload>} onto InboundListKey.
func (s *Store) PushInbound(ctx context.Context, payload []byte) error {
	key := s.InboundListKey()
	if err := s.rdb.LPush(ctx, key, notifyEnvelope("call", payload)).Err(); err != nil {
		return fmt.Errorf("store: LPUSH %s: %w", key, err)
	}
	return nil
}
