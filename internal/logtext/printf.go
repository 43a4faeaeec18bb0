package logtext

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// PrintfLogger writes a library's printf-style log lines (go-redis's
// redis.SetLogger takes this interface) through slog, so they are
// structured, truncated and rate-limited like the node's own: each line
// becomes one WARN record with a fixed message and the formatted line as
// "text". A library that logs every failed dial of a retry loop would
// otherwise write a line per retry for as long as its server is away.
type PrintfLogger struct {
	l   *slog.Logger
	msg string
}

// NewPrintfLogger returns a PrintfLogger logging msg to l. cfg bounds it
// as in Limit, with defaults of 3 lines of a kind per 5 minutes; the kind
// of a line is its text with every digit ignored, so addresses, ports,
// attempt counters and connection ids do not make each line a kind of
// its own. cfg.Key is ignored.
func NewPrintfLogger(l *slog.Logger, msg string, cfg LimitConfig) *PrintfLogger {
	if cfg.Burst <= 0 {
		cfg.Burst = 3
	}
	if cfg.Window <= 0 {
		cfg.Window = 5 * time.Minute
	}
	cfg.Key = func(r slog.Record) string {
		kind := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "text" {
				kind = a.Value.String()
				return false
			}
			return true
		})
		return withoutDigits(kind)
	}
	return &PrintfLogger{l: Limit(l, cfg), msg: msg}
}

// Printf logs one line.
func (p *PrintfLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	p.l.Log(ctx, slog.LevelWarn, p.msg, "text", fmt.Sprintf(format, v...))
}

// withoutDigits replaces every run of digits in s by one '#'.
func withoutDigits(s string) string {
	out := make([]byte, 0, len(s))
	inRun := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			if !inRun {
				out = append(out, '#')
			}
			inRun = true
			continue
		}
		inRun = false
		out = append(out, c)
	}
	return string(out)
}
