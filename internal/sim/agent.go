package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// AgentConfig sets up a simulated queue agent.
type AgentConfig struct {
	// Phone is how the agent's phone answers: Addr, Ring/RingMax,
	// Talk/TalkMax, ToneHz, Seed and the RTP range count; an agent answers
	// every call it is free for and is busy (486) while in one.
	Phone Config
	// Registrar is the node's UDP SIP address (host:port).
	Registrar string
	// Ext and Password are the user of cti_user@<domain> the agent
	// registers as (digest auth).
	Ext, Password string
	// Expires is the registration's lifetime (default 120 s); the agent
	// renews it at half that.
	Expires time.Duration
}

// Agent is a simulated agent's phone: it registers to the node, renews
// its registration, answers what the node offers it and unregisters when
// stopped.
type Agent struct {
	*Sim
	cfg  AgentConfig
	log  *slog.Logger
	call string // the Call-ID of every REGISTER (RFC 3261 10.2.4)
	seq  uint32

	registered atomic.Bool
	regs       atomic.Int64
}

// NewAgent binds the agent's socket.
func NewAgent(cfg AgentConfig, log *slog.Logger) (*Agent, error) {
	if cfg.Ext == "" || cfg.Registrar == "" {
		return nil, errors.New("sim: agent: Ext and Registrar are required")
	}
	if cfg.Expires <= 0 {
		cfg.Expires = 120 * time.Second
	}
	phone := cfg.Phone
	phone.AnswerPct, phone.BusyPct, phone.OneCall = 100, 0, true
	if log == nil {
		log = slog.Default()
	}
	s, err := New(phone, log)
	if err != nil {
		return nil, fmt.Errorf("sim: agent %s: %w", cfg.Ext, err)
	}
	return &Agent{Sim: s, cfg: cfg, log: log.With("component", "sim-agent", "ext", cfg.Ext), call: gosip.GenerateTagN(24)}, nil
}

// Registered reports whether the last REGISTER succeeded.
func (a *Agent) Registered() bool { return a.registered.Load() }

// Registrations counts the successful REGISTERs.
func (a *Agent) Registrations() int64 { return a.regs.Load() }

// Run registers, answers calls and renews the registration until ctx is
// cancelled; then it unregisters (for up to 2 s) and closes its socket. A
// failed REGISTER is retried every second.
func (a *Agent) Run(ctx context.Context) error {
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Sim.Run(sctx) }()
	served := false
	defer func() {
		stop()
		if !served {
			<-done
		}
	}()
	for {
		wait := time.Second
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := a.register(rctx, a.cfg.Expires)
		cancel()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			a.registered.Store(false)
			a.log.Warn("sim: agent: REGISTER failed; retrying", "error", err)
		default:
			a.registered.Store(true)
			a.regs.Add(1)
			wait = a.cfg.Expires / 2
		}
		select {
		case <-ctx.Done():
			if a.registered.Load() {
				uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if err := a.register(uctx, 0); err != nil {
					a.log.Debug("sim: agent: unREGISTER failed", "error", err)
				}
				cancel()
				a.registered.Store(false)
			}
			return nil
		case err := <-done:
			served = true
			return err
		case <-time.After(wait):
		}
	}
}

// register sends one REGISTER (expires 0 removes the binding), answering
// the registrar's digest challenge.
func (a *Agent) register(ctx context.Context, expires time.Duration) error {
	if err := a.waitServing(ctx); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(a.cfg.Registrar)
	if err != nil {
		return fmt.Errorf("registrar %q: %w", a.cfg.Registrar, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("registrar %q: port: %w", a.cfg.Registrar, err)
	}
	lhost, lport, _ := net.SplitHostPort(a.Addr())
	lp, _ := strconv.Atoi(lport)
	aor := gosip.Uri{Scheme: "sip", User: a.cfg.Ext, Host: host}
	req := gosip.NewRequest(gosip.REGISTER, gosip.Uri{Scheme: "sip", Host: host, Port: p})
	from := &gosip.FromHeader{Address: aor, Params: gosip.NewParams()}
	from.Params.Add("tag", gosip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&gosip.ToHeader{Address: aor, Params: gosip.NewParams()})
	cid := gosip.CallIDHeader(a.call)
	req.AppendHeader(&cid)
	a.seq++
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: a.seq, MethodName: gosip.REGISTER})
	req.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: a.cfg.Ext, Host: lhost, Port: lp}})
	req.AppendHeader(gosip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	req.AppendHeader(gosip.NewHeader("User-Agent", "redial-sim-agent"))
	res, err := a.cli.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) {
		a.seq++
		res, err = a.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: a.cfg.Ext, Password: a.cfg.Password})
	}
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("REGISTER %s: %d %s", a.cfg.Ext, res.StatusCode, res.Reason)
	}
	return nil
}
