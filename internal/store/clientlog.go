package store

import (
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"

	"redial/internal/logtext"
)

// routed is the logger go-redis writes through. It is process-wide
// because go-redis's logger is: one package variable for every client.
var routed struct {
	sync.Mutex
	l *slog.Logger
}

// RouteClientLogs sends go-redis's own log lines (failed dials, pool and
// pub/sub trouble, Sentinel failovers) through l instead of straight to
// stderr: as WARN records "redis client" with the line as "text",
// truncated, and at most 3 lines of a kind per 5 minutes (a kind ignores
// digits, so a dial-retry storm against one address is one kind). Without
// it a Redis outage writes a raw line per failed dial, outside slog.
//
// It is process-wide: it affects every go-redis client of the process,
// and the last call wins. Calling it again with the same logger changes
// nothing (the rate limits keep their state). Call it once at start,
// before the first client is used.
func RouteClientLogs(l *slog.Logger) {
	routed.Lock()
	defer routed.Unlock()
	if l == nil || l == routed.l {
		return
	}
	routed.l = l
	redis.SetLogger(logtext.NewPrintfLogger(l, "redis client", logtext.LimitConfig{}))
}
