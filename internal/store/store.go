// Package store owns every Redis contract of redial: key names, JSON codecs
// and Lua scripts. No other package builds a Redis key name.
//
// Keys shared with existing integrations keep the seeds' exact names
// (cti_line@<domain>, enigma:notifications:campaigns, ...). Keys private to
// redial start with "redial:" and put the parts that must share a Redis
// Cluster hash slot inside {braces}.
package store

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Config names the tenant and node whose keys this store serves.
type Config struct {
	// URL is redis://, rediss://, redis-sentinel://host:port,host:port/master/db
	// or redis-cluster://host:port,host:port.
	URL string
	// Domain selects ...@<domain> keys.
	Domain string
	// Host selects ...@<host> keys.
	Host string
	// NotifyPrefix is the prefix of the notification lists
	// (enigma:notifications).
	NotifyPrefix string
	// CDRStreamMaxLen caps the redial:cdr stream (approximate trim).
	CDRStreamMaxLen int64
}

// DefaultNotifyPrefix is the prefix of the notification lists of seeds 001
// and 003 (<prefix>:campaigns, <prefix>:inbound).
const DefaultNotifyPrefix = "enigma:notifications"

// Store is redial's view of one Redis deployment.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New connects (lazily, as go-redis does) to the Redis named by cfg.URL.
func New(cfg Config) (*Store, error) {
	opts, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	return NewWithClient(redis.NewUniversalClient(opts), cfg), nil
}

// NewWithClient wraps an existing client (tests, shared connections).
func NewWithClient(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Domain == "" {
		cfg.Domain = "default"
	}
	if cfg.NotifyPrefix == "" {
		cfg.NotifyPrefix = DefaultNotifyPrefix
	}
	if cfg.CDRStreamMaxLen == 0 {
		cfg.CDRStreamMaxLen = 1_000_000
	}
	return &Store{rdb: rdb, cfg: cfg}
}

// ParseURL turns a Redis URL into go-redis universal options. Sentinel URLs
// look like redis-sentinel://[:password@]h1:26379,h2:26379/<master>[/<db>];
// cluster URLs redis-cluster://[:password@]h1:6379,h2:6379.
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	switch {
	case strings.HasPrefix(raw, "redis://"), strings.HasPrefix(raw, "rediss://"), strings.HasPrefix(raw, "unix://"):
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("store: redis url %q: %w", raw, err)
		}
		return &redis.UniversalOptions{
			Addrs: []string{o.Addr}, DB: o.DB, Username: o.Username, Password: o.Password,
			TLSConfig: o.TLSConfig, Protocol: 2, PoolSize: poolSize(),
		}, nil
	case strings.HasPrefix(raw, "redis-sentinel://"), strings.HasPrefix(raw, "redis-cluster://"):
		rest := raw[strings.Index(raw, "://")+3:]
		var password string
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			cred := rest[:at]
			rest = rest[at+1:]
			if i := strings.Index(cred, ":"); i >= 0 {
				password = cred[i+1:]
			} else {
				password = cred
			}
		}
		hosts, path, _ := strings.Cut(rest, "/")
		if hosts == "" {
			return nil, fmt.Errorf("store: redis url %q: no hosts", raw)
		}
		o := &redis.UniversalOptions{Addrs: strings.Split(hosts, ","), Password: password, Protocol: 2, PoolSize: poolSize()}
		if strings.HasPrefix(raw, "redis-sentinel://") {
			master, db, _ := strings.Cut(path, "/")
			if master == "" {
				return nil, fmt.Errorf("store: redis url %q: sentinel url needs /<master>", raw)
			}
			o.MasterName = master
			if db != "" {
				if _, err := fmt.Sscanf(db, "%d", &o.DB); err != nil {
					return nil, fmt.Errorf("store: redis url %q: db %q is not a number", raw, db)
				}
			}
		} else {
			o.IsClusterMode = true
		}
		return o, nil
	default:
		return nil, fmt.Errorf("store: redis url %q: want redis://, rediss://, redis-sentinel:// or redis-cluster://", raw)
	}
}

// IsCluster reports whether the client talks to a Redis Cluster, where
// multi-key scripts need their keys in one hash slot.
func (s *Store) IsCluster() bool {
	_, ok := s.rdb.(*redis.ClusterClient)
	return ok
}

// poolSize is the Redis connection pool. A call makes a few sequential
// round trips (lease, dialplan, release), so at thousands of calls a second
// go-redis's default of 10 per CPU leaves calls queueing for a connection;
// blocking claims (BLMOVE) also hold one each.
func poolSize() int { return 64 * runtime.GOMAXPROCS(0) }

// Client is the underlying go-redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Domain is the tenant this store serves.
func (s *Store) Domain() string { return s.cfg.Domain }

// Host is this node's name.
func (s *Store) Host() string { return s.cfg.Host }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the client.
func (s *Store) Close() error { return s.rdb.Close() }

// LinesKey is the hash of line definitions, cti_line@<domain>.
func (s *Store) LinesKey() string { return "cti_line@" + s.cfg.Domain }

// DialplanKey is the hash of destinations, cti_dialplan@<domain>.
func (s *Store) DialplanKey() string { return "cti_dialplan@" + s.cfg.Domain }

// CampaignsListKey is the CDR list integrators BRPOP
// (<prefix>:campaigns).
func (s *Store) CampaignsListKey() string { return s.cfg.NotifyPrefix + ":campaigns" }

// InboundListKey is the inbound-call notification list (<prefix>:inbound).
func (s *Store) InboundListKey() string { return s.cfg.NotifyPrefix + ":inbound" }

// CDRStreamKey is the stream every CDR is also added to.
func (s *Store) CDRStreamKey() string { return "redial:cdr" }

// CDRStreamMaxLen is the approximate cap of the CDR stream.
func (s *Store) CDRStreamMaxLen() int64 { return s.cfg.CDRStreamMaxLen }

// HGetAll reads a whole hash (line, dialplan, task tables).
func (s *Store) hgetAll(ctx context.Context, key string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: HGETALL %s: %w", key, err)
	}
	return m, nil
}

// Lines returns the raw JSON of every line in cti_line@<domain>, by name.
func (s *Store) Lines(ctx context.Context) (map[string]string, error) {
	return s.hgetAll(ctx, s.LinesKey())
}

// Dialplan returns the raw JSON of every entry of cti_dialplan@<domain>,
// by "<context>:<extension>".
func (s *Store) Dialplan(ctx context.Context) (map[string]string, error) {
	return s.hgetAll(ctx, s.DialplanKey())
}

// DialplanEntry returns the raw target JSON of one destination; found is
// false when the field does not exist.
func (s *Store) DialplanEntry(ctx context.Context, context_, extension string) (raw string, found bool, err error) {
	field := context_ + ":" + extension
	v, err := s.rdb.HGet(ctx, s.DialplanKey(), field).Result()
	if err == redis.Nil {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: HGET %s %s: %w", s.DialplanKey(), field, err)
	}
	return v, true, nil
}
