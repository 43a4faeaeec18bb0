package store

import (
	"context"
	"testing"
	"time"

	"redial/internal/testenv"
)

func TestNodeHeartbeatRegistersAndReportsFresh(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Host: "n1"})
	ctx := context.Background()
	now := time.Now()
	fresh, err := s.NodeHeartbeat(ctx, "n1", []byte(`{"host":"n1"}`), 2*time.Second, now)
	if err != nil || !fresh {
		t.Fatalf("first heartbeat: fresh=%v err=%v, want fresh", fresh, err)
	}
	fresh, err = s.NodeHeartbeat(ctx, "n1", []byte(`{"host":"n1"}`), 2*time.Second, now.Add(time.Second))
	if err != nil || fresh {
		t.Fatalf("second heartbeat: fresh=%v err=%v, want not fresh", fresh, err)
	}
	if pttl := r.Client.PTTL(ctx, s.AliveKey("n1")).Val(); pttl <= 0 || pttl > 2*time.Second {
		t.Fatalf("alive key PTTL %v, want (0, 2s]", pttl)
	}
	// The dialer's older heartbeat writes the same key the same way.
	if err := s.Heartbeat(ctx, "n1", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeHeartbeat(ctx, "n2", []byte(`{"host":"n2"}`), 2*time.Second, now); err != nil {
		t.Fatal(err)
	}
	r.Client.Del(ctx, s.AliveKey("n2"), s.LegacyAliveKey("n2"))
	recs, err := s.NodeRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]NodeRecord{}
	for _, rec := range recs {
		got[rec.Host] = rec
	}
	if len(got) != 2 || !got["n1"].Alive || got["n2"].Alive || got["n1"].Info != `{"host":"n1"}` ||
		got["n1"].LastSeen.UnixMilli() != now.Add(time.Second).UnixMilli() {
		t.Fatalf("records %+v", recs)
	}
}

func TestForgetNodesKeepsRecentOnes(t *testing.T) {
	r := testenv.StartRedis(t)
	s := NewWithClient(r.Client, Config{Host: "n1"})
	ctx := context.Background()
	now := time.Now()
	s.NodeHeartbeat(ctx, "old", []byte(`{}`), time.Second, now.Add(-48*time.Hour))
	s.NodeHeartbeat(ctx, "new", []byte(`{}`), time.Second, now)
	gone, err := s.ForgetNodes(ctx, now.Add(-24*time.Hour))
	if err != nil || len(gone) != 1 || gone[0] != "old" {
		t.Fatalf("forgot %v, %v; want [old]", gone, err)
	}
	if r.Client.HExists(ctx, s.NodesInfoKey(), "old").Val() || !r.Client.HExists(ctx, s.NodesInfoKey(), "new").Val() {
		t.Fatalf("info hash after forget: %v", r.Client.HKeys(ctx, s.NodesInfoKey()).Val())
	}
	if gone, err := s.ForgetNodes(ctx, now.Add(-24*time.Hour)); err != nil || len(gone) != 0 {
		t.Fatalf("second forget: %v, %v", gone, err)
	}
}

func TestNodesKeysShareOneHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{})
	if s.NodesInfoKey() != "redial:{nodes}:info" || s.NodesSeenKey() != "redial:{nodes}:seen" {
		t.Fatalf("keys %q %q", s.NodesInfoKey(), s.NodesSeenKey())
	}
}
