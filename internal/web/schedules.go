package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"redial/internal/callback"
	"redial/internal/schedule"
	"redial/internal/validate"
)

// getSchedules lists the scheduled members (due first), ?limit=N (100).
func (s *Server) getSchedules(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.badRequest(w, r, validate.Short(fmt.Errorf("limit: want a positive number, got %q", v)))
			return
		}
		limit = n
	}
	list, err := s.deps.Store.ListScheduled(r.Context(), math.Inf(-1), math.Inf(1), limit)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	type item struct {
		At     time.Time       `json:"at"`
		Member json.RawMessage `json:"member"`
	}
	out := make([]item, 0, len(list))
	for _, c := range list {
		sec, frac := math.Modf(c.Score)
		m := json.RawMessage(c.Member)
		if !json.Valid(m) {
			m, _ = json.Marshal(c.Member)
		}
		out = append(out, item{At: time.Unix(int64(sec), int64(frac*1e9)).UTC(), Member: m})
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": s.deps.Store.ScheduleNumbersKey(), "members": out})
}

// postSchedule adds a member: {"at": RFC 3339 or unix seconds, "member": {...}}.
func (s *Server) postSchedule(w http.ResponseWriter, r *http.Request) {
	var body struct {
		At     json.RawMessage `json:"at"`
		Member json.RawMessage `json:"member"`
	}
	if err := decodeJSON(w, r, maxBody, &body, true); err != nil {
		s.writeBodyError(w, r, err)
		return
	}
	at, err := parseAt(body.At)
	if err != nil {
		s.badRequest(w, r, validate.Short(fmt.Errorf("at: %w", err)))
		return
	}
	if len(body.Member) == 0 || body.Member[0] != '{' {
		s.badRequest(w, r, errors.New("member: want an object {\"params\":{\"number\",\"expires\",\"config\"},\"variables\":{}}"))
		return
	}
	// The scheduler's own parse: what it would move to :invalid when due
	// is refused now.
	if err := schedule.CheckMember(string(body.Member)); err != nil {
		s.badRequest(w, r, validate.Short(fmt.Errorf("member: %w", err)))
		return
	}
	if err := s.deps.Store.AddScheduled(r.Context(), string(body.Member), float64(at.UnixMilli())/1000); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if s.deps.Schedule != nil {
		s.deps.Schedule.Wake()
	}
	writeJSON(w, http.StatusCreated, map[string]any{"at": at.UTC()})
}

// Bounds of "at", in unix seconds: 2000-01-01T00:00:00Z to the last
// second of year 9999. A time in the past is due at once, as before; the
// bounds only refuse values no one means (1e300, -1, 0001-01-01), which
// were stored as a garbage score.
const (
	minAtUnix = 946684800
	maxAtUnix = 253402300799
)

// parseAt decodes "at": RFC 3339 or unix seconds between minAtUnix and
// maxAtUnix. Absent and null are refused rather than read as "now" (null
// used to become 1970, due at once): a client that lost its time must
// not have the call placed at once by accident. To call now, send the
// current time.
func parseAt(raw json.RawMessage) (time.Time, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return time.Time{}, errors.New("required: want RFC 3339 time or unix seconds")
	}
	outOfRange := func() error {
		return fmt.Errorf("%s is out of range (want a time from 2000-01-01 to 9999-12-31)", validate.Truncate(string(bytes.TrimSpace(raw)), 64))
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		if !(f >= minAtUnix && f <= maxAtUnix) {
			return time.Time{}, outOfRange()
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, errors.New("want RFC 3339 time or unix seconds")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	if u := t.Unix(); u < minAtUnix || u > maxAtUnix {
		return time.Time{}, outOfRange()
	}
	return t, nil
}

func (s *Server) getCallbacks(w http.ResponseWriter, r *http.Request) {
	plans, due, err := s.deps.Store.Plans(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	type plan struct {
		Plan json.RawMessage `json:"plan"`
		Due  *time.Time      `json:"next_attempt,omitempty"`
	}
	out := map[string]plan{}
	for f, p := range plans {
		pl := plan{Plan: json.RawMessage(p)}
		if d, ok := due[f]; ok {
			d := d.UTC()
			pl.Due = &d
		}
		out[f] = pl
	}
	ended, _ := s.deps.Store.EndedPlans(r.Context(), 50)
	writeJSON(w, http.StatusOK, map[string]any{"plans": out, "ended": ended})
}

// postEvent queues an event on redial:events, as an integrator would.
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, maxEventBody)
	if err != nil {
		s.writeBodyError(w, r, err)
		return
	}
	if _, err := callback.ParseEvent(string(b)); err != nil {
		s.badRequest(w, r, validate.Short(err))
		return
	}
	if err := s.deps.Store.PushEvent(r.Context(), string(b)); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued"})
}
