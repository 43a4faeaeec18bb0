package media

import (
	"net"
	"syscall"
)

// canPark is true where quiet can tell whether a parked socket heard
// anything.
const canPark = true

// quiet reports whether nothing is queued on conn: a peek that does not
// wait, one system call, and nothing is taken off the queue.
func quiet(conn *net.UDPConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	empty := false
	var b [1]byte
	// Control, not Read: the peek never waits, so it needs neither the
	// read lock nor the poller's arming that Read takes.
	err = raw.Control(func(fd uintptr) {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		empty = rerr == syscall.EAGAIN
	})
	return err == nil && empty
}

// closedTransport is what a closed session whose socket was parked
// reads and writes through.
func closedTransport() packetConn { return closedConn{} }
