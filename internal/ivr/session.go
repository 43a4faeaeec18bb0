package ivr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/media"
)

const (
	// digitQueue is how many key presses wait for a component; more are
	// dropped (a caller leaning on a key while nothing listens).
	digitQueue = 64
	// fastLimit is how many components in a row may finish at once before
	// the script counts as looping without ever waiting for the caller.
	fastLimit = 200
	fastSpan  = 5 * time.Millisecond
)

// session is one run of a script on one channel.
type session struct {
	e        *Engine
	id       string
	smID     string
	ch       Channel
	scriptID string
	started  time.Time
	log      *slog.Logger
	temp     string
	// runDone is closed when Run's context ends: a transfer that failed
	// restarts listening only while the session goes on.
	runDone <-chan struct{}

	digits chan rune
	audio  atomic.Pointer[audioSink]

	listenCancel context.CancelFunc
	listenDone   chan struct{}

	mu      sync.Mutex
	vars    map[string]string
	cur     *Spec // the script component running
	ctl     *control
	ended   string
	transfd bool
}

type audioSink struct{ h media.Handler }

// Run runs script scriptID on ch until it ends: a hangup component, the
// caller hanging up, a connected transfer being over, or no next
// component. It returns only after its cleanup (the :TEMP dir removed, the
// Listen stopped). Cancelling ctx (the call hung up by the API, the node
// stopping) ends the session with Ended "cancelled".
func (e *Engine) Run(ctx context.Context, ch Channel, scriptID string) Result {
	s := &session{e: e, id: newID(8), smID: newUUID(), ch: ch, scriptID: scriptID, started: e.now(),
		digits: make(chan rune, digitQueue), vars: ch.Variables()}
	if s.vars == nil {
		s.vars = map[string]string{}
	}
	s.log = e.deps.Logger.With("component", "ivr", "call_ref", ch.CallRef(), "ivrid", s.id, "script", scriptID)
	res := s.run(ctx)
	e.m.sessions.WithLabelValues(res.Ended).Inc()
	if res.Err != nil {
		s.log.Error("ivr session failed", "ended", res.Ended, "err", res.Err)
	} else {
		s.log.Info("ivr session ended", "ended", res.Ended)
	}
	return res
}

func (s *session) result(ended string, err error) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Result{IVRID: s.id, Ended: ended, Transferred: s.transfd, Err: err, Variables: maps.Clone(s.vars)}
}

func (s *session) run(parent context.Context) Result {
	e := s.e
	script, err := e.script(parent, s.scriptID)
	if err != nil {
		return s.result(EndedError, err)
	}
	temp, cleanup, err := e.deps.Files.NewTemp(s.id)
	if err != nil {
		return s.result(EndedError, fmt.Errorf("ivr: session %s: %w", s.id, err))
	}
	s.temp = temp
	defer func() {
		if err := cleanup(); err != nil {
			s.log.Error("ivr temp dir not removed", "err", err)
		}
	}()

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.runDone = ctx.Done()
	go func() {
		select {
		case <-s.ch.Done():
			cancel()
		case <-ctx.Done():
		}
	}()

	e.sessMu.Lock()
	e.sessions[s.id] = s
	e.sessMu.Unlock()
	e.m.active.Inc()
	defer func() {
		e.sessMu.Lock()
		delete(e.sessions, s.id)
		e.sessMu.Unlock()
		e.m.active.Dec()
	}()

	s.startListen()
	defer s.stopListen()

	oid, fast := script.Start, 0
	for {
		if s.callerGone() {
			return s.result(EndedCallerHangup, nil)
		}
		if parent.Err() != nil {
			return s.result(EndedCancelled, nil)
		}
		spec := script.Components[oid]
		s.mu.Lock()
		s.cur = spec
		s.mu.Unlock()
		began := time.Now()
		exit, _ := s.runComponent(ctx, spec, spec.comp)
		if time.Since(began) < fastSpan {
			fast++
		} else {
			fast = 0
		}
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		switch {
		case ended != "":
			return s.result(ended, nil)
		case s.callerGone():
			return s.result(EndedCallerHangup, nil)
		case parent.Err() != nil:
			return s.result(EndedCancelled, nil)
		case fast > fastLimit:
			return s.result(EndedError, fmt.Errorf("ivr: script %q: component %d: %d components in a row finished at once; the script loops without waiting", s.scriptID, oid, fast))
		}
		next, ok := spec.route(exit)
		if !ok {
			s.log.Info("ivr script has no route for exit", "oId", spec.OID, "exit", exit)
			return s.result(EndedEnd, nil)
		}
		oid = next
	}
}

// runComponent runs one component and returns its exit and results.
func (s *session) runComponent(ctx context.Context, spec *Spec, comp Component) (string, map[string]string) {
	x := &Exec{s: s, spec: spec, results: map[string]string{}}
	began := time.Now()
	exit := comp.Run(ctx, x)
	s.e.m.components.WithLabelValues(strconv.Itoa(spec.OType), exit).Inc()
	s.log.Debug("ivr component done", "oId", spec.OID, "oType", spec.OType, "exit", exit,
		"took", time.Since(began).Round(time.Millisecond))
	x.mu.Lock()
	defer x.mu.Unlock()
	x.finished = true
	return exit, x.results
}

func (s *session) callerGone() bool {
	select {
	case <-s.ch.Done():
		return true
	default:
		return false
	}
}

// startListen reads the caller's media until stopListen, which Run defers,
// so no listener outlives the session.
func (s *session) startListen() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	var once sync.Once
	s.listenCancel, s.listenDone = cancel, done
	h := media.HandlerFuncs{OnAudio: s.onAudio, OnDTMF: s.onDTMF, OnReady: func() { once.Do(func() { close(ready) }) }}
	go func() {
		defer close(done)
		err := s.ch.Media().Listen(ctx, h)
		if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("ivr listen failed; digits and recordings are lost", "err", err)
		}
	}()
	// Until Listen has dropped the stale datagrams, a key pressed now (an
	// application reacting at once to api_start) would be dropped with them.
	select {
	case <-ready:
	case <-done:
	}
}

func (s *session) stopListen() {
	if s.listenCancel == nil {
		return
	}
	s.listenCancel()
	<-s.listenDone
	s.listenCancel = nil
}

func (s *session) onAudio(pcm []int16, seq uint16, ts uint32) {
	if a := s.audio.Load(); a != nil {
		a.h.Audio(pcm, seq, ts)
	}
}

func (s *session) onDTMF(d rune, _ int) {
	if s.reportDTMF(d) {
		// The owner got it as an idle digit; no later component should.
		return
	}
	select {
	case s.digits <- d:
	default:
		s.log.Warn("ivr digit dropped: nobody is reading digits", "dtmf", string(d))
	}
}

// Exec is what a running component sees of its session. Its methods are
// safe for concurrent use.
type Exec struct {
	s    *session
	spec *Spec

	mu       sync.Mutex
	results  map[string]string
	finished bool
}

// IVRID is the session's id.
func (x *Exec) IVRID() string { return x.s.id }

// Spec is the definition of the running component.
func (x *Exec) Spec() *Spec { return x.spec }

// Channel is the call leg.
func (x *Exec) Channel() Channel { return x.s.ch }

// Media is the leg's RTP session.
func (x *Exec) Media() *media.Session { return x.s.ch.Media() }

// Logger logs with the call's call_ref, the ivrid and the component's oId.
func (x *Exec) Logger() *slog.Logger {
	return x.s.log.With("oId", x.spec.OID, "oType", x.spec.OType)
}

// Engine is the engine running the session (for its Store and Files).
func (x *Exec) Engine() *Engine { return x.s.e }

// Now is the engine's clock.
func (x *Exec) Now() time.Time { return x.s.e.now() }

// TempDir is the session's :TEMP directory.
func (x *Exec) TempDir() string { return x.s.temp }

// CallerGone reports whether the caller has hung up.
func (x *Exec) CallerGone() bool { return x.s.callerGone() }

// Var returns a session variable ("" when unset).
func (x *Exec) Var(name string) string {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	return x.s.vars[name]
}

// SetVar sets a session variable without reporting it as a result.
func (x *Exec) SetVar(name, value string) {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	x.s.vars[name] = value
}

// SetResult sets a session variable and reports it among the component's
// results (ivrapi_component_stopped).
func (x *Exec) SetResult(name, value string) {
	x.SetVar(name, value)
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.finished {
		x.results[name] = value
	}
}

// Expand replaces ${name} in s by the session variable name (unset ones by
// ""). A "$" not followed by "{" and an unclosed "${" stay as they are.
func (x *Exec) Expand(s string) string {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	return expand(s, x.s.vars)
}

func expand(s string, vars map[string]string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			if n := strings.IndexByte(s[i+2:], '}'); n >= 0 {
				out = append(out, vars[s[i+2:i+2+n]]...)
				i += 2 + n
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Digits delivers the caller's key presses, including ones pressed before
// the component started (type-ahead).
func (x *Exec) Digits() <-chan rune { return x.s.digits }

// ClearDigits forgets key presses nobody has read yet.
func (x *Exec) ClearDigits() {
	for {
		select {
		case <-x.s.digits:
		default:
			return
		}
	}
}

// SetAudio routes the caller's audio to h (a media.Recorder) until it is
// called with nil.
func (x *Exec) SetAudio(h media.Handler) {
	if h == nil {
		x.s.audio.Store(nil)
		return
	}
	x.s.audio.Store(&audioSink{h: h})
}

// Resolve turns a store path into a file path for reading, with :TEMP
// being the session's temp dir.
func (x *Exec) Resolve(path string) (string, error) {
	return x.s.e.deps.Files.Resolve(x.s.temp, path)
}

// ResolveForWrite is Resolve for a file about to be written; it creates
// the missing directories.
func (x *Exec) ResolveForWrite(path string) (string, error) {
	return x.s.e.deps.Files.ResolveForWrite(x.s.temp, path)
}

// EndSession makes the session end with ended (EndedHangup, EndedTransfer)
// once the component returns.
func (x *Exec) EndSession(ended string) {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.ended == "" {
		x.s.ended = ended
	}
}

// VariableSetter is a Channel that takes the session's variables before a
// transfer.
type VariableSetter interface {
	SetVariables(vars map[string]string)
}

// Transfer hands the call to ch.Transfer. The session's Listen is stopped
// meanwhile, since the bridge must be the only reader of the media, and
// restarted afterwards unless the session ends.
func (x *Exec) Transfer(ctx context.Context, number string, reinviteMode int) TransferResult {
	s := x.s
	s.stopListen()
	// The target sees what the script collected so far (a queue's call
	// notification carries contact_ref).
	if vs, ok := s.ch.(VariableSetter); ok {
		s.mu.Lock()
		vars := maps.Clone(s.vars)
		s.mu.Unlock()
		vs.SetVariables(vars)
	}
	res := s.ch.Transfer(ctx, number, reinviteMode)
	if res.Connected {
		s.mu.Lock()
		s.transfd = true
		s.mu.Unlock()
		x.EndSession(EndedTransfer)
	} else {
		select {
		case <-s.runDone:
		default:
			// ctx may be an applied component's, cancelled by the owner;
			// the session goes on and needs its digits back.
			s.startListen()
		}
	}
	return res
}

// PlaySource sends src to the caller. Key presses meanwhile are returned;
// with stopOnDigit the first one stops the audio (barge-in). The error is
// ctx's when it was cancelled, else Play's.
func (x *Exec) PlaySource(ctx context.Context, src media.Source, stopOnDigit bool) (digits string, err error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- x.s.ch.Media().Play(pctx, src) }()
	var got []rune
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return string(got), ctx.Err()
			}
			return string(got), err
		case d := <-x.s.digits:
			got = append(got, d)
			if stopOnDigit {
				cancel()
				<-done
				return string(got), nil
			}
		}
	}
}

// PlayFile resolves path (a store path) and plays it like PlaySource.
func (x *Exec) PlayFile(ctx context.Context, path string, stopOnDigit bool) (string, error) {
	abs, err := x.Resolve(path)
	if err != nil {
		return "", err
	}
	src, err := media.Open(abs)
	if err != nil {
		return "", fmt.Errorf("ivr: file %q: %w", path, err)
	}
	defer src.Close()
	return x.PlaySource(ctx, src, stopOnDigit)
}

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := newID(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
