package acd

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"redial/internal/media"
	"redial/internal/store"
)

// holder is what a waiting caller hears: the queue's music on hold, looped,
// interrupted every announce_position_s by its position in line; and, with
// an exit key, what it presses.
type holder struct {
	s   *Service
	q   store.Queue
	c   Caller
	log *slog.Logger
	// exit is closed when the caller presses the queue's exit key.
	exit     chan struct{}
	exitOnce sync.Once

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newHolder(s *Service, q store.Queue, c Caller, log *slog.Logger) *holder {
	return &holder{s: s, q: q, c: c, log: log, exit: make(chan struct{})}
}

// start begins the music and, with an exit key, listening for it.
func (h *holder) start(ctx context.Context) {
	if h.c.Media == nil {
		return
	}
	ctx, h.cancel = context.WithCancel(ctx)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.play(ctx)
	}()
	if h.q.ExitKey != "" {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			_ = h.c.Media.Listen(ctx, media.HandlerFuncs{OnDTMF: func(d rune, _ int) {
				if string(d) == h.q.ExitKey {
					h.exitOnce.Do(func() { close(h.exit) })
				}
			}})
		}()
	}
}

// stop ends the music and the listening, before the caller is bridged.
func (h *holder) stop() {
	if h.cancel != nil {
		h.cancel()
	}
	h.wg.Wait()
}

// play loops the music, with the position announcements between.
func (h *holder) play(ctx context.Context) {
	var every <-chan time.Time
	if h.q.AnnouncePosition > 0 {
		t := time.NewTicker(h.q.AnnouncePosition)
		defer t.Stop()
		every = t.C
	}
	for ctx.Err() == nil {
		mctx, stopMusic := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.music(mctx)
		}()
		select {
		case <-ctx.Done():
		case <-every:
		}
		stopMusic()
		<-done
		if ctx.Err() != nil {
			return
		}
		h.announce(ctx)
	}
}

// music plays the queue's moh file over and over until ctx ends; without
// one (or when it cannot be played) the caller hears silence, still sent
// as RTP so that carriers do not take the call for dead.
func (h *holder) music(ctx context.Context) {
	for ctx.Err() == nil {
		began := time.Now()
		// A file that plays in no time would spin: it counts as unplayable.
		if h.q.MOH == "" || !h.playFile(ctx, h.q.MOH) || (ctx.Err() == nil && time.Since(began) < 100*time.Millisecond) {
			_ = h.c.Media.Play(ctx, media.NewSilence(time.Hour))
			return
		}
	}
}

// announce says the caller's position: position.wav, then one prompt per
// digit, from the prompts directory.
func (h *holder) announce(ctx context.Context) {
	pos, err := h.s.deps.Store.Position(ctx, h.q.Name, h.c.CallRef)
	if err != nil || pos <= 0 {
		return // ringing an agent, or gone
	}
	if !h.playFile(ctx, h.s.cfg.Prompts+"/position.wav") {
		return
	}
	for _, d := range strconv.Itoa(pos) {
		if !h.playFile(ctx, h.s.cfg.Prompts+"/"+string(d)+".wav") {
			return
		}
	}
}

// playFile plays one store path; false when it cannot be played (logged
// at debug: a missing prompt must not flood the log once per caller).
func (h *holder) playFile(ctx context.Context, path string) bool {
	if h.s.deps.Files == nil {
		return false
	}
	abs, err := h.s.deps.Files.Resolve("", path)
	if err != nil {
		h.log.Debug("acd: hold audio not found", "file", path, "error", err)
		return false
	}
	src, err := media.Open(abs)
	if err != nil {
		h.log.Debug("acd: hold audio not playable", "file", path, "error", err)
		return false
	}
	defer src.Close()
	if err := h.c.Media.Play(ctx, src); err != nil && ctx.Err() == nil {
		h.log.Debug("acd: hold audio interrupted", "file", path, "error", err)
		return false
	}
	return true
}
