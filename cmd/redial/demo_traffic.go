package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/files"
	"redial/internal/sim"
	"redial/internal/store"
)

// The demo's inbound traffic, so that every panel of the dashboard moves:
// a queue with four simulated agents behind one inbound number, an IVR menu
// behind another, simulated callers calling both from the demo's inbound
// trunk, and a few scheduled calls.
//
// The callers call the node from a simulated trunk of their own, as a
// carrier's customers would, so that each caller can press a key, wait
// with its own patience and hang up like a person.
const (
	demoQueue          = "support"
	demoQueueNumber    = "7401"
	demoIVRNumber      = "7402"
	demoIVRScript      = "demo-menu"
	demoScheduleConfig = "reminders"
	demoSchedules      = 5
)

// demoQueueAgents are the simulated agents' extensions.
var demoQueueAgents = []string{"2001", "2002", "2003", "2004"}

// Store paths of the generated prompts (package files' :GS_PUB store).
const (
	demoMOH      = ":GS_PUB/demo/moh.wav"
	demoMenu     = ":GS_PUB/demo/menu.wav"
	demoGoodbye  = ":GS_PUB/demo/goodbye.wav"
	demoPosition = ":GS_PUB/queue/position.wav" // the queue's fixed prompt directory (docs/queues.md)
)

// demoTraffic is the running inbound part of the demo.
type demoTraffic struct {
	callers *sim.Sim
	agents  []*sim.Agent
	nodeSIP string
	wg      sync.WaitGroup

	toQueue, toIVR, failed atomic.Int64
}

// setupDemoTraffic writes the agents, the queue, the IVR script, the
// inbound routes and the schedule config, and starts the simulated
// callers and agents (they stop with ctx; Wait waits for them).
func setupDemoTraffic(ctx context.Context, st *store.Store, fs *files.Stores, nodeSIP string, seed uint64, log *slog.Logger) (*demoTraffic, error) {
	moh := writeDemoPrompts(fs, log)
	for _, ext := range demoQueueAgents {
		if err := st.SetUser(ctx, ext, fmt.Sprintf(`{"params":{"password":%q,"name":"Simulated agent %s","enable":true}}`, "demo"+ext, ext)); err != nil {
			return nil, fmt.Errorf("demo: write user %s: %w", ext, err)
		}
	}
	agents, _ := json.Marshal(demoQueueAgents)
	queue := fmt.Sprintf(`{"params":{"agents":%s,"strategy":"longest_idle","ring_timeout_s":10,"wrapup_s":3,"announce_position_s":20,"moh":%q}}`, agents, moh)
	if moh == "" {
		queue = strings.Replace(queue, `,"moh":""`, "", 1)
	}
	if err := st.SetQueue(ctx, demoQueue, queue); err != nil {
		return nil, fmt.Errorf("demo: write queue: %w", err)
	}
	// The menu: 1 (or no key) to the queue, 2 for a goodbye. The transfer
	// is resolved in context default, the inbound number in public.
	script := fmt.Sprintf(`{"start":1,"components":[
  {"oId":1,"oType":301,"name":"Main menu","file":%q,"timeoutSec":4,"retries":1,"transfers":{"1":2,"2":3,"timeout":2,"error":2}},
  {"oId":2,"oType":203,"name":"To the support queue","number":%q,"transfers":{"error":4}},
  {"oId":3,"oType":204,"name":"Goodbye","mode":0,"file":%q,"transfer":4,"transfers":{"error":4}},
  {"oId":4,"oType":201,"name":"Hang up"}]}`, demoMenu, demoQueueNumber, demoGoodbye)
	if err := st.SetIVRScript(ctx, demoIVRScript, script); err != nil {
		return nil, fmt.Errorf("demo: write IVR script: %w", err)
	}
	callers, err := sim.New(sim.Config{Addr: "127.0.0.1:0", AnswerPct: 100, Ring: 100 * time.Millisecond,
		Talk: 20 * time.Second, TalkMax: 50 * time.Second, ToneHz: 350, DTMF: "1112", DTMFAfter: 2500 * time.Millisecond,
		Seed: seed + 2, RTPMin: 16000, RTPMax: 17999}, log)
	if err != nil {
		return nil, err
	}
	routes := [][2]string{
		{"public:" + demoQueueNumber, fmt.Sprintf(`{"type":"queue","queue":%q}`, demoQueue)},
		{"default:" + demoQueueNumber, fmt.Sprintf(`{"type":"queue","queue":%q}`, demoQueue)},
		{"public:" + demoIVRNumber, fmt.Sprintf(`{"type":"ivr","script":%q}`, demoIVRScript)},
	}
	for _, r := range routes {
		if err := st.SetDialplanEntry(ctx, r[0], r[1]); err != nil {
			return nil, fmt.Errorf("demo: write dialplan %s: %w", r[0], err)
		}
	}
	if err := st.SetScheduleConfig(ctx, demoScheduleConfig, `{"params":{"line_group":["sim"],"destination_extension":"8888"},"variables":{"originate_timeout":"8"}}`); err != nil {
		return nil, fmt.Errorf("demo: write schedule config: %w", err)
	}
	t := &demoTraffic{callers: callers, nodeSIP: nodeSIP}
	for i, ext := range demoQueueAgents {
		base := 18000 + 500*i
		a, err := sim.NewAgent(sim.AgentConfig{Registrar: nodeSIP, Ext: ext, Password: "demo" + ext,
			Phone: sim.Config{Addr: "127.0.0.1:0", Ring: time.Second, RingMax: 3 * time.Second, Talk: 5 * time.Second,
				TalkMax: 15 * time.Second, ToneHz: 600 + 100*float64(i), Seed: seed + 10 + uint64(i), RTPMin: base, RTPMax: base + 499}}, log)
		if err != nil {
			return nil, err
		}
		t.agents = append(t.agents, a)
	}
	t.wg.Add(1 + len(t.agents))
	go func() { defer t.wg.Done(); callers.Run(ctx) }()
	for _, a := range t.agents {
		go func() { defer t.wg.Done(); a.Run(ctx) }()
	}
	return t, nil
}

// goTracked runs f in the background; Wait waits for it too. f may call
// call, whose own goroutines are then counted before f's ends.
func (t *demoTraffic) goTracked(f func()) {
	t.wg.Add(1)
	go func() { defer t.wg.Done(); f() }()
}

// Wait returns once the callers and agents stopped (agents unregister
// first, while the node still answers).
func (t *demoTraffic) Wait() { t.wg.Wait() }

// registered counts the agents whose phone is registered.
func (t *demoTraffic) registered() int {
	n := 0
	for _, a := range t.agents {
		if a.Registered() {
			n++
		}
	}
	return n
}

// answered counts the calls the agents answered.
func (t *demoTraffic) answered() int64 {
	var n int64
	for _, a := range t.agents {
		n += a.Stats().Answered
	}
	return n
}

// writeDemoPrompts generates the menu, goodbye, hold music and position
// prompts into the node's public store; it returns the hold music's path,
// or "" when it could not be written (the queue then has none).
func writeDemoPrompts(fs *files.Stores, log *slog.Logger) string {
	beep := func(hz float64) []sim.Tone {
		return []sim.Tone{{Hz: hz, Dur: 120 * time.Millisecond}, {Dur: 80 * time.Millisecond}}
	}
	var moh []sim.Tone
	for _, hz := range []float64{392, 494, 587, 494, 440, 523, 659, 523} {
		moh = append(moh, sim.Tone{Hz: hz, Dur: 350 * time.Millisecond}, sim.Tone{Dur: 50 * time.Millisecond})
	}
	prompts := map[string][]sim.Tone{
		demoMOH:      moh,
		demoMenu:     {{Hz: 523, Dur: 300 * time.Millisecond}, {Hz: 659, Dur: 300 * time.Millisecond}, {Hz: 784, Dur: 400 * time.Millisecond}},
		demoGoodbye:  {{Hz: 784, Dur: 300 * time.Millisecond}, {Hz: 523, Dur: 500 * time.Millisecond}},
		demoPosition: {{Hz: 880, Dur: 200 * time.Millisecond}, {Dur: 300 * time.Millisecond}},
	}
	// A digit is that many beeps (0: one long one).
	for d := 0; d <= 9; d++ {
		var tones []sim.Tone
		for range d {
			tones = append(tones, beep(1200)...)
		}
		if d == 0 {
			tones = []sim.Tone{{Hz: 1200, Dur: 500 * time.Millisecond}}
		}
		prompts[fmt.Sprintf(":GS_PUB/queue/%d.wav", d)] = tones
	}
	ok := true
	for path, tones := range prompts {
		abs, err := fs.ResolveForWrite("", path)
		if err == nil {
			err = sim.WriteTones(abs, tones)
		}
		if err != nil {
			log.Warn("demo: prompt not written", "path", path, "error", err)
			if path == demoMOH {
				ok = false
			}
		}
	}
	if !ok {
		return ""
	}
	return demoMOH
}

// waitAgents waits up to d for every agent to register, and makes each
// available (an earlier demo against the same Redis may have left one
// paused).
func (t *demoTraffic) waitAgents(ctx context.Context, api, token string, d time.Duration) {
	deadline := time.Now().Add(d)
	for t.registered() < len(t.agents) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	for _, ext := range demoQueueAgents {
		if resp, err := apiDo(ctx, http.MethodPost, api+"/api/v1/agents/"+ext+"/state", token, []byte(`{"state":"available"}`)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// run places simulated callers until ctx ends: one to the queue's number
// every 2 to 4 s (more than the four agents can take, so a few wait and
// some give up) and one to the IVR's every 8 to 16 s. A caller listens,
// presses a key after 2.5 s (mostly 1: the IVR's menu sends it to the
// queue; else 2: goodbye) and hangs up after 20 to 50 s.
func (t *demoTraffic) run(ctx context.Context, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, seed+3))
	var mu sync.Mutex
	pause := func(from, to time.Duration) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return from + time.Duration(rnd.Int64N(int64(to-from)))
	}
	var n atomic.Int64
	every := func(number string, count *atomic.Int64, from, to time.Duration) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause(from, to)):
			}
			count.Add(1)
			t.call(ctx, number, fmt.Sprintf("1555020%04d", n.Add(1)%10000))
		}
	}
	t.goTracked(func() { every(demoIVRNumber, &t.toIVR, 8*time.Second, 16*time.Second) })
	every(demoQueueNumber, &t.toQueue, 2*time.Second, 4*time.Second)
}

// call has the simulated callers call number in the background; Wait
// waits for it.
func (t *demoTraffic) call(ctx context.Context, number, caller string) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if answered, err := t.callers.Call(ctx, t.nodeSIP, number, caller, 30*time.Second); !answered && err != nil && ctx.Err() == nil {
			if t.failed.Add(1) == 1 {
				fmt.Printf("\ndemo: a simulated caller to %s failed: %v\n", number, err)
			}
		}
	}()
}

// scheduleDemoCalls schedules a few calls to the simulated carrier a few
// seconds apart through POST /api/v1/schedules, as an integrator would;
// their CDRs carry campaign_ref "reminders".
func scheduleDemoCalls(ctx context.Context, api, token string) error {
	start := time.Now().Add(5 * time.Second)
	for i := range demoSchedules {
		at := start.Add(time.Duration(3*i) * time.Second)
		body, _ := json.Marshal(map[string]any{"at": float64(at.UnixMilli()) / 1000,
			"member": map[string]any{"params": map[string]string{"number": fmt.Sprintf("155590%05d", i+1), "config": demoScheduleConfig,
				"contact_ref": fmt.Sprintf("reminder-%d", i+1)}}})
		resp, err := apiDo(ctx, http.MethodPost, api+"/api/v1/schedules", token, body)
		if err != nil {
			return fmt.Errorf("demo: schedule a call: %w", err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("demo: schedule a call: %s %s", resp.Status, strings.TrimSpace(string(b)))
		}
	}
	return nil
}

// statusLine is the demo's line while it stays up after the campaign.
func (t *demoTraffic) statusLine(el time.Duration) string {
	return fmt.Sprintf("inbound: %d callers to the queue, %d to the IVR, %d failed · agents registered %d/%d, answered %d · %5.0fs",
		t.toQueue.Load(), t.toIVR.Load(), t.failed.Load(), t.registered(), len(t.agents), t.answered(), el.Seconds())
}
