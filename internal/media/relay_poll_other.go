//go:build !linux

package media

import "context"

// startPolled needs epoll; elsewhere every relay runs pump.
func startPolled(context.Context, *Session, *Session, *StereoRecorder) *RelayRun {
	return nil
}

// relayShards is empty where there is no epoll.
type relayShards struct{}
