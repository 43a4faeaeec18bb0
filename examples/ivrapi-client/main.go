// Command ivrapi-client is a complete example of an application that drives
// an IVR call through redial's WebSocket Token API (ivrapi, seed 002).
//
// It subscribes to ivrevents for one External Control component key, takes
// the first call that reaches that component, plays a prompt, collects digits,
// records the caller, downloads the recording and gives control back to the
// IVR script, printing one line per step and "done" at the end:
//
//	go run ./examples/ivrapi-client -token "$REDIAL_TOKEN" -key demo \
//	    -prompt https://example.com/hello.wav -out recording.wav
//
// Every WebSocket text frame is a JSON array [name, object]. A request
// carries a "qid" and gets exactly one "<name>_result" reply with the same
// qid, but events (notify, ivrapi_component_stopped, ivrapi_dtmf) may arrive
// before that reply. So the client reads frames one at a time, hands a reply
// to the request waiting for it and keeps events in a queue until asked for.
//
// It exits 0 on success and 1 with a message on stderr on any error,
// including the caller hanging up and -timeout running out.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8088/api/v1/ws", "ivrapi WebSocket URL")
	token := flag.String("token", os.Getenv("REDIAL_TOKEN"), "API token with the ivrapi capability (default $REDIAL_TOKEN)")
	key := flag.String("key", "demo", "key of the External Control component to take calls from")
	prompt := flag.String("prompt", "", "URL of a WAV/MP3 prompt the server fetches and plays (empty: no prompt)")
	digits := flag.Int("digits", 4, "maximum number of digits to collect")
	record := flag.Int("record", 5, "seconds to record")
	out := flag.String("out", "recording.wav", "file to save the recording to")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	err := run(ctx, *url, *token, *key, *prompt, *digits, *record, *out)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v: %w", *timeout, err)
		}
		fmt.Fprintln(os.Stderr, "ivrapi-client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, token, key, prompt string, digits, record int, out string) error {
	// The token goes in a header; browsers, which cannot set one, would use ?token= instead.
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer conn.CloseNow()
	c := &client{conn: conn, key: key}
	fmt.Printf("connected %s\n", url)

	if _, err := c.request(ctx, "subscribe", map[string]any{"class": "ivrevents", "key": key}); err != nil {
		return err
	}
	fmt.Printf("subscribed to ivrevents for key %q\n", key)

	// Take the first call that reaches our component. Other applications may
	// race for it: only the first ivrapi_accept wins, the others get "owned".
	for c.ivrid == "" {
		start, err := c.event(ctx, func(name string, body map[string]any) bool {
			return name == "notify" && body["type"] == "api_start" && data(body)["key"] == key
		})
		if err != nil {
			return fmt.Errorf("waiting for api_start: %w", err)
		}
		d := data(start)
		ivrid := str(d["ivrid"])
		fmt.Printf("api_start %s (call %s, component %q)\n", ivrid, str(d["callid"]), str(d["componentname"]))
		_, err = c.request(ctx, "ivrapi_accept", map[string]any{"key": key, "ivrid": ivrid})
		var apiErr *apiError
		if errors.As(err, &apiErr) && apiErr.Code == "owned" {
			fmt.Printf("%s taken by another application, waiting for the next call\n", ivrid)
			continue
		}
		if err != nil {
			return err
		}
		c.ivrid = ivrid
	}
	fmt.Printf("accepted %s\n", c.ivrid)

	// The server downloads the prompt into the session's :TEMP folder; the
	// path it returns is what a playback component takes.
	if prompt != "" {
		var path string
		if err := c.session(ctx, "ivrapi_file_upload_temp", map[string]any{"url": prompt}, &path); err != nil {
			return err
		}
		fmt.Printf("uploaded %s -> %s\n", prompt, path)
		_, exit, err := c.apply(ctx, map[string]any{"oType": 204, "mode": 0, "file": path})
		if err != nil {
			return err
		}
		fmt.Printf("played %s (exit %s)\n", path, exit)
	}

	results, _, err := c.apply(ctx, map[string]any{
		"oType": 302, "maxSymbolCount": digits, "terminator": "#", "timeoutSec": 10,
	})
	if err != nil {
		return err
	}
	fmt.Printf("collected %q\n", str(results["dtmfBuffer"]))

	// The record component takes its numbers as strings, as the seed writes them.
	results, _, err = c.apply(ctx, map[string]any{
		"oType": 208, "recTimeSec": strconv.Itoa(record), "maxSymbolCount": "0",
		"interruptSymbols": "#", "abortOnSilence": 0,
	})
	if err != nil {
		return err
	}
	recordFile := str(results["recordFile"])
	if recordFile == "" {
		return fmt.Errorf("record component returned no recordFile (results %v)", results)
	}

	// A store path is internal; ask for a signed public link (valid 5 minutes,
	// no token needed) and fetch it over plain HTTP.
	var link string
	if err := c.session(ctx, "ivrapi_file_get_path", map[string]any{"path": recordFile}, &link); err != nil {
		return err
	}
	size, err := download(ctx, link, out)
	if err != nil {
		return fmt.Errorf("download %s to %s: %w", link, out, err)
	}
	fmt.Printf("recorded %s s -> %s (%d bytes)\n", seconds(results["recordDuration"]), out, size)

	// Give control back: the script continues on the component's transfer
	// exit, and the server confirms the end of our control with api_stop.
	if err := c.session(ctx, "ivrapi_abort", nil, nil); err != nil {
		return err
	}
	fmt.Printf("aborted %s: control returned to the script\n", c.ivrid)
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.event(wait, isStop(c.ivrid)); err != nil {
		fmt.Fprintf(os.Stderr, "ivrapi-client: no api_stop for %s within 5s: %v\n", c.ivrid, err)
	} else {
		fmt.Printf("api_stop %s\n", c.ivrid)
	}
	fmt.Println("done")
	conn.Close(websocket.StatusNormalClosure, "done")
	return nil
}

// client is one ivrapi connection controlling at most one session.
type client struct {
	conn  *websocket.Conn
	qid   int     // last qid sent
	queue []frame // events read while waiting for something else
	key   string  // External Control component key
	ivrid string  // session we control, once accepted
}

// frame is one received [name, object] message.
type frame struct {
	name string
	body map[string]any // numbers decoded as json.Number
}

// apiError is a request's {"error": {"code", "message"}} reply.
type apiError struct{ Request, Code, Message string }

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Request, e.Code, e.Message)
}

// request sends [name, fields+qid] and returns the "result" of its reply,
// queueing any events that arrive before the reply.
func (c *client) request(ctx context.Context, name string, fields map[string]any) (json.RawMessage, error) {
	c.qid++
	msg := map[string]any{"qid": c.qid}
	for k, v := range fields {
		msg[k] = v
	}
	if err := wsjson.Write(ctx, c.conn, []any{name, msg}); err != nil {
		return nil, fmt.Errorf("%s: send: %w", name, err)
	}
	for {
		f, err := c.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: waiting for reply: %w", name, err)
		}
		if f.name != name+"_result" || str(f.body["qid"]) != strconv.Itoa(c.qid) {
			c.queue = append(c.queue, f)
			continue
		}
		if e, ok := f.body["error"].(map[string]any); ok {
			return nil, &apiError{name, str(e["code"]), str(e["message"])}
		}
		return json.Marshal(f.body["result"])
	}
}

// session is request with the controlled session's key and ivrid added; it
// decodes the result into result unless that is nil.
func (c *client) session(ctx context.Context, name string, fields map[string]any, result any) error {
	all := map[string]any{"key": c.key, "ivrid": c.ivrid}
	for k, v := range fields {
		all[k] = v
	}
	res, err := c.request(ctx, name, all)
	if err != nil || result == nil {
		return err
	}
	if err := json.Unmarshal(res, result); err != nil {
		return fmt.Errorf("%s: result %s: %w", name, res, err)
	}
	return nil
}

// event returns the body of the first queued or newly read event that match
// accepts. Once a session is accepted, its api_stop (the caller hung up, or
// control was taken away) ends the wait with an error unless match wants it.
func (c *client) event(ctx context.Context, match func(name string, body map[string]any) bool) (map[string]any, error) {
	for {
		var f frame
		if len(c.queue) > 0 {
			f, c.queue = c.queue[0], c.queue[1:]
		} else {
			var err error
			if f, err = c.read(ctx); err != nil {
				return nil, err
			}
		}
		if match(f.name, f.body) {
			return f.body, nil
		}
		if c.ivrid != "" && isStop(c.ivrid)(f.name, f.body) {
			return nil, fmt.Errorf("call ended: api_stop for %s (the caller hung up?)", c.ivrid)
		}
		// Anything else (another call's api_start, a stale reply) is not ours: drop it.
	}
}

// read receives one frame. DTMF events are printed here and not passed on:
// this example only shows them; the collect component gathers the digits.
func (c *client) read(ctx context.Context) (frame, error) {
	for {
		_, msg, err := c.conn.Read(ctx)
		if err != nil {
			return frame{}, err
		}
		var parts []json.RawMessage
		if err := json.Unmarshal(msg, &parts); err != nil || len(parts) != 2 {
			return frame{}, fmt.Errorf("malformed frame %.200s", msg)
		}
		var f frame
		dec := json.NewDecoder(bytes.NewReader(parts[1]))
		dec.UseNumber()
		if json.Unmarshal(parts[0], &f.name) != nil || dec.Decode(&f.body) != nil {
			return frame{}, fmt.Errorf("malformed frame %.200s", msg)
		}
		if f.name == "ivrapi_dtmf" {
			where := str(f.body["mode"]) // "idle", or "component" with its oId
			if where == "component" {
				where += " " + str(f.body["oId"])
			}
			fmt.Printf("dtmf %q (%s)\n", str(f.body["dtmf"]), where)
			continue
		}
		return f, nil
	}
}

// apply starts one component and waits for it to stop, returning its results
// and the exit (transferKey) it left by. Only one component runs at a time.
func (c *client) apply(ctx context.Context, component map[string]any) (map[string]any, string, error) {
	var started struct {
		OID json.Number `json:"oId"`
	}
	if err := c.session(ctx, "ivrapi_component_apply", map[string]any{"data": component}, &started); err != nil {
		return nil, "", fmt.Errorf("oType %v: %w", component["oType"], err)
	}
	fmt.Printf("started oType %v as component %s\n", component["oType"], started.OID)
	stopped, err := c.event(ctx, func(name string, body map[string]any) bool {
		return name == "ivrapi_component_stopped" && body["ivrid"] == c.ivrid && str(body["oId"]) == started.OID.String()
	})
	if err != nil {
		return nil, "", fmt.Errorf("waiting for component %s (oType %v) to stop: %w", started.OID, component["oType"], err)
	}
	results, _ := stopped["results"].(map[string]any)
	return results, str(stopped["transferKey"]), nil
}

// isStop matches the api_stop notify of session ivrid.
func isStop(ivrid string) func(string, map[string]any) bool {
	return func(name string, body map[string]any) bool {
		return name == "notify" && body["type"] == "api_stop" && data(body)["ivrid"] == ivrid
	}
}

// download saves link to path, returning the number of bytes written.
func download(ctx context.Context, link, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return 0, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// data returns a notify's "data" object.
func data(body map[string]any) map[string]any {
	d, _ := body["data"].(map[string]any)
	return d
}

// str renders a JSON value as text; a missing value is "".
func str(v any) string {
	if s, ok := v.(string); ok || v == nil {
		return s
	}
	return fmt.Sprint(v)
}

// seconds formats a duration the server may send as a number or a string.
func seconds(v any) string {
	f, err := strconv.ParseFloat(str(v), 64)
	if err != nil {
		return str(v)
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}
