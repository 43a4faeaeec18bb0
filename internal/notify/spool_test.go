package notify

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var quiet = slog.New(slog.DiscardHandler)

func openTestSpool(t *testing.T, dir string) *spool {
	t.Helper()
	s, err := openSpool(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crash drops the spool the way a killed process does: no fsync, no
// orderly close (the lock is released so the test can reopen).
func crash(s *spool) {
	s.log.Close()
	s.prog.f.Close()
	unlockDir(s.lock)
}

func appendN(t *testing.T, s *spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.append(kindCDR, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func deliverN(t *testing.T, s *spool, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, _, end, ok, err := s.peek()
		if !ok || err != nil {
			t.Fatalf("peek: ok=%v err=%v", ok, err)
		}
		if err := s.advance(end); err != nil {
			t.Fatal(err)
		}
	}
}

// remaining reads every undelivered record's payload in order.
func remaining(t *testing.T, s *spool) []string {
	t.Helper()
	var out []string
	next := s.next
	for next < s.size {
		line, err := s.readLine(next, s.size-next)
		if err != nil {
			t.Fatal(err)
		}
		next += int64(len(line)) + 1
		out = append(out, strings.TrimPrefix(strings.TrimSuffix(string(line), "}"), `{"kind":"cdr","payload":`))
	}
	return out
}

func TestSpoolProgressSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	appendN(t, s, 1, 5)
	deliverN(t, s, 3)
	crash(s)

	s = openTestSpool(t, dir)
	defer s.close()
	if s.pending != 2 {
		t.Fatalf("pending after crash = %d, want 2", s.pending)
	}
	if got := remaining(t, s); strings.Join(got, " ") != `{"n":4} {"n":5}` {
		t.Fatalf("replay after crash = %v, want n=4, n=5", got)
	}
}

// A crash can tear the progress slot being written; the other slot still
// holds the previous progress, so exactly one record is re-sent.
func TestSpoolTornProgressResendsOnlyTheLastRecord(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	appendN(t, s, 1, 5)
	deliverN(t, s, 3)
	crash(s)

	tearNewestSlot(t, filepath.Join(dir, progressName))
	s = openTestSpool(t, dir)
	defer s.close()
	if got := remaining(t, s); strings.Join(got, " ") != `{"n":3} {"n":4} {"n":5}` {
		t.Fatalf("replay after torn progress = %v, want n=3..5", got)
	}
	if s.pending != 3 {
		t.Fatalf("pending = %d, want 3", s.pending)
	}
}

func tearNewestSlot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newest, best := -1, uint64(0)
	for slot := 0; slot < 2; slot++ {
		if seq, _, _, ok := decodeProgress(b[slot*progressSlot:]); ok && (newest < 0 || seq > best) {
			newest, best = slot, seq
		}
	}
	if newest < 0 {
		t.Fatal("no valid progress slot")
	}
	// Half-written: the first 20 bytes are new, the rest is old garbage.
	for i := newest*progressSlot + 20; i < newest*progressSlot+progressBytes; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolWithoutValidProgressReplaysEverything(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	appendN(t, s, 1, 4)
	deliverN(t, s, 4)
	appendN(t, s, 5, 1) // keep the log from being compacted
	crash(s)
	if err := os.WriteFile(filepath.Join(dir, progressName), []byte("garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	s = openTestSpool(t, dir)
	defer s.close()
	if s.pending != 5 {
		t.Fatalf("pending = %d, want all 5 (duplicates, never loss)", s.pending)
	}
}

// Progress that names another log generation (the log was replaced after
// a full replay, then the process died before progress was rewritten) must
// not skip records of the new log.
func TestSpoolIgnoresProgressOfAnotherLog(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	appendN(t, s, 1, 3)
	deliverN(t, s, 3) // progress: after 3 records of the old log
	oldProg, err := os.ReadFile(filepath.Join(dir, progressName))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.compactIfDrained(); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 4, 6) // same record sizes: the old offset is a record boundary here
	crash(s)
	// The new log's progress write is lost; the old one is back.
	if err := os.WriteFile(filepath.Join(dir, progressName), oldProg, 0o640); err != nil {
		t.Fatal(err)
	}
	s = openTestSpool(t, dir)
	defer s.close()
	if got := remaining(t, s); strings.Join(got, " ") != `{"n":4} {"n":5} {"n":6} {"n":7} {"n":8} {"n":9}` {
		t.Fatalf("replay = %v, want n=4..9", got)
	}
}

func TestSpoolCutsOffPartialRecord(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	appendN(t, s, 1, 2)
	crash(s)
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, `{"kind":"cdr","payload":{"n":`) // died mid-append
	f.Close()

	s = openTestSpool(t, dir)
	defer s.close()
	appendN(t, s, 3, 1)
	if got := remaining(t, s); strings.Join(got, " ") != `{"n":1} {"n":2} {"n":3}` {
		t.Fatalf("records = %v, want n=1..3", got)
	}
	for i := 0; i < 3; i++ {
		if _, _, _, ok, err := s.peek(); !ok || err != nil {
			t.Fatalf("record %d: ok=%v err=%v", i, ok, err)
		}
		deliverN(t, s, 1)
	}
}

func TestSpoolCompactsWhenDrained(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	defer s.close()
	appendN(t, s, 1, 100)
	deliverN(t, s, 100)
	if err := s.compactIfDrained(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != s.start || s.pending != 0 {
		t.Fatalf("after compaction log is %d bytes (header %d), pending %d", st.Size(), s.start, s.pending)
	}
}

func TestSpoolDirIsExclusive(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	if _, err := openSpool(dir, quiet); err == nil {
		t.Fatal("second openSpool on the same dir succeeded")
	}
	s.close()
	openTestSpool(t, dir).close()
}

func TestSpoolLongRecord(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	big := `{"v":"` + strings.Repeat("x", 300<<10) + `"}`
	if err := s.append(kindCDR, []byte(big)); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1, 1)
	crash(s)
	s = openTestSpool(t, dir)
	defer s.close()
	rec, _, _, ok, err := s.peek()
	if !ok || err != nil || string(rec.Payload) != big {
		t.Fatalf("long record: ok=%v err=%v len=%d", ok, err, len(rec.Payload))
	}
	deliverN(t, s, 1)
	if got := remaining(t, s); len(got) != 1 || got[0] != `{"n":1}` {
		t.Fatalf("after long record: %v", got)
	}
}
