package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// IVR scripts and the voicemail documents the IVR writes.
//
//	ivr_script@<domain>   HASH  script id -> script JSON (issue 5)
//	vmbox@<account>       HASH  vmbox id -> vmbox document (seed 000), whose
//	                            messages[] the voicemail components edit
//
// Documents are edited by compare-and-set rather than by a Lua script that
// decodes and re-encodes them with cjson: Redis' cjson turns every empty
// array into an object ([] -> {}) and rounds numbers to 14 significant
// digits, so a cjson round trip would corrupt fields redial does not own,
// and DESIGN.md says unknown fields are kept. Go edits the JSON keeping
// every other value byte for byte; the script only writes the result if the
// document is still the one that was read.

// ErrDocNotFound means the document to edit does not exist.
var ErrDocNotFound = errors.New("document not found")

// ErrMessageNotFound means a vmbox has no message with the given media_id.
var ErrMessageNotFound = errors.New("voicemail message not found")

// docRetries bounds how often UpdateDoc re-reads a document that others
// keep changing; a vmbox is edited a few times a minute at most.
const docRetries = 20

// IVRScriptsKey is the hash of IVR scripts, ivr_script@<domain>.
func (s *Store) IVRScriptsKey() string { return "ivr_script@" + s.cfg.Domain }

// IVRScript returns one script's JSON; found is false when the field does
// not exist.
func (s *Store) IVRScript(ctx context.Context, id string) (raw string, found bool, err error) {
	return s.hgetFound(ctx, s.IVRScriptsKey(), id)
}

// IVRScripts returns every script of the domain by id.
func (s *Store) IVRScripts(ctx context.Context) (map[string]string, error) {
	return s.hgetAll(ctx, s.IVRScriptsKey())
}

// SetIVRScript writes one script (CLI, demo, tests).
func (s *Store) SetIVRScript(ctx context.Context, id, scriptJSON string) error {
	return s.SetDoc(ctx, s.IVRScriptsKey(), id, scriptJSON)
}

// KEYS[1] the document HASH.
// ARGV[1] field, ARGV[2] the value the caller read, ARGV[3] the new value.
// Returns 1 when the field still held ARGV[2] and now holds ARGV[3]; 0 when
// it changed (or vanished) since it was read, and nothing was written.
var casDocScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// UpdateDoc replaces one document of hash with fn's edit of it, atomically:
// if the document changes between the read and the write, it is read and
// edited again. A missing document is an error wrapping ErrDocNotFound
// (fn is not called); an error from fn is returned as is.
func (s *Store) UpdateDoc(ctx context.Context, hash, field string, fn func(doc string) (string, error)) error {
	for range docRetries {
		old, found, err := s.hgetFound(ctx, hash, field)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("store: %s %s: %w", hash, field, ErrDocNotFound)
		}
		next, err := fn(old)
		if err != nil {
			return err
		}
		if next == old {
			return nil
		}
		ok, err := casDocScript.Run(ctx, s.rdb, []string{hash}, field, old, next).Int()
		if err != nil {
			return fmt.Errorf("store: update %s %s: %w", hash, field, err)
		}
		if ok == 1 {
			return nil
		}
	}
	return fmt.Errorf("store: update %s %s: document kept changing, gave up after %d tries", hash, field, docRetries)
}

// VoicemailMessage is one entry of a vmbox document's messages array, as
// seed 000's consumers read it. Raw keeps the whole entry.
type VoicemailMessage struct {
	MediaID   string          `json:"media_id"`
	Folder    string          `json:"folder"`
	Timestamp int64           `json:"timestamp"`
	Length    int64           `json:"length"`
	File      string          `json:"file"`
	Raw       json.RawMessage `json:"-"`
}

// VoicemailMessages returns the messages of vmbox vmbox@<account>/<vmboxID>
// in document order. Entries that are not objects are skipped; fields of
// the wrong type read as zero. found is false when the vmbox does not
// exist.
func (s *Store) VoicemailMessages(ctx context.Context, account, vmboxID string) (msgs []VoicemailMessage, found bool, err error) {
	hash := s.VMBoxDocsKey(account)
	raw, found, err := s.hgetFound(ctx, hash, vmboxID)
	if err != nil || !found {
		return nil, found, err
	}
	_, list, err := splitMessages(raw)
	if err != nil {
		return nil, true, fmt.Errorf("store: %s %s: %w", hash, vmboxID, err)
	}
	for _, m := range list {
		var fields map[string]json.RawMessage
		if json.Unmarshal(m, &fields) != nil {
			continue
		}
		v := VoicemailMessage{Raw: m}
		json.Unmarshal(fields["media_id"], &v.MediaID)
		json.Unmarshal(fields["folder"], &v.Folder)
		json.Unmarshal(fields["timestamp"], &v.Timestamp)
		json.Unmarshal(fields["length"], &v.Length)
		json.Unmarshal(fields["file"], &v.File)
		msgs = append(msgs, v)
	}
	return msgs, true, nil
}

// AppendVoicemailMessage appends msg to the messages array of vmbox
// vmbox@<account>/<vmboxID> (creating the array when the document has
// none), keeping every other field. A missing vmbox is an error wrapping
// ErrDocNotFound.
func (s *Store) AppendVoicemailMessage(ctx context.Context, account, vmboxID string, msg VoicemailMessage) error {
	entry, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("store: voicemail message: %w", err)
	}
	hash := s.VMBoxDocsKey(account)
	return s.UpdateDoc(ctx, hash, vmboxID, func(raw string) (string, error) {
		doc, list, err := splitMessages(raw)
		if err != nil {
			return "", fmt.Errorf("store: %s %s: %w", hash, vmboxID, err)
		}
		return joinMessages(doc, append(list, entry))
	})
}

// SetVoicemailFolder moves the message with mediaID of vmbox
// vmbox@<account>/<vmboxID> to folder ("saved", "deleted"), keeping every
// other field. It wraps ErrDocNotFound for a missing vmbox and
// ErrMessageNotFound for a missing message.
func (s *Store) SetVoicemailFolder(ctx context.Context, account, vmboxID, mediaID, folder string) error {
	hash := s.VMBoxDocsKey(account)
	return s.UpdateDoc(ctx, hash, vmboxID, func(raw string) (string, error) {
		doc, list, err := splitMessages(raw)
		if err != nil {
			return "", fmt.Errorf("store: %s %s: %w", hash, vmboxID, err)
		}
		for i, m := range list {
			var fields map[string]json.RawMessage
			if json.Unmarshal(m, &fields) != nil {
				continue
			}
			var id string
			if json.Unmarshal(fields["media_id"], &id) != nil || id != mediaID {
				continue
			}
			f, _ := json.Marshal(folder)
			fields["folder"] = f
			if list[i], err = json.Marshal(fields); err != nil {
				return "", err
			}
			return joinMessages(doc, list)
		}
		return "", fmt.Errorf("store: %s %s: media_id %q: %w", hash, vmboxID, mediaID, ErrMessageNotFound)
	})
}

// splitMessages decodes a vmbox document into its fields and its messages.
func splitMessages(raw string) (map[string]json.RawMessage, []json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || doc == nil {
		return nil, nil, fmt.Errorf("vmbox document is not a JSON object")
	}
	var list []json.RawMessage
	if m, ok := doc["messages"]; ok && !bytes.Equal(bytes.TrimSpace(m), []byte("null")) {
		if err := json.Unmarshal(m, &list); err != nil {
			return nil, nil, fmt.Errorf("messages: want array, got %.40s", m)
		}
	}
	return doc, list, nil
}

func joinMessages(doc map[string]json.RawMessage, list []json.RawMessage) (string, error) {
	if list == nil {
		list = []json.RawMessage{}
	}
	m, err := json.Marshal(list)
	if err != nil {
		return "", err
	}
	doc["messages"] = m
	out, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	return string(out), nil
}
