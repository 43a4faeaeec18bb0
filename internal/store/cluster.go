package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node directory keys.
//
//	redial:node:<host>:alive   STRING heartbeat, PX TTL

// AliveKey is the heartbeat key of host.
func (s *Store) AliveKey(host string) string { return "redial:node:" + host + ":alive" }

// Heartbeat tells the other nodes that host is alive for ttl.
func (s *Store) Heartbeat(ctx context.Context, host string, ttl time.Duration) error {
	key := s.AliveKey(host)
	if err := s.rdb.Set(ctx, key, time.Now().UnixMilli(), time.Duration(ttlMillis(ttl))*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("store: SET %s: %w", key, err)
	}
	return nil
}

// Alive reports, for each host, whether its heartbeat key exists (one
// pipeline; on Cluster the keys may live on different shards).
func (s *Store) Alive(ctx context.Context, hosts []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hosts))
	if len(hosts) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(hosts))
	for i, h := range hosts {
		cmds[i] = pipe.Exists(ctx, s.AliveKey(h))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: EXISTS heartbeat of %d hosts: %w", len(hosts), err)
	}
	for i, h := range hosts {
		out[h] = cmds[i].Val() == 1
	}
	return out, nil
}
