package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Browser page sessions.
//
//	redial:sessions:secret   STRING hex of 32 random bytes, no expiry: the
//	                         key every node signs and checks the browser
//	                         pages' session cookies and CSRF tokens with,
//	                         so a session opened on one node works on every
//	                         node and survives restarts. Created by the
//	                         first node that needs it (SET NX). Deleting it
//	                         ends every page session: nodes re-read it
//	                         every few seconds and a new one is made.

// minSessionSecret is the shortest secret accepted: an operator may set
// their own, but a short one would make the cookie signature guessable.
const minSessionSecret = 16

// SessionSecretKey is the key of the cluster's page session secret.
func (s *Store) SessionSecretKey() string { return "redial:sessions:secret" }

// SessionSecret returns the cluster's page session secret, creating it the
// first time: a node that finds none proposes a random one with SET NX and
// then reads back whichever won, so concurrent first starts agree on one.
// The value is returned as stored (not hex-decoded), so a secret an
// operator wrote is used as is.
func (s *Store) SessionSecret(ctx context.Context) ([]byte, error) {
	key := s.SessionSecretKey()
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("store: session secret: random: %w", err)
		}
		if err := s.rdb.SetNX(ctx, key, hex.EncodeToString(b), 0).Err(); err != nil {
			return nil, fmt.Errorf("store: SET %s NX: %w", key, err)
		}
		// Read back rather than trust our proposal: another node may have
		// won the SET NX.
		v, err = s.rdb.Get(ctx, key).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: GET %s: deleted while read", key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: GET %s: %w", key, err)
	}
	if len(v) < minSessionSecret {
		return nil, fmt.Errorf("store: GET %s: secret of %d bytes: want at least %d (delete the key to have a random one made)",
			key, len(v), minSessionSecret)
	}
	return []byte(v), nil
}
