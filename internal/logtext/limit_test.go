package logtext

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitHandlerBurstWindowAndSuppressedCount(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := Limit(slog.New(slog.NewTextHandler(&buf, nil)), LimitConfig{Burst: 2, Window: time.Minute, Now: func() time.Time { return now }})
	for i := 0; i < 10; i++ {
		l.Error("bad datagram", "n", i)
	}
	l.Warn("other")
	if got := strings.Count(buf.String(), "bad datagram"); got != 2 {
		t.Fatalf("%d lines of a flooded message passed in one window, want 2:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "other") {
		t.Fatalf("a different message was limited with the flooded one:\n%s", buf.String())
	}
	buf.Reset()
	now = now.Add(time.Minute)
	l.Error("bad datagram", "n", 10)
	if !strings.Contains(buf.String(), "suppressed=8") {
		t.Fatalf("first line of the next window does not say how many were dropped: %q", buf.String())
	}
}

func TestLimitHandlerTruncatesEveryValue(t *testing.T) {
	var buf bytes.Buffer
	l := Limit(slog.New(slog.NewTextHandler(&buf, nil)), LimitConfig{MaxValue: 16})
	huge := strings.Repeat("x", 1<<20)
	l.With("pre", huge).WithGroup("g").Error(huge, "s", huge, "err", errors.New(huge), "b", []byte(huge), slog.Group("in", "v", huge))
	if buf.Len() > 2000 {
		t.Fatalf("a record of 1 MiB values logged %d bytes", buf.Len())
	}
	if got := strings.Count(buf.String(), "(1048576 bytes)"); got != 6 {
		t.Fatalf("%d values noted their size, want 6: %s", got, buf.String())
	}
}

func TestLimitHandlerBoundsDistinctMessages(t *testing.T) {
	var buf bytes.Buffer
	l := Limit(slog.New(slog.NewTextHandler(&buf, nil)), LimitConfig{Burst: 1, MaxKeys: 10})
	for i := 0; i < 100000; i++ {
		l.Error(strings.Repeat("m", i%50))
	}
	h := l.Handler().(*LimitHandler)
	if n := len(h.state.keys); n > 11 {
		t.Fatalf("%d messages tracked, bound 10 and the overflow bucket", n)
	}
	if lines := strings.Count(buf.String(), "\n"); lines > 11 {
		t.Fatalf("a flood of 50 distinct messages passed %d lines in one window, want at most 11", lines)
	}
}
