package media

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// BenchmarkRelay measures one relayed packet (ns/op) end to end over
// loopback: peer1 -> session a -> Relay -> session b -> peer2. The time
// includes the peers' own send and receive syscalls. Up to 64 packets are in
// flight, so it measures throughput rather than round-trip latency.
func BenchmarkRelay(b *testing.B) {
	b.Run("same-codec", func(b *testing.B) { benchRelay(b, PCMU, PCMU) })
	b.Run("transcode", func(b *testing.B) { benchRelay(b, PCMU, PCMA) })
}

func benchRelay(b *testing.B, ca, cb Codec) {
	pool, err := NewPortPool(9600, 9698)
	if err != nil {
		b.Fatal(err)
	}
	sa, err := NewSession("127.0.0.1", pool)
	if err != nil {
		b.Fatal(err)
	}
	defer sa.Close()
	sb, err := NewSession("127.0.0.1", pool)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	p1, err := net.ListenUDP("udp4", lo)
	if err != nil {
		b.Fatal(err)
	}
	defer p1.Close()
	p2, err := net.ListenUDP("udp4", lo)
	if err != nil {
		b.Fatal(err)
	}
	defer p2.Close()
	_ = p2.SetReadBuffer(readBufferBytes)

	sa.SetCodec(ca)
	sb.SetCodec(cb)
	sa.SetRemote(p1.LocalAddr().(*net.UDPAddr))
	sb.SetRemote(p2.LocalAddr().(*net.UDPAddr))
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan RelayStats, 1)
	go func() { relayDone <- Relay(ctx, sa, sb) }()

	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: ca.PT, SSRC: 1}, Payload: make([]byte, 160)}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.LocalPort()))

	const window = 64
	credits := make(chan struct{}, window)
	dead := make(chan struct{})
	received := make(chan int, 1)
	go func() {
		buf := make([]byte, 2048)
		got := 0
		for got < b.N {
			if _, err := p2.Read(buf); err != nil {
				close(dead)
				break
			}
			got++
			<-credits
		}
		received <- got
	}()
	// A lost packet would stall the window forever; the watchdog turns that
	// into a failure.
	watchdog := time.AfterFunc(time.Minute, func() { p2.SetReadDeadline(time.Now()) })
	defer watchdog.Stop()

	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		select {
		case credits <- struct{}{}:
		case <-dead:
			b.Fatalf("peer2 stopped receiving after some of %d packets", b.N)
		}
		if _, err := p1.WriteToUDPAddrPort(pkt, to); err != nil {
			b.Fatal(err)
		}
	}
	got := <-received
	b.StopTimer()
	if got != b.N {
		b.Fatalf("received %d of %d packets", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	// CPU time is steadier than wall time on a busy machine; it includes the
	// two peers' syscalls, so the relay's own share is lower.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/pkt")
	cancel()
	if st := <-relayDone; st.AtoB != uint64(b.N) {
		b.Fatalf("relay forwarded %d of %d", st.AtoB, b.N)
	}
}

// processCPU returns the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTranscodePayload is the CPU cost of converting one 20 ms G.711 frame.
func BenchmarkTranscodePayload(b *testing.B) {
	pkt := make([]byte, 172)
	pkt[0] = 0x80
	sp := &mediaParams{codec: PCMU, law: lawUlaw, dtmfPT: -1}
	dp := &mediaParams{codec: PCMA, law: lawAlaw, dtmfPT: -1}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		translate(pkt, sp, dp)
		sp, dp = dp, sp
	}
}
