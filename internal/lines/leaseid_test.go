package lines

import (
	"regexp"
	"testing"
)

// TestLeaseIDFormat holds leaseID to the format operators read in Redis,
// <node>:<call_ref>:<16 hex digits>, random in its last part.
func TestLeaseIDFormat(t *testing.T) {
	m := &Manager{cfg: Config{NodeID: "node-1"}}
	re := regexp.MustCompile(`^node-1:call:42:[0-9a-f]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		id := m.leaseID("call:42")
		if !re.MatchString(id) {
			t.Fatalf("lease id %q", id)
		}
		seen[id] = true
	}
	if len(seen) < 100 {
		t.Errorf("%d distinct ids in 100", len(seen))
	}
}
