package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// A record keeps every field through a save and a read, lives
// CallRecordTTL, and is saved with exactly one Redis command: SET with its
// expiry.
func TestCallRecordRoundTripOneCommand(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	zone := time.FixedZone("X", 3*3600)
	cb := time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC)
	rec := CallRecord{Node: "n1", CampaignRef: "task1", ContactRef: "c-9", Number: "100", Ext: "1001",
		Recording: ":SYN_DOM/recordings/2026/03/04/ref1.wav", NumberQueue: "{q1}:numbers",
		Item: `{"params":{"number":"100","contact_ref":"c-9"}}`, End: time.Date(2026, 3, 4, 8, 6, 7, 123456789, zone),
		Disposition: &CallDisposition{Code: "SALE", Note: "n", CallbackAt: &cb, At: cb.Add(-time.Hour)}}
	before := r.CommandCalls(t)
	if err := s.SaveCallRecord(ctx, "ref1", rec); err != nil {
		t.Fatal(err)
	}
	after := r.CommandCalls(t)
	delete(before, "info")
	delete(after, "info")
	for cmd, n := range after {
		want := before[cmd]
		if cmd == "set" {
			want++
		}
		if n != want {
			t.Errorf("cmdstat_%s: %d calls after the save, want %d (before: %d)", cmd, n, want, before[cmd])
		}
	}
	pttl := r.Client.PTTL(ctx, s.CallRecordKey("ref1")).Val()
	if pttl <= 0 || pttl > CallRecordTTL {
		t.Fatalf("PTTL %v, want within (0, %v]", pttl, CallRecordTTL)
	}
	raw := r.Client.Get(ctx, s.CallRecordKey("ref1")).Val()
	if !strings.Contains(raw, `"end":"2026-03-04T05:06:07.123456789Z"`) {
		t.Fatalf("stored record %s: want end in RFC 3339 nano UTC", raw)
	}
	got, ok, err := s.GetCallRecord(ctx, "ref1")
	if err != nil || !ok {
		t.Fatalf("GetCallRecord: ok %v err %v", ok, err)
	}
	if !got.End.Equal(rec.End) || got.End.Location() != time.UTC {
		t.Fatalf("End = %v, want %v in UTC", got.End, rec.End)
	}
	want := rec
	want.End = got.End
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetCallRecord = %+v\nwant %+v", got, want)
	}
}

// A disposition on a record keeps the record's fields, shows on reads,
// renews the TTL, and survives a later save of the same call (another
// attempt), which still updates the other fields.
func TestCallDispositionOnRecord(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	key := s.CallRecordKey("ref2")
	rec := CallRecord{Node: "n1", CampaignRef: "c", Number: "100", Ext: "1001", End: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	err := s.SetCallDisposition(ctx, "ref2", CallDisposition{Code: "x"})
	if !errors.Is(err, ErrNoCallRecord) || !strings.Contains(err.Error(), "ref2") {
		t.Fatalf("disposition of an unknown call: %v, want ErrNoCallRecord naming ref2", err)
	}
	if err := s.SaveCallRecord(ctx, "ref2", rec); err != nil {
		t.Fatal(err)
	}
	r.Client.PExpire(ctx, key, time.Minute)
	d := CallDisposition{Code: "NOANSWER", Note: "first number", At: time.Date(2026, 3, 4, 5, 7, 0, 0, time.UTC)}
	if err := s.SetCallDisposition(ctx, "ref2", d); err != nil {
		t.Fatal(err)
	}
	if pttl := r.Client.PTTL(ctx, key).Val(); pttl <= CallRecordTTL-time.Minute || pttl > CallRecordTTL {
		t.Fatalf("PTTL after the disposition %v, want about %v", pttl, CallRecordTTL)
	}
	got, ok, err := s.GetCallRecord(ctx, "ref2")
	if err != nil || !ok || got.Disposition == nil || *got.Disposition != d || got.Ext != "1001" || !got.End.Equal(rec.End) {
		t.Fatalf("after the disposition: %+v (disposition %+v), %v, %v", got, got.Disposition, ok, err)
	}

	// The next attempt of the same call saves again.
	rec2 := rec
	rec2.Recording = ":SYN_DOM/recordings/2026/03/04/ref2.wav"
	rec2.End = rec.End.Add(time.Minute)
	if err := s.SaveCallRecord(ctx, "ref2", rec2); err != nil {
		t.Fatal(err)
	}
	got, _, err = s.GetCallRecord(ctx, "ref2")
	if err != nil || got.Recording != rec2.Recording || !got.End.Equal(rec2.End) || got.Disposition == nil || *got.Disposition != d {
		t.Fatalf("after a second save: %+v (disposition %+v), %v", got, got.Disposition, err)
	}
	if pttl := r.Client.PTTL(ctx, key).Val(); pttl <= CallRecordTTL-time.Minute || pttl > CallRecordTTL {
		t.Fatalf("PTTL after the second save %v, want about %v", pttl, CallRecordTTL)
	}
}

// A record that is not JSON is an error naming its key, for reads and
// dispositions alike.
func TestCallRecordMalformed(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	key := s.CallRecordKey("bad")
	r.Client.Set(ctx, key, `{"node":`, time.Hour)
	if _, _, err := s.GetCallRecord(ctx, "bad"); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("GetCallRecord of malformed JSON: %v, want an error naming %s", err, key)
	}
	if err := s.SetCallDisposition(ctx, "bad", CallDisposition{Code: "x"}); err == nil || !strings.Contains(err.Error(), key) ||
		errors.Is(err, ErrNoCallRecord) {
		t.Fatalf("SetCallDisposition on malformed JSON: %v, want an error naming %s", err, key)
	}
	if v := r.Client.Get(ctx, key).Val(); v != `{"node":` {
		t.Fatalf("malformed record changed to %q", v)
	}
}

// Records written as HASHes by earlier versions (they live up to
// CallRecordTTL after an upgrade) can still be read and dispositioned, and
// a save over one keeps its disposition.
func TestCallRecordLegacyHash(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	key := s.CallRecordKey("old")
	end := time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)
	// What the HASH version's SaveCallRecord wrote.
	r.Client.HSet(ctx, key, "node", "n1", "campaign_ref", "task1", "contact_ref", "c-9", "number", "100", "ext", "1001",
		"recording", ":SYN_DOM/recordings/old.wav", "number_queue", "q1", "item", "100", "end", end.Format(time.RFC3339Nano))
	r.Client.Expire(ctx, key, time.Hour)
	want := CallRecord{Node: "n1", CampaignRef: "task1", ContactRef: "c-9", Number: "100", Ext: "1001",
		Recording: ":SYN_DOM/recordings/old.wav", NumberQueue: "q1", Item: "100", End: end}
	got, ok, err := s.GetCallRecord(ctx, "old")
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetCallRecord of a HASH record = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	d := CallDisposition{Code: "SALE", At: end.Add(time.Minute)}
	if err := s.SetCallDisposition(ctx, "old", d); err != nil {
		t.Fatal(err)
	}
	if pttl := r.Client.PTTL(ctx, key).Val(); pttl <= CallRecordTTL-time.Minute || pttl > CallRecordTTL {
		t.Fatalf("PTTL after the disposition %v, want about %v", pttl, CallRecordTTL)
	}
	got, ok, err = s.GetCallRecord(ctx, "old")
	want.Disposition = &d
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("HASH record after a disposition = %+v, %v, %v; want %+v", got, ok, err, want)
	}

	// The call saved again (another attempt) turns it into a STRING with
	// the disposition kept.
	rec2 := want
	rec2.Disposition = nil
	rec2.Recording = ":SYN_DOM/recordings/new.wav"
	if err := s.SaveCallRecord(ctx, "old", rec2); err != nil {
		t.Fatal(err)
	}
	if typ := r.Client.Type(ctx, key).Val(); typ != "string" {
		t.Fatalf("record type after a save: %s", typ)
	}
	got, _, err = s.GetCallRecord(ctx, "old")
	if err != nil || got.Recording != rec2.Recording || got.Disposition == nil || *got.Disposition != d {
		t.Fatalf("after a save over the HASH record: %+v (disposition %+v), %v", got, got.Disposition, err)
	}

	// A HASH record without a node is no record, as before.
	r.Client.HSet(ctx, s.CallRecordKey("partial"), "number", "100")
	if _, ok, err := s.GetCallRecord(ctx, "partial"); ok || err != nil {
		t.Fatalf("HASH without node: ok %v err %v", ok, err)
	}
	if err := s.SetCallDisposition(ctx, "partial", d); !errors.Is(err, ErrNoCallRecord) {
		t.Fatalf("disposition on a HASH without node: %v, want ErrNoCallRecord", err)
	}
}

// A HASH record that a save turns into a STRING between two commands of a
// legacy path sends the caller back to the STRING path instead of failing
// or overwriting it.
func TestCallRecordLegacyPathsSeeString(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Domain: "acme", NotifyPrefix: "n"})
	ctx := context.Background()
	key := s.CallRecordKey("now-string")
	if err := s.SaveCallRecord(ctx, "now-string", CallRecord{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.setLegacyCallDisposition(ctx, key, CallDisposition{Code: "x"}); !errors.Is(err, errCallRecordType) {
		t.Fatalf("legacy disposition script on a STRING: %v, want errCallRecordType", err)
	}
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		return replaceLegacyCallRecordTx(ctx, tx, key, CallRecord{Node: "n2"})
	}, key)
	if !errors.Is(err, errCallRecordType) {
		t.Fatalf("legacy replace on a STRING: %v, want errCallRecordType", err)
	}
	if got, _, err := s.GetCallRecord(ctx, "now-string"); err != nil || got.Node != "n1" || got.Disposition != nil {
		t.Fatalf("record after the legacy paths = %+v, %v; want it untouched", got, err)
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
