package auth

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"redial/internal/logtext"
)

// Refusal log limits: one line per source address per refusalEvery, and
// at most refusalBurst lines a refusalEvery from all sources together, so
// a scan from many addresses cannot fill the disk either. The counter
// redial_api_auth_refused_total counts every refusal.
const (
	refusalEvery   = time.Minute
	refusalBurst   = 20
	refusalSources = 4096
)

// refusalLog writes the WARN lines about refused requests.
type refusalLog struct {
	log *slog.Logger
	now func() time.Time

	mu          sync.Mutex
	sources     map[string]*sourceState
	windowStart time.Time
	windowLines int
	dropped     int // lines not written in this window because of the burst cap
}

type sourceState struct {
	last       time.Time
	suppressed int
}

func newRefusalLog(log *slog.Logger, now func() time.Time) *refusalLog {
	return &refusalLog{log: log, now: now, sources: map[string]*sourceState{}}
}

// note records one refusal and logs it unless its source (or everyone)
// was logged recently; the next line of a source says how many were not.
func (l *refusalLog) note(r *http.Request, code int, reason, msg string) {
	src := r.RemoteAddr
	if h, _, err := net.SplitHostPort(src); err == nil {
		src = h
	}
	now := l.now()
	l.mu.Lock()
	if now.Sub(l.windowStart) >= refusalEvery {
		if l.dropped > 0 {
			l.log.Warn("auth: further API requests refused; lines not written to keep the log small",
				"refused_unlogged", l.dropped, "window", refusalEvery)
		}
		l.windowStart, l.windowLines, l.dropped = now, 0, 0
		for k, s := range l.sources {
			// A source with refusals not yet reported is kept a while, so
			// its next line can say how many there were.
			if age := now.Sub(s.last); age >= 10*refusalEvery || (age >= refusalEvery && s.suppressed == 0) {
				delete(l.sources, k)
			}
		}
	}
	s := l.sources[src]
	if s != nil && now.Sub(s.last) < refusalEvery {
		s.suppressed++
		l.mu.Unlock()
		return
	}
	if l.windowLines >= refusalBurst {
		l.dropped++
		if s != nil {
			s.suppressed++
		}
		l.mu.Unlock()
		return
	}
	if s == nil {
		if len(l.sources) >= refusalSources {
			// Forget everyone rather than grow without bound; the burst
			// cap still holds the line count.
			clear(l.sources)
		}
		s = &sourceState{}
		l.sources[src] = s
	}
	suppressed := s.suppressed
	s.last, s.suppressed = now, 0
	l.windowLines++
	l.mu.Unlock()
	l.log.Warn("auth: API request refused", "source", src, "status", code, "reason", reason,
		"method", r.Method, "path", logtext.Truncate(r.URL.Path, 200), "error", msg,
		"refused_since_last_line", suppressed)
}
