package files

import (
	"fmt"
	"os"
	"path/filepath"
)

// NewTemp creates the :TEMP dir of one IVR session, Root/tmp/<sessionID>,
// and returns it with a cleanup func that removes it and everything in it.
// The session ID must be a single plain name and not already in use.
//
// Cleanup never follows symlinks: os.RemoveAll unlinks a link instead of
// descending into it, so a link to an outside directory costs only the link.
// It may be called more than once.
func (s *Stores) NewTemp(sessionID string) (dir string, cleanup func() error, err error) {
	if msg := checkName(sessionID); msg != "" {
		return "", nil, fmt.Errorf("files: session %q: %s: %w", sessionID, msg, ErrUnsafePath)
	}
	dir = filepath.Join(s.tmpRoot, sessionID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		return "", nil, fmt.Errorf("files: temp dir of session %q: %w", sessionID, err)
	}
	cleanup = func() error {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("files: removing temp dir of session %q: %w", sessionID, err)
		}
		return nil
	}
	return dir, cleanup, nil
}
