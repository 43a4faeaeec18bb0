package app

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/testenv"
)

// maxConcurrent reads the start/end log of uas_hold_log.xml and returns the
// most calls the UAS had up at once.
func maxConcurrent(t *testing.T, dir string) (peak, calls int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_logs.log"))
	if len(files) == 0 {
		t.Fatalf("no SIPp log in %s", dir)
	}
	type ev struct {
		tick  int64
		delta int
	}
	var evs []ev
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			tick, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				continue
			}
			switch fields[1] {
			case "start":
				evs = append(evs, ev{tick, +1})
				calls++
			case "end":
				evs = append(evs, ev{tick, -1})
			}
		}
		fh.Close()
	}
	// Ends sort before starts at the same millisecond: the slot was freed.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].tick != evs[j].tick {
			return evs[i].tick < evs[j].tick
		}
		return evs[i].delta < evs[j].delta
	})
	cur := 0
	for _, e := range evs {
		cur += e.delta
		peak = max(peak, cur)
	}
	return peak, calls
}

// Two nodes sharing one Redis never hold more than the line's limit of
// calls at the carrier at once, however hard they push.
func TestLineLimitAcrossTwoNodes(t *testing.T) {
	const limit, total = 3, 24
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_hold_log.xml"),
		Args: []string{"-m", strconv.Itoa(total), "-d", "300", "-trace_logs"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", strconv.Itoa(total)}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, fmt.Sprintf(`,"limit":%d`, limit))
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	nodes := []*node{startNode(t, r.URL, "n1"), startNode(t, r.URL, "n2")}

	var answered, noLine atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range nodes {
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(n *node, w int) {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					if answered.Load() >= total {
						return
					}
					// Claim a slot in the budget before dialing so exactly
					// total calls reach the UAS.
					if answered.Add(1) > total {
						return
					}
					out, err := n.Calls.Place(ctx, call.Request{Numbers: []string{fmt.Sprintf("1555%s%d%03d", n.Cfg.Host, w, i)},
						LineGroups: []string{"g1"}, Destination: dialplan.Destination{Extension: "8888"}})
					if err != nil {
						t.Errorf("place: %v", err)
						return
					}
					if out.Disposition == call.NoLine {
						noLine.Add(1)
						answered.Add(-1)
						// Pace the retries like a dialer would; the limit
						// stays contended by the other workers.
						select {
						case <-time.After(5 * time.Millisecond):
						case <-ctx.Done():
						}
						continue
					}
					if out.Disposition != call.Answered {
						t.Errorf("call %d on %s: %s", i, n.Cfg.Host, out.Disposition)
					}
				}
			}(n, w)
		}
	}
	wg.Wait()
	waitSipp(t, carrier, 30*time.Second)
	peak, calls := maxConcurrent(t, carrier.LogDir())
	if calls != total {
		t.Fatalf("UAS saw %d calls, want %d", calls, total)
	}
	if peak > limit {
		t.Fatalf("UAS saw %d concurrent calls, line limit is %d", peak, limit)
	}
	if peak < limit {
		t.Fatalf("UAS peak concurrency %d never reached the limit %d: the test did not push hard enough", peak, limit)
	}
	if noLine.Load() == 0 {
		t.Fatalf("no attempt was refused for lack of a line: the limit was never contended")
	}
	t.Logf("peak %d of limit %d over %d calls, %d NO_LINE refusals", peak, limit, calls, noLine.Load())
}
