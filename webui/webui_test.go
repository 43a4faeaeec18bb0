package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"redial/internal/testenv"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The page, its files and SIP.js from the installed node_modules, each
// with its type, under a CSP that admits nothing from elsewhere.
func TestHandlerServesPageAndSIPJS(t *testing.T) {
	h := Handler(testenv.NodeModules(t))
	resp, _ := get(t, h, "/agent")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/agent/" {
		t.Fatalf("/agent: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]string{
		"/agent/":                                 "text/html; charset=utf-8",
		"/agent/agent.js":                         "text/javascript; charset=utf-8",
		"/agent/agent.css":                        "text/css; charset=utf-8",
		"/agent/lib/sip.js/index.js":              "text/javascript; charset=utf-8",
		"/agent/lib/sip.js/api/user-agent.js":     "text/javascript; charset=utf-8",
		"/agent/lib/sip.js/platform/web/index.js": "text/javascript; charset=utf-8",
	} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want || body == "" {
			t.Errorf("%s: %d %q, want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:; script-src 'self' 'sha256-") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
	for _, path := range []string{
		"/agent/lib/sip.js/",                    // no listings
		"/agent/lib/sip.js/api",                 // nor of subdirectories
		"/agent/lib/sip.js/../package.json",     // outside lib
		"/agent/lib/sip.js/%2e%2e/package.json", // escaped
		"/agent/lib/sip.js/index.d.ts",          // not a module the page needs
		"/agent/lib/sip.js/nonexistent.js",      // missing
		"/agent/index.html/..",                  // odd paths
		"/agent/webui.go",                       // only the embedded page
		"/agent/lib/sip.js/../../puppeteer-core/package.json",
	} {
		if resp, _ := get(t, h, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// A symlink inside SIP.js's lib that points outside it serves nothing.
func TestHandlerStaysInsideLib(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "sip.js", "lib")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(lib, "index.js"), []byte("export {};"), 0o644)
	secret := filepath.Join(dir, "secret.js")
	os.WriteFile(secret, []byte("secret"), 0o644)
	if err := os.Symlink(secret, filepath.Join(lib, "leak.js")); err != nil {
		t.Fatal(err)
	}
	h := Handler(dir)
	if resp, body := get(t, h, "/agent/lib/sip.js/leak.js"); resp.StatusCode == http.StatusOK || strings.Contains(body, "secret") {
		t.Fatalf("symlink out of lib served: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, h, "/agent/lib/sip.js/index.js"); resp.StatusCode != http.StatusOK {
		t.Fatalf("index.js: %d", resp.StatusCode)
	}
}

// Without SIP.js the page says how to install it.
func TestHandlerWithoutSIPJS(t *testing.T) {
	h := Handler(t.TempDir())
	for _, path := range []string{"/agent", "/agent/", "/agent/lib/sip.js/index.js"} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "make deps") {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
}

func TestDefaultModulesDir(t *testing.T) {
	root := filepath.Dir(testenv.NodeModules(t)) // webui/
	t.Chdir(filepath.Dir(root))
	if got := DefaultModulesDir(); got != filepath.Join("webui", "node_modules") {
		t.Fatalf("from the repository root: %q", got)
	}
	t.Chdir(t.TempDir())
	// Neither candidate has SIP.js (the test binary lives in a temp dir):
	// the first is named.
	if got := DefaultModulesDir(); got != filepath.Join("webui", "node_modules") {
		t.Fatalf("elsewhere: %q", got)
	}
}
