package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"redial/internal/cluster"
	"redial/internal/store"
	"redial/internal/testenv"
)

func TestNodesPrintsTheDirectory(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	for _, h := range []string{"edge1", "edge2"} {
		st := store.NewWithClient(r.Client, store.Config{Host: h})
		d, err := cluster.NewDirectory(cluster.DirectoryConfig{Self: cluster.NodeInfo{Host: h,
			SIP: map[string]string{"udp": "10.0.0.1:5060", "tcp": "10.0.0.1:5061"}, HTTP: "10.0.0.1:8088",
			Version: "v9.9.9", Started: time.Now().Add(-90 * time.Minute)}, TTL: time.Second}, cluster.DirectoryDeps{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { d.Run(rctx); close(done) }()
		<-d.Ready()
		cancel()
		<-done
	}
	// edge2 is dead: its heartbeat is gone.
	st := store.NewWithClient(r.Client, store.Config{})
	r.Client.Del(ctx, st.AliveKey("edge2"), st.LegacyAliveKey("edge2"))

	var out bytes.Buffer
	if err := nodesList(ctx, []string{"--redis", r.URL}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, want := range []string{
		`^edge1\s+alive\s+1h30m\s+tcp 10\.0\.0\.1:5061, udp 10\.0\.0\.1:5060\s+10\.0\.0\.1:8088\s+v9\.9\.9$`,
		`^edge2\s+dead since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)\s+1h30m\s+tcp 10\.0\.0\.1:5061, udp 10\.0\.0\.1:5060\s+10\.0\.0\.1:8088\s+v9\.9\.9$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Fatalf("line %q does not match %s\noutput:\n%s", lines[i+1], want, out.String())
		}
	}

	out.Reset()
	if err := nodesList(ctx, []string{"--redis", r.URL, "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Nodes []cluster.NodeState `json:"nodes"`
	}
	if err := json.Unmarshal(out.Bytes(), &body); err != nil || len(body.Nodes) != 2 || body.Nodes[1].DeadSince == nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1500 * time.Millisecond:               "2s",
		90 * time.Minute:                      "1h30m",
		5 * time.Minute:                       "5m",
		49*time.Hour + 10*time.Minute:         "2d1h",
		-time.Second:                          "0s",
		59*time.Second + 400*time.Millisecond: "59s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
