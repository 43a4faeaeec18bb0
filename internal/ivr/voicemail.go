package ivr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"

	"redial/internal/media"
	"redial/internal/store"
)

// storeTimeout bounds the Redis writes that finish a voicemail; they run
// even after the caller hung up (hanging up is how most messages end).
const storeTimeout = 10 * time.Second

// docID is what account and vmbox ids may look like: they become
// directory names.
var docID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

type vmBox struct{ account, vmbox string }

func vmBoxProps(p Props) (vmBox, error) {
	var b vmBox
	var err error
	if b.account, err = p.RequiredString("account_id"); err != nil {
		return b, err
	}
	if b.vmbox, err = p.RequiredString("vmbox_id"); err != nil {
		return b, err
	}
	return b, nil
}

// resolve expands the ids and checks that they are plain names.
func (b vmBox) resolve(x *Exec) (vmBox, error) {
	r := vmBox{account: x.Expand(b.account), vmbox: x.Expand(b.vmbox)}
	if !docID.MatchString(r.account) {
		return r, fmt.Errorf("account_id %q: want letters, digits, '-' or '_'", r.account)
	}
	if !docID.MatchString(r.vmbox) {
		return r, fmt.Errorf("vmbox_id %q: want letters, digits, '-' or '_'", r.vmbox)
	}
	return r, nil
}

// vmRecord (306) leaves a voicemail message in a vmbox.
type vmRecord struct {
	box      vmBox
	greeting string
	beep     bool
	min      time.Duration
	opts     media.RecordOptions
}

func newVMRecord(spec *Spec) (Component, error) {
	p := spec.Props
	v := &vmRecord{}
	var err error
	if v.box, err = vmBoxProps(p); err != nil {
		return nil, err
	}
	if v.greeting, err = p.String("file", ""); err != nil {
		return nil, err
	}
	beep, err := p.IntRange("beep", 1, 0, 1)
	if err != nil {
		return nil, err
	}
	v.beep = beep == 1
	if v.opts.MaxDuration, err = p.Seconds("maxSec", 120, 1, maxPromptSecond); err != nil {
		return nil, err
	}
	if v.opts.SilenceAbort, err = p.Seconds("abortOnSilence", 10, 0, maxPromptSecond); err != nil {
		return nil, err
	}
	if v.opts.TerminateOn, err = keys(p, "terminator", "#"); err != nil {
		return nil, err
	}
	if v.min, err = p.Seconds("minSec", 1, 0, maxPromptSecond); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *vmRecord) Run(ctx context.Context, x *Exec) string {
	log := x.Logger()
	box, err := v.box.resolve(x)
	if err != nil {
		log.Error("ivr voicemail record: bad vmbox", "err", err)
		return ExitError
	}
	st := x.Engine().deps.Store
	log = log.With("account_id", box.account, "vmbox_id", box.vmbox)
	if _, found, err := st.Doc(ctx, st.VMBoxDocsKey(box.account), box.vmbox); err != nil || !found {
		if err == nil {
			err = fmt.Errorf("no vmbox %q in %s", box.vmbox, st.VMBoxDocsKey(box.account))
		}
		if ctx.Err() == nil {
			log.Error("ivr voicemail record: vmbox unusable", "err", err)
		}
		return ExitError
	}
	if v.greeting != "" {
		// A key skips the greeting, as on every voicemail system.
		if _, err := x.PlayFile(ctx, x.Expand(v.greeting), true); err != nil && ctx.Err() == nil {
			log.Warn("ivr voicemail greeting failed; recording anyway", "file", v.greeting, "err", err)
		}
	}
	if v.beep && ctx.Err() == nil {
		x.Media().Play(ctx, media.NewTone(1000, 8000, 400*time.Millisecond))
	}
	if ctx.Err() != nil {
		return ExitTransfer
	}
	x.ClearDigits() // the key that skipped the greeting must not end the message
	mediaID := newID(16)
	path := fmt.Sprintf(":SYNC_DOMAIN_DATA/voicemail/%s/%s/%s.wav", box.account, box.vmbox, mediaID)
	res, err := recordTo(ctx, x, path, v.opts)
	if err != nil {
		log.Error("ivr voicemail record failed", "file", path, "err", err)
		return ExitError
	}
	x.SetResult("recordDuration", seconds(res.Duration))
	x.SetResult("recordReason", string(res.Reason))
	abs, _ := x.Resolve(path)
	if res.Duration < v.min || res.Duration == 0 {
		os.Remove(abs)
		log.Info("ivr voicemail too short; discarded", "duration", res.Duration)
		return ExitTimeout
	}

	// The message is stored even when the caller has just hung up.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	now := x.Now()
	msg := store.VoicemailMessage{MediaID: mediaID, Folder: "new", Timestamp: now.Unix(),
		Length: res.Duration.Milliseconds(), File: path}
	if err := st.AppendVoicemailMessage(sctx, box.account, box.vmbox, msg); err != nil {
		os.Remove(abs)
		log.Error("ivr voicemail not saved", "file", path, "err", err)
		return ExitError
	}
	x.SetResult("recordFile", path)
	x.SetResult("vmMediaId", mediaID)
	ev, _ := json.Marshal(map[string]string{"event_name": "voicemail_saved", "account_id": box.account,
		"vmbox_id": box.vmbox, "media_id": mediaID})
	if err := st.PushEvent(sctx, string(ev)); err != nil {
		// The message is saved; only the callback notification is lost.
		log.Error("ivr voicemail_saved event not pushed", "media_id", mediaID, "err", err)
	}
	log.Info("ivr voicemail saved", "media_id", mediaID, "duration", res.Duration)
	return ExitTransfer
}

// vmCheck (307) plays a vmbox's new messages, oldest first, and marks each
// one saved once it was heard to the end.
type vmCheck struct{ box vmBox }

func newVMCheck(spec *Spec) (Component, error) {
	b, err := vmBoxProps(spec.Props)
	if err != nil {
		return nil, err
	}
	return &vmCheck{box: b}, nil
}

func (v *vmCheck) Run(ctx context.Context, x *Exec) string {
	log := x.Logger()
	box, err := v.box.resolve(x)
	if err != nil {
		log.Error("ivr voicemail check: bad vmbox", "err", err)
		return ExitError
	}
	log = log.With("account_id", box.account, "vmbox_id", box.vmbox)
	st := x.Engine().deps.Store
	msgs, found, err := st.VoicemailMessages(ctx, box.account, box.vmbox)
	if err != nil || !found {
		if err == nil {
			err = fmt.Errorf("no vmbox %q in %s", box.vmbox, st.VMBoxDocsKey(box.account))
		}
		if ctx.Err() == nil {
			log.Error("ivr voicemail check: vmbox unusable", "err", err)
		}
		return ExitError
	}
	var fresh []store.VoicemailMessage
	for _, m := range msgs {
		if m.Folder == "new" && m.MediaID != "" {
			fresh = append(fresh, m)
		}
	}
	sort.SliceStable(fresh, func(i, j int) bool { return fresh[i].Timestamp < fresh[j].Timestamp })
	x.SetResult("messagesNew", strconv.Itoa(len(fresh)))
	played := 0
	defer func() { x.SetResult("messagesPlayed", strconv.Itoa(played)) }()
	for _, m := range fresh {
		if _, err := x.PlayFile(ctx, m.File, false); err != nil {
			if ctx.Err() != nil {
				return ExitTransfer
			}
			log.Error("ivr voicemail message unplayable; left as new", "media_id", m.MediaID, "file", m.File, "err", err)
			continue
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		err := st.SetVoicemailFolder(sctx, box.account, box.vmbox, m.MediaID, "saved")
		cancel()
		if err != nil && !errors.Is(err, store.ErrMessageNotFound) {
			log.Error("ivr voicemail message not marked saved", "media_id", m.MediaID, "err", err)
		}
		played++
	}
	return ExitTransfer
}
