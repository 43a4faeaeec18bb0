package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/store"
	"redial/internal/testenv"
)

const campaignsKey = "enigma:notifications:campaigns"

type fixture struct {
	r   *testenv.Redis
	st  *store.Store
	reg *prometheus.Registry
	dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := testenv.StartRedis(t)
	st, err := store.New(store.Config{URL: r.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{r: r, st: st, reg: prometheus.NewRegistry(), dir: t.TempDir()}
}

func (f *fixture) publisher(t *testing.T) *Publisher {
	t.Helper()
	p, err := New(Config{SpoolDir: f.dir, RetryEvery: 50 * time.Millisecond, FlushTimeout: 200 * time.Millisecond},
		Deps{Store: f.st, Registry: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// run starts p.Run and returns a function that stops it and waits.
func run(t *testing.T, p *Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func testCDR(ref string) *CDR {
	start := time.Date(2024, 3, 1, 10, 0, 0, 0, time.FixedZone("SAST", 2*3600))
	return &CDR{
		CallRef: ref, ContactRef: "contact-" + ref, CampaignRef: "camp1",
		ClientNumber: "27821234567", DialNumber: "27110001111",
		Disposition: "NO_ANSWER", SIPCode: 487, HangupCause: "NO_ANSWER",
		Line: "l1", Attempt: 1, Start: start, End: start.Add(30 * time.Second), Duration: 30,
	}
}

// listRefs returns the call_refs on the campaigns list, oldest first, and
// checks every value is a CDR envelope with a distinct cdr_id.
func listRefs(t *testing.T, f *fixture) []string {
	t.Helper()
	vals, err := f.r.Client.LRange(context.Background(), campaignsKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	refs := make([]string, 0, len(vals))
	for i := len(vals) - 1; i >= 0; i-- { // LPUSH: the oldest is at the tail
		var env struct {
			Type    string `json:"type"`
			Payload CDR    `json:"payload"`
		}
		if err := json.Unmarshal([]byte(vals[i]), &env); err != nil || env.Type != "cdr" {
			t.Fatalf("list value %s: type %q, err %v", vals[i], env.Type, err)
		}
		if ids[env.Payload.CDRID] {
			t.Fatalf("cdr_id %s delivered twice", env.Payload.CDRID)
		}
		ids[env.Payload.CDRID] = true
		refs = append(refs, env.Payload.CallRef)
	}
	return refs
}

func refsUpTo(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("r%02d", i)
	}
	return strings.Join(s, ",")
}

func TestCDRPublishedShape(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	ctx := context.Background()

	c := testCDR("ref-1")
	c.Variables = nil
	if err := p.PublishCDR(ctx, c); err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(c.CDRID) {
		t.Fatalf("PublishCDR filled cdr_id %q, want a UUID", c.CDRID)
	}
	v, err := f.r.Client.BRPop(ctx, time.Second, campaignsKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v[1]), &env); err != nil {
		t.Fatal(err)
	}
	if len(env) != 2 || string(env["type"]) != `"cdr"` {
		t.Fatalf("envelope = %s, want {type:cdr, payload}", v[1])
	}
	var got map[string]any
	if err := json.Unmarshal(env["payload"], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"cdr_id": c.CDRID, "call_ref": "ref-1", "contact_ref": "contact-ref-1", "campaign_ref": "camp1",
		"client_number": "27821234567", "dial_number": "27110001111", "ext": nil,
		"disposition": "NO_ANSWER", "sip_code": 487.0, "hangup_cause": "NO_ANSWER", "line": "l1", "attempt": 1.0,
		"start": "2024-03-01T08:00:00Z", "answer": nil, "end": "2024-03-01T08:00:30Z",
		"duration": 30.0, "billsec": 0.0, "hold_time": 0.0, "variables": map[string]any{},
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("payload lacks %q", k)
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("payload[%q] = %#v, want %#v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("payload has unexpected key %q", k)
		}
	}

	xs, err := f.r.Client.XRange(ctx, "redial:cdr", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 1 || len(xs[0].Values) != 1 || xs[0].Values["cdr"] != string(env["payload"]) {
		t.Fatalf("stream = %+v, want one entry with cdr = %s", xs, env["payload"])
	}
}

func TestAnsweredCDRCarriesExtAndAnswer(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	ctx := context.Background()
	c := testCDR("ref-2")
	ext := "1001"
	ans := c.Start.Add(5 * time.Second)
	c.Ext, c.Answer, c.Disposition, c.SIPCode, c.Billsec = &ext, &ans, "ANSWERED", 200, 25
	c.Variables = map[string]string{"queue": "sales"}
	if err := p.PublishCDR(ctx, c); err != nil {
		t.Fatal(err)
	}
	v, err := f.r.Client.BRPop(ctx, time.Second, campaignsKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal([]byte(v[1]), &env); err != nil {
		t.Fatal(err)
	}
	pl := env.Payload
	if pl["ext"] != "1001" || pl["answer"] != "2024-03-01T08:00:05Z" || pl["billsec"] != 25.0 ||
		fmt.Sprint(pl["variables"]) != "map[queue:sales]" {
		t.Fatalf("answered payload = %v", pl)
	}
}

func TestBRPopReadsOldestFirst(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	ctx := context.Background()
	for _, ref := range []string{"a", "b", "c"} {
		if err := p.PublishCDR(ctx, testCDR(ref)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b", "c"} {
		v, err := f.r.Client.BRPop(ctx, time.Second, campaignsKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(v[1], `"call_ref":"`+want+`"`) {
			t.Fatalf("BRPOP got %s, want call_ref %s", v[1], want)
		}
	}
}

func TestPublishInbound(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	payload := map[string]any{"number": "0821234567", "dial_number": "0110001111", "hold_time": 12,
		"call_ref": "in-1", "contact_ref": "", "call_dir": "inbound", "ref": "1001"}
	if err := p.PublishInbound(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	v, err := f.r.Client.RPop(context.Background(), "enigma:notifications:inbound").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"call","payload":{"call_dir":"inbound","call_ref":"in-1","contact_ref":"","dial_number":"0110001111","hold_time":12,"number":"0821234567","ref":"1001"}}`
	if v != want {
		t.Fatalf("inbound = %s\nwant      %s", v, want)
	}
	if n := f.r.Client.LLen(context.Background(), campaignsKey).Val(); n != 0 {
		t.Fatalf("inbound notification also went to the campaigns list (%d)", n)
	}
}

func TestRedisOutageSpoolsAndReplaysInOrderOnce(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	run(t, p)
	ctx := context.Background()

	f.r.Stop()
	for i := 0; i < 50; i++ {
		if err := p.PublishCDR(ctx, testCDR(fmt.Sprintf("r%02d", i))); err != nil {
			t.Fatalf("PublishCDR %d with Redis down: %v", i, err)
		}
	}
	if n := p.Spooled(); n != 50 {
		t.Fatalf("Spooled() = %d, want 50", n)
	}
	if v := testenv.MustMetric(t, f.reg, "redial_notifications_total", map[string]string{"kind": "cdr", "result": "spooled"}); v != 50 {
		t.Fatalf("spooled counter = %v, want 50", v)
	}
	if v := testenv.MustMetric(t, f.reg, "redial_notify_spool_items", nil); v != 50 {
		t.Fatalf("spool gauge = %v, want 50", v)
	}
	if v := testenv.MustMetric(t, f.reg, "redial_redis_errors_total", map[string]string{"op": "notify_push_cdr"}); v < 1 {
		t.Fatalf("redis error counter = %v, want >= 1", v)
	}

	f.r.Restart(t)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if got := strings.Join(listRefs(t, f), ","); got != refsUpTo(50) {
		t.Fatalf("replayed order:\n%s\nwant\n%s", got, refsUpTo(50))
	}
	if n := f.r.Client.XLen(ctx, "redial:cdr").Val(); n != 50 {
		t.Fatalf("stream has %d CDRs, want 50", n)
	}
	if v := testenv.MustMetric(t, f.reg, "redial_notify_spool_items", nil); v != 0 {
		t.Fatalf("spool gauge = %v after replay, want 0", v)
	}
	if v := testenv.MustMetric(t, f.reg, "redial_notifications_total", map[string]string{"kind": "cdr", "result": "published"}); v != 50 {
		t.Fatalf("published counter = %v, want 50", v)
	}

	// Redis is back and the spool is empty: the next CDR goes straight out,
	// after the replayed ones.
	if err := p.PublishCDR(ctx, testCDR("r50")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listRefs(t, f), ","); got != refsUpTo(51) {
		t.Fatalf("order after replay: %s", got)
	}
	st, err := os.Stat(filepath.Join(f.dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 200 {
		t.Fatalf("spool log is %d bytes after a full replay; want it compacted to its header", st.Size())
	}
}

// While the spool holds anything, new notifications queue behind it even
// if Redis is reachable, so integrators see them in order.
func TestNewNotificationsQueueBehindSpool(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	ctx := context.Background()
	f.r.Stop()
	for _, ref := range []string{"r00", "r01"} {
		if err := p.PublishCDR(ctx, testCDR(ref)); err != nil {
			t.Fatal(err)
		}
	}
	f.r.Restart(t)
	if err := p.PublishCDR(ctx, testCDR("r02")); err != nil {
		t.Fatal(err)
	}
	if n, l := p.Spooled(), f.r.Client.LLen(ctx, campaignsKey).Val(); n != 3 || l != 0 {
		t.Fatalf("spooled %d, on Redis %d; want 3 spooled and none ahead of the spool", n, l)
	}
	run(t, p)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if got := strings.Join(listRefs(t, f), ","); got != refsUpTo(3) {
		t.Fatalf("order = %s", got)
	}
}

func TestNewPublisherReplaysExistingSpool(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	p1 := f.publisher(t)
	stop1 := run(t, p1)
	f.r.Stop()
	for i := 0; i < 5; i++ {
		if err := p1.PublishCDR(ctx, testCDR(fmt.Sprintf("r%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := p1.PublishInbound(ctx, map[string]string{"call_ref": "in-1"}); err != nil {
		t.Fatal(err)
	}
	stop1() // the flush cannot reach Redis; the spool stays
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p1.PublishCDR(ctx, testCDR("late")); err != ErrClosed {
		t.Fatalf("PublishCDR after Close: %v, want ErrClosed", err)
	}

	f.r.Restart(t)
	p2 := f.publisher(t)
	if n := p2.Spooled(); n != 6 {
		t.Fatalf("new publisher sees %d spooled, want 6", n)
	}
	run(t, p2)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p2.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if got := strings.Join(listRefs(t, f), ","); got != refsUpTo(5) {
		t.Fatalf("replayed = %s", got)
	}
	if v := f.r.Client.LRange(ctx, "enigma:notifications:inbound", 0, -1).Val(); len(v) != 1 ||
		v[0] != `{"type":"call","payload":{"call_ref":"in-1"}}` {
		t.Fatalf("inbound list = %v", v)
	}
}

func TestSpoolDirUsedByOnePublisher(t *testing.T) {
	f := newFixture(t)
	f.publisher(t)
	if _, err := New(Config{SpoolDir: f.dir}, Deps{Store: f.st}); err == nil {
		t.Fatal("a second Publisher opened a spool dir already in use")
	}
}

func TestCorruptSpoolRecordIsSetAside(t *testing.T) {
	f := newFixture(t)
	s := openTestSpool(t, f.dir)
	if err := s.append(kindCDR, []byte(`{"cdr_id":"id0","call_ref":"r00"}`)); err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(filepath.Join(f.dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.WriteString("this is not json\n")
	lf.Close()
	s.size += int64(len("this is not json\n"))
	if err := s.append(kindCDR, []byte(`{"cdr_id":"id1","call_ref":"r01"}`)); err != nil {
		t.Fatal(err)
	}
	crash(s)

	p := f.publisher(t)
	if n := p.Spooled(); n != 3 {
		t.Fatalf("Spooled() = %d, want 3", n)
	}
	run(t, p)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := p.Spooled(); n != 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if got := strings.Join(listRefs(t, f), ","); got != "r00,r01" {
		t.Fatalf("delivered = %s", got)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, corruptName))
	if err != nil || string(b) != "this is not json\n" {
		t.Fatalf("%s = %q, %v", corruptName, b, err)
	}
}
