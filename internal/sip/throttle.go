package sip

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AuthLimits bound digest password guessing (inbound INVITE and REGISTER
// credentials). Failures are counted per source address and per user
// within Window; a source or user that reaches its limit is refused with
// 403, without any digest check, for Block. Zero fields take the defaults.
type AuthLimits struct {
	// MaxFailures per source address within Window; default 5. IPv6
	// sources are counted per /64, which one host usually owns whole.
	MaxFailures int
	// MaxUserFailures per known user within Window, from any source;
	// default 20. It is higher than MaxFailures so that one guessing
	// source locks out itself, not the trunk whose user it guesses, while
	// a guess spread over many addresses is still bounded.
	MaxUserFailures int
	// Window is the period failures are counted over; default 60 s.
	Window time.Duration
	// Block is how long a source or user is refused; default 5 min.
	Block time.Duration
	// MaxTracked caps the sources and, separately, the users remembered,
	// so that an attacker rotating addresses cannot grow memory; default
	// 10000 each.
	MaxTracked int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (l AuthLimits) withDefaults() AuthLimits {
	if l.MaxFailures <= 0 {
		l.MaxFailures = 5
	}
	if l.MaxUserFailures <= 0 {
		l.MaxUserFailures = 20
	}
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	if l.Block <= 0 {
		l.Block = 5 * time.Minute
	}
	if l.MaxTracked <= 0 {
		l.MaxTracked = 10000
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return l
}

// authThrottle counts digest failures and decides who is refused.
type authThrottle struct {
	cfg AuthLimits
	// log is rate limited: an attacker rotating addresses starts a block
	// per address, each warned once, and must not write the log freely.
	log *slog.Logger

	mu        sync.Mutex
	sources   *counterSet
	users     *counterSet
	mFailures prometheus.Counter
	mBlocked  prometheus.Counter
}

func newAuthThrottle(cfg AuthLimits, log *slog.Logger) *authThrottle {
	cfg = cfg.withDefaults()
	return &authThrottle{cfg: cfg, log: log,
		sources: newCounterSet(cfg.MaxTracked), users: newCounterSet(cfg.MaxTracked),
		mFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_sip_auth_failures_total",
			Help: "Digest credentials refused (wrong password, unknown user, unreadable header)."}),
		mBlocked: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_sip_auth_blocked_total",
			Help: "Requests refused with 403 without a digest check because their source or user failed too often."}),
	}
}

func (t *authThrottle) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.mFailures, t.mBlocked}
}

// blocked reports whether a request from source (a host address), or for
// user when not empty, must be refused without checking it, and counts
// it when so.
func (t *authThrottle) blocked(source, user string) bool {
	now := t.cfg.Now()
	t.mu.Lock()
	refused := t.sources.blocked(sourceKey(source), now) || user != "" && t.users.blocked(user, now)
	t.mu.Unlock()
	if refused {
		t.mBlocked.Inc()
	}
	return refused
}

// failed records a refused credential from source for user; knownUser
// says whether user exists (guessing names that do not exist threatens
// no account, so only the source is charged for it).
func (t *authThrottle) failed(source, user string, knownUser bool) {
	t.mFailures.Inc()
	now := t.cfg.Now()
	key := sourceKey(source)
	t.mu.Lock()
	srcBlocked := t.sources.fail(key, now, t.cfg.MaxFailures, t.cfg.Window, t.cfg.Block)
	userBlocked := knownUser && t.users.fail(user, now, t.cfg.MaxUserFailures, t.cfg.Window, t.cfg.Block)
	t.mu.Unlock()
	// Once per block: fail reports true only for the failure that starts it.
	if srcBlocked {
		t.log.Warn("sip: digest authentication blocked for a source after repeated failures",
			"source", key, "failures", t.cfg.MaxFailures, "window", t.cfg.Window, "blocked_for", t.cfg.Block)
	}
	if userBlocked {
		t.log.Warn("sip: digest authentication blocked for a user after repeated failures from any source",
			"user", user, "failures", t.cfg.MaxUserFailures, "window", t.cfg.Window, "blocked_for", t.cfg.Block)
	}
}

// tracked is how many sources and users are remembered (tests).
func (t *authThrottle) tracked() (sources, users int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sources.m), len(t.users.m)
}

// sourceKey is what failures of an address are counted under: the
// address itself, or its /64 for IPv6.
func sourceKey(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return source
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// authCounter is one source's or user's failures in its current window.
type authCounter struct {
	start        time.Time
	failures     int
	blockedUntil time.Time
}

// counterSet is a bounded map of counters. Callers hold authThrottle.mu.
type counterSet struct {
	max       int
	m         map[string]*authCounter
	lastSweep time.Time
}

func newCounterSet(max int) *counterSet {
	return &counterSet{max: max, m: map[string]*authCounter{}}
}

func (s *counterSet) blocked(key string, now time.Time) bool {
	c := s.m[key]
	return c != nil && now.Before(c.blockedUntil)
}

// fail counts one failure for key and reports whether it started a block.
func (s *counterSet) fail(key string, now time.Time, max int, window, block time.Duration) bool {
	c := s.m[key]
	if c == nil {
		s.makeRoom(now, window)
		c = &authCounter{start: now}
		s.m[key] = c
	}
	if now.Before(c.blockedUntil) {
		// Refused requests never get here; a failure racing the block
		// does not extend it.
		return false
	}
	if now.Sub(c.start) >= window || !c.blockedUntil.IsZero() {
		*c = authCounter{start: now}
	}
	c.failures++
	if c.failures >= max {
		c.blockedUntil = now.Add(block)
		return true
	}
	return false
}

// idle reports whether c no longer matters: its window and block are over.
func (c *authCounter) idle(now time.Time, window time.Duration) bool {
	return !now.Before(c.blockedUntil) && now.Sub(c.start) >= window
}

// makeRoom keeps the set under its cap before an insert: idle counters go
// first (swept at most once a second, so a flood of new addresses does not
// make every insert walk the map); failing that, one counter picked at
// random among a few, preferring one that blocks nothing.
func (s *counterSet) makeRoom(now time.Time, window time.Duration) {
	if len(s.m) < s.max {
		return
	}
	if now.Sub(s.lastSweep) >= time.Second {
		s.lastSweep = now
		for k, c := range s.m {
			if c.idle(now, window) {
				delete(s.m, k)
			}
		}
		if len(s.m) < s.max {
			return
		}
	}
	victim, soonest := "", time.Time{}
	sampled := 0
	for k, c := range s.m { // map order is random: a random sample
		if !now.Before(c.blockedUntil) {
			victim = k
			break
		}
		if victim == "" || c.blockedUntil.Before(soonest) {
			victim, soonest = k, c.blockedUntil
		}
		if sampled++; sampled >= 16 {
			break
		}
	}
	delete(s.m, victim)
}
