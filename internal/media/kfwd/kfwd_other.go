//go:build !linux

package kfwd

import (
	"errors"
	"net/netip"
)

// errUnsupported is returned by New where eBPF tcx does not exist.
var errUnsupported = errors.New("kfwd: eBPF tcx forwarding needs Linux")

// Forwarder is unavailable on this platform; New always fails.
type Forwarder struct{}

// New fails: the kernel fast path exists only on Linux.
func New(cfg Config) (*Forwarder, error) { return nil, errUnsupported }

// Add fails: see New.
func (f *Forwarder) Add(r Rule) error { return errUnsupported }

// Remove fails: see New.
func (f *Forwarder) Remove(inPort uint16, inRemote netip.AddrPort) (Counters, error) {
	return Counters{}, errUnsupported
}

// Counters reports nothing: see New.
func (f *Forwarder) Counters(inPort uint16, inRemote netip.AddrPort) (Counters, bool) {
	return Counters{}, false
}

// Interfaces is empty: see New.
func (f *Forwarder) Interfaces() []string { return nil }

// Close does nothing.
func (f *Forwarder) Close() error { return nil }
