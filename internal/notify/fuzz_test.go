package notify

// Fuzz targets for what the notify package writes and reads back: CDRs
// (their JSON is the contract with integrators) and the local spool (read
// back after a crash, whatever state the files were left in). `make test`
// runs them on their seed corpus; scripts/fuzz.sh (make chaos) fuzzes
// them.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"redial/internal/testenv"
)

// fuzzNorm is s as encoding/json writes it: each byte that is not UTF-8
// becomes U+FFFD.
func fuzzNorm(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string([]rune(s))
}

// FuzzCDRCodec: a CDR's JSON decodes back to the CDR (times in UTC to the
// second, invalid UTF-8 replaced), and is never larger than MaxCDRBytes:
// a bigger one is cut and says so.
func FuzzCDRCodec(f *testing.F) {
	f.Add("c1", "contact-1", "camp1", "27821234567", "27110001111", "1001", true, "ANSWERED", 200, "NORMAL_CLEARING", "l1",
		int64(1709280000), int64(5), int64(65), `{"a":"b","origination_caller_id_number":"15550001111"}`, "x", 0)
	f.Add("", "", "", "", "", "", false, "NO_ANSWER", 487, "NO_ANSWER", "", int64(0), int64(-1), int64(30), `{}`, "", 0)
	f.Add("c\xff", "<&>\u2028", "\x00", "1\r\n2", "", "\xfe", true, "", -1, "", "", int64(-62135596800), int64(0), int64(0), `null`, "", 0)
	f.Add("c2", "r", "camp", "1", "2", "", false, "FAILED", 503, "", "l", int64(253402300000), int64(1), int64(2),
		`{"big":"x","sip_h_X":"<tag>&amp;"}`, "\u00e9\x01\"", 40000)
	f.Fuzz(func(t *testing.T, callRef, contactRef, campaign, client, dial, ext string, hasExt bool, disp string, code int,
		cause, line string, start, answerAfter, dur int64, varsJSON, big string, repeat int) {
		const minUnix, maxUnix = -62135596800, 253402300799 // the years RFC 3339 can write
		if start < minUnix || start > maxUnix-200000 || dur < 0 || dur > 100000 || repeat < 0 || repeat > 100000 {
			return
		}
		var vars map[string]string
		if json.Unmarshal([]byte(varsJSON), &vars) != nil {
			return
		}
		if big != "" && repeat > 0 {
			if vars == nil {
				vars = map[string]string{}
			}
			vars["big"] = strings.Repeat(big, repeat)
		}
		c := CDR{CDRID: "cdr-1", CallRef: callRef, ContactRef: contactRef, CampaignRef: campaign, ClientNumber: client,
			DialNumber: dial, Disposition: Disposition(disp), SIPCode: code, HangupCause: cause, Line: line, Attempt: 1,
			Start: time.Unix(start, 123456789).In(time.FixedZone("X", 3600)), End: time.Unix(start+dur, 999999999),
			Duration: int(dur), Variables: vars}
		if hasExt {
			c.Ext = &ext
		}
		if answerAfter >= 0 && answerAfter <= dur {
			a := time.Unix(start+answerAfter, 5)
			c.Answer = &a
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		if len(b) > MaxCDRBytes {
			t.Fatalf("CDR JSON of %d bytes, more than MaxCDRBytes %d", len(b), MaxCDRBytes)
		}
		var back CDR
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("CDR JSON %s does not decode: %v", testenv.FuzzQuote(string(b)), err)
		}
		if note, cut := back.Variables[TruncatedVariable]; cut {
			if _, own := vars[TruncatedVariable]; !own && note == "" {
				t.Errorf("cut CDR has an empty %s", TruncatedVariable)
			}
			return
		}
		want := CDR{CDRID: c.CDRID, CallRef: fuzzNorm(callRef), ContactRef: fuzzNorm(contactRef), CampaignRef: fuzzNorm(campaign),
			ClientNumber: fuzzNorm(client), DialNumber: fuzzNorm(dial), Disposition: Disposition(fuzzNorm(disp)), SIPCode: code,
			HangupCause: fuzzNorm(cause), Line: fuzzNorm(line), Attempt: 1, Start: time.Unix(start, 0).UTC(),
			End: time.Unix(start+dur, 0).UTC(), Duration: int(dur), Variables: map[string]string{}}
		if hasExt {
			e := fuzzNorm(ext)
			want.Ext = &e
		}
		if c.Answer != nil {
			a := time.Unix(start+answerAfter, 0).UTC()
			want.Answer = &a
		}
		keysOK := true
		for k, v := range vars {
			keysOK = keysOK && utf8.ValidString(k)
			want.Variables[fuzzNorm(k)] = fuzzNorm(v)
		}
		if !keysOK {
			want.Variables, back.Variables = nil, nil // keys may merge once replaced
		}
		if !maps.Equal(back.Variables, want.Variables) {
			t.Errorf("variables %q came back as %q", want.Variables, back.Variables)
		}
		back.Variables, want.Variables = nil, nil
		if !reflect.DeepEqual(back, want) {
			t.Errorf("CDR round trip:\n got  %+v\n want %+v\n JSON %s", back, want, testenv.FuzzQuote(string(b)))
		}
	})
}

// fuzzDir is a fresh spool directory, on tmpfs when the machine has one:
// the spool fsyncs every record, and a disk makes that the whole cost of a
// fuzz run.
func fuzzDir(t *testing.T) string {
	if dir, err := os.MkdirTemp("/dev/shm", "redial-fuzz-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return t.TempDir()
}

// fuzzSpoolHeader is a spool log header naming id.
func fuzzSpoolHeader(id logID) string {
	return `{"spool":"` + spoolFormat + `","version":1,"id":"` + hex.EncodeToString(id[:]) + `"}` + "\n"
}

// fuzzProgress is a progress file whose slot for seq says off in log id.
func fuzzProgress(seq uint64, off int64, id logID) []byte {
	b := make([]byte, 2*progressSlot)
	copy(b[int(seq%2)*progressSlot:], encodeProgress(seq, off, id))
	return b
}

// FuzzSpoolOpen opens a spool whose files hold anything (a crash, a full
// disk, an operator's edit): never a panic, never an error, never a lost
// log (an unreadable one is moved aside whole), and the records it counts
// are exactly the ones peek then returns, each usable or reported corrupt.
func FuzzSpoolOpen(f *testing.F) {
	id := logID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	hdr := fuzzSpoolHeader(id)
	rec := `{"kind":"cdr","payload":{"cdr_id":"x","call_ref":"c1"}}` + "\n"
	settle := `{"kind":"settle","payload":{"ledger":"q","keys":["a","b","c","d","e","f"],"member":"1001","how":"ack","raw":{"member":"/w=="}}}` + "\n"
	off := int64(len(hdr) + len(rec))
	for _, s := range [][2]string{
		{hdr + rec + settle, string(fuzzProgress(1, off, id))},
		{hdr + rec + settle, string(fuzzProgress(7, int64(len(hdr)), id))},
		{hdr + rec + settle, string(fuzzProgress(2, off+3, id))},     // progress mid-record
		{hdr + rec + settle, string(fuzzProgress(3, 1<<40, id))},     // progress past the end
		{hdr + rec + settle, string(fuzzProgress(4, off, logID{9}))}, // another log's progress
		{hdr + rec + `{"kind":"cdr","payload":{"n":`, ""},            // crash mid-append
		{hdr + `{"kind":"fax","payload":{}}` + "\n" + "not json\n" + `{"kind":"cdr"}` + "\n\n" + rec, ""},
		{hdr, string(fuzzProgress(1, int64(len(hdr)), id))},
		{`{"spool":"redial-notify-spool","version":2,"id":"00"}` + "\n" + rec, ""}, // unreadable: moved aside
		{"", ""},
		{"\x00\xff garbage without a newline", "RNP1 torn"},
		{strings.Repeat("x", 5000) + "\n" + rec, ""},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, logBytes, progBytes []byte) {
		dir := fuzzDir(t)
		if err := os.WriteFile(filepath.Join(dir, logName), logBytes, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, progressName), progBytes, 0o640); err != nil {
			t.Fatal(err)
		}
		var s *spool
		var err error
		testenv.FuzzRun(t, "openSpool", func() { s, err = openSpool(dir, quiet) })
		if err != nil {
			t.Fatalf("openSpool on log %s, progress %s: %v", testenv.FuzzQuote(string(logBytes)), testenv.FuzzQuote(string(progBytes)), err)
		}
		defer s.close()
		// Billing data is never dropped: an unreadable log is kept whole.
		if aside, _ := filepath.Glob(filepath.Join(dir, logName+".unreadable-*")); len(aside) > 0 {
			kept, err := os.ReadFile(aside[0])
			if err != nil || !bytes.Equal(kept, logBytes) {
				t.Errorf("log moved aside as %s does not hold the original bytes (%v)", aside[0], err)
			}
		}
		if lines := bytes.Count(logBytes, []byte("\n")); s.pending < 0 || s.pending > lines {
			t.Fatalf("%d records pending in a log of %d lines", s.pending, lines)
		}
		pending := s.pending
		for i := 0; i < pending; i++ {
			var r spoolRecord
			var raw []byte
			var end int64
			var ok bool
			testenv.FuzzRun(t, "peek", func() { r, raw, end, ok, err = s.peek() })
			if !ok {
				t.Fatalf("record %d of %d: peek found nothing", i+1, pending)
			}
			switch {
			case errors.Is(err, errCorrupt):
				if raw == nil {
					t.Errorf("record %d: corrupt without its bytes", i+1)
				}
			case err != nil:
				t.Fatalf("record %d: %v", i+1, err)
			case r.Kind != kindCDR && r.Kind != kindInbound && r.Kind != kindSettle || len(r.Payload) == 0:
				t.Errorf("record %d: peek returned kind %q, payload %s", i+1, r.Kind, testenv.FuzzQuote(string(r.Payload)))
			}
			if end <= s.next || end > s.size {
				t.Fatalf("record %d ends at %d, not within (%d, %d]", i+1, end, s.next, s.size)
			}
			if err := s.advance(end); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, ok, err := s.peek(); ok || err != nil {
			t.Fatalf("after %d records peek still finds one: %v", pending, err)
		}
		if err := s.compactIfDrained(); err != nil {
			t.Fatal(err)
		}
		s.close()
		s2, err := openSpool(dir, quiet)
		if err != nil {
			t.Fatalf("reopen after draining: %v", err)
		}
		if s2.pending != 0 {
			t.Errorf("reopened after draining: %d pending", s2.pending)
		}
		s2.close()
	})
}

// FuzzSpoolRecord: a record appended comes back from peek with its kind
// and payload, also after a crash and a reopen, and one that cannot be
// appended leaves the log as it was.
func FuzzSpoolRecord(f *testing.F) {
	f.Add(uint8(0), []byte(`{"cdr_id":"x","call_ref":"c1","variables":{"a":"<b>&"}}`))
	f.Add(uint8(1), []byte(`{"number":"1001","call_dir":"inbound"}`))
	f.Add(uint8(2), []byte(`{"ledger":"q","keys":["a","b","c","d","e","f"],"member":"1001","how":"ack"}`))
	f.Add(uint8(0), []byte("{\"x\": \"\xff\u2028\",\n \"y\": [1,\t2]}"))
	f.Add(uint8(0), []byte("not json"))
	f.Add(uint8(0), []byte(""))
	f.Add(uint8(1), []byte(`"a string payload"`))
	f.Fuzz(func(t *testing.T, k uint8, payload []byte) {
		kind := []string{kindCDR, kindInbound, kindSettle}[int(k)%3]
		dir := fuzzDir(t)
		s, err := openSpool(dir, quiet)
		if err != nil {
			t.Fatal(err)
		}
		before := s.size
		if err := s.append(kind, payload); err != nil {
			if s.size != before || s.pending != 0 {
				t.Errorf("failed append of %s changed the spool: size %d -> %d, pending %d", testenv.FuzzQuote(string(payload)), before, s.size, s.pending)
			}
			if st, _ := os.Stat(filepath.Join(dir, logName)); st == nil || st.Size() != before {
				t.Errorf("failed append left bytes in the log")
			}
			s.close()
			return
		}
		check := func(s *spool, when string) {
			t.Helper()
			if s.pending != 1 {
				t.Fatalf("%s: %d records pending, want 1", when, s.pending)
			}
			r, _, end, ok, err := s.peek()
			if !ok || err != nil || end != s.size {
				t.Fatalf("%s: peek = ok %v, err %v, end %d of %d", when, ok, err, end, s.size)
			}
			if r.Kind != kind || !fuzzSameJSON(r.Payload, payload) {
				t.Errorf("%s: record %q %s, want %q %s", when, r.Kind, testenv.FuzzQuote(string(r.Payload)), kind, testenv.FuzzQuote(string(payload)))
			}
		}
		check(s, "appended")
		crash(s)
		s, err = openSpool(dir, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		check(s, "reopened after a crash")
	})
}

// fuzzSameJSON reports whether two JSON texts hold the same value. Numbers
// are compared as written (UseNumber): one beyond float64's range is valid
// JSON that the spool stores compacted, and must still compare equal.
func fuzzSameJSON(a, b []byte) bool {
	x, errA := fuzzDecodeJSON(a)
	y, errB := fuzzDecodeJSON(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

func fuzzDecodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}
