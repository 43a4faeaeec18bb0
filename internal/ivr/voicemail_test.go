package ivr

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

func TestVoicemailRecordSavesMessageAndPushesEvent(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ctx := context.Background()
	v.redis.Client.HSet(ctx, "vmbox@acc1", "box1", `{"owner_id":"u1","notify_emails":[],"messages":[]}`)
	v.setScript("vm", `{"start":1,"components":[
		{"oId":1,"oType":306,"account_id":"${account}","vmbox_id":"box1","maxSec":"1","beep":0,"abortOnSilence":0,"transfer":2},
		{"oId":2,"oType":201}]}`)
	ch, c := v.newCall(t, map[string]string{"account": "acc1"})
	c.stream(media.NewTone(1000, 16000, 0))
	before := time.Now().Unix()
	res := v.run(t, ch, "vm", 10*time.Second)
	if res.Ended != EndedHangup {
		t.Fatalf("Ended %q, vars %v", res.Ended, res.Variables)
	}
	id := res.Variables["vmMediaId"]
	file := ":SYNC_DOMAIN_DATA/voicemail/acc1/box1/" + id + ".wav"
	if id == "" || res.Variables["recordFile"] != file {
		t.Fatalf("vars %v", res.Variables)
	}

	var doc struct {
		Owner  string            `json:"owner_id"`
		Emails []string          `json:"notify_emails"`
		Msgs   []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal([]byte(v.redis.Client.HGet(ctx, "vmbox@acc1", "box1").Val()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Owner != "u1" || doc.Emails == nil || len(doc.Msgs) != 1 {
		t.Fatalf("vmbox after the message: %+v", doc)
	}
	var msg map[string]any
	json.Unmarshal(doc.Msgs[0], &msg)
	length, _ := msg["length"].(float64)
	ts, _ := msg["timestamp"].(float64)
	if len(msg) != 5 || msg["media_id"] != id || msg["folder"] != "new" || msg["file"] != file ||
		int64(ts) < before || length < 900 || length > 1100 {
		t.Fatalf("message %v", msg)
	}

	pcm := readWAV(t, v.storeFile(file))
	if got := time.Duration(len(pcm)) * time.Second / media.SampleRate; !near(got, time.Second, 100*time.Millisecond) {
		t.Fatalf("message holds %v, want 1 s", got)
	}
	if share := toneShare(pcm, 1000); share < 0.8 {
		t.Fatalf("1 kHz holds %.2f of the message's power", share)
	}

	raw := v.redis.Client.LRange(ctx, "redial:events", 0, -1).Val()
	if len(raw) != 1 {
		t.Fatalf("redial:events holds %q", raw)
	}
	var ev map[string]any
	json.Unmarshal([]byte(raw[0]), &ev)
	want := map[string]any{"event_name": "voicemail_saved", "account_id": "acc1", "vmbox_id": "box1", "media_id": id}
	if fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Fatalf("event %s, want %v", raw[0], want)
	}
}

func TestVoicemailRecordWithoutVMBoxExitsError(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.setScript("vm", `{"start":1,"components":[
		{"oId":1,"oType":306,"account_id":"acc1","vmbox_id":"${box}","transfers":{"error":2}},
		{"oId":2,"oType":304,"variables":{"failed":"yes"}}]}`)
	for _, box := range []string{"missing", "../../etc"} {
		ch, _ := v.newCall(t, map[string]string{"box": box})
		if res := v.run(t, ch, "vm", 5*time.Second); res.Variables["failed"] != "yes" {
			t.Errorf("vmbox %q: vars %v", box, res.Variables)
		}
	}
	if n := v.redis.Client.LLen(context.Background(), "redial:events").Val(); n != 0 {
		t.Fatalf("%d events pushed", n)
	}
}

func TestVoicemailCheckPlaysNewMessagesOldestFirstAndMarksThemSaved(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ctx := context.Background()
	dir := ":SYNC_DOMAIN_DATA/voicemail/acc1/box1/"
	writeWAV(t, v.storeFile(dir+"old.wav"), 8000, tone(500, 8000, 500*time.Millisecond))
	writeWAV(t, v.storeFile(dir+"newer.wav"), 8000, tone(1500, 8000, 500*time.Millisecond))
	writeWAV(t, v.storeFile(dir+"heard.wav"), 8000, tone(3000, 8000, 500*time.Millisecond))
	v.redis.Client.HSet(ctx, "vmbox@acc1", "box1", `{"name":"b","messages":[
		{"media_id":"newer","folder":"new","timestamp":200,"length":500,"file":"`+dir+`newer.wav"},
		{"media_id":"heard","folder":"saved","timestamp":50,"length":500,"file":"`+dir+`heard.wav"},
		{"media_id":"old","folder":"new","timestamp":100,"length":500,"file":"`+dir+`old.wav","caller_id_number":"100"}]}`)
	v.setScript("check", `{"start":1,"components":[{"oId":1,"oType":307,"account_id":"acc1","vmbox_id":"box1"}]}`)
	ch, c := v.newCall(t, nil)
	res := v.run(t, ch, "check", 10*time.Second)
	if res.Variables["messagesPlayed"] != "2" || res.Variables["messagesNew"] != "2" {
		t.Fatalf("vars %v", res.Variables)
	}
	testenv.WaitFor(t, 2*time.Second, func() error {
		if n := c.received(); abs(n-8000) > 800 {
			return fmt.Errorf("caller heard %d samples, want 8000", n)
		}
		return nil
	})
	pcm := c.samples()
	first, second := pcm[:3600], pcm[len(pcm)-3600:]
	if toneShare(first, 500) < 0.8 || toneShare(second, 1500) < 0.8 {
		t.Fatalf("order: first half at 500 Hz %.2f, second half at 1500 Hz %.2f", toneShare(first, 500), toneShare(second, 1500))
	}
	if toneShare(pcm, 3000) > 0.01 {
		t.Fatal("the saved message was played")
	}
	list, _, err := v.store.VoicemailMessages(ctx, "acc1", "box1")
	if err != nil || len(list) != 3 {
		t.Fatalf("messages %v %v", list, err)
	}
	for _, m := range list {
		if m.Folder != "saved" {
			t.Errorf("message %s in folder %q", m.MediaID, m.Folder)
		}
	}
	var old map[string]any
	json.Unmarshal(list[2].Raw, &old)
	if old["caller_id_number"] != "100" {
		t.Fatalf("marking saved lost a field: %s", list[2].Raw)
	}
}

func TestVoicemailCheckLeavesUnheardMessageNew(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ctx := context.Background()
	dir := ":SYNC_DOMAIN_DATA/voicemail/acc1/box1/"
	writeWAV(t, v.storeFile(dir+"long.wav"), 8000, tone(500, 8000, 20*time.Second))
	v.redis.Client.HSet(ctx, "vmbox@acc1", "box1", `{"messages":[{"media_id":"long","folder":"new","timestamp":1,"file":"`+dir+`long.wav"}]}`)
	v.setScript("check", `{"start":1,"components":[{"oId":1,"oType":307,"account_id":"acc1","vmbox_id":"box1"}]}`)
	ch, c := v.newCall(t, nil)
	go func() {
		c.waitAudio(1600)
		ch.callerHangup()
	}()
	res := v.run(t, ch, "check", 10*time.Second)
	if res.Ended != EndedCallerHangup || res.Variables["messagesPlayed"] != "0" {
		t.Fatalf("Ended %q vars %v", res.Ended, res.Variables)
	}
	list, _, _ := v.store.VoicemailMessages(ctx, "acc1", "box1")
	if len(list) != 1 || list[0].Folder != "new" {
		t.Fatalf("a message cut short was marked: %+v", list)
	}
}
