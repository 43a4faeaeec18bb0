package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node directory and cluster bus.
//
//	redial:{nodes}:alive:<host>  STRING heartbeat (unix ms of the write), PX TTL; the claim-recovery
//	                           scripts check it atomically
//	redial:node:<host>:alive   the same heartbeat under its name before issue 9, still written
//	                           and read so that nodes of both versions see each other alive
//	                           during a rolling upgrade (drop it one release later)
//	redial:{nodes}:info        HASH field = host, value = the node's registration JSON (opaque
//	                           here; internal/cluster encodes it)
//	redial:{nodes}:seen        ZSET member = host, score = unix ms of its last heartbeat
//
// info and seen share the hash slot {nodes} so one script can forget a long
// dead node from both at once on Redis Cluster.
//
// Pub/sub channels of the cluster bus:
//
//	redial:bus:all             every node subscribes (fan-out)
//	redial:bus:node:<host>     only host subscribes (requests to it, replies to its requests)

// AliveKey is the heartbeat key of host. Every node's heartbeat lives in
// the one hash slot {nodes}: on a Redis Cluster a failover of another
// shard then cannot stop one node's heartbeat while the others go on (which
// made the others recover the claims of a node that was alive and about to
// acknowledge them), and a failover of the {nodes} shard stops every
// heartbeat at once, which every node sees as its own failure and so
// declares nobody dead.
func (s *Store) AliveKey(host string) string { return "redial:{nodes}:alive:" + host }

// LegacyAliveKey is host's heartbeat key as nodes before issue 9 wrote and
// read it; see the key list above.
func (s *Store) LegacyAliveKey(host string) string { return "redial:node:" + host + ":alive" }

// NodesInfoKey is the hash of node registrations.
func (s *Store) NodesInfoKey() string { return "redial:{nodes}:info" }

// NodesSeenKey is the sorted set of last heartbeat times.
func (s *Store) NodesSeenKey() string { return "redial:{nodes}:seen" }

// BusAllChannel is the pub/sub channel every node's bus listens on.
func (s *Store) BusAllChannel() string { return "redial:bus:all" }

// BusNodeChannel is the pub/sub channel only host's bus listens on.
func (s *Store) BusNodeChannel(host string) string { return "redial:bus:node:" + host }

// Heartbeat tells the other nodes that host is alive for ttl.
func (s *Store) Heartbeat(ctx context.Context, host string, ttl time.Duration) error {
	pipe := s.rdb.Pipeline()
	now, px := time.Now().UnixMilli(), time.Duration(ttlMillis(ttl))*time.Millisecond
	pipe.Set(ctx, s.AliveKey(host), now, px)
	pipe.Set(ctx, s.LegacyAliveKey(host), now, px)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: SET %s, %s: %w", s.AliveKey(host), s.LegacyAliveKey(host), err)
	}
	return nil
}

// NodeHeartbeat registers host (info is its registration JSON), records now
// as its last heartbeat and refreshes its alive key for ttl, in one
// pipeline. The registration is rewritten every time so a Redis that lost
// its data has it back within one heartbeat.
//
// fresh reports that host had no last-seen entry before this call: either
// it registers for the first time, or Redis lost its data (a restart
// without persistence, a failover to a replica that lagged). The caller
// uses it to tell that every other node's alive key may be gone too.
//
// The alive key is written with the same SET (unix ms value, PX ttl) as
// Heartbeat, so both may refresh it without disturbing each other.
func (s *Store) NodeHeartbeat(ctx context.Context, host string, info []byte, ttl time.Duration, now time.Time) (fresh bool, err error) {
	pipe := s.rdb.Pipeline()
	// ZADD first: a concurrent ForgetNodes then either sees the new score
	// (and keeps the node) or has already removed both entries, which the
	// HSET below restores.
	added := pipe.ZAdd(ctx, s.NodesSeenKey(), redis.Z{Score: float64(now.UnixMilli()), Member: host})
	pipe.HSet(ctx, s.NodesInfoKey(), host, info)
	pipe.Set(ctx, s.AliveKey(host), now.UnixMilli(), time.Duration(ttlMillis(ttl))*time.Millisecond)
	pipe.Set(ctx, s.LegacyAliveKey(host), now.UnixMilli(), time.Duration(ttlMillis(ttl))*time.Millisecond)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("store: heartbeat of node %s (ZADD %s, HSET %s, SET %s): %w",
			host, s.NodesSeenKey(), s.NodesInfoKey(), s.AliveKey(host), err)
	}
	return added.Val() == 1, nil
}

// NodeRecord is one registered node as stored.
type NodeRecord struct {
	Host string
	// Info is the registration JSON; empty when only a last-seen entry
	// exists.
	Info string
	// LastSeen is the time of its last heartbeat; zero when only a
	// registration exists.
	LastSeen time.Time
	// Alive reports whether its alive key exists.
	Alive bool
}

// NodeRecords returns every node that has a registration or a last-seen
// entry, with whether its alive key exists (two round trips: the directory,
// then one pipeline of EXISTS, since alive keys may live on other shards).
func (s *Store) NodeRecords(ctx context.Context) ([]NodeRecord, error) {
	pipe := s.rdb.Pipeline()
	infoCmd := pipe.HGetAll(ctx, s.NodesInfoKey())
	seenCmd := pipe.ZRangeWithScores(ctx, s.NodesSeenKey(), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: read node directory (HGETALL %s, ZRANGE %s): %w", s.NodesInfoKey(), s.NodesSeenKey(), err)
	}
	byHost := map[string]*NodeRecord{}
	var order []string
	get := func(h string) *NodeRecord {
		if r, ok := byHost[h]; ok {
			return r
		}
		r := &NodeRecord{Host: h}
		byHost[h] = r
		order = append(order, h)
		return r
	}
	for _, z := range seenCmd.Val() {
		h, _ := z.Member.(string)
		get(h).LastSeen = time.UnixMilli(int64(z.Score))
	}
	for h, info := range infoCmd.Val() {
		get(h).Info = info
	}
	alive, err := s.Alive(ctx, order)
	if err != nil {
		return nil, err
	}
	out := make([]NodeRecord, 0, len(order))
	for _, h := range order {
		r := byHost[h]
		r.Alive = alive[h]
		out = append(out, *r)
	}
	return out, nil
}

// forgetNodesScript removes nodes whose last heartbeat is older than a
// cutoff from the directory, checking the score inside the script so a
// node that heartbeats at that moment is kept.
//
// KEYS[1] redial:{nodes}:info  (HASH)
// KEYS[2] redial:{nodes}:seen  (ZSET)
// ARGV[1] cutoff, unix ms: members with a score below it are removed
// Returns the array of removed hosts.
var forgetNodesScript = redis.NewScript(`
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, h in ipairs(old) do
  redis.call('ZREM', KEYS[2], h)
  redis.call('HDEL', KEYS[1], h)
end
return old
`)

// ForgetNodes removes every node last seen before cutoff from the
// directory and returns their names. Their alive keys have long expired.
func (s *Store) ForgetNodes(ctx context.Context, cutoff time.Time) ([]string, error) {
	keys := []string{s.NodesInfoKey(), s.NodesSeenKey()}
	hosts, err := forgetNodesScript.Run(ctx, s.rdb, keys, strconv.FormatInt(cutoff.UnixMilli(), 10)).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("store: forget nodes last seen before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	return hosts, nil
}

// Alive reports, for each host, whether its heartbeat key exists (one
// pipeline; on Cluster the keys may live on different shards).
func (s *Store) Alive(ctx context.Context, hosts []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hosts))
	if len(hosts) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([][2]*redis.IntCmd, len(hosts))
	for i, h := range hosts {
		cmds[i] = [2]*redis.IntCmd{pipe.Exists(ctx, s.AliveKey(h)), pipe.Exists(ctx, s.LegacyAliveKey(h))}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: EXISTS heartbeat of %d hosts: %w", len(hosts), err)
	}
	for i, h := range hosts {
		out[h] = cmds[i][0].Val() == 1 || cmds[i][1].Val() == 1
	}
	return out, nil
}

// Publish sends payload on a pub/sub channel and returns how many
// subscribers received it (on Redis Cluster only those of the shard that
// took the PUBLISH are counted).
func (s *Store) Publish(ctx context.Context, channel string, payload []byte) (int64, error) {
	n, err := s.rdb.Publish(ctx, channel, payload).Result()
	if err != nil {
		return 0, fmt.Errorf("store: PUBLISH %s: %w", channel, err)
	}
	return n, nil
}

// Subscribe opens a pub/sub connection on channels. go-redis reconnects it
// and subscribes again after a connection loss; the server then confirms
// each channel again (a *redis.Subscription from Receive), which is how
// listeners learn they may have missed messages. The caller closes it.
func (s *Store) Subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return s.rdb.Subscribe(ctx, channels...)
}
