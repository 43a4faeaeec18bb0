package web

// Fuzz targets for the HTTP API bodies: POST /api/v1/calls (decoded by
// decodeOriginate, which the handler calls before it needs a call
// manager), and POST /api/v1/schedules and /api/v1/events driven through
// the handlers against a real redis-server. `make test` runs them on
// their seed corpus; scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"redial/internal/callback"
	"redial/internal/dialer"
	"redial/internal/schedule"
	"redial/internal/store"
	"redial/internal/testenv"
	"redial/internal/validate"
)

// Limits of issue 9's one validation of numbers and variables
// (internal/validate): what a decoder accepts must stay within them.
const (
	fuzzMaxNumber   = 64
	fuzzMaxVarValue = 4 << 10
	// fuzzMaxReason bounds an error about outsider input: it becomes a
	// reason stored in Redis, a 400 body or a log line ("a short reason").
	fuzzMaxReason = 1 << 10
)

// fuzzErrNamesField reports whether a 400 error about a JSON object body
// names a field: one of the API's own, or (cut short) a key of the body.
func fuzzErrNamesField(msg string, body []byte, roots ...string) bool {
	if testenv.FuzzNamesField(msg, roots...) || strings.HasPrefix(msg, "body: ") {
		return true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	for k := range m {
		if strings.HasPrefix(msg, validate.Truncate(k, 64)+": ") {
			return true
		}
	}
	return false
}

// FuzzDecodeOriginate decodes POST /api/v1/calls bodies: never a panic,
// short errors naming the field (they are the 400 answer), and a request
// whose numbers and variables are within issue 9's limits and whose
// numbers the queue dialer and the scheduler accept too (issue 9: the API
// accepted ../../etc, which the queue path refused).
func FuzzDecodeOriginate(f *testing.F) {
	for _, s := range []string{
		`{"number":"13800000000","line_group":["g1"],"destination":{"extension":"8888","dialplan":"XML","context":"default"},"variables":{"origination_caller_id_number":"15550001111","absolute_codec_string":"pcma,pcmu"},"call_ref":"r1","contact_ref":"c1","campaign_ref":"camp"}`,
		`{"number":["1001","+4930123","*86#"],"line_group":"g1","destination":{"extension":"8888"},"variables":{"n":5,"b":true,"z":null}}`,
		`{"number":"alice.smith_1-2","line_group":["g1","g2"],"destination":{"extension":"1"}}`,
		// Refused by the unit tests.
		`{"number":"1001","line_group":["g1"],"destination":{"extension":"8888"},"variables":{"sip_h_X-Evil":"1\r\nVia: SIP/2.0/UDP 6.6.6.6"}}`,
		`{"number":"1001","line_group":["g1"],"destination":{"extension":"8888"},"variables":{"sip_h_X\r\nVia":"1"}}`,
		`{"number":"1001","line_group":["g1"],"destination":{"extension":"8888"},"variables":{"x":"a\u0000b"}}`,
		`{"number":"` + strings.Repeat("1", 3000) + `","line_group":["g1"],"destination":{"extension":"8888"}}`,
		`{"number":"../../etc","line_group":["g1"],"destination":{"extension":"8888"}}`,
		`{"number":["1001","a/../etc"],"line_group":["g1"],"destination":{"extension":"8888"}}`,
		`{"number":"1","line_group":"g","destination":{"extension":"../x"}}`,
		`{"number":"1","line_group":"g","destination":{"extension":"1"},"call_ref":"r\r\nX-Evil: 1"}`,
		`{"number":"1","line_group":"g","destination":{"extension":"1"},"` + strings.Repeat("k", 3000) + `":1}`,
		`{"number":"1","line_group":"g","destination":{"extension":"1","` + strings.Repeat("k", 3000) + `":1}}`,
		`{"number":"1","line_group":"g","destination":{"extension":"1"},"variables":{"` + strings.Repeat("k", 3000) + `":[1]}}`,
		// Hostile shapes.
		`{"number":1001,"line_group":[null],"destination":"8888","variables":[]}`,
		`{"number":[],"line_group":[],"destination":{}}`,
		`{"number":"1001\u2028","line_group":"g\u0000","destination":{"extension":"1","context":"c\n"}}`,
		"{\"number\":\"10\xff01\",\"line_group\":\"g\",\"destination\":{\"extension\":\"1\"}}",
		`{"number":"1","line_group":"g","destination":{"extension":"1"},"variables":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
		`null`, `[]`, `"1001"`, ``, `{"number":"1"} {"number":"2"}`, `{"number":"1",`,
		// Found by fuzzing: data after the body's JSON value was ignored.
		`{"number":"1001","line_group":"g1","destination":{"extension":"8888"}}0`,
		`{"number":"1001","line_group":"g1","destination":{"extension":"8888"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var err error
		var numbers []string
		var vars map[string]string
		testenv.FuzzRun(t, "decodeOriginate", func() {
			req, derr := decodeOriginate(body)
			err, numbers, vars = derr, req.Numbers, req.Variables
		})
		what := fmt.Sprintf("decodeOriginate(%s)", testenv.FuzzQuote(string(body)))
		if err != nil {
			testenv.FuzzShortErr(t, what, err)
			if testenv.FuzzJSONObject(string(body)) && !fuzzErrNamesField(err.Error(), body, "number", "line_group", "destination",
				"variables", "call_ref", "contact_ref", "campaign_ref") {
				t.Errorf("%s: error %s names no field", what, testenv.FuzzQuote(err.Error()))
			}
			return
		}
		if len(numbers) == 0 {
			t.Fatalf("%s: accepted without a number", what)
		}
		testenv.FuzzVarsSafe(t, what, vars)
		for i, n := range numbers {
			testenv.FuzzNumberSafe(t, fmt.Sprintf("%s number[%d]", what, i), n)
			// One rule at every entry point.
			if it, err := dialer.ParseItem(n); err != nil || len(it.Numbers) != 1 || it.Numbers[0] != n {
				t.Errorf("%s: the API accepts number %s, the queue dialer reads it as %q, %v", what, testenv.FuzzQuote(n), it.Numbers, err)
			}
			member, _ := json.Marshal(map[string]any{"params": map[string]any{"number": n, "config": "c"}})
			if err := schedule.CheckMember(string(member)); err != nil {
				t.Errorf("%s: the API accepts number %s, the scheduler refuses it: %v", what, testenv.FuzzQuote(n), err)
			}
		}
	})
}

// fuzzServer is a server over a real redis-server, with no other
// component: enough for the schedule and event routes.
func fuzzServer(f *testing.F) (*Server, *testenv.Redis, *store.Store) {
	r := testenv.StartRedis(f)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"})
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.ln.Close() })
	return s, r, st
}

// fuzzPost posts body to path and decodes the JSON answer.
func fuzzPost(t *testing.T, s *Server, path string, body []byte) (int, map[string]any) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	testenv.FuzzRun(t, "POST "+path, func() { s.mux.ServeHTTP(rec, req) })
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("POST %s %s: answer %d %s is not a JSON object: %v", path, testenv.FuzzQuote(string(body)), rec.Code, testenv.FuzzQuote(rec.Body.String()), err)
	}
	return rec.Code, out
}

// fuzzCheckRefusal checks a 400 or 413 answer: a short error naming the
// field.
func fuzzCheckRefusal(t *testing.T, what string, code int, out map[string]any, body []byte, roots ...string) {
	msg, _ := out["error"].(string)
	testenv.FuzzShortErr(t, fmt.Sprintf("%s: %d", what, code), fmt.Errorf("%s", msg))
	if code == http.StatusBadRequest && testenv.FuzzJSONObject(string(body)) && !fuzzErrNamesField(msg, body, roots...) && !strings.Contains(msg, "unknown field") {
		t.Errorf("%s: 400 %s names no field", what, testenv.FuzzQuote(msg))
	}
}

// FuzzPostSchedule posts schedule bodies: never a panic, always a JSON
// answer, 201 only for a member the scheduler can dial (numbers and
// variables within issue 9's limits) stored at the time asked for, else a
// short 400 naming the field or 413.
func FuzzPostSchedule(f *testing.F) {
	s, r, st := fuzzServer(f)
	member := `{"params":{"number":"13800000000","expires":0,"config":"remind"},"variables":{"origination_caller_id_number":"15550001111","absolute_codec_string":"pcma,pcmu,g729"}}`
	for _, b := range []string{
		`{"at":1700000000,"member":` + member + `}`,
		`{"at":"2030-01-02T03:04:05Z","member":` + member + `}`,
		`{"at":1700000000.25,"member":{"params":{"number":["1001","1002"],"config":"c","contact_ref":"x"}}}`,
		`{"at":"2030-01-02T03:04:05+02:00","member":{"params":{"number":13800000000,"config":"c"}}}`,
		// Refused.
		`{"at":"tomorrow","member":` + member + `}`,
		`{"at":1700000000,"member":"13800000000"}`,
		`{"at":1700000000}`,
		`{"at":1700000000,"member":{"params":{"number":"../../etc","config":"c"}}}`,
		`{"at":1700000000,"member":{"params":{"number":"1001","config":"c"},"variables":{"sip_h_X":"a\r\nb"}}}`,
		`{"at":1700000000,"member":{"params":{"number":"` + strings.Repeat("1", 3000) + `","config":"c"}}}`,
		`{"at":1700000000,"member":` + member + `,"extra":1}`,
		// Hostile times and shapes.
		`{"at":4102444800.999,"member":` + member + `}`,
		`{"at":-1,"member":` + member + `}`,
		`{"at":"99999-01-01T00:00:00Z","member":` + member + `}`,
		`{"at":null,"member":` + member + `}`,
		`{"at":1700000000,"member":{"params":null}}`,
		`null`, `[]`, ``, `{"at":1,`,
		// Found by fuzzing: a garbage score stored with 201, and data
		// after the body's JSON value ignored.
		`{"at":1e300,"member":` + member + `}`,
		`{"at":-1e300,"member":` + member + `}`,
		`{"at":"0001-01-01T00:00:00Z","member":` + member + `}`,
		`{"at":1700000000,"member":` + member + `}0`,
	} {
		f.Add([]byte(b))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := fuzzPost(t, s, "/api/v1/schedules", body)
		what := fmt.Sprintf("POST /api/v1/schedules %s", testenv.FuzzQuote(string(body)))
		switch code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			fuzzCheckRefusal(t, what, code, out, body, "at", "member", "body")
			return
		case http.StatusCreated:
		default:
			t.Fatalf("%s: answer %d %v", what, code, out)
		}
		defer r.Client.Del(ctx, st.ScheduleNumbersKey())
		var req struct {
			At     json.RawMessage `json:"at"`
			Member json.RawMessage `json:"member"`
		}
		// Read as the handler reads it: the first JSON value, field names
		// matched without regard to case.
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
			t.Fatalf("%s: 201 for a body that does not decode: %v", what, err)
		}
		// Stored at the time asked for.
		var want time.Time
		var f float64
		var ts string
		switch {
		case json.Unmarshal(req.At, &f) == nil:
			want = time.Unix(int64(math.Floor(f)), 0)
		case json.Unmarshal(req.At, &ts) == nil:
			want, _ = time.Parse(time.RFC3339, ts)
		}
		atText, _ := out["at"].(string)
		got, err := time.Parse(time.RFC3339Nano, atText)
		if err != nil || got.Sub(want).Abs() > time.Second {
			t.Errorf("%s: 201 at %q (%v), asked for %v", what, atText, err, want)
		}
		// Only a time someone means: 2000 to 9999.
		if y := want.UTC().Year(); y < 2000 || y > 9999 {
			t.Errorf("%s: 201 for a time in year %d", what, y)
		}
		// One JSON value, nothing after it.
		dec := json.NewDecoder(bytes.NewReader(body))
		if dec.Decode(new(any)) == nil {
			if _, err := dec.Token(); err != io.EOF {
				t.Errorf("%s: 201 for a body with data after its JSON value", what)
			}
		}
		members, err := r.Client.ZRangeWithScores(ctx, st.ScheduleNumbersKey(), 0, -1).Result()
		if err != nil || len(members) != 1 {
			t.Fatalf("%s: stored %v, %v", what, members, err)
		}
		if sc := members[0].Score; math.Abs(sc-float64(want.Unix())) > 1 {
			t.Errorf("%s: stored with score %v, asked for %v", what, sc, want.Unix())
		}
		// What was stored is a member the scheduler dials.
		m, _ := members[0].Member.(string)
		if err := schedule.CheckMember(m); err != nil {
			t.Errorf("%s: stored member the scheduler refuses: %v", what, err)
		}
		var doc struct {
			Params struct {
				Number json.RawMessage `json:"number"`
			} `json:"params"`
			Variables map[string]any `json:"variables"`
		}
		if json.Unmarshal([]byte(m), &doc) == nil {
			var one string
			var many []string
			if json.Unmarshal(doc.Params.Number, &one) == nil {
				many = []string{one}
			} else {
				json.Unmarshal(doc.Params.Number, &many)
			}
			for i, n := range many {
				testenv.FuzzNumberSafe(t, fmt.Sprintf("%s number[%d]", what, i), n)
			}
			vars := map[string]string{}
			for k, v := range doc.Variables {
				if s, ok := v.(string); ok {
					vars[k] = s
				}
			}
			testenv.FuzzVarsSafe(t, what, vars)
		}
	})
}

// FuzzPostEvent posts callback events: never a panic, always a JSON
// answer, 202 only for an event the callback runner can read (and it is
// then queued as sent), else a short 400 naming the field or 413.
func FuzzPostEvent(f *testing.F) {
	s, r, st := fuzzServer(f)
	for _, b := range []string{
		`{"event_name":"voicemail_saved","account_id":"72fabca989b3102c28482c60070aac5b","vmbox_id":"b2f1c691e3e733f52c7c8b4b621289bc"}`,
		`{"Event-Name":"voicemail_saved","Account-ID":"a1","Voicemail-Box":"v1"}`,
		`{"account_id":"a"}`, `{"account_id":5,"vmbox_id":"v"}`, `{"account_id":"a\r\n","vmbox_id":"v"}`,
		`{"account_id":"a","vmbox_id":"` + strings.Repeat("v", 3000) + `"}`,
		`null`, `[]`, ``, `not json`,
	} {
		f.Add([]byte(b))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := fuzzPost(t, s, "/api/v1/events", body)
		what := fmt.Sprintf("POST /api/v1/events %s", testenv.FuzzQuote(string(body)))
		switch code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			fuzzCheckRefusal(t, what, code, out, body, "event_name", "Event-Name", "name", "account_id", "Account-ID", "vmbox_id", "Voicemail-Box", "body")
			return
		case http.StatusAccepted:
		default:
			t.Fatalf("%s: answer %d %v", what, code, out)
		}
		defer r.Client.Del(ctx, st.EventsKey())
		queued, err := r.Client.LRange(ctx, st.EventsKey(), 0, -1).Result()
		if err != nil || len(queued) != 1 || queued[0] != string(body) {
			t.Fatalf("%s: queued %q, %v", what, queued, err)
		}
		if _, err := callback.ParseEvent(queued[0]); err != nil {
			t.Errorf("%s: queued an event the runner refuses: %v", what, err)
		}
	})
}
