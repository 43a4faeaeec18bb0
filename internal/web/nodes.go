package web

import (
	"net/http"
	"time"

	"redial/internal/cluster"
	"redial/internal/store"
)

// getNodes lists every node of the cluster from the node directory: its
// addresses, version, age, and whether it is alive or since when it is
// dead.
func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) {
	if s.deps.Directory == nil {
		writeJSON(w, http.StatusOK, map[string]any{"nodes": []cluster.NodeState{}})
		return
	}
	nodes, err := s.deps.Directory.Nodes(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

// getAgents lists the agents' registrations of this node's domain, on every
// node: extension, node, transport, source, expiry, user agent.
func (s *Server) getAgents(w http.ResponseWriter, r *http.Request) {
	list, err := s.deps.Store.AllBindings(r.Context(), time.Now())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if list == nil {
		list = []store.Binding{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": list})
}
