package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"redial/internal/auth"
	"redial/internal/dialer"
	"redial/internal/logtext"
	"redial/internal/notify"
	"redial/internal/store"
	"redial/internal/validate"
)

// Route is one of the page's API routes; every one needs capability
// dashboard (or open mode).
type Route struct {
	Pattern string
	Handler http.Handler
}

// Routes are the page's API (docs/dashboard.md).
func (s *Service) Routes() []Route {
	return []Route{
		{"GET /api/v1/dashboard/session", http.HandlerFunc(s.getSession)},
		{"GET /api/v1/dashboard/stream", http.HandlerFunc(s.stream)},
		{"GET /api/v1/dashboard/cdrs", http.HandlerFunc(s.getCDRs)},
		{"POST /api/v1/dashboard/campaigns/{name}", http.HandlerFunc(s.postCampaign)},
		{"POST /api/v1/dashboard/calls/{ref}/hangup", http.HandlerFunc(s.postHangup)},
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Service) getSession(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"self": s.cfg.Host, "version": s.cfg.Version, "csrf": "", "mode": "", "name": ""}
	if s.deps.Auth != nil {
		out["csrf"] = s.deps.Auth.CSRF(r)
		out["mode"] = s.deps.Auth.Mode().String()
	}
	if id, ok := auth.FromContext(r.Context()); ok {
		out["name"] = id.Name
	}
	writeJSON(w, http.StatusOK, out)
}

// keepAlive is how often an idle stream gets a comment line, so proxies
// keep it open; the state event comes once a Tick anyway while Redis
// answers.
const keepAlive = 15 * time.Second

func (s *Service) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	v, ok := s.hub.add()
	if !ok {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("dashboard: %d viewers already on this node; open the page on another node", s.cfg.MaxViewers))
		return
	}
	defer s.hub.remove(v)
	var revoked <-chan struct{}
	if id, ok := auth.FromContext(r.Context()); ok && s.deps.Auth != nil && !id.Open {
		revoked = s.deps.Auth.Revoked(id)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Tell the page how soon to reconnect after a drop.
	io.WriteString(w, "retry: 2000\n\n")
	fl.Flush()
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	rc := http.NewResponseController(w)
	for {
		var f []byte
		select {
		case <-r.Context().Done():
			return
		case <-revoked:
			return
		case <-v.dropped:
			return
		case <-ka.C:
			f = []byte(": keep-alive\n\n")
		case f = <-v.ch:
		}
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(f); err != nil {
			return
		}
		// Send what else is queued in the same write burst.
		for more := true; more; {
			select {
			case g := <-v.ch:
				if _, err := w.Write(g); err != nil {
					return
				}
			default:
				more = false
			}
		}
		fl.Flush()
	}
}

// CDR filters are bounded like every other field from outside.
const (
	maxFilterLen = 64
	// cdrScan is how many of the stream's newest entries a filtered query
	// looks through at most.
	cdrScan = 20000
)

func (s *Service) getCDRs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f struct{ campaign, number, disposition string }
	for _, p := range []struct {
		name string
		dst  *string
	}{{"campaign", &f.campaign}, {"number", &f.number}, {"disposition", &f.disposition}} {
		v := strings.TrimSpace(q.Get(p.name))
		if err := validate.Text(p.name, v, maxFilterLen); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: cdrs: %w", err))
			return
		}
		*p.dst = v
	}
	limit := recentCDRs
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: cdrs: limit: want a whole number from 1 to 500, got %q", logtext.Truncate(v, 20)))
			return
		}
		limit = n
	}
	disp := strings.ToUpper(f.disposition)
	rows := []cdrRow{}
	err := s.deps.Store.LatestCDRs(r.Context(), cdrScan, func(e storeCDR) (bool, error) {
		var c notify.CDR
		if e.Payload == nil || json.Unmarshal(e.Payload, &c) != nil {
			return true, nil // a malformed entry is someone else's; skip it
		}
		if (f.campaign != "" && c.CampaignRef != f.campaign) || (f.number != "" && !strings.Contains(c.ClientNumber, f.number)) ||
			(disp != "" && string(c.Disposition) != disp) {
			return true, nil
		}
		rows = append(rows, cdrRow{CDRID: c.CDRID, Time: c.End, CallRef: c.CallRef, CampaignRef: c.CampaignRef,
			ContactRef: c.ContactRef, Number: c.ClientNumber, Line: c.Line, Attempt: c.Attempt, Disposition: string(c.Disposition),
			SIPCode: c.SIPCode, HangupCause: c.HangupCause, Duration: c.Duration, Billsec: c.Billsec, Ext: c.Ext})
		return len(rows) < limit, nil
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cdrs": rows})
}

// maxBody bounds the page's request bodies.
const maxBody = 4 << 10

// decodeBody reads a small JSON object strictly: unknown fields and
// trailing data are errors naming what was wrong.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return errors.New("body: more than one JSON value")
	}
	return nil
}

// maxLimit bounds params.limit set from the page.
const maxLimit = 100000

func (s *Service) postCampaign(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := validate.Ref("name", name); err != nil || name == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: campaign name: want 1 to %d printable bytes", validate.MaxRefLen))
		return
	}
	var body struct {
		Enable *bool            `json:"enable"`
		Limit  *json.RawMessage `json:"limit"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: campaign %q: %w", name, err))
		return
	}
	params := map[string]any{}
	if body.Enable != nil {
		params["enable"] = *body.Enable
	}
	if body.Limit != nil {
		n, err := strconv.Atoi(strings.TrimSpace(string(*body.Limit)))
		if err != nil || n < 0 || n > maxLimit {
			writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: campaign %q: limit: want a whole number from 0 to %d, got %s",
				name, maxLimit, logtext.Truncate(string(*body.Limit), 20)))
			return
		}
		params["limit"] = n
	}
	if len(params) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: campaign %q: want enable or limit", name))
		return
	}
	if _, err := dialer.PatchTask(r.Context(), s.deps.Store, name, params, s.cfg.Location); err != nil {
		// Redis failing is 503; a value the task check refused, 400.
		code := http.StatusServiceUnavailable
		var invalid *dialer.InvalidTaskError
		switch {
		case errors.Is(err, dialer.ErrNoTask):
			code = http.StatusNotFound
		case errors.As(err, &invalid):
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	s.log.Info("dashboard: campaign changed", "task", name, "params", params, "by", who(r))
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "params": params})
}

func (s *Service) postHangup(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if err := validate.Ref("call_ref", ref); err != nil || ref == "" {
		writeError(w, http.StatusBadRequest, errors.New("dashboard: call_ref: want 1 to 256 printable bytes"))
		return
	}
	var body struct {
		Node string `json:"node"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: hangup %q: %w", ref, err))
		return
	}
	if err := validate.Text("node", body.Node, 128); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dashboard: hangup %q: %w", ref, err))
		return
	}
	found := false
	if body.Node == "" || body.Node == s.cfg.Host {
		found = s.deps.Calls.Hangup(ref)
	} else {
		req, _ := json.Marshal(ref)
		b, err := s.deps.Bus.Request(r.Context(), body.Node, methodHangup, req, 3*time.Second)
		if err != nil {
			writeError(w, http.StatusBadGateway, fmt.Errorf("dashboard: hangup %q on node %q: %w", ref, body.Node, err))
			return
		}
		json.Unmarshal(b, &found)
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Errorf("dashboard: call_ref %q: no such call in progress", ref))
		return
	}
	s.log.Info("dashboard: hangup", "call_ref", ref, "node", body.Node, "by", who(r))
	writeJSON(w, http.StatusAccepted, map[string]string{"call_ref": ref, "status": "hanging up"})
}

// who names the token behind a request for the log.
func who(r *http.Request) string {
	if id, ok := auth.FromContext(r.Context()); ok {
		if id.Open {
			return "open mode"
		}
		return id.Name
	}
	return ""
}

// storeCDR is one entry of the CDR stream.
type storeCDR = store.StreamCDR
