package store

import (
	"context"
	"testing"

	"redial/internal/testenv"
)

// RunIDs names the server's run_id, which changes when it restarts;
// ExistingKeys tells present keys from absent ones.
func TestRunIDsAndExistingKeys(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Host: "n1"})
	ctx := context.Background()
	first, err := s.RunIDs(ctx)
	if err != nil || len(first) != 1 || len(first[""]) != 40 {
		t.Fatalf("run_ids: %v, %v; want one 40-character run_id", first, err)
	}
	if got := FormatRunIDs(first); got != first[""] {
		t.Fatalf("FormatRunIDs = %q", got)
	}
	if err := s.WriteDataMarker(ctx, "n1", first[""]); err != nil {
		t.Fatal(err)
	}
	exist, err := s.ExistingKeys(ctx, append([]string{s.DataMarkerKey("n1")}, s.ConfigKeys()...))
	if err != nil || !exist[s.DataMarkerKey("n1")] || exist[s.LinesKey()] {
		t.Fatalf("exist: %v, %v; want the marker only", exist, err)
	}
	if ttl := r.Client.TTL(ctx, s.DataMarkerKey("n1")).Val(); ttl <= 0 || ttl > MarkerTTL {
		t.Fatalf("marker TTL %v, want up to %v", ttl, MarkerTTL)
	}
	r.Stop()
	r.Restart(t)
	second, err := s.RunIDs(ctx)
	if err != nil || second[""] == first[""] {
		t.Fatalf("run_id after a restart: %v (before %v), %v", second, first, err)
	}
	if got := FormatRunIDs(map[string]string{"b:2": "y", "a:1": "x"}); got != "a:1=x,b:2=y" {
		t.Fatalf("FormatRunIDs of a cluster = %q", got)
	}
}
