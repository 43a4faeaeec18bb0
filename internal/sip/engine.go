// Package sip is redial's SIP user agent on github.com/emiago/sipgo: the
// UDP/TCP listeners, outbound calls (UAC) with digest auth, ring timeouts
// and CANCEL, in-dialog BYE handling, OPTIONS, and a hook for inbound
// INVITEs.
package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/config"
	"redial/internal/logtext"
	"redial/internal/media"
)

// Config is the SIP side of a node.
type Config struct {
	Listeners []config.Listener
	// PublicIP is written in Via, Contact and SDP.
	PublicIP string
	// UserAgent is the User-Agent header value.
	UserAgent string
	// UDPReadBuffer is the listener socket's receive buffer in bytes; a large
	// one keeps bursts of responses at high call rates from being dropped.
	UDPReadBuffer int
	// Limits bound the messages the listeners accept.
	Limits MessageLimits
	// Auth bounds digest password guessing.
	Auth AuthLimits
	// LogLimit rate-limits and truncates what sipgo logs and what the
	// engine logs about outsiders' messages (logtext defaults when zero).
	LogLimit logtext.LimitConfig
}

// InviteHandler handles a new inbound call. It must answer or reject it
// before returning (sipgo terminates the transaction on return).
type InviteHandler func(in *Inbound)

// Deps are what the engine needs from the rest of the node.
type Deps struct {
	Logger *slog.Logger
	Ports  *media.PortPool
	// OnInvite handles inbound INVITEs; nil answers 403 to all of them.
	OnInvite InviteHandler
	// Secret returns the cluster-wide key that signs digest nonces (the
	// store's DigestSecret), so a challenge from this node can be answered
	// to any other. Run loads it, retrying in the background while it
	// fails; until then, and always when Secret is nil, nonces are signed
	// with a per-process key and verify only on this node.
	Secret func(ctx context.Context) ([]byte, error)
	// Registry receives the engine's metrics; nil leaves them
	// unregistered.
	Registry *prometheus.Registry
}

// Engine is a node's SIP user agent.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	ports  *media.PortPool
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client map[string]*sipgo.Client // by transport
	dlg    map[string]*sipgo.DialogUA

	legsMu sync.RWMutex
	legs   map[string]*Leg // established UAC dialogs by dialog ID

	// byeTimers recycles the timers of hangups' BYEs (uacDialog) and of
	// the INVITEs' retransmissions (inviteUDP), a timer and its channel
	// per call otherwise.
	byeTimers timerPool
	// pending are the client transactions the engine runs itself, without
	// sipgo's: INVITEs and BYEs over UDP to IP addresses (invitetx.go).
	pending pendingTx
	// respParser parses the responses takeResponse takes whole; bare
	// holds the ones it passes on as a status code (bareResponse), by
	// code-100.
	respParser *gosip.Parser
	bare       [600]atomic.Pointer[gosip.Response]
	// raw writes outbound legs' ACKs and BYEs on the UDP listener sipgo's
	// UDP client sends from (rawreq.go); set once Run serves it.
	raw atomic.Pointer[rawSender]

	onInvite atomic.Pointer[InviteHandler]
	// registrar serves REGISTER; nil answers 405 (registrar.go).
	registrar atomic.Pointer[Registrar]
	// localKey signs nonces until clusterKey is loaded from secretFn; both
	// are accepted afterwards, so challenges issued before the switch stay
	// answerable.
	localKey   []byte
	clusterKey atomic.Pointer[[]byte]
	secretFn   func(ctx context.Context) ([]byte, error)
	// bg counts the engine's own background work (BYEs of unwanted
	// answers); Run waits for it.
	bg sync.WaitGroup
	// clock paces every prompt this node plays.
	clock *media.Clock

	// noisy is e.log rate limited, for lines outsiders can cause.
	noisy *slog.Logger
	guard *guard
	auth  *authThrottle
	icmp  *icmpWatch
	// ws serves SIP over WebSocket (ws.go).
	ws *wsServer

	mu      sync.Mutex
	addrs   map[string]string // network -> bound host:port
	ready   chan struct{}
	udpConn []net.PacketConn
	tcpLn   []net.Listener
}

// New builds the engine and binds its listeners (so a port clash is
// reported at start, not later in Run).
func New(cfg Config, deps Deps) (*Engine, error) {
	if len(cfg.Listeners) == 0 {
		return nil, errors.New("sip: no listeners configured")
	}
	if cfg.PublicIP == "" {
		return nil, errors.New("sip: no public IP configured")
	}
	if deps.Ports == nil {
		return nil, errors.New("sip: no RTP port pool")
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "redial"
	}
	if cfg.UDPReadBuffer == 0 {
		cfg.UDPReadBuffer = 16 << 20
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{cfg: cfg, log: log.With("component", "sip"), ports: deps.Ports,
		client: map[string]*sipgo.Client{}, dlg: map[string]*sipgo.DialogUA{},
		legs: map[string]*Leg{}, addrs: map[string]string{}, ready: make(chan struct{}), localKey: newSecret(), secretFn: deps.Secret, clock: media.NewClock(),
		respParser: gosip.NewParser()}
	if deps.OnInvite != nil {
		e.SetInviteHandler(deps.OnInvite)
	}
	e.noisy = logtext.Limit(e.log, cfg.LogLimit)
	e.guard = newGuard(cfg.Limits, cfg.PublicIP, e.noisy)
	e.auth = newAuthThrottle(cfg.Auth, e.noisy)
	e.icmp = newICMPWatch()
	if deps.Registry != nil {
		if err := registerAll(deps.Registry, append(e.auth.collectors(), e.guard.mBad)...); err != nil {
			return nil, fmt.Errorf("sip: metrics: %w", err)
		}
	}

	// sipgo logs whatever it cannot parse whole, at ERROR, once per
	// datagram: everything it logs goes through a rate limit and a
	// truncation (see also SetLibraryLogger).
	sipgoLog := logtext.Limit(log.With("component", "sipgo"), cfg.LogLimit)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(cfg.UserAgent), sipgo.WithUserAgentHostname(cfg.PublicIP),
		sipgo.WithUserAgentTransportLayerOptions(gosip.WithTransportLayerLogger(sipgoLog)),
		sipgo.WithUserAgentTransactionLayerOptions(gosip.WithTransactionLayerLogger(sipgoLog),
			gosip.WithTransactionLayerUnhandledResponseHandler(func(r *gosip.Response) {
				if e.pending.deliver(r) || e.ackStray2xx(r) {
					return
				}
				sipgoLog.Debug("sip: response matching no transaction", "response", r.Short())
			})))
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	e.ua = ua
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	e.srv = srv

	for _, l := range cfg.Listeners {
		switch l.Network {
		case "udp":
			lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) {
					// SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to the capped SO_RCVBUF.
					if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, cfg.UDPReadBuffer); serr != nil {
						serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, cfg.UDPReadBuffer)
					}
				})
				if serr != nil {
					e.log.Warn("sip: could not enlarge UDP receive buffer", "error", serr)
				}
				recvErr := false
				c.Control(func(fd uintptr) { recvErr = setRecvErr(int(fd)) })
				if !recvErr {
					e.log.Warn("sip: IP_RECVERR refused: an unreachable UDP line will hold its calls until Timer B")
				}
				return nil
			}}
			pc, err := lc.ListenPacket(context.Background(), "udp", l.Addr)
			if err != nil {
				e.closeListeners()
				return nil, fmt.Errorf("sip: listen udp %s: %w", l.Addr, err)
			}
			e.udpConn = append(e.udpConn, pc)
			e.addrs["udp"] = pc.LocalAddr().String()
		case "tcp":
			ln, err := net.Listen("tcp", l.Addr)
			if err != nil {
				e.closeListeners()
				return nil, fmt.Errorf("sip: listen tcp %s: %w", l.Addr, err)
			}
			e.tcpLn = append(e.tcpLn, ln)
			e.addrs["tcp"] = ln.Addr().String()
		default:
			e.closeListeners()
			return nil, fmt.Errorf("sip: listener %s:%s: unknown transport", l.Network, l.Addr)
		}
	}

	for network, addr := range e.addrs {
		_, portStr, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portStr)
		opts := []sipgo.ClientOption{
			sipgo.WithClientLogger(sipgoLog),
			sipgo.WithClientHostname(cfg.PublicIP),
			sipgo.WithClientPort(port),
		}
		if network == "udp" {
			// Send from the listening socket so responses and in-dialog
			// requests come back to the port we advertise.
			opts = append(opts, sipgo.WithClientConnectionAddr(addr))
		}
		c, err := sipgo.NewClient(ua, opts...)
		if err != nil {
			e.closeListeners()
			return nil, fmt.Errorf("sip: client %s: %w", network, err)
		}
		e.client[network] = c
		contact := gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: cfg.PublicIP, Port: port}}
		if network == "tcp" {
			contact.Address.UriParams = gosip.NewParams()
			contact.Address.UriParams.Add("transport", "tcp")
		}
		e.dlg[network] = &sipgo.DialogUA{Client: c, ContactHDR: contact}
	}
	if err := e.initWS(sipgoLog, deps.Registry); err != nil {
		e.closeListeners()
		return nil, err
	}

	srv.OnInvite(e.handleInvite)
	srv.OnAck(e.handleAck)
	srv.OnInfo(e.handleInfo)
	srv.OnBye(e.handleBye)
	srv.OnOptions(e.handleOptions)
	srv.OnRegister(e.handleRegister)
	srv.OnMessage(e.handleMessage) // agents' queue states (agentstate.go)
	srv.OnCancel(func(req *gosip.Request, tx gosip.ServerTransaction) {
		// A CANCEL matching a live INVITE transaction is absorbed by the
		// transaction layer; one that reaches here matches nothing.
		tx.Respond(gosip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	})
	return e, nil
}

// SetInviteHandler installs the handler for inbound INVITEs.
func (e *Engine) SetInviteHandler(h InviteHandler) { e.onInvite.Store(&h) }

func (e *Engine) closeListeners() {
	for _, c := range e.udpConn {
		c.Close()
	}
	for _, l := range e.tcpLn {
		l.Close()
	}
	e.ws.close()
}

// Addr is the bound address of the listener of a transport ("udp" or
// "tcp"), useful when the configured port was 0.
func (e *Engine) Addr(network string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addrs[network]
}

// PublicIP is the address the engine advertises.
func (e *Engine) PublicIP() string { return e.cfg.PublicIP }

// Run serves the listeners until ctx is cancelled. It loads the cluster's
// digest secret first (see Deps.Secret).
func (e *Engine) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		cancel()
		bg.Wait()
		e.bg.Wait()
	}()
	if e.secretFn != nil && !e.startSecret(ctx) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			e.retrySecret(ctx)
		}()
	}
	errc := make(chan error, len(e.udpConn)+len(e.tcpLn))
	// sipgo sees the listeners through the guard (guard.go).
	var serving []<-chan struct{}
	for _, c := range e.udpConn {
		gc := newGuardedPacketConn(c, e.guard, e.onUnreachable)
		gc.take = e.takeResponse
		if addr := c.LocalAddr().String(); addr == e.addrs["udp"] {
			_, portStr, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portStr)
			e.raw.Store(newRawSender(gc, e.cfg.PublicIP, port, addr))
		}
		serving = append(serving, gc.serving)
		go func() { errc <- e.srv.ServeUDP(gc) }()
	}
	for _, l := range e.tcpLn {
		gl := newGuardedListener(l, e.guard)
		serving = append(serving, gl.serving)
		go func() { errc <- e.srv.ServeTCP(gl) }()
	}
	serving = append(serving, e.ws.serve(e.srv)...)
	// Ready only once sipgo reads every listener: until its UDP listener
	// is in sipgo's connection pool, an INVITE sent from that address
	// would try to bind it again and fail.
	var err error
	for _, ch := range serving {
		select {
		case <-ch:
		case <-ctx.Done():
		case err = <-errc:
			err = fmt.Errorf("sip: listener stopped: %w", err)
		}
		if err != nil || ctx.Err() != nil {
			break
		}
	}
	// Waiters are released even when Run ends before serving: they learn
	// of the failure from Run's error.
	close(e.ready)
	if err == nil && ctx.Err() == nil {
		e.log.Info("sip: listening", "addrs", e.addrs, "public_ip", e.cfg.PublicIP)
		select {
		case <-ctx.Done():
		case err = <-errc:
			err = fmt.Errorf("sip: listener stopped: %w", err)
		}
	}
	e.closeListeners()
	e.ua.Close()
	e.ws.wait()
	return err
}

// Ready is closed once the listeners are served.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

func (e *Engine) handleInvite(req *gosip.Request, tx gosip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		e.handleReinvite(req, tx)
		return
	}
	h := e.onInvite.Load()
	if h == nil {
		tx.Respond(gosip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return
	}
	in, err := e.newInbound(req, tx)
	if err != nil {
		e.log.Warn("sip: malformed INVITE refused", "source", req.Source(), "error", err)
		tx.Respond(gosip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	(*h)(in)
	if !in.finished {
		// A handler that forgot to answer must not leave the caller waiting.
		in.Reject(500, "Server Internal Error")
	}
}

// handleReinvite answers an in-dialog INVITE (hold, session refresh) with
// the SDP already agreed: media stays anchored where it is.
func (e *Engine) handleReinvite(req *gosip.Request, tx gosip.ServerTransaction) {
	leg := e.legFor(req)
	if leg == nil {
		tx.Respond(gosip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if rm, err := media.ParseSDP(req.Body()); err == nil && rm.Addr != nil {
		leg.Media.SetRemote(rm.Addr)
	}
	res := gosip.NewSDPResponseFromRequest(req, leg.localSDP)
	tx.Respond(res)
}

// legFor finds the established leg an in-dialog request belongs to, as UAC
// or UAS.
func (e *Engine) legFor(req *gosip.Request) *Leg {
	e.legsMu.RLock()
	defer e.legsMu.RUnlock()
	if id, err := gosip.DialogIDFromRequestUAC(req); err == nil {
		if l := e.legs[legKey(true, id)]; l != nil {
			return l
		}
	}
	if id, err := gosip.DialogIDFromRequestUAS(req); err == nil {
		if l := e.legs[legKey(false, id)]; l != nil {
			return l
		}
	}
	return nil
}

// legKey keys a leg by its role as well as its dialog ID. A call that
// comes back to this node (a line to itself, a proxy that keeps the
// Call-ID and tags) has its outbound and its inbound leg here with one
// and the same dialog ID string; sipgo builds both from the two tags in
// opposite orders. The role tells them apart: a request for the outbound
// leg matches it as UAC, one for the inbound leg as UAS.
func legKey(uac bool, dialogID string) string {
	if uac {
		return "uac:" + dialogID
	}
	return "uas:" + dialogID
}

func (e *Engine) handleAck(req *gosip.Request, tx gosip.ServerTransaction) {
	if leg := e.legFor(req); leg != nil && leg.ack != nil {
		leg.ack(req, tx)
	}
}

// handleInfo takes DTMF sent as SIP INFO (application/dtmf-relay or
// application/dtmf) into the leg's media session.
func (e *Engine) handleInfo(req *gosip.Request, tx gosip.ServerTransaction) {
	leg := e.legFor(req)
	if leg == nil {
		tx.Respond(gosip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(h.Value())
	}
	if strings.HasPrefix(ct, "application/dtmf") {
		digit, ms, err := media.ParseDTMFRelay(req.Body())
		if err != nil {
			e.log.Warn("sip: INFO with unreadable DTMF", "call_ref", leg.CallRef, "error", err)
			tx.Respond(gosip.NewResponseFromRequest(req, 400, "Bad Request", nil))
			return
		}
		leg.Media.InjectDTMF(digit, ms)
	}
	tx.Respond(gosip.NewResponseFromRequest(req, 200, "OK", nil))
}

func (e *Engine) handleOptions(req *gosip.Request, tx gosip.ServerTransaction) {
	res := gosip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(gosip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, MESSAGE"))
	res.AppendHeader(gosip.NewHeader("Accept", "application/sdp"))
	if err := tx.Respond(res); err != nil {
		e.log.Debug("sip: OPTIONS response failed", "error", err)
	}
}

func (e *Engine) handleBye(req *gosip.Request, tx gosip.ServerTransaction) {
	if leg := e.legFor(req); leg != nil {
		leg.remoteBye(req, tx)
		return
	}
	tx.Respond(gosip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

func (e *Engine) addLeg(id string, l *Leg) {
	e.legsMu.Lock()
	e.legs[id] = l
	e.legsMu.Unlock()
}

func (e *Engine) removeLeg(id string) {
	e.legsMu.Lock()
	delete(e.legs, id)
	e.legsMu.Unlock()
}

// ActiveLegs is the number of established outbound dialogs.
func (e *Engine) ActiveLegs() int {
	e.legsMu.RLock()
	defer e.legsMu.RUnlock()
	return len(e.legs)
}

// onUnreachable ends the INVITEs an ICMP error on the UDP listener is
// about (icmp.go).
func (e *Engine) onUnreachable(ev icmpEvent) {
	n := e.icmp.unreachable(ev)
	e.noisy.Debug("sip: ICMP error on the UDP listener", "reason", ev.reason, "destination", ev.dest.String(),
		"offender", ev.offender.String(), "invites_ended", n)
}

func registerAll(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// SetLibraryLogger routes what sipgo logs through its package-wide
// logger rather than an engine's (connection bookkeeping and headers it
// fails to parse lazily, all at Debug; by default slog.Default) to l, rate
// limited and truncated. sipgo keeps that logger in a package variable
// read without synchronization, so call this once at process start,
// before any Engine or sipgo user agent exists.
func SetLibraryLogger(l *slog.Logger, cfg logtext.LimitConfig) {
	gosip.SetDefaultLogger(logtext.Limit(l.With("component", "sipgo"), cfg))
}
