package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Call records keep, by call_ref, what the API needs after a call has left
// the memory of the node that ran it: where its recording is, who took
// it, and the disposition an agent or integrator gave it (seed 003: the
// call_ref "is used to disposition the call and download recordings").
//
//	redial:callrec:<call_ref>  HASH  CallRecord fields (below); expires CallRecordTTL
//	                                 after the call, again after each disposition

// CallRecordTTL is how long a call record stays in Redis: the time an
// integrator has to disposition a call or find its recording through the
// API. Recordings themselves stay on disk until the operator removes them.
const CallRecordTTL = 7 * 24 * time.Hour

// CallRecordKey is the key of a call's record.
func (s *Store) CallRecordKey(callRef string) string { return "redial:callrec:" + callRef }

// CallRecord is what redial keeps about one finished call. The hash
// fields are the JSON names.
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

// dispositionField is the hash field holding the CallDisposition JSON;
// the other fields are plain strings.
const dispositionField = "disposition"

// SaveCallRecord writes a call's record (HSET + EXPIRE in one pipeline).
// A disposition already given is kept.
func (s *Store) SaveCallRecord(ctx context.Context, callRef string, r CallRecord) error {
	key := s.CallRecordKey(callRef)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "node", r.Node, "campaign_ref", r.CampaignRef, "contact_ref", r.ContactRef,
			"number", r.Number, "ext", r.Ext, "recording", r.Recording, "number_queue", r.NumberQueue,
			"item", r.Item, "end", r.End.UTC().Format(time.RFC3339Nano))
		p.Expire(ctx, key, CallRecordTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save call record %s: %w", key, err)
	}
	return nil
}

// GetCallRecord reads a call's record; ok is false when there is none.
func (s *Store) GetCallRecord(ctx context.Context, callRef string) (r CallRecord, ok bool, err error) {
	key := s.CallRecordKey(callRef)
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return r, false, fmt.Errorf("store: read call record %s: %w", key, err)
	}
	if len(m) == 0 || m["node"] == "" {
		return r, false, nil
	}
	r = CallRecord{Node: m["node"], CampaignRef: m["campaign_ref"], ContactRef: m["contact_ref"], Number: m["number"],
		Ext: m["ext"], Recording: m["recording"], NumberQueue: m["number_queue"], Item: m["item"]}
	if t, perr := time.Parse(time.RFC3339Nano, m["end"]); perr == nil {
		r.End = t
	}
	if d := m[dispositionField]; d != "" {
		var cd CallDisposition
		if err := json.Unmarshal([]byte(d), &cd); err != nil {
			return r, true, fmt.Errorf("store: call record %s: disposition: %w", key, err)
		}
		r.Disposition = &cd
	}
	return r, true, nil
}

// ErrNoCallRecord is returned for a call_ref without a record.
var ErrNoCallRecord = errors.New("no such call record")

// KEYS[1] call record hash.
// ARGV[1] disposition JSON, ARGV[2] TTL in ms.
// Sets the disposition of an existing record and renews its TTL.
// Returns 1, or 0 when the record does not exist.
var setDispositionScript = redis.NewScript(`
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
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("store: disposition of %s: encode: %w", callRef, err)
	}
	n, err := setDispositionScript.Run(ctx, s.rdb, []string{key}, b, CallRecordTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("store: set disposition on %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("store: call %q: %w", callRef, ErrNoCallRecord)
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
