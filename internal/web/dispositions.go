package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"redial/internal/call"
	"redial/internal/notify"
	"redial/internal/store"
	"redial/internal/validate"
)

// Disposition limits.
const (
	maxDispositionBody = 16 << 10
	maxDispositionCode = 64
	maxDispositionNote = 1024
	// maxCallbackAhead is the furthest a callback may be scheduled.
	maxCallbackAhead = 366 * 24 * time.Hour
	// callbackSlack lets a callback_at a moment in the past (clock skew
	// between the integrator and this node, a request in transit) mean
	// "now" rather than be refused.
	callbackSlack = 5 * time.Second
)

// dispositionBody is POST /api/v1/calls/{ref}/disposition.
type dispositionBody struct {
	Code       string
	Note       string
	CallbackAt *time.Time
}

// decodeDisposition reads the body field by field so every error names
// its field; unknown fields are refused.
func decodeDisposition(body []byte, now time.Time) (dispositionBody, error) {
	var d dispositionBody
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return d, fmt.Errorf("body: malformed JSON: %w", err)
	}
	if err := onlyValue(dec); err != nil {
		return d, err
	}
	if m == nil {
		return d, errors.New("body: want a JSON object {code, note, callback_at}")
	}
	haveCode := false
	for k, raw := range m {
		var err error
		switch k {
		case "code":
			haveCode = true
			if err = jsonString(raw, &d.Code); err == nil {
				err = checkPrintable(d.Code, maxDispositionCode, false)
			}
		case "note":
			if err = jsonString(raw, &d.Note); err == nil {
				err = checkPrintable(d.Note, maxDispositionNote, true)
			}
		case "callback_at":
			d.CallbackAt, err = callbackTime(raw, now)
		default:
			err = errors.New("unknown field (want code, note, callback_at)")
		}
		if err != nil {
			return d, fmt.Errorf("%s: %w", fieldName(k), err)
		}
	}
	if !haveCode {
		return d, errors.New("code: required")
	}
	return d, nil
}

// checkPrintable refuses empty text (unless it may be), text over max
// bytes, invalid UTF-8 and control characters (a note may hold line
// breaks and tabs).
func checkPrintable(s string, max int, note bool) error {
	switch {
	case strings.TrimSpace(s) == "" && !note:
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("%d bytes, at most %d", len(s), max)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if note && (r == '\n' || r == '\t') {
			continue
		}
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("control or unprintable character %U", r)
		}
	}
	return nil
}

// callbackTime reads callback_at: RFC 3339, or unix seconds as a number
// or a string; null means none. It must lie between now and a year ahead.
func callbackTime(raw json.RawMessage, now time.Time) (*time.Time, error) {
	var t time.Time
	switch jsonKind(raw) {
	case "null":
		return nil, nil
	case "number":
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("want RFC 3339 time or unix seconds, got %s", validate.Truncate(string(raw), 40))
		}
		t = unixSeconds(f)
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		s = strings.TrimSpace(s)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			t = unixSeconds(f)
		} else if t, err = time.Parse(time.RFC3339, s); err != nil {
			return nil, fmt.Errorf("want RFC 3339 time or unix seconds, got %q", validate.Truncate(s, 40))
		}
	default:
		return nil, fmt.Errorf("want RFC 3339 time or unix seconds, got %s", jsonKind(raw))
	}
	switch {
	case t.IsZero():
		return nil, errors.New("not a valid time")
	case t.Before(now.Add(-callbackSlack)):
		return nil, fmt.Errorf("%s is in the past", t.UTC().Format(time.RFC3339))
	case t.After(now.Add(maxCallbackAhead)):
		return nil, fmt.Errorf("%s is more than a year ahead", t.UTC().Format(time.RFC3339))
	}
	t = t.UTC()
	return &t, nil
}

// unixSeconds converts seconds since 1970 to a time; out-of-range values
// give the zero time.
func unixSeconds(f float64) time.Time {
	if math.IsNaN(f) || f <= 0 || f > 1e11 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// postDisposition serves POST /api/v1/calls/{ref}/disposition: it keeps
// the outcome with the call's record, notifies integrators on
// <prefix>:campaigns, and with callback_at puts a campaign number back in
// its queue's retry set for that time.
func (s *callRecordAPI) postDisposition(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.callRefParam(w, r)
	if !ok {
		s.mDispositions.WithLabelValues("bad_request").Inc()
		return
	}
	body, err := readBody(w, r, maxDispositionBody)
	if err != nil {
		s.mDispositions.WithLabelValues("bad_request").Inc()
		s.writeBodyError(w, r, err)
		return
	}
	now := time.Now()
	d, err := decodeDisposition(body, now)
	if err != nil {
		s.mDispositions.WithLabelValues("bad_request").Inc()
		s.badRequest(w, r, validate.Short(err))
		return
	}
	ctx := r.Context()
	rec, found, err := s.deps.Store.GetCallRecord(ctx, ref)
	if err != nil {
		s.mDispositions.WithLabelValues("error").Inc()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "call record of " + quoteRef(ref) + " unavailable: " + err.Error()})
		return
	}
	if !found {
		s.mDispositions.WithLabelValues("not_found").Inc()
		msg := "call_ref " + quoteRef(ref) + ": no such call (or its record expired)"
		if s.deps.Calls != nil {
			if _, live := s.deps.Calls.Get(ref); live {
				msg = "call_ref " + quoteRef(ref) + ": the call has no record yet; disposition it once it has ended"
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": msg})
		return
	}
	if d.CallbackAt != nil && (rec.NumberQueue == "" || rec.Item == "") {
		s.mDispositions.WithLabelValues("bad_request").Inc()
		s.badRequest(w, r, fmt.Errorf("callback_at: call_ref %s did not come from a campaign number queue; nothing to call back", quoteRef(ref)))
		return
	}
	cd := store.CallDisposition{Code: d.Code, Note: d.Note, CallbackAt: d.CallbackAt, At: now.UTC()}
	if err := s.deps.Store.SetCallDisposition(ctx, ref, cd); err != nil {
		result, code := "error", http.StatusServiceUnavailable
		if errors.Is(err, store.ErrNoCallRecord) { // expired in between
			result, code = "not_found", http.StatusNotFound
		}
		s.mDispositions.WithLabelValues(result).Inc()
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	out := map[string]any{"call_ref": ref, "disposition": cd}
	if d.CallbackAt != nil {
		if err := s.deps.Store.ScheduleCallback(ctx, rec.NumberQueue, rec.Item, *d.CallbackAt); err != nil {
			s.mDispositions.WithLabelValues("error").Inc()
			s.log.Error("web: scheduling a callback failed", "call_ref", ref, "queue", rec.NumberQueue, "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "callback_at: " + err.Error()})
			return
		}
		out["callback"] = map[string]any{"number_queue": rec.NumberQueue, "at": d.CallbackAt}
	}
	n := notify.DispositionNotification{CallRef: ref, ContactRef: rec.ContactRef, CampaignRef: rec.CampaignRef,
		Code: d.Code, Note: d.Note}
	if rec.Ext != "" {
		ext := rec.Ext
		n.Ext = &ext
	}
	if s.deps.Notify != nil {
		if err := s.deps.Notify.PublishDisposition(ctx, n); err != nil {
			// Kept with the call; only the notification is lost.
			s.log.Error("web: disposition notification lost", "call_ref", ref, "error", err)
		}
	}
	s.mDispositions.WithLabelValues("ok").Inc()
	s.log.Info("web: call dispositioned", "call_ref", ref, "code", d.Code, "callback_at", d.CallbackAt)
	writeJSON(w, http.StatusOK, out)
}

// callView is GET /api/v1/calls/{ref} of a call in memory, with what its
// record adds.
type callView struct {
	call.Info
	// Outcome is the disposition given through the API ("disposition"
	// already names the CDR's, ANSWERED and so on).
	Outcome   *store.CallDisposition `json:"outcome,omitempty"`
	Recording string                 `json:"recording,omitempty"`
}

// recordView is GET /api/v1/calls/{ref} of a call known only by its
// record.
type recordView struct {
	CallRef     string                 `json:"call_ref"`
	ContactRef  string                 `json:"contact_ref"`
	CampaignRef string                 `json:"campaign_ref"`
	State       call.State             `json:"state"`
	Number      string                 `json:"number,omitempty"`
	Ext         *string                `json:"ext"`
	Node        string                 `json:"node"`
	End         *time.Time             `json:"end,omitempty"`
	Recording   string                 `json:"recording,omitempty"`
	Outcome     *store.CallDisposition `json:"outcome,omitempty"`
}

// getCall serves GET /api/v1/calls/{ref}: the call from memory while this
// node keeps it, with its recording and outcome from the call record;
// after that, what the record has.
func (s *callRecordAPI) getCall(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	c, live := s.deps.Calls.Get(ref)
	var rec store.CallRecord
	var found bool
	if s.deps.Store != nil && validate.Ref("call_ref", ref) == nil {
		var err error
		if rec, found, err = s.deps.Store.GetCallRecord(r.Context(), ref); err != nil {
			s.log.Warn("web: reading call record failed", "call_ref", ref, "error", err)
		}
	}
	switch {
	case live:
		writeJSON(w, http.StatusOK, callView{Info: c.Info(), Outcome: rec.Disposition, Recording: rec.Recording})
	case found:
		v := recordView{CallRef: ref, ContactRef: rec.ContactRef, CampaignRef: rec.CampaignRef, State: call.StateEnded,
			Number: rec.Number, Node: rec.Node, Recording: rec.Recording, Outcome: rec.Disposition}
		if rec.Ext != "" {
			ext := rec.Ext
			v.Ext = &ext
		}
		if !rec.End.IsZero() {
			e := rec.End.UTC()
			v.End = &e
		}
		writeJSON(w, http.StatusOK, v)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "call_ref: no such call"})
	}
}
