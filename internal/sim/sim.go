// Package sim is the demo's simulated carrier, destination, callers and
// agents: a SIP user agent that answers, rejects or lets ring the calls it
// receives and plays a tone on answered calls, and an Agent that registers
// as a queue agent and answers what the node offers it. Tests never use it
// as their peer; they use SIPp.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"redial/internal/media"
)

// Config sets how the simulator behaves.
type Config struct {
	// Addr is the UDP listen address, e.g. 127.0.0.1:5080.
	Addr string
	// AnswerPct, BusyPct: shares of calls answered and busy; the rest ring
	// until cancelled.
	AnswerPct, BusyPct int
	// Ring is the ringing time before answer or busy (randomised ±50%, or
	// uniform from Ring to RingMax when RingMax is longer).
	Ring, RingMax time.Duration
	// Talk is how long an answered call lasts before the simulator hangs up
	// (randomised ±50%, or uniform from Talk to TalkMax when TalkMax is
	// longer); 0 waits for the other side's BYE.
	Talk, TalkMax time.Duration
	// DTMF, when set, are the keys the simulator may press on an answered
	// call: one of them, picked at random, DTMFAfter after the answer (an
	// IVR's caller choosing from a menu). Sent as RFC 4733 events when the
	// other side offered telephone-event.
	DTMF      string
	DTMFAfter time.Duration
	// OneCall makes the simulator a phone with one line: an INVITE while
	// it is in a call (ringing or talking) is answered 486.
	OneCall bool
	// ToneHz is the tone played on answered calls.
	ToneHz float64
	// Seed makes the outcomes repeatable.
	Seed uint64
	// RTPMin, RTPMax is the simulator's own RTP port range.
	RTPMin, RTPMax int
}

// Stats counts what the simulator did.
type Stats struct {
	Invites, Answered, Busy, Ringing, Cancelled int64
}

// Sim is a running simulated SIP endpoint.
type Sim struct {
	cfg   Config
	log   *slog.Logger
	ports *media.PortPool
	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	cli   *sipgo.Client
	dlg   *sipgo.DialogServerCache
	dlc   *sipgo.DialogClientCache
	conn  net.PacketConn

	mu  sync.Mutex
	rnd *rand.Rand

	invites, answered, busy, ringing, cancelled atomic.Int64
	// inCall counts the calls between INVITE and their end (OneCall).
	inCall atomic.Int64
}

// New binds the simulator's socket.
func New(cfg Config, log *slog.Logger) (*Sim, error) {
	if cfg.Ring == 0 {
		cfg.Ring = 800 * time.Millisecond
	}
	if cfg.ToneHz == 0 {
		cfg.ToneHz = 440
	}
	if cfg.RTPMin == 0 {
		cfg.RTPMin, cfg.RTPMax = 10000, 15999
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sim{cfg: cfg, log: log.With("component", "sim", "addr", cfg.Addr), rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	var err error
	if s.ports, err = media.NewPortPool(cfg.RTPMin, cfg.RTPMax); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if s.conn, err = net.ListenPacket("udp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("sim: listen %s: %w", cfg.Addr, err)
	}
	host, port, _ := net.SplitHostPort(s.conn.LocalAddr().String())
	if s.ua, err = sipgo.NewUA(sipgo.WithUserAgent("redial-sim"), sipgo.WithUserAgentHostname(host)); err != nil {
		return nil, err
	}
	if s.srv, err = sipgo.NewServer(s.ua); err != nil {
		return nil, err
	}
	// Requests (BYE, an Agent's REGISTER) leave from the listening
	// socket, so that the other side answers and calls back there.
	if s.cli, err = sipgo.NewClient(s.ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(s.conn.LocalAddr().String())); err != nil {
		return nil, err
	}
	var p int
	fmt.Sscan(port, &p)
	s.dlg = sipgo.NewDialogServerCache(s.cli, gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "sim", Host: host, Port: p}})
	s.srv.OnInvite(s.onInvite)
	s.srv.OnAck(func(req *gosip.Request, tx gosip.ServerTransaction) { s.dlg.ReadAck(req, tx) })
	s.dlc = sipgo.NewDialogClientCache(s.cli, gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "sim", Host: host, Port: p}})
	s.srv.OnBye(func(req *gosip.Request, tx gosip.ServerTransaction) {
		// A BYE ends a call the simulator answered or one it placed.
		if s.dlg.ReadBye(req, tx) != nil && s.dlc.ReadBye(req, tx) != nil {
			tx.Respond(gosip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	s.srv.OnOptions(func(req *gosip.Request, tx gosip.ServerTransaction) {
		tx.Respond(gosip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return s, nil
}

// Addr is the bound address.
func (s *Sim) Addr() string { return s.conn.LocalAddr().String() }

// Stats returns the counters.
func (s *Sim) Stats() Stats {
	return Stats{Invites: s.invites.Load(), Answered: s.answered.Load(), Busy: s.busy.Load(),
		Ringing: s.ringing.Load(), Cancelled: s.cancelled.Load()}
}

// Run serves until ctx is cancelled.
func (s *Sim) Run(ctx context.Context) error {
	// Parked RTP sockets would hold their ports after the simulator,
	// however it stops.
	defer func() {
		if err := s.ports.Close(); err != nil {
			s.log.Warn("sim: closing parked rtp sockets", "error", err)
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeUDP(s.conn) }()
	select {
	case <-ctx.Done():
		s.conn.Close()
		s.ua.Close()
		return nil
	case err := <-errc:
		return err
	}
}

// span is a duration from d's range: uniform from d to upTo when upTo is
// longer, else d ±50%.
func (s *Sim) span(d, upTo time.Duration) time.Duration {
	if d <= 0 && upTo <= 0 {
		return 0
	}
	s.mu.Lock()
	f := s.rnd.Float64()
	s.mu.Unlock()
	if upTo > d {
		return d + time.Duration(float64(upTo-d)*f)
	}
	return time.Duration(float64(d) * (0.5 + f))
}

// key picks one of the DTMF keys.
func (s *Sim) key() rune {
	keys := []rune(s.cfg.DTMF)
	s.mu.Lock()
	defer s.mu.Unlock()
	return keys[s.rnd.IntN(len(keys))]
}

func (s *Sim) outcome() string {
	s.mu.Lock()
	n := s.rnd.IntN(100)
	s.mu.Unlock()
	switch {
	case n < s.cfg.AnswerPct:
		return "answer"
	case n < s.cfg.AnswerPct+s.cfg.BusyPct:
		return "busy"
	}
	return "ring"
}

// onInvite must not return before a final response: sipgo ends the
// transaction when the handler returns.
func (s *Sim) onInvite(req *gosip.Request, tx gosip.ServerTransaction) {
	s.invites.Add(1)
	if n := s.inCall.Add(1); s.cfg.OneCall && n > 1 {
		s.inCall.Add(-1)
		s.busy.Add(1)
		tx.Respond(gosip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		return
	}
	defer s.inCall.Add(-1)
	d, err := s.dlg.ReadInvite(req, tx)
	if err != nil {
		tx.Respond(gosip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer d.Close()
	remote, err := media.ParseSDP(req.Body())
	if err != nil {
		d.Respond(488, "Not Acceptable Here", nil)
		return
	}
	codec, dtmf, err := media.Negotiate(remote, []media.Codec{media.PCMU, media.PCMA})
	if err != nil {
		d.Respond(488, "Not Acceptable Here", nil)
		return
	}
	d.Respond(100, "Trying", nil)
	d.Respond(180, "Ringing", nil)
	what := s.outcome()
	ring := s.span(s.cfg.Ring, s.cfg.RingMax)
	if what == "ring" {
		s.ringing.Add(1)
		<-d.Context().Done()
		s.cancelled.Add(1)
		return
	}
	select {
	case <-time.After(ring):
	case <-d.Context().Done():
		s.cancelled.Add(1)
		return
	}
	if what == "busy" {
		s.busy.Add(1)
		d.Respond(486, "Busy Here", nil)
		return
	}
	s.talk(d, remote, codec, dtmf)
}

// talk answers d with SDP, plays the tone (pressing a key if the config
// says so) for the talk time or until the other side hangs up, and then
// hangs up itself.
func (s *Sim) talk(d *sipgo.DialogServerSession, remote media.RemoteMedia, codec media.Codec, dtmf *media.Codec) {
	sess, err := media.NewSession("0.0.0.0", s.ports)
	if err != nil {
		d.Respond(503, "Service Unavailable", nil)
		return
	}
	defer sess.Close()
	sess.SetRemote(remote.Addr)
	sess.SetCodec(codec)
	codecs := []media.Codec{codec}
	if dtmf != nil {
		codecs = append(codecs, *dtmf)
		sess.SetDTMF(dtmf)
	}
	host, _, _ := net.SplitHostPort(s.Addr())
	answer := media.BuildSDP(media.SDPOffer{IP: host, Port: sess.LocalPort(), Codecs: codecs})
	if err := d.RespondSDP(answer); err != nil {
		return
	}
	s.answered.Add(1)
	s.converse(d.Context(), d.Context(), sess, dtmf, d.Bye)
}

// converse is an answered call's media, whichever side called: it plays
// the tone on sess (pressing a key if the config says so) until the talk
// time is up or ctx ends (the dialog ending among others), and then hangs
// up with bye unless the dialog (dctx) already ended.
func (s *Sim) converse(ctx, dctx context.Context, sess *media.Session, dtmf *media.Codec, bye func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if talk := s.span(s.cfg.Talk, s.cfg.TalkMax); talk > 0 {
		ctx, cancel = context.WithTimeout(ctx, talk)
		defer cancel()
	}
	if s.cfg.DTMF != "" && dtmf != nil {
		key := s.key()
		pressed := make(chan struct{})
		// The key is sent before the session closes.
		defer func() { <-pressed }()
		defer cancel()
		go func() {
			defer close(pressed)
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.DTMFAfter):
				sess.SendDTMF(ctx, key, 160*time.Millisecond)
			}
		}()
	}
	// Drain what the other side sends so its packets are not refused.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := sess.ReadPacket(buf); err != nil {
				return
			}
		}
	}()
	sess.Play(ctx, media.NewTone(s.cfg.ToneHz, 8000, 0))
	if dctx.Err() == nil {
		bctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		bye(bctx)
		cancel()
	}
}

// waitServing returns once Run serves the socket: requests sent from it
// before then fail (sipgo takes the socket from its pool of served ones).
func (s *Sim) waitServing(ctx context.Context) error {
	for {
		if c, err := s.ua.TransportLayer().GetConnection("udp", s.Addr()); err == nil && c != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: %s is not served (Run): %w", s.Addr(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
