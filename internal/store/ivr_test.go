package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"redial/internal/testenv"
)

func newIVRStore(t *testing.T) (*Store, *testenv.Redis) {
	t.Helper()
	r := testenv.StartRedis(t)
	s, err := New(Config{URL: r.URL, Domain: "d1", Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, r
}

func TestIVRScriptsKeyAndRoundTrip(t *testing.T) {
	s, r := newIVRStore(t)
	ctx := context.Background()
	if s.IVRScriptsKey() != "ivr_script@d1" {
		t.Fatalf("key %q", s.IVRScriptsKey())
	}
	if err := s.SetIVRScript(ctx, "main", `{"start":1}`); err != nil {
		t.Fatal(err)
	}
	if v := r.Client.HGet(ctx, "ivr_script@d1", "main").Val(); v != `{"start":1}` {
		t.Fatalf("HGET = %q", v)
	}
	raw, found, err := s.IVRScript(ctx, "main")
	if err != nil || !found || raw != `{"start":1}` {
		t.Fatalf("IVRScript = %q %v %v", raw, found, err)
	}
	if _, found, err := s.IVRScript(ctx, "nope"); found || err != nil {
		t.Fatalf("missing script: found %v err %v", found, err)
	}
}

// The vmbox edit must keep fields redial does not own exactly as they were,
// including what a cjson round trip would break: empty arrays and long
// numbers.
func TestAppendVoicemailMessageKeepsOtherFields(t *testing.T) {
	s, r := newIVRStore(t)
	ctx := context.Background()
	doc := `{"owner_id":"u1","notify_emails":[],"media":{},"pin_ts":12345678901234567,"notify":{"callback":{"number":"100"}}}`
	r.Client.HSet(ctx, "vmbox@acc", "box", doc)

	for i, id := range []string{"m1", "m2"} {
		msg := VoicemailMessage{MediaID: id, Folder: "new", Timestamp: int64(1000 + i), Length: 2500, File: ":SYNC_DOMAIN_DATA/voicemail/acc/box/" + id + ".wav"}
		if err := s.AppendVoicemailMessage(ctx, "acc", "box", msg); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Client.HGet(ctx, "vmbox@acc", "box").Val()), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"owner_id": `"u1"`, "notify_emails": `[]`, "media": `{}`,
		"pin_ts": `12345678901234567`, "notify": `{"callback":{"number":"100"}}`} {
		if string(got[k]) != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	var msgs []map[string]any
	if err := json.Unmarshal(got["messages"], &msgs); err != nil || len(msgs) != 2 {
		t.Fatalf("messages = %s (%v)", got["messages"], err)
	}
	if msgs[1]["media_id"] != "m2" || msgs[1]["folder"] != "new" || msgs[1]["length"] != 2500.0 ||
		msgs[1]["timestamp"] != 1001.0 || msgs[1]["file"] != ":SYNC_DOMAIN_DATA/voicemail/acc/box/m2.wav" {
		t.Fatalf("second message = %v", msgs[1])
	}

	list, found, err := s.VoicemailMessages(ctx, "acc", "box")
	if err != nil || !found || len(list) != 2 || list[0].MediaID != "m1" || list[0].Timestamp != 1000 {
		t.Fatalf("VoicemailMessages = %+v %v %v", list, found, err)
	}
}

func TestVoicemailMissingBoxAndBadDocument(t *testing.T) {
	s, r := newIVRStore(t)
	ctx := context.Background()
	err := s.AppendVoicemailMessage(ctx, "acc", "none", VoicemailMessage{MediaID: "m"})
	if !errors.Is(err, ErrDocNotFound) {
		t.Fatalf("missing vmbox: %v, want ErrDocNotFound", err)
	}
	r.Client.HSet(ctx, "vmbox@acc", "bad", `{"messages":{"a":1}}`)
	before := r.Client.HGet(ctx, "vmbox@acc", "bad").Val()
	if err := s.AppendVoicemailMessage(ctx, "acc", "bad", VoicemailMessage{MediaID: "m"}); err == nil {
		t.Fatal("messages that is not an array accepted")
	}
	if after := r.Client.HGet(ctx, "vmbox@acc", "bad").Val(); after != before {
		t.Fatalf("bad document rewritten: %s", after)
	}
}

func TestSetVoicemailFolder(t *testing.T) {
	s, r := newIVRStore(t)
	ctx := context.Background()
	r.Client.HSet(ctx, "vmbox@acc", "box", `{"messages":[{"media_id":"a","folder":"new","x":[]},{"media_id":"b","folder":"new"}]}`)
	if err := s.SetVoicemailFolder(ctx, "acc", "box", "b", "saved"); err != nil {
		t.Fatal(err)
	}
	list, _, err := s.VoicemailMessages(ctx, "acc", "box")
	if err != nil || len(list) != 2 || list[0].Folder != "new" || list[1].Folder != "saved" {
		t.Fatalf("after marking b: %+v %v", list, err)
	}
	if string(list[0].Raw) != `{"media_id":"a","folder":"new","x":[]}` {
		t.Fatalf("untouched message rewritten: %s", list[0].Raw)
	}
	if err := s.SetVoicemailFolder(ctx, "acc", "box", "zz", "saved"); !errors.Is(err, ErrMessageNotFound) {
		t.Fatalf("unknown media_id: %v", err)
	}
}

// Concurrent appends must all land: the compare-and-set retries when
// another writer got in between.
func TestAppendVoicemailMessageConcurrent(t *testing.T) {
	s, r := newIVRStore(t)
	ctx := context.Background()
	r.Client.HSet(ctx, "vmbox@acc", "box", `{"name":"box"}`)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.AppendVoicemailMessage(ctx, "acc", "box", VoicemailMessage{MediaID: fmt.Sprint("m", i), Folder: "new"})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, _, err := s.VoicemailMessages(ctx, "acc", "box")
	if err != nil || len(list) != 8 {
		t.Fatalf("%d messages after 8 concurrent appends (%v)", len(list), err)
	}
}
