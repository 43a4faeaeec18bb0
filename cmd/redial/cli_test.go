package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/store"
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

// token create prints the token once and alone on stdout; list shows
// name, capabilities, domain and creation but never the token or its full
// digest; revoke removes it; names are unique.
func TestTokenCreateListRevoke(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	var out, note strings.Builder
	if err := tokenCreate(ctx, []string{"ops", "--capability", "rest, dashboard", "--domain", "acme", "--redis", r.URL}, &out, &note); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	if !strings.HasPrefix(tok, store.TokenPrefix) || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("stdout %q: want the token alone on one line", out.String())
	}
	if !strings.Contains(note.String(), "shown only now") || strings.Contains(note.String(), tok) {
		t.Fatalf("note: %q", note.String())
	}
	digest := store.TokenDigest(tok)
	if v, _ := r.Client.HGet(ctx, "redial:tokens", digest).Result(); !strings.Contains(v, `"name":"ops"`) {
		t.Fatalf("stored: %q", v)
	}
	// Flags first works too; the domain defaults to REDIAL_DOMAIN's default.
	out.Reset()
	if err := tokenCreate(ctx, []string{"--capability", "ivrapi", "--redis", r.URL, "app-2"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	err := tokenCreate(ctx, []string{"ops", "--capability", "rest", "--redis", r.URL}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"ops"`) || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, args := range [][]string{{"x", "--redis", r.URL}, {"x", "--capability", "root", "--redis", r.URL}, {"--capability", "rest"}} {
		if err := tokenCreate(ctx, args, io.Discard, io.Discard); err == nil {
			t.Fatalf("%v: want an error", args)
		}
	}

	var list strings.Builder
	if err := tokenList(ctx, []string{"--redis", r.URL}, &list); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(list.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("list:\n%s", list.String())
	}
	if f := strings.Fields(lines[1]); len(f) != 5 || f[0] != "app-2" || f[1] != "ivrapi" || f[2] != "default" {
		t.Fatalf("line %q", lines[1])
	}
	f := strings.Fields(lines[2])
	if len(f) != 5 || f[0] != "ops" || f[1] != "rest,dashboard" || f[2] != "acme" || !strings.HasPrefix(f[4], digest[:8]) {
		t.Fatalf("line %q", lines[2])
	}
	if _, err := time.Parse(time.RFC3339, f[3]); err != nil {
		t.Fatalf("created %q: %v", f[3], err)
	}
	if strings.Contains(list.String(), tok) || strings.Contains(list.String(), digest) {
		t.Fatalf("list shows a secret:\n%s", list.String())
	}

	var rv strings.Builder
	if err := tokenRevoke(ctx, []string{"ops", "--redis", r.URL}, &rv); err != nil || !strings.Contains(rv.String(), "revoked") {
		t.Fatalf("revoke: %v %q", err, rv.String())
	}
	if r.Client.HExists(ctx, "redial:tokens", digest).Val() {
		t.Fatalf("revoked token still stored")
	}
	if err := tokenRevoke(ctx, []string{"ops", "--redis", r.URL}, io.Discard); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("second revoke: %v", err)
	}
}

// The commands that call a node's API send --token (or REDIAL_TOKEN) as
// a Bearer header, and report a refusal with the node's message.
func TestAPICommandsSendTheToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer rdl_good" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unknown or revoked token"}`))
			return
		}
		switch r.URL.Path {
		case "/api/v1/calls":
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(`{"call_ref":"r1"}`))
		case "/api/v1/tasks":
			w.Write([]byte(`{"tasks":[]}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := originate(ctx, []string{"--api", srv.URL, "--token", "rdl_good", "--number", "1", "--line-group", "g1", "--extension", "8888"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIAL_TOKEN", "rdl_good")
	if err := taskStatus(ctx, []string{"--api", srv.URL}); err != nil {
		t.Fatal(err)
	}
	err := originate(ctx, []string{"--api", srv.URL, "--token", "rdl_bad", "--number", "1", "--line-group", "g1", "--extension", "8888"})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "unknown or revoked token") {
		t.Fatalf("refused originate: %v", err)
	}
	t.Setenv("REDIAL_TOKEN", "")
	if err := taskStatus(ctx, []string{"--api", srv.URL}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("task status without a token: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"POST /api/v1/calls Bearer rdl_good application/json",
		"GET /api/v1/tasks Bearer rdl_good ",
		"POST /api/v1/calls Bearer rdl_bad application/json",
		"GET /api/v1/tasks  ",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
