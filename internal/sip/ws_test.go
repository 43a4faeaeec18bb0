package sip

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	gosip "github.com/emiago/sipgo/sip"

	"redial/internal/config"
	"redial/internal/media"
	"redial/internal/testenv"
)

// wsEnv is an engine serving WSHandler on an httptest server.
type wsEnv struct {
	e   *Engine
	srv *httptest.Server
	// stop ends the engine and returns once Run did (close hooks done).
	stop func()

	mu     sync.Mutex
	closed map[string]int // OnWSClosed calls by source
	// invites receives "transport source" of each INVITE the engine got.
	invites chan string
}

func startWS(t *testing.T, useTLS bool) *wsEnv {
	t.Helper()
	env := &wsEnv{closed: map[string]int{}, invites: make(chan string, 10)}
	port := testenv.FreePort(t)
	rtpBase := 6000 + (port%100)*20 // this package's range (testenv's package comment)
	pool, err := media.NewPortPool(rtpBase, rtpBase+18)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: parked sockets free their ports.
	t.Cleanup(func() { pool.Close() })
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := New(Config{Listeners: []config.Listener{{Network: "udp", Addr: "127.0.0.1:" + strconv.Itoa(port)}}, PublicIP: "127.0.0.1"},
		Deps{Logger: log, Ports: pool, OnInvite: func(in *Inbound) {
			env.invites <- in.Req.Transport() + " " + in.Req.Source()
			in.Reject(486, "Busy Here")
		}})
	if err != nil {
		t.Fatal(err)
	}
	env.e = e
	e.OnWSClosed(func(source string) {
		env.mu.Lock()
		env.closed[source]++
		env.mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	env.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("engine did not stop")
			}
		})
	}
	t.Cleanup(env.stop)
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("engine stopped at start: %v", err)
	}
	env.srv = httptest.NewUnstartedServer(e.WSHandler())
	if useTLS {
		env.srv.StartTLS()
	} else {
		env.srv.Start()
	}
	t.Cleanup(env.srv.Close)
	return env
}

func (env *wsEnv) closedCount(source string) int {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.closed[source]
}

// dial opens a WebSocket to /ws offering protos and returns it with its
// local address, the source the engine sees.
func (env *wsEnv) dial(t *testing.T, protos ...string) (*websocket.Conn, string, *http.Response, error) {
	t.Helper()
	var mu sync.Mutex
	var local string
	tr := env.srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			local = c.LocalAddr().String()
			mu.Unlock()
		}
		return c, err
	}
	scheme := "ws"
	if env.srv.TLS != nil {
		scheme = "wss"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, scheme+"://"+env.srv.Listener.Addr().String()+"/ws",
		&websocket.DialOptions{Subprotocols: protos, HTTPClient: &http.Client{Transport: tr}})
	mu.Lock()
	defer mu.Unlock()
	return c, local, resp, err
}

func (env *wsEnv) mustDial(t *testing.T) (*websocket.Conn, string) {
	t.Helper()
	c, source, _, err := env.dial(t, "sip")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, source
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// sipRequest is a request as SIP.js writes it: a .invalid Via host and
// Content-Length (some stacks leave it out over WebSocket).
func sipRequest(method, transport, callID, extra string) string {
	return method + " sip:redial@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " df7jal23ls0d.invalid;branch=z9hG4bK" + randHex(6) + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:redial@127.0.0.1>\r\n" +
		"From: <sip:1001@127.0.0.1>;tag=" + randHex(4) + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 " + method + "\r\n" + extra + "\r\n"
}

// readSIP reads messages from c until one satisfies ok.
func readSIP(t *testing.T, c *websocket.Conn, ok func(string) bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("message type %v, want text", typ)
		}
		if ok(string(data)) {
			return string(data)
		}
	}
}

func isFinal(callID string) func(string) bool {
	return func(m string) bool {
		return strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1") && strings.Contains(m, "Call-ID: "+callID+"\r\n")
	}
}

func writeText(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// answer reads a request the engine sent down c and answers it 200.
func answer(t *testing.T, c *websocket.Conn, method string) *gosip.Request {
	t.Helper()
	raw := readSIP(t, c, func(m string) bool { return strings.HasPrefix(m, method+" ") })
	msg, err := gosip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("engine's %s does not parse: %v\n%s", method, err, raw)
	}
	req := msg.(*gosip.Request)
	writeText(t, c, gosip.NewResponseFromRequest(req, 200, "OK", nil).String())
	return req
}

func sendToSocket(t *testing.T, e *Engine, source string) (*gosip.Request, <-chan *gosip.Response) {
	t.Helper()
	req := gosip.NewRequest(gosip.OPTIONS, gosip.Uri{Scheme: "sip", User: "1001", Host: "df7jal23ls0d.invalid", UriParams: gosip.HeaderParams{{K: "transport", V: "ws"}}})
	req.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "127.0.0.1"}})
	tx, err := e.SendToSocket(context.Background(), req, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tx.Terminate)
	return req, tx.Responses()
}

func wantResponse(t *testing.T, ch <-chan *gosip.Response, code int) {
	t.Helper()
	select {
	case res := <-ch:
		if res.StatusCode != code {
			t.Fatalf("response %d, want %d", res.StatusCode, code)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no response to the engine's request")
	}
}

func TestWSRequestsBothWays(t *testing.T) {
	env := startWS(t, false)
	c, source := env.mustDial(t)
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q, want sip", c.Subprotocol())
	}

	callID := randHex(8)
	writeText(t, c, sipRequest("OPTIONS", "WS", callID, "Content-Length: 0\r\n"))
	if res := readSIP(t, c, isFinal(callID)); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS over WebSocket: %s", res)
	}
	// The engine sees the socket's address as the request's source, with
	// transport WS.
	callID = randHex(8)
	writeText(t, c, sipRequest("INVITE", "WS", callID, "Contact: <sip:1001@df7jal23ls0d.invalid;transport=ws>\r\nContent-Length: 0\r\n"))
	if res := readSIP(t, c, isFinal(callID)); !strings.HasPrefix(res, "SIP/2.0 486 ") {
		t.Fatalf("INVITE over WebSocket: %s", res)
	}
	if got := <-env.invites; got != "WS "+source {
		t.Fatalf("INVITE seen as %q, want %q", got, "WS "+source)
	}

	// The engine's own request goes down the same socket.
	_, responses := sendToSocket(t, env.e, source)
	req := answer(t, c, "OPTIONS")
	via := req.Via()
	if via.Transport != "WS" || via.Host != "127.0.0.1" || strconv.Itoa(via.Port) != env.srv.URL[strings.LastIndex(env.srv.URL, ":")+1:] {
		t.Fatalf("Via of the engine's request: %s", via.Value())
	}
	wantResponse(t, responses, 200)

	// A source with no socket is refused rather than dialled.
	_, err := env.e.SendToSocket(context.Background(), gosip.NewRequest(gosip.OPTIONS, gosip.Uri{Scheme: "sip", Host: "127.0.0.1"}), "127.0.0.1:9")
	if !errors.Is(err, ErrSocketClosed) {
		t.Fatalf("send to no socket: %v", err)
	}
}

func TestWSRefusesWhatIsNotSIPOverWebSocket(t *testing.T) {
	env := startWS(t, false)
	resp, err := http.Get(env.srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("plain GET: %d, Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	for _, protos := range [][]string{nil, {"chat", "SIP"}} {
		c, _, resp, err := env.dial(t, protos...)
		if err == nil {
			c.CloseNow()
			t.Fatalf("subprotocols %q accepted", protos)
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("subprotocols %q: %v, response %v", protos, err, resp)
		}
	}
	// Several offered, sip among them: accepted, answering sip.
	c, _, _, err := env.dial(t, "chat", "sip")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
}

func TestWSCloseHookAndShutdown(t *testing.T) {
	env := startWS(t, false)
	a, sourceA := env.mustDial(t)
	b, sourceB := env.mustDial(t)

	// A normal close is echoed (Close waits for the echo) and reported
	// once.
	if err := a.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := env.closedCount(sourceA); n != 1 {
			return fmt.Errorf("hook called %d times for %s", n, sourceA)
		}
		return nil
	})
	if _, err := env.e.SendToSocket(context.Background(), gosip.NewRequest(gosip.OPTIONS, gosip.Uri{Scheme: "sip", Host: "127.0.0.1"}), sourceA); !errors.Is(err, ErrSocketClosed) {
		t.Fatalf("send to a closed socket: %v", err)
	}

	// Shutdown closes the other socket with 1001 and reports it; Run
	// returns after the hooks ran.
	env.stop()
	if n := env.closedCount(sourceB); n != 1 {
		t.Fatalf("hook called %d times for %s at shutdown", n, sourceB)
	}
	if n := env.closedCount(sourceA); n != 1 {
		t.Fatalf("hook called %d times for %s", n, sourceA)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := b.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("socket at shutdown: %v, want close 1001", err)
	}
	// Afterwards, upgrades are refused.
	if _, _, resp, err := env.dial(t, "sip"); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after shutdown: %v %v", err, resp)
	}
}

// rawWS is a WebSocket client written by hand, to send what browsers
// would not.
type rawWS struct {
	c net.Conn
	r *bufio.Reader
}

// rawDial upgrades a connection to /ws, sending early (frames) in the
// same write as the request.
func rawDial(t *testing.T, addr string, early []byte) *rawWS {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	key := make([]byte, 16)
	rand.Read(key)
	k := base64.StdEncoding.EncodeToString(key)
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate\r\nOrigin: https://crm.example.com\r\n\r\n"
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	w := &rawWS{c: c, r: bufio.NewReader(c)}
	resp, err := http.ReadResponse(w.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "sip" || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	return w
}

// frame is a client frame: masked with a random key.
func frame(fin bool, op byte, payload []byte) []byte {
	var key [4]byte
	rand.Read(key[:])
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	if n := len(payload); n < 126 {
		b = append(b, 0x80|byte(n))
	} else {
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	p := append([]byte(nil), payload...)
	unmask(p, key)
	return append(b, p...)
}

func (w *rawWS) read(t *testing.T) (byte, []byte) {
	t.Helper()
	h, err := readFrameHeader(w.r)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h.masked || !h.fin || h.rsv != 0 {
		t.Fatalf("server frame header %+v", h)
	}
	p := make([]byte, h.length)
	if _, err := io.ReadFull(w.r, p); err != nil {
		t.Fatal(err)
	}
	return h.op, p
}

func (w *rawWS) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if _, err := w.c.Write(f); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWSFramesFromClients(t *testing.T) {
	env := startWS(t, false)
	addr := env.srv.Listener.Addr().String()

	// Fragments with a ping between them, the first sent with the
	// handshake request (net/http buffered it before the hijack).
	callID := randHex(8)
	opts := []byte(sipRequest("OPTIONS", "WS", callID, ""))
	w := rawDial(t, addr, frame(false, opText, opts[:10]))
	w.send(t, frame(false, opContinuation, opts[10:40]), frame(true, opPing, []byte("hi")), frame(true, opContinuation, opts[40:]))
	if op, p := w.read(t); op != opPong || string(p) != "hi" {
		t.Fatalf("ping answered with op %d %q", op, p)
	}
	if op, p := w.read(t); op != opText || !isFinal(callID)(string(p)) || !strings.HasPrefix(string(p), "SIP/2.0 200 ") {
		t.Fatalf("fragmented OPTIONS answered with op %d %q", op, p)
	}

	// Binary frames carry SIP too (RFC 7118 section 5).
	callID = randHex(8)
	w.send(t, frame(true, opBinary, []byte(sipRequest("OPTIONS", "WS", callID, "Content-Length: 0\r\n"))))
	if _, p := w.read(t); !isFinal(callID)(string(p)) || !strings.HasPrefix(string(p), "SIP/2.0 200 ") {
		t.Fatalf("binary OPTIONS answered with %q", p)
	}

	// The guard answers what it refuses, and the socket goes on.
	callID = randHex(8)
	w.send(t, frame(true, opText, []byte(strings.Replace(sipRequest("OPTIONS", "WS", callID, ""), " SIP/2.0\r\n", " SIP/3.0\r\n", 1))))
	if _, p := w.read(t); !strings.HasPrefix(string(p), "SIP/2.0 505 ") || !strings.Contains(string(p), callID) {
		t.Fatalf("SIP/3.0 answered with %q", p)
	}
	callID = randHex(8)
	w.send(t, frame(true, opText, []byte(sipRequest("OPTIONS", "WS", callID, "Content-Length: 10000\r\n")+strings.Repeat("x", 10000))))
	if _, p := w.read(t); !strings.HasPrefix(string(p), "SIP/2.0 413 ") {
		t.Fatalf("oversize body answered with %q", p)
	}
	w.send(t, frame(true, opText, []byte("\r\n\r\n")))
	if _, p := w.read(t); string(p) != "\r\n" {
		t.Fatalf("keep-alive answered with %q", p)
	}

	// A close frame is echoed with its code.
	w.send(t, frame(true, opClose, closePayload(1000, "done")))
	if op, p := w.read(t); op != opClose || string(p) != string(closePayload(1000, "")) {
		t.Fatalf("close answered with op %d %q", op, p)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := env.closedCount(w.c.LocalAddr().String()); n != 1 {
			return fmt.Errorf("hook called %d times", n)
		}
		return nil
	})

	// A protocol error (an unmasked frame) closes with 1002.
	w = rawDial(t, addr, nil)
	w.send(t, appendFrame(nil, opText, opts, false))
	if op, p := w.read(t); op != opClose || len(p) < 2 || int(p[0])<<8|int(p[1]) != closeProtocolError {
		t.Fatalf("unmasked frame answered with op %d %q", op, p)
	}
}

func TestWSHugeFrameClosesOnlyItsSocket(t *testing.T) {
	env := startWS(t, false)
	other, _ := env.mustDial(t)
	w := rawDial(t, env.srv.Listener.Addr().String(), nil)
	source := w.c.LocalAddr().String()

	const size = 10 << 20
	chunk := make([]byte, 64<<10)
	hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	binary.BigEndian.PutUint64(hdr[2:10], size)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w.send(t, hdr)
	// The server stops reading at the header: the rest goes until the
	// socket is reset, or into the kernel's buffers.
	for sent := 0; sent < size; sent += len(chunk) {
		if _, err := w.c.Write(chunk); err != nil {
			break
		}
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := env.closedCount(source); n != 1 {
			return fmt.Errorf("hook called %d times", n)
		}
		return nil
	})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2<<20 {
		t.Fatalf("a 10 MB frame made the process allocate %d bytes", grew)
	}
	// The socket ends with 1009 (when the close frame is not lost to the
	// reset) or at once.
	if h, err := readFrameHeader(w.r); err == nil {
		p := make([]byte, h.length)
		io.ReadFull(w.r, p)
		if h.op != opClose || len(p) < 2 || int(p[0])<<8|int(p[1]) != closeTooBig {
			t.Fatalf("after the huge frame: op %d %q", h.op, p)
		}
	}

	// The other socket still works.
	callID := randHex(8)
	writeText(t, other, sipRequest("OPTIONS", "WS", callID, "Content-Length: 0\r\n"))
	if res := readSIP(t, other, isFinal(callID)); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS on the other socket: %s", res)
	}
}

func TestWSSOverTLS(t *testing.T) {
	env := startWS(t, true)
	c, source := env.mustDial(t)

	callID := randHex(8)
	writeText(t, c, sipRequest("INVITE", "WSS", callID, "Contact: <sip:1001@df7jal23ls0d.invalid;transport=ws>\r\nContent-Length: 0\r\n"))
	if res := readSIP(t, c, isFinal(callID)); !strings.HasPrefix(res, "SIP/2.0 486 ") {
		t.Fatalf("INVITE over WSS: %s", res)
	}
	if got := <-env.invites; got != "WSS "+source {
		t.Fatalf("INVITE seen as %q, want %q", got, "WSS "+source)
	}
	_, responses := sendToSocket(t, env.e, source)
	if req := answer(t, c, "OPTIONS"); req.Via().Transport != "WSS" {
		t.Fatalf("Via of the engine's request over WSS: %s", req.Via().Value())
	}
	wantResponse(t, responses, 200)
}

// An INVITE to an agent registered over WebSocket goes down the socket it
// registered from, although its Request-URI names a made-up host (SIP.js
// contacts are <random>.invalid), and so do the ACK and the BYE. Pinning
// a request's route once (issue 14) overwrote that destination with the
// Request-URI's host, and browser agents got no calls.
func TestDialDownAgentSocket(t *testing.T) {
	env := startWS(t, false)
	c, source := env.mustDial(t)
	// A browser speaks first (its REGISTER binds the socket the calls go
	// down). sipgo adds an accepted socket to its pool only after the
	// handshake's reply is written, so an INVITE sent the moment the
	// client's handshake returns could miss it and dial out instead; an
	// answered OPTIONS shows the socket is in the pool.
	callID := randHex(8)
	writeText(t, c, sipRequest("OPTIONS", "WS", callID, "Content-Length: 0\r\n"))
	readSIP(t, c, isFinal(callID))
	done := make(chan DialResult, 1)
	go func() {
		done <- env.e.Dial(context.Background(), DialRequest{CallRef: "to-agent", Target: "sip:1001@df7jal23ls0d.invalid;transport=ws",
			Socket: source, Codecs: []media.Codec{media.PCMU}, RingTimeout: 10 * time.Second})
	}()
	raw := readSIP(t, c, func(m string) bool { return strings.HasPrefix(m, "INVITE ") })
	msg, err := gosip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("engine's INVITE does not parse: %v\n%s", err, raw)
	}
	inv := msg.(*gosip.Request)
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	ok := gosip.NewResponseFromRequest(inv, 200, "OK", []byte(sdp))
	ok.To().Params.Add("tag", randHex(4))
	ok.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "1001", Host: "df7jal23ls0d.invalid",
		UriParams: gosip.HeaderParams{{K: "transport", V: "ws"}}}})
	ok.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	writeText(t, c, ok.String())
	readSIP(t, c, func(m string) bool { return strings.HasPrefix(m, "ACK ") })
	var res DialResult
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not return after the ACK")
	}
	if res.Leg == nil {
		t.Fatalf("no leg: %d %s %v", res.Code, res.Reason, res.TransportErr)
	}
	hung := make(chan struct{})
	go func() { res.Leg.Hangup(context.Background()); close(hung) }()
	answer(t, c, "BYE")
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("Hangup did not return after the BYE's 200")
	}
}
