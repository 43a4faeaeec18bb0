// Package logtext bounds text an outsider controls (queue items, events,
// spooled records) before it reaches a log line, so a huge value cannot
// fill the disk through the log.
package logtext

import "fmt"

// Truncate returns s whole when it has at most n bytes, else its first n
// bytes followed by the full size.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}
