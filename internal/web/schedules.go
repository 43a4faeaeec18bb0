package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"redial/internal/callback"
)

// getSchedules lists the scheduled members (due first), ?limit=N (100).
func (s *Server) getSchedules(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.badRequest(w, r, fmt.Errorf("limit: want a positive number, got %q", v))
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
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.badRequest(w, r, fmt.Errorf("body: %w", err))
		return
	}
	at, err := parseAt(body.At)
	if err != nil {
		s.badRequest(w, r, fmt.Errorf("at: %w", err))
		return
	}
	if len(body.Member) == 0 || body.Member[0] != '{' {
		s.badRequest(w, r, errors.New("member: want an object {\"params\":{\"number\",\"expires\",\"config\"},\"variables\":{}}"))
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

func parseAt(raw json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, errors.New("want RFC 3339 time or unix seconds")
	}
	return time.Parse(time.RFC3339, s)
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
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	if _, err := callback.ParseEvent(string(b)); err != nil {
		s.badRequest(w, r, err)
		return
	}
	if err := s.deps.Store.PushEvent(r.Context(), string(b)); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued"})
}
