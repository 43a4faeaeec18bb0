//go:build !linux

package media

import "net"

// canPark is false: sockets are closed with their session (see quiet).
const canPark = false

// quiet is never asked without canPark.
func quiet(*net.UDPConn) bool { return false }

// closedTransport is never asked without canPark.
func closedTransport() packetConn { return nil }
