package store

import (
	"context"
	"fmt"
)

// PushCampaignCall publishes the call notification of an outbound call
// connected to an agent: LPUSH {"type":"call","payload":<payload>} onto
// CampaignsListKey, where the call's CDR follows it.
func (s *Store) PushCampaignCall(ctx context.Context, payload []byte) error {
	key := s.CampaignsListKey()
	if err := s.rdb.LPush(ctx, key, notifyEnvelope("call", payload)).Err(); err != nil {
		return fmt.Errorf("store: LPUSH %s: %w", key, err)
	}
	return nil
}
