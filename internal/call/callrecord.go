package call

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/files"
	"redial/internal/logtext"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/store"
)

// Channel variables of recordings and call records.
const (
	// VarRecordCall ("true"/"false") turns the stereo recording of a
	// bridge on or off. Agent calls are recorded unless it is "false";
	// other bridges only when it is "true".
	VarRecordCall = "record_call"
	// VarRecording carries the store path of the call's recording from
	// the bridge to its CDR, which publishes it as the recording field.
	VarRecording = "redial_recording"
	// VarNumberQueue is the number queue a campaign call's number came
	// from, set by the queue dialer: a disposition's callback_at puts the
	// number back in that queue's retry set.
	VarNumberQueue = "redial_number_queue"
)

// RecordingsDir is the folder of call recordings in the store
// :SYNC_DOMAIN_DATA; a recording is <RecordingsDir>/YYYY/MM/DD/<name>.wav,
// dated by the start of its bridge (UTC).
const RecordingsDir = ":SYN_DOM/recordings"

// CallRecorder records bridges and keeps call records in Redis, so a call
// can be dispositioned and its recording downloaded by call_ref after it
// left this node's memory. *Records is the implementation.
type CallRecorder interface {
	// NewRecording starts the stereo recording of a bridge of callRef
	// beginning at at; storePath is what the CDR names.
	NewRecording(callRef string, at time.Time) (rec *media.StereoRecorder, storePath string, err error)
	// RecordingDone counts a finished recording (err non-nil: it failed).
	RecordingDone(res media.StereoResult, err error)
	// SaveCallRecord stores the record of a call just before its CDR is
	// published; it logs its own failures.
	SaveCallRecord(ctx context.Context, callRef string, r store.CallRecord) error
	// Host is this node's name, as call records name it.
	Host() string
	// LocalFile resolves a recording's store path on this node.
	LocalFile(storePath string) (string, error)
}

// RecordsConfig configures Records.
type RecordsConfig struct {
	// Host is this node's name (--host), kept in each call record so
	// other nodes know where the recording is.
	Host string
}

// RecordsDeps are what Records writes to.
type RecordsDeps struct {
	Store    *store.Store
	Files    *files.Stores
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// saveRecordTimeout bounds writing one call record, so a Redis outage
// does not hold up the end of every call (the dialer settles its claim
// after it).
const saveRecordTimeout = 2 * time.Second

// Records implements CallRecorder with the node's file stores and Redis.
type Records struct {
	cfg   RecordsConfig
	deps  RecordsDeps
	mRecs *prometheus.CounterVec
	mSize prometheus.Counter
	// outage logs failing call-record writes once per Redis outage.
	outage *logtext.Outage
}

// NewRecords builds the recorder of this node's calls.
func NewRecords(cfg RecordsConfig, deps RecordsDeps) (*Records, error) {
	if cfg.Host == "" || deps.Store == nil || deps.Files == nil {
		return nil, errors.New("call: records need a host, a store and file stores")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	r := &Records{cfg: cfg, deps: deps,
		outage: logtext.NewOutage(deps.Logger.With("component", "call"), logtext.OutageConfig{Name: "call: call records"}),
		mRecs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_recordings_total",
			Help: "Call recordings by result (written, failed)."}, []string{"result"}),
		mSize: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_recording_bytes_total",
			Help: "Bytes of call recordings written."}),
	}
	r.mRecs.WithLabelValues("written")
	r.mRecs.WithLabelValues("failed")
	if deps.Registry != nil {
		if err := deps.Registry.Register(r.mRecs); err != nil {
			return nil, fmt.Errorf("call: records: metrics: %w", err)
		}
		if err := deps.Registry.Register(r.mSize); err != nil {
			return nil, fmt.Errorf("call: records: metrics: %w", err)
		}
	}
	return r, nil
}

// Host implements CallRecorder.
func (r *Records) Host() string { return r.cfg.Host }

// LocalFile implements CallRecorder.
func (r *Records) LocalFile(storePath string) (string, error) {
	return r.deps.Files.Resolve("", storePath)
}

// NewRecording implements CallRecorder.
func (r *Records) NewRecording(callRef string, at time.Time) (*media.StereoRecorder, string, error) {
	at = at.UTC()
	dir := fmt.Sprintf("%s/%04d/%02d/%02d", RecordingsDir, at.Year(), int(at.Month()), at.Day())
	name := recordingName(callRef)
	sp := dir + "/" + name + ".wav"
	abs, err := r.deps.Files.ResolveForWrite("", sp)
	if err != nil {
		return nil, "", fmt.Errorf("call: recording of %s: %w", callRef, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		// The same call_ref used again the same day: keep both.
		sp = dir + "/" + name + "-" + strconv.FormatInt(at.UnixMilli(), 10) + ".wav"
		if abs, err = r.deps.Files.ResolveForWrite("", sp); err != nil {
			return nil, "", fmt.Errorf("call: recording of %s: %w", callRef, err)
		}
	}
	rec, err := media.NewStereoRecorder(abs)
	if err != nil {
		return nil, "", fmt.Errorf("call: recording of %s: %w", callRef, err)
	}
	return rec, sp, nil
}

// recordingName is the file name (without .wav) of callRef's recording:
// the call_ref itself when it is a short plain name, else a digest of it,
// so no call_ref can choose a folder or an odd file name.
func recordingName(callRef string) string {
	ok := callRef != "" && len(callRef) <= 96 && callRef[0] != '.'
	for i := 0; ok && i < len(callRef); i++ {
		c := callRef[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if ok {
		return callRef
	}
	sum := sha256.Sum256([]byte(callRef))
	return "ref-" + hex.EncodeToString(sum[:16])
}

// RecordingDone implements CallRecorder.
func (r *Records) RecordingDone(res media.StereoResult, err error) {
	if err != nil {
		r.mRecs.WithLabelValues("failed").Inc()
		return
	}
	r.mRecs.WithLabelValues("written").Inc()
	r.mSize.Add(float64(res.Bytes))
}

// SaveCallRecord implements CallRecorder. Failures are logged once per
// Redis outage, with the recovery.
func (r *Records) SaveCallRecord(ctx context.Context, callRef string, rec store.CallRecord) error {
	rec.Node = r.cfg.Host
	ctx, cancel := context.WithTimeout(ctx, saveRecordTimeout)
	defer cancel()
	if err := r.deps.Store.SaveCallRecord(ctx, callRef, rec); err != nil {
		r.outage.Fail("call: saving call records failed; these calls cannot be dispositioned or their recordings found by call_ref",
			err, "call_ref", callRef)
		return err
	}
	r.outage.OK()
	return nil
}

// Records returns the manager's call recorder; nil when the node keeps
// no recordings or call records.
func (m *Manager) Records() CallRecorder { return m.deps.Records }

// startRecording starts the recording of a bridge when the call wants one:
// agent calls unless record_call=false, other bridges when
// record_call=true. It returns nil when there is none.
func startRecording(s *Session, side string, at time.Time) *media.StereoRecorder {
	if s.Records == nil {
		return nil
	}
	want := side == "agent"
	if v, ok := s.Vars[VarRecordCall]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1", "yes", "on":
			want = true
		case "false", "0", "no", "off":
			want = false
		}
	}
	if !want {
		return nil
	}
	rec, sp, err := s.Records.NewRecording(s.Call.Ref(), at)
	if err != nil {
		s.Log.Error("call: recording not started", "error", err)
		s.Records.RecordingDone(media.StereoResult{}, err)
		return nil
	}
	s.Vars[VarRecording] = sp
	return rec
}

// finishRecording closes a bridge's recording at end; it returns the
// recording's store path, or "" when it failed.
func finishRecording(s *Session, rec *media.StereoRecorder, end time.Time) string {
	res, err := rec.Close(end)
	s.Records.RecordingDone(res, err)
	if err != nil {
		s.Log.Error("call: recording failed", "error", err)
		delete(s.Vars, VarRecording)
		return ""
	}
	s.Log.Info("call: recording written", "recording", s.Vars[VarRecording], "duration", res.Duration, "bytes", res.Bytes)
	return s.Vars[VarRecording]
}

// saveCallRecord keeps the record of a call whose CDR is about to be
// published, when the API may need it: the call reached an agent, was
// recorded, or was an answered campaign call (which a disposition may call
// back).
func (m *Manager) saveCallRecord(ctx context.Context, c *Call, cdr *notify.CDR, vars map[string]string) {
	if m.deps.Records == nil || c.req.noCDR {
		return
	}
	queue := vars[VarNumberQueue]
	if cdr.Ext == nil && cdr.Recording == "" && (queue == "" || cdr.Answer == nil) {
		return
	}
	rec := store.CallRecord{CampaignRef: cdr.CampaignRef, ContactRef: cdr.ContactRef, Number: cdr.ClientNumber,
		Recording: cdr.Recording, NumberQueue: queue, End: cdr.End}
	if cdr.Ext != nil {
		rec.Ext = *cdr.Ext
	}
	if queue != "" {
		rec.Item = callbackItem(cdr.ClientNumber, cdr.ContactRef)
	}
	if err := m.deps.Records.SaveCallRecord(uncancelled(ctx), c.req.CallRef, rec); err != nil {
		// The recorder logs its outages; per call only at DEBUG.
		m.log.Debug("call: call record not saved", "call_ref", c.req.CallRef, "error", err)
	}
}

// callbackItem is the number queue item that calls number again: the
// plain number, or with its contact_ref so the new CDRs carry it too.
func callbackItem(number, contactRef string) string {
	if contactRef == "" {
		return number
	}
	b, _ := json.Marshal(map[string]any{"params": map[string]string{"number": number, "contact_ref": contactRef}})
	return string(b)
}
