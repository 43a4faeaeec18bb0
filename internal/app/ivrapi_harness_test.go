package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient is an application connected to the ivrapi of a node: it keeps
// every frame it receives, in order, so tests can wait for events and
// replies by what they contain.
type wsClient struct {
	t    testing.TB
	ws   *websocket.Conn
	name string

	mu     sync.Mutex
	frames []wsFrame
	closed error
	more   chan struct{}
	qid    int
}

// wsFrame is one received frame.
type wsFrame struct {
	Name string
	Body map[string]any
	Raw  string
}

// dialWS connects to base (http://host:port) with token ("" for none).
func dialWS(t testing.TB, base, token, name string) *wsClient {
	t.Helper()
	c, resp, err := tryDialWS(base, token)
	if err != nil {
		t.Fatalf("ivrapi dial %s: %v (%v)", name, err, resp)
	}
	w := &wsClient{t: t, ws: c, name: name, more: make(chan struct{}, 1)}
	c.SetReadLimit(1 << 20)
	go w.readLoop()
	t.Cleanup(func() { c.CloseNow() })
	return w
}

func tryDialWS(base, token string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	}
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/v1/ws", opts)
}

func (w *wsClient) readLoop() {
	for {
		_, b, err := w.ws.Read(context.Background())
		w.mu.Lock()
		if err != nil {
			w.closed = err
			w.mu.Unlock()
			w.signal()
			return
		}
		var parts []json.RawMessage
		f := wsFrame{Raw: string(b)}
		if json.Unmarshal(b, &parts) == nil && len(parts) == 2 {
			json.Unmarshal(parts[0], &f.Name)
			d := json.NewDecoder(strings.NewReader(string(parts[1])))
			d.UseNumber()
			d.Decode(&f.Body)
		}
		w.frames = append(w.frames, f)
		w.mu.Unlock()
		w.signal()
	}
}

func (w *wsClient) signal() {
	select {
	case w.more <- struct{}{}:
	default:
	}
}

// send writes one raw frame.
func (w *wsClient) send(frame string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		w.t.Fatalf("%s: write: %v", w.name, err)
	}
}

// request sends [name, fields+qid] and returns the reply's body.
func (w *wsClient) request(name string, fields map[string]any) map[string]any {
	w.t.Helper()
	w.mu.Lock()
	w.qid++
	qid := w.qid
	w.mu.Unlock()
	body := map[string]any{"qid": qid}
	for k, v := range fields {
		body[k] = v
	}
	b, _ := json.Marshal([]any{name, body})
	w.send(string(b))
	f := w.wait(45*time.Second, func(f wsFrame) bool {
		return f.Name == name+"_result" && fmt.Sprint(f.Body["qid"]) == fmt.Sprint(qid)
	})
	return f.Body
}

// ok is request that fails the test on an error reply.
func (w *wsClient) ok(name string, fields map[string]any) any {
	w.t.Helper()
	rep := w.request(name, fields)
	if rep["error"] != nil {
		w.t.Fatalf("%s: %s: %v", w.name, name, rep["error"])
	}
	return rep["result"]
}

// code is request that wants an error with code.
func (w *wsClient) code(name string, fields map[string]any, want string) {
	w.t.Helper()
	rep := w.request(name, fields)
	e, _ := rep["error"].(map[string]any)
	if e == nil || e["code"] != want {
		w.t.Fatalf("%s: %s %v: got %v, want error %s", w.name, name, fields, rep, want)
	}
}

// wait returns the first frame (from the start of the connection) that
// match accepts, waiting up to d.
func (w *wsClient) wait(d time.Duration, match func(wsFrame) bool) wsFrame {
	w.t.Helper()
	return w.nth(d, match, 1)
}

// nth returns the n-th frame (from the start of the connection) that
// match accepts, waiting up to d.
func (w *wsClient) nth(d time.Duration, match func(wsFrame) bool, n int) wsFrame {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		seen := 0
		for _, f := range w.frames {
			if match(f) {
				if seen++; seen == n {
					w.mu.Unlock()
					return f
				}
			}
		}
		closed := w.closed
		w.mu.Unlock()
		if closed != nil {
			w.t.Fatalf("%s: connection closed (%v) before the frame came; got:\n%s", w.name, closed, w.dump())
		}
		left := time.Until(deadline)
		if left <= 0 {
			w.t.Fatalf("%s: no such frame within %v; got:\n%s", w.name, d, w.dump())
		}
		select {
		case <-w.more:
		case <-time.After(left):
		}
	}
}

// event waits for the n-th event named name (a notify's type for
// "notify:...") about ivrid ("" for any).
func (w *wsClient) event(name, ivrid string, n int) wsFrame {
	w.t.Helper()
	return w.nth(30*time.Second, func(f wsFrame) bool { return eventIs(f, name, ivrid) }, n)
}

func eventIs(f wsFrame, name, ivrid string) bool {
	typ, isNotify := strings.CutPrefix(name, "notify:")
	if isNotify {
		if f.Name != "notify" || f.Body["type"] != typ {
			return false
		}
		data, _ := f.Body["data"].(map[string]any)
		return ivrid == "" || data["ivrid"] == ivrid
	}
	return f.Name == name && (ivrid == "" || f.Body["ivrid"] == ivrid)
}

// all returns every frame received so far.
func (w *wsClient) all() []wsFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wsFrame(nil), w.frames...)
}

// events returns every frame received so far that eventIs name.
func (w *wsClient) events(name, ivrid string) []wsFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wsFrame
	for _, f := range w.frames {
		if eventIs(f, name, ivrid) {
			out = append(out, f)
		}
	}
	return out
}

// closedWith waits for the connection to be closed and returns how.
func (w *wsClient) closedWith(d time.Duration) (websocket.StatusCode, string) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		err := w.closed
		w.mu.Unlock()
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
		if time.Until(deadline) <= 0 {
			w.t.Fatalf("%s: still open after %v", w.name, d)
		}
		select {
		case <-w.more:
		case <-time.After(time.Until(deadline)):
		}
	}
}

func (w *wsClient) dump() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, f := range w.frames {
		b.WriteString(f.Raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// seqOf is an event's seq.
func seqOf(f wsFrame) int64 {
	n, _ := f.Body["seq"].(json.Number).Int64()
	return n
}

// fileServer serves named bodies on 127.0.0.1 and counts requests.
type fileServer struct {
	url  string
	mu   sync.Mutex
	hits map[string]int
}

func startFileServer(t testing.TB, handlers map[string]http.HandlerFunc) *fileServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fileServer{url: "http://" + ln.Addr().String(), hits: map[string]int{}}
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			fs.mu.Lock()
			fs.hits[p]++
			fs.mu.Unlock()
			h(w, r)
		})
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fs
}

func (fs *fileServer) count(p string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[p]
}
