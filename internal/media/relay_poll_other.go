//go:build !linux

package media

import "context"

// relayPolled needs epoll; elsewhere every relay runs pump.
func relayPolled(context.Context, *Session, *Session, *StereoRecorder) (RelayStats, bool) {
	return RelayStats{}, false
}

// relayShards is empty where there is no epoll.
type relayShards struct{}
