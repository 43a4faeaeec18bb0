package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Call records keep, by call_ref, what the API needs after a call has left
// the memory of the node that ran it: where its recording is, who took
// it, and the disposition an agent or integrator gave it (seed 003: the
// call_ref "is used to disposition the call and download recordings").
//
//	redial:callrec:<call_ref>  STRING  CallRecord as JSON (below); expires
//	                                   CallRecordTTL after the call's last
//	                                   save, again after each disposition
//
// A record is a STRING so that saving it is one command (SET ... EX ... GET);
// Redis 7.0 has no way to write a HASH and its expiry in one. Records
// written before that are HASHes of the same fields (the JSON names as
// field names, the disposition as JSON in its field) and live out their
// TTL: reads and dispositions still understand them, and the next save
// of such a call replaces the HASH with a STRING.

// CallRecordTTL is how long a call record stays in Redis: the time an
// integrator has to disposition a call or find its recording through the
// API. Recordings themselves stay on disk until the operator removes them.
const CallRecordTTL = 7 * 24 * time.Hour

// CallRecordKey is the key of a call's record.
func (s *Store) CallRecordKey(callRef string) string { return "redial:callrec:" + callRef }

// CallRecord is what redial keeps about one finished call, stored as its
// JSON encoding (End in RFC 3339 with nanoseconds, UTC).
type CallRecord struct {
	// Node is the host that ran the call and holds its recording.
	Node        string `json:"node"`
	CampaignRef string `json:"campaign_ref"`
	ContactRef  string `json:"contact_ref"`
	// Number is the customer's number (the CDR's client_number).
	Number string `json:"number"`
	// Ext is the agent who took the call ("" when none).
	Ext string `json:"ext"`
	// Recording is the store path of the stereo recording ("" when none).
	Recording string `json:"recording"`
	// NumberQueue is the campaign's number queue ("" when the call did not
	// come from one); a disposition's callback goes back there.
	NumberQueue string `json:"number_queue"`
	// Item is the queue item a callback pushes (the number, with its
	// contact_ref when it had one).
	Item string `json:"item"`
	// End is when the call ended.
	End time.Time `json:"end"`
	// Disposition is the latest outcome given through the API; nil when
	// none was given yet.
	Disposition *CallDisposition `json:"disposition,omitempty"`
}

// CallDisposition is an outcome given to a call through the API.
type CallDisposition struct {
	Code       string     `json:"code"`
	Note       string     `json:"note,omitempty"`
	CallbackAt *time.Time `json:"callback_at,omitempty"`
	// At is when the disposition was given.
	At time.Time `json:"at"`
}

// ErrNoCallRecord is returned for a call_ref without a record.
var ErrNoCallRecord = errors.New("no such call record")

// callRecordTxTries bounds the optimistic transactions on one record; they
// only conflict with another write to the same call_ref at the same
// moment, so a few tries are plenty.
const callRecordTxTries = 5

// encodeCallRecord is the STRING value of r.
func encodeCallRecord(r CallRecord) ([]byte, error) {
	r.End = r.End.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}

// decodeCallRecord reads a STRING call record.
func decodeCallRecord(b []byte) (CallRecord, error) {
	var r CallRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return CallRecord{}, fmt.Errorf("decode: %w", err)
	}
	return r, nil
}

// isWrongType tells a command refused because the key holds another type:
// here, a call record still in its old HASH form.
func isWrongType(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE")
}

// errCallRecordType ends a transaction that found the record in the other
// form (HASH or STRING) than it expected; the caller starts over.
var errCallRecordType = errors.New("call record changed form")

// setCallRecordTx writes r as key's STRING record with a fresh TTL, in the
// MULTI/EXEC of tx.
func setCallRecordTx(ctx context.Context, tx *redis.Tx, key string, r CallRecord) error {
	b, err := encodeCallRecord(r)
	if err != nil {
		return err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, b, CallRecordTTL)
		return nil
	})
	return err
}

// SaveCallRecord writes a call's record with its TTL in one command.
// A disposition already given is kept.
//
// A call saves its record with every attempt's CDR that the API may need
// (a click-to-dial call carries its agent on each attempt), and
// integrators may reuse a call_ref, so a save can come after a
// disposition. Neither a plain SET (it would drop the disposition) nor
// SET NX (it would drop the later attempt's recording and agent) will do,
// so the save is SET ... GET: still one command, and the old value it
// returns tells whether a disposition has to be put back, which costs a
// transaction more only in that rare case.
func (s *Store) SaveCallRecord(ctx context.Context, callRef string, r CallRecord) error {
	key := s.CallRecordKey(callRef)
	b, err := encodeCallRecord(r)
	if err != nil {
		return fmt.Errorf("store: save call record %s: %w", key, err)
	}
	for range callRecordTxTries {
		old, err := s.rdb.SetArgs(ctx, key, b, redis.SetArgs{TTL: CallRecordTTL, Get: true}).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return nil
		case isWrongType(err):
			// SET ... GET leaves a HASH alone: replace it, keeping its
			// disposition.
			err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
				return replaceLegacyCallRecordTx(ctx, tx, key, r)
			}, key)
			if errors.Is(err, redis.TxFailedErr) || errors.Is(err, errCallRecordType) {
				continue
			}
			if err != nil {
				return fmt.Errorf("store: save call record %s over its HASH form: %w", key, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("store: save call record %s: %w", key, err)
		}
		if r.Disposition != nil {
			return nil
		}
		prev, err := decodeCallRecord(old)
		if err != nil || prev.Disposition == nil {
			// A record that cannot be read had no disposition the API
			// could show; the new one replaces it.
			return nil
		}
		if err := s.keepCallDisposition(ctx, key, *prev.Disposition); err != nil {
			return fmt.Errorf("store: save call record %s: keep its disposition: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("store: save call record %s: %w", key, redis.TxFailedErr)
}

// replaceLegacyCallRecordTx writes r over the HASH record at key, with
// the disposition the HASH had unless r has one.
func replaceLegacyCallRecordTx(ctx context.Context, tx *redis.Tx, key string, r CallRecord) error {
	if r.Disposition == nil {
		m, err := tx.HGetAll(ctx, key).Result()
		if isWrongType(err) {
			return errCallRecordType
		}
		if err != nil {
			return err
		}
		prev, ok, err := legacyCallRecord(m)
		if err != nil {
			return err
		}
		if ok {
			r.Disposition = prev.Disposition
		}
	}
	return setCallRecordTx(ctx, tx, key, r)
}

// keepCallDisposition puts d back into the record at key after a save
// replaced a record that had it, unless a disposition was given since.
func (s *Store) keepCallDisposition(ctx context.Context, key string, d CallDisposition) error {
	for range callRecordTxTries {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) || isWrongType(err) {
				return nil // gone, or replaced by another save meanwhile
			}
			if err != nil {
				return err
			}
			r, err := decodeCallRecord(b)
			if err != nil || r.Disposition != nil {
				return err
			}
			r.Disposition = &d
			return setCallRecordTx(ctx, tx, key, r)
		}, key)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return redis.TxFailedErr
}

// GetCallRecord reads a call's record; ok is false when there is none.
func (s *Store) GetCallRecord(ctx context.Context, callRef string) (r CallRecord, ok bool, err error) {
	key := s.CallRecordKey(callRef)
	// Two tries: a HASH record may turn into a STRING between GET and
	// HGETALL when its call is saved again.
	for range 2 {
		b, err := s.rdb.Get(ctx, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return r, false, nil
		case isWrongType(err):
			m, err := s.rdb.HGetAll(ctx, key).Result()
			if isWrongType(err) {
				continue
			}
			if err != nil {
				return r, false, fmt.Errorf("store: read call record %s: %w", key, err)
			}
			if r, ok, err = legacyCallRecord(m); err != nil {
				return r, ok, fmt.Errorf("store: call record %s: %w", key, err)
			}
			return r, ok, nil
		case err != nil:
			return r, false, fmt.Errorf("store: read call record %s: %w", key, err)
		}
		if r, err = decodeCallRecord(b); err != nil {
			return r, false, fmt.Errorf("store: call record %s: %w", key, err)
		}
		return r, true, nil
	}
	return r, false, fmt.Errorf("store: read call record %s: %w", key, errCallRecordType)
}

// legacyCallRecord decodes a call record in its old HASH form (written
// before records became JSON STRINGs): the JSON names as fields, End in
// RFC 3339, the disposition as JSON in its field.
func legacyCallRecord(m map[string]string) (r CallRecord, ok bool, err error) {
	if len(m) == 0 || m["node"] == "" {
		return r, false, nil
	}
	r = CallRecord{Node: m["node"], CampaignRef: m["campaign_ref"], ContactRef: m["contact_ref"], Number: m["number"],
		Ext: m["ext"], Recording: m["recording"], NumberQueue: m["number_queue"], Item: m["item"]}
	if t, perr := time.Parse(time.RFC3339Nano, m["end"]); perr == nil {
		r.End = t
	}
	if d := m["disposition"]; d != "" {
		var cd CallDisposition
		if err := json.Unmarshal([]byte(d), &cd); err != nil {
			return r, true, fmt.Errorf("disposition: %w", err)
		}
		r.Disposition = &cd
	}
	return r, true, nil
}

// KEYS[1] call record in its old HASH form.
// ARGV[1] disposition JSON, ARGV[2] TTL in ms.
// Sets the disposition of an existing record and renews its TTL.
// Returns 1, or 0 when the record does not exist; fails with WRONGTYPE
// when the record became a STRING (its call was saved again).
var setLegacyDispositionScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'node') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disposition', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// SetCallDisposition stores d as the call's disposition (replacing an
// earlier one) and renews the record's TTL. It returns ErrNoCallRecord
// when the call has no record.
func (s *Store) SetCallDisposition(ctx context.Context, callRef string, d CallDisposition) error {
	key := s.CallRecordKey(callRef)
	for range callRecordTxTries {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, key).Bytes()
			switch {
			case errors.Is(err, redis.Nil):
				return ErrNoCallRecord
			case isWrongType(err):
				return errCallRecordType
			case err != nil:
				return err
			}
			r, err := decodeCallRecord(b)
			if err != nil {
				return err
			}
			r.Disposition = &d
			return setCallRecordTx(ctx, tx, key, r)
		}, key)
		if errors.Is(err, errCallRecordType) {
			err = s.setLegacyCallDisposition(ctx, key, d)
		}
		switch {
		case errors.Is(err, redis.TxFailedErr) || errors.Is(err, errCallRecordType):
			continue
		case errors.Is(err, ErrNoCallRecord):
			return fmt.Errorf("store: call %q: %w", callRef, ErrNoCallRecord)
		case err != nil:
			return fmt.Errorf("store: set disposition on %s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("store: set disposition on %s: %w", key, redis.TxFailedErr)
}

// setLegacyCallDisposition sets d on a record in its old HASH form. It
// returns errCallRecordType when the record became a STRING meanwhile.
func (s *Store) setLegacyCallDisposition(ctx context.Context, key string, d CallDisposition) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("disposition: encode: %w", err)
	}
	n, err := setLegacyDispositionScript.Run(ctx, s.rdb, []string{key}, b, CallRecordTTL.Milliseconds()).Int()
	switch {
	case isWrongType(err):
		return errCallRecordType
	case err != nil:
		return err
	case n == 0:
		return ErrNoCallRecord
	}
	return nil
}

// ScheduleCallback puts item in queue's retry set (<queue>:retry, see
// dialer.go), due at at: the dialer running the queue's task moves it back
// into the queue then and dials it once.
func (s *Store) ScheduleCallback(ctx context.Context, queue, item string, at time.Time) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	key := queue + ":retry"
	member := hex.EncodeToString(id[:]) + "|" + item
	if err := s.rdb.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: member}).Err(); err != nil {
		return fmt.Errorf("store: ZADD %s: %w", key, err)
	}
	return nil
}

// PushDisposition publishes one disposition notification: LPUSH
// {"type":"disposition","payload":<payload>} onto CampaignsListKey.
func (s *Store) PushDisposition(ctx context.Context, payload []byte) error {
	key := s.CampaignsListKey()
	if err := s.rdb.LPush(ctx, key, notifyEnvelope("disposition", payload)).Err(); err != nil {
		return fmt.Errorf("store: LPUSH %s: %w", key, err)
	}
	return nil
}
