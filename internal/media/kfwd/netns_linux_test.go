//go:build linux

package kfwd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a network namespace with lo up as 127.0.0.1/32 only, so
// that the rest of 127/8 is no longer local and can be routed over a veth
// (route_localnet lets 127/8 addresses leave lo). IPv4 forwarding is off
// there and on every interface created later, whatever the host has (a new
// namespace inherits the host's IPv4 settings). It is deleted at cleanup.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%08x", prefix, rand.Uint32())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, k := range []string{"all", "default"} {
		run(t, "ip", "netns", "exec", name, "sysctl", "-qw",
			"net.ipv4.conf."+k+".route_localnet=1", "net.ipv4.conf."+k+".forwarding=0")
	}
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	// Bringing lo up adds 127.0.0.1/8 and with it "local 127.0.0.0/8".
	run(t, "ip", "-n", name, "addr", "del", "127.0.0.1/8", "dev", "lo")
	run(t, "ip", "-n", name, "addr", "add", "127.0.0.1/32", "dev", "lo")
	return name
}

// requireForwardingOff fails the test unless net.ipv4.conf.*.forwarding is 0
// for all, default and every interface of the namespace ns.
func requireForwardingOff(t *testing.T, ns string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "grep", "-H", ".",
		"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/forwarding").CombinedOutput()
	if err != nil {
		t.Fatalf("read forwarding sysctls in %s: %v: %s", ns, err, out)
	}
	per, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		"grep -H . /proc/sys/net/ipv4/conf/*/forwarding").CombinedOutput()
	if err != nil {
		t.Fatalf("read forwarding sysctls in %s: %v: %s", ns, err, per)
	}
	lines := strings.Split(strings.TrimSpace(string(out)+string(per)), "\n")
	// ip_forward, all (twice), default and lo at least.
	if len(lines) < 5 {
		t.Fatalf("forwarding sysctls in %s: too few: %q", ns, lines)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, ":0") {
			t.Fatalf("forwarding in %s: want 0 everywhere, got %q", ns, l)
		}
	}
}

// inNetns runs fn on an OS thread switched into the namespace ns. Sockets
// and the Forwarder made there stay in ns when used from other threads.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		// Unlock only when back home; otherwise the thread dies with the
		// goroutine instead of running others in the wrong namespace.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}

// TestRoutedForwarding runs the routed mode between two namespaces joined
// by a veth pair, with 127.77.0.0/24 on the veth (loopback addresses only):
// ns1 is the redial node (A and B on 127.77.0.1), ns2 holds the phone P
// (127.77.0.2) and the far end F (127.77.0.3). A packet from P to A must
// come back out of the veth to F from B's port, rewritten by ns1's program,
// with IPv4 forwarding off everywhere and no neighbour entries to start
// with (the kernel resolves them by ARP). The rules are added from the test
// goroutine, outside ns1: the Forwarder must resolve routes in ns1.
func TestRoutedForwarding(t *testing.T) {
	ns1 := newNetns(t, "kfwd1")
	ns2 := newNetns(t, "kfwd2")
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	v1, v2 := "kf1"+suffix, "kf2"+suffix
	const mac1, mac2 = "02:00:7f:4d:00:01", "02:00:7f:4d:00:02"
	run(t, "ip", "link", "add", v1, "address", mac1, "netns", ns1, "type", "veth",
		"peer", "name", v2, "address", mac2, "netns", ns2)
	run(t, "ip", "netns", "exec", ns1, "sysctl", "-qw", "net.ipv4.conf."+v1+".route_localnet=1")
	run(t, "ip", "netns", "exec", ns2, "sysctl", "-qw", "net.ipv4.conf."+v2+".route_localnet=1")
	run(t, "ip", "-n", ns1, "addr", "add", "127.77.0.1/24", "dev", v1)
	run(t, "ip", "-n", ns2, "addr", "add", "127.77.0.2/24", "dev", v2)
	run(t, "ip", "-n", ns2, "addr", "add", "127.77.0.3/24", "dev", v2)
	run(t, "ip", "-n", ns1, "link", "set", v1, "up")
	run(t, "ip", "-n", ns2, "link", "set", v2, "up")
	requireForwardingOff(t, ns1)
	requireForwardingOff(t, ns2)

	var f *Forwarder
	var a, p, far, q *net.UDPConn
	var aAddr, bAddr, pAddr, fAddr, qAddr netip.AddrPort
	var raw *rawSender
	inNetns(t, ns1, func() {
		a, aAddr = udpSock(t, "127.77.0.1")
		_, bAddr = udpSock(t, "127.77.0.1")
		// Default interfaces: everything up with IPv4 in this namespace.
		f = newForwarder(t, Config{})
	})
	inNetns(t, ns2, func() {
		p, pAddr = udpSock(t, "127.77.0.2")
		q, qAddr = udpSock(t, "127.77.0.2")
		far, fAddr = udpSock(t, "127.77.0.3")
		raw = newRawSender(t)
	})
	if got := f.Interfaces(); !slices.Equal(got, []string{"lo", v1}) {
		t.Fatalf("default interfaces in %s: want [lo %s], got %v", ns1, v1, got)
	}
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: pAddr, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(Rule{InPort: bAddr.Port(), InRemote: fAddr, OutPort: aAddr.Port(), OutRemote: pAddr}); err != nil {
		t.Fatal(err)
	}

	// P -> A arrives at F from B; sockets send CHECKSUM_PARTIAL, the raw
	// ones full checksums that F's stack verifies.
	var sent Counters
	for i, n := range []int{0, 5, 160, 333} {
		payload := []byte(strings.Repeat(string(rune('k'+i)), n))
		send(t, p, aAddr, payload)
		expect(t, far, bAddr, payload)
		raw.send(t, udpPacket(pAddr, aAddr, payload, i%2 == 0))
		expect(t, far, bAddr, payload)
		sent.Packets += 2
		sent.Bytes += 2 * uint64(n)
	}
	wantCounters(t, f, aAddr.Port(), pAddr, sent)
	marker(t, a, aAddr, q, qAddr)

	// F -> B arrives at P from A.
	send(t, far, bAddr, []byte("back"))
	expect(t, p, aAddr, []byte("back"))
	wantCounters(t, f, bAddr.Port(), fAddr, Counters{Packets: 1, Bytes: 4})

	// The new destination is local to ns1 (B's own address): no interface
	// to send it out of, so the packet goes to A untouched for the
	// userspace relay, uncounted.
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: fAddr, OutPort: aAddr.Port(), OutRemote: bAddr}); err != nil {
		t.Fatal(err)
	}
	send(t, far, aAddr, []byte("local route"))
	expect(t, a, fAddr, []byte("local route"))
	wantCounters(t, f, aAddr.Port(), fAddr, Counters{})

	// No route at all to the new destination: the same.
	unroutable := netip.MustParseAddrPort("127.88.0.9:4000")
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: qAddr, OutPort: bAddr.Port(), OutRemote: unroutable}); err != nil {
		t.Fatal(err)
	}
	send(t, q, aAddr, []byte("no route"))
	expect(t, a, qAddr, []byte("no route"))
	wantCounters(t, f, aAddr.Port(), qAddr, Counters{})

	got, err := f.Remove(aAddr.Port(), pAddr)
	if err != nil || got != sent {
		t.Fatalf("remove: want %+v, got %+v, %v", sent, got, err)
	}
	send(t, p, aAddr, []byte("after remove"))
	expect(t, a, pAddr, []byte("after remove"))
	requireForwardingOff(t, ns1)
	requireForwardingOff(t, ns2)
}

// TestDefaultInterfacesFreshNetns: in a namespace where only lo is up, the
// default attaches to lo alone, and local mode works there.
func TestDefaultInterfacesFreshNetns(t *testing.T) {
	ns := newNetns(t, "kfwd0")
	var f *Forwarder
	var p, a, b, far *net.UDPConn
	var pAddr, aAddr, bAddr, fAddr netip.AddrPort
	inNetns(t, ns, func() {
		f = newForwarder(t, Config{})
		p, pAddr = udpSock(t, "127.0.0.1")
		a, aAddr = udpSock(t, "127.0.0.1")
		b, bAddr = udpSock(t, "127.0.0.1")
		far, fAddr = udpSock(t, "127.0.0.1")
	})
	if got := f.Interfaces(); !slices.Equal(got, []string{"lo"}) {
		t.Fatalf("default interfaces: want [lo], got %v", got)
	}
	if err := f.Add(Rule{InPort: aAddr.Port(), InRemote: pAddr, OutPort: bAddr.Port(), OutRemote: fAddr}); err != nil {
		t.Fatal(err)
	}
	send(t, p, aAddr, []byte("x"))
	expect(t, far, bAddr, []byte("x"))
	marker(t, a, aAddr, b, bAddr)
}
