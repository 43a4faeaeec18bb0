package logtext

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// go-redis's dial-retry storm (the address, port and attempt count in the
// text) collapses to Burst lines; another kind of line still passes, and
// every line is a structured WARN record with a bounded text.
func TestPrintfLoggerCollapsesRetryStorm(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := NewPrintfLogger(slog.New(slog.NewJSONHandler(&buf, nil)), "redis client", LimitConfig{Burst: 2, MaxValue: 100, Now: func() time.Time { return now }})
	for i := 0; i < 1000; i++ {
		p.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: dial tcp 127.0.0.1:%d: connect: connection refused", i%5+1, 40000+i)
	}
	p.Printf(context.Background(), "sentinel: new master=%q addr=%q", "mymaster", "10.0.0.2:6379")
	p.Printf(context.Background(), "%s", strings.Repeat("x", 10000))
	out := buf.String()
	if n := strings.Count(out, "failed to dial"); n != 2 {
		t.Fatalf("%d lines of a 1000-line dial storm, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, `"level":"WARN","msg":"redis client","text":"sentinel: new master=\"mymaster\" addr=\"10.0.0.2:6379\""`) {
		t.Fatalf("another kind of line was held back or badly shaped:\n%s", out)
	}
	if !strings.Contains(out, "(10000 bytes)") || len(out) > 2000 {
		t.Fatalf("a 10000-byte line was not truncated (%d bytes logged)", len(out))
	}
	buf.Reset()
	now = now.Add(5 * time.Minute)
	p.Printf(context.Background(), "redis: connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:1: connect: connection refused")
	if !strings.Contains(buf.String(), `"suppressed":998`) {
		t.Fatalf("the next window does not say how many lines were dropped: %s", buf.String())
	}
}

func TestWithoutDigits(t *testing.T) {
	if got := withoutDigits("conn[123] 10.0.0.1:6379 after 5"); got != "conn[#] #.#.#.#:# after #" {
		t.Fatalf("got %q", got)
	}
}
