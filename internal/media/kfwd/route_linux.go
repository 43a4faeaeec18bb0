//go:build linux

package kfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// routeAnswerTimeout bounds the wait for the kernel's answer to one route
// request, so a lost answer fails Add instead of hanging it.
const routeAnswerTimeout = 5 * time.Second

// router asks the kernel, over a NETLINK_ROUTE socket, how this host would
// send to an address: the output interface and the preferred source. The
// socket is opened in New and keeps the network namespace it was opened in,
// so lookups answer for the Forwarder's namespace whatever thread Add runs
// on.
type router struct {
	mu  sync.Mutex // one request in flight: answers are matched by seq
	fd  int
	seq uint32
	buf []byte
}

// route is where packets to one destination leave the host. ifindex 0 means
// the kernel cannot send them out of an interface (no route, unreachable,
// local, broadcast, no preferred source): the program leaves them to
// userspace.
type route struct {
	ifindex uint32
	src     netip.Addr
}

func newRouter() (*router, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("kfwd: open route netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kfwd: bind route netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(routeAnswerTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kfwd: route netlink socket: receive timeout: %w", err)
	}
	return &router{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (r *router) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// noRouteErrnos are the kernel's answers for a destination it cannot send
// to: no route (ENETUNREACH), unreachable (EHOSTUNREACH), prohibit (EACCES),
// blackhole (EINVAL), throw (EAGAIN). They are not errors of the lookup.
var noRouteErrnos = []unix.Errno{unix.ENETUNREACH, unix.EHOSTUNREACH, unix.EACCES, unix.EINVAL, unix.EAGAIN}

// lookup resolves the route a UDP packet from local port sport to dst would
// take, as for a socket that is not bound to an address (RTM_GETROUTE with
// destination, protocol and ports, so policy rules on them apply).
func (r *router) lookup(dst netip.AddrPort, sport uint16) (route, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return route{}, errors.New("route netlink socket closed")
	}
	r.seq++
	seq := r.seq

	// nlmsghdr, rtmsg, then RTA_DST, RTA_IP_PROTO, RTA_SPORT, RTA_DPORT
	// (each attribute padded to 8 bytes).
	const reqLen = unix.SizeofNlMsghdr + unix.SizeofRtMsg + 4*8
	req := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], reqLen)
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	rtm := req[unix.SizeofNlMsghdr:]
	rtm[0] = unix.AF_INET
	rtm[1] = 32 // rtm_dst_len: a host lookup
	attrs := rtm[unix.SizeofRtMsg:]
	putAttr := func(b []byte, typ uint16, val []byte) {
		ne.PutUint16(b[0:], uint16(unix.SizeofRtAttr+len(val)))
		ne.PutUint16(b[2:], typ)
		copy(b[unix.SizeofRtAttr:], val)
	}
	ip := dst.Addr().As4()
	putAttr(attrs[0:], unix.RTA_DST, ip[:])
	putAttr(attrs[8:], unix.RTA_IP_PROTO, []byte{unix.IPPROTO_UDP})
	putAttr(attrs[16:], unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, sport))
	putAttr(attrs[24:], unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, dst.Port()))

	if err := unix.Sendto(r.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, fmt.Errorf("send RTM_GETROUTE: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// EAGAIN here is the receive timeout. A late answer to this
			// request is skipped by the next one (old seq).
			return route{}, fmt.Errorf("receive RTM_GETROUTE answer: %w", err)
		}
		rt, done, err := parseRouteAnswer(r.buf[:n], seq)
		if done {
			return rt, err
		}
	}
}

// parseRouteAnswer looks for the answer to request seq in one netlink
// datagram; done is false when the datagram holds no such answer. The
// standard library's netlink parsers split the messages and attributes.
func parseRouteAnswer(b []byte, seq uint32) (rt route, done bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return route{}, true, fmt.Errorf("RTM_GETROUTE answer: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Seq != seq {
			continue
		}
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return route{}, true, errors.New("RTM_GETROUTE answer: short error message")
			}
			errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			if slices.Contains(noRouteErrnos, errno) {
				return route{}, true, nil
			}
			return route{}, true, fmt.Errorf("RTM_GETROUTE: %w", errno)
		case unix.RTM_NEWROUTE:
			// rtm_type: only a unicast route leaves through an interface
			// with a neighbour to resolve.
			if len(m.Data) < unix.SizeofRtMsg || m.Data[7] != unix.RTN_UNICAST {
				return route{}, true, nil
			}
			attrs, err := syscall.ParseNetlinkRouteAttr(m)
			if err != nil {
				return route{}, true, fmt.Errorf("RTM_GETROUTE answer: %w", err)
			}
			var oif uint32
			var src netip.Addr
			for _, a := range attrs {
				switch {
				case a.Attr.Type == unix.RTA_OIF && len(a.Value) == 4:
					oif = binary.NativeEndian.Uint32(a.Value)
				case a.Attr.Type == unix.RTA_PREFSRC && len(a.Value) == 4:
					src = netip.AddrFrom4([4]byte(a.Value))
				}
			}
			if oif == 0 || !src.IsValid() {
				return route{}, true, nil
			}
			return route{ifindex: oif, src: src}, true, nil
		}
	}
	return route{}, false, nil
}
