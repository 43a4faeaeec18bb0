package sip

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// SIP over WebSocket (RFC 7118) at /ws on the node's HTTP listener.
//
// sipgo's WS transport owns its listener: it accepts raw connections and
// does the HTTP upgrade itself (gobwas/ws), answering subprotocol "sip".
// redial serves a single HTTP listener, so WSHandler checks the upgrade
// request, hijacks the connection and hands it to sipgo through a
// listener of ours (wsListener). The connection is wrapped (wsConn) so
// that sipgo's upgrader reads the request again: the request line and
// headers as net/http parsed them, then the bytes net/http had buffered
// past them, then the socket. The replayed request is already in memory,
// so sipgo's accept loop, which upgrades one connection at a time, never
// waits on a slow client. Connections that came over TLS go to a second
// listener served by sipgo's WSS transport: their requests say "WSS",
// their bindings "wss".
//
// wsConn stands where guard_tcp.go stands for TCP. It decodes the
// client's frames itself and hands sipgo only whole messages the guard
// passed, re-framed as one masked text frame each, because sipgo's own
// frame reader is loose: it drops continuation and binary frames (RFC
// 7118 allows both), silently cuts messages beyond its 32 KiB read
// buffer, allocates whatever a frame header announces up to 64 KiB, never
// answers a ping and closes without a close frame. Here:
//   - A message (a frame, or fragments together) larger than
//     MessageLimits.MaxMessage closes the socket with 1009 as soon as the
//     frame header announces it: its payload is never read, so a 10 MB
//     frame costs a few bytes. Other sockets are untouched.
//   - Whole messages go through guard.check as datagrams do (the
//     WebSocket frames them, so Content-Length is optional, RFC 7118
//     section 5): refused requests are answered (400, 413, 505, 513) down
//     the socket, which stays open since the framing is intact.
//   - Pings are answered, a close frame is echoed, and a socket closed by
//     the node (shutdown) gets 1001; protocol errors get 1002.
// Writes from sipgo come in two pieces per frame (header, then payload);
// the wrapper joins them so that its own frames (pong, close, refusals)
// never land between the two.
//
// Sending down a socket: sipgo pools an accepted WebSocket under its
// remote address, the request's Source(). A request with transport WS (or
// WSS) and that address as destination is written to the pooled
// connection, with Via "SIP/2.0/WS <public IP>:<HTTP port>" (sipgo takes
// the port from the connection). Two things need care, which
// SendToSocket does: the client sending it must not pin a local address
// (the UDP client does: sipgo would then look the WS pool up by that
// address and, finding nothing, dial the browser), and a socket that is
// gone must be refused before sipgo gets the request, since sipgo would
// then dial ws://<browser address> itself. In-dialog requests of dialogs
// over a socket go down it because the ws/wss DialogUAs rewrite the
// destination to the dialog's source (RewriteContact); their Contact is
// sip:redial@<public IP>;transport=ws (browsers send everything down
// their one socket whatever the URIs say).

// ErrSocketClosed is returned by SendToSocket when no WebSocket from that
// source is open on this node.
var ErrSocketClosed = errors.New("no such WebSocket open")

// wsWriteTimeout bounds one write to a browser; a socket that cannot take
// a frame within it is closed rather than holding sipgo's writers.
const wsWriteTimeout = 10 * time.Second

// wsServer is the engine's WebSocket side.
type wsServer struct {
	// log is rate limited: clients choose how often it is called.
	log   *slog.Logger
	guard *guard
	ready <-chan struct{}
	// plain feeds sipgo's WS transport, secure its WSS transport.
	plain, secure *wsListener

	mu     sync.Mutex
	closed bool
	conns  map[string]*wsConn // by source
	hooks  []func(source string)
	// bg tracks sipgo's accept loops and the close hooks running.
	bg    sync.WaitGroup
	mOpen prometheus.Gauge
}

// initWS sets up the WebSocket side: the listeners sipgo will serve, and
// a client and a DialogUA for each of ws and wss.
func (e *Engine) initWS(sipgoLog *slog.Logger, reg *prometheus.Registry) error {
	s := &wsServer{log: e.noisy, guard: e.guard, ready: e.ready, plain: newWSListener(), secure: newWSListener(),
		conns: map[string]*wsConn{},
		mOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_sip_websockets",
			Help: "SIP WebSocket connections (ws and wss) open on this node."})}
	if reg != nil {
		if err := reg.Register(s.mOpen); err != nil {
			return fmt.Errorf("sip: metrics: %w", err)
		}
	}
	for _, network := range []string{"ws", "wss"} {
		// No connection address and no port: sipgo finds the socket by
		// the destination and writes the HTTP port into Via itself.
		c, err := sipgo.NewClient(e.ua, sipgo.WithClientLogger(sipgoLog), sipgo.WithClientHostname(e.cfg.PublicIP))
		if err != nil {
			return fmt.Errorf("sip: client %s: %w", network, err)
		}
		e.client[network] = c
		contact := gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: e.cfg.PublicIP,
			UriParams: gosip.NewParams()}}
		contact.Address.UriParams.Add("transport", network)
		e.dlg[network] = &sipgo.DialogUA{Client: c, ContactHDR: contact, RewriteContact: true}
	}
	e.ws = s
	return nil
}

// WSHandler serves SIP over WebSocket (RFC 7118): the app mounts it at
// GET /ws on the HTTP listener. Any Origin is accepted (agents
// authenticate with SIP digest); the client must offer subprotocol "sip".
// Requests arriving over TLS are served as WSS.
func (e *Engine) WSHandler() http.Handler { return e.ws }

// OnWSClosed registers fn to be called once for every WebSocket that
// ends, whoever closed it (the client, an error, the node shutting down),
// with the socket's source: its remote "ip:port", what Request.Source()
// says for the requests that came down it. Every registered function is
// called, each in its own goroutine (sipgo closes sockets holding a lock
// of its own); Run waits for them before it returns. Sockets that end
// before fn is registered do not call it.
func (e *Engine) OnWSClosed(fn func(source string)) {
	e.ws.mu.Lock()
	defer e.ws.mu.Unlock()
	e.ws.hooks = append(e.ws.hooks, fn)
}

// SendToSocket sends req down the WebSocket whose source is source (a
// REGISTER's Request.Source()) in a client transaction, setting its
// transport (WS or WSS, as the socket came) and destination. It returns
// an error wrapping ErrSocketClosed when no such socket is open here.
func (e *Engine) SendToSocket(ctx context.Context, req *gosip.Request, source string) (gosip.ClientTransaction, error) {
	c := e.ws.lookup(source)
	if c == nil {
		return nil, fmt.Errorf("sip: send %s to %s: %w", req.Method, source, ErrSocketClosed)
	}
	network := c.network()
	req.SetTransport(strings.ToUpper(network))
	req.SetDestination(source)
	tx, err := e.client[network].TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sip: send %s to %s: %w", req.Method, source, err)
	}
	return tx, nil
}

// serve starts sipgo's accept loops on the listeners; the channels close
// when each is accepting.
func (s *wsServer) serve(srv *sipgo.Server) []<-chan struct{} {
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		srv.ServeWS(s.plain)
	}()
	go func() {
		defer s.bg.Done()
		srv.ServeWSS(s.secure)
	}()
	return []<-chan struct{}{s.plain.serving, s.secure.serving}
}

// close stops taking sockets and closes the open ones (with 1001).
func (s *wsServer) close() {
	if s == nil {
		return
	}
	s.plain.Close()
	s.secure.Close()
	s.mu.Lock()
	s.closed = true
	open := make([]*wsConn, 0, len(s.conns))
	for _, c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// wait returns once sipgo's accept loops and the close hooks are done.
func (s *wsServer) wait() {
	if s != nil {
		s.bg.Wait()
	}
}

func (s *wsServer) lookup(source string) *wsConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[source]
}

// add registers a socket; false once the engine has stopped.
func (s *wsServer) add(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c.source] = c
	s.mOpen.Inc()
	return true
}

// ended forgets a socket and runs the close hooks. Called once per
// socket, from its Close: never from a goroutine running after wait
// (close closes every socket it knows first).
func (s *wsServer) ended(c *wsConn) {
	s.mu.Lock()
	if s.conns[c.source] == c {
		delete(s.conns, c.source)
		s.mOpen.Dec()
	}
	hooks := append([]func(string){}, s.hooks...)
	s.mu.Unlock()
	s.log.Debug("sip: WebSocket closed", "transport", c.network(), "source", c.source)
	// sipgo closes sockets while holding its connection pool's lock: the
	// hooks (Redis calls) run outside it.
	for _, h := range hooks {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			h(c.source)
		}()
	}
}

// ServeHTTP checks an upgrade request and hands its connection to sipgo.
func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code, why := checkUpgrade(w.Header(), r); code != 0 {
		http.Error(w, why, code)
		return
	}
	select {
	case <-s.ready:
	default:
		http.Error(w, "SIP is not running yet", http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "SIP has stopped", http.StatusServiceUnavailable)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Warn("sip: WebSocket upgrade impossible: connection not hijackable", "error", err)
		http.Error(w, "WebSocket upgrade not possible here", http.StatusInternalServerError)
		return
	}
	// The server's read and write deadlines stay on a hijacked connection.
	conn.SetDeadline(time.Time{})
	c := &wsConn{Conn: conn, srv: s, source: conn.RemoteAddr().String(), secure: r.TLS != nil,
		prefix: requestBytes(r), in: brw.Reader}
	c.cond = sync.NewCond(&c.wmu)
	if !s.add(c) {
		conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		conn.Close()
		return
	}
	s.log.Debug("sip: WebSocket opened", "transport", c.network(), "source", c.source, "origin", r.Header.Get("Origin"))
	ln := s.plain
	if c.secure {
		ln = s.secure
	}
	if !ln.push(c) {
		c.Close()
	}
}

// checkUpgrade returns the status refusing r and why, or 0 when it is a
// WebSocket upgrade that sipgo's upgrader will accept, offering
// subprotocol sip (RFC 7118 section 4.1: without it, 400).
func checkUpgrade(h http.Header, r *http.Request) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		h.Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, "SIP over WebSocket: GET with an Upgrade: websocket request"
	case !hasToken(r.Header.Values("Connection"), "upgrade") || !hasToken(r.Header.Values("Upgrade"), "websocket"):
		h.Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, "SIP over WebSocket (RFC 7118): connect with a WebSocket offering subprotocol sip"
	case r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return http.StatusBadRequest, "WebSocket upgrade needs HTTP/1.1"
	case strings.TrimSpace(r.Header.Get("Sec-WebSocket-Version")) != "13":
		h.Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, "WebSocket version 13 required"
	case !validKey(r.Header.Get("Sec-WebSocket-Key")):
		return http.StatusBadRequest, "missing or malformed Sec-WebSocket-Key"
	case !hasSubprotocol(r.Header.Values("Sec-WebSocket-Protocol"), "sip"):
		return http.StatusBadRequest, "WebSocket subprotocol sip required (RFC 7118)"
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
		return http.StatusBadRequest, "WebSocket upgrade request with a body"
	}
	return 0, ""
}

// hasToken reports whether a comma-separated header holds token, in any
// case (Connection: keep-alive, Upgrade).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hasSubprotocol is hasToken for subprotocols, which compare exactly.
func hasSubprotocol(values []string, proto string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(t) == proto {
				return true
			}
		}
	}
	return false
}

func validKey(k string) bool {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	return err == nil && len(b) == 16 && len(strings.TrimSpace(k)) == 24
}

// requestBytes re-serializes the request net/http consumed: the request
// line as sent, Host, then the headers (canonical names, values as sent;
// they cannot hold CR or LF).
func requestBytes(r *http.Request) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", r.Method, r.RequestURI, r.Proto, r.Host)
	r.Header.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// wsListener is what sipgo's WS (or WSS) transport accepts from: the
// connections WSHandler hijacked.
type wsListener struct {
	conns       chan net.Conn
	done        chan struct{}
	closeOnce   sync.Once
	serving     chan struct{}
	servingOnce sync.Once
}

func newWSListener() *wsListener {
	return &wsListener{conns: make(chan net.Conn), done: make(chan struct{}), serving: make(chan struct{})}
}

func (l *wsListener) Accept() (net.Conn, error) {
	l.servingOnce.Do(func() { close(l.serving) })
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case <-l.done:
		return nil, net.ErrClosed
	case c := <-l.conns:
		return c, nil
	}
}

// push hands c to sipgo; false when the listener is closed.
func (l *wsListener) push(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	case l.conns <- c:
		return true
	}
}

func (l *wsListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: the sockets come from the HTTP listener, whose
// address the engine does not know. sipgo only records its port.
func (l *wsListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
