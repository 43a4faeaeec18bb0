//go:build redial_pprof

package app

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"

	"redial/internal/auth"
)

// registerProfiling serves net/http/pprof under /debug/pprof/, and
// /debug/memstats, in a build made with -tags redial_pprof (the memory
// bench's, REDIAL_BENCH_MEMORY_PROFILE); a release build has no such
// routes at all. Even here they ask for a token with the REST capability,
// like the API: a profile shows call data in memory.
func registerProfiling(a *App) {
	for _, p := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /debug/pprof/", pprof.Index},
		{"GET /debug/pprof/cmdline", pprof.Cmdline},
		{"GET /debug/pprof/profile", pprof.Profile},
		{"GET /debug/pprof/symbol", pprof.Symbol},
		{"GET /debug/pprof/trace", pprof.Trace},
		{"GET /debug/memstats", memStats},
	} {
		a.Web.Handle(p.pattern, auth.Rest, p.h)
	}
}

// memStats answers runtime.MemStats as JSON; with ?free=1 it first runs
// debug.FreeOSMemory (a collection that returns every free page), so
// HeapAlloc is the live heap, HeapInuse what its spans keep, and the
// process's RSS just after is what the node cannot give back.
func memStats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("free") == "1" {
		debug.FreeOSMemory()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	m.PauseNs, m.PauseEnd = [256]uint64{}, [256]uint64{}
	// runtime/metrics too: its memory classes cover what MemStats lumps
	// together (BySize stops at 19 KiB objects).
	samples := make([]metrics.Sample, 0, 64)
	for _, d := range metrics.All() {
		if d.Kind == metrics.KindUint64 && (strings.HasPrefix(d.Name, "/memory/") || strings.HasPrefix(d.Name, "/gc/heap/")) {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	classes := map[string]uint64{}
	for _, s := range samples {
		classes[s.Name] = s.Value.Uint64()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		*runtime.MemStats
		Metrics map[string]uint64
	}{&m, classes})
}
