package web

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/auth"
	"redial/internal/store"
	"redial/internal/validate"
)

// proxiedHeader marks a recording request one node forwarded to another,
// so the other never forwards it again (two nodes disagreeing about who
// holds a file must not bounce a request between them).
const proxiedHeader = "X-Redial-Proxied"

// recordingProxyTimeout bounds the connection to the node that holds a
// recording, up to its response headers; the body streams as long as the
// client reads it.
const recordingProxyTimeout = 10 * time.Second

// callRecordAPI serves the routes keyed by call_ref that outlive the call:
// recording download, disposition, and the call itself (from its record
// once it has left memory).
type callRecordAPI struct {
	*Server
	mDispositions *prometheus.CounterVec
	// proxy fetches recordings from the node that holds them.
	proxy *http.Client
}

// callRecordRoutes mounts the routes of callRecordAPI.
func (s *Server) callRecordRoutes() {
	a := &callRecordAPI{Server: s,
		mDispositions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_dispositions_total",
			Help: "POST /api/v1/calls/{call_ref}/disposition requests by result (ok, bad_request, not_found, error)."},
			[]string{"result"}),
		proxy: &http.Client{
			Transport: &http.Transport{Proxy: nil, ResponseHeaderTimeout: recordingProxyTimeout, IdleConnTimeout: time.Minute},
			// A node's answer is passed on as it is, redirects included.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for _, r := range []string{"ok", "bad_request", "not_found", "error"} {
		a.mDispositions.WithLabelValues(r)
	}
	if s.deps.Registry != nil {
		s.deps.Registry.MustRegister(a.mDispositions)
	}
	s.Handle("GET /api/v1/calls/{ref}", auth.Rest, http.HandlerFunc(a.getCall))
	s.Handle("GET /api/v1/calls/{ref}/recording", auth.Rest, http.HandlerFunc(a.getRecording))
	s.Handle("POST /api/v1/calls/{ref}/disposition", auth.Rest, http.HandlerFunc(a.postDisposition))
}

// callRefParam returns the {ref} of the path, validated; on error it has
// answered 400 (503 when the node has no Redis store to look it up in).
func (s *Server) callRefParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.deps.Store == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "call records are not available on this node"})
		return "", false
	}
	ref := r.PathValue("ref")
	err := validate.Ref("call_ref", ref)
	if err == nil && ref == "" {
		err = errors.New("call_ref: empty")
	}
	if err != nil {
		s.badRequest(w, r, validate.Short(err))
		return "", false
	}
	return ref, true
}

// getRecording serves GET /api/v1/calls/{ref}/recording: the call's
// stereo WAV from this node's store, or through the node that holds it.
func (s *callRecordAPI) getRecording(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.callRefParam(w, r)
	if !ok {
		return
	}
	rec, found, err := s.deps.Store.GetCallRecord(r.Context(), ref)
	if err != nil {
		s.log.Warn("web: reading call record failed", "call_ref", ref, "error", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "call record of " + quoteRef(ref) + " unavailable: " + err.Error()})
		return
	}
	if !found || rec.Recording == "" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "call_ref " + quoteRef(ref) + ": no recording"})
		return
	}
	var self string
	if s.deps.Calls != nil && s.deps.Calls.Records() != nil {
		self = s.deps.Calls.Records().Host()
	}
	if rec.Node == self && self != "" {
		s.serveLocalRecording(w, r, ref, rec)
		return
	}
	if r.Header.Get(proxiedHeader) != "" {
		// Another node sent it here, but this node is not the holder.
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("call_ref %s: recording is on node %q, not on %q",
			quoteRef(ref), rec.Node, self)})
		return
	}
	s.proxyRecording(w, r, ref, rec)
}

func (s *callRecordAPI) serveLocalRecording(w http.ResponseWriter, r *http.Request, ref string, rec store.CallRecord) {
	abs, err := s.deps.Calls.Records().LocalFile(rec.Recording)
	var f *os.File
	if err == nil {
		f, err = os.Open(abs)
	}
	if errors.Is(err, fs.ErrNotExist) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "call_ref " + quoteRef(ref) + ": recording " + rec.Recording + " is gone"})
		return
	}
	if err != nil {
		s.log.Error("web: opening recording failed", "call_ref", ref, "recording", rec.Recording, "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "call_ref " + quoteRef(ref) + ": recording unreadable"})
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "call_ref " + quoteRef(ref) + ": recording unreadable"})
		return
	}
	w.Header().Set("Content-Type", "audio/wav")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(rec.Recording)))
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// proxyRecording forwards the request to the node holding the recording,
// with the caller's credentials, and passes its answer on.
func (s *callRecordAPI) proxyRecording(w http.ResponseWriter, r *http.Request, ref string, rec store.CallRecord) {
	base := ""
	if s.deps.Directory != nil {
		nodes, err := s.deps.Directory.Nodes(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "node directory unavailable: " + err.Error()})
			return
		}
		for _, n := range nodes {
			if n.Host != rec.Node {
				continue
			}
			if !n.Alive {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf(
					"call_ref %s: the recording is on node %q, which is down", quoteRef(ref), rec.Node)})
				return
			}
			base = n.PublicURL
			if base == "" && n.HTTP != "" {
				base = "http://" + n.HTTP
			}
		}
	}
	if base == "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf(
			"call_ref %s: the recording is on node %q, which is not in the node directory", quoteRef(ref), rec.Node)})
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodGet, strings.TrimSuffix(base, "/")+r.URL.EscapedPath(), nil)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "node " + rec.Node + ": " + err.Error()})
		return
	}
	for _, h := range []string{"Authorization", "Range", "If-Range", "If-Modified-Since"} {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	out.Header.Set(proxiedHeader, "1")
	resp, err := s.proxy.Do(out)
	if err != nil {
		s.log.Warn("web: fetching recording from its node failed", "call_ref", ref, "node", rec.Node, "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("call_ref %s: node %q holding the recording did not answer: %v",
			quoteRef(ref), rec.Node, err)})
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Disposition", "Content-Range", "Accept-Ranges",
		"Last-Modified", "Cache-Control"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		s.log.Debug("web: recording proxy copy ended early", "call_ref", ref, "error", err)
	}
}

// quoteRef renders a call_ref for an error message, cut short.
func quoteRef(ref string) string { return fmt.Sprintf("%q", validate.Truncate(ref, 64)) }
