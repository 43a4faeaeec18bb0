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
	envs := make([][]byte, len(payloads))
	for i, p := range payloads {
		envs[i] = notifyEnvelope("cdr", p)
	}
	return s.PushCDREnvelopes(ctx, envs)
}

// cdrEnvelopeStart opens a CDR's envelope on the campaigns list; a '}'
// after the payload closes it.
const cdrEnvelopeStart = `{"type":"cdr","payload":`

// AppendCDREnvelopeStart appends to b the start of a CDR's envelope, as
// PushCDR wraps a payload. Append the payload, then close the envelope
// with AppendCDREnvelopeEnd: a CDR encoded in place costs no copy into its
// envelope (issue 14).
func AppendCDREnvelopeStart(b []byte) []byte { return append(b, cdrEnvelopeStart...) }

// AppendCDREnvelopeEnd closes an envelope opened by AppendCDREnvelopeStart.
func AppendCDREnvelopeEnd(b []byte) []byte { return append(b, '}') }

// CDREnvelopePayload returns the payload inside env, an envelope built
// with AppendCDREnvelopeStart and AppendCDREnvelopeEnd (a part of env, not
// a copy), and false when env is not one.
func CDREnvelopePayload(env []byte) ([]byte, bool) {
	if len(env) < len(cdrEnvelopeStart)+1 || string(env[:len(cdrEnvelopeStart)]) != cdrEnvelopeStart || env[len(env)-1] != '}' {
		return nil, false
	}
	return env[len(cdrEnvelopeStart) : len(env)-1], true
}

// PushCDREnvelopes is PushCDRs for CDRs already in their envelopes (see
// AppendCDREnvelopeStart): the list gets each envelope, the stream the
// payload inside it.
func (s *Store) PushCDREnvelopes(ctx context.Context, envs [][]byte) error {
	if len(envs) == 0 {
		return nil
	}
	list, stream := s.CampaignsListKey(), s.CDRStreamKey()
	vals := make([]any, len(envs))
	for i, env := range envs {
		if _, ok := CDREnvelopePayload(env); !ok {
			return fmt.Errorf("store: push %d cdrs: record %d is not a CDR envelope", len(envs), i)
		}
		vals[i] = env
	}
	// The XADD arguments as go-redis's XAdd writes them, without its
	// argument struct and growing slice per CDR; the shared ones boxed
	// once per batch.
	var streamArg, maxLenArg, fieldArg any = stream, s.cfg.CDRStreamMaxLen, CDRStreamField
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, list, vals...)
		for _, env := range envs {
			payload, _ := CDREnvelopePayload(env)
			if s.cfg.CDRStreamMaxLen > 0 {
				p.Do(ctx, "xadd", streamArg, "maxlen", "~", maxLenArg, "*", fieldArg, payload)
			} else {
				p.Do(ctx, "xadd", streamArg, "*", fieldArg, payload)
			}
		}
		return nil
	})
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("store: push %d cdrs: %s %s: %w", len(envs), c.Name(), c.Args()[1], c.Err())
			}
		}
		return fmt.Errorf("store: push %d cdrs to %s and %s: %w", len(envs), list, stream, err)
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
