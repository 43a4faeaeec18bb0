package files

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func newStores(t *testing.T) (*Stores, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(Config{Root: root, Domain: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir may sit under a symlink (macOS /tmp); compare real paths.
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, real
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestAliasesShareADirectory(t *testing.T) {
	s, root := newStores(t)
	cases := []struct{ short, long, dir string }{
		{":SYN_MEDIA", ":SYNC_COMMON", "stores/SYNC_COMMON"},
		{":SYN_DOM", ":SYNC_DOMAIN_DATA", "stores/SYNC_DOMAIN_DATA/acme"},
		{":SYN_DOM_MEDIA", ":SYNC_DOMAIN_COMMON", "stores/SYNC_DOMAIN_COMMON/acme"},
		{":SS_PUB", ":SITESHARE_PUBLIC", "stores/SITESHARE_PUBLIC"},
		{":SS_DOM", ":SITESHARE_DOMAIN_DATA", "stores/SITESHARE_DOMAIN_DATA/acme"},
		{":GS_PUB", ":GLOBALSHARE_PUBLIC", "stores/GLOBALSHARE_PUBLIC"},
		{":GS_DOM", ":GLOBALSHARE_DOMAIN_DATA", "stores/GLOBALSHARE_DOMAIN_DATA/acme"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		want := filepath.Join(root, c.dir, "x", "y", "14.mp3")
		for _, name := range []string{c.short, c.long} {
			got, err := s.Resolve("", name+"/x/y/14.mp3")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got != want {
				t.Errorf("%s: got %s, want %s", name, got, want)
			}
			if fi, err := os.Stat(filepath.Join(root, c.dir)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
				t.Errorf("%s: store dir not created with 0750: %v %v", name, fi, err)
			}
		}
		if other, dup := seen[want]; dup {
			t.Errorf("%s and %s share a directory", c.long, other)
		}
		seen[want] = c.long
		for _, name := range []string{c.short, c.long} {
			if got, ok := Canonical(name); !ok || got != c.long {
				t.Errorf("Canonical(%s) = %q, %v; want %s", name, got, ok, c.long)
			}
		}
	}
	if got, ok := Canonical(":TEMP"); !ok || got != ":TEMP" {
		t.Errorf("Canonical(:TEMP) = %q, %v", got, ok)
	}
	for _, bad := range []string{":NOPE", "GS_PUB", ":gs_pub", ""} {
		if _, ok := Canonical(bad); ok {
			t.Errorf("Canonical(%q) ok", bad)
		}
	}
}

func TestDefaultStore(t *testing.T) {
	s, root := newStores(t)
	got, err := s.Resolve("", "prompts/hello.wav")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "stores/SYNC_DOMAIN_DATA/acme/prompts/hello.wav")
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if viaPrefix, _ := s.Resolve("", ":SYN_DOM/prompts/hello.wav"); viaPrefix != got {
		t.Fatalf(":SYN_DOM resolves to %s, bare path to %s", viaPrefix, got)
	}
}

func TestDomainsAreSeparate(t *testing.T) {
	root := t.TempDir()
	a, err := New(Config{Root: root, Domain: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Root: root, Domain: "b"})
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Resolve("", ":GS_DOM/x.wav")
	pb, _ := b.Resolve("", ":GS_DOM/x.wav")
	if pa == pb {
		t.Fatalf("domains share %s", pa)
	}
	ga, _ := a.Resolve("", ":GS_PUB/x.wav")
	gb, _ := b.Resolve("", ":GS_PUB/x.wav")
	if ga != gb {
		t.Fatalf("public store differs per domain: %s vs %s", ga, gb)
	}
	// A link from one domain's store into another's leaves the store.
	if err := os.Symlink(filepath.Dir(pb), filepath.Join(filepath.Dir(pa), "peek")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resolve("", ":GS_DOM/peek/x.wav"); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("cross-domain symlink: err = %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Root: "", Domain: "d"},
		{Root: t.TempDir(), Domain: ""},
		{Root: t.TempDir(), Domain: ".."},
		{Root: t.TempDir(), Domain: "a/b"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestTemp(t *testing.T) {
	s, root := newStores(t)
	_, err := s.Resolve("", ":TEMP/14.mp3")
	if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), `":TEMP/14.mp3"`) {
		t.Fatalf("no session: err = %v", err)
	}
	if _, err := s.ResolveForWrite("", ":TEMP/14.mp3"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("no session, write: err = %v", err)
	}

	dir, cleanup, err := s.NewTemp("rDlg-006-ZevQbP")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "tmp", "rDlg-006-ZevQbP") {
		t.Fatalf("temp dir %s", dir)
	}
	got, err := s.Resolve(dir, ":TEMP/14.mp3")
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(dir, "14.mp3") {
		t.Fatalf("got %s", got)
	}
	if _, _, err := s.NewTemp("rDlg-006-ZevQbP"); err == nil {
		t.Fatal("second NewTemp with the same session id succeeded")
	}
	// A temp dir not made by NewTemp is refused, so swapped arguments
	// cannot turn :TEMP into an arbitrary directory.
	for _, bad := range []string{"/etc", root, filepath.Join(root, "stores"), "relative"} {
		if _, err := s.Resolve(bad, ":TEMP/x"); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("temp %q: err = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "..", ".", "a/b", "a\\b", "a\x00b"} {
		if _, _, err := s.NewTemp(bad); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("NewTemp(%q): err = %v", bad, err)
		}
	}
	if err := cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir survived cleanup: %v", err)
	}
	if err := cleanup(); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	if _, err := s.Resolve(dir, ":TEMP/14.mp3"); err == nil {
		t.Fatal(":TEMP resolved after its session ended")
	}
}

func TestHostilePaths(t *testing.T) {
	s, _ := newStores(t)
	dir, cleanup, err := s.NewTemp("sess")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cases := []struct {
		path, msg string
		want      error
	}{
		{":GS_PUB/../etc/passwd", `".." is not allowed`, ErrUnsafePath},
		{":GS_PUB/a/b/../../../etc/passwd", `".." is not allowed`, ErrUnsafePath},
		{"a/../../x.wav", `".." is not allowed`, ErrUnsafePath},
		{"..", `".." is not allowed`, ErrUnsafePath},
		{":TEMP/..", `".." is not allowed`, ErrUnsafePath},
		{":TEMP/../other/x", `".." is not allowed`, ErrUnsafePath},
		{"/etc/passwd", "absolute paths are not allowed", ErrUnsafePath},
		{":GS_PUB//etc/passwd", "absolute paths are not allowed", ErrUnsafePath},
		{":GS_PUB/a\x00.wav", "NUL bytes are not allowed", ErrUnsafePath},
		{":GS_PUB/..\\..\\etc\\passwd", "backslashes are not allowed", ErrUnsafePath},
		{":GS_PUB/a\nb.wav", "control characters are not allowed", ErrUnsafePath},
		{":GS_PUB/a//b.wav", "empty name", ErrUnsafePath},
		{":GS_PUB/x/y/", "empty name", ErrUnsafePath},
		{":GS_PUB/./x.wav", `"." is not allowed`, ErrUnsafePath},
		{"", "empty path", ErrUnsafePath},
		{":GS_PUB", "names the store root, not a file", ErrUnsafePath},
		{":GS_PUB/", "names the store root, not a file", ErrUnsafePath},
		{":TEMP", "names the store root, not a file", ErrUnsafePath},
		{":NOPE/x.wav", `unknown file store ":NOPE" (want :TEMP, :SYN_MEDIA, `, ErrUnknownStore},
		{":gs_pub/x.wav", `unknown file store ":gs_pub"`, ErrUnknownStore},
		{":", `unknown file store ":"`, ErrUnknownStore},
		{":GS_PUBx/a", `unknown file store ":GS_PUBx"`, ErrUnknownStore},
	}
	for _, c := range cases {
		for name, f := range map[string]func(string, string) (string, error){
			"Resolve": s.Resolve, "ResolveForWrite": s.ResolveForWrite,
		} {
			got, err := f(dir, c.path)
			if err == nil {
				t.Errorf("%s(%q) = %s, want error", name, c.path, got)
				continue
			}
			if !errors.Is(err, c.want) {
				t.Errorf("%s(%q): %v does not wrap %v", name, c.path, err, c.want)
			}
			prefix := "files: " + strconv.Quote(c.path) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s(%q): error %q, want %q...%q", name, c.path, err, prefix, c.msg)
			}
		}
	}
	// The exact texts the brief promises.
	_, err = s.Resolve("", ":GS_PUB/../etc/passwd")
	if got := err.Error(); got != `files: ":GS_PUB/../etc/passwd": ".." is not allowed` {
		t.Errorf("got %q", got)
	}
	_, err = s.Resolve("", ":NOPE/x.wav")
	if got := err.Error(); !strings.HasPrefix(got, `files: ":NOPE/x.wav": unknown file store ":NOPE" (want :TEMP, :SYN_MEDIA, :SYN_DOM, :SYN_DOM_MEDIA, :SS_PUB, :SS_DOM, :GS_PUB, :GS_DOM or their long names)`) {
		t.Errorf("got %q", got)
	}
}

// TestLookalikesAreNames pins that nothing is decoded: URL-encoded dots,
// "..." and names merely containing ".." or ":" are ordinary file names that
// stay inside the store.
func TestLookalikesAreNames(t *testing.T) {
	s, root := newStores(t)
	pub := filepath.Join(root, "stores/GLOBALSHARE_PUBLIC")
	for _, p := range []string{"%2e%2e/etc/passwd", "%2e%2e%2fetc", "...", "..a", "a..", "x:y.wav", "~/x", "%00"} {
		got, err := s.Resolve("", ":GS_PUB/"+p)
		if err != nil {
			t.Errorf("%q: %v", p, err)
			continue
		}
		if got != filepath.Join(pub, p) {
			t.Errorf("%q: got %s", p, got)
		}
	}
}

func TestSymlinks(t *testing.T) {
	s, root := newStores(t)
	pub := filepath.Join(root, "stores/GLOBALSHARE_PUBLIC")
	outside := filepath.Join(root, "outside")
	writeFile(t, filepath.Join(outside, "secret"), "secret")
	writeFile(t, filepath.Join(pub, "prompts/v2/hello.wav"), "RIFF")

	mustLink := func(target, link string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(link), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	mustLink("/etc", filepath.Join(pub, "etc"))
	mustLink("/etc/passwd", filepath.Join(pub, "passwd.wav"))
	mustLink(outside, filepath.Join(pub, "a/out"))                    // parent dir escaping
	mustLink("../../../outside", filepath.Join(pub, "rel"))           // relative escape
	mustLink("prompts/v2", filepath.Join(pub, "current"))             // inside, relative
	mustLink(filepath.Join(pub, "prompts"), filepath.Join(pub, "p"))  // inside, absolute
	mustLink("v2/hello.wav", filepath.Join(pub, "prompts/hello.wav")) // file link inside
	mustLink(filepath.Join(outside, "nothing"), filepath.Join(pub, "dangling"))
	mustLink("loop", filepath.Join(pub, "loop"))
	mustLink(".", filepath.Join(pub, "self"))

	rejected := []string{
		":GS_PUB/etc/passwd",
		":GS_PUB/etc/does-not-exist.wav",
		":GS_PUB/passwd.wav",
		":GS_PUB/a/out/secret",
		":GS_PUB/a/out/new/dir/file.wav",
		":GS_PUB/rel/secret",
		":GS_PUB/dangling",
		":GS_PUB/dangling/x.wav",
		":GS_PUB/loop/x.wav",
		":GS_PUB/self",
	}
	for _, p := range rejected {
		for name, f := range map[string]func(string, string) (string, error){
			"Resolve": s.Resolve, "ResolveForWrite": s.ResolveForWrite,
		} {
			if got, err := f("", p); !errors.Is(err, ErrUnsafePath) {
				t.Errorf("%s(%q) = %q, %v; want ErrUnsafePath", name, p, got, err)
			} else if strings.Contains(err.Error(), outside) || strings.Contains(err.Error(), "/etc/passwd\"") && !strings.Contains(p, "etc/passwd") {
				t.Errorf("%s(%q): error reveals the target: %v", name, p, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !os.IsNotExist(err) {
		t.Fatalf("ResolveForWrite created a directory outside the store: %v", err)
	}

	accepted := map[string]string{
		":GS_PUB/current/hello.wav":    "prompts/v2/hello.wav",
		":GS_PUB/p/v2/hello.wav":       "prompts/v2/hello.wav",
		":GS_PUB/prompts/hello.wav":    "prompts/v2/hello.wav",
		":GS_PUB/current/new/file.wav": "prompts/v2/new/file.wav",
		":GS_PUB/self/x.wav":           "x.wav",
	}
	for p, want := range accepted {
		got, err := s.Resolve("", p)
		if err != nil {
			t.Errorf("Resolve(%q): %v", p, err)
		} else if got != filepath.Join(pub, want) {
			t.Errorf("Resolve(%q) = %s, want %s", p, got, want)
		}
	}
	// Writing through a directory link inside the store is fine, writing
	// through a file link is not.
	got, err := s.ResolveForWrite("", ":GS_PUB/current/rec/today/r.wav")
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(pub, "prompts/v2/rec/today/r.wav") {
		t.Fatalf("got %s", got)
	}
	if fi, err := os.Stat(filepath.Dir(got)); err != nil || !fi.IsDir() {
		t.Fatalf("parent not created: %v", err)
	}
	if _, err := s.ResolveForWrite("", ":GS_PUB/prompts/hello.wav"); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("write through a file symlink: err = %v", err)
	}
}

// A store root pointed at a mount by its admin stays usable, and
// StorePath maps paths through the link back to the store.
func TestSymlinkedStoreRoot(t *testing.T) {
	root := t.TempDir()
	mount := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "stores"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mount, filepath.Join(root, "stores", "GLOBALSHARE_PUBLIC")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Root: root, Domain: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ResolveForWrite("", ":GS_PUB/a/b.wav")
	if err != nil {
		t.Fatal(err)
	}
	realMount, _ := filepath.EvalSymlinks(mount)
	if got != filepath.Join(realMount, "a/b.wav") {
		t.Fatalf("got %s", got)
	}
	sp, err := s.StorePath("", filepath.Join(root, "stores/GLOBALSHARE_PUBLIC/a/b.wav"))
	if err != nil || sp != ":GS_PUB/a/b.wav" {
		t.Fatalf("StorePath through the link = %q, %v", sp, err)
	}
}

func TestResolveForWrite(t *testing.T) {
	s, root := newStores(t)
	dom := filepath.Join(root, "stores/GLOBALSHARE_DOMAIN_DATA/acme")
	got, err := s.ResolveForWrite("", ":GS_DOM/a/b/c/abc.wav")
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(dom, "a/b/c/abc.wav") {
		t.Fatalf("got %s", got)
	}
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		fi, err := os.Lstat(filepath.Join(dom, d))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
			t.Fatalf("%s: %v %v", d, fi, err)
		}
	}
	if _, err := os.Stat(got); !os.IsNotExist(err) {
		t.Fatalf("the file itself was created: %v", err)
	}
	writeFile(t, got, "x")
	if again, err := s.ResolveForWrite("", ":GS_DOM/a/b/c/abc.wav"); err != nil || again != got {
		t.Fatalf("overwrite: %q, %v", again, err)
	}
	if _, err := s.ResolveForWrite("", ":GS_DOM/a/b"); err == nil {
		t.Fatal("ResolveForWrite accepted a directory")
	}
	if _, err := s.ResolveForWrite("", ":GS_DOM/a/b/c/abc.wav/x"); err == nil {
		t.Fatal("ResolveForWrite used a file as a directory")
	}
	// Concurrent writers creating the same directories do not trip over
	// each other.
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := s.ResolveForWrite("", ":GS_DOM/race/deep/er/f.wav")
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestStorePathRoundTrip(t *testing.T) {
	s, root := newStores(t)
	dir, cleanup, err := s.NewTemp("sess")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cases := map[string]string{
		":GS_PUB/a/b.wav":                  ":GS_PUB/a/b.wav",
		":GLOBALSHARE_PUBLIC/a/b.wav":      ":GS_PUB/a/b.wav",
		":SYNC_COMMON/m.mp3":               ":SYN_MEDIA/m.mp3",
		"x.wav":                            ":SYN_DOM/x.wav",
		":SYN_DOM_MEDIA/x.wav":             ":SYN_DOM_MEDIA/x.wav",
		":SS_PUB/x.wav":                    ":SS_PUB/x.wav",
		":SS_DOM/x.wav":                    ":SS_DOM/x.wav",
		":GS_DOM/x.wav":                    ":GS_DOM/x.wav",
		":TEMP/ivr_records/ivr_000006.wav": ":TEMP/ivr_records/ivr_000006.wav",
	}
	for in, want := range cases {
		abs, err := s.ResolveForWrite(dir, in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got, err := s.StorePath(dir, abs)
		if err != nil || got != want {
			t.Errorf("StorePath(Resolve(%q)) = %q, %v; want %q", in, got, err, want)
			continue
		}
		back, err := s.Resolve(dir, got)
		if err != nil || back != abs {
			t.Errorf("Resolve(%q) = %q, %v; want %q", got, back, err, abs)
		}
	}
	if got, err := s.StorePath("", filepath.Join(root, "stores/GLOBALSHARE_PUBLIC")); err != nil || got != ":GS_PUB" {
		t.Errorf("store root: %q, %v", got, err)
	}
	if got, err := s.StorePath("", filepath.Join(root, "stores/GLOBALSHARE_PUBLIC/a/../b.wav")); err != nil || got != ":GS_PUB/b.wav" {
		t.Errorf("uncleaned path: %q, %v", got, err)
	}
	for _, bad := range []string{
		"/etc/passwd",
		root,
		filepath.Join(root, "stores"),
		filepath.Join(root, "stores/GLOBALSHARE_PUBLIC/../x"),
		filepath.Join(root, "stores/SYNC_DOMAIN_DATA/other/x.wav"),
		filepath.Join(root, "tmp/other-session/x.wav"),
		filepath.Join(dir, "x.wav"), // the session's own temp, but no session given
	} {
		if got, err := s.StorePath("", bad); !errors.Is(err, ErrUnknownStore) {
			t.Errorf("StorePath(%q) = %q, %v; want ErrUnknownStore", bad, got, err)
		}
	}
	if _, err := s.StorePath("", "relative/x.wav"); err == nil {
		t.Error("StorePath accepted a relative path")
	}
	// A name Resolve would refuse never comes back as a store path.
	if _, err := s.StorePath("", filepath.Join(root, "stores/GLOBALSHARE_PUBLIC/a\\b.wav")); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("backslash name: err = %v", err)
	}
}

func TestJoin(t *testing.T) {
	for _, c := range []struct{ dir, name, want string }{
		{":GS_PUB/x/y/", "abc.wav", ":GS_PUB/x/y/abc.wav"},
		{":GS_PUB/x/y", "abc.wav", ":GS_PUB/x/y/abc.wav"},
		{":GS_PUB", "abc.wav", ":GS_PUB/abc.wav"},
		{":GS_PUB/", "abc.wav", ":GS_PUB/abc.wav"},
		{"", "abc.wav", "abc.wav"},
	} {
		if got, err := Join(c.dir, c.name); err != nil || got != c.want {
			t.Errorf("Join(%q, %q) = %q, %v; want %q", c.dir, c.name, got, err, c.want)
		}
	}
	for _, c := range []struct{ dir, name string }{
		{":GS_PUB/x", "../../etc/passwd"},
		{":GS_PUB/x", ".."},
		{":GS_PUB/x", "a/b"},
		{":GS_PUB/x", ""},
		{":NOPE/x", "a.wav"},
		{":GS_PUB/../x", "a.wav"},
	} {
		if got, err := Join(c.dir, c.name); err == nil {
			t.Errorf("Join(%q, %q) = %q, want error", c.dir, c.name, got)
		}
	}
}

func TestTempCleanupDoesNotFollowSymlinks(t *testing.T) {
	s, root := newStores(t)
	outside := filepath.Join(root, "outside")
	writeFile(t, filepath.Join(outside, "keep.txt"), "keep")
	writeFile(t, filepath.Join(outside, "sub/deep.txt"), "keep")

	dir, cleanup, err := s.NewTemp("sess")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ivr_records/r.wav"), "RIFF")
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "keep.txt"), filepath.Join(dir, "ivr_records/file-link")); err != nil {
		t.Fatal(err)
	}
	if err := cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir survived: %v", err)
	}
	for _, f := range []string{"keep.txt", "sub/deep.txt"} {
		if b, err := os.ReadFile(filepath.Join(outside, f)); err != nil || string(b) != "keep" {
			t.Fatalf("outside file %s damaged: %q, %v", f, b, err)
		}
	}

	// Even when the temp dir itself was replaced by a link, only the link goes.
	dir2, cleanup2, err := s.NewTemp("sess2")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir2); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, dir2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveForWrite(dir2, ":TEMP/x.wav"); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("write into a swapped temp dir: err = %v", err)
	}
	if _, err := s.Resolve(dir2, ":TEMP/keep.txt"); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("read from a swapped temp dir: err = %v", err)
	}
	if err := cleanup2(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir2); !os.IsNotExist(err) {
		t.Fatalf("link survived: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep.txt")); err != nil || string(b) != "keep" {
		t.Fatalf("outside file damaged: %q, %v", b, err)
	}
}
