package ivr

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"redial/internal/media"
)

// The component types redial knows (docs/ivr.md describes each).
const (
	TypeHangup      = 201
	TypeTransfer    = 203
	TypePlayback    = 204
	TypeRecord      = 208
	TypeMenu        = 301
	TypeCollect     = 302
	TypePause       = 303
	TypeSetVars     = 304
	TypeExtControl  = 305
	TypeVMRecord    = 306
	TypeVMCheck     = 307
	dtmfKeys        = "0123456789*#ABCD"
	maxPromptSecond = 3600
)

type builtin struct {
	oType      int
	f          Factory
	applicable bool
}

func builtins() []builtin {
	return []builtin{
		{TypeHangup, newHangup, true},
		{TypeTransfer, newTransfer, true},
		{TypePlayback, newPlayback, true},
		{TypeRecord, newRecord, true},
		{TypeMenu, newMenu, true},
		{TypeCollect, newCollect, true},
		{TypePause, newPause, true},
		{TypeSetVars, newSetVars, true},
		{TypeExtControl, newExtControl, false},
		{TypeVMRecord, newVMRecord, true},
		{TypeVMCheck, newVMCheck, true},
	}
}

// keys parses a list of DTMF keys written "4, 5, 6", "4 5 6" or "456".
func keys(p Props, name, def string) (string, error) {
	s, err := p.String(name, def)
	if err != nil {
		return "", err
	}
	var out []rune
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == ',' || r == ' ' || r == ';' || r == '\t':
		case strings.ContainsRune(dtmfKeys, r):
			out = append(out, r)
		default:
			return "", fieldErr(name, "%q is not a DTMF key (want 0-9, *, #, A-D)", r)
		}
	}
	return string(out), nil
}

// hangup (201) ends the call.
type hangup struct{}

func newHangup(*Spec) (Component, error) { return hangup{}, nil }

func (hangup) Run(ctx context.Context, x *Exec) string {
	if err := x.Channel().Hangup(context.WithoutCancel(ctx)); err != nil && !x.CallerGone() {
		x.Logger().Warn("ivr hangup failed", "err", err)
	}
	x.EndSession(EndedHangup)
	return ExitTransfer
}

// transfer (203) connects the caller to a number through the dialplan.
type transfer struct {
	number string
	mode   int
}

func newTransfer(spec *Spec) (Component, error) {
	t := &transfer{}
	var err error
	if t.number, err = spec.Props.RequiredString("number"); err != nil {
		return nil, err
	}
	if t.mode, err = spec.Props.IntRange("reinviteMode", 0, 0, 100); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *transfer) Run(ctx context.Context, x *Exec) string {
	number := strings.TrimSpace(x.Expand(t.number))
	if number == "" {
		x.Logger().Error("ivr transfer: number is empty after expansion", "number", t.number)
		x.SetResult("transferResult", "no number")
		return ExitError
	}
	res := x.Transfer(ctx, number, t.mode)
	if res.Connected {
		x.SetResult("transferResult", "connected")
		return ExitTransfer
	}
	reason := res.Reason
	if reason == "" {
		reason = "failed"
	}
	x.Logger().Info("ivr transfer failed", "number", number, "reason", reason)
	x.SetResult("transferResult", reason)
	return ExitError
}

// playback (204) plays a file.
type playback struct{ file string }

func newPlayback(spec *Spec) (Component, error) {
	mode, err := spec.Props.Int("mode", 0)
	if err != nil {
		return nil, err
	}
	if mode != 0 {
		return nil, fieldErr("mode", "%d is not supported (only 0, play file)", mode)
	}
	file, err := spec.Props.RequiredString("file")
	if err != nil {
		return nil, err
	}
	return &playback{file: file}, nil
}

func (p *playback) Run(ctx context.Context, x *Exec) string {
	path := x.Expand(p.file)
	digits, err := x.PlayFile(ctx, path, false)
	x.SetResult("dtmfBuffer", digits)
	if err != nil && ctx.Err() == nil {
		x.Logger().Error("ivr playback failed", "file", path, "err", err)
		return ExitError
	}
	return ExitTransfer
}

// record (208) records the caller into :TEMP.
type record struct{ opts media.RecordOptions }

func newRecord(spec *Spec) (Component, error) {
	p := spec.Props
	var r record
	var err error
	if r.opts.MaxDuration, err = p.Seconds("recTimeSec", 60, 1, maxPromptSecond); err != nil {
		return nil, err
	}
	if r.opts.MaxDigits, err = p.IntRange("maxSymbolCount", 0, 0, 100); err != nil {
		return nil, err
	}
	if r.opts.TerminateOn, err = keys(p, "interruptSymbols", ""); err != nil {
		return nil, err
	}
	if r.opts.SilenceAbort, err = p.Seconds("abortOnSilence", 0, 0, maxPromptSecond); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *record) Run(ctx context.Context, x *Exec) string {
	path := fmt.Sprintf(":TEMP/ivr_records/ivr_%s_%d.wav", x.IVRID(), x.Now().UnixMilli())
	res, err := recordTo(ctx, x, path, r.opts)
	if err != nil {
		x.Logger().Error("ivr record failed", "file", path, "err", err)
		return ExitError
	}
	x.SetResult("recordFile", path)
	x.SetResult("dtmfBuffer", res.Digits)
	x.SetResult("recordDuration", seconds(res.Duration))
	x.SetResult("recordReason", string(res.Reason))
	return ExitTransfer
}

// recordTo records the caller to the store path until opts end it, ctx is
// cancelled (StopHangup when the caller hung up) or a digit of opts stops it.
func recordTo(ctx context.Context, x *Exec, path string, opts media.RecordOptions) (media.RecordResult, error) {
	abs, err := x.ResolveForWrite(path)
	if err != nil {
		return media.RecordResult{}, err
	}
	rec, err := media.NewRecorder(abs, opts)
	if err != nil {
		return media.RecordResult{}, err
	}
	x.SetAudio(rec)
loop:
	for {
		select {
		case d := <-x.Digits():
			rec.DTMF(d, 0)
		case <-rec.Done():
			break loop
		case <-ctx.Done():
			if x.CallerGone() {
				rec.Stop(media.StopHangup)
			} else {
				rec.Stop(media.StopCancelled)
			}
			break loop
		}
	}
	x.SetAudio(nil)
	if err := rec.Close(); err != nil {
		return media.RecordResult{}, err
	}
	return rec.Result(), nil
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// menu (301) plays a prompt and routes by the key pressed.
type menu struct {
	file    string
	timeout time.Duration
	retries int
	valid   string // keys with a route; "" = any key (applied menus)
}

func newMenu(spec *Spec) (Component, error) {
	m := &menu{}
	var err error
	if m.file, err = spec.Props.String("file", ""); err != nil {
		return nil, err
	}
	if m.timeout, err = spec.Props.Seconds("timeoutSec", 5, 0.1, maxPromptSecond); err != nil {
		return nil, err
	}
	if m.retries, err = spec.Props.IntRange("retries", 2, 0, 20); err != nil {
		return nil, err
	}
	for k := range spec.Transfers {
		switch {
		case k == ExitTimeout || k == ExitError || k == ExitTransfer:
		case len(k) == 1 && strings.Contains(dtmfKeys, strings.ToUpper(k)):
			m.valid += strings.ToUpper(k)
		default:
			return nil, fieldErr("transfers."+k, "not a DTMF key, %q or %q", ExitTimeout, ExitError)
		}
	}
	if m.valid == "" && !spec.Applied {
		return nil, fieldErr("transfers", "a menu needs at least one key (\"1\": oId)")
	}
	return m, nil
}

func (m *menu) Run(ctx context.Context, x *Exec) string {
	timedOut := true
	for attempt := 0; attempt <= m.retries; attempt++ {
		d, ok, err := m.ask(ctx, x)
		if err != nil {
			if ctx.Err() == nil {
				x.Logger().Error("ivr menu prompt failed", "file", m.file, "err", err)
				return ExitError
			}
			return ExitTransfer
		}
		if ctx.Err() != nil {
			return ExitTransfer
		}
		if !ok {
			timedOut = true
			continue
		}
		x.SetResult("dtmfBuffer", string(d))
		if m.valid == "" || strings.ContainsRune(m.valid, d) {
			return string(d)
		}
		x.Logger().Info("ivr menu: key has no route", "dtmf", string(d), "attempt", attempt+1)
		timedOut = false
	}
	if timedOut {
		return ExitTimeout
	}
	return ExitError
}

// ask plays the prompt (a key stops it) and waits for one key.
func (m *menu) ask(ctx context.Context, x *Exec) (rune, bool, error) {
	select {
	case d := <-x.Digits(): // type-ahead skips the prompt
		return d, true, nil
	default:
	}
	if m.file != "" {
		digits, err := x.PlayFile(ctx, x.Expand(m.file), true)
		if err != nil {
			return 0, false, err
		}
		if digits != "" {
			return []rune(digits)[0], true, nil
		}
	}
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case d := <-x.Digits():
		return d, true, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return 0, false, nil
}

// collect (302) collects a number of digits.
type collect struct {
	file         string
	max          int
	terminator   string
	first, inter time.Duration
}

func newCollect(spec *Spec) (Component, error) {
	p := spec.Props
	c := &collect{}
	var err error
	if c.file, err = p.String("file", ""); err != nil {
		return nil, err
	}
	if c.max, err = p.IntRange("maxSymbolCount", 20, 1, 100); err != nil {
		return nil, err
	}
	if c.terminator, err = keys(p, "terminator", "#"); err != nil {
		return nil, err
	}
	if c.first, err = p.Seconds("timeoutSec", 5, 0.1, maxPromptSecond); err != nil {
		return nil, err
	}
	if c.inter, err = p.Seconds("interDigitSec", 3, 0.1, maxPromptSecond); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *collect) Run(ctx context.Context, x *Exec) string {
	var buf []rune
	done := false
	add := func(d rune) {
		if strings.ContainsRune(c.terminator, d) {
			done = true
			return
		}
		buf = append(buf, d)
		done = len(buf) >= c.max
	}
	if c.file != "" {
		digits, err := x.PlayFile(ctx, x.Expand(c.file), true)
		if err != nil && ctx.Err() == nil {
			x.Logger().Error("ivr collect prompt failed", "file", c.file, "err", err)
			return ExitError
		}
		for _, d := range digits {
			add(d)
		}
	}
	wait := c.first
	if len(buf) > 0 {
		wait = c.inter
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for !done && ctx.Err() == nil {
		select {
		case d := <-x.Digits():
			add(d)
			t.Reset(c.inter)
		case <-t.C:
			done = true
		case <-ctx.Done():
		}
	}
	x.SetResult("dtmfBuffer", string(buf))
	if len(buf) == 0 && ctx.Err() == nil {
		return ExitTimeout
	}
	return ExitTransfer
}

// pause (303) waits, sending silence so NAT bindings and the peer's jitter
// buffer stay alive. Digits pressed meanwhile wait for the next component.
type pause struct{ d time.Duration }

func newPause(spec *Spec) (Component, error) {
	d, err := spec.Props.Seconds("timeSec", 1, 0, maxPromptSecond)
	if err != nil {
		return nil, err
	}
	return &pause{d: d}, nil
}

func (p *pause) Run(ctx context.Context, x *Exec) string {
	if err := x.Media().Play(ctx, media.NewSilence(p.d)); err != nil && ctx.Err() == nil {
		x.Logger().Warn("ivr pause: sending silence failed", "err", err)
	}
	return ExitTransfer
}

// setVars (304) sets session variables, in the order written; a value may
// use ${var}, including variables set earlier in the same component.
type setVars struct{ names, values []string }

func newSetVars(spec *Spec) (Component, error) {
	if !spec.Props.Has("variables") {
		return nil, fieldErr("variables", "required")
	}
	dec := json.NewDecoder(strings.NewReader(string(spec.Props["variables"])))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fieldErr("variables", "want an object of name -> value")
	}
	s := &setVars{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fieldErr("variables", "%v", err)
		}
		name := t.(string)
		if strings.TrimSpace(name) == "" {
			return nil, fieldErr("variables", "empty variable name")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fieldErr("variables."+name, "%v", err)
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			v = string(raw) // numbers, booleans and objects as their JSON text
		}
		s.names, s.values = append(s.names, name), append(s.values, v)
	}
	return s, nil
}

func (s *setVars) Run(_ context.Context, x *Exec) string {
	for i, name := range s.names {
		x.SetResult(name, x.Expand(s.values[i]))
	}
	return ExitTransfer
}
