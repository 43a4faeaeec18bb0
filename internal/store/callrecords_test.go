package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A call record round-trips, expires within CallRecordTTL, and keeps its
// disposition when the record is written again.
func TestCallRecordAndDisposition(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	end := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rec := CallRecord{Node: "n1", CampaignRef: "task1", ContactRef: "c-9", Number: "100", Ext: "1001",
		Recording: ":SYN_DOM/recordings/2026/03/04/ref1.wav", NumberQueue: "q1", Item: "100", End: end}
	if _, ok, err := s.GetCallRecord(ctx, "ref1"); ok || err != nil {
		t.Fatalf("record before save: ok %v err %v", ok, err)
	}
	if err := s.SetCallDisposition(ctx, "ref1", CallDisposition{Code: "x"}); !errors.Is(err, ErrNoCallRecord) {
		t.Fatalf("disposition of an unknown call: %v, want ErrNoCallRecord", err)
	}
	if err := s.SaveCallRecord(ctx, "ref1", rec); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.GetCallRecord(ctx, "ref1")
	if err != nil || !ok || got.Node != "n1" || got.Recording != rec.Recording || got.Item != "100" || !got.End.Equal(end) || got.Disposition != nil {
		t.Fatalf("GetCallRecord = %+v, %v, %v", got, ok, err)
	}
	ttl := r.Client.TTL(ctx, s.CallRecordKey("ref1")).Val()
	if ttl <= CallRecordTTL-time.Minute || ttl > CallRecordTTL {
		t.Fatalf("TTL %v, want about %v", ttl, CallRecordTTL)
	}
	cb := time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC)
	d := CallDisposition{Code: "SALE", Note: "two boxes", CallbackAt: &cb, At: end.Add(time.Minute)}
	if err := s.SetCallDisposition(ctx, "ref1", d); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCallRecord(ctx, "ref1", rec); err != nil { // a later write keeps it
		t.Fatal(err)
	}
	got, _, err = s.GetCallRecord(ctx, "ref1")
	if err != nil || got.Disposition == nil || got.Disposition.Code != "SALE" || got.Disposition.Note != "two boxes" ||
		!got.Disposition.CallbackAt.Equal(cb) || !got.Disposition.At.Equal(d.At) {
		t.Fatalf("disposition = %+v, %v", got.Disposition, err)
	}
}

// A callback lands in the queue's retry set, due at its time, as the raw
// item behind an id prefix (what PromoteDue strips).
func TestScheduleCallbackAndPushDisposition(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	at := time.UnixMilli(1_900_000_000_123)
	if err := s.ScheduleCallback(ctx, "{q}:numbers", `{"params":{"number":"100"}}`, at); err != nil {
		t.Fatal(err)
	}
	z := r.Client.ZRangeWithScores(ctx, "{q}:numbers:retry", 0, -1).Val()
	if len(z) != 1 || int64(z[0].Score) != at.UnixMilli() {
		t.Fatalf("retry set = %+v", z)
	}
	m := z[0].Member.(string)
	if _, item, ok := strings.Cut(m, "|"); !ok || item != `{"params":{"number":"100"}}` {
		t.Fatalf("retry member %q", m)
	}
	if err := s.PushDisposition(ctx, []byte(`{"call_ref":"r"}`)); err != nil {
		t.Fatal(err)
	}
	if got := r.Client.LPop(ctx, "n:campaigns").Val(); got != `{"type":"disposition","payload":{"call_ref":"r"}}` {
		t.Fatalf("campaigns list head = %s", got)
	}
}
