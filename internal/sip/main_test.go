package sip

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/logtext"
	"redial/internal/media"
	"redial/internal/testenv"
)

// librarySink receives what sipgo logs through its package-wide logger.
// It is set once in TestMain, before any sipgo goroutine runs: sipgo reads
// that logger without synchronization.
var librarySink = &logSink{}

func TestMain(m *testing.M) {
	SetLibraryLogger(slog.New(slog.NewTextHandler(librarySink, &slog.HandlerOptions{Level: slog.LevelDebug})), logtext.LimitConfig{})
	os.Exit(m.Run())
}

// logSink keeps every byte logged to it.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// engineOpts adjusts startEngineWith.
type engineOpts struct {
	cfg  Config
	deps Deps
	// log receives the engine's log (Debug and up); nil logs to t.Log at
	// Info.
	log io.Writer
	// tcp adds a TCP listener on the same port.
	tcp bool
}

// startEngineWith runs an engine on a free loopback port until the test
// ends.
func startEngineWith(t testing.TB, o engineOpts) *Engine {
	t.Helper()
	port := testenv.FreePort(t)
	rtpBase := 6000 + (port%100)*20 // this package's range (testenv's package comment)
	pool, err := media.NewPortPool(rtpBase, rtpBase+18)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: parked sockets free their ports.
	t.Cleanup(func() { pool.Close() })
	var h slog.Handler = slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})
	if o.log != nil {
		h = slog.NewTextHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	o.cfg.Listeners = []config.Listener{{Network: "udp", Addr: addr}}
	if o.tcp {
		o.cfg.Listeners = append(o.cfg.Listeners, config.Listener{Network: "tcp", Addr: addr})
	}
	o.cfg.PublicIP = "127.0.0.1"
	o.deps.Logger, o.deps.Ports = slog.New(h), pool
	e, err := New(o.cfg, o.deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("engine did not stop")
		}
	})
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("engine stopped at start: %v", err)
	}
	return e
}
