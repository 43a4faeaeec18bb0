//go:build !unix

package notify

import (
	"fmt"
	"os"
)

// lockDir only creates the lock file: without flock, running two processes
// on one spool directory is the operator's to avoid.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}

func unlockDir(f *os.File) error { return f.Close() }
