package store

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"redial/internal/testenv"
)

// argsHook records the arguments of every command sent in a pipeline.
type argsHook struct {
	mu   sync.Mutex
	cmds []string
}

func (h *argsHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *argsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *argsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		for _, c := range cmds {
			if n := c.Name(); n == "client" || n == "hello" {
				continue // the connection's own set-up
			}
			h.cmds = append(h.cmds, fmt.Sprintf("%q", c.Args()))
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *argsHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.cmds
	h.cmds = nil
	return out
}

// TestPushCDREnvelopesSendsWhatXAddSends holds the envelope path to the
// commands go-redis's LPush and XAdd write for the same CDRs, argument for
// argument, with and without a stream cap, and to the stored values.
func TestPushCDREnvelopesSendsWhatXAddSends(t *testing.T) {
	r := testenv.StartRedis(t)
	hook := &argsHook{}
	r.Client.AddHook(hook)
	ctx := context.Background()
	payloads := [][]byte{[]byte(`{"cdr_id":"a"}`), []byte(`{"cdr_id":"b","x":"<&>"}`)}
	for _, maxLen := range []int64{1000, -1} {
		s := NewWithClient(r.Client, Config{CDRStreamMaxLen: maxLen})
		envs := make([][]byte, len(payloads))
		for i, p := range payloads {
			envs[i] = AppendCDREnvelopeEnd(append(AppendCDREnvelopeStart(nil), p...))
			if got, ok := CDREnvelopePayload(envs[i]); !ok || string(got) != string(p) {
				t.Fatalf("CDREnvelopePayload(%s) = %s, %v", envs[i], got, ok)
			}
		}
		if err := s.PushCDREnvelopes(ctx, envs); err != nil {
			t.Fatal(err)
		}
		got := hook.take()

		// What PushCDRs sent before it wrote XADD itself.
		_, err := r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			vals := make([]any, len(payloads))
			for i, pl := range payloads {
				vals[i] = notifyEnvelope("cdr", pl)
			}
			p.LPush(ctx, s.CampaignsListKey(), vals...)
			for _, pl := range payloads {
				p.XAdd(ctx, &redis.XAddArgs{Stream: s.CDRStreamKey(), MaxLen: s.cfg.CDRStreamMaxLen, Approx: true,
					Values: []any{CDRStreamField, pl}})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := hook.take()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("max len %d: commands\n%v\nwant\n%v", maxLen, got, want)
		}
	}
	xs, err := r.Client.XRange(ctx, "redial:cdr", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 8 || xs[1].Values[CDRStreamField] != string(payloads[1]) {
		t.Errorf("stream entries %+v", xs)
	}
	if _, ok := CDREnvelopePayload([]byte(`{"type":"call","payload":{}}`)); ok {
		t.Error("a call envelope was taken for a CDR envelope")
	}
	s := NewWithClient(r.Client, Config{})
	if err := s.PushCDREnvelopes(ctx, [][]byte{[]byte(`{}`)}); err == nil {
		t.Error("a bare payload was pushed as an envelope")
	}
}
