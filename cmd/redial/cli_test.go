package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"redial/internal/testenv"
)

func TestNumbersPushFormats(t *testing.T) {
	r := testenv.StartRedis(t)
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "n.csv")
	os.WriteFile(csvFile, []byte("number,contact_ref,timezone\n15550000001,c1,Europe/Berlin\n15550000002,,\nbad;number,c3,\n"), 0o644)
	jsonFile := filepath.Join(dir, "n.jsonl")
	os.WriteFile(jsonFile, []byte(`{"params":{"number":["1","2"]},"variables":{"x":"y"}}`+"\n"+`{"params":{}}`+"\n"), 0o644)
	txtFile := filepath.Join(dir, "n.txt")
	os.WriteFile(txtFile, []byte("# comment\n15550000003\n\n15550000004\n"), 0o644)
	ctx := context.Background()
	for _, f := range []string{csvFile, jsonFile, txtFile} {
		if err := numbersPush(ctx, []string{"q", f, "--redis", r.URL}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	got, _ := r.Client.LRange(ctx, "q", 0, -1).Result()
	// LPUSH: the first pushed is at the right end (claimed first).
	want := []string{
		"15550000004", "15550000003",
		`{"params":{"number":["1","2"]},"variables":{"x":"y"}}`,
		"15550000002",
		`{"params":{"contact_ref":"c1","number":"15550000001","timezone":"Europe/Berlin"}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("queue:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTaskSetValidatesAndPublishes(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"params":{"enable":true,"line_group":["g1"],"limit":"ten","number_queue":"q","destination_extension":"1"}}`), 0o644)
	err := taskSet(ctx, []string{"sales", "--file", bad, "--redis", r.URL})
	if err == nil || !strings.Contains(err.Error(), "params.limit") {
		t.Fatalf("bad task: %v", err)
	}
	if n, _ := r.Client.HLen(ctx, "cti_queue_dialer_task@template").Result(); n != 0 {
		t.Fatalf("a rejected task was written")
	}
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"params":{"enable":true,"line_group":["g1"],"limit":5,"number_queue":"q","destination_extension":"1"}}`), 0o644)
	sub := r.Client.Subscribe(ctx, "config@edge1")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := taskSet(ctx, []string{"sales", "--file", good, "--host", "edge1", "--redis", r.URL}); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != `{"type":"config_change","table":"cti_queue_dialer_task","key":"sales"}` {
		t.Fatalf("notice: %v %v", msg, err)
	}
	if v, _ := r.Client.HGet(ctx, "cti_queue_dialer_task@edge1", "sales").Result(); !strings.Contains(v, `"limit":5`) {
		t.Fatalf("stored: %q", v)
	}
}
