package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Cluster secrets.
//
//	redial:secret:digest   STRING hex of 32 random bytes, no expiry: the key
//	                       every node signs and checks SIP digest nonces
//	                       with, so a challenge from one node can be
//	                       answered to another. Created by the first node
//	                       that needs it (SET NX); deleting it makes the
//	                       nodes that start afterwards use a new one.

// DigestSecretKey is the key of the cluster's digest nonce secret.
func (s *Store) DigestSecretKey() string { return "redial:secret:digest" }

// DigestSecret returns the cluster's digest nonce secret, creating it the
// first time: every node proposes a random one with SET NX and then uses
// whichever won, so concurrent first starts agree on one.
func (s *Store) DigestSecret(ctx context.Context) ([]byte, error) {
	key := s.DigestSecretKey()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("store: digest secret: random: %w", err)
	}
	proposed := hex.EncodeToString(b)
	set, err := s.rdb.SetNX(ctx, key, proposed, 0).Result()
	if err != nil {
		return nil, fmt.Errorf("store: SET %s NX: %w", key, err)
	}
	if set {
		return []byte(proposed), nil
	}
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		// Deleted between the SET and the GET: the next call creates it.
		return nil, fmt.Errorf("store: GET %s: deleted while read", key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: GET %s: %w", key, err)
	}
	if v == "" {
		return nil, fmt.Errorf("store: GET %s: empty secret", key)
	}
	// The value is the key material as stored (an operator may have put
	// their own), so it is not hex-decoded.
	return []byte(v), nil
}
