package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// StreamCDR is one entry of the CDR stream (CDRStreamKey).
type StreamCDR struct {
	// ID is the stream entry ID ("<ms>-<seq>").
	ID string
	// Time is when the entry was added, from the milliseconds of its ID.
	Time time.Time
	// Payload is the CDR JSON (the CDRStreamField value); nil when the
	// entry was trimmed from the stream while pending in a group.
	Payload []byte
}

// cdrPageSize is how many entries CDRsSince reads per XRANGE.
const cdrPageSize = 1000

// EnsureCDRGroup creates the consumer group on the CDR stream, starting at
// new entries ($) and creating the stream if it does not exist. A group
// that already exists is left as it is, with its position.
func (s *Store) EnsureCDRGroup(ctx context.Context, group string) error {
	key := s.CDRStreamKey()
	err := s.rdb.XGroupCreateMkStream(ctx, key, group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("store: XGROUP CREATE %s %s: %w", key, group, err)
	}
	return nil
}

// ReadCDRGroup reads up to count CDRs never delivered to group, as
// consumer, waiting up to block for the first (block 0 waits forever, which
// the client cannot interrupt: callers that must stop on ctx pass a short
// block and loop). It returns no entries and no error when block passes.
// The entries stay pending in the group until AckCDR.
func (s *Store) ReadCDRGroup(ctx context.Context, group, consumer string, count int64, block time.Duration) ([]StreamCDR, error) {
	return s.readCDRGroup(ctx, group, consumer, ">", count, block)
}

// PendingCDRs returns up to count CDRs delivered to consumer in group but
// not yet acknowledged, oldest first (what a reader that stopped between
// reading and AckCDR left behind). It does not block.
func (s *Store) PendingCDRs(ctx context.Context, group, consumer string, count int64) ([]StreamCDR, error) {
	return s.readCDRGroup(ctx, group, consumer, "0", count, -1)
}

func (s *Store) readCDRGroup(ctx context.Context, group, consumer, from string, count int64, block time.Duration) ([]StreamCDR, error) {
	key := s.CDRStreamKey()
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{key, from}, Count: count, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: XREADGROUP GROUP %s %s STREAMS %s %s: %w", group, consumer, key, from, err)
	}
	var out []StreamCDR
	for _, st := range res {
		for _, m := range st.Messages {
			out = append(out, streamCDR(m))
		}
	}
	return out, nil
}

// AckCDR acknowledges entries read through group, removing them from its
// pending list. No IDs is a no-op.
func (s *Store) AckCDR(ctx context.Context, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	key := s.CDRStreamKey()
	if err := s.rdb.XAck(ctx, key, group, ids...).Err(); err != nil {
		return fmt.Errorf("store: XACK %s %s (%d ids): %w", key, group, len(ids), err)
	}
	return nil
}

// CDRsSince calls fn for every CDR added at or after since, oldest first,
// reading the stream in pages of 1000 with XRANGE so a long window never
// loads at once. It stops at the first error fn returns and returns it.
// Entries added while it runs may or may not be seen.
func (s *Store) CDRsSince(ctx context.Context, since time.Time, fn func(StreamCDR) error) error {
	key := s.CDRStreamKey()
	start := strconv.FormatInt(max(since.UnixMilli(), 0), 10) + "-0"
	for {
		page, err := s.rdb.XRangeN(ctx, key, start, "+", cdrPageSize).Result()
		if err != nil {
			return fmt.Errorf("store: XRANGE %s %s + COUNT %d: %w", key, start, cdrPageSize, err)
		}
		for _, m := range page {
			if err := fn(streamCDR(m)); err != nil {
				return err
			}
		}
		if len(page) < cdrPageSize {
			return nil
		}
		// Exclusive start (Redis 6.2+): the next page begins after the last.
		start = "(" + page[len(page)-1].ID
	}
}

func streamCDR(m redis.XMessage) StreamCDR {
	c := StreamCDR{ID: m.ID}
	if ms, _, ok := strings.Cut(m.ID, "-"); ok {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			c.Time = time.UnixMilli(n)
		}
	}
	if v, ok := m.Values[CDRStreamField].(string); ok {
		c.Payload = []byte(v)
	}
	return c
}

// LatestCDRs calls fn with the stream's entries newest first, reading in
// pages of 1000 with XREVRANGE, until fn returns false, maxScan entries
// were read, or the stream's start. It returns fn's error, if any.
func (s *Store) LatestCDRs(ctx context.Context, maxScan int, fn func(StreamCDR) (bool, error)) error {
	key := s.CDRStreamKey()
	end := "+"
	for read := 0; read < maxScan; {
		n := min(cdrPageSize, maxScan-read)
		page, err := s.rdb.XRevRangeN(ctx, key, end, "-", int64(n)).Result()
		if err != nil {
			return fmt.Errorf("store: XREVRANGE %s %s - COUNT %d: %w", key, end, n, err)
		}
		for _, m := range page {
			more, err := fn(streamCDR(m))
			if err != nil || !more {
				return err
			}
		}
		read += len(page)
		if len(page) < n {
			return nil
		}
		end = "(" + page[len(page)-1].ID
	}
	return nil
}
