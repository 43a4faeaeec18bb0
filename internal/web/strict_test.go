package web

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"redial/internal/store"
	"redial/internal/testenv"
)

// Fuzzing found POST /api/v1/schedules answering 201 for "at":1e300 and
// -1e300 and storing a garbage score, and every API body taking whatever
// followed its JSON value. "at" is now a time from 2000 to 9999, never
// null, and a body is one JSON value.
func TestPostScheduleRefusesBadAtAndTrailingData(t *testing.T) {
	r := testenv.StartRedis(t)
	st := store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"})
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	const member = `"member":{"params":{"number":"1001","config":"c"}}`
	cases := []struct{ body, want string }{
		{`{"at":1e300,` + member + `}`, `at: 1e300 is out of range (want a time from 2000-01-01 to 9999-12-31)`},
		{`{"at":-1e300,` + member + `}`, `at: -1e300 is out of range (want a time from 2000-01-01 to 9999-12-31)`},
		{`{"at":-1,` + member + `}`, `at: -1 is out of range (want a time from 2000-01-01 to 9999-12-31)`},
		{`{"at":253402300800,` + member + `}`, `at: 253402300800 is out of range (want a time from 2000-01-01 to 9999-12-31)`},
		{`{"at":"0001-01-01T00:00:00Z",` + member + `}`, `at: "0001-01-01T00:00:00Z" is out of range (want a time from 2000-01-01 to 9999-12-31)`},
		{`{"at":null,` + member + `}`, `at: required: want RFC 3339 time or unix seconds`},
		{`{` + member + `}`, `at: required: want RFC 3339 time or unix seconds`},
		{`{"at":1700000000,` + member + `}0`, `body: trailing data after the JSON value`},
		{`{"at":1700000000,` + member + `} {"at":1}`, `body: trailing data after the JSON value`},
		{`{"at":1700000000,` + member + `}}`, `body: trailing data after the JSON value`},
	}
	for _, c := range cases {
		rec := serve(s, http.MethodPost, "/api/v1/schedules", c.body)
		if rec.Code != http.StatusBadRequest || errorOf(t, rec) != c.want {
			t.Errorf("%s: %d %s, want 400 %s", c.body, rec.Code, rec.Body, c.want)
		}
	}
	if n, err := r.Client.ZCard(context.Background(), st.ScheduleNumbersKey()).Result(); err != nil || n != 0 {
		t.Fatalf("refused bodies stored %d members, %v", n, err)
	}
	// Blanks after the value (curl's newline) are not data.
	rec := serve(s, http.MethodPost, "/api/v1/schedules", `{"at":1700000000.5,`+member+"}\r\n \n")
	if rec.Code != http.StatusCreated {
		t.Fatalf("valid body: %d %s", rec.Code, rec.Body)
	}
	zs, err := r.Client.ZRangeWithScores(context.Background(), st.ScheduleNumbersKey(), 0, -1).Result()
	if err != nil || len(zs) != 1 || zs[0].Score != 1700000000.5 {
		t.Fatalf("stored %v, %v", zs, err)
	}
}

func TestDecodeOriginateRefusesTrailingData(t *testing.T) {
	const body = `{"number":"1001","line_group":"g1","destination":{"extension":"8888"}}`
	for _, tail := range []string{"0", ` {"number":"2"}`, "}", `"x"`} {
		if _, err := decodeOriginate([]byte(body + tail)); err == nil || err.Error() != "body: trailing data after the JSON value" {
			t.Errorf("%s: %v", body+tail, err)
		}
	}
	if req, err := decodeOriginate([]byte(body + "\n")); err != nil || len(req.Numbers) != 1 {
		t.Fatalf("trailing newline: %v", err)
	}
}
