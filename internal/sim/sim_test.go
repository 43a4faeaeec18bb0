package sim

import (
	"context"
	"net"
	"testing"
	"time"

	"redial/internal/media"
)

// A simulator that stops closes the RTP sockets its pool parked for
// reuse: none keeps its port bound for whoever binds the range next.
func TestRunStopFreesParkedRTPPorts(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", RTPMin: 1400, RTPMax: 1406}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer cancel()

	sess, err := media.NewSession("127.0.0.1", s.ports)
	if err != nil {
		t.Fatal(err)
	}
	port := sess.LocalPort()
	sess.Close()
	if n := s.ports.Parked(); n != 1 {
		t.Fatalf("Parked = %d after a session closed, want 1; the test checks nothing", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
	if n := s.ports.Parked(); n != 0 {
		t.Fatalf("Parked = %d after Run returned, want 0", n)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("port %d still bound after the simulator stopped: %v", port, err)
	}
	c.Close()
}
