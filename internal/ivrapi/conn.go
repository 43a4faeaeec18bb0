package ivrapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/coder/websocket"

	"redial/internal/auth"
	"redial/internal/cluster"
)

// Close codes beyond RFC 6455's own.
const (
	// StatusTooSlow closes a client that fell too far behind its events.
	StatusTooSlow websocket.StatusCode = 4000
	// StatusRevoked closes a connection whose token was revoked.
	StatusRevoked websocket.StatusCode = 4001
)

// writeTimeout bounds one frame's write: a client that does not read for
// that long is as good as gone.
const writeTimeout = 10 * time.Second

// conn is one application's WebSocket.
type conn struct {
	s      *Service
	id     string
	owner  string // "<host>/<id>": the owner name sessions know it by
	ident  auth.Identity
	remote string
	ws     *websocket.Conn

	ctx    context.Context // ends when the connection is to close
	cancel context.CancelFunc
	// io bounds the socket's reads and writes. It ends only after the
	// close handshake was tried: the library drops the connection without
	// a close frame when a read's context ends, so the code and reason
	// would never reach the client.
	io       context.Context
	ioCancel context.CancelFunc
	out      chan []byte

	closeOnce   sync.Once
	closeCode   websocket.StatusCode
	closeReason string

	mu sync.Mutex
	// subscribed is set by subscribe; keys holds its key filters (empty:
	// every key).
	subscribed bool
	keys       map[string]bool
	// lastSeq is the last event seq handed to the client per session, so
	// an event reaching it both as subscriber and owner goes out once.
	lastSeq map[string]uint64
	// owned are the sessions this connection controls: ivrid -> home.
	owned map[string]ownedSession
	// resync holds a session's events while its reaccept is on the way,
	// so the replay goes out first and in order.
	resync map[string][]ringEntry
	// queues runs one session's requests in order.
	queues   map[string]*sessionQueue
	inFlight int
	// reqs counts the requests being carried out.
	reqs sync.WaitGroup
	// seqMoved is closed (and replaced) whenever lastSeq moves.
	seqMoved chan struct{}
}

type ownedSession struct{ host, key string }

type sessionQueue struct {
	jobs []func()
}

func newConn(s *Service, ws *websocket.Conn, id auth.Identity, remote string) *conn {
	b := make([]byte, 8)
	rand.Read(b)
	cid := hex.EncodeToString(b)
	ctx, cancel := context.WithCancel(context.Background())
	io, ioCancel := context.WithCancel(context.Background())
	ws.SetReadLimit(s.cfg.MaxFrame)
	return &conn{s: s, id: cid, owner: s.cfg.Host + "/" + cid, ident: id, remote: remote, ws: ws,
		ctx: ctx, cancel: cancel, io: io, ioCancel: ioCancel, out: make(chan []byte, s.cfg.SendQueue),
		keys: map[string]bool{}, lastSeq: map[string]uint64{}, owned: map[string]ownedSession{},
		resync: map[string][]ringEntry{}, queues: map[string]*sessionQueue{}, seqMoved: make(chan struct{})}
}

// close ends the connection with code and reason; the first call wins.
func (c *conn) close(code websocket.StatusCode, reason, metric string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.s.m.closed.WithLabelValues(metric).Inc()
		c.cancel()
	})
}

// serve runs the connection until it closes.
func (c *conn) serve() {
	log := c.s.log.With("conn", c.id, "remote", c.remote, "token", c.ident.Name)
	log.Info("ivrapi: connected")
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.writeLoop(); c.ioCancel() }()
	go func() { defer wg.Done(); c.pingLoop() }()
	go func() {
		defer wg.Done()
		var revoked <-chan struct{}
		if c.s.deps.Auth != nil {
			revoked = c.s.deps.Auth.Revoked(c.ident)
		}
		select {
		case <-revoked:
			c.close(StatusRevoked, "token revoked", "revoked")
		case <-c.ctx.Done():
		}
	}()
	c.readLoop()
	c.cancel()
	wg.Wait()
	c.waitRequests()
	log.Info("ivrapi: disconnected", "code", int(c.closeCode), "reason", c.closeReason)
}

func (c *conn) readLoop() {
	for {
		typ, frame, err := c.ws.Read(c.io)
		if err != nil {
			switch {
			case c.ctx.Err() != nil:
			case websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusGoingAway:
				c.close(websocket.StatusNormalClosure, "", "client")
			case errors.Is(err, websocket.ErrMessageTooBig) || websocket.CloseStatus(err) == websocket.StatusMessageTooBig:
				// The library has sent 1009 already.
				c.close(websocket.StatusMessageTooBig, "frame too large", "too_large")
			default:
				c.close(websocket.StatusProtocolError, "read failed", "read_error")
			}
			return
		}
		if typ != websocket.MessageText {
			c.send(encodeError("", nil, errf(CodeBadRequest, "binary frames are not part of the API; send JSON text")))
			continue
		}
		c.handle(frame)
	}
}

// writeLoop sends queued frames until the connection ends, then closes the
// socket with the recorded code and reason.
func (c *conn) writeLoop() {
	for {
		select {
		case f := <-c.out:
			ctx, cancel := context.WithTimeout(c.io, writeTimeout)
			err := c.ws.Write(ctx, websocket.MessageText, f)
			cancel()
			if err != nil {
				c.close(websocket.StatusAbnormalClosure, "write failed", "write_error")
			}
		case <-c.ctx.Done():
			code, reason := c.closeCode, c.closeReason
			if code == 0 || code == websocket.StatusAbnormalClosure || code == websocket.StatusProtocolError {
				c.ws.CloseNow()
				return
			}
			c.ws.Close(code, reason)
			return
		}
	}
}

func (c *conn) pingLoop() {
	t := time.NewTicker(c.s.cfg.PingEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.io, c.s.cfg.PingEvery)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.close(websocket.StatusPolicyViolation, "no pong", "no_pong")
				return
			}
		}
	}
}

// send queues a frame; a client whose queue is full is too slow and is
// disconnected rather than letting it hold anything up.
func (c *conn) send(frame []byte) bool {
	select {
	case c.out <- frame:
		return true
	case <-c.ctx.Done():
		return false
	default:
		c.s.m.dropped.WithLabelValues("client_too_slow").Inc()
		c.close(StatusTooSlow, "too slow: send queue full", "too_slow")
		return false
	}
}

// wants reports whether the connection subscribed to ivrevents of key.
func (c *conn) wants(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subscribed && (len(c.keys) == 0 || c.keys[key])
}

// push hands an event of session ivrid to the client once, in seq order.
func (c *conn) push(ivrid string, seq uint64, frame []byte, last bool) {
	c.mu.Lock()
	if buf, ok := c.resync[ivrid]; ok {
		if len(buf) >= replayKept*4 {
			c.mu.Unlock()
			c.close(StatusTooSlow, "too many events while resuming", "too_slow")
			return
		}
		c.resync[ivrid] = append(buf, ringEntry{seq: seq, frame: frame})
		c.mu.Unlock()
		return
	}
	if seq <= c.lastSeq[ivrid] {
		c.mu.Unlock()
		return
	}
	if last {
		delete(c.lastSeq, ivrid)
		delete(c.owned, ivrid)
	} else {
		c.lastSeq[ivrid] = seq
	}
	// Sent under the lock, so a reply waiting in waitSeq goes out after.
	c.send(frame)
	close(c.seqMoved)
	c.seqMoved = make(chan struct{})
	c.mu.Unlock()
}

// waitSeq waits (briefly) until the client was sent session ivrid's event
// seq: a reply that must follow an event it caused (terminate after
// stopped) travels apart from it between nodes.
func (c *conn) waitSeq(ivrid string, seq uint64) {
	if seq == 0 {
		return
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		c.mu.Lock()
		_, open := c.lastSeq[ivrid]
		if c.lastSeq[ivrid] >= seq || !open {
			c.mu.Unlock()
			return
		}
		moved := c.seqMoved
		c.mu.Unlock()
		select {
		case <-moved:
		case <-t.C:
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// pushGone sends the api_stop of a session whose node died, if this
// connection owns it or watches its key.
func (c *conn) pushGone(ivrid, key string, frame []byte) {
	c.mu.Lock()
	_, owned := c.owned[ivrid]
	want := owned || (c.subscribed && (len(c.keys) == 0 || c.keys[key]))
	delete(c.owned, ivrid)
	delete(c.lastSeq, ivrid)
	c.mu.Unlock()
	if want {
		c.send(frame)
	}
}

// goodbye tells the homes of the sessions this connection owned that it is
// gone, so they start the grace.
func (c *conn) goodbye() {
	c.mu.Lock()
	owned := c.owned
	c.owned = map[string]ownedSession{}
	c.mu.Unlock()
	for ivrid, o := range owned {
		req := homeReq{Op: opGone, Domain: c.s.cfg.Domain, Key: o.key, IVRID: ivrid, Owner: c.owner}
		ctx, cancel := context.WithTimeout(context.Background(), goneTimeout)
		if _, err := c.s.call(ctx, o.host, req, goneTimeout); err != nil {
			c.s.log.Info("ivrapi: could not tell a session's node its owner left; its grace starts when the node notices", "ivrid", ivrid, "node", o.host, "error", err)
		}
		cancel()
	}
}

// handle parses one frame and starts the request.
func (c *conn) handle(frame []byte) {
	req, err := parseFrame(frame)
	if err != nil {
		name, qid := "", json.RawMessage(nil)
		if req != nil {
			name, qid = req.Name, req.QID
		}
		ae := asAPIError(err)
		c.s.countRequest(name, ae)
		c.s.noisy.Info("ivrapi: bad request", "conn", c.id, "name", name, "error", ae.Message)
		c.send(encodeError(name, qid, ae))
		return
	}
	if req.Name == reqUploadTemp && req.DestPath != "" {
		// The seed writes a static upload this way and answers it as
		// ivrapi_file_upload_static_result.
		req.Name = reqUploadStatic
	}
	if (req.Name == reqSubscribe || req.Name == reqUnsubscribe) && !c.ident.Has(auth.IVRAPI) {
		c.reply(req, nil, errf(CodeBadRequest, "%s: this token lacks capability %q", req.Name, auth.IVRAPI))
		return
	}
	switch req.Name {
	case reqSubscribe:
		c.mu.Lock()
		if !c.subscribed {
			c.keys = map[string]bool{}
		}
		if req.Key == "" {
			c.keys = map[string]bool{}
		} else if c.subscribed && len(c.keys) == 0 {
			// Already every key: a key filter does not narrow it.
		} else {
			c.keys[req.Key] = true
		}
		c.subscribed = true
		c.mu.Unlock()
		c.reply(req, "ok", nil)
		return
	case reqUnsubscribe:
		c.mu.Lock()
		c.subscribed, c.keys = false, map[string]bool{}
		c.mu.Unlock()
		c.reply(req, "ok", nil)
		return
	}
	need := auth.IVRAPI
	if req.Name == reqFileUploadStatic {
		need = auth.Files
	}
	if !c.ident.Has(need) {
		c.reply(req, nil, errf(CodeBadRequest, "%s: this token lacks capability %q", req.Name, need))
		return
	}
	c.mu.Lock()
	if c.inFlight >= c.s.cfg.MaxInFlight {
		c.mu.Unlock()
		c.reply(req, nil, errf(CodeBusy, "%d requests are already being carried out on this connection", c.s.cfg.MaxInFlight))
		return
	}
	c.inFlight++
	c.reqs.Add(1)
	c.mu.Unlock()
	job := func() {
		defer func() {
			c.mu.Lock()
			c.inFlight--
			c.mu.Unlock()
			c.reqs.Done()
		}()
		if req.Name == reqFileUploadStatic {
			v, ae := c.s.uploadStaticEverywhere(c.ctx, req.URL, req.DestPath)
			c.reply(req, v, ae)
			return
		}
		c.sessionRequest(req)
	}
	if !sessionRequests[req.Name] {
		// file_upload_static names no session: nothing to keep it in
		// order with.
		c.s.wg.Add(1)
		go func() { defer c.s.wg.Done(); job() }()
		return
	}
	c.enqueue(req.IVRID, job)
}

// enqueue runs job after the connection's earlier requests for the same
// session, so "apply then terminate" sent back to back happen in order.
func (c *conn) enqueue(ivrid string, job func()) {
	c.mu.Lock()
	q := c.queues[ivrid]
	if q != nil {
		q.jobs = append(q.jobs, job)
		c.mu.Unlock()
		return
	}
	q = &sessionQueue{jobs: []func(){job}}
	c.queues[ivrid] = q
	c.mu.Unlock()
	c.s.wg.Add(1)
	go func() {
		defer c.s.wg.Done()
		for {
			c.mu.Lock()
			if len(q.jobs) == 0 {
				delete(c.queues, ivrid)
				c.mu.Unlock()
				return
			}
			next := q.jobs[0]
			q.jobs = q.jobs[1:]
			c.mu.Unlock()
			next()
		}
	}()
}

// waitRequests waits for the connection's requests to finish (each is
// bounded by its timeout), so the goodbye sees every session it accepted.
func (c *conn) waitRequests() { c.reqs.Wait() }

func (c *conn) reply(req *request, result any, ae *apiError) {
	c.s.countRequest(req.Name, ae)
	if ae != nil {
		c.send(encodeError(req.Name, req.QID, ae))
		return
	}
	c.send(encodeResult(req.Name, req.QID, result))
}

// sessionRequest carries out a request about a session at its home.
func (c *conn) sessionRequest(req *request) {
	ctx := context.WithoutCancel(c.ctx) // an accept in flight must finish to be undone
	host, err := c.s.locate(ctx, req.IVRID)
	if err != nil {
		c.reply(req, nil, asAPIError(err))
		return
	}
	op := req.Name
	hr := homeReq{Op: op, Domain: c.s.cfg.Domain, Key: req.Key, IVRID: req.IVRID, Owner: c.owner,
		Data: req.Data, Path: req.Path, URL: req.URL, DestPath: req.DestPath, Since: req.Since}
	timeout := homeTimeout
	if op == reqUploadTemp || op == reqUploadStatic {
		timeout = fetchTimeout
	}
	if op == reqReaccept {
		c.mu.Lock()
		c.resync[req.IVRID] = nil
		c.mu.Unlock()
	}
	rep, err := c.s.call(ctx, host, hr, timeout)
	if err == nil && rep.Error != nil {
		err = rep.Error
	}
	switch op {
	case reqAccept, reqReaccept:
		c.mu.Lock()
		held := c.resync[req.IVRID]
		delete(c.resync, req.IVRID)
		if err == nil {
			c.owned[req.IVRID] = ownedSession{host: host, key: req.Key}
		}
		c.mu.Unlock()
		if err != nil {
			c.reply(req, nil, asAPIError(err))
			c.flush(req.IVRID, held)
			return
		}
		c.reply(req, rep.Result, nil)
		c.replay(req.IVRID, rep.Replay)
		c.flush(req.IVRID, held)
		if c.ctx.Err() != nil {
			// The connection closed while the accept was on its way: the
			// goodbye may have run already, so start the grace here.
			c.s.call(context.Background(), host, homeReq{Op: opGone, Domain: c.s.cfg.Domain, Key: req.Key, IVRID: req.IVRID, Owner: c.owner}, goneTimeout)
		}
		return
	case reqAbort:
		if err == nil {
			c.mu.Lock()
			delete(c.owned, req.IVRID)
			c.mu.Unlock()
		}
	}
	if err != nil {
		c.reply(req, nil, asAPIError(err))
		return
	}
	c.waitSeq(req.IVRID, rep.After)
	c.reply(req, rep.Result, nil)
}

// replay sends the events a reaccept asked for again, regardless of what
// this connection saw, and moves its seq mark past them.
func (c *conn) replay(ivrid string, frames []json.RawMessage) {
	for _, f := range frames {
		var parts []json.RawMessage
		var body struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(f, &parts) == nil && len(parts) == 2 && json.Unmarshal(parts[1], &body) == nil {
			c.mu.Lock()
			if body.Seq > c.lastSeq[ivrid] {
				c.lastSeq[ivrid] = body.Seq
			}
			c.mu.Unlock()
		}
		c.send(f)
	}
}

// flush sends the events held during a reaccept that the replay did not
// cover.
func (c *conn) flush(ivrid string, held []ringEntry) {
	for _, e := range held {
		c.push(ivrid, e.seq, e.frame, isStop(e.frame))
	}
}

// isStop reports whether frame is an api_stop notify.
func isStop(frame []byte) bool {
	var parts []json.RawMessage
	var body struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(frame, &parts) == nil && len(parts) == 2 && json.Unmarshal(parts[1], &body) == nil && body.Type == evAPIStop
}

// call sends a session request to its home and decodes the answer.
func (s *Service) call(ctx context.Context, host string, req homeReq, timeout time.Duration) (homeRep, error) {
	if host == s.cfg.Host {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return s.doSession(cctx, req), nil
	}
	b, err := json.Marshal(req)
	if err != nil {
		return homeRep{}, errf(CodeInternal, "encode request: %v", err)
	}
	out, err := s.deps.Bus.Request(ctx, host, methodSession, b, timeout)
	if errors.Is(err, cluster.ErrNodeDead) {
		return homeRep{}, errf(CodeNotFound, "session %q: its node %s is gone", req.IVRID, host)
	}
	if err != nil {
		return homeRep{}, errf(CodeInternal, "session %q on node %s: %v", req.IVRID, host, err)
	}
	var rep homeRep
	if err := json.Unmarshal(out, &rep); err != nil {
		return homeRep{}, errf(CodeInternal, "reply from node %s: %v", host, err)
	}
	return rep, nil
}
