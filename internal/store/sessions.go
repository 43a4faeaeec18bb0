package store

import "context"

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
	return s.clusterSecret(ctx, s.SessionSecretKey(), minSessionSecret)
}
