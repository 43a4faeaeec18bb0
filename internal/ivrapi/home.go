package ivrapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"redial/internal/ivr"
)

// Event types of class ivrevents.
const (
	evAPIStart    = "api_start"
	evAPIStop     = "api_stop"
	evAPIReplaced = "api_replaced"
)

// homeSession is what the home node keeps about a session under (or
// waiting for) external control.
type homeSession struct {
	ivrid, key string
	// callRef is the call's reference (the api_start's cid), for logs.
	callRef string

	mu    sync.Mutex
	seq   uint64
	ring  []ringEntry // the last replayKept events the owner received
	owner string
	// grace runs while the owner's connection is gone; graceOwner is the
	// owner it waits for.
	grace      *time.Timer
	graceOwner string
	// stoppedSeq is the seq of the last ivrapi_component_stopped; changed
	// is closed (and replaced) whenever it moves, for a terminate waiting
	// to answer after the stopped event.
	stoppedSeq uint64
	changed    chan struct{}
}

type ringEntry struct {
	seq   uint64
	frame json.RawMessage
}

func (h *homeSession) stopGrace() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.grace != nil {
		h.grace.Stop()
		h.grace, h.graceOwner = nil, ""
	}
}

func (s *Service) homeHas(ivrid string) bool {
	s.homeMu.Lock()
	defer s.homeMu.Unlock()
	return s.home[ivrid] != nil
}

func (s *Service) homeGet(ivrid string) *homeSession {
	s.homeMu.Lock()
	defer s.homeMu.Unlock()
	return s.home[ivrid]
}

// splitOwner splits "<host>/<connection id>".
func splitOwner(owner string) (host, id string, ok bool) {
	i := strings.LastIndexByte(owner, '/')
	if i <= 0 || i == len(owner)-1 {
		return "", "", false
	}
	return owner[:i], owner[i+1:], true
}

// onEngineEvent numbers an event of a session running here, keeps it for
// replay and sends it on. The engine calls it in order, from one
// goroutine, and never waits for it to keep calls going.
func (s *Service) onEngineEvent(ev ivr.Event) {
	typ, _ := ev.Body["type"].(string)
	if ev.Name != ivr.EventNotify {
		typ = ""
	}
	s.homeMu.Lock()
	h := s.home[ev.IVRID]
	if h == nil {
		if typ != evAPIStart {
			// An event after api_stop (a component stopped by the end
			// of control): nobody owns the session any more.
			s.homeMu.Unlock()
			return
		}
		h = &homeSession{ivrid: ev.IVRID, key: ev.Key, changed: make(chan struct{})}
		if data, ok := ev.Body["data"].(map[string]any); ok {
			h.callRef, _ = data["cid"].(string)
		}
		s.home[ev.IVRID] = h
	}
	if typ == evAPIStop {
		delete(s.home, ev.IVRID)
	}
	s.homeMu.Unlock()

	h.mu.Lock()
	h.seq++
	seq := h.seq
	frame := encodeEvent(ev, seq)
	h.ring = append(h.ring, ringEntry{seq: seq, frame: frame})
	if len(h.ring) > replayKept {
		h.ring = append(h.ring[:0:0], h.ring[len(h.ring)-replayKept:]...)
	}
	owner := h.owner
	if ev.Name == ivr.EventComponentStopped {
		h.stoppedSeq = seq
		close(h.changed)
		h.changed = make(chan struct{})
	}
	if typ == evAPIStop {
		if h.grace != nil {
			h.grace.Stop()
			h.grace, h.graceOwner = nil, ""
		}
		if owner != "" {
			s.m.controlled.Dec()
		}
	}
	h.mu.Unlock()
	s.deliver(delivery{Domain: s.cfg.Domain, IVRID: ev.IVRID, Key: ev.Key, Seq: seq, Type: typ, Owner: owner, Frame: frame})
}

// encodeEvent is the event's frame with its seq added.
func encodeEvent(ev ivr.Event, seq uint64) json.RawMessage {
	body := make(map[string]any, len(ev.Body)+1)
	maps.Copy(body, ev.Body)
	body["seq"] = seq
	return mustFrame(ev.Name, body)
}

// homeReq is a session request sent to the session's home.
type homeReq struct {
	Op       string          `json:"op"`
	Domain   string          `json:"domain"`
	Key      string          `json:"key"`
	IVRID    string          `json:"ivrid"`
	Owner    string          `json:"owner"`
	Data     json.RawMessage `json:"data,omitempty"`
	Path     string          `json:"path,omitempty"`
	URL      string          `json:"url,omitempty"`
	DestPath string          `json:"destpath,omitempty"`
	Since    int64           `json:"since"`
}

// opGone tells the home that the owner's connection closed.
const opGone = "gone"

// homeRep is the home's answer.
type homeRep struct {
	Result json.RawMessage   `json:"result,omitempty"`
	Error  *apiError         `json:"error,omitempty"`
	Replay []json.RawMessage `json:"replay,omitempty"`
	// After is the seq of an event the client must receive before this
	// reply (a terminate answers after its component's stopped event).
	After uint64 `json:"after,omitempty"`
}

// handleSession carries out a session request on the home node.
func (s *Service) handleSession(ctx context.Context, from string, raw []byte) ([]byte, error) {
	var req homeReq
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("ivrapi: session request from %s: %w", from, err)
	}
	rep := s.doSession(ctx, req)
	return json.Marshal(rep)
}

func (s *Service) doSession(ctx context.Context, req homeReq) (rep homeRep) {
	result := func(v any) homeRep {
		b, err := json.Marshal(v)
		if err != nil {
			return homeRep{Error: errf(CodeInternal, "encode result: %v", err)}
		}
		return homeRep{Result: b}
	}
	if req.Domain != s.cfg.Domain {
		return homeRep{Error: errf(CodeNotFound, "no session %q in domain %q", req.IVRID, req.Domain)}
	}
	h := s.homeGet(req.IVRID)
	if h == nil || h.key != req.Key {
		if req.Op == opGone {
			return homeRep{}
		}
		return homeRep{Error: errf(CodeNotFound, "no session %q waiting for external control with key %q", req.IVRID, req.Key)}
	}
	switch req.Op {
	case reqAccept, reqReaccept:
		return s.accept(h, req)
	case reqAbort:
		if err := s.deps.IVR.Abort(req.Key, req.IVRID, req.Owner); err != nil {
			return homeRep{Error: engineError(err)}
		}
		return result("ok")
	case reqApply:
		oid, err := s.deps.IVR.Apply(req.Key, req.IVRID, req.Owner, req.Data)
		if err != nil {
			return homeRep{Error: engineError(err)}
		}
		return result(map[string]int{"oId": oid})
	case reqTerminate:
		st, err := s.deps.IVR.Control(req.Key, req.IVRID)
		if err == nil && st.Owner != req.Owner {
			err = ivr.ErrNotOwner
		}
		h.mu.Lock()
		before, changed := h.stoppedSeq, h.changed
		h.mu.Unlock()
		if err == nil {
			err = s.deps.IVR.Terminate(req.Key, req.IVRID, req.Owner)
		}
		if err != nil {
			return homeRep{Error: engineError(err)}
		}
		// The engine has sent the stopped event; wait until it is numbered
		// here, so the reply can name it.
		after := s.waitStopped(ctx, h, before, changed)
		rep := result(map[string]int{"oId": st.Applied})
		rep.After = after
		return rep
	case reqGetPath, reqUploadTemp, reqUploadStatic:
		st, err := s.deps.IVR.Control(req.Key, req.IVRID)
		if err == nil && st.Owner != req.Owner {
			err = ivr.ErrNotOwner
		}
		if err != nil {
			return homeRep{Error: engineError(err)}
		}
		var v any
		var aerr *apiError
		switch {
		case req.Op == reqGetPath:
			v, aerr = s.getPath(ctx, st.Temp, req.Path)
		case req.DestPath != "" || req.Op == reqUploadStatic:
			v, aerr = s.uploadStaticEverywhere(ctx, req.URL, req.DestPath)
		default:
			v, aerr = s.uploadTemp(ctx, st.Temp, req.URL)
		}
		if aerr != nil {
			return homeRep{Error: aerr}
		}
		return result(v)
	case opGone:
		s.ownerGone(h, req.Owner)
		return homeRep{}
	}
	return homeRep{Error: errf(CodeBadRequest, "unknown session request %q", req.Op)}
}

// accept carries out ivrapi_accept and ivrapi_reaccept. The session's lock
// is held across the engine's decision and the owner change, so every
// event numbered after it goes to the new owner and every one before it is
// in the replay.
func (s *Service) accept(h *homeSession, req homeReq) homeRep {
	h.mu.Lock()
	prev := h.owner
	err := s.deps.IVR.Accept(req.Key, req.IVRID, req.Owner, req.Op == reqReaccept)
	var st ivr.ControlState
	if err == nil {
		st, err = s.deps.IVR.Control(req.Key, req.IVRID)
	}
	if err != nil {
		h.mu.Unlock()
		return homeRep{Error: engineError(err)}
	}
	h.owner = req.Owner
	if h.grace != nil {
		h.grace.Stop()
		h.grace, h.graceOwner = nil, ""
	}
	if prev == "" {
		s.m.controlled.Inc()
	}
	res := map[string]any{"state": "idle", "seq": h.seq}
	if st.Applied >= 0 {
		res["state"], res["oId"] = "component", st.Applied
	}
	var rep homeRep
	if req.Op == reqReaccept && req.Since >= 0 {
		for _, e := range h.ring {
			if e.seq > uint64(req.Since) {
				rep.Replay = append(rep.Replay, e.frame)
			}
		}
	}
	var replaced *delivery
	if prev != "" && prev != req.Owner {
		// api_replaced is numbered like every session event but not kept:
		// it is for the previous owner, never replayed to the new one.
		h.seq++
		res["seq"] = h.seq
		frame := mustFrame(ivr.EventNotify, map[string]any{"class": classIVREvents, "type": evAPIReplaced,
			"eventts": s.now().UnixMilli(), "seq": h.seq, "data": map[string]string{"ivrid": h.ivrid, "key": h.key}})
		replaced = &delivery{Domain: s.cfg.Domain, IVRID: h.ivrid, Key: h.key, Seq: h.seq, Owner: prev, Frame: frame}
	}
	h.mu.Unlock()
	if replaced != nil {
		s.log.Info("ivrapi: control taken over", "call_ref", h.callRef, "ivrid", h.ivrid, "key", h.key, "from", prev, "to", req.Owner)
		s.deliver(*replaced)
	}
	b, _ := json.Marshal(res)
	rep.Result = b
	return rep
}

// waitStopped waits until h numbered a stopped event after before and
// returns its seq (0 when it did not come in time).
func (s *Service) waitStopped(ctx context.Context, h *homeSession, before uint64, changed chan struct{}) uint64 {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.stoppedSeq > before {
			seq := h.stoppedSeq
			h.mu.Unlock()
			return seq
		}
		changed = h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-t.C:
			return 0
		case <-ctx.Done():
			return 0
		}
	}
}

// ownerGone starts the grace of a session whose owner's connection closed.
func (s *Service) ownerGone(h *homeSession, owner string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.owner != owner || h.grace != nil {
		return
	}
	s.log.Info("ivrapi: owner gone; waiting for a reaccept", "call_ref", h.callRef, "ivrid", h.ivrid, "key", h.key, "owner", owner, "grace", s.cfg.Grace)
	h.graceOwner = owner
	var t *time.Timer
	t = time.AfterFunc(s.cfg.Grace, func() {
		h.mu.Lock()
		still := h.grace == t && h.owner == owner
		if h.grace == t {
			h.grace, h.graceOwner = nil, ""
		}
		h.mu.Unlock()
		if !still {
			return
		}
		err := s.deps.IVR.Abort(h.key, h.ivrid, owner)
		s.log.Info("ivrapi: no reaccept within the grace; control returned to the script", "call_ref", h.callRef, "ivrid", h.ivrid, "key", h.key, "owner", owner, "error", err)
	})
	h.grace = t
}

// ownerNodeDied starts the grace of every session owned through a node
// that died: its connections are gone without a goodbye.
func (s *Service) ownerNodeDied(host string) {
	s.homeMu.Lock()
	list := make([]*homeSession, 0, len(s.home))
	for _, h := range s.home {
		list = append(list, h)
	}
	s.homeMu.Unlock()
	for _, h := range list {
		h.mu.Lock()
		owner := h.owner
		h.mu.Unlock()
		if oh, _, ok := splitOwner(owner); ok && oh == host {
			s.ownerGone(h, owner)
		}
	}
}

// engineError maps the IVR engine's control errors to error codes.
func engineError(err error) *apiError {
	msg := err.Error()
	switch {
	case errors.Is(err, ivr.ErrNoSession), errors.Is(err, ivr.ErrNotControlled):
		return &apiError{Code: CodeNotFound, Message: msg}
	case errors.Is(err, ivr.ErrOwned):
		return &apiError{Code: CodeOwned, Message: msg}
	case errors.Is(err, ivr.ErrNotOwner):
		return &apiError{Code: CodeNotOwner, Message: msg}
	case errors.Is(err, ivr.ErrBusy):
		return &apiError{Code: CodeBusy, Message: msg}
	case errors.Is(err, ivr.ErrIdle):
		return &apiError{Code: CodeNotFound, Message: msg}
	case strings.Contains(msg, "did not stop within"):
		return &apiError{Code: CodeInternal, Message: msg}
	}
	// Apply's other errors are the component's: unknown oType, a bad
	// property, a type that cannot be applied.
	return &apiError{Code: CodeInvalidComponent, Message: msg}
}

// SessionState is a session under (or waiting for) external control on
// this node, as the dashboard and tests see it.
type SessionState struct {
	IVRID string `json:"ivrid"`
	Key   string `json:"key"`
	// Owner is the controlling connection ("<node>/<id>"), "" while none.
	Owner string `json:"owner"`
	// Seq is the number of the session's latest event.
	Seq uint64 `json:"seq"`
	// Grace is true while the owner's connection is gone and the session
	// waits for a reaccept.
	Grace bool `json:"grace"`
}

// Sessions lists the sessions running here in an external control
// component.
func (s *Service) Sessions() []SessionState {
	s.homeMu.Lock()
	list := make([]*homeSession, 0, len(s.home))
	for _, h := range s.home {
		list = append(list, h)
	}
	s.homeMu.Unlock()
	out := make([]SessionState, 0, len(list))
	for _, h := range list {
		h.mu.Lock()
		out = append(out, SessionState{IVRID: h.ivrid, Key: h.key, Owner: h.owner, Seq: h.seq, Grace: h.grace != nil})
		h.mu.Unlock()
	}
	return out
}
