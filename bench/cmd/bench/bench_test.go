package main

import (
	"os"
	"path/filepath"
	"strings"
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
