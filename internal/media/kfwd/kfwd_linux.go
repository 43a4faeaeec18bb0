//go:build linux

package kfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Forwarder owns one loaded program, its rule map, the tcx links that
// attach the program to the ingress of each interface, and the netlink
// socket that resolves the route of each rule.
type Forwarder struct {
	mu     sync.RWMutex
	closed bool
	rules  *ebpf.Map
	prog   *ebpf.Program
	// routes was opened in New, so it resolves routes in the network
	// namespace the Forwarder attached in, whichever thread calls Add.
	routes *router
	// links are tcx links held through their file descriptors only, never
	// pinned in bpffs: when the process dies (crash included) the kernel
	// closes the descriptors and detaches the program, so a dead redial
	// cannot leave rules forwarding behind its back.
	links  []link.Link
	ifaces []string
}

// New loads the program and map and attaches to tcx ingress of the
// interfaces. It fails, wrapping the cause and naming the interface, when
// eBPF or tcx is unavailable; then nothing stays attached.
func New(cfg Config) (*Forwarder, error) {
	maxRules := cfg.MaxRules
	if maxRules == 0 {
		maxRules = defaultMaxRules
	}
	if maxRules < 0 {
		return nil, fmt.Errorf("kfwd: config: max rules: want >= 0, got %d", maxRules)
	}
	names := cfg.Interfaces
	if len(names) == 0 {
		var err error
		if names, err = upIPv4Interfaces(); err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, errors.New("kfwd: no interface is up with an IPv4 address")
		}
	}
	// Resolve every name before loading anything so a typo costs nothing.
	idx := make([]int, len(names))
	for i, name := range names {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("kfwd: interface %q: %w", name, err)
		}
		idx[i] = ifc.Index
	}

	routes, err := newRouter()
	if err != nil {
		return nil, err
	}
	rules, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "kfwd_rules",
		Type:       ebpf.Hash,
		KeySize:    keySize,
		ValueSize:  valueSize,
		MaxEntries: uint32(maxRules),
		// Allocate entries on insert: an idle forwarder costs almost nothing
		// however large MaxRules is.
		Flags: unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		routes.close()
		return nil, fmt.Errorf("kfwd: create rule map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "kfwd_ingress",
		Type:         ebpf.SchedCLS,
		AttachType:   ebpf.AttachTCXIngress,
		Instructions: program(rules.FD()),
		// bpf_redirect_neigh is a GPL-only helper.
		License: "GPL",
	})
	if err != nil {
		rules.Close()
		routes.close()
		return nil, fmt.Errorf("kfwd: load program: %w", err)
	}
	f := &Forwarder{rules: rules, prog: prog, routes: routes}
	for i, name := range names {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: idx[i],
			Program:   prog,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("kfwd: attach tcx ingress on %q: %w", name, err)
		}
		f.links = append(f.links, l)
		f.ifaces = append(f.ifaces, name)
	}
	return f, nil
}

// upIPv4Interfaces lists the interfaces of the calling thread's network
// namespace that are up and carry an IPv4 address.
func upIPv4Interfaces() ([]string, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("kfwd: list interfaces: %w", err)
	}
	var names []string
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("kfwd: addresses of interface %q: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				names = append(names, ifc.Name)
				break
			}
		}
	}
	return names, nil
}

// Add inserts or replaces the rule for (InPort, InRemote). Replacing a rule
// starts its counters from zero.
//
// Add also resolves, once, the route this host uses to send from OutPort to
// OutRemote: its output interface and preferred source address, which
// routed-mode packets of the rule then get. A destination the kernel cannot
// send out of an interface (no route, unreachable, local, no preferred
// source) is not an error: the rule's routed-mode packets then go to
// userspace untouched. Add a rule again to follow a route change.
func (f *Forwarder) Add(r Rule) error {
	in, err := addr4("in remote", r.InRemote)
	if err != nil {
		return err
	}
	out, err := addr4("out remote", r.OutRemote)
	if err != nil {
		return err
	}
	if r.InPort == 0 || r.OutPort == 0 || in.Port() == 0 || out.Port() == 0 {
		return fmt.Errorf("kfwd: add rule %d<-%s => %d->%s: port 0", r.InPort, r.InRemote, r.OutPort, r.OutRemote)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return errors.New("kfwd: add rule: forwarder closed")
	}
	rt, err := f.routes.lookup(out, r.OutPort)
	if err != nil {
		return fmt.Errorf("kfwd: add rule %d<-%s => %d->%s: route: %w", r.InPort, in, r.OutPort, out, err)
	}
	k := makeKey(r.InPort, in)
	v := makeValue(r.OutPort, out, rt)
	if err := f.rules.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("kfwd: add rule %d<-%s => %d->%s: %w", r.InPort, in, r.OutPort, out, err)
	}
	return nil
}

// Remove atomically takes the rule out and returns its counters. A missing
// rule returns zero Counters and no error. Packets the program is handling
// at that very moment may still be forwarded but not counted.
func (f *Forwarder) Remove(inPort uint16, inRemote netip.AddrPort) (Counters, error) {
	in, err := addr4("in remote", inRemote)
	if err != nil {
		return Counters{}, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Counters{}, errors.New("kfwd: remove rule: forwarder closed")
	}
	k := makeKey(inPort, in)
	var v ruleValue
	if err := f.rules.LookupAndDelete(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Counters{}, nil
		}
		return Counters{}, fmt.Errorf("kfwd: remove rule %d<-%s: %w", inPort, in, err)
	}
	return v.counters(), nil
}

// Counters returns what the rule for (inPort, inRemote) forwarded so far and
// whether such a rule exists.
func (f *Forwarder) Counters(inPort uint16, inRemote netip.AddrPort) (Counters, bool) {
	in, err := addr4("in remote", inRemote)
	if err != nil {
		return Counters{}, false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Counters{}, false
	}
	k := makeKey(inPort, in)
	var v ruleValue
	if err := f.rules.Lookup(&k, &v); err != nil {
		return Counters{}, false
	}
	return v.counters(), true
}

// Interfaces returns the names of the interfaces the program is attached to.
func (f *Forwarder) Interfaces() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.ifaces)
}

// Close detaches the program from every interface and frees the map and the
// program. It is idempotent.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	for i, l := range f.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kfwd: detach from %q: %w", f.ifaces[i], err))
		}
	}
	f.links, f.ifaces = nil, nil
	if err := f.prog.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kfwd: close program: %w", err))
	}
	if err := f.rules.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kfwd: close rule map: %w", err))
	}
	if err := f.routes.close(); err != nil {
		errs = append(errs, fmt.Errorf("kfwd: close route netlink socket: %w", err))
	}
	return errors.Join(errs...)
}

// addr4 returns ap with an IPv4-mapped IPv6 address unmapped, or an error
// when it is not IPv4.
func addr4(what string, ap netip.AddrPort) (netip.AddrPort, error) {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return netip.AddrPort{}, fmt.Errorf("kfwd: %s %s: want an IPv4 address", what, ap)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// Map layout shared with the program (offsets in prog_linux.go). Addresses
// and ports are in network byte order exactly as in the packet so the
// program copies them without conversion; the ifindex and the counters are
// in host order because the program passes the one to a helper and adds to
// the others.
const (
	keySize = 8 // inPort u16, remotePort u16, remoteIP u32
	// outPort u16, outRemotePort u16, outRemoteIP u32, ifindex u32,
	// srcIP u32, packets u64, bytes u64
	valueSize = 32
)

type ruleKey [keySize]byte

type ruleValue [valueSize]byte

func makeKey(inPort uint16, remote netip.AddrPort) ruleKey {
	var k ruleKey
	binary.BigEndian.PutUint16(k[0:], inPort)
	binary.BigEndian.PutUint16(k[2:], remote.Port())
	ip := remote.Addr().As4()
	copy(k[4:], ip[:])
	return k
}

func makeValue(outPort uint16, remote netip.AddrPort, rt route) ruleValue {
	var v ruleValue
	binary.BigEndian.PutUint16(v[0:], outPort)
	binary.BigEndian.PutUint16(v[2:], remote.Port())
	ip := remote.Addr().As4()
	copy(v[4:], ip[:])
	if rt.ifindex != 0 {
		binary.NativeEndian.PutUint32(v[valIfindex:], rt.ifindex)
		src := rt.src.As4()
		copy(v[valSrc:], src[:])
	}
	return v
}

func (v *ruleValue) counters() Counters {
	return Counters{
		Packets: binary.NativeEndian.Uint64(v[valPackets:]),
		Bytes:   binary.NativeEndian.Uint64(v[valBytes:]),
	}
}
