package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/testenv"
)

func payloads(cs []StreamCDR) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c.Payload)
	}
	return out
}

func TestCDRGroupsEachSeeEveryCDRAndAck(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()

	if err := s.PushCDR(ctx, []byte(`{"cdr_id":"before"}`)); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"ops-a", "ops-b"} {
		if err := s.EnsureCDRGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PushCDR(ctx, []byte(`{"cdr_id":"1"}`)); err != nil {
		t.Fatal(err)
	}
	// A second EnsureCDRGroup keeps the group's position: CDR 1 is still
	// unread for ops-a.
	if err := s.EnsureCDRGroup(ctx, "ops-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.PushCDR(ctx, []byte(`{"cdr_id":"2"}`)); err != nil {
		t.Fatal(err)
	}

	for _, g := range []string{"ops-a", "ops-b"} {
		got, err := s.ReadCDRGroup(ctx, g, "c1", 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(payloads(got)) != `[{"cdr_id":"1"} {"cdr_id":"2"}]` {
			t.Fatalf("group %s read %q, want CDRs 1 and 2 (not the one before the group)", g, payloads(got))
		}
		if time.Since(got[0].Time) > time.Minute || time.Since(got[0].Time) < 0 {
			t.Fatalf("entry time %v is not the time it was added", got[0].Time)
		}
		// Nothing new: the read times out empty.
		more, err := s.ReadCDRGroup(ctx, g, "c1", 10, 50*time.Millisecond)
		if err != nil || len(more) != 0 {
			t.Fatalf("second read = %q, %v; want nothing", payloads(more), err)
		}
		pend, err := s.PendingCDRs(ctx, g, "c1", 10)
		if err != nil || len(pend) != 2 {
			t.Fatalf("pending before ack = %q, %v; want 2", payloads(pend), err)
		}
		if err := s.AckCDR(ctx, g, got[0].ID, got[1].ID); err != nil {
			t.Fatal(err)
		}
		pend, err = s.PendingCDRs(ctx, g, "c1", 10)
		if err != nil || len(pend) != 0 {
			t.Fatalf("pending after ack = %q, %v; want none", payloads(pend), err)
		}
	}
	// The integrators' list still holds every CDR.
	if n := r.Client.LLen(ctx, s.CampaignsListKey()).Val(); n != 3 {
		t.Fatalf("campaigns list length %d, want 3", n)
	}
}

func TestReadCDRGroupWithoutGroupNamesKey(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	_, err := s.ReadCDRGroup(context.Background(), "nope", "c", 1, 10*time.Millisecond)
	if err == nil || !containsAll(err.Error(), "redial:cdr", "nope", "NOGROUP") {
		t.Fatalf("err = %v, want NOGROUP naming the key and group", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestCDRsSinceWindowAndPages(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{})
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-2 * time.Hour).UnixMilli()
	// Two entries outside the window, then 2500 inside it (several pages,
	// many sharing a millisecond so the exclusive page start matters).
	p := r.Client.Pipeline()
	for i := range 2 {
		p.XAdd(ctx, &redis.XAddArgs{Stream: s.CDRStreamKey(), ID: fmt.Sprintf("%d-%d", old, i),
			Values: []any{CDRStreamField, "old"}})
	}
	base := now.Add(-30 * time.Minute).UnixMilli()
	for i := range 2500 {
		p.XAdd(ctx, &redis.XAddArgs{Stream: s.CDRStreamKey(), ID: fmt.Sprintf("%d-%d", base+int64(i/7), i%7),
			Values: []any{CDRStreamField, strconv.Itoa(i)}})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	var got []string
	if err := s.CDRsSince(ctx, now.Add(-time.Hour), func(c StreamCDR) error {
		got = append(got, string(c.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2500 {
		t.Fatalf("got %d entries, want 2500", len(got))
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("entry %d = %q: duplicated, skipped or out of order", i, v)
		}
	}

	all := 0
	if err := s.CDRsSince(ctx, now.Add(-3*time.Hour), func(StreamCDR) error { all++; return nil }); err != nil || all != 2502 {
		t.Fatalf("3h window: %d entries, %v; want 2502", all, err)
	}

	stop := errors.New("stop")
	n := 0
	err := s.CDRsSince(ctx, now.Add(-time.Hour), func(StreamCDR) error {
		n++
		if n == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 1500 {
		t.Fatalf("after fn error: n=%d err=%v, want 1500 and the error", n, err)
	}

	// An empty or missing stream is no error.
	r.Client.Del(ctx, s.CDRStreamKey())
	if err := s.CDRsSince(ctx, now.Add(-time.Hour), func(StreamCDR) error { t.Fatal("entry in empty stream"); return nil }); err != nil {
		t.Fatal(err)
	}
}
