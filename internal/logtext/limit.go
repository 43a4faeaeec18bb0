package logtext

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LimitConfig bounds what a LimitHandler passes on.
type LimitConfig struct {
	// Burst is how many records with the same level and message pass per
	// Window; the rest are counted and dropped. Default 5.
	Burst int
	// Window is the period Burst applies to. Default 1 minute.
	Window time.Duration
	// MaxValue bounds the message and every string attribute, in bytes;
	// longer ones are cut and their full size noted. Default 512.
	MaxValue int
	// MaxKeys bounds how many distinct messages are tracked. When full
	// (after forgetting those whose window has passed), further new
	// messages of a level share one limit, so a flood of distinct
	// messages passes at most Burst lines per level per Window too.
	// Default 1024.
	MaxKeys int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Key names the kind of a record that Burst applies to; default its
	// message. A library that writes changing details (addresses,
	// counters) into one message text needs a key that ignores them, or
	// every line would be a kind of its own.
	Key func(r slog.Record) string
}

// LimitHandler is a slog.Handler for loggers that outsiders can drive
// (third-party libraries logging every bad datagram, every failed Redis
// dial): it truncates long values and passes at most Burst records of one
// message per Window. The first record after a suppressed run carries
// "suppressed" with the number dropped meanwhile, so nothing disappears
// without a trace.
type LimitHandler struct {
	next  slog.Handler
	state *limitState
}

type limitState struct {
	cfg LimitConfig
	mu  sync.Mutex
	// keys tracks each message's window.
	keys map[limitKey]*limitWindow
}

type limitKey struct {
	level slog.Level
	msg   string
}

type limitWindow struct {
	start      time.Time
	passed     int
	suppressed int
}

// NewLimitHandler wraps next.
func NewLimitHandler(next slog.Handler, cfg LimitConfig) *LimitHandler {
	if cfg.Burst <= 0 {
		cfg.Burst = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = 512
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &LimitHandler{next: next, state: &limitState{cfg: cfg, keys: map[limitKey]*limitWindow{}}}
}

// Limit returns a logger whose records go through a LimitHandler in front
// of l's handler.
func Limit(l *slog.Logger, cfg LimitConfig) *slog.Logger {
	return slog.New(NewLimitHandler(l.Handler(), cfg))
}

// Enabled reports whether the wrapped handler handles level.
func (h *LimitHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle passes r on, truncated, unless its message is over its burst.
func (h *LimitHandler) Handle(ctx context.Context, r slog.Record) error {
	msg := Truncate(r.Message, h.state.cfg.MaxValue)
	key := msg
	if h.state.cfg.Key != nil {
		key = Truncate(h.state.cfg.Key(r), h.state.cfg.MaxValue)
	}
	suppressed, ok := h.state.admit(limitKey{level: r.Level, msg: key})
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.bound(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a handler sharing this one's limits.
func (h *LimitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	bounded := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		bounded[i] = h.bound(a)
	}
	return &LimitHandler{next: h.next.WithAttrs(bounded), state: h.state}
}

// WithGroup returns a handler sharing this one's limits.
func (h *LimitHandler) WithGroup(name string) slog.Handler {
	return &LimitHandler{next: h.next.WithGroup(name), state: h.state}
}

// bound truncates string values, including those inside groups and those
// of LogValuers and errors, which may carry a whole datagram.
func (h *LimitHandler) bound(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Truncate(v.String(), h.state.cfg.MaxValue))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = h.bound(ga)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, Truncate(err.Error(), h.state.cfg.MaxValue))
		}
		if s, ok := v.Any().([]byte); ok {
			return slog.String(a.Key, Truncate(string(s), h.state.cfg.MaxValue))
		}
		return slog.String(a.Key, Truncate(v.String(), h.state.cfg.MaxValue))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// admit decides whether a record with key k passes, and how many of its
// kind were dropped since the last one that passed.
func (s *limitState) admit(k limitKey) (suppressed int, ok bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.keys[k]
	if w == nil && len(s.keys) >= s.cfg.MaxKeys {
		for key, old := range s.keys {
			if now.Sub(old.start) >= s.cfg.Window && old.suppressed == 0 && key.msg != "" {
				delete(s.keys, key)
			}
		}
		if len(s.keys) >= s.cfg.MaxKeys {
			// The overflow bucket of this level: an empty message never
			// reaches here as a key of its own while the map is full.
			k = limitKey{level: k.level}
			w = s.keys[k]
		}
	}
	if w == nil {
		w = &limitWindow{start: now}
		s.keys[k] = w
	}
	if now.Sub(w.start) >= s.cfg.Window {
		w.start, w.passed = now, 0
	}
	if w.passed >= s.cfg.Burst {
		w.suppressed++
		return 0, false
	}
	w.passed++
	suppressed, w.suppressed = w.suppressed, 0
	return suppressed, true
}
