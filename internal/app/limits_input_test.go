package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// Issue 9: CR/LF in channel variables from a queue item, a schedule member
// or the API was written into the INVITE (the carrier got forged X-Evil and
// Via headers); a 1 MB number was dialed; ../../etc passed the API. Every
// entry point now refuses them, naming the field, and nothing of them
// reaches the wire.
func TestInjectionRefusedAtEveryEntryNeverOnTheWire(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	// Two calls reach the carrier: one good queue item, one good API call.
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "2"}, Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setTask(t, r, "cti_queue_dialer_task@template", "inj", `{"params":{"enable":true,"line_group":["g1"],"limit":1,"number_queue":"qi","destination_extension":"8888"}}`, "")
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(i*131 + i>>8)
	}
	bad := map[string]string{ // item -> what its reason must name
		`{"params":{"number":"15550000009"},"variables":{"sip_h_X-Evil":"1\r\nVia: SIP/2.0/UDP 6.6.6.6"}}`:  "variables.sip_h_X-Evil: contains CR/LF",
		`{"params":{"number":"15550000009"},"variables":{"origination_caller_id_name":"Bob\r\nX-Evil: 2"}}`: "variables.origination_caller_id_name: contains CR/LF",
		strings.Repeat("7", 1<<20): "number: 1048576 characters, at most 64",
		"../../etc":                `number: "../../etc": may not start with '.'`,
		string(bin):                "characters, at most 64",
	}
	pushNumbers(t, r, "qi", `{"params":{"number":"15550000001"},"variables":{"sip_h_X-Good":"queue"}}`)
	for item := range bad {
		pushNumbers(t, r, "qi", item)
	}
	// A scheduled member, due now, written straight to Redis.
	r.Client.HSet(ctx, "cti_schedule_dialer_config@default", "sc", `{"params":{"line_group":["g1"],"destination_extension":"8888"}}`)
	member := `{"params":{"number":"15550000008","config":"sc"},"variables":{"sip_h_X-Evil":"3\r\nVia: SIP/2.0/UDP 6.6.6.6"}}`
	r.Client.ZAdd(ctx, "cti_schedule_dialer_number@default", redis.Z{Score: float64(time.Now().Unix()), Member: member})
	n := startNode(t, r.URL, "n1")

	// The API: 400 naming the field, nothing dialed.
	for _, c := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"number": "15550000007", "line_group": "g1", "destination": map[string]string{"extension": "8888"},
			"variables": map[string]string{"sip_h_X-Evil": "4\r\nVia: SIP/2.0/UDP 6.6.6.6"}}, "variables.sip_h_X-Evil: contains CR/LF"},
		{map[string]any{"number": "15550000007", "line_group": "g1", "destination": map[string]string{"extension": "8888"},
			"variables": map[string]string{"origination_caller_id_name": "Eve\nX-Evil: 5"}}, "variables.origination_caller_id_name: contains CR/LF"},
		{map[string]any{"number": "../../etc", "line_group": "g1", "destination": map[string]string{"extension": "8888"}}, `number: "../../etc": may not start with '.'`},
		{map[string]any{"number": strings.Repeat("7", 1<<20-100), "line_group": "g1", "destination": map[string]string{"extension": "8888"}}, "number: 1048476 characters, at most 64"},
	} {
		code, out := n.post("/api/v1/calls", c.body)
		if code != http.StatusBadRequest || out["error"] != c.want {
			t.Errorf("POST /api/v1/calls: %d %.200v, want 400 %s", code, out, c.want)
		}
	}
	code, out := n.post("/api/v1/schedules", map[string]any{"at": time.Now().Unix(), "member": json.RawMessage(member)})
	if code != http.StatusBadRequest || out["error"] != "member: variables.sip_h_X-Evil: contains CR/LF" {
		t.Errorf("POST /api/v1/schedules: %d %v", code, out)
	}
	originate(t, n, map[string]any{"number": "15550000002", "line_group": "g1", "destination": map[string]string{"extension": "8888"},
		"variables": map[string]string{"sip_h_X-Good": "api"}})

	// The queue: every bad item in qi:invalid, whole, with a short reason.
	var invalid []string
	testenv.WaitFor(t, 10*time.Second, func() error {
		invalid, _ = r.Client.LRange(ctx, "qi:invalid", 0, -1).Result()
		if len(invalid) != len(bad) {
			return fmt.Errorf("%d of %d in qi:invalid", len(invalid), len(bad))
		}
		return nil
	})
	for _, v := range invalid {
		var p store.ParkedItem
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			t.Fatal(err)
		}
		item := p.Item
		if p.ItemBase64 != nil {
			item = string(p.ItemBase64)
		}
		want, ok := bad[item]
		if !ok {
			t.Errorf("qi:invalid holds an item that was not pushed (or not whole): %.80q", item)
			continue
		}
		if len(p.Reason) > 300 || !strings.Contains(p.Reason, want) {
			t.Errorf("reason %.400q (%d bytes), want it to name %q", p.Reason, len(p.Reason), want)
		}
		if len(v) > 1500000 {
			t.Errorf("qi:invalid entry of %d bytes for an item of %d", len(v), len(item))
		}
	}
	// The schedule: the member moved aside, naming the field.
	schedInvalid := store.NewWithClient(r.Client, store.Config{Domain: "default", Host: "n1"}).ScheduleLedger().Keys("").Invalid
	testenv.WaitFor(t, 10*time.Second, func() error {
		in, _ := r.Client.LRange(ctx, schedInvalid, 0, -1).Result()
		if len(in) != 1 {
			return fmt.Errorf("%d in %s", len(in), schedInvalid)
		}
		if !strings.Contains(in[0], "variables.sip_h_X-Evil: contains CR/LF") {
			return fmt.Errorf("reason: %s", in[0])
		}
		return nil
	})

	// The wire: the two good calls carry their headers, nothing else came.
	waitSipp(t, carrier, 20*time.Second)
	msgs := readSippMessages(t, carrier)
	if !strings.Contains(msgs, "X-Good: queue") || !strings.Contains(msgs, "X-Good: api") {
		t.Errorf("good headers missing from the carrier's trace:\n%.3000s", msgs)
	}
	for _, forged := range []string{"X-Evil", "6.6.6.6", "15550000009", "15550000008", "15550000007", "etc"} {
		if strings.Contains(msgs, forged) {
			t.Errorf("carrier received %q:\n%.3000s", forged, msgs)
		}
	}
	if got := strings.Count(msgs, "INVITE sip:"); got != 2 {
		t.Errorf("%d INVITEs, want 2", got)
	}
}

// Issue 9: 200 API calls with 1,000,000-digit numbers took a node from
// 87 MB to 1.22 GB. A thousand oversize requests are now refused (400 for
// a body within the limit holding a 1 MB number, 413 for a larger body)
// and the node's heap, Redis and the call table stay where they were.
// Heap in use is measured after GC: the node runs in this process.
func TestNodeMemoryFlatWhileOversizeRequestsRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	n := startNode(t, r.URL, "mem1")
	hugeNumber := []byte(`{"number":"` + strings.Repeat("1", 1000000) + `","line_group":["g1"],"destination":{"extension":"8888"}}`)
	oversize := []byte(`{"number":"1001","line_group":["g1"],"destination":{"extension":"8888"},"variables":{"x":"` +
		strings.Repeat("x", 1500000) + `"}}`)
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(body []byte) (int, string, error) {
		resp, err := client.Post(n.api+"/api/v1/calls", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b), nil
	}
	// One in ten is read and decoded whole (400); the rest are refused
	// unread (413). Both kinds are ~1 MB or more.
	check := func(i int) error {
		body, wantCode, want := oversize, http.StatusRequestEntityTooLarge, "request body too large (limit 1048576 bytes)"
		if i%10 == 0 {
			body, wantCode, want = hugeNumber, http.StatusBadRequest, "number: 1000000 characters, at most 64"
		}
		code, got, err := send(body)
		if err != nil {
			return err
		}
		if code != wantCode || !strings.Contains(got, want) {
			return fmt.Errorf("request %d: %d %.200s, want %d %s", i, code, got, wantCode, want)
		}
		return nil
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	redisMem := func() int64 {
		info, err := r.Client.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("no used_memory in INFO")
		return 0
	}
	// Warm up: connection pools, buffers, the first error paths.
	for i := 0; i < 20; i++ {
		if err := check(i); err != nil {
			t.Fatal(err)
		}
	}
	heapBefore, redisBefore := heap(), redisMem()
	const total, workers = 1000, 4
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += workers {
				if err := check(i); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	heapAfter, redisAfter := heap(), redisMem()
	t.Logf("heap in use %d -> %d bytes; redis used_memory %d -> %d", heapBefore, heapAfter, redisBefore, redisAfter)
	if grew := int64(heapAfter) - int64(heapBefore); grew > 4<<20 {
		t.Errorf("heap in use grew by %d bytes over %d refused requests", grew, total)
	}
	if grew := redisAfter - redisBefore; grew > 1<<20 {
		t.Errorf("redis used_memory grew by %d bytes", grew)
	}
	if a := n.Calls.Active(); a != 0 {
		t.Errorf("%d calls active", a)
	}
	var list struct {
		Calls []any `json:"calls"`
	}
	if n.get("/api/v1/calls", &list); len(list.Calls) != 0 {
		t.Errorf("calls listed: %d", len(list.Calls))
	}
	if l, _ := r.Client.LLen(ctx, "enigma:notifications:campaigns").Result(); l != 0 {
		t.Errorf("%d CDRs written", l)
	}
}
