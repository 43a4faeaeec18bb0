// Package web is redial's HTTP side: the REST API, /healthz and /metrics.
// Every route but /healthz and /metrics goes through internal/auth: the
// Host check always, and a token with the route's capability (or open
// mode) for everything mounted with Handle.
package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"redial/internal/acd"
	"redial/internal/auth"
	"redial/internal/call"
	"redial/internal/callback"
	"redial/internal/cluster"
	"redial/internal/dialer"
	"redial/internal/dialplan"
	"redial/internal/lines"
	"redial/internal/notify"
	"redial/internal/schedule"
	"redial/internal/store"
)

// Config is the HTTP listener.
type Config struct {
	Addr string
	// TLSCert and TLSKey, PEM files, make the listener serve HTTPS (and
	// SIP over WebSocket at /ws WSS); both or neither.
	TLSCert, TLSKey string
}

// Deps are the components the API exposes.
type Deps struct {
	Calls    *call.Manager
	Dialer   *dialer.Dialer
	Schedule *schedule.Scheduler
	Callback *callback.Runner
	Lines    *lines.Manager
	Dialplan *dialplan.Dialplan
	Store    *store.Store
	Notify   *notify.Publisher
	Registry *prometheus.Registry
	Logger   *slog.Logger

	// Directory serves GET /api/v1/nodes.
	Directory *cluster.Directory
	// ACD serves GET /api/v1/queues and POST /api/v1/agents/{ext}/state;
	// nil answers them 503.
	ACD *acd.Service

	// Auth guards every route but /healthz and /metrics. Nil serves the
	// routes unguarded, which only handler unit tests do; a node always
	// has one (internal/app).
	Auth *auth.Authenticator
	// Alarms returns what is wrong with the node beyond Redis being
	// unreachable (Redis lost its data, ...); a non-empty list makes
	// /healthz answer 503 "degraded" with the list. Nil means none.
	Alarms func() []string
}

// Server serves the HTTP API.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	mux     *http.ServeMux
	ln      net.Listener
	mBadReq prometheus.Counter
	// certs is nil without TLS.
	certs *certFiles
}

// New binds the listener (so a clash is reported at start) and builds the
// routes.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("component", "web"), mux: http.NewServeMux(),
		mBadReq: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_api_bad_requests_total", Help: "API requests rejected with 400."})}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.mBadReq)
	}
	for pattern, h := range map[string]http.HandlerFunc{
		"POST /api/v1/calls":         s.postCall,
		"POST /api/v1/click2dial":    s.postClick,
		"GET /api/v1/calls":          s.listCalls,
		"DELETE /api/v1/calls/{ref}": s.deleteCall,
		"GET /api/v1/lines":          s.getLines,
		"GET /api/v1/tasks":          s.getTasks,
		"GET /api/v1/schedules":      s.getSchedules,
		"POST /api/v1/schedules":     s.postSchedule,
		"GET /api/v1/callbacks":      s.getCallbacks,
		"POST /api/v1/events":        s.postEvent,
		"GET /api/v1/nodes":          s.getNodes,
		"GET /api/v1/agents":         s.getAgents,
	} {
		s.Handle(pattern, auth.Rest, h)
	}
	s.callRecordRoutes() // GET /api/v1/calls/{ref} and what outlives a call
	s.queueRoutes()      // GET /api/v1/queues, POST /api/v1/agents/{ext}/state
	s.mux.HandleFunc("GET /healthz", s.healthz)
	if deps.Registry != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{}))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, fmt.Errorf("web: tls: a certificate needs its key and a key its certificate")
	}
	if cfg.TLSCert != "" {
		certs, err := loadCertFiles(cfg.TLSCert, cfg.TLSKey, s.log)
		if err != nil {
			return nil, err
		}
		s.certs = certs
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("web: listen %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	return s, nil
}

// Handle adds a route that needs a token with capability (auth.Rest,
// auth.IVRAPI, auth.Files, auth.Dashboard), or open mode.
func (s *Server) Handle(pattern, capability string, h http.Handler) {
	if s.deps.Auth != nil {
		h = s.deps.Auth.Require(capability, h)
	}
	s.mux.Handle(pattern, h)
}

// HandlePage adds a browser page that needs capability: like Handle, and
// it also accepts ?token= on a first load, keeping a session cookie and
// redirecting to the address without the token (DESIGN.md "APIs and
// access").
func (s *Server) HandlePage(pattern, capability string, h http.Handler) {
	if s.deps.Auth != nil {
		h = s.deps.Auth.RequirePage(capability, h)
	}
	s.mux.Handle(pattern, h)
}

// HandleAny adds a route that a token with any one of capabilities opens;
// the handler checks finer rights itself (auth.FromContext).
func (s *Server) HandleAny(pattern string, capabilities []string, h http.Handler) {
	if s.deps.Auth != nil {
		h = s.deps.Auth.RequireAny(capabilities, h)
	}
	s.mux.Handle(pattern, h)
}

// HandlePublic adds a route that needs no token because the request
// carries its own proof (a signed file link, SIP digest over WebSocket).
// The Host check still applies.
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the server's root handler: the Host check on every path but
// /healthz and /metrics (monitoring scrapes those by whatever name it
// knows the node by), then the routes.
func (s *Server) Handler() http.Handler {
	if s.deps.Auth == nil {
		return s.mux
	}
	checked := s.deps.Auth.CheckHost(s.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
			s.mux.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// idleTimeout is how long a keep-alive connection may wait for its next
// request before the server closes it; a client then opens a new one.
const idleTimeout = 30 * time.Second

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	// IdleTimeout: without one (and with no ReadTimeout) a client's idle
	// keep-alive connection is kept for good, each with its goroutine and
	// 8 KiB of buffers: a burst of API requests left some thirty of them
	// open (issue 14). Hijacked WebSockets and long responses are not
	// idle and are not affected.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
	errc := make(chan error, 1)
	if s.certs != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: s.certs.get}
		go func() { errc <- srv.ServeTLS(s.ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(s.ln) }()
	}
	s.log.Info("web: listening", "addr", s.Addr(), "tls", s.certs != nil)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("web: %w", err)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	s.mBadReq.Inc()
	s.log.Warn("web: bad request", "method", r.Method, "path", r.URL.Path, "error", err)
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}

func (s *Server) getLines(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"lines": s.deps.Lines.Statuses(r.Context())}
	if s.deps.Dialplan != nil {
		entries, err := s.deps.Dialplan.Entries(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		out["dialplan"] = entries
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]any{"status": "ok", "redis": "ok"}
	code := http.StatusOK
	if err := s.deps.Store.Ping(ctx); err != nil {
		// CDRs still spool while Redis is away, so the node is degraded,
		// not dead.
		status["status"], status["redis"] = "degraded", err.Error()
		code = http.StatusServiceUnavailable
	}
	if s.deps.Alarms != nil {
		if alarms := s.deps.Alarms(); len(alarms) > 0 {
			status["status"], status["alarms"] = "degraded", alarms
			code = http.StatusServiceUnavailable
		}
	}
	if s.deps.Auth != nil {
		status["api_access"] = s.deps.Auth.Mode().String()
	}
	if s.deps.Notify != nil {
		status["spooled_notifications"] = s.deps.Notify.Spooled()
	}
	if s.deps.Calls != nil {
		status["active_calls"] = s.deps.Calls.Active()
	}
	writeJSON(w, code, status)
}

func (s *Server) getTasks(w http.ResponseWriter, r *http.Request) {
	if s.deps.Dialer == nil {
		writeJSON(w, http.StatusOK, map[string]any{"tasks": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": s.deps.Dialer.Statuses(r.Context())})
}
