package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// socketInode returns the inode of the session's socket, which stays the
// same whichever descriptor refers to it.
func socketInode(t *testing.T, s *Session) uint64 {
	t.Helper()
	uc, ok := s.readConn().(*net.UDPConn)
	if !ok {
		t.Fatalf("session conn is %T, want *net.UDPConn", s.readConn())
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatalf("fstat: %v %v", err, serr)
	}
	return st.Ino
}

// epollSetsWatching returns the descriptors of this process's epoll sets
// that have the socket with inode ino registered, from /proc/self/fdinfo.
func epollSetsWatching(t *testing.T, ino uint64) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	want := "ino:" + strconv.FormatUint(ino, 16)
	var sets []int
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "tfd:") && strings.Contains(sc.Text()+" ", " "+want+" ") {
				fd, _ := strconv.Atoi(e.Name())
				sets = append(sets, fd)
				break
			}
		}
		f.Close()
	}
	return sets
}

func shardFds(pool *PortPool) map[int]bool {
	m := map[int]bool{}
	for _, sh := range pool.relay.shards {
		m[sh.epfd] = true
	}
	return m
}

// watchedBy describes which epoll sets watch a socket: "go" for one set
// that is not a relay shard's (Go's netpoller), "shard" for one shard's.
func watchedBy(t *testing.T, pool *PortPool, ino uint64) string {
	t.Helper()
	sets := epollSetsWatching(t, ino)
	shards := shardFds(pool)
	var kinds []string
	for _, fd := range sets {
		if shards[fd] {
			kinds = append(kinds, "shard")
		} else {
			kinds = append(kinds, "go")
		}
	}
	return strings.Join(kinds, "+")
}

// TestRelayTakesSocketsOutOfGoNetpoller checks that while a shard relays
// a session's socket only the shard's epoll set watches it (Go's netpoller
// would otherwise be woken by every packet), that packets flow both ways
// meanwhile, and that when the relay stops the socket is Go's again with
// no packet lost across the switch.
func TestRelayTakesSocketsOutOfGoNetpoller(t *testing.T) {
	pool := testPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1, p2 := newPeer(t), newPeer(t)
	_ = p2.conn.SetReadBuffer(readBufferBytes)
	a.SetRemote(p1.addr())
	b.SetRemote(p2.addr())
	inoA, inoB := socketInode(t, a), socketInode(t, b)
	if got := watchedBy(t, pool, inoA); got != "go" {
		t.Fatalf("before the relay the socket is watched by %q, want Go's netpoller only", got)
	}

	run := StartRelay(context.Background(), a, b, nil)
	for name, ino := range map[string]uint64{"a": inoA, "b": inoB} {
		if got := watchedBy(t, pool, ino); got != "shard" {
			t.Fatalf("during the relay session %s's socket is watched by %q, want its shard's epoll set only", name, got)
		}
	}
	p1.sendTo(a, rtpPacket(t, rtp.Header{SequenceNumber: 1, SSRC: 1}, []byte{1}))
	if got := p2.recvRTP(); got.SequenceNumber != 1 {
		t.Fatalf("p2 got seq %d, want 1", got.SequenceNumber)
	}
	p2.sendTo(b, rtpPacket(t, rtp.Header{SequenceNumber: 7, SSRC: 2}, []byte{7}))
	if got := p1.recvRTP(); got.SequenceNumber != 7 {
		t.Fatalf("p1 got seq %d, want 7", got.SequenceNumber)
	}
	// A session held by a relay still sends (a prompt into a bridged call).
	if err := a.WritePacket(rtpPacket(t, rtp.Header{SequenceNumber: 99, SSRC: 3}, []byte{9})); err != nil {
		t.Fatalf("WritePacket during the relay: %v", err)
	}
	if got := p1.recvRTP(); got.SequenceNumber != 99 {
		t.Fatalf("p1 got seq %d, want 99", got.SequenceNumber)
	}

	// Stream into a while the relay stops: every packet is either relayed
	// to p2 or left queued in a's socket for its next reader.
	const n = 100
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for seq := 2; seq <= n; seq++ {
			p1.sendTo(a, rtpPacket(t, rtp.Header{SequenceNumber: uint16(seq), SSRC: 1}, []byte{byte(seq)}))
		}
	}()
	if got := p2.recvRTP(); got.SequenceNumber != 2 {
		t.Fatalf("p2 got seq %d, want 2", got.SequenceNumber)
	}
	run.Stop()
	st := run.Wait()
	<-sent
	for seq := 3; seq <= int(st.AtoB); seq++ {
		if got := p2.recvRTP(); got.SequenceNumber != uint16(seq) {
			t.Fatalf("p2 got seq %d, want %d", got.SequenceNumber, seq)
		}
	}
	for name, ino := range map[string]uint64{"a": inoA, "b": inoB} {
		if got := watchedBy(t, pool, ino); got != "go" {
			t.Fatalf("after the relay session %s's socket is watched by %q, want Go's netpoller only", name, got)
		}
	}
	watchdog := time.AfterFunc(10*time.Second, func() { a.Close() })
	defer watchdog.Stop()
	buf := make([]byte, 2048)
	for seq := int(st.AtoB) + 1; seq <= n; seq++ {
		k, err := a.ReadPacket(buf)
		if err != nil {
			t.Fatalf("reading seq %d after the relay (it relayed %d): %v", seq, st.AtoB, err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf[:k]); err != nil || pkt.SequenceNumber != uint16(seq) {
			t.Fatalf("read seq %d (%v) after the relay, want %d", pkt.SequenceNumber, err, seq)
		}
	}
	if err := a.WritePacket(rtpPacket(t, rtp.Header{SequenceNumber: 100, SSRC: 3}, []byte{9})); err != nil {
		t.Fatalf("WritePacket after the relay: %v", err)
	}
	if got := p1.recvRTP(); got.SequenceNumber != 100 {
		t.Fatalf("p1 got seq %d, want 100", got.SequenceNumber)
	}
}

// TestRelayCloseFreesRelayedSocket closes a session while a shard relays
// it: the relay ends, the socket is really closed (its port can be bound
// again) and the other session goes back to normal reading.
func TestRelayCloseFreesRelayedSocket(t *testing.T) {
	pool := testPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p2 := newPeer(t)
	b.SetRemote(p2.addr())
	run := StartRelay(context.Background(), a, b, nil)
	if err := a.Close(); err != nil {
		t.Fatalf("Close during the relay: %v", err)
	}
	select {
	case <-run.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("relay still running after a session was closed")
	}
	run.Wait()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.LocalPort()})
	if err != nil {
		t.Fatalf("port %d still bound after Close: %v", a.LocalPort(), err)
	}
	c.Close()
	buf := make([]byte, 2048)
	if _, err := a.ReadPacket(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadPacket on the closed session: %v, want net.ErrClosed", err)
	}
	p2.sendTo(b, rtpPacket(t, rtp.Header{SequenceNumber: 4}, []byte{4}))
	if _, err := b.ReadPacket(buf); err != nil {
		t.Fatalf("ReadPacket on the other session after the relay: %v", err)
	}
}

// TestRelaySwitchesUnderConcurrentWriters starts and stops relays while
// another goroutine keeps sending on the session, then closes it during a
// relay: the writer never sees a closed or half-swapped conn before the
// Close, only net.ErrClosed after it. Run with -race.
func TestRelaySwitchesUnderConcurrentWriters(t *testing.T) {
	pool := testPool(t)
	a, b := newTestSession(t, pool), newTestSession(t, pool)
	p1 := newPeer(t)
	a.SetRemote(p1.addr())
	pkt := rtpPacket(t, rtp.Header{SSRC: 5}, make([]byte, 160))

	isClosed := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Microsecond)
		defer tick.Stop()
		for range tick.C {
			err := a.WritePacket(pkt)
			if err == nil {
				continue
			}
			select {
			case <-isClosed:
				if !errors.Is(err, net.ErrClosed) {
					err = fmt.Errorf("write after Close: %w, want net.ErrClosed", err)
				} else {
					err = nil
				}
			default:
				if !a.closed.Load() {
					err = fmt.Errorf("write before Close: %w", err)
				} else if errors.Is(err, net.ErrClosed) {
					err = nil // Close is under way
				}
			}
			writerErr <- err
			return
		}
	}()
	for i := 0; i < 30; i++ {
		run := StartRelay(context.Background(), a, b, nil)
		run.Stop()
		run.Wait()
	}
	run := StartRelay(context.Background(), a, b, nil)
	a.Close()
	close(isClosed)
	run.Wait()
	select {
	case err := <-writerErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer never saw the session closed")
	}
}
