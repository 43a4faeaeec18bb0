package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newBareServer is a server without components: enough for requests that
// are refused before anything is done with them.
func newBareServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	return s
}

func serve(s *Server, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	s.mux.ServeHTTP(rec, req)
	return rec
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var out struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%d %.200s: %v", rec.Code, rec.Body, err)
	}
	return out.Error
}

func callBody(number any, vars map[string]string, extra string) string {
	n, _ := json.Marshal(number)
	v, _ := json.Marshal(vars)
	return fmt.Sprintf(`{"number":%s,"line_group":["g1"],"destination":{"extension":"8888"},"variables":%s%s}`, n, v, extra)
}

// Issue 9: CR/LF in channel variables from the API reached the INVITE; a
// 1 MB number was dialed; ../../etc was accepted although the queue path
// refused it. Each is now refused with 400 naming the field, in a short
// answer.
func TestPostCallRefusesBadInput(t *testing.T) {
	s := newBareServer(t)
	groups := make([]string, 33)
	numbers := make([]string, 33)
	for i := range groups {
		groups[i], numbers[i] = "g", fmt.Sprint(1000+i)
	}
	gj, _ := json.Marshal(groups)
	cases := []struct{ body, want string }{
		{callBody("1001", map[string]string{"sip_h_X-Evil": "1\r\nVia: SIP/2.0/UDP 6.6.6.6"}, ""), "variables.sip_h_X-Evil: contains CR/LF"},
		{callBody("1001", map[string]string{"origination_caller_id_name": "Bob\r\nX-Evil: 1"}, ""), "variables.origination_caller_id_name: contains CR/LF"},
		{callBody("1001", map[string]string{"sip_h_X\r\nVia": "1"}, ""), `variables: name "sip_h_X\r\nVia": character '\r' not allowed (allowed: letters, digits, _ . -)`},
		{callBody("1001", map[string]string{"x": "a\x00b"}, ""), "variables.x: contains NUL"},
		{callBody(strings.Repeat("1", 1000000), nil, ""), "number: 1000000 characters, at most 64"},
		{callBody("../../etc", nil, ""), `number: "../../etc": may not start with '.'`},
		{callBody([]string{"1001", "a/../etc"}, nil, ""), `number[1]: "a/../etc": character '/' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{callBody(numbers, nil, ""), "number: 33 numbers, at most 32"},
		{`{"number":"1","line_group":` + string(gj) + `,"destination":{"extension":"8888"}}`, "line_group: 33 groups, at most 32"},
		{callBody("1001", nil, `,"call_ref":"r\r\nX-Evil: 1"`), "call_ref: contains CR/LF"},
		{callBody("1001", nil, `,"contact_ref":"`+strings.Repeat("c", 300)+`"`), "contact_ref: 300 bytes, at most 256"},
		{`{"number":"1","line_group":"g","destination":{"extension":"../x"}}`, `destination.extension: "../x": may not start with '.'`},
		{`{"number":"1","line_group":"g","destination":{"extension":"1"},"` + strings.Repeat("k", 5000) + `":1}`,
			strings.Repeat("k", 64) + "... (5000 bytes): unknown field (want number, line_group, destination, variables, call_ref, contact_ref, campaign_ref)"},
	}
	for _, c := range cases {
		rec := serve(s, http.MethodPost, "/api/v1/calls", c.body)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%.80s: %d %.200s, want 400", c.body, rec.Code, rec.Body)
			continue
		}
		if got := errorOf(t, rec); got != c.want {
			t.Errorf("%.80s:\n got %s\nwant %s", c.body, got, c.want)
		}
		if rec.Body.Len() > 600 {
			t.Errorf("%.80s: answer of %d bytes", c.body, rec.Body.Len())
		}
	}
}

func TestPostScheduleRefusesBadMember(t *testing.T) {
	s := newBareServer(t)
	member := func(number, vars string) string {
		return `{"at":"2030-01-01T00:00:00Z","member":{"params":{"number":` + number + `,"config":"c"},"variables":` + vars + `}}`
	}
	cases := []struct{ body, want string }{
		{member(`"1001"`, `{"sip_h_X-Evil":"1\r\nVia: x"}`), "member: variables.sip_h_X-Evil: contains CR/LF"},
		{member(`"1001"`, `{"origination_caller_id_name":"a\nb"}`), "member: variables.origination_caller_id_name: contains CR/LF"},
		{member(`"`+strings.Repeat("5", 1000000)+`"`, `{}`), "member: params.number[0]: 1000000 characters, at most 64"},
		{member(`"../../etc"`, `{}`), `member: params.number[0]: "../../etc": may not start with '.'`},
	}
	for _, c := range cases {
		rec := serve(s, http.MethodPost, "/api/v1/schedules", c.body)
		if rec.Code != http.StatusBadRequest || errorOf(t, rec) != c.want {
			t.Errorf("%.80s: %d %.300s, want 400 %s", c.body, rec.Code, rec.Body, c.want)
		}
	}
}

// Decoder errors quote what they refuse: the answer (and the log line)
// stays short whatever was sent.
func TestBadRequestAnswersStayShort(t *testing.T) {
	s := newBareServer(t)
	huge := strings.Repeat("k", 500000)
	for _, c := range []struct{ path, body, prefix string }{
		{"/api/v1/schedules", `{"at":1,"member":{},"` + huge + `":1}`, `body: json: unknown field "kkkk`},
		{"/api/v1/schedules", `{"at":"` + huge + `","member":{}}`, `at: parsing time "kkkk`},
		{"/api/v1/calls", `{"number":"1","line_group":"g","destination":{"extension":"1"},"variables":{"` + huge + `":[1]}}`, "variables: kkkk"},
	} {
		rec := serve(s, http.MethodPost, c.path, c.body)
		got := errorOf(t, rec)
		if rec.Code != http.StatusBadRequest || len(got) > 600 || !strings.HasPrefix(got, c.prefix) {
			t.Errorf("%s: %d, error of %d bytes: %.120q", c.path, rec.Code, len(got), got)
		}
	}
}

func TestPostEventRefusesBadIDs(t *testing.T) {
	s := newBareServer(t)
	rec := serve(s, http.MethodPost, "/api/v1/events", `{"event_name":"voicemail_saved","account_id":"a\r\nb","vmbox_id":"v"}`)
	if rec.Code != http.StatusBadRequest || errorOf(t, rec) != "account_id: contains CR/LF" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// Issue 9: an oversize body was read up to 1 MiB and then failed as
// "unexpected EOF". It is now refused with 413 and the limit, whether its
// length is announced or not, on every route that reads a body.
func TestOversizeBodiesGet413(t *testing.T) {
	s := newBareServer(t)
	ts := httptest.NewServer(s.mux)
	defer ts.Close()
	for _, c := range []struct {
		path  string
		limit int
	}{{"/api/v1/calls", maxBody}, {"/api/v1/schedules", maxBody}, {"/api/v1/events", maxEventBody}} {
		big := callBody(strings.Repeat("1", c.limit), nil, "")
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(big)
			if chunked {
				// No Content-Length: the limit is found while reading.
				body = io.MultiReader(body)
			}
			resp, err := http.Post(ts.URL+c.path, "application/json", body)
			if err != nil {
				t.Fatalf("%s chunked=%v: %v", c.path, chunked, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf(`{"error":"request body too large (limit %d bytes)"}`, c.limit)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Equal(compact(t, b), []byte(want)) {
				t.Errorf("%s chunked=%v: %d %.200s, want 413 %s", c.path, chunked, resp.StatusCode, b, want)
			}
		}
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%.200s: %v", b, err)
	}
	return out.Bytes()
}
