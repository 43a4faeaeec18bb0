package testenv

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// ParseCommandStats reads the text of INFO commandstats: calls per
// command, by lower-case name without the "cmdstat_" prefix. Commands run
// inside scripts count under their own name as well as the EVALSHA or
// EVAL that ran them.
func ParseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if n, err := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// CommandStats reads INFO commandstats of the server behind c.
func CommandStats(ctx context.Context, c redis.UniversalClient) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	return ParseCommandStats(info), nil
}

// CommandCalls reads INFO commandstats of this server, failing t when it
// cannot: what a test compares before and after an operation to count the
// Redis commands it cost.
func (r *Redis) CommandCalls(t testing.TB) map[string]int64 {
	t.Helper()
	out, err := CommandStats(context.Background(), r.Client)
	if err != nil {
		t.Fatalf("testenv: INFO commandstats: %v", err)
	}
	if len(out) == 0 {
		t.Fatal("testenv: INFO commandstats reported no command")
	}
	return out
}
