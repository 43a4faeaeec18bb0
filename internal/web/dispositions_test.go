package web

import (
	"strings"
	"testing"
	"time"
)

// callback_at takes RFC 3339 and unix seconds (number or string), and
// refuses the past, more than a year ahead and anything else, naming the
// field.
func TestDecodeDispositionCallbackAt(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	want := now.Add(90 * time.Minute)
	for _, body := range []string{
		`{"code":"CB","callback_at":"2026-05-06T08:38:09Z"}`,
		`{"code":"CB","callback_at":"2026-05-06T10:38:09+02:00"}`,
		`{"code":"CB","callback_at":1778056689}`,
		`{"code":"CB","callback_at":"1778056689"}`,
	} {
		d, err := decodeDisposition([]byte(body), now)
		if err != nil || d.CallbackAt == nil || !d.CallbackAt.Equal(want) || d.Code != "CB" {
			t.Errorf("%s: %+v, %v; want callback at %v", body, d, err, want)
		}
	}
	if d, err := decodeDisposition([]byte(`{"code":"CB","note":"x","callback_at":null}`), now); err != nil || d.CallbackAt != nil || d.Note != "x" {
		t.Errorf("null callback_at: %+v, %v", d, err)
	}
	for body, field := range map[string]string{
		`{"code":"CB","callback_at":1}`:                      "callback_at",
		`{"code":"CB","callback_at":-5}`:                     "callback_at",
		`{"code":"CB","callback_at":"2026-05-06T06:00:00Z"}`: "callback_at",
		`{"code":"CB","callback_at":"2027-06-07T00:00:00Z"}`: "callback_at",
		`{"code":"CB","callback_at":true}`:                   "callback_at",
		`{"code":"CB","callback_at":"1e400"}`:                "callback_at",
		`{"code":"  "}`:                                      "code",
		`{"code":"\u202e"}`:                                  "code",
		`{"code":"ok","note":"a\u0000b"}`:                    "note",
		`{"code":"ok","Code":"x"}`:                           "Code",
		`null`:                                               "body",
	} {
		_, err := decodeDisposition([]byte(body), now)
		if err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("%s: %v, want an error naming %q", body, err, field)
		}
	}
}
