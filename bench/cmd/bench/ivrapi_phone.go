package main

// Helpers of part 5 (ivrapi): the callers' RTP socket, which keeps every
// packet with redial's source port; the application's one WebSocket to the
// node; and what SIPp's message log tells of each call.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// tapPacket is one RTP packet as the callers' socket received it.
type tapPacket struct {
	src    uint16 // redial's RTP port it came from
	marker bool
	ssrc   uint32
	seq    uint16
	kern   int64 // kernel receive timestamp (SO_TIMESTAMPNS), Unix ns
}

// rtpTap is the one UDP socket every caller's SDP points at. Unlike part
// 4's phone it keeps the source port: redial sends each call's RTP from the
// port of its answer SDP, which is how packets are told apart per call.
type rtpTap struct {
	conn   *net.UDPConn
	port   int
	rcvbuf int
	bad    atomic.Int64
	done   chan struct{}

	mu   sync.Mutex
	pkts []tapPacket
}

func newRTPTap() (*rtpTap, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("rtp socket: %w", err)
	}
	t := &rtpTap{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, done: make(chan struct{}), pkts: make([]tapPacket, 0, 1<<16)}
	if t.rcvbuf, err = timestampedSocket(c, 0); err != nil {
		c.Close()
		return nil, fmt.Errorf("rtp socket: %w", err)
	}
	go t.read()
	return t, nil
}

func (t *rtpTap) read() {
	defer close(t.done)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := t.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		kern, ok := kernelStamp(oob[:oobn])
		if n < 12 || buf[0]>>6 != 2 || !ok {
			t.bad.Add(1)
			continue
		}
		p := tapPacket{src: from.Port(), marker: buf[1]&0x80 != 0, ssrc: binary.BigEndian.Uint32(buf[8:12]),
			seq: binary.BigEndian.Uint16(buf[2:4]), kern: kern}
		t.mu.Lock()
		t.pkts = append(t.pkts, p)
		t.mu.Unlock()
	}
}

// close stops the reader and returns every packet received.
func (t *rtpTap) close() []tapPacket {
	t.conn.Close()
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pkts
}

// tapStream is one RTP stream (one Play: one SSRC) from one redial port.
type tapStream struct {
	ssrc        uint32
	first, last int64 // kernel stamps, Unix ns
	packets     int
	marker      bool // the first packet received carried the marker bit
}

// streamsByPort groups packets into streams per source port, each port's
// streams in the order their first packets arrived.
func streamsByPort(pkts []tapPacket) map[uint16][]*tapStream {
	type key struct {
		port uint16
		ssrc uint32
	}
	idx := map[key]*tapStream{}
	out := map[uint16][]*tapStream{}
	for _, p := range pkts {
		k := key{p.src, p.ssrc}
		st := idx[k]
		if st == nil {
			st = &tapStream{ssrc: p.ssrc, first: p.kern, last: p.kern, marker: p.marker}
			idx[k] = st
			out[p.src] = append(out[p.src], st)
		}
		st.packets++
		st.first = min(st.first, p.kern)
		st.last = max(st.last, p.kern)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].first < list[j].first })
	}
	return out
}

// streamAfter is the first stream of port whose first packet arrived at or
// after t (Unix ns).
func streamAfter(streams map[uint16][]*tapStream, port int, t int64) *tapStream {
	for _, st := range streams[uint16(port)] {
		if st.first >= t {
			return st
		}
	}
	return nil
}

// sippCall is what SIPp's message log tells of one call.
type sippCall struct {
	rtpPort int       // redial's RTP port, from the 200 OK's SDP
	ack     time.Time // when SIPp sent the ACK (the script starts once redial has it)
}

// sippCalls reads a SIPp -trace_msg log and returns, per Call-ID, redial's
// RTP port and when the ACK went out.
func sippCalls(path string) (map[string]*sippCall, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]*sippCall{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var stamp time.Time
	var sent bool
	var first, callID string
	port := 0
	flush := func() {
		if callID == "" {
			return
		}
		c := out[callID]
		if c == nil {
			c = &sippCall{}
			out[callID] = c
		}
		if !sent && strings.HasPrefix(first, "SIP/2.0 200") && port > 0 && c.rtpPort == 0 {
			c.rtpPort = port
		}
		if sent && strings.HasPrefix(first, "ACK ") && c.ack.IsZero() {
			c.ack = stamp
		}
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := traceStampRE.FindStringSubmatch(line); m != nil {
			flush()
			stamp, _ = time.ParseInLocation("2006-01-02 15:04:05.000000", m[1], time.Local)
			sent, first, callID, port = false, "", "", 0
			continue
		}
		switch {
		case first == "" && strings.Contains(line, "message sent"):
			sent = true
		case first == "" && strings.Contains(line, "message received"):
			sent = false
		case first == "" && strings.TrimSpace(line) != "":
			first = strings.TrimSpace(line)
		case callID == "" && (hasHeader(line, "Call-ID") || hasHeader(line, "i")):
			_, v, _ := strings.Cut(line, ":")
			callID = strings.TrimSpace(v)
		case strings.HasPrefix(line, "m=audio "):
			f := strings.Fields(line)
			if len(f) > 1 {
				port, _ = strconv.Atoi(f[1])
			}
		}
	}
	flush()
	return out, sc.Err()
}

func hasHeader(line, name string) bool {
	n, _, ok := strings.Cut(line, ":")
	return ok && strings.EqualFold(strings.TrimSpace(n), name)
}

// wsReply is a request's _result frame.
type wsReply struct {
	at     time.Time // when the client had read it
	result json.RawMessage
	err    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
}

// apiStart is an api_start notify.
type apiStart struct {
	at            time.Time
	ivrid, callid string
	ivrts         int64 // session start, node clock, Unix ms
}

// apiStopped is an ivrapi_component_stopped event.
type apiStopped struct {
	at          time.Time
	oID         int
	transferKey string
}

// ivrapiClient is the application: one WebSocket to the node's ivrapi,
// many sessions. Replies go to whoever waits for their qid, api_start
// notifies to starts, stopped events to their session's channel; each is
// stamped when the read returned, before any decoding.
type ivrapiClient struct {
	ws     *websocket.Conn
	qid    atomic.Int64
	starts chan apiStart

	mu        sync.Mutex
	pending   map[int64]chan wsReply
	stopped   map[string]chan apiStopped
	unmatched int
	apiStops  int
	other     []string // first frames of kinds nobody expects
	readErr   error
	done      chan struct{}
}

// dialIVRAPI connects to the node at base (http://host:port) without a
// token: the node is on loopback and no token exists.
func dialIVRAPI(ctx context.Context, base string) (*ivrapiClient, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/api/v1/ws", nil)
	if err != nil {
		return nil, fmt.Errorf("ivrapi dial: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	c := &ivrapiClient{ws: ws, starts: make(chan apiStart, 4096), pending: map[int64]chan wsReply{},
		stopped: map[string]chan apiStopped{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *ivrapiClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		at := time.Now()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		var parts []json.RawMessage
		var name string
		if json.Unmarshal(b, &parts) != nil || len(parts) != 2 || json.Unmarshal(parts[0], &name) != nil {
			c.note(string(b))
			continue
		}
		var body struct {
			QID    json.RawMessage `json:"qid"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			Type string `json:"type"`
			Data struct {
				IVRID  string `json:"ivrid"`
				CallID string `json:"callid"`
				IVRTS  int64  `json:"ivrts"`
			} `json:"data"`
			IVRID       string `json:"ivrid"`
			OID         int    `json:"oId"`
			TransferKey string `json:"transferKey"`
		}
		if err := json.Unmarshal(parts[1], &body); err != nil {
			c.note(string(b))
			continue
		}
		switch {
		case strings.HasSuffix(name, "_result"):
			qid, _ := strconv.ParseInt(string(body.QID), 10, 64)
			c.mu.Lock()
			ch := c.pending[qid]
			delete(c.pending, qid)
			c.mu.Unlock()
			if ch == nil {
				c.note(string(b))
				continue
			}
			ch <- wsReply{at: at, result: body.Result, err: body.Error}
		case name == "notify" && body.Type == "api_start":
			c.starts <- apiStart{at: at, ivrid: body.Data.IVRID, callid: body.Data.CallID, ivrts: body.Data.IVRTS}
		case name == "notify" && body.Type == "api_stop":
			c.mu.Lock()
			c.apiStops++
			c.mu.Unlock()
		case name == "ivrapi_component_stopped":
			c.mu.Lock()
			ch := c.stopped[body.IVRID]
			if ch == nil {
				c.unmatched++
			}
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- apiStopped{at: at, oID: body.OID, transferKey: body.TransferKey}:
				default:
					c.mu.Lock()
					c.unmatched++
					c.mu.Unlock()
				}
			}
		default:
			c.note(string(b))
		}
	}
}

func (c *ivrapiClient) note(frame string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unmatched++
	if len(c.other) < 3 {
		c.other = append(c.other, tail(frame, 300))
	}
}

// watch makes the client keep ivrid's stopped events.
func (c *ivrapiClient) watch(ivrid string) <-chan apiStopped {
	ch := make(chan apiStopped, 8)
	c.mu.Lock()
	c.stopped[ivrid] = ch
	c.mu.Unlock()
	return ch
}

// request sends [name, fields + qid] and waits for its _result. sent is
// taken just before the frame is written.
func (c *ivrapiClient) request(ctx context.Context, name string, fields map[string]any) (sent time.Time, rep wsReply, err error) {
	qid := c.qid.Add(1)
	body := map[string]any{"qid": qid}
	for k, v := range fields {
		body[k] = v
	}
	b, err := json.Marshal([]any{name, body})
	if err != nil {
		return sent, rep, err
	}
	ch := make(chan wsReply, 1)
	c.mu.Lock()
	c.pending[qid] = ch
	c.mu.Unlock()
	sent = time.Now()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return sent, rep, fmt.Errorf("%s: write: %w", name, err)
	}
	select {
	case rep = <-ch:
	case <-c.done:
		return sent, rep, fmt.Errorf("%s: connection closed: %v", name, c.readErr)
	case <-ctx.Done():
		return sent, rep, fmt.Errorf("%s: no reply: %w", name, ctx.Err())
	}
	if rep.err != nil {
		return sent, rep, fmt.Errorf("%s: %s: %s", name, rep.err.Code, rep.err.Message)
	}
	return sent, rep, nil
}

func (c *ivrapiClient) close() {
	c.ws.Close(websocket.StatusNormalClosure, "")
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.ws.CloseNow()
		<-c.done
	}
}
