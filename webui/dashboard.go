package webui

import (
	"embed"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// The dashboard is the live page of the whole cluster at "/". Its own
// scripts and styles are embedded; uPlot, which draws its charts, comes
// from the npm registry into webui/node_modules like SIP.js does for the
// agent page.

//go:embed dashboard
var dashboardFiles embed.FS

// DashboardPrefix is the path the dashboard's files live under; the page
// itself is at "/".
const DashboardPrefix = "/dashboard/"

// uplotPrefix is where uPlot's distribution files are served; dashboard.js
// imports uPlot.esm.js from there by path, so the page needs no import map
// and the CSP no inline script.
const uplotPrefix = DashboardPrefix + "lib/uplot/"

// uplotDist is uPlot's distribution directory inside node_modules.
const uplotDist = "uplot/dist"

// dashboardCSP admits nothing from other origins and nothing inline.
const dashboardCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"

// HasUPlot tells whether modulesDir holds uPlot's ES module, which the
// dashboard's charts need.
func HasUPlot(modulesDir string) bool {
	st, err := os.Stat(filepath.Join(modulesDir, uplotDist, "uPlot.esm.js"))
	return err == nil && st.Mode().IsRegular()
}

// dashboardHandler serves the dashboard's page, its files and uPlot.
type dashboardHandler struct {
	modulesDir string
	static     fs.FS
}

// DashboardHandler serves the dashboard: "/" is the page, "/dashboard/<file>"
// its embedded scripts and styles, and "/dashboard/lib/uplot/<file>" the .js,
// .css and .map files of <modulesDir>/uplot/dist. It expects the full request
// path, answers only GET and HEAD, and checks no credentials: whoever mounts
// it guards "/" (the page holds no data, and its files are public). Without
// uPlot in modulesDir the page and uPlot's files answer 503 saying to run
// make deps.
func DashboardHandler(modulesDir string) http.Handler {
	static, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return &dashboardHandler{modulesDir: modulesDir, static: static}
}

func (h *dashboardHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", dashboardCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/" || strings.HasPrefix(p, uplotPrefix):
		if !HasUPlot(h.modulesDir) {
			http.Error(w, "dashboard unavailable: uPlot is not installed in "+h.modulesDir+
				" (run `make deps`, which runs scripts/deps.sh to install webui/node_modules)", http.StatusServiceUnavailable)
			return
		}
		if p == "/" {
			serveEmbedded(w, r, h.static, "index.html")
			return
		}
		serveFromDir(w, r, filepath.Join(h.modulesDir, uplotDist), strings.TrimPrefix(p, uplotPrefix))
	case strings.HasPrefix(p, DashboardPrefix):
		serveEmbedded(w, r, h.static, strings.TrimPrefix(p, DashboardPrefix))
	default:
		http.NotFound(w, r)
	}
}

// serveEmbedded serves one of a page's own files by its extension's
// type; other extensions are not served.
func serveEmbedded(w http.ResponseWriter, r *http.Request, static fs.FS, name string) {
	ctype, ok := contentTypes[path.Ext(name)]
	if !ok || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, name, time.Time{}, strings.NewReader(string(b)))
}

// serveFromDir serves one regular .js, .css or .map file under dir (a
// library in node_modules),
// through os.Root so that neither ".." nor a symlink reaches outside it.
func serveFromDir(w http.ResponseWriter, r *http.Request, dir, name string) {
	ext := path.Ext(name)
	if ext != ".js" && ext != ".css" && ext != ".map" || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		http.Error(w, "library directory: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		// Missing, an escape attempt or unreadable: all say no more than 404.
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", contentTypes[ext])
	http.ServeContent(w, r, name, st.ModTime(), io.ReadSeeker(f))
}
