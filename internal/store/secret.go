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
// first time (clusterSecret).
func (s *Store) DigestSecret(ctx context.Context) ([]byte, error) {
	return s.clusterSecret(ctx, s.DigestSecretKey(), 1)
}

// clusterSecret returns the secret kept under key, creating it the first
// time: a node that finds none proposes 32 random bytes (hex) with SET NX
// and then reads back whichever won, so concurrent first starts agree on
// one. The value is the key material as stored (an operator may have put
// their own), so it is not hex-decoded; one shorter than min bytes is an
// error.
func (s *Store) clusterSecret(ctx context.Context, key string, min int) ([]byte, error) {
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("store: secret %s: random: %w", key, err)
		}
		if err := s.rdb.SetNX(ctx, key, hex.EncodeToString(b), 0).Err(); err != nil {
			return nil, fmt.Errorf("store: SET %s NX: %w", key, err)
		}
		// Read back rather than trust our proposal: another node may have
		// won the SET NX.
		v, err = s.rdb.Get(ctx, key).Result()
	}
	if errors.Is(err, redis.Nil) {
		// Deleted between the SET and the GET: the next call creates it.
		return nil, fmt.Errorf("store: GET %s: deleted while read", key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: GET %s: %w", key, err)
	}
	if len(v) < min {
		return nil, fmt.Errorf("store: GET %s: secret of %d bytes: want at least %d (delete the key to have a random one made)",
			key, len(v), min)
	}
	return []byte(v), nil
}
