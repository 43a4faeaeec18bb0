package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/notify"
	"redial/internal/store"
	"redial/internal/testenv"
)

// lockedBuffer is an io.Writer the tail goroutine writes while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// head is the first few of lines, for failure messages.
func head(lines []string) []string { return lines[:min(len(lines), 3)] }

func testCDR(i int, disp string, campaign string, billsec int) []byte {
	start := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	c := notify.CDR{CDRID: notify.NewID(), CallRef: fmt.Sprintf("call-%d", i), CampaignRef: campaign,
		ClientNumber: fmt.Sprintf("+3361234%04d", i), Disposition: notify.Disposition(disp), SIPCode: 486,
		Start: start, End: start.Add(time.Duration(billsec+5) * time.Second), Duration: billsec + 5, Billsec: billsec}
	if disp == "ANSWERED" {
		ext := "101"
		a := start.Add(5 * time.Second)
		c.Ext, c.Answer, c.SIPCode = &ext, &a, 200
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

// runTail runs cdrTail in the background and returns its output and a
// stop function that cancels it and returns its error.
func runTail(t *testing.T, args ...string) (*lockedBuffer, func() error) {
	t.Helper()
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cdrTail(ctx, args, out) }()
	return out, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("cdr tail did not stop within 10s of cancel")
			return nil
		}
	}
}

func TestCDRTailPrintsAcksAndStops(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := store.NewWithClient(r.Client, store.Config{})
	// A CDR from before the group exists is not the tail's to show.
	if err := st.PushCDR(ctx, testCDR(0, "BUSY", "old", 0)); err != nil {
		t.Fatal(err)
	}
	out, stop := runTail(t, "--redis", r.URL, "--group", "ops", "--consumer", "me")
	// The group exists once the tail is reading.
	testenv.WaitFor(t, 5*time.Second, func() error {
		gs, err := r.Client.XInfoGroups(ctx, st.CDRStreamKey()).Result()
		if err != nil || len(gs) != 1 || gs[0].Name != "ops" {
			return fmt.Errorf("groups %+v, %v", gs, err)
		}
		return nil
	})
	const n = 5
	for i := 1; i <= n; i++ {
		disp := "NO_ANSWER"
		if i%2 == 0 {
			disp = "ANSWERED"
		}
		if err := st.PushCDR(ctx, testCDR(i, disp, "spring", 30)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if l := out.lines(); len(l) != n {
			return fmt.Errorf("%d lines, first %q", len(l), head(l))
		}
		return nil
	})
	// Acked: nothing pending in the group.
	testenv.WaitFor(t, 5*time.Second, func() error {
		p, err := r.Client.XPending(ctx, st.CDRStreamKey(), "ops").Result()
		if err != nil || p.Count != 0 {
			return fmt.Errorf("pending %+v, %v", p, err)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("tail returned %v on cancel, want nil", err)
	}
	lines := out.lines()
	want := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  call-2  spring  \+33612340002  ANSWERED  200  ext=101  35s/30s$`)
	if !want.MatchString(lines[1]) {
		t.Fatalf("line %q does not match %s", lines[1], want)
	}
	if !strings.Contains(lines[0], "  call-1  spring  +33612340001  NO_ANSWER  486  ext=-  35s/30s") {
		t.Fatalf("line %q", lines[0])
	}
	// The integrators' list keeps every CDR.
	if l := r.Client.LLen(ctx, st.CampaignsListKey()).Val(); l != n+1 {
		t.Fatalf("campaigns list length %d, want %d", l, n+1)
	}

	// A tail in another group starting now sees new CDRs too, as JSON,
	// and the first group's next tail resumes after what it acked.
	out2, stop2 := runTail(t, "--redis", r.URL, "--group", "other", "--json")
	testenv.WaitFor(t, 5*time.Second, func() error {
		gs, err := r.Client.XInfoGroups(ctx, st.CDRStreamKey()).Result()
		if err != nil || len(gs) != 2 {
			return fmt.Errorf("groups %+v, %v", gs, err)
		}
		return nil
	})
	out3, stop3 := runTail(t, "--redis", r.URL, "--group", "ops", "--consumer", "me")
	if err := st.PushCDR(ctx, testCDR(9, "BUSY", "fall", 0)); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*lockedBuffer{out2, out3} {
		testenv.WaitFor(t, 10*time.Second, func() error {
			if l := o.lines(); len(l) != 1 {
				return fmt.Errorf("%d lines, first %q", len(l), head(l))
			}
			return nil
		})
	}
	var c notify.CDR
	if err := json.Unmarshal([]byte(out2.lines()[0]), &c); err != nil || c.CallRef != "call-9" || c.Disposition != "BUSY" {
		t.Fatalf("--json line %q: %+v, %v", out2.lines()[0], c, err)
	}
	if !strings.Contains(out3.lines()[0], "call-9") {
		t.Fatalf("resumed tail printed %q, want only call-9", out3.lines())
	}
	for _, s := range []func() error{stop2, stop3} {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCDRTailPrintsItsPendingFirst(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := store.NewWithClient(r.Client, store.Config{})
	if err := st.EnsureCDRGroup(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := st.PushCDR(ctx, testCDR(7, "BUSY", "c", 0)); err != nil {
		t.Fatal(err)
	}
	// Read but never acknowledged, as by a tail killed mid-way.
	if cs, err := st.ReadCDRGroup(ctx, "ops", "me", 10, time.Second); err != nil || len(cs) != 1 {
		t.Fatalf("read %d, %v", len(cs), err)
	}
	out, stop := runTail(t, "--redis", r.URL, "--group", "ops", "--consumer", "me")
	testenv.WaitFor(t, 5*time.Second, func() error {
		if l := out.lines(); len(l) != 1 || !strings.Contains(l[0], "call-7") {
			return fmt.Errorf("%d lines, first %q", len(l), head(l))
		}
		return nil
	})
	testenv.WaitFor(t, 5*time.Second, func() error {
		if p := r.Client.XPending(ctx, st.CDRStreamKey(), "ops").Val(); p == nil || p.Count != 0 {
			return fmt.Errorf("pending %+v", p)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCDRStatsCounts(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := store.NewWithClient(r.Client, store.Config{})
	// Outside a 1h window: an entry added two hours ago.
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	if err := r.Client.XAdd(ctx, &redis.XAddArgs{Stream: st.CDRStreamKey(), ID: fmt.Sprintf("%d-0", old),
		Values: []any{store.CDRStreamField, testCDR(100, "ANSWERED", "old", 1000)}}).Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		disp, camp string
		billsec    int
	}{{"ANSWERED", "spring", 10}, {"ANSWERED", "spring", 30}, {"BUSY", "spring", 0}, {"NO_ANSWER", "fall", 0}, {"ANSWERED", "fall", 20}, {"BUSY", "fall", 0}} {
		if err := st.PushCDR(ctx, testCDR(i, c.disp, c.camp, c.billsec)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := cdrStats(ctx, []string{"--redis", r.URL, "--since", "1h", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var s cdrSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if s.Total != 6 || s.Answered != 3 || s.AnswerRate != 0.5 || s.AvgBillsecAnswered != 20 || s.CallsPerMinute != 0.1 ||
		s.WindowSeconds != 3600 ||
		fmt.Sprint(s.ByDisposition) != "map[ANSWERED:3 BUSY:2 NO_ANSWER:1]" || fmt.Sprint(s.ByCampaign) != "map[fall:3 spring:3]" {
		t.Fatalf("summary %+v\n%s", s, out.String())
	}

	out.Reset()
	if err := cdrStats(ctx, []string{"--redis", r.URL, "--since", "3h"}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		`(?m)^CDRs since .* \(3h\):\s+7$`,
		`(?m)^answer rate:\s+57\.1% \(4 answered\)$`,
		`(?m)^average billsec \(answered\):\s+265\.0$`,
		`(?m)^  ANSWERED\s+4$`,
		`(?m)^  old\s+1$`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Fatalf("output does not match %s:\n%s", want, text)
		}
	}
}

func TestCDRBadFlagsNameTheFlag(t *testing.T) {
	ctx := context.Background()
	// No Redis is needed: flags are checked before connecting.
	for _, c := range []struct {
		run  func(context.Context, []string, *bytes.Buffer) error
		args []string
		want string
	}{
		{tailFn, []string{"--group", ""}, "--group"},
		{tailFn, []string{"--group", strings.Repeat("g", 65)}, "--group"},
		{tailFn, []string{"--group", "a b"}, "--group"},
		{tailFn, []string{"--consumer", "x:y"}, "--consumer"},
		{tailFn, []string{"--consumer", "$"}, "--consumer"},
		{statsFn, []string{"--since", "30s"}, "--since"},
		{statsFn, []string{"--since", "31d"}, "--since"},
		{statsFn, []string{"--since", "721h"}, "--since"},
		{statsFn, []string{"--since", "soon"}, "--since"},
		{statsFn, []string{"--since", "-1h"}, "--since"},
	} {
		err := c.run(ctx, append([]string{"--redis", "redis://127.0.0.1:1/0"}, c.args...), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want one naming %s", c.args, err, c.want)
		}
	}
	for _, ok := range []string{"1m", "30d", "720h", "90m", "7d"} {
		if _, err := parseWindow(ok); err != nil {
			t.Errorf("--since %s: %v", ok, err)
		}
	}
	if err := validStreamName("group", strings.Repeat("a", 64)); err != nil {
		t.Errorf("64-char group refused: %v", err)
	}
}

func tailFn(ctx context.Context, args []string, out *bytes.Buffer) error {
	return cdrTail(ctx, args, out)
}

func statsFn(ctx context.Context, args []string, out *bytes.Buffer) error {
	return cdrStats(ctx, args, out)
}

func TestStreamNameFromHost(t *testing.T) {
	for host, want := range map[string]string{
		"edge1.example.com":     "redial-cli-edge1.example.com",
		"näme host":             "redial-cli-n-me-host",
		strings.Repeat("h", 80): "redial-cli-" + strings.Repeat("h", 53),
	} {
		got := streamName("redial-cli-", host)
		if got != want {
			t.Errorf("streamName(%q) = %q, want %q", host, got, want)
		}
		if err := validStreamName("group", got); err != nil {
			t.Errorf("default %q is not valid: %v", got, err)
		}
	}
}
