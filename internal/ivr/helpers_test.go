package ivr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/files"
	"redial/internal/media"
	"redial/internal/store"
	"redial/internal/testenv"
)

// snoopType is a component type the tests register to look inside a
// running session (and to exercise Register).
const snoopType = 999

// env is one engine on a real redis-server and real file stores.
type env struct {
	t     *testing.T
	redis *testenv.Redis
	store *store.Store
	files *files.Stores
	data  string
	eng   *Engine
	pool  *media.PortPool
	logs  *testenv.SyncBuffer

	mu    sync.Mutex
	snoop func(x *Exec)
}

var portBase atomic.Int32

func newEnv(t *testing.T) *env {
	t.Helper()
	v := &env{t: t, redis: testenv.StartRedis(t), data: t.TempDir(), logs: &testenv.SyncBuffer{}}
	v.store = store.NewWithClient(v.redis.Client, store.Config{Domain: "default", Host: "n1"})
	var err error
	if v.files, err = files.New(files.Config{Root: v.data, Domain: "default"}); err != nil {
		t.Fatal(err)
	}
	// Each test its own slice of ports, in this package's range (see
	// testenv's package comment); NewSession skips ports that are taken
	// anyway.
	base := 2000 + int(portBase.Add(1)%20)*200
	if v.pool, err = media.NewPortPool(base, base+198); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: parked sockets free their ports.
	t.Cleanup(func() { v.pool.Close() })
	log := slog.New(slog.NewTextHandler(v.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v.eng, err = New(Config{Domain: "default", Host: "n1", ScriptCacheTTL: 50 * time.Millisecond},
		Deps{Store: v.store, Files: v.files, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	err = v.eng.Register(snoopType, func(*Spec) (Component, error) { return snoopComp{v}, nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine log:\n%s", v.logs.String())
		}
	})
	return v
}

type snoopComp struct{ v *env }

func (c snoopComp) Run(_ context.Context, x *Exec) string {
	c.v.mu.Lock()
	fn := c.v.snoop
	c.v.mu.Unlock()
	if fn != nil {
		fn(x)
	}
	return ExitTransfer
}

func (v *env) setSnoop(fn func(x *Exec)) {
	v.mu.Lock()
	v.snoop = fn
	v.mu.Unlock()
}

func (v *env) setScript(id, js string) {
	v.t.Helper()
	if err := v.store.SetIVRScript(context.Background(), id, js); err != nil {
		v.t.Fatal(err)
	}
}

// storeFile returns the absolute path of a store path, for writing
// fixtures and reading results.
func (v *env) storeFile(path string) string {
	v.t.Helper()
	abs, err := v.files.ResolveForWrite("", path)
	if err != nil {
		v.t.Fatal(err)
	}
	return abs
}

// run runs script on ch and fails the test when it takes longer than limit.
func (v *env) run(t *testing.T, ch *testChannel, script string, limit time.Duration) Result {
	t.Helper()
	done := make(chan Result, 1)
	go func() { done <- v.eng.Run(context.Background(), ch, script) }()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		ch.callerHangup()
		t.Fatalf("script %q still running after %v", script, limit)
		return Result{}
	}
}

// waitComponent waits until a session runs a component of oType. Tests
// call it from goroutines that drive the caller, so it reports failure
// instead of failing the test: the test's assertions on the result do.
func (v *env) waitComponent(oType int) bool {
	return poll(5*time.Second, func() bool {
		for _, s := range v.eng.Sessions() {
			if s.OType == oType {
				return true
			}
		}
		return false
	})
}

// poll checks cond every few milliseconds until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// testChannel is the call leg: a real RTP session whose peer is the caller.
type testChannel struct {
	ref     string
	sess    *media.Session
	vars    map[string]string
	done    chan struct{}
	once    sync.Once
	hangups atomic.Int32

	mu       sync.Mutex
	transfer func(ctx context.Context, number string, mode int) TransferResult
}

func (c *testChannel) CallRef() string       { return c.ref }
func (c *testChannel) Media() *media.Session { return c.sess }
func (c *testChannel) Done() <-chan struct{} { return c.done }
func (c *testChannel) Variables() map[string]string {
	out := make(map[string]string, len(c.vars))
	for k, v := range c.vars {
		out[k] = v
	}
	return out
}
func (c *testChannel) Hangup(context.Context) error { c.hangups.Add(1); return nil }
func (c *testChannel) Transfer(ctx context.Context, number string, mode int) TransferResult {
	c.mu.Lock()
	fn := c.transfer
	c.mu.Unlock()
	if fn == nil {
		return TransferResult{Reason: "no route"}
	}
	return fn(ctx, number, mode)
}
func (c *testChannel) callerHangup() { c.once.Do(func() { close(c.done) }) }

// caller is the far end: it listens to what the IVR plays and presses keys.
type caller struct {
	t    *testing.T
	sess *media.Session

	mu     sync.Mutex
	pcm    []int16
	cancel context.CancelFunc
}

// newCall connects an IVR leg and a caller over 127.0.0.1.
func (v *env) newCall(t *testing.T, vars map[string]string) (*testChannel, *caller) {
	t.Helper()
	mk := func() *media.Session {
		s, err := media.NewSession("127.0.0.1", v.pool)
		if err != nil {
			t.Fatal(err)
		}
		s.SetCodec(media.PCMU)
		te := media.TelephoneEvent
		s.SetDTMF(&te)
		t.Cleanup(func() { s.Close() })
		return s
	}
	leg, far := mk(), mk()
	leg.SetRemote(udpAddr(far))
	far.SetRemote(udpAddr(leg))
	ch := &testChannel{ref: fmt.Sprintf("call-%d", leg.LocalPort()), sess: leg, vars: vars, done: make(chan struct{})}
	c := &caller{t: t, sess: far}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go far.Listen(ctx, media.HandlerFuncs{OnAudio: func(pcm []int16, _ uint16, _ uint32) {
		c.mu.Lock()
		c.pcm = append(c.pcm, pcm...)
		c.mu.Unlock()
	}})
	t.Cleanup(func() { cancel(); ch.callerHangup() })
	return ch, c
}

func (c *caller) samples() []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.pcm...)
}

func (c *caller) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pcm)
}

// waitAudio waits until the caller has heard at least n samples; like
// waitComponent it reports rather than fails.
func (c *caller) waitAudio(n int) bool {
	return poll(5*time.Second, func() bool { return c.received() >= n })
}

// press sends keys as RFC 4733 events. It runs in goroutines that may
// outlive the call, so a failure to send is only a log line: the test's
// assertions on what the IVR got decide.
func (c *caller) press(keys string) {
	for _, k := range keys {
		if err := c.sess.SendDTMF(context.Background(), k, 100*time.Millisecond); err != nil {
			fmt.Printf("caller: SendDTMF %c: %v\n", k, err)
			return
		}
	}
}

// stream sends src to the IVR until it ends or the test does.
func (c *caller) stream(src media.Source) {
	ctx, cancel := context.WithCancel(context.Background())
	c.t.Cleanup(cancel)
	go c.sess.Play(ctx, src)
}

func udpAddr(s *media.Session) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.LocalPort()}
}

// writeWAV writes 16-bit mono PCM at rate to path.
func writeWAV(t *testing.T, path string, rate int, pcm []int16) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*len(pcm)))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, uint16(1))
	binary.Write(&b, le, uint16(1))
	binary.Write(&b, le, uint32(rate))
	binary.Write(&b, le, uint32(2*rate))
	binary.Write(&b, le, uint16(2))
	binary.Write(&b, le, uint16(16))
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*len(pcm)))
	binary.Write(&b, le, pcm)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tone returns d of a sine at freq, amplitude half of full scale.
func tone(freq float64, rate int, d time.Duration) []int16 {
	n := int(d.Seconds() * float64(rate))
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(16384 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return pcm
}

// readWAV reads a recording back with media's reader.
func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	src, err := media.OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []int16
	buf := make([]int16, media.FrameSamples)
	for {
		n, err := src.ReadFrame(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// toneShare is the share of the audio's power at freq (near 1 for a pure
// tone).
func toneShare(pcm []int16, freq float64) float64 {
	total := media.MeanPower(pcm)
	if total == 0 {
		return 0
	}
	return media.Goertzel(pcm, freq, media.SampleRate) / total
}

// concat plays sources one after the other.
type concat []media.Source

func (c *concat) ReadFrame(pcm []int16) (int, error) {
	for len(*c) > 0 {
		n, err := (*c)[0].ReadFrame(pcm)
		if errors.Is(err, io.EOF) {
			*c = (*c)[1:]
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
	return 0, io.EOF
}
