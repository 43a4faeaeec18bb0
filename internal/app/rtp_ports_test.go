package app

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"redial/internal/media"
	"redial/internal/testenv"
)

// A node that stops closes the RTP sockets it parked for reuse, so that no
// port of its range stays bound after it: a node started again, or another
// node (or test binary) over the same range, must find every port free.
// Parked sockets that outlived their node made calls of other tests fail
// with "no bindable port in the pool: ... address already in use".
func TestNodeStopClosesParkedRTPSockets(t *testing.T) {
	r := testenv.StartRedis(t)
	a, err := New(nodeConfig(t, r.URL, "n1"), slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.SIP.Ready()

	// Bound as the node's calls bind theirs (all IPv4 addresses).
	sess, err := media.NewSession("", a.Ports)
	if err != nil {
		t.Fatal(err)
	}
	port := sess.LocalPort()
	sess.Close()
	if n := a.Ports.Parked(); n != 1 {
		t.Fatalf("Parked = %d after a session closed, want 1; the test checks nothing", n)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node did not stop within 30s")
	}
	if n := a.Ports.Parked(); n != 0 {
		t.Fatalf("Parked = %d after the node stopped, want 0", n)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("port %d still bound after the node stopped: %v", port, err)
	}
	c.Close()
}
