package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lead merges later parts into docs/benchmarks.md: rerunning one part
// must replace only its own section and keep everything else byte for byte.
func TestReplaceSectionKeepsOtherSections(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n\n## 1. Originate\n\nold table\n\n## 2. Campaign\n\nkeep me\n"
	got := replaceSection(doc, "## 1. Originate", "## 1. Originate\n\nnew table\n")
	want := "# Benchmarks\n\nintro\n\n## 1. Originate\n\nnew table\n\n## 2. Campaign\n\nkeep me\n"
	if got != want {
		t.Errorf("replace middle section:\n got %q\nwant %q", got, want)
	}
	got = replaceSection(doc, "## 2. Campaign", "## 2. Campaign\n\nnew\n")
	want = "# Benchmarks\n\nintro\n\n## 1. Originate\n\nold table\n\n## 2. Campaign\n\nnew\n"
	if got != want {
		t.Errorf("replace last section:\n got %q\nwant %q", got, want)
	}
	got = replaceSection("# Benchmarks\n", "## 3. Schedule", "## 3. Schedule\n\nx\n")
	want = "# Benchmarks\n\n## 3. Schedule\n\nx\n"
	if got != want {
		t.Errorf("append missing section:\n got %q\nwant %q", got, want)
	}
}

func TestWriteSectionsCreatesFileWithHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := writeSections(path, []string{"## 1. Originate\n\ntable\n"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# Benchmarks\n") || !strings.HasSuffix(string(b), "## 1. Originate\n\ntable\n") {
		t.Errorf("new file:\n%s", b)
	}
}

// A real SIPp 3.6 -trace_stat file: the time columns hold
// "date<TAB>time<TAB>epoch" and the last row holds the totals.
func TestSippStatsReadsLastRow(t *testing.T) {
	header := "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);" +
		"IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;" +
		"SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);"
	row := func(cur string, out, cur2, ok, failed string) string {
		return "2026-11-21\t06:04:15.194184\t1795241055.194184;2026-11-21\t06:04:15.194184\t1795241055.194184;" +
			"2026-11-21\t" + cur + ";00:00:01;00:00:01;2500;0;0;0;0;0;" + out + ";" + out + ";" + cur2 + ";0;" + ok + ";0;" + failed + ";"
	}
	dir := t.TempDir()
	data := header + "\n" + row("06:04:16.198680\t1795241056.198680", "2500", "10", "2490", "0") + "\n" +
		row("06:04:25.218680\t1795241065.218680", "25000", "0", "24998", "2") + "\n"
	s := &sippProc{statFile: filepath.Join(dir, "stat.csv")}
	if err := os.WriteFile(s.statFile, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Successful != 24998 || st.Failed != 2 || st.Created != 25000 {
		t.Errorf("counts: %+v", st)
	}
	if d := st.Elapsed(); d < 10024*time.Millisecond || d > 10025*time.Millisecond {
		t.Errorf("elapsed %v, want 10.0245s", d)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 50); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(d[:1], 99); p != time.Millisecond {
		t.Errorf("p99 of one = %v", p)
	}
}

// The dashboard part reads the node's event stream with readSSE: named
// events, multi-line data, comments, retry fields and CRLF line ends, as a
// real server writes them in separate flushed chunks.
func TestReadSSEFromServer(t *testing.T) {
	chunks := []string{
		"retry: 2000\n\n",
		": keep-alive\n\n",
		"event: state\ndata: {\"time\":\"2026-12-01T10:00:00Z\"}\n\n",
		"event: cdrs\ndata: {\"cdrs\":\n",
		"data: []}\n\n",
		"data:no space\r\n\r\n",
		"event: ignored\nid: 7\n\n",
		"event: series\ndata: {\"reset\":true}\n\n",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range chunks {
			io.WriteString(w, c)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []string
	if err := readSSE(resp.Body, func(name string, data []byte) error {
		got = append(got, name+"="+string(data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{`state={"time":"2026-12-01T10:00:00Z"}`, "cdrs={\"cdrs\":\n[]}", "message=no space", `series={"reset":true}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

// A viewer measures latency on the rows that arrive after it connected,
// not on the backlog every connection starts with, and counts only while
// measuring.
func TestSSEViewerLatencySkipsBacklog(t *testing.T) {
	fresh := time.Now().Add(-150 * time.Millisecond)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "retry: 2000\n\nevent: state\ndata: {\"time\":%q,\"nodes\":[{\"host\":\"a\"}]}\n\n", time.Now().Format(time.RFC3339Nano))
		fmt.Fprintf(w, "event: cdrs\ndata: {\"cdrs\":[{\"cdr_id\":\"old\",\"time\":%q}]}\n\n", time.Now().Add(-time.Hour).Format(time.RFC3339Nano))
		fmt.Fprintf(w, "event: cdrs\ndata: {\"cdrs\":[{\"cdr_id\":\"x\",\"time\":%q},{\"cdr_id\":\"y\",\"time\":%q}]}\n\n",
			fresh.Format(time.RFC3339Nano), fresh.Format(time.RFC3339Nano))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	var measuring atomic.Bool
	measuring.Store(true)
	v := newSSEViewer(srv.URL, &measuring)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		rows, states, err := v.rows, v.states, v.err
		v.mu.Unlock()
		if rows == 2 && states == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows %d, states %d, err %v", rows, states, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(v.lat) != 2 {
		t.Fatalf("latencies %v, want 2 (backlog skipped)", v.lat)
	}
	for _, l := range v.lat {
		if l < 150*time.Millisecond || l > 5*time.Second {
			t.Errorf("latency %v, want from 150ms (row time) to a few seconds", l)
		}
	}
	if v.frames["cdrs"] != 2 || v.frames["state"] != 1 || v.bytes.Load() == 0 {
		t.Errorf("frames %v, bytes %d", v.frames, v.bytes.Load())
	}
}
