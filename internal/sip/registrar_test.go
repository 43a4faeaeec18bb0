package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/store"
	"redial/internal/testenv"
)

// storeUsers is the app's adapter in small: a disabled user is not ok.
type storeUsers struct {
	s       *store.Store
	lookups atomic.Int32
}

func (u *storeUsers) Password(ctx context.Context, ext string) (string, bool, error) {
	u.lookups.Add(1)
	usr, found, err := u.s.User(ctx, ext)
	if err != nil || !found || !usr.Enable {
		return "", false, err
	}
	return usr.Password, true, nil
}

// storeBindings adapts the store's bindings to BindingStore.
type storeBindings struct{ s *store.Store }

func (b storeBindings) PutBinding(ctx context.Context, x Binding) error {
	return b.s.PutBinding(ctx, store.Binding(x))
}

func (b storeBindings) RemoveBinding(ctx context.Context, ext, id string) error {
	return b.s.RemoveBinding(ctx, ext, id)
}

func (b storeBindings) RemoveBindingsBySource(ctx context.Context, node, transport, source string) (int, error) {
	return b.s.RemoveBindingsBySource(ctx, node, transport, source)
}

func (b storeBindings) Bindings(ctx context.Context, ext string, now time.Time) ([]Binding, error) {
	bs, err := b.s.Bindings(ctx, ext, now)
	out := make([]Binding, len(bs))
	for i := range bs {
		out[i] = Binding(bs[i])
	}
	return out, err
}

// regEnv is a node with a registrar on a real Redis.
type regEnv struct {
	e     *Engine
	reg   *Registrar
	st    *store.Store
	users *storeUsers
	prom  *prometheus.Registry
}

// testUsers are the agents of domain "acme" the registrar tests use.
var testUsers = map[string]string{
	"1001": `{"params": {"password": "s3cret", "name": "Alice"}}`,
	"1002": `{"params": {"password": "s3cret", "enable": false}}`,
	"1003": `{"params": {"password": 1003}}`,
}

// startRegistrar runs a node (UDP and TCP) with a registrar for domain
// "acme" on r (a new Redis when nil); adjust changes the registrar before
// the engine gets it.
func startRegistrar(t *testing.T, r *testenv.Redis, node string, auth AuthLimits, adjust ...func(*Registrar)) *regEnv {
	t.Helper()
	if r == nil {
		r = testenv.StartRedis(t)
	}
	st := store.NewWithClient(r.Client, store.Config{Domain: "acme"})
	ctx := context.Background()
	for ext, v := range testUsers {
		if err := st.SetUser(ctx, ext, v); err != nil {
			t.Fatal(err)
		}
	}
	prom := prometheus.NewRegistry()
	e := startEngineWith(t, engineOpts{tcp: true, cfg: Config{Auth: auth}, deps: Deps{Secret: st.DigestSecret, Registry: prom}})
	users := &storeUsers{s: st}
	reg, err := NewRegistrar(RegistrarConfig{Domain: "acme", Node: node}, users, storeBindings{st},
		slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range adjust {
		f(reg)
	}
	e.SetRegistrar(reg)
	return &regEnv{e: e, reg: reg, st: st, users: users, prom: prom}
}

// results reads redial_sip_registrations_total by result.
func (env *regEnv) results(t testing.TB) map[string]float64 {
	t.Helper()
	mfs, err := env.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "redial_sip_registrations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				out[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return out
}

// registered reads the redial_agents_registered gauge.
func (env *regEnv) registered(t testing.TB) float64 {
	t.Helper()
	return testenv.MustMetric(t, env.prom, "redial_agents_registered", nil)
}

func sameResults(got, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// sippReg is one run of testdata/sipp/uac_register.xml.
type sippReg struct {
	transport      string // "udp" (default) or "tcp"
	user, password string
	expected       string // "200", "403" or "blocked"
	expires        int
	calls          int    // -m, default 1 (one at a time)
	port           int    // SIPp's local port, 0 for a free one
	digestUser     string // -au when not user
}

// sippRegister runs SIPp as an agent against env's node and waits for it;
// any call ending otherwise than o.expected fails the test.
func sippRegister(t *testing.T, e *Engine, o sippReg) *testenv.Sipp {
	t.Helper()
	if o.calls == 0 {
		o.calls = 1
	}
	au := o.user
	if o.digestUser != "" {
		au = o.digestUser
	}
	args := []string{"-s", o.user, "-au", au, "-ap", o.password, "-set", "expected", o.expected,
		"-set", "expires", strconv.Itoa(o.expires), "-m", strconv.Itoa(o.calls), "-l", "1", "-timeout", "30s"}
	remote := e.Addr("udp")
	if o.transport == "tcp" {
		args = append(args, "-t", "t1")
		remote = e.Addr("tcp")
	}
	s := testenv.StartSipp(t, testenv.SippOptions{Scenario: "../../testdata/sipp/uac_register.xml", Args: args,
		Remote: remote, Port: o.port, Trace: true})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("sipp REGISTER as %s over %s, expecting %s: %v\n%s", o.user, remote, o.expected, err, s.Output())
	}
	return s
}

// bindingOver returns the binding of ext over transport, failing the test
// when there is not exactly one.
func bindingOver(t *testing.T, env *regEnv, ext, transport string) store.Binding {
	t.Helper()
	bs, err := env.st.Bindings(context.Background(), ext, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var found []store.Binding
	for _, b := range bs {
		if b.Transport == transport {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s bindings of %s, want 1: %+v", len(found), transport, ext, bs)
	}
	return found[0]
}

// An agent registering over UDP and over TCP is challenged, then bound:
// the binding in Redis names the node, transport, source, contact, user
// agent and expiry; Expires 0 from the same contact removes it.
func TestRegisterOverUDPAndTCP(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	ports := map[string]int{}
	for _, tr := range []string{"udp", "tcp"} {
		before := time.Now()
		s := sippRegister(t, env.e, sippReg{transport: tr, user: "1001", password: "s3cret", expected: "200", expires: 600})
		after := time.Now()
		ports[tr] = s.Port
		b := bindingOver(t, env, "1001", tr)
		host, port, err := net.SplitHostPort(b.Source)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s binding source %q, want 127.0.0.1:<port>", tr, b.Source)
		}
		if tr == "udp" && port != strconv.Itoa(s.Port) {
			t.Errorf("udp binding source %q, want SIPp's port %d", b.Source, s.Port)
		}
		wantContact := fmt.Sprintf("sip:1001@127.0.0.1:%d;transport=%s", s.Port, strings.ToUpper(tr))
		if b.Node != "node-a" || b.Ext != "1001" || b.Contact != wantContact || b.ID != wantContact ||
			b.UserAgent != "redial-test-agent/1.0" {
			t.Errorf("%s binding = %+v, want node node-a, contact and id %s, user agent redial-test-agent/1.0", tr, b, wantContact)
		}
		if b.Expires.Before(before.Add(600*time.Second).Truncate(time.Second)) || b.Expires.After(after.Add(600*time.Second)) {
			t.Errorf("%s binding expires %v, want 600 s after %v", tr, b.Expires, before)
		}
	}
	if got, want := env.results(t), map[string]float64{"challenged": 2, "ok": 2}; !sameResults(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if n := env.registered(t); n != 2 {
		t.Errorf("redial_agents_registered = %v, want 2", n)
	}

	// Expires 0 from the same contact (same SIPp port) removes that
	// binding and no other.
	sippRegister(t, env.e, sippReg{user: "1001", password: "s3cret", expected: "200", expires: 0, port: ports["udp"]})
	bs, err := env.st.Bindings(context.Background(), "1001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Transport != "tcp" {
		t.Fatalf("after Expires 0 over UDP: %+v, want only the TCP binding", bs)
	}
	if got, want := env.results(t), map[string]float64{"challenged": 3, "ok": 2, "removed": 1}; !sameResults(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if n := env.registered(t); n != 1 {
		t.Errorf("redial_agents_registered = %v, want 1", n)
	}
}

// A wrong password, an unknown user, a disabled user and a digest
// username other than the To user are all refused with 403 and counted;
// nothing is bound.
func TestRegisterRefused(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	sippRegister(t, env.e, sippReg{user: "1001", password: "wrong", expected: "403", expires: 600})
	sippRegister(t, env.e, sippReg{user: "9999", password: "s3cret", expected: "403", expires: 600})
	sippRegister(t, env.e, sippReg{user: "1002", password: "s3cret", expected: "403", expires: 600})
	// 1003's own password, sent for 1001.
	sippRegister(t, env.e, sippReg{user: "1001", digestUser: "1003", password: "1003", expected: "403", expires: 600})
	all, err := env.st.AllBindings(context.Background(), time.Now())
	if err != nil || len(all) != 0 {
		t.Fatalf("bindings after refusals: %+v, %v", all, err)
	}
	if got, want := env.results(t), map[string]float64{"challenged": 4, "forbidden": 4}; !sameResults(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if got := testenv.MustMetric(t, env.prom, "redial_sip_auth_failures_total", nil); got != 4 {
		t.Errorf("redial_sip_auth_failures_total = %v, want 4", got)
	}
	// The right password still works: four mistakes are not a lockout.
	sippRegister(t, env.e, sippReg{user: "1003", password: "1003", expected: "200", expires: 600})
}

// A flood of wrong passwords from one address gets it blocked: later
// REGISTERs from it, even with the right password, are refused with 403
// at once, without a challenge or a password lookup, and counted.
func TestRegisterFloodBlocked(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	sippRegister(t, env.e, sippReg{user: "1001", password: "guess", expected: "403", expires: 600, calls: 5})
	lookups := env.users.lookups.Load()
	if lookups != 5 {
		t.Fatalf("%d password lookups for 5 guesses", lookups)
	}
	sippRegister(t, env.e, sippReg{user: "1001", password: "s3cret", expected: "blocked", expires: 600, calls: 3})
	// Right credentials on a fresh nonce, sent straight away: refused
	// unchecked too.
	chal := &digest.Challenge{Realm: "acme", Nonce: env.e.newNonce(time.Now()), Algorithm: "MD5"}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + env.e.Addr("udp"), Username: "1001", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	_, res := newRegClient(t, "127.0.0.1").register(regOpts{to: env.e.Addr("udp"), ext: "1001", authorization: cred.String(),
		contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 403 {
		t.Fatalf("blocked source with the right credentials: %d, want 403", res.StatusCode)
	}
	if n := env.users.lookups.Load(); n != lookups {
		t.Errorf("the blocked source's REGISTERs were looked up: %d lookups, want %d", n, lookups)
	}
	if all, _ := env.st.AllBindings(context.Background(), time.Now()); len(all) != 0 {
		t.Fatalf("a blocked source was bound: %+v", all)
	}
	if got, want := env.results(t), map[string]float64{"challenged": 5, "forbidden": 5, "blocked": 4}; !sameResults(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if got := testenv.MustMetric(t, env.prom, "redial_sip_auth_blocked_total", nil); got != 4 {
		t.Errorf("redial_sip_auth_blocked_total = %v, want 4", got)
	}
	// Another address is still served.
	_, res = newRegClient(t, "127.0.0.2").register(regOpts{to: env.e.Addr("udp"), ext: "1001", password: "s3cret",
		contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER from another address: %d, want 200", res.StatusCode)
	}
}

// regClient is an agent of the test's on a fixed loopback address.
type regClient struct {
	t    *testing.T
	c    *sipgo.Client
	addr string
}

func newRegClient(t *testing.T, host string) *regClient {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	addr := host + ":" + strconv.Itoa(testenv.FreePort(t))
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	return &regClient{t: t, c: c, addr: addr}
}

// regOpts is one REGISTER of a regClient.
type regOpts struct {
	to       string // the node's address
	ext      string // To user
	user     string // digest username ("" = ext)
	password string
	contacts []string // Contact header values
	expires  string   // Expires header, "" for none
	// retryTo is where the authenticated retry goes ("" = to).
	retryTo string
	// nonce replaces the challenge's nonce in the credentials.
	nonce string
	// authorization is sent with the first REGISTER already.
	authorization string
}

// register sends a REGISTER and, when challenged, its retry with
// credentials; it returns the first and the last response.
func (c *regClient) register(o regOpts) (first, last *gosip.Response) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var uri gosip.Uri
	if err := gosip.ParseUri("sip:"+o.to, &uri); err != nil {
		c.t.Fatal(err)
	}
	req := gosip.NewRequest(gosip.REGISTER, uri)
	// Browsers name anything here; the registrar takes the user only.
	aor := gosip.Uri{Scheme: "sip", User: o.ext, Host: "agents.example.invalid"}
	from := &gosip.FromHeader{Address: aor, Params: gosip.NewParams()}
	from.Params.Add("tag", gosip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&gosip.ToHeader{Address: aor, Params: gosip.NewParams()})
	for _, ct := range o.contacts {
		req.AppendHeader(gosip.NewHeader("Contact", ct))
	}
	if o.expires != "" {
		req.AppendHeader(gosip.NewHeader("Expires", o.expires))
	}
	if o.authorization != "" {
		req.AppendHeader(gosip.NewHeader("Authorization", o.authorization))
	}
	first, err := c.c.Do(ctx, req)
	if err != nil {
		c.t.Fatalf("REGISTER %s: %v", o.ext, err)
	}
	if first.StatusCode != 401 {
		return first, first
	}
	h := first.GetHeader("WWW-Authenticate")
	if h == nil {
		c.t.Fatal("401 without WWW-Authenticate")
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		c.t.Fatal(err)
	}
	if chal.Realm != "acme" {
		c.t.Fatalf("challenge realm %q, want the domain acme", chal.Realm)
	}
	if o.nonce != "" {
		chal.Nonce = o.nonce
	}
	user := o.user
	if user == "" {
		user = o.ext
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: req.Recipient.String(), Username: user, Password: o.password})
	if err != nil {
		c.t.Fatal(err)
	}
	retry := req.Clone()
	retry.RemoveHeader("Via")
	retry.CSeq().SeqNo++
	retry.AppendHeader(gosip.NewHeader("Authorization", cred.String()))
	if o.retryTo != "" {
		retry.SetDestination(o.retryTo)
	}
	last, err = c.c.Do(ctx, retry, sipgo.ClientRequestAddVia)
	if err != nil {
		c.t.Fatalf("authenticated REGISTER %s: %v", o.ext, err)
	}
	return first, last
}

// contactsOf returns the Contacts of a response: URI -> expires param.
func contactsOf(t *testing.T, res *gosip.Response) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*gosip.ContactHeader)
		if !ok {
			t.Fatalf("unparsed Contact %q", h.Value())
		}
		v, _ := c.Params.Get("expires")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("Contact %q without a numeric expires", c.Value())
		}
		out[c.Address.String()] = n
	}
	return out
}

// near reports whether got is want seconds give or take 2.
func near(got, want int) bool { return math.Abs(float64(got-want)) <= 2 }

// The expiry rules of RFC 3261 10.3: per-Contact expires over the Expires
// header over the default, clamped to the maximum; too brief is 423 with
// Min-Expires; a REGISTER without Contact lists the bindings; "*" with
// Expires 0 removes the user's bindings from this source only.
func TestRegisterContactsAndExpiry(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	to := env.e.Addr("udp")
	agent := newRegClient(t, "127.0.0.1")
	_, res := agent.register(regOpts{to: to, ext: "1001", password: "s3cret", expires: "300",
		contacts: []string{"<sip:1001@10.0.0.1:5060>;expires=120", "<sip:1001@10.0.0.2:5060>", "<sip:1001@10.0.0.3:5060>;expires=99999"}})
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	got := contactsOf(t, res)
	if len(got) != 3 || !near(got["sip:1001@10.0.0.1:5060"], 120) || !near(got["sip:1001@10.0.0.2:5060"], 300) || !near(got["sip:1001@10.0.0.3:5060"], 3600) {
		t.Fatalf("200 lists %v; want expires 120, 300 and 3600 (clamped)", got)
	}

	// No Expires anywhere: the default, 600 s.
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret", contacts: []string{"<sip:1001@10.0.0.4:5060>"}})
	if got := contactsOf(t, res); res.StatusCode != 200 || len(got) != 4 || !near(got["sip:1001@10.0.0.4:5060"], 600) {
		t.Fatalf("REGISTER without expiry: %d, %v; want the default 600 s", res.StatusCode, got)
	}

	// Too brief: 423 with Min-Expires, and nothing changes.
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret", expires: "30", contacts: []string{"<sip:1001@10.0.0.5:5060>"}})
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "60" {
		t.Fatalf("REGISTER for 30 s: %d, Min-Expires %v; want 423 with Min-Expires: 60", res.StatusCode, res.GetHeader("Min-Expires"))
	}

	// A binding from another address.
	other := newRegClient(t, "127.0.0.2")
	_, res = other.register(regOpts{to: to, ext: "1001", password: "s3cret", contacts: []string{"<sip:1001@10.0.1.1:5060>"}})
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER from 127.0.0.2: %d", res.StatusCode)
	}

	// No Contact: a query.
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret"})
	if got := contactsOf(t, res); res.StatusCode != 200 || len(got) != 5 {
		t.Fatalf("query: %d, %v; want the 5 bindings", res.StatusCode, got)
	}

	// "*" needs Expires: 0.
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret", contacts: []string{"*"}, expires: "60"})
	if res.StatusCode != 400 {
		t.Fatalf("Contact: * with Expires 60: %d, want 400", res.StatusCode)
	}
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret", contacts: []string{"*"}, expires: "0"})
	if got := contactsOf(t, res); res.StatusCode != 200 || len(got) != 1 || got["sip:1001@10.0.1.1:5060"] == 0 {
		t.Fatalf("Contact: * from 127.0.0.1: %d, %v; want only 127.0.0.2's binding left", res.StatusCode, got)
	}
	bs, err := env.st.Bindings(context.Background(), "1001", time.Now())
	if err != nil || len(bs) != 1 || !strings.HasPrefix(bs[0].Source, "127.0.0.2:") {
		t.Fatalf("bindings left: %+v, %v", bs, err)
	}
	if got, want := env.results(t), map[string]float64{"challenged": 7, "ok": 4, "bad_request": 2, "removed": 1}; !sameResults(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
}

// A binding past its expiry is neither listed nor counted (the clock is
// the registrar's, injected).
func TestRegisterExpiredBindingNotReturned(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	env := startRegistrar(t, nil, "node-a", AuthLimits{}, func(r *Registrar) { r.now = clock.Now })
	agent := newRegClient(t, "127.0.0.1")
	to := env.e.Addr("udp")
	_, res := agent.register(regOpts{to: to, ext: "1001", password: "s3cret", expires: "60", contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 200 || len(contactsOf(t, res)) != 1 {
		t.Fatalf("REGISTER: %d %v", res.StatusCode, contactsOf(t, res))
	}
	if n := env.registered(t); n != 1 {
		t.Fatalf("redial_agents_registered = %v, want 1", n)
	}
	clock.Add(61 * time.Second)
	_, res = agent.register(regOpts{to: to, ext: "1001", password: "s3cret"})
	if got := contactsOf(t, res); res.StatusCode != 200 || len(got) != 0 {
		t.Fatalf("query after expiry: %d, %v; want no binding", res.StatusCode, got)
	}
	if bs, err := env.st.Bindings(context.Background(), "1001", clock.Now()); err != nil || len(bs) != 0 {
		t.Fatalf("store after expiry: %+v, %v", bs, err)
	}
	if n := env.registered(t); n != 0 {
		t.Fatalf("redial_agents_registered after expiry = %v, want 0", n)
	}
}

// A challenge from node A answered to node B (same Redis) is accepted by
// B, which records itself as the binding's node; a nonce this cluster did
// not issue is challenged again, stale.
func TestRegisterNonceFromAnotherNode(t *testing.T) {
	r := testenv.StartRedis(t)
	a := startRegistrar(t, r, "node-a", AuthLimits{})
	b := startRegistrar(t, r, "node-b", AuthLimits{})
	agent := newRegClient(t, "127.0.0.1")
	_, res := agent.register(regOpts{to: a.e.Addr("udp"), retryTo: b.e.Addr("udp"), ext: "1001", password: "s3cret",
		contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 200 {
		t.Fatalf("A's challenge answered to B: %d %s", res.StatusCode, res.Reason)
	}
	bs, err := a.st.Bindings(context.Background(), "1001", time.Now())
	if err != nil || len(bs) != 1 || bs[0].Node != "node-b" {
		t.Fatalf("bindings: %+v, %v; want one made by node-b", bs, err)
	}

	ts := strconv.FormatInt(time.Now().Unix(), 10)
	_, res = agent.register(regOpts{to: a.e.Addr("udp"), ext: "1001", password: "s3cret", nonce: ts + ".000000000000000000000000",
		contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 401 {
		t.Fatalf("forged nonce: %d, want 401", res.StatusCode)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil || !chal.Stale {
		t.Fatalf("challenge after a forged nonce: %+v, %v; want stale=true", chal, err)
	}
	if got := testenv.MustMetric(t, a.prom, "redial_sip_auth_failures_total", nil); got != 0 {
		t.Errorf("a bad nonce counted as %v authentication failures", got)
	}
}

// Without a registrar REGISTER is answered 405 with Allow, and nothing is
// counted against the sender.
func TestRegisterWithoutRegistrar(t *testing.T) {
	prom := prometheus.NewRegistry()
	e := startEngineWith(t, engineOpts{deps: Deps{Registry: prom}})
	agent := newRegClient(t, "127.0.0.1")
	_, res := agent.register(regOpts{to: e.Addr("udp"), ext: "1001", password: "s3cret", contacts: []string{"<sip:1001@10.0.0.1:5060>"}})
	if res.StatusCode != 405 || res.GetHeader("Allow") == nil || strings.Contains(res.GetHeader("Allow").Value(), "REGISTER") {
		t.Fatalf("REGISTER without registrar: %d, Allow %v; want 405 with Allow not naming REGISTER", res.StatusCode, res.GetHeader("Allow"))
	}
	if got := testenv.MustMetric(t, prom, "redial_sip_auth_failures_total", nil); got != 0 {
		t.Errorf("redial_sip_auth_failures_total = %v", got)
	}
}

// A closed WebSocket takes its bindings on this node with it.
func TestSocketClosedRemovesItsBindings(t *testing.T) {
	env := startRegistrar(t, nil, "node-a", AuthLimits{})
	ctx := context.Background()
	now := time.Now()
	const sock = "192.0.2.9:51000"
	for _, b := range []store.Binding{
		{ID: sock, Ext: "1001", Node: "node-a", Transport: "wss", Contact: "sip:x@y.invalid;transport=ws", Source: sock, Expires: now.Add(time.Minute)},
		{ID: sock, Ext: "1003", Node: "node-a", Transport: "wss", Contact: "sip:z@y.invalid;transport=ws", Source: sock, Expires: now.Add(time.Minute)},
		{ID: "192.0.2.9:51001", Ext: "1003", Node: "node-a", Transport: "ws", Contact: "sip:w@y.invalid;transport=ws", Source: "192.0.2.9:51001", Expires: now.Add(time.Minute)},
	} {
		if err := env.st.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	n, err := env.reg.SocketClosed(ctx, sock)
	if err != nil || n != 2 {
		t.Fatalf("SocketClosed = %d, %v; want 2", n, err)
	}
	all, _ := env.st.AllBindings(ctx, now)
	if len(all) != 1 || all[0].Source != "192.0.2.9:51001" {
		t.Fatalf("left: %+v", all)
	}
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"SIP.js/0.7.8":                "SIP.js/0.7.8",
		"a\r\nVia: evil":              "aVia: evil",
		"a\x00b\x1b[31mc\x7f":         "ab[31mc",
		"caf\xc3\xa9 \xff\xfe ok":     "café  ok",
		"  padded\t":                  "padded",
		strings.Repeat("é", 100):      strings.Repeat("é", 64),
		strings.Repeat("x", 200):      strings.Repeat("x", 128),
		"x" + strings.Repeat("é", 64): "x" + strings.Repeat("é", 63),
	} {
		got := cleanUserAgent(in)
		if got != want {
			t.Errorf("cleanUserAgent(%q) = %q, want %q", in, got, want)
		}
		if len(got) > maxUserAgentLen {
			t.Errorf("cleanUserAgent(%q) is %d bytes", in, len(got))
		}
	}
}

func TestNewRegistrarChecksConfig(t *testing.T) {
	users, bindings := &storeUsers{}, storeBindings{}
	for name, cfg := range map[string]RegistrarConfig{
		"no domain":      {Node: "n"},
		"quote in realm": {Domain: `a"b`, Node: "n"},
		"no node":        {Domain: "acme"},
		"min over max":   {Domain: "acme", Node: "n", MinExpires: time.Hour, MaxExpires: time.Minute},
	} {
		if _, err := NewRegistrar(cfg, users, bindings, nil, nil); err == nil {
			t.Errorf("%s: NewRegistrar accepted %+v", name, cfg)
		}
	}
	r, err := NewRegistrar(RegistrarConfig{Domain: "acme", Node: "n"}, users, bindings, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.MinExpires != time.Minute || r.cfg.DefaultExpires != 10*time.Minute || r.cfg.MaxExpires != time.Hour {
		t.Fatalf("defaults = %+v", r.cfg)
	}
}
