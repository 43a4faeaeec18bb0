package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/notify"
	"redial/internal/testenv"
)

// sippDir is the SIPp scenario folder.
func sippDir(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "sipp")
}

func scenario(t testing.TB, name string) string { return filepath.Join(sippDir(t), name) }

// node is a redial node under test.
type node struct {
	*App
	t      testing.TB
	api    string
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a full node against the given Redis, with SIP and HTTP on
// free loopback ports.
func startNode(t testing.TB, redisURL, host string, opts ...Option) *node {
	t.Helper()
	return startNodeCfg(t, redisURL, host, nil, opts...)
}

// startNodeCfg is startNode with a chance to adjust the configuration.
func startNodeCfg(t testing.TB, redisURL, host string, adjust func(*config.Node), opts ...Option) *node {
	t.Helper()
	cfg := nodeConfig(t, redisURL, host)
	if adjust != nil {
		adjust(cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("REDIAL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return startNodeWith(t, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})), opts...)
}

// nodeConfig is the configuration of a test node: SIP and HTTP on free
// loopback ports.
func nodeConfig(t testing.TB, redisURL, host string) *config.Node {
	t.Helper()
	sipPort := testenv.FreePort(t)
	// Below the kernel's ephemeral range (32768+), where FreePort picks
	// SIPp's ports, so the two never collide.
	rtpBase := 20000 + (sipPort%100)*100
	return &config.Node{Redis: redisURL, Host: host, Domain: "default",
		SIP:         []config.Listener{{Network: "udp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)}, {Network: "tcp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)}},
		SIPPublicIP: "127.0.0.1", RTPMin: rtpBase, RTPMax: rtpBase + 98, HTTP: "127.0.0.1:0", Timezone: time.UTC,
		Data: t.TempDir(), NotifyPrefix: "enigma:notifications", NotifyFormat: "v3", LogLevel: "debug",
		Resync: 30 * time.Second, HeartbeatTTL: 10 * time.Second}
}

// startNodeWith runs a node of cfg that logs to log.
func startNodeWith(t testing.TB, cfg *config.Node, log *slog.Logger, opts ...Option) *node {
	t.Helper()
	log = log.With("node", cfg.Host)
	a, err := New(cfg, log, opts...)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{App: a, t: t, api: "http://" + a.Web.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- a.Run(ctx) }()
	<-a.SIP.Ready()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.t.Errorf("node did not stop within 30s")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// post sends a JSON body and returns status and decoded response.
func (n *node) post(path string, body any) (int, map[string]any) {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	resp, err := http.Post(n.api+path, "application/json", rd)
	if err != nil {
		n.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (n *node) get(path string, v any) int {
	n.t.Helper()
	resp, err := http.Get(n.api + path)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// setLine writes a line definition.
func setLine(t testing.TB, r *testenv.Redis, name, group, uri string, extra string) {
	t.Helper()
	v := fmt.Sprintf(`{"params":{"group":%q,"uri":%q,"enable":true%s},"variables":{"origination_caller_id_number":"15550001111"}}`, group, uri, extra)
	if err := r.Client.HSet(context.Background(), "cti_line@default", name, v).Err(); err != nil {
		t.Fatal(err)
	}
}

func setDialplan(t testing.TB, r *testenv.Redis, key, target string) {
	t.Helper()
	if err := r.Client.HSet(context.Background(), "cti_dialplan@default", key, target).Err(); err != nil {
		t.Fatal(err)
	}
}

type cdrEnvelope struct {
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload"`
}

// cdrsFor waits until want CDRs of callRef are on the campaigns list and
// returns them oldest first.
func cdrsFor(t testing.TB, r *testenv.Redis, callRef string, want int, timeout time.Duration) []notify.CDR {
	t.Helper()
	var out []notify.CDR
	testenv.WaitFor(t, timeout, func() error {
		out = out[:0]
		raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
		if err != nil {
			return err
		}
		for i := len(raw) - 1; i >= 0; i-- {
			var env struct {
				Type    string     `json:"type"`
				Payload notify.CDR `json:"payload"`
			}
			if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
				return fmt.Errorf("CDR %q: %w", raw[i], err)
			}
			if env.Type == "cdr" && env.Payload.CallRef == callRef {
				out = append(out, env.Payload)
			}
		}
		if len(out) != want {
			return fmt.Errorf("%d CDRs for %s, want %d", len(out), callRef, want)
		}
		return nil
	})
	return out
}

func originate(t testing.TB, n *node, body map[string]any) string {
	t.Helper()
	code, out := n.post("/api/v1/calls", body)
	if code != http.StatusAccepted {
		t.Fatalf("originate: %d %v", code, out)
	}
	return out["call_ref"].(string)
}

func waitSipp(t testing.TB, s *testenv.Sipp, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("sipp: %v\n%s", err, s.Output())
	}
}

// readSippMessages returns SIPp's -trace_msg log.
func readSippMessages(t testing.TB, s *testenv.Sipp) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.LogDir(), "*messages.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

func regexpMatch(expr, s string) bool { return regexp.MustCompile(expr).MatchString(s) }
