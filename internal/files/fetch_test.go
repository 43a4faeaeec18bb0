package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every server here listens on loopback only; refusals of other ranges are
// tested on AddrPolicy.Check without any connection.

// serveOn starts an HTTP server on addr ("127.0.0.1:0") and returns its
// base URL and the number of requests it has seen.
func serveOn(t *testing.T, addr string, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	return serveListener(t, ln, h)
}

func serveListener(t *testing.T, ln net.Listener, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	hits := &atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

func newFetcher(t *testing.T, cfg FetchConfig) *Fetcher {
	t.Helper()
	f, err := NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var loopbackOnly = FetchConfig{Allow: []string{"127.0.0.1/32"}}

// wavBytes returns a small PCM WAV file whose samples depend on seed.
func wavBytes(seed byte) []byte {
	data := bytes.Repeat([]byte{seed, seed + 1}, 400)
	var b bytes.Buffer
	b.WriteString("RIFF")
	b.Write(le32(uint32(36 + len(data))))
	b.WriteString("WAVEfmt ")
	b.Write(le32(16))
	b.Write([]byte{1, 0, 1, 0})  // PCM, mono
	b.Write(le32(8000))          // sample rate
	b.Write(le32(16000))         // byte rate
	b.Write([]byte{2, 0, 16, 0}) // block align, bits
	b.WriteString("data")
	b.Write(le32(uint32(len(data))))
	b.Write(data)
	return b.Bytes()
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// dirNames lists dir, hidden files included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantErr(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want %v", err, kind)
	}
}

func TestFetchWAV(t *testing.T) {
	var body atomic.Value
	body.Store(wavBytes(1))
	base, _ := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prompts/hello.wav" || r.URL.Query().Get("token") != "t1" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		w.Write(body.Load().([]byte))
	})
	f := newFetcher(t, loopbackOnly)
	dir := t.TempDir()
	ctx := context.Background()
	u := base + "/prompts/hello.wav?token=t1"

	var checked string
	name, err := f.Fetch(ctx, u, dir, FetchOptions{Check: func(p string) error {
		checked = p
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, wavBytes(1)) {
			return errors.New("Check saw an incomplete file")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if name != "hello.wav" {
		t.Fatalf("name = %q, want hello.wav", name)
	}
	if filepath.Dir(checked) != dir || !strings.HasSuffix(checked, ".wav") || !strings.HasPrefix(filepath.Base(checked), ".fetch-") {
		t.Errorf("Check got %q, want a .fetch-*.wav file in %s", checked, dir)
	}
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || !bytes.Equal(got, wavBytes(1)) {
		t.Fatalf("fetched file: %v, %d bytes, want the served %d bytes", err, len(got), len(wavBytes(1)))
	}
	if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode: %v %v, want 0640", fi.Mode(), err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("dir holds %v, want only hello.wav", names)
	}

	// The same prompt uploaded again replaces the file.
	body.Store(wavBytes(7))
	if _, err := f.Fetch(ctx, u, dir, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, wavBytes(7)) {
		t.Fatal("a second fetch did not replace the file")
	}

	// A refused file replaces nothing and leaves nothing behind.
	body.Store(wavBytes(9))
	notAudio := errors.New("not audio")
	_, err = f.Fetch(ctx, u, dir, FetchOptions{Check: func(string) error { return notAudio }})
	wantErr(t, err, notAudio)
	if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, wavBytes(7)) {
		t.Fatal("a refused fetch changed the existing file")
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("dir holds %v after a refused fetch, want only hello.wav", names)
	}
	if strings.Contains(err.Error(), "t1") {
		t.Errorf("error %q shows the query", err)
	}
}

func TestFetchRefusesOtherLoopback(t *testing.T) {
	base, hits := serveOn(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wavBytes(1))
	})
	f := newFetcher(t, loopbackOnly)
	dir := t.TempDir()
	_, err := f.Fetch(context.Background(), base+"/x.wav?token=secret", dir, FetchOptions{})
	wantErr(t, err, ErrForbiddenURL)
	if errors.Is(err, ErrFetchFailed) {
		t.Errorf("error %v is also ErrFetchFailed", err)
	}
	hostport := strings.TrimPrefix(base, "http://")
	want := fmt.Sprintf(`files: fetch "%s/x.wav": connect to %s: forbidden url (loopback)`, base, hostport)
	if err.Error() != want {
		t.Errorf("error = %q\nwant      %q", err, want)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the refused server saw %d requests", n)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v", names)
	}
}

func TestFetchRefusesIPv6Loopback(t *testing.T) {
	var port string
	var hits *atomic.Int64
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		var base string
		base, hits = serveListener(t, ln, func(w http.ResponseWriter, r *http.Request) {})
		port = base[strings.LastIndexByte(base, ':')+1:]
	} else {
		// No ::1 here: the refusal must not depend on it.
		port = "80"
	}
	f := newFetcher(t, loopbackOnly)
	_, err := f.Fetch(context.Background(), "http://[::1]:"+port+"/x.wav", t.TempDir(), FetchOptions{})
	wantErr(t, err, ErrForbiddenURL)
	if !strings.Contains(err.Error(), "(loopback)") {
		t.Errorf("error %q does not name the class", err)
	}
	if hits != nil && hits.Load() != 0 {
		t.Errorf("the refused server saw %d requests", hits.Load())
	}
}

func TestFetchLocalhostName(t *testing.T) {
	base, hits := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wavBytes(1))
	})
	port := base[strings.LastIndexByte(base, ':')+1:]
	u := "http://localhost:" + port + "/x.wav"

	_, err := newFetcher(t, FetchConfig{}).Fetch(context.Background(), u, t.TempDir(), FetchOptions{})
	wantErr(t, err, ErrForbiddenURL)
	if n := hits.Load(); n != 0 {
		t.Errorf("server saw %d requests through a name resolving to loopback", n)
	}

	// A host-name entry allows whatever the name resolves to.
	f := newFetcher(t, FetchConfig{Allow: []string{"LocalHost."}})
	name, err := f.Fetch(context.Background(), u, t.TempDir(), FetchOptions{})
	if err != nil || name != "x.wav" {
		t.Fatalf("Fetch with localhost allowed = %q, %v", name, err)
	}
	// The entry is a name, not the addresses: the literal stays refused.
	_, err = f.Fetch(context.Background(), base+"/x.wav", t.TempDir(), FetchOptions{})
	wantErr(t, err, ErrForbiddenURL)
}

func TestFetchRedirects(t *testing.T) {
	otherBase, otherHits := serveOn(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wavBytes(1))
	})
	var base string
	base, _ = serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/other":
			http.Redirect(w, r, otherBase+"/x.wav?token=secret", http.StatusFound)
		case p == "/file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case p == "/gopher":
			http.Redirect(w, r, "gopher://127.0.0.1:70/", http.StatusMovedPermanently)
		case p == "/userinfo":
			http.Redirect(w, r, "http://u:hunter2@"+strings.TrimPrefix(base, "http://")+"/final.wav", http.StatusFound)
		case strings.HasPrefix(p, "/chain/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(p, "/chain/"))
			if n > 0 {
				http.Redirect(w, r, fmt.Sprintf("/chain/%d", n-1), http.StatusTemporaryRedirect)
				return
			}
			w.Header().Set("Content-Type", "audio/mpeg")
			w.Write([]byte("ID3 mp3 bytes"))
		default:
			http.NotFound(w, r)
		}
	})
	f := newFetcher(t, loopbackOnly)
	ctx := context.Background()

	t.Run("to a refused address", func(t *testing.T) {
		_, err := f.Fetch(ctx, base+"/other", t.TempDir(), FetchOptions{})
		wantErr(t, err, ErrForbiddenURL)
		if n := otherHits.Load(); n != 0 {
			t.Errorf("the redirect target saw %d requests", n)
		}
		if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, otherBase+"/x.wav") {
			t.Errorf("error %q: want the redirect target without its query", msg)
		}
	})
	t.Run("three redirects", func(t *testing.T) {
		dir := t.TempDir()
		name, err := f.Fetch(ctx, base+"/chain/3", dir, FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name != "0.mp3" { // the final URL's name, extension from Content-Type
			t.Errorf("name = %q, want 0.mp3", name)
		}
	})
	t.Run("four redirects", func(t *testing.T) {
		dir := t.TempDir()
		_, err := f.Fetch(ctx, base+"/chain/4", dir, FetchOptions{})
		wantErr(t, err, ErrFetchFailed)
		if !strings.Contains(err.Error(), "too many redirects") {
			t.Errorf("error %q", err)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("dir holds %v", names)
		}
	})
	for _, p := range []string{"/file", "/gopher", "/userinfo"} {
		t.Run(p, func(t *testing.T) {
			_, err := f.Fetch(ctx, base+p, t.TempDir(), FetchOptions{})
			wantErr(t, err, ErrForbiddenURL)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestFetchRefusesURLs(t *testing.T) {
	base, hits := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wavBytes(1))
	})
	hostport := strings.TrimPrefix(base, "http://")
	f := newFetcher(t, loopbackOnly)
	dir := t.TempDir()
	for _, u := range []string{
		"file:///etc/passwd",
		"gopher://" + hostport + "/x",
		"ftp://" + hostport + "/x.wav",
		"data:audio/wav;base64,UklGRg==",
		"http://u:hunter2@" + hostport + "/x.wav",
		"http://hunter2@" + hostport + "/x.wav",
		"HTTP://u:hunter2@" + hostport + "/x.wav",
		"http:///x.wav",
		"//" + hostport + "/x.wav",
		"/x.wav",
		"http:" + hostport,
		"http://127.0.0.1:99999/x.wav",
		"http://127.0.0.1:0/x.wav",
		"http://%zz/x.wav",
		base + "/" + strings.Repeat("a", 2048),
		"",
	} {
		_, err := f.Fetch(context.Background(), u, dir, FetchOptions{})
		if !errors.Is(err, ErrForbiddenURL) {
			t.Errorf("Fetch(%q) = %v, want ErrForbiddenURL", u, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "hunter2") || len(msg) > 600 {
			t.Errorf("Fetch(%q) error %q shows the password or is too long", u, msg)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server saw %d requests", n)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v", names)
	}
	// The same server is reachable: the refusals above were the URLs'.
	if _, err := f.Fetch(context.Background(), base+"/x.wav", dir, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchTooLarge(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	f := newFetcher(t, loopbackOnly)

	t.Run("streamed", func(t *testing.T) {
		var written atomic.Int64
		srv := startStreamer(t, &written, false)
		start := time.Now()
		_, err := f.Fetch(ctx, srv.URL+"/big.wav", dir, FetchOptions{})
		wantErr(t, err, ErrTooLarge)
		took := time.Since(start)
		srv.Close() // waits for the handler, which stops when the client goes
		if n := written.Load(); n > 256<<20 {
			t.Errorf("server could write %d bytes: reading went on past the limit", n)
		}
		if took > 20*time.Second {
			t.Errorf("took %s to refuse", took)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("dir holds %v, want the download removed", names)
		}
	})
	t.Run("declared", func(t *testing.T) {
		var written atomic.Int64
		srv := startStreamer(t, &written, true)
		_, err := f.Fetch(ctx, srv.URL+"/big.wav", dir, FetchOptions{})
		wantErr(t, err, ErrTooLarge)
		if !strings.Contains(err.Error(), "Content-Length 1073741824") {
			t.Errorf("error %q does not name the Content-Length", err)
		}
		srv.Close()
		// Socket buffers take a few MB; reading up to the limit would
		// have taken 50.
		if n := written.Load(); n > 30<<20 {
			t.Errorf("server could write %d bytes: the body was read", n)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("dir holds %v", names)
		}
	})
	t.Run("small limit", func(t *testing.T) {
		small := newFetcher(t, FetchConfig{Allow: []string{"127.0.0.1"}, MaxBytes: 100})
		base, _ := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.(http.Flusher).Flush() // no Content-Length
			w.Write(bytes.Repeat([]byte{'a'}, n))
		})
		if _, err := small.Fetch(ctx, base+"/ok?n=100", dir, FetchOptions{}); err != nil {
			t.Fatalf("exactly MaxBytes: %v", err)
		}
		_, err := small.Fetch(ctx, base+"/no?n=101", dir, FetchOptions{})
		wantErr(t, err, ErrTooLarge)
	})
}

// startStreamer serves 1 GB of zeros, with or without Content-Length,
// until the client goes away.
func startStreamer(t *testing.T, written *atomic.Int64, declare bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if declare {
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		}
		buf := make([]byte, 64<<10)
		for written.Load() < 1<<30 && r.Context().Err() == nil {
			n, err := w.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchFailures(t *testing.T) {
	ctx := context.Background()
	base, _ := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nothing here", http.StatusNotFound)
	})
	f := newFetcher(t, loopbackOnly)
	dir := t.TempDir()

	_, err := f.Fetch(ctx, base+"/x.wav?token=secret", dir, FetchOptions{})
	wantErr(t, err, ErrFetchFailed)
	if msg := err.Error(); !strings.Contains(msg, "404") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want the status, not the query", msg)
	}

	// Nothing listens on a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = f.Fetch(ctx, "http://"+closed+"/x.wav?token=secret", dir, FetchOptions{})
	wantErr(t, err, ErrFetchFailed)
	if errors.Is(err, ErrForbiddenURL) || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q", err)
	}

	// A server that accepts and never answers.
	silent := silentServer(t)
	slow := newFetcher(t, FetchConfig{Allow: []string{"127.0.0.1/32"}, Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = slow.Fetch(ctx, "http://"+silent+"/x.wav?token=secret", dir, FetchOptions{})
	wantErr(t, err, ErrFetchFailed)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s with a 300ms timeout", took)
	}
	if msg := err.Error(); !strings.Contains(msg, "300ms") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want the timeout named, not the query", msg)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v", names)
	}
}

// silentServer accepts connections on loopback and never answers.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestFetchNamesFromServer(t *testing.T) {
	base, _ := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.URL.Query().Get("ct"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Write([]byte(r.URL.EscapedPath()))
	})
	f := newFetcher(t, loopbackOnly)
	cases := []struct{ path, want string }{
		{"/a/b/My%20Prompt!.wav", "My_Prompt_.wav"},
		{"/../../etc/passwd", "passwd"},
		{"/?ct=audio/mpeg", "file.mp3"},
		{"/.hidden.wav", "hidden.wav"},
		{"/a/%2e%2e?ct=audio/x-wav", "file.wav"},
		{"/a/..%2F..%2Fescape.wav", "_.._escape.wav"},
		{"/prompt?ct=audio/wave%3B%20charset=x", "prompt.wav"},
		{"/prompt?ct=text/html", "prompt"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		name, err := f.Fetch(context.Background(), base+c.path, dir, FetchOptions{})
		if err != nil {
			t.Errorf("Fetch(%q): %v", c.path, err)
			continue
		}
		if name != c.want {
			t.Errorf("Fetch(%q) name = %q, want %q", c.path, name, c.want)
		}
		if names := dirNames(t, dir); len(names) != 1 || names[0] != c.want {
			t.Errorf("Fetch(%q) left %v in its dir, want [%s]", c.path, names, c.want)
		}
	}
}

func TestFetchName(t *testing.T) {
	long := strings.Repeat("x", 150)
	cases := []struct{ path, ct, want string }{
		{"/a/b/My%20Prompt!.wav", "", "My_Prompt_.wav"},
		{"/../../etc/passwd", "", "passwd"},
		{"/", "audio/mpeg", "file.mp3"},
		{"/", "", "file"},
		{"", "", "file"},
		{"/.hidden.wav", "", "hidden.wav"},
		{"/...", "", "file"},
		{"/%2F", "", "_"},
		{"/a%2Fb.wav", "", "a_b.wav"},
		{"/%252e%252e", "", "_2e_2e"}, // decoded once only
		{"/%zz.wav", "", "_zz.wav"},   // bad escape: taken as is
		{"/h%C3%A9llo.mp3", "", "h_llo.mp3"},
		{"/song", "audio/mp3", "song.mp3"},
		{"/song", "Audio/MPEG; charset=binary", "song.mp3"},
		{"/song.", "audio/wav", "song.wav"},
		{"/song.ogg", "audio/mpeg", "song.ogg"},
		{"/" + long + ".wav", "", strings.Repeat("x", 96) + ".wav"},
		{"/" + long, "audio/wav", strings.Repeat("x", 96) + ".wav"},
		{"/" + long + "." + long, "", strings.Repeat("x", 100)},
	}
	for _, c := range cases {
		if got := fetchName(c.path, c.ct); got != c.want {
			t.Errorf("fetchName(%q, %q) = %q, want %q", c.path, c.ct, got, c.want)
		}
	}
}

func FuzzFetchName(f *testing.F) {
	for _, s := range []string{"/a/b/My%20Prompt!.wav", "/../../etc/passwd", "/", ".hidden.wav",
		"/%2e%2e", "/%2F..%2F", "/" + strings.Repeat("é", 80) + ".wav", "/a.b.c.d", "/..."} {
		f.Add(s, "audio/mpeg")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, path, ct string) {
		name := fetchName(path, ct)
		switch {
		case name == "":
			t.Fatalf("fetchName(%q, %q) is empty", path, ct)
		case len(name) > 100:
			t.Fatalf("fetchName(%q, %q) = %q: %d bytes", path, ct, name, len(name))
		case name[0] == '.':
			t.Fatalf("fetchName(%q, %q) = %q starts with a dot", path, ct, name)
		case strings.Contains(name, "/"):
			t.Fatalf("fetchName(%q, %q) = %q contains a slash", path, ct, name)
		case checkName(name) != "":
			t.Fatalf("fetchName(%q, %q) = %q: %s", path, ct, name, checkName(name))
		}
		for _, c := range []byte(name) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("fetchName(%q, %q) = %q has byte %q", path, ct, name, c)
			}
		}
	})
}

func TestNewFetcherConfig(t *testing.T) {
	f := newFetcher(t, FetchConfig{})
	if f.cfg.MaxBytes != 52428800 || f.cfg.Timeout != 30*time.Second || f.cfg.MaxRedirects != 3 {
		t.Errorf("defaults = %+v", f.cfg)
	}
	for _, cfg := range []FetchConfig{
		{MaxBytes: -1}, {Timeout: -time.Second}, {MaxRedirects: -1}, {Allow: []string{"x/99"}},
	} {
		if _, err := NewFetcher(cfg); err == nil {
			t.Errorf("NewFetcher(%+v) accepted it", cfg)
		}
	}
}
