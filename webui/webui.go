// Package webui serves redial's agent page at /agent: a softphone in the
// browser (SIP.js over the node's own /ws, audio through WebRTC). The page
// itself is embedded; SIP.js comes from the npm registry into
// webui/node_modules (make deps) and is served from there, so nothing is
// copied into the repository by hand and nothing loads from the internet.
package webui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

//go:embed agent
var agentFiles embed.FS

// Prefix is the path the page lives under.
const Prefix = "/agent"

// libPrefix is where SIP.js's ES modules are served; index.html's import
// map points "sip.js" there.
const libPrefix = Prefix + "/lib/sip.js/"

// sipLib is SIP.js's ES module directory inside node_modules.
const sipLib = "sip.js/lib"

// importMapRe finds the inline import map, the one inline script the
// page has; the CSP allows it by its hash.
var importMapRe = regexp.MustCompile(`(?s)<script type="importmap">(.*?)</script>`)

// DefaultModulesDir returns where the node finds webui/node_modules: the
// first of ./webui/node_modules and <executable's dir>/../webui/node_modules
// that holds SIP.js, else the first of them (so /agent names it in its
// 503).
func DefaultModulesDir() string {
	candidates := []string{filepath.Join("webui", "node_modules")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "webui", "node_modules"))
	}
	// From a directory inside the source tree (go run, go test): the
	// module root's webui.
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				candidates = append(candidates, filepath.Join(dir, "webui", "node_modules"))
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, c := range candidates {
		if hasSIPJS(c) {
			return c
		}
	}
	return candidates[0]
}

func hasSIPJS(modulesDir string) bool {
	st, err := os.Stat(filepath.Join(modulesDir, sipLib, "index.js"))
	return err == nil && st.Mode().IsRegular()
}

// handler serves the page, its files and SIP.js.
type handler struct {
	modulesDir string
	csp        string
	static     fs.FS
}

// Handler serves /agent (redirected to /agent/), the page's files under
// /agent/ and SIP.js's ES modules under /agent/lib/sip.js/ from
// <modulesDir>/sip.js/lib. Mount it for both "/agent" and "/agent/"; it
// expects the full request path. Without SIP.js in modulesDir every path
// answers 503 saying to run make deps.
func Handler(modulesDir string) http.Handler {
	static, err := fs.Sub(agentFiles, "agent")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	csp := "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:"
	if index, err := fs.ReadFile(static, "index.html"); err == nil {
		if m := importMapRe.FindSubmatch(index); m != nil {
			sum := sha256.Sum256(m[1])
			csp += "; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		}
	}
	return &handler{modulesDir: modulesDir, csp: csp, static: static}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if !hasSIPJS(h.modulesDir) {
		http.Error(w, "agent page unavailable: SIP.js is not installed in "+h.modulesDir+
			" (run `make deps`, which runs scripts/deps.sh to install webui/node_modules)", http.StatusServiceUnavailable)
		return
	}
	switch {
	case p == Prefix:
		http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
	case p == Prefix+"/":
		serveEmbedded(w, r, h.static, "index.html")
	case strings.HasPrefix(p, libPrefix):
		serveFromDir(w, r, filepath.Join(h.modulesDir, sipLib), strings.TrimPrefix(p, libPrefix))
	case strings.HasPrefix(p, Prefix+"/"):
		serveEmbedded(w, r, h.static, strings.TrimPrefix(p, Prefix+"/"))
	default:
		http.NotFound(w, r)
	}
}

// contentTypes are the types of the files the page and SIP.js consist
// of; other files are not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".map":  "application/json",
}
