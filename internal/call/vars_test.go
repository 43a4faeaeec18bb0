package call

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The per-call logger names the call on every line it writes, including
// through loggers derived from it, and writes nothing below its level.
func TestWithCallRefNamesTheCall(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "call")
	log := withCallRef(base, "ref-1")
	log.Debug("hidden")
	if buf.Len() != 0 {
		t.Fatalf("debug record written at info level: %q", buf.String())
	}
	log.Info("first", "n", 1)
	log.With("leg", "callee").Warn("second")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "component=call call_ref=ref-1") {
			t.Errorf("line without the call's reference after the base attributes: %q", l)
		}
	}
	if !strings.Contains(lines[1], "leg=callee") || !strings.Contains(lines[0], "n=1") {
		t.Errorf("attributes lost: %q", lines)
	}
}
