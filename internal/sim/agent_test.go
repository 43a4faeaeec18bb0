package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"redial/internal/media"
	"redial/internal/testenv"
)

// registrar is a minimal digest-checking registrar: it challenges every
// REGISTER without credentials and keeps the Contact and Expires of the
// ones with the right password.
type registrar struct {
	addr string
	ua   *sipgo.UserAgent

	mu       sync.Mutex
	contact  string
	expires  []string
	refused  int
	password string
}

func startRegistrar(t *testing.T, password string) *registrar {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	r := &registrar{addr: conn.LocalAddr().String(), ua: ua, password: password}
	chal := &digest.Challenge{Realm: "test", Nonce: "n0nce", Algorithm: "MD5"}
	srv.OnRegister(func(req *gosip.Request, tx gosip.ServerTransaction) {
		h := req.GetHeader("Authorization")
		if h == nil {
			res := gosip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(gosip.NewHeader("WWW-Authenticate", chal.String()))
			tx.Respond(res)
			return
		}
		cred, err := digest.ParseCredentials(h.Value())
		want, derr := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: cred.URI, Username: "2001", Password: r.password})
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil || derr != nil || cred.Username != "2001" || cred.Response != want.Response {
			r.refused++
			tx.Respond(gosip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		}
		r.contact = req.Contact().Address.HostPort()
		r.expires = append(r.expires, req.GetHeader("Expires").Value())
		tx.Respond(gosip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go srv.ServeUDP(conn)
	t.Cleanup(func() { conn.Close(); ua.Close() })
	return r
}

func (r *registrar) state() (contact string, expires []string, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.contact, append([]string(nil), r.expires...), r.refused
}

// An agent registers with digest auth, answers a call after its ring time,
// hangs up after its talk time, is busy for a second call meanwhile, and
// unregisters when stopped.
func TestAgentRegistersAnswersAndUnregisters(t *testing.T) {
	reg := startRegistrar(t, "s3cret")
	agent, err := NewAgent(AgentConfig{Registrar: reg.addr, Ext: "2001", Password: "s3cret", Expires: 60 * time.Second,
		Phone: Config{Addr: "127.0.0.1:0", Ring: 200 * time.Millisecond, RingMax: 300 * time.Millisecond,
			Talk: 700 * time.Millisecond, TalkMax: 900 * time.Millisecond, Seed: 1, RTPMin: 1100, RTPMax: 1199}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if c, _, _ := reg.state(); c != agent.Addr() || !agent.Registered() {
			return fmt.Errorf("contact %q, registered %v; want %s", c, agent.Registered(), agent.Addr())
		}
		return nil
	})
	if _, exp, refused := reg.state(); refused != 0 || len(exp) != 1 || exp[0] != "60" {
		t.Fatalf("expires %v, refused %d: want one REGISTER for 60 s", exp, refused)
	}

	caller, err := New(Config{Addr: "127.0.0.1:0", AnswerPct: 100, Seed: 2, RTPMin: 1200, RTPMax: 1299}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	go caller.Run(cctx)
	type result struct {
		answered bool
		err      error
		took     time.Duration
	}
	first := make(chan result, 1)
	go func() {
		start := time.Now()
		ok, err := caller.Call(ctx, agent.Addr(), "2001", "15550001", 5*time.Second)
		first <- result{ok, err, time.Since(start)}
	}()
	testenv.WaitFor(t, 3*time.Second, func() error {
		if n := agent.Stats().Answered; n != 1 {
			select {
			case r := <-first:
				t.Fatalf("first call ended: %+v %v", r, r.err)
			default:
			}
			return fmt.Errorf("agent answered %d (%+v)", n, agent.Stats())
		}
		return nil
	})
	// One line: a second call while talking is busy.
	if ok, err := caller.Call(ctx, agent.Addr(), "2001", "15550002", 2*time.Second); ok || !errors.Is(err, ErrNotAnswered) || !strings.Contains(err.Error(), "486") {
		t.Fatalf("second call: answered %v, %v; want 486", ok, err)
	}
	r := <-first
	if !r.answered || r.err != nil {
		t.Fatalf("first call: answered %v, %v", r.answered, r.err)
	}
	// Ring 200-300 ms, then the agent hangs up after 700-900 ms of talk.
	if r.took < 850*time.Millisecond || r.took > 3*time.Second {
		t.Fatalf("call took %v; want ring + talk, about 0.9-1.2 s", r.took)
	}
	if st := caller.Stats(); st.Answered != 1 || st.Busy != 1 {
		t.Fatalf("caller stats %+v", st)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, exp, _ := reg.state(); len(exp) != 2 || exp[1] != "0" {
		t.Fatalf("expires %v: want an unREGISTER (0) last", exp)
	}
}

// A wrong password is refused and retried, never reported registered.
func TestAgentWrongPassword(t *testing.T) {
	reg := startRegistrar(t, "right")
	agent, err := NewAgent(AgentConfig{Registrar: reg.addr, Ext: "2001", Password: "wrong",
		Phone: Config{Addr: "127.0.0.1:0", Seed: 1, RTPMin: 1300, RTPMax: 1399}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if _, _, refused := reg.state(); refused < 2 {
			return fmt.Errorf("refused %d REGISTERs; want it retried", refused)
		}
		return nil
	})
	if agent.Registered() {
		t.Fatal("registered with a wrong password")
	}
	cancel()
	<-done
}

// Generated prompts are WAV files the media engine plays, as long as the
// notes written.
func TestWriteTones(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b.wav")
	if err := WriteTones(path, []Tone{{Hz: 440, Dur: 300 * time.Millisecond}, {Dur: 200 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	w, err := media.OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if d := w.Info().Duration(); d != 500*time.Millisecond {
		t.Fatalf("duration %v, want 500ms", d)
	}
	pcm := make([]int16, media.FrameSamples)
	if n, _ := w.ReadFrame(pcm); n == 0 {
		t.Fatal("no samples")
	}
	loud := false
	for _, v := range pcm {
		loud = loud || v > 4000 || v < -4000
	}
	if !loud {
		t.Fatal("the tone is silent")
	}
}
