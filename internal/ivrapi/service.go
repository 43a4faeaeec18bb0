// Package ivrapi is seed 002's WebSocket Token API: applications connected
// to any node subscribe to ivrevents, take control of IVR sessions running
// on any node, apply components, hear DTMF and move files.
//
// A session lives on the node that holds its media (its home). The home
// numbers the session's events (seq), keeps the last 256 for a reaccept
// that asks for them again, decides who owns the session, and runs the
// owner-gone grace. Connections live on whichever node the application
// reached; their requests go to the home through the cluster bus, and the
// home's events come back through it. A node learns where a session lives
// from the api_start events on the bus and asks every live node when it
// missed one, never by guessing.
package ivrapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/auth"
	"redial/internal/cluster"
	"redial/internal/files"
	"redial/internal/ivr"
	"redial/internal/logtext"
)

// Config configures the API of one node.
type Config struct {
	// Host is this node's name (owners are "<host>/<connection id>").
	Host string
	// Domain is the tenant whose sessions this node runs and whose tokens
	// it serves.
	Domain string
	// Grace is how long a session stays owned after its owner's
	// connection dropped, waiting for ivrapi_reaccept (--ivrapi-grace,
	// default 30 s).
	Grace time.Duration
	// SendQueue is how many frames may wait for a slow client before it is
	// disconnected (default 4096).
	SendQueue int
	// MaxFrame is the largest frame a client may send (default 64 KiB).
	MaxFrame int64
	// PingEvery is the keepalive period (default 15 s); a client that does
	// not answer a ping within it is disconnected.
	PingEvery time.Duration
	// MaxInFlight bounds a connection's requests being carried out at once
	// (default 1024); more are answered busy.
	MaxInFlight int
	// MaxConns bounds the connections open on this node (default 1024);
	// more are refused with 503.
	MaxConns int
}

// Deps are the API's collaborators.
type Deps struct {
	IVR       *ivr.Engine
	Bus       *cluster.Bus
	Directory *cluster.Directory
	// Auth closes connections whose token is revoked; nil in unit tests
	// that serve without tokens.
	Auth    *auth.Authenticator
	Files   *files.Stores
	Fetcher *files.Fetcher
	Links   *files.Links
	Logger  *slog.Logger
	// Registry receives the metrics; nil keeps them unregistered.
	Registry *prometheus.Registry
	Now      func() time.Time
}

// Bus topic and methods.
const (
	topicEvents    = "ivrapi.events"
	methodSession  = "ivrapi.session"
	methodWhere    = "ivrapi.where"
	methodStatic   = "ivrapi.static"
	homeTimeout    = 6 * time.Second
	fetchTimeout   = 40 * time.Second
	whereTimeout   = 2 * time.Second
	replayKept     = 256
	goneTimeout    = 3 * time.Second
	publishTimeout = 2 * time.Second
)

// Service is the ivrapi of one node. Mount it (ServeHTTP) at /api/v1/ws.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// noisy is for lines an outsider can trigger.
	noisy *slog.Logger
	now   func() time.Time
	m     metrics

	mu      sync.Mutex
	running bool
	stopped bool
	// ready is closed once Run serves: the app starts the web server
	// after it, so a node never answers an application with 503 "not
	// serving" while it starts.
	ready chan struct{}
	conns map[string]*conn
	wg    sync.WaitGroup // connections and their goodbyes

	homeMu sync.Mutex
	home   map[string]*homeSession

	whereMu sync.Mutex
	where   map[string]whereEntry
}

type whereEntry struct {
	host, key string
	seen      time.Time
}

type metrics struct {
	conns      prometheus.Gauge
	controlled prometheus.Gauge
	requests   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	closed     *prometheus.CounterVec
}

// New builds the service; Run makes it serve.
func New(cfg Config, deps Deps) (*Service, error) {
	if cfg.Host == "" || cfg.Domain == "" {
		return nil, errors.New("ivrapi: Host and Domain are required")
	}
	if deps.IVR == nil || deps.Bus == nil || deps.Files == nil || deps.Fetcher == nil || deps.Links == nil {
		return nil, errors.New("ivrapi: IVR, Bus, Files, Fetcher and Links are required")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 4096
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 64 << 10
	}
	if cfg.PingEvery <= 0 {
		cfg.PingEvery = 15 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	log := deps.Logger.With("component", "ivrapi")
	s := &Service{cfg: cfg, deps: deps, log: log, noisy: logtext.Limit(log, logtext.LimitConfig{}), now: deps.Now,
		conns: map[string]*conn{}, home: map[string]*homeSession{}, where: map[string]whereEntry{}, ready: make(chan struct{})}
	s.m = metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_ivrapi_connections",
			Help: "ivrapi WebSocket connections open on this node."}),
		controlled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_ivrapi_sessions_controlled",
			Help: "IVR sessions on this node under external control."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_ivrapi_requests_total",
			Help: "ivrapi requests by name and result (ok or the error code)."}, []string{"name", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_ivrapi_events_dropped_total",
			Help: "ivrapi events not delivered, by reason."}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_ivrapi_disconnects_total",
			Help: "ivrapi connections closed, by reason."}, []string{"reason"}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.m.conns, s.m.controlled, s.m.requests, s.m.dropped, s.m.closed)
	}
	deps.Bus.Handle(methodSession, s.handleSession)
	deps.Bus.Handle(methodWhere, s.handleWhere)
	deps.Bus.Handle(methodStatic, s.handleStatic)
	return s, nil
}

// Ready is closed once Run serves WebSocket connections.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx ends, then closes every connection (1001, "node
// stopping"), tells the homes of their sessions, and returns when all are
// gone.
func (s *Service) Run(ctx context.Context) error {
	sub := s.deps.Bus.Subscribe(topicEvents, 4096)
	cancelEvents := s.deps.IVR.Subscribe(s.onEngineEvent)
	var deaths <-chan string
	stopDeaths := func() {}
	if s.deps.Directory != nil {
		deaths, stopDeaths = s.deps.Directory.Deaths()
	}
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("ivrapi: serving", "grace", s.cfg.Grace)

	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case m, ok := <-sub.C:
			if !ok {
				break loop
			}
			s.onBusMessage(m)
		case host, ok := <-deaths:
			if ok {
				s.ownerNodeDied(host)
				s.homeNodeDied(host)
			} else {
				deaths = nil
			}
		case <-sweep.C:
			s.sweepWhere()
		}
	}
	cancelEvents()
	stopDeaths()
	sub.Close()

	s.mu.Lock()
	s.stopped = true
	list := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		c.close(websocket.StatusGoingAway, "node stopping", "node_stopping")
	}
	s.wg.Wait()
	s.homeMu.Lock()
	for _, h := range s.home {
		h.stopGrace()
	}
	s.homeMu.Unlock()
	return nil
}

// ServeHTTP upgrades an authenticated request to an ivrapi connection and
// serves it until it closes.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		if s.deps.Auth != nil {
			http.Error(w, "ivrapi: no identity", http.StatusUnauthorized)
			return
		}
		id = auth.Identity{Open: true, Domain: s.cfg.Domain, Capabilities: []string{auth.IVRAPI, auth.Files}}
	}
	s.mu.Lock()
	if !s.running || s.stopped {
		s.mu.Unlock()
		http.Error(w, "ivrapi: not serving (node starting or stopping)", http.StatusServiceUnavailable)
		return
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		s.m.closed.WithLabelValues("too_many_connections").Inc()
		s.noisy.Warn("ivrapi: connection refused: too many open", "remote", r.RemoteAddr, "max", s.cfg.MaxConns)
		http.Error(w, fmt.Sprintf("ivrapi: %d connections are open on this node already", s.cfg.MaxConns), http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	// The token was checked by auth before this point, and a browser
	// application of the integrator's own origin may call: the Origin
	// check of the library would refuse it for nothing.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.noisy.Warn("ivrapi: upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	c := newConn(s, ws, id, r.RemoteAddr)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "node stopping")
		return
	}
	s.conns[c.id] = c
	s.mu.Unlock()
	s.m.conns.Inc()
	c.serve()
	s.m.conns.Dec()
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
	c.goodbye()
}

// connByOwner returns the local connection of owner, nil if none.
func (s *Service) connByOwner(owner string) *conn {
	host, id, ok := splitOwner(owner)
	if !ok || host != s.cfg.Host {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id]
}

// localConns returns the connections open on this node.
func (s *Service) localConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Service) countRequest(name string, e *apiError) {
	if !knownRequests[name] {
		name = "unknown"
	}
	result := "ok"
	if e != nil {
		result = e.Code
	}
	s.m.requests.WithLabelValues(name, result).Inc()
}

// delivery is an event on its way to connections, on this node or through
// the bus to the others.
type delivery struct {
	Domain string `json:"d"`
	IVRID  string `json:"i"`
	Key    string `json:"k"`
	Seq    uint64 `json:"q"`
	// Type is api_start or api_stop for events to the class's
	// subscribers, "" for events to the owner only.
	Type string `json:"t,omitempty"`
	// Owner receives the event too ("" for nobody).
	Owner string          `json:"o,omitempty"`
	Frame json.RawMessage `json:"f"`
}

// deliver hands d to the local connections and, when a connection on
// another node may want it, to the bus.
func (s *Service) deliver(d delivery) {
	s.deliverLocal(d)
	host, _, _ := splitOwner(d.Owner)
	if d.Type == "" && (d.Owner == "" || host == s.cfg.Host) {
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		s.log.Error("ivrapi: encode delivery", "ivrid", d.IVRID, "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := s.deps.Bus.Publish(ctx, topicEvents, b); err != nil {
		s.m.dropped.WithLabelValues("bus").Inc()
		s.noisy.Warn("ivrapi: event not published to the other nodes", "ivrid", d.IVRID, "seq", d.Seq, "error", err)
	}
}

// deliverLocal hands d to this node's connections that want it.
func (s *Service) deliverLocal(d delivery) {
	if d.Domain != s.cfg.Domain {
		return
	}
	owner := s.connByOwner(d.Owner)
	if d.Type != "" {
		for _, c := range s.localConns() {
			if c != owner && c.wants(d.Key) {
				c.push(d.IVRID, d.Seq, d.Frame, d.Type == evAPIStop)
			}
		}
	}
	if owner != nil {
		owner.push(d.IVRID, d.Seq, d.Frame, d.Type == evAPIStop)
	}
}

// onBusMessage takes an event published by another node.
func (s *Service) onBusMessage(m cluster.Message) {
	if m.Gap {
		// The bus says so after it resubscribed (Redis back) or when this
		// node fell behind: a notice that events flow again, not a failure.
		s.m.dropped.WithLabelValues("bus_gap").Inc()
		s.noisy.Info("ivrapi: events from other nodes flow again after a gap; some may have been missed (owners can reaccept with since)")
		return
	}
	if m.From == s.cfg.Host {
		return // delivered locally already
	}
	var d delivery
	if err := json.Unmarshal(m.Payload, &d); err != nil || d.IVRID == "" {
		s.noisy.Warn("ivrapi: malformed event on the bus", "from", m.From, "error", err)
		return
	}
	switch d.Type {
	case evAPIStart:
		s.setWhere(d.IVRID, d.Key, m.From)
	case evAPIStop:
		s.whereMu.Lock()
		delete(s.where, d.IVRID)
		s.whereMu.Unlock()
	}
	s.deliverLocal(d)
}

func (s *Service) setWhere(ivrid, key, host string) {
	s.whereMu.Lock()
	s.where[ivrid] = whereEntry{host: host, key: key, seen: s.now()}
	s.whereMu.Unlock()
}

// homeNodeDied ends, for this node's connections, the sessions of a node
// that died: their calls are gone with it, and nobody else will send their
// api_stop. The notice has no seq (the home kept the count) and says why
// in data.reason.
func (s *Service) homeNodeDied(host string) {
	type gone struct{ ivrid, key string }
	var list []gone
	s.whereMu.Lock()
	for id, e := range s.where {
		if e.host == host {
			list = append(list, gone{id, e.key})
			delete(s.where, id)
		}
	}
	s.whereMu.Unlock()
	for _, g := range list {
		frame := mustFrame(ivr.EventNotify, map[string]any{"class": classIVREvents, "type": evAPIStop, "eventts": s.now().UnixMilli(),
			"data": map[string]string{"ivrid": g.ivrid, "key": g.key, "reason": "node_died"}})
		for _, c := range s.localConns() {
			c.pushGone(g.ivrid, g.key, frame)
		}
	}
	if len(list) > 0 {
		s.log.Warn("ivrapi: a node running IVR sessions died; their calls are gone", "node", host, "sessions", len(list))
	}
}

// sweepWhere forgets sessions whose api_stop was missed.
func (s *Service) sweepWhere() {
	cut := s.now().Add(-24 * time.Hour)
	s.whereMu.Lock()
	defer s.whereMu.Unlock()
	for id, e := range s.where {
		if e.seen.Before(cut) {
			delete(s.where, id)
		}
	}
}

// locate returns the node running session ivrid.
func (s *Service) locate(ctx context.Context, ivrid string) (string, error) {
	if s.homeHas(ivrid) {
		return s.cfg.Host, nil
	}
	s.whereMu.Lock()
	e, ok := s.where[ivrid]
	s.whereMu.Unlock()
	if ok {
		return e.host, nil
	}
	if s.deps.Directory == nil {
		return "", errf(CodeNotFound, "no session %q", ivrid)
	}
	req, _ := json.Marshal(whereReq{IVRID: ivrid})
	found := make(chan string, 1)
	err := s.otherNodes(ctx, func(host string) {
		rep, err := s.deps.Bus.Request(ctx, host, methodWhere, req, whereTimeout)
		if err == nil && string(rep) == "true" {
			select {
			case found <- host:
			default:
			}
		}
	})
	if err != nil {
		return "", errf(CodeInternal, "finding session %q: %v", ivrid, err)
	}
	close(found)
	if host, ok := <-found; ok {
		s.setWhere(ivrid, "", host)
		return host, nil
	}
	return "", errf(CodeNotFound, "no session %q on any node", ivrid)
}

// otherNodes calls fn for every other live node at once and returns when
// all calls have.
func (s *Service) otherNodes(ctx context.Context, fn func(host string)) error {
	nodes, err := s.deps.Directory.Nodes(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		if !n.Alive || n.Host == s.cfg.Host {
			continue
		}
		wg.Add(1)
		go func(host string) {
			defer wg.Done()
			fn(host)
		}(n.Host)
	}
	wg.Wait()
	return nil
}

type whereReq struct {
	IVRID string `json:"ivrid"`
}

func (s *Service) handleWhere(_ context.Context, _ string, req []byte) ([]byte, error) {
	var w whereReq
	if err := json.Unmarshal(req, &w); err != nil {
		return nil, fmt.Errorf("ivrapi: where: %w", err)
	}
	if s.homeHas(w.IVRID) {
		return []byte("true"), nil
	}
	return []byte("false"), nil
}
