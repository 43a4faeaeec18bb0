package webui

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"redial/internal/testenv"
)

const wantDashboardCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"

// fakeUPlot makes a modules directory holding only uPlot's dist files.
func fakeUPlot(t *testing.T) (modules, dist string) {
	t.Helper()
	modules = t.TempDir()
	dist = filepath.Join(modules, "uplot", "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"uPlot.esm.js":  "export default function uPlot() {}",
		"uPlot.min.css": ".uplot{}",
		"uPlot.esm.map": "{}",
		"uPlot.d.ts":    "declare const uPlot: any;",
		"README.txt":    "text",
	} {
		if err := os.WriteFile(filepath.Join(dist, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return modules, dist
}

// The page, its own files and uPlot from the installed node_modules, each
// with its type, under a CSP that admits nothing inline and nothing from
// elsewhere.
func TestDashboardServesPageAndUPlot(t *testing.T) {
	h := DashboardHandler(testenv.NodeModules(t))
	for path, want := range map[string]string{
		"/":                                  "text/html; charset=utf-8",
		"/dashboard/index.html":              "text/html; charset=utf-8",
		"/dashboard/dashboard.js":            "text/javascript; charset=utf-8",
		"/dashboard/dashboard.css":           "text/css; charset=utf-8",
		"/dashboard/lib/uplot/uPlot.esm.js":  "text/javascript; charset=utf-8",
		"/dashboard/lib/uplot/uPlot.min.css": "text/css; charset=utf-8",
		"/dashboard/lib/uplot/uPlot.iife.js": "text/javascript; charset=utf-8",
	} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want || body == "" {
			t.Errorf("%s: %d %q, want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		for k, v := range map[string]string{
			"Content-Security-Policy": wantDashboardCSP,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-cache",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", path, k, got, v)
			}
		}
	}
	if _, body := get(t, h, "/"); !strings.Contains(body, `<section id="campaigns"`) {
		t.Errorf("/ is not the dashboard: %.200q", body)
	}

	// HEAD answers like GET without a body; nothing else is answered.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("HEAD /: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/", strings.NewReader("{}")))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}

	for _, path := range []string{
		"/dashboard",                               // not a file
		"/dashboard/",                              // no listings
		"/dashboard/lib/uplot/",                    // of uPlot's dist either
		"/dashboard/lib/uplot/../package.json",     // outside dist
		"/dashboard/lib/uplot/%2e%2e/package.json", // escaped
		"/dashboard/lib/uplot/../../sip.js/lib/index.js",
		"/dashboard/lib/uplot/./uPlot.esm.js", // not a clean path
		"/dashboard/lib/uplot/uPlot.d.ts",     // not a kind the page loads
		"/dashboard/lib/uplot/nonexistent.js", // missing
		"/dashboard/lib/sip.js/index.js",      // only uPlot
		"/dashboard/../webui.go",              // only the embedded page
		"/dashboard/dashboard_test.go",
		"/dashboard/nonexistent.js",
		"/index.html", "/agent/", "/api/v1/dashboard/session", "/favicon.ico", // not this handler's
	} {
		if resp, _ := get(t, h, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// The CSP forbids inline scripts and style attributes, so the page must
// have none, and every file it names must be served by the handler
// itself.
func TestDashboardPageLoadsOnlyItsOwnFiles(t *testing.T) {
	h := DashboardHandler(testenv.NodeModules(t))
	_, page := get(t, h, "/")
	if m := regexp.MustCompile(`<script(?:\s[^>]*)?>`).FindAllString(page, -1); len(m) == 0 {
		t.Fatal("page has no script")
	} else {
		for _, tag := range m {
			if !strings.Contains(tag, ` src="/dashboard/`) {
				t.Errorf("inline or foreign script %q: the CSP refuses it", tag)
			}
		}
	}
	if strings.Contains(page, " style=") || strings.Contains(page, "<style") {
		t.Error("page has inline styles: the CSP refuses them")
	}
	// Follow the page's links and its modules' imports, each module once.
	var refs []string
	for _, m := range regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1) {
		refs = append(refs, m[1])
	}
	importRe := regexp.MustCompile(`(?m)(?:^import .*|^\} )from "([^"]*)"`)
	seen := map[string]bool{}
	modules := 0
	for i := 0; i < len(refs); i++ {
		ref := refs[i]
		if seen[ref] {
			continue
		}
		seen[ref] = true
		resp, body := get(t, h, ref)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("page loads %s, which answers %d", ref, resp.StatusCode)
			continue
		}
		if !strings.HasSuffix(ref, ".js") || !strings.HasPrefix(ref, DashboardPrefix) || strings.HasPrefix(ref, uplotPrefix) {
			continue
		}
		modules++
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s names an off-site address", ref)
		}
		for _, m := range importRe.FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[1], "/") {
				t.Errorf("%s imports %q: only absolute paths resolve without an import map", ref, m[1])
			}
			refs = append(refs, m[1])
		}
	}
	if modules < 2 || !seen[uplotPrefix+"uPlot.esm.js"] || !seen[uplotPrefix+"uPlot.min.css"] {
		t.Errorf("page's modules load %v: want the page's own modules and uPlot's module and styles", refs)
	}
	if regexp.MustCompile(`(?i)(?:src|href)="(?:https?:)?//`).MatchString(page) {
		t.Error("page names an off-site address")
	}
}

// A symlink inside uPlot's dist that points outside it serves nothing,
// nor do files of kinds the page does not load.
func TestDashboardStaysInsideUPlotDist(t *testing.T) {
	modules, dist := fakeUPlot(t)
	secret := filepath.Join(modules, "secret.js")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dist, "leak.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(dist, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dist, "sub.js"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := DashboardHandler(modules)
	for _, path := range []string{
		"/dashboard/lib/uplot/leak.js",
		"/dashboard/lib/uplot/up/secret.js",
		"/dashboard/lib/uplot/sub.js", // a directory
		"/dashboard/lib/uplot/uPlot.d.ts",
		"/dashboard/lib/uplot/README.txt",
	} {
		if resp, body := get(t, h, path); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "secret") {
			t.Errorf("%s: %d %q, want 404", path, resp.StatusCode, body)
		}
	}
	for path, want := range map[string]string{
		"/dashboard/lib/uplot/uPlot.esm.js":  "export default function uPlot() {}",
		"/dashboard/lib/uplot/uPlot.min.css": ".uplot{}",
		"/dashboard/lib/uplot/uPlot.esm.map": "{}",
	} {
		if resp, body := get(t, h, path); resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}
	if resp, _ := get(t, h, "/dashboard/lib/uplot/uPlot.esm.map"); resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("map served as %q", resp.Header.Get("Content-Type"))
	}
}

// Without uPlot the page says how to install it; its own files, which
// need nothing installed, are still served.
func TestDashboardWithoutUPlot(t *testing.T) {
	dir := t.TempDir()
	if HasUPlot(dir) {
		t.Fatal("HasUPlot of an empty directory")
	}
	h := DashboardHandler(dir)
	for _, path := range []string{"/", "/dashboard/lib/uplot/uPlot.esm.js"} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "make deps") || !strings.Contains(body, dir) {
			t.Errorf("%s: %d %q, want 503 naming make deps and %s", path, resp.StatusCode, body, dir)
		}
		if resp.Header.Get("Content-Security-Policy") != wantDashboardCSP {
			t.Errorf("%s: CSP %q", path, resp.Header.Get("Content-Security-Policy"))
		}
	}
	if resp, _ := get(t, h, "/dashboard/dashboard.js"); resp.StatusCode != http.StatusOK {
		t.Errorf("/dashboard/dashboard.js without uPlot: %d", resp.StatusCode)
	}
	modules, _ := fakeUPlot(t)
	if !HasUPlot(modules) {
		t.Error("HasUPlot misses uplot/dist/uPlot.esm.js")
	}
	if !HasUPlot(testenv.NodeModules(t)) {
		t.Error("HasUPlot: uplot is not installed in webui/node_modules (package.json lists it; run scripts/deps.sh)")
	}
}
