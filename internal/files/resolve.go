package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Resolve turns a store path into an absolute file path. temp is the
// session's temp dir from NewTemp, or "" outside a session, where :TEMP paths
// fail with ErrNoSession. A path without a store prefix is relative to the
// default store :SYNC_DOMAIN_DATA.
//
// The file need not exist. Symlinks along the existing part of the path are
// evaluated and the result must stay inside the store; the returned path is
// the evaluated one, so it holds no symlinks at the time of the call.
// Dangling or looping symlinks are refused, since where they lead cannot be
// checked.
func (s *Stores) Resolve(temp, path string) (string, error) {
	root, p, err := s.root(temp, path)
	if err != nil {
		return "", err
	}
	return contain(root, filepath.Join(root, filepath.FromSlash(p.rel)), path)
}

// ResolveForWrite is Resolve for a file about to be created or replaced. It
// creates the missing parent directories (0750) one at a time, checking
// each existing one for symlinks that leave the store, and refuses a file
// that is itself a symlink, a directory or anything but a regular file.
func (s *Stores) ResolveForWrite(temp, path string) (string, error) {
	root, p, err := s.root(temp, path)
	if err != nil {
		return "", err
	}
	// The root was evaluated in New; if it changed since, somebody swapped
	// it and the checks below would be made against the wrong directory.
	if real, err := filepath.EvalSymlinks(root); err != nil || real != root {
		return "", &pathError{path: path, msg: "store directory has moved or vanished", kind: ErrUnsafePath, cause: err}
	}
	parts := strings.Split(p.rel, "/")
	cur := root
	for i, name := range parts[:len(parts)-1] {
		next := filepath.Join(cur, name)
		shown := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			err = os.Mkdir(next, 0o750)
			if errors.Is(err, fs.ErrExist) { // another session won the race
				err = nil
			}
			if err == nil {
				fi, err = os.Lstat(next)
			}
		}
		if err != nil {
			return "", &pathError{path: path, msg: fmt.Sprintf("directory %q", shown), cause: err}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			real, err := filepath.EvalSymlinks(next)
			if err != nil {
				return "", unsafe(path, fmt.Sprintf("symlink %q is dangling or looping", shown))
			}
			if !within(root, real) {
				return "", unsafe(path, fmt.Sprintf("symlink %q leads outside the store", shown))
			}
			if fi, err = os.Stat(real); err != nil {
				return "", &pathError{path: path, msg: fmt.Sprintf("directory %q", shown), cause: err}
			}
			if !fi.IsDir() {
				return "", &pathError{path: path, msg: fmt.Sprintf("%q is not a directory", shown)}
			}
			cur = real
		case fi.IsDir():
			cur = next
		default:
			return "", &pathError{path: path, msg: fmt.Sprintf("%q is not a directory", shown)}
		}
	}
	file := filepath.Join(cur, parts[len(parts)-1])
	fi, err := os.Lstat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return file, nil
	case err != nil:
		return "", &pathError{path: path, msg: "cannot inspect file", cause: err}
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", unsafe(path, "the file is a symlink; refusing to write through it")
	case fi.IsDir():
		return "", &pathError{path: path, msg: "is a directory, not a file"}
	case !fi.Mode().IsRegular():
		// A FIFO or device would block or leak the writer.
		return "", unsafe(path, "not a regular file")
	}
	return file, nil
}

// root validates path and returns the directory of its store, refusing a
// path that names the store root itself.
func (s *Stores) root(temp, path string) (string, parsed, error) {
	p, err := parse(path)
	if err != nil {
		return "", parsed{}, err
	}
	var root string
	if p.store < 0 {
		if root, err = s.checkTemp(temp, path); err != nil {
			return "", parsed{}, err
		}
	} else {
		root = s.roots[p.store]
	}
	if p.rel == "" {
		return "", parsed{}, unsafe(path, "names the store root, not a file")
	}
	return root, p, nil
}

// checkTemp makes sure temp is a session dir made by NewTemp, so a caller
// that swaps the arguments cannot turn :TEMP into an arbitrary directory.
func (s *Stores) checkTemp(temp, path string) (string, error) {
	if temp == "" {
		return "", &pathError{path: path, msg: "no IVR session", kind: ErrNoSession}
	}
	if !filepath.IsAbs(temp) || filepath.Clean(temp) != temp || filepath.Dir(temp) != s.tmpRoot {
		return "", &pathError{path: path, msg: "session temp dir is not one made by NewTemp", kind: ErrUnsafePath}
	}
	return temp, nil
}

// contain evaluates the symlinks of the longest existing prefix of cand and
// checks that the result stays inside root, the evaluated store directory.
func contain(root, cand, path string) (string, error) {
	existing, tail := cand, ""
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		// ENOTDIR: a prefix is a regular file; the open will fail later,
		// and nothing beyond it can be a symlink.
		if errors.Is(err, syscall.ELOOP) {
			return "", unsafe(path, "a symlink along the path is dangling or looping")
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", &pathError{path: path, msg: "cannot inspect path", cause: err}
		}
		if existing == root {
			return "", &pathError{path: path, msg: "store directory has vanished", cause: err}
		}
		tail = filepath.Join(filepath.Base(existing), tail)
		existing = filepath.Dir(existing)
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return "", unsafe(path, "a symlink along the path is dangling or looping")
		}
		return "", &pathError{path: path, msg: "cannot evaluate symlinks", cause: err}
	}
	full := filepath.Join(real, tail)
	if !within(root, full) {
		// The target is not named: errors reach scripts and API clients,
		// which have no business learning the server's layout.
		return "", unsafe(path, "a symlink along the path leads outside the store")
	}
	if full == root {
		return "", unsafe(path, "names the store root, not a file")
	}
	return full, nil
}

// within reports whether p is dir or inside it; both are clean and absolute.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// StorePath turns an absolute path inside a store (or inside the session's
// temp dir) back into a store path for results returned to scripts, using
// the short names of the seed's results: ":GS_PUB/a/b.wav", ":SYN_DOM/x.wav",
// ":TEMP/rec.wav". The store root itself comes back as the bare prefix. A
// path outside all stores, or whose names Resolve would refuse, is an error.
func (s *Stores) StorePath(temp, abs string) (string, error) {
	if !filepath.IsAbs(abs) {
		return "", &pathError{path: abs, msg: "not an absolute path"}
	}
	if temp != "" {
		if _, err := s.checkTemp(temp, abs); err != nil {
			return "", err
		}
	}
	c := filepath.Clean(abs)
	sp, found, err := s.match(temp, c)
	if !found {
		// The caller may hold a path through a symlinked store root
		// (Root/stores/GLOBALSHARE_PUBLIC -> /mnt/share) or the reverse.
		if real, rerr := evalExisting(c); rerr == nil && real != c {
			sp, found, err = s.match(temp, real)
		}
	}
	if !found {
		return "", &pathError{path: abs, msg: "not inside any file store", kind: ErrUnknownStore}
	}
	return sp, err
}

// match finds the store holding c; the longest root wins.
func (s *Stores) match(temp, c string) (sp string, found bool, err error) {
	best, prefix := "", ""
	if temp != "" && within(temp, c) {
		best, prefix = temp, tempPrefix
	}
	for i, r := range s.roots {
		if within(r, c) && len(r) > len(best) {
			best, prefix = r, storeDefs[i].short
		}
	}
	if best == "" {
		return "", false, nil
	}
	if c == best {
		return prefix, true, nil
	}
	rel := filepath.ToSlash(c[len(best)+1:])
	if msg := checkRel(rel); msg != "" {
		return "", true, unsafe(c, msg)
	}
	return prefix + "/" + rel, true, nil
}

// evalExisting evaluates the symlinks of the longest existing prefix of p
// and appends the rest unchanged.
func evalExisting(p string) (string, error) {
	existing, tail := p, ""
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return p, nil
		}
		tail = filepath.Join(filepath.Base(existing), tail)
		existing = parent
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", err
	}
	return filepath.Join(real, tail), nil
}
