package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis data-loss check (internal/cluster's detector).
//
//	redial:node:<host>:marker  STRING the server run_id seen when written, EX MarkerTTL; written
//	                           by the node's detector only, so its absence says the data set
//	                           it was written into is gone (or that the node never wrote it)
//
// The detector also watches ConfigKeys: hashes operators write and nodes
// only read, so nothing a node does brings them back after a loss.

// MarkerTTL bounds how long a stopped node's marker stays behind; a
// running node rewrites its own long before.
const MarkerTTL = 7 * 24 * time.Hour

// DataMarkerKey is host's data-loss marker.
func (s *Store) DataMarkerKey(host string) string { return "redial:node:" + host + ":marker" }

// ConfigKeys are the configuration hashes of this store's domain and host
// that operators write and redial only reads (lines, dialplan, tasks,
// schedule configs, IVR scripts, callback documents, API tokens).
func (s *Store) ConfigKeys() []string {
	return []string{s.LinesKey(), s.DialplanKey(), s.TaskTemplateKey(), s.TaskHostKey(s.cfg.Host),
		s.ScheduleConfigKey(), s.IVRScriptsKey(), s.SystemConfigKey(), s.AccountDocsKey(), s.TokensKey()}
}

// WriteDataMarker sets host's marker to runID for MarkerTTL.
func (s *Store) WriteDataMarker(ctx context.Context, host, runID string) error {
	key := s.DataMarkerKey(host)
	if err := s.rdb.Set(ctx, key, runID, MarkerTTL).Err(); err != nil {
		return fmt.Errorf("store: SET %s: %w", key, err)
	}
	return nil
}

// ExistingKeys reports which of keys exist (one pipeline of EXISTS, so on
// Cluster the keys may live on different shards).
func (s *Store) ExistingKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Exists(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: EXISTS %d keys (%s, ...): %w", len(keys), keys[0], err)
	}
	for i, k := range keys {
		out[k] = cmds[i].Val() == 1
	}
	return out, nil
}

// RunIDs returns the run_id (INFO server) of every server holding this
// store's data: the one server of a plain or Sentinel-managed client (the
// current master), under the key "", or every master of a Redis Cluster,
// by address. A run_id changes whenever a server restarts or another one
// takes over; it says nothing about whether the data survived.
func (s *Store) RunIDs(ctx context.Context) (map[string]string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		id, err := runID(ctx, s.rdb)
		if err != nil {
			return nil, err
		}
		return map[string]string{"": id}, nil
	}
	var mu sync.Mutex
	out := map[string]string{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		id, err := runID(ctx, c)
		if err != nil {
			return fmt.Errorf("master %s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		out[c.Options().Addr] = id
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FormatRunIDs writes RunIDs for a log line: the one run_id, or
// addr=run_id pairs sorted by address.
func FormatRunIDs(ids map[string]string) string {
	if id, ok := ids[""]; ok && len(ids) == 1 {
		return id
	}
	parts := make([]string, 0, len(ids))
	for addr, id := range ids {
		parts = append(parts, addr+"="+id)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func runID(ctx context.Context, c interface {
	Info(ctx context.Context, section ...string) *redis.StringCmd
}) (string, error) {
	txt, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("store: INFO server: %w", err)
	}
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("store: INFO server: no run_id in the reply")
}
