// Package cluster is what the nodes sharing one Redis know about each
// other: the node directory (who is registered, where its SIP and HTTP
// listeners are, whether it is alive), death notices, and the cluster bus
// (fan-out to every node, request/reply to one).
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/logtext"
	"redial/internal/store"
)

// ForgetAfter is how long a node stays in the directory after it died.
const ForgetAfter = 24 * time.Hour

// DefaultTTL is the heartbeat TTL when none is configured.
const DefaultTTL = 10 * time.Second

// NodeInfo is what a node tells the others about itself when it registers.
type NodeInfo struct {
	// Host is the node name (--host).
	Host string `json:"host"`
	// SIP maps a transport ("udp", "tcp", ...) to the bound host:port.
	SIP map[string]string `json:"sip"`
	// HTTP is the bound host:port of the REST API.
	HTTP string `json:"http"`
	// PublicURL is the base URL other nodes and clients use for the API.
	PublicURL string `json:"http_public_url"`
	// Version is the build's version.
	Version string `json:"version"`
	// Started is when the node started.
	Started time.Time `json:"started"`
}

// record is the registration JSON stored in the directory: the info plus
// the node's own TTL, so that a reader with another TTL (or the CLI, which
// has none) computes the right time of death.
type record struct {
	NodeInfo
	TTLMillis int64 `json:"heartbeat_ttl_ms,omitempty"`
}

// NodeState is one registered node as the directory sees it now.
type NodeState struct {
	NodeInfo
	// Alive reports whether its heartbeat key exists.
	Alive bool `json:"alive"`
	// LastSeen is the time of its last heartbeat (its own clock).
	LastSeen time.Time `json:"last_seen"`
	// DeadSince is LastSeen + its TTL when it is dead, nil while alive.
	DeadSince *time.Time `json:"dead_since,omitempty"`
	// Age is how long ago it started.
	Age time.Duration `json:"-"`
	// HeartbeatTTL is the node's heartbeat TTL.
	HeartbeatTTL time.Duration `json:"-"`
}

// nodeStateJSON is NodeState's wire form: durations in seconds.
type nodeStateJSON struct {
	nodeStateAlias
	AgeSeconds float64 `json:"age_s"`
	TTLSeconds float64 `json:"heartbeat_ttl_s"`
}

type nodeStateAlias NodeState

// MarshalJSON writes Age and HeartbeatTTL as seconds (age_s,
// heartbeat_ttl_s).
func (n NodeState) MarshalJSON() ([]byte, error) {
	return json.Marshal(nodeStateJSON{nodeStateAlias: nodeStateAlias(n), AgeSeconds: n.Age.Seconds(), TTLSeconds: n.HeartbeatTTL.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (n *NodeState) UnmarshalJSON(b []byte) error {
	var v nodeStateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*n = NodeState(v.nodeStateAlias)
	n.Age = time.Duration(v.AgeSeconds * float64(time.Second))
	n.HeartbeatTTL = time.Duration(v.TTLSeconds * float64(time.Second))
	return nil
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	// Self is this node's registration; Self.Host is required.
	Self NodeInfo
	// TTL is how long a heartbeat keeps a node alive (DefaultTTL). The
	// node heartbeats every TTL/4 and looks for dead nodes as often.
	TTL time.Duration
}

// DirectoryDeps are the Directory's collaborators.
type DirectoryDeps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of registrations and last-seen times (default
	// time.Now). Liveness itself is the Redis TTL of the alive key.
	Now func() time.Time
}

// deathBuffer is the capacity of a Deaths channel; a subscriber that lets
// it fill up misses notices (and finds the dead nodes with Nodes or Alive).
const deathBuffer = 64

// Directory registers this node, keeps its heartbeat and watches the other
// nodes' heartbeats.
type Directory struct {
	cfg DirectoryConfig
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	ready     chan struct{}
	readyOnce sync.Once

	mu sync.Mutex
	// info is the registration JSON, rewritten by SetSelf.
	info []byte
	// streakStart is the first heartbeat of the current run of successful
	// ones (zero after a failure); lastOK is the latest success.
	streakStart, lastOK time.Time
	// outage logs failed heartbeats once per Redis outage.
	outage *logtext.Outage
	// beats counts successful heartbeats.
	beats     uint64
	deathSubs map[int]chan string
	nextSub   int
	// reported holds the hosts whose death was announced; a host leaves it
	// when seen alive again, so a second death is announced again.
	reported map[string]bool

	mNodes    *prometheus.GaugeVec
	mHBFailed prometheus.Counter
}

// NewDirectory checks the configuration and builds a Directory; Run
// registers the node.
func NewDirectory(cfg DirectoryConfig, deps DirectoryDeps) (*Directory, error) {
	if cfg.Self.Host == "" {
		return nil, errors.New("cluster: directory: Self.Host is required")
	}
	if deps.Store == nil {
		return nil, errors.New("cluster: directory: Store is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	d := &Directory{cfg: cfg, st: deps.Store, log: deps.Logger.With("component", "cluster"), now: deps.Now,
		ready: make(chan struct{}), deathSubs: map[int]chan string{}, reported: map[string]bool{},
		mNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redial_cluster_nodes",
			Help: "Registered nodes by state, as this node last saw them."}, []string{"state"}),
		mHBFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_cluster_heartbeat_failures_total",
			Help: "Heartbeats of this node that failed to reach Redis."}),
	}
	d.outage = logtext.NewOutage(d.log, logtext.OutageConfig{Name: "cluster"})
	if err := d.SetSelf(cfg.Self); err != nil {
		return nil, err
	}
	if deps.Registry != nil {
		if err := deps.Registry.Register(d.mNodes); err != nil {
			return nil, fmt.Errorf("cluster: directory: register metrics: %w", err)
		}
		if err := deps.Registry.Register(d.mHBFailed); err != nil {
			return nil, fmt.Errorf("cluster: directory: register metrics: %w", err)
		}
	}
	return d, nil
}

// Self is this node's name.
func (d *Directory) Self() string { return d.cfg.Self.Host }

// SetSelf replaces this node's registration, for addresses only known once
// a listener is bound; the next heartbeat writes it. The host cannot
// change.
func (d *Directory) SetSelf(info NodeInfo) error {
	if info.Host != d.cfg.Self.Host {
		return fmt.Errorf("cluster: directory: registration of %q cannot become %q", d.cfg.Self.Host, info.Host)
	}
	b, err := json.Marshal(record{NodeInfo: info, TTLMillis: d.cfg.TTL.Milliseconds()})
	if err != nil {
		return fmt.Errorf("cluster: directory: encode registration of %s: %w", info.Host, err)
	}
	d.mu.Lock()
	d.info = b
	d.mu.Unlock()
	return nil
}

// TTL is the heartbeat TTL.
func (d *Directory) TTL() time.Duration { return d.cfg.TTL }

// Ready is closed after the first successful registration.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// Run heartbeats every TTL/4 and looks for dead nodes as often, until ctx
// is cancelled. Heartbeats and the death watch run in their own goroutines
// so a slow directory read never delays a heartbeat.
//
// On stop nothing is written: the alive key expires by itself one TTL
// later. Deleting it would let other nodes recover this node's claims at
// once, before the components that hold them have settled them.
func (d *Directory) Run(ctx context.Context) error {
	every := d.cfg.TTL / 4
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.loop(ctx, every, d.beat)
	}()
	go func() {
		defer wg.Done()
		d.loop(ctx, every, d.watch)
	}()
	wg.Wait()
	d.log.Info("cluster: directory stopped; the heartbeat expires by itself", "host", d.Self(), "ttl", d.cfg.TTL)
	return nil
}

// loop runs f now and then every period until ctx is cancelled, each call
// bounded by one period.
func (d *Directory) loop(ctx context.Context, every time.Duration, f func(context.Context)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		fctx, cancel := context.WithTimeout(ctx, every)
		f(fctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// beat writes one heartbeat and updates the trust streak.
func (d *Directory) beat(ctx context.Context) {
	d.mu.Lock()
	info := d.info
	d.mu.Unlock()
	fresh, err := d.st.NodeHeartbeat(ctx, d.Self(), info, d.cfg.TTL, d.now())
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // stopping
		}
		d.mHBFailed.Inc()
		d.streakStart = time.Time{}
		d.outage.Fail("cluster: heartbeat failed; not trusting dead-node checks until heartbeats are back for one TTL",
			err, "host", d.Self())
		return
	}
	// A new streak starts after a failure, after a gap long enough for our
	// own alive key to have expired, or when Redis had forgotten us (fresh:
	// it lost its data, so every other node's alive key is gone too).
	if fresh && d.beats > 0 {
		d.log.Warn("cluster: Redis had forgotten this node (it lost its data); not trusting dead-node checks for one TTL", "host", d.Self())
	}
	if d.streakStart.IsZero() || fresh || now.Sub(d.lastOK) >= d.cfg.TTL {
		d.streakStart = now
	}
	d.lastOK = now
	d.beats++
	d.outage.OK()
	d.readyOnce.Do(func() { close(d.ready) })
}

// Trusted reports whether this node may declare other nodes dead: its own
// heartbeats have succeeded without interruption for at least one TTL.
//
// Why: while Redis is away, or right after it comes back empty, every
// node's alive key is missing, living nodes' included. A node that acted
// on that would declare every other node dead and recover their claims
// while they are still dialing. Once this node has heartbeated for a whole
// TTL, every other living node has had the same TTL to heartbeat too, so a
// missing key again means a dead node.
func (d *Directory) Trusted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trustedLocked(d.now())
}

func (d *Directory) trustedLocked(now time.Time) bool {
	return !d.streakStart.IsZero() && now.Sub(d.streakStart) >= d.cfg.TTL && now.Sub(d.lastOK) < d.cfg.TTL
}

// distrust ends the trust streak when Redis turned out to have lost our
// registration: our entry is missing from a read that started after
// heartbeat number beatsBefore had succeeded.
func (d *Directory) distrust(beatsBefore uint64, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if beatsBefore == 0 {
		return // no heartbeat had completed when the read started
	}
	if !d.streakStart.IsZero() {
		d.log.Warn("cluster: not trusting dead-node checks for one TTL", "host", d.Self(), "reason", reason)
	}
	d.streakStart = time.Time{}
}

// Alive reports, for each host, whether its heartbeat key exists.
func (d *Directory) Alive(ctx context.Context, hosts []string) (map[string]bool, error) {
	alive, err := d.st.Alive(ctx, hosts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return alive, nil
}

// Nodes returns every registered node, sorted by host. Nodes dead for
// more than ForgetAfter are left out (and forgotten by Run).
func (d *Directory) Nodes(ctx context.Context) ([]NodeState, error) {
	return List(ctx, d.st, d.now(), d.cfg.TTL)
}

// List reads the node directory without a running Directory (the CLI):
// every registered node as of now, sorted by host. ttl is assumed for
// nodes whose registration does not carry their own.
func List(ctx context.Context, st *store.Store, now time.Time, ttl time.Duration) ([]NodeState, error) {
	recs, err := st.NodeRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	out := make([]NodeState, 0, len(recs))
	for _, r := range recs {
		n := nodeState(r, now, ttl)
		if n.DeadSince != nil && now.Sub(*n.DeadSince) > ForgetAfter {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

// nodeState decodes one stored record. A record that does not decode is
// still listed, by host, so a broken registration is visible rather than
// hidden.
func nodeState(r store.NodeRecord, now time.Time, ttl time.Duration) NodeState {
	var rec record
	if r.Info != "" {
		_ = json.Unmarshal([]byte(r.Info), &rec)
	}
	rec.Host = r.Host
	n := NodeState{NodeInfo: rec.NodeInfo, Alive: r.Alive, LastSeen: r.LastSeen, HeartbeatTTL: ttl}
	if rec.TTLMillis > 0 {
		n.HeartbeatTTL = time.Duration(rec.TTLMillis) * time.Millisecond
	}
	if !n.Started.IsZero() {
		n.Age = now.Sub(n.Started)
	}
	if !r.Alive && !r.LastSeen.IsZero() {
		ds := r.LastSeen.Add(n.HeartbeatTTL)
		n.DeadSince = &ds
	}
	return n
}

// Deaths subscribes to death notices: the name of every registered node
// whose heartbeat this node finds missing, once per death (a node that
// comes back and dies again is announced again). A node already dead when
// this node starts is announced too, once this node is trusted, so its
// leftovers are recovered even if it died while nobody watched. Notices
// are only sent while Trusted. Delivery never blocks: a full channel
// drops the notice. The returned func unsubscribes and closes the channel.
func (d *Directory) Deaths() (<-chan string, func()) {
	ch := make(chan string, deathBuffer)
	d.mu.Lock()
	id := d.nextSub
	d.nextSub++
	d.deathSubs[id] = ch
	d.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			d.mu.Lock()
			delete(d.deathSubs, id)
			d.mu.Unlock()
			close(ch)
		})
	}
}

// watch reads the directory once: updates the gauges, announces new
// deaths and forgets long-dead nodes.
func (d *Directory) watch(ctx context.Context) {
	d.mu.Lock()
	beatsBefore := d.beats
	d.mu.Unlock()
	recs, err := d.st.NodeRecords(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Debug("cluster: reading the node directory failed", "error", err)
		}
		return
	}
	now := d.now()
	selfSeen := false
	alive, dead := 0, 0
	for _, r := range recs {
		if r.Host == d.Self() && !r.LastSeen.IsZero() {
			selfSeen = true
		}
		if r.Alive {
			alive++
		} else {
			dead++
		}
	}
	d.mNodes.WithLabelValues("alive").Set(float64(alive))
	d.mNodes.WithLabelValues("dead").Set(float64(dead))
	if !selfSeen {
		// Our own entry is gone although we heartbeat: Redis lost its
		// data since our last heartbeat, so the missing alive keys of the
		// others mean nothing yet.
		d.distrust(beatsBefore, "own directory entry missing (Redis lost its data)")
	}
	var died []string
	d.mu.Lock()
	trusted := selfSeen && d.trustedLocked(now)
	for _, r := range recs {
		if r.Host == d.Self() {
			continue
		}
		switch {
		case r.Alive:
			delete(d.reported, r.Host)
		case trusted && !d.reported[r.Host]:
			d.reported[r.Host] = true
			died = append(died, r.Host)
		}
	}
	for _, h := range died {
		for _, ch := range d.deathSubs {
			select {
			case ch <- h:
			default:
				d.log.Warn("cluster: death notice dropped: subscriber not keeping up", "dead", h)
			}
		}
	}
	d.mu.Unlock()
	for _, h := range died {
		d.log.Warn("cluster: node died", "dead", h)
	}
	d.forget(ctx, now)
}

// forget removes nodes dead for more than ForgetAfter.
func (d *Directory) forget(ctx context.Context, now time.Time) {
	gone, err := d.st.ForgetNodes(ctx, now.Add(-ForgetAfter-d.cfg.TTL))
	if err != nil {
		if ctx.Err() == nil {
			d.log.Debug("cluster: forgetting long-dead nodes failed", "error", err)
		}
		return
	}
	if len(gone) == 0 {
		return
	}
	d.mu.Lock()
	for _, h := range gone {
		delete(d.reported, h)
	}
	d.mu.Unlock()
	d.log.Info("cluster: forgot nodes dead for more than a day", "hosts", gone)
}
